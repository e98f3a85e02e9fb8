"""The board pages: show a pipeline's board, and move a card to another stage.

A move is an ordinary update of the opportunity through the signed-in user's record
service, so permission, record scope, validation, audit and optimistic concurrency
apply. The move form works without JavaScript (a POST that redirects back); with htmx
the answer is the board itself (200 after a move, 409 on a stale card, 422 when the
move needs more, such as the reason a deal was lost), swapped in place. Every board
answer carries the header ``X-Board: 1``: sales.js swaps only those, so a login page
(an expired session), a CSRF refusal or a 404 of a disabled plugin never replaces the
board (the page is reloaded or the status line says to reload it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bastion.api import (
    BadQuery,
    Conflict,
    Forbidden,
    NotFound,
    RecordService,
    ValidationFailed,
    abort,
    bounded_int,
    current_user,
    flash,
    has_permission,
    login_required,
    redirect,
    render_template,
    request,
    request_service,
    url_for,
)
from bastion_sales.pipelines.board import build_board, choose_pipeline
from bastion_sales.web import bp

CONFIGURE = "sales.configure"
BOARD_HEADER = "X-Board"
#: Shown when the viewer's role hides what the board is built from.
CANNOT_SHOW = (
    "The board cannot be shown: your role does not let you see the pipelines, their "
    "stages, or the stage of opportunities. Ask an administrator, or use the list."
)


@dataclass
class Prompt:
    """A move that needs the reason the deal was lost (or another field) first."""

    opportunity: int
    version: int
    stage: int
    name: str
    stage_name: str
    field: str
    message: str
    value: str = ""
    #: The user already answered (and left the reason empty): the message is an error
    #: then; on the first ask it is only a hint (nothing was wrong yet).
    submitted: bool = False


def form_int(value: Any) -> int | None:
    text = value.strip() if isinstance(value, str) else ""
    return bounded_int(text, minimum=1)


def _service() -> RecordService:
    """The viewer's service; 403 for whoever cannot read the board's three objects."""
    service = request_service()
    if not service.can("opportunities", "read"):
        abort(403)
    if not (service.can("pipelines", "read") and service.can("pipeline_stages", "read")):
        abort(403, description=CANNOT_SHOW)
    return service


def _htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def render_board(
    service: RecordService,
    pipeline_id: int | None,
    *,
    status: int = 200,
    message: str = "",
    kind: str = "success",
    prompt: Prompt | None = None,
    moved: int | None = None,
    partial: bool = False,
):
    problem = ""
    try:
        pipeline, pipelines = choose_pipeline(service, pipeline_id)
        board = build_board(service, pipeline, pipelines) if pipeline is not None else None
    except (Forbidden, BadQuery):
        # Field security hides the stage, pipeline or amount the board needs.
        board, pipelines, problem, prompt = None, [], CANNOT_SHOW, None
        status = 403
    context = {
        "board": board,
        "pipelines": pipelines,
        "problem": problem,
        "message": message,
        "message_kind": kind,
        "oob": partial,
        "prompt": prompt,
        "moved": moved,
        "can_move": service.can("opportunities", "edit"),
        "can_configure": has_permission(current_user, CONFIGURE),
    }
    template = "sales/pipelines/_board.html" if partial else "sales/pipelines/board.html"
    return render_template(template, **context), status, {BOARD_HEADER: "1"}


@bp.get("/board")
@login_required
def board():
    service = _service()
    return render_board(service, form_int(request.args.get("pipeline")))


@bp.post("/board/move")
@login_required
def board_move():
    service = _service()
    form = request.form
    record_id = form_int(form.get("opportunity"))
    stage_id = form_int(form.get("stage"))
    pipeline_id = form_int(form.get("pipeline"))
    version = form_int(form.get("version"))
    partial = _htmx()

    def answer(status: int, message: str, kind: str = "error", prompt: Prompt | None = None):
        return render_board(
            service,
            pipeline_id,
            status=status,
            message=message,
            kind=kind,
            prompt=prompt,
            partial=partial,
        )

    if record_id is None or stage_id is None or version is None:
        return answer(422, "Choose an opportunity and the stage to move it to.")
    changes: dict[str, Any] = {"stage": stage_id}
    reason = (form.get("close_reason") or "").strip()
    if reason:
        changes["close_reason"] = reason
    try:
        before = service.get("opportunities", record_id)
        already = before.get("stage") == stage_id and before.version == version
        record = service.update("opportunities", record_id, changes, version=version)
    except ValidationFailed as exc:
        prompt = _prompt(service, exc, record_id, version, stage_id)
        # A first ask shows the question once, in the prompt (no red status line too).
        message = "" if prompt is not None and not prompt.submitted else _first(exc)
        return answer(422, message, prompt=prompt)
    except Conflict as exc:
        return answer(409, exc.message)
    except (NotFound, Forbidden, BadQuery) as exc:
        return answer(exc.status, exc.message)
    name = record.get("name") or f"Opportunity {record.id}"
    stage_name = service.names("pipeline_stages", [stage_id]).get(stage_id, "the stage")
    message = f"{name} is already in {stage_name}." if already else f"Moved {name} to {stage_name}."
    pipeline_id = record.get("pipeline") or pipeline_id
    if not partial:
        flash(message, "success")
        return redirect(url_for("sales.board", pipeline=pipeline_id), 303)
    return render_board(service, pipeline_id, message=message, moved=record.id, partial=True)


def _first(exc: ValidationFailed) -> str:
    return " ".join(exc.errors.values()) or exc.message


def _prompt(
    service: RecordService, exc: ValidationFailed, record_id: int, version: int, stage_id: int
) -> Prompt | None:
    """A refusal one more field can fix (a lost deal's reason): ask for it on the board."""
    if "close_reason" not in exc.errors:
        return None
    try:
        record = service.get("opportunities", record_id)
    except (NotFound, Forbidden):
        return None
    if record.version != version:
        return None
    stage_name = service.names("pipeline_stages", [stage_id]).get(stage_id, "that stage")
    return Prompt(
        opportunity=record_id,
        version=version,
        stage=stage_id,
        name=record.get("name") or f"Opportunity {record_id}",
        stage_name=stage_name,
        field="close_reason",
        message=exc.errors["close_reason"],
        value=(request.form.get("close_reason") or "").strip()[:255],
        submitted="close_reason" in request.form,
    )
