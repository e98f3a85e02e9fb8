"""Pipelines settings: create pipelines, add, rename, reorder and delete stages, set
probabilities, outcomes and forecast categories, mark the default pipeline.

Every write goes through the administrator's own record service (permission,
validation and the audit trail apply); the rules live in ``rules.py``, so the API and
imports obey them too. A refused form is shown again with its values and the messages
next to the fields (422): nothing typed is lost.
"""

from __future__ import annotations

from typing import Any

from bastion.api import (
    NotFound,
    RecordError,
    RecordService,
    ValidationFailed,
    bounded_int,
    flash,
    redirect,
    render_template,
    request,
    request_service,
    requires,
    url_for,
)
from bastion_sales.objects import FORECAST_CATEGORIES, OUTCOMES
from bastion_sales.pipelines.config import get_stage, list_pipelines, stages_of
from bastion_sales.pipelines.views import CONFIGURE
from bastion_sales.web import bp

#: Stages a new pipeline starts with when asked (name, probability, outcome, category).
STANDARD_STAGES = (
    ("Qualification", 10, "open", "pipeline"),
    ("Needs analysis", 25, "open", "pipeline"),
    ("Proposal", 50, "open", "best_case"),
    ("Negotiation", 75, "open", "commit"),
    ("Closed won", 100, "won", "commit"),
    ("Closed lost", 0, "lost", "omitted"),
)
POSITION_STEP = 10


def _page(status: int = 200, failed: dict[str, Any] | None = None):
    service = request_service()
    pipelines = list_pipelines(service)
    stages = {p.id: stages_of(service, p.id) for p in pipelines}
    return (
        render_template(
            "sales/pipelines/settings.html",
            pipelines=pipelines,
            stages=stages,
            outcomes=OUTCOMES,
            categories=FORECAST_CATEGORIES,
            failed=failed or {},
        ),
        status,
    )


def _refused(form_key: str, exc: RecordError):
    errors = exc.errors if isinstance(exc, ValidationFailed) else {"": exc.message}
    failed = {"form": form_key, "errors": errors, "values": request.form.to_dict()}
    return _page(exc.status if exc.status in (403, 404, 409, 422) else 422, failed)


def _back(anchor: str = ""):
    return redirect(url_for("sales.pipeline_settings") + (f"#{anchor}" if anchor else ""), 303)


def _version() -> int | None:
    return bounded_int((request.form.get("version") or "").strip(), minimum=1)


def _checked(name: str) -> bool:
    return request.form.get(name) in ("on", "true", "1", "yes")


def _stage_values() -> dict[str, Any]:
    form = request.form
    values: dict[str, Any] = {
        "name": (form.get("name") or "").strip(),
        "probability": (form.get("probability") or "").strip(),
        "outcome": form.get("outcome") or "open",
    }
    if form.get("forecast_category"):  # left empty: the default (or the outcome's)
        values["forecast_category"] = form.get("forecast_category")
    return values


@bp.get("/settings/pipelines")
@requires(CONFIGURE)
def pipeline_settings():
    return _page()


@bp.post("/settings/pipelines")
@requires(CONFIGURE)
def pipeline_create():
    service = request_service()
    form = request.form
    values = {
        "name": (form.get("name") or "").strip(),
        "description": (form.get("description") or "").strip() or None,
        "is_default": _checked("is_default"),
        "active": True,
    }
    try:
        with service.atomic():
            pipeline = service.create("pipelines", values)
            if _checked("standard_stages"):
                for index, (name, probability, outcome, category) in enumerate(STANDARD_STAGES):
                    service.create(
                        "pipeline_stages",
                        {
                            "name": name,
                            "pipeline": pipeline.id,
                            "position": (index + 1) * POSITION_STEP,
                            "probability": probability,
                            "outcome": outcome,
                            "forecast_category": category,
                        },
                    )
    except RecordError as exc:
        return _refused("new-pipeline", exc)
    flash(f"Pipeline {values['name']} created.", "success")
    return _back(f"pipeline-{pipeline.id}")


@bp.post("/settings/pipelines/<int:pipeline_id>")
@requires(CONFIGURE)
def pipeline_update(pipeline_id: int):
    service = request_service()
    form = request.form
    values = {
        "name": (form.get("name") or "").strip(),
        "description": (form.get("description") or "").strip() or None,
        "is_default": _checked("is_default"),
        "active": _checked("active"),
    }
    try:
        service.update("pipelines", pipeline_id, values, version=_version())
    except RecordError as exc:
        return _refused(f"pipeline-{pipeline_id}", exc)
    flash(f"Pipeline {values['name']} saved.", "success")
    return _back(f"pipeline-{pipeline_id}")


@bp.post("/settings/pipelines/<int:pipeline_id>/stages")
@requires(CONFIGURE)
def stage_create(pipeline_id: int):
    service = request_service()
    values = _stage_values()
    values["pipeline"] = pipeline_id
    try:
        existing = stages_of(service, pipeline_id)
        last = max((s.position for s in existing), default=0)
        values["position"] = min(1000, last + POSITION_STEP)
        service.create("pipeline_stages", values)
    except RecordError as exc:
        return _refused(f"new-stage-{pipeline_id}", exc)
    flash(f"Stage {values['name']} added.", "success")
    return _back(f"pipeline-{pipeline_id}")


@bp.post("/settings/stages/<int:stage_id>")
@requires(CONFIGURE)
def stage_update(stage_id: int):
    service = request_service()
    values = _stage_values()
    try:
        record = service.update("pipeline_stages", stage_id, values, version=_version())
    except RecordError as exc:
        return _refused(f"stage-{stage_id}", exc)
    flash(f"Stage {values['name']} saved.", "success")
    return _back(f"pipeline-{record.get('pipeline')}")


@bp.post("/settings/stages/<int:stage_id>/move")
@requires(CONFIGURE)
def stage_move(stage_id: int):
    """Move a stage one place up or down; positions are renumbered 10, 20, 30..."""
    service = request_service()
    direction = request.form.get("direction")
    try:
        stage = get_stage(service, stage_id)
        if stage is None:
            raise NotFound(f"Stage {stage_id} does not exist.")
        order = stages_of(service, stage.pipeline)
        index = next(i for i, s in enumerate(order) if s.id == stage_id)
        target = index - 1 if direction == "up" else index + 1
        if 0 <= target < len(order) and direction in ("up", "down"):
            order[index], order[target] = order[target], order[index]
            _renumber(service, order)
    except RecordError as exc:
        return _refused(f"stage-{stage_id}", exc)
    return _back(f"stage-{stage_id}")


def _renumber(service: RecordService, order: list) -> None:
    with service.atomic():
        for index, stage in enumerate(order):
            position = (index + 1) * POSITION_STEP
            if stage.position != position:
                service.update(
                    "pipeline_stages", stage.id, {"position": position}, version=stage.version
                )


@bp.post("/settings/stages/<int:stage_id>/delete")
@requires(CONFIGURE)
def stage_delete(stage_id: int):
    service = request_service()
    try:
        stage = get_stage(service, stage_id)
        if stage is None:
            raise NotFound(f"Stage {stage_id} does not exist.")
        service.delete("pipeline_stages", stage_id, version=_version())
    except RecordError as exc:
        return _refused(f"stage-{stage_id}", exc)
    flash(f"Stage {stage.name} deleted.", "success")
    return _back(f"pipeline-{stage.pipeline}")
