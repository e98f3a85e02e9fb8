"""The "My day" page: the user's open activities by due date, "Done" and "New task".

Every read and write goes through the signed-in user's record service. The page works
without JavaScript (plain forms, redirects); with htmx the lists are swapped in place.
"""

from __future__ import annotations

from typing import Any

from bastion.api import (
    Conflict,
    Filter,
    Forbidden,
    NotFound,
    RecordError,
    RecordLink,
    RecordService,
    ValidationFailed,
    abort,
    bounded_int,
    current_user,
    flash,
    login_required,
    redirect,
    render_template,
    request,
    request_service,
    url_for,
)
from bastion_sales.activities.follow_ups import still_open
from bastion_sales.activities.my_day import ACTIVITIES, load_my_day
from bastion_sales.web import bp

TASK_FIELDS = ("subject", "due_at", "related_to")
#: The objects a new task may be related to from this page.
RELATABLE = ("leads", "opportunities")
WRONG_RELATED = "Choose one of your open leads or opportunities from the list."
#: Records offered in the "related to" choice of the new-task form, per object.
RELATED_CHOICES = 50


def wants_fragment() -> bool:
    return request.headers.get("HX-Request") == "true" and not request.headers.get("HX-Boosted")


def can_read_activities(service: RecordService) -> bool:
    return service.can(ACTIVITIES, "read")


def related_choices(service: RecordService, user: Any, chosen: str = "") -> list[tuple]:
    """(group label, [(value, name)]) of the user's open leads and opportunities."""
    groups = []
    for name, label in (("leads", "Leads"), ("opportunities", "Opportunities")):
        if name not in service.catalog.objects or not service.can(name, "read"):
            continue
        try:
            page = service.query(
                name,
                filters=[Filter("owner", "eq", user.id), *still_open(name)],
                sort="-updated_at",
                limit=RELATED_CHOICES,
            )
        except RecordError:  # a field this user may not filter on: offer none
            continue
        meta = service.object(name)
        options = [(f"{name}:{r.id}", meta.record_name(r.values)) for r in page.records]
        groups.append((label, options))
    if chosen and not any(value == chosen for _, options in groups for value, _ in options):
        link = _link(chosen)
        if link is not None and service.can(link.object, "read"):
            names = service.names(link.object, [link.id])
            if link.id in names:
                groups.insert(0, ("Chosen", [(chosen, names[link.id])]))
    return groups


def _link(text: str) -> RecordLink | None:
    """``leads:12`` as a link, or None for anything else (never an exception)."""
    head, _, tail = text.partition(":")
    record_id = bounded_int(tail, minimum=1)
    return RecordLink(head, record_id) if head in RELATABLE and record_id is not None else None


def render_my_day(
    service: RecordService,
    *,
    texts: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    message: str = "",
    problem: str = "",
    status: int = 200,
    fragment: bool = False,
):
    user = current_user
    texts = texts or {"related_to": request.args.get("related_to", "")}
    context = {
        "day": load_my_day(service, user),
        "can_create": service.can(ACTIVITIES, "create"),
        "can_edit": service.can(ACTIVITIES, "edit"),
        "related": related_choices(service, user, texts.get("related_to", "")),
        "texts": texts,
        "errors": errors or {},
        "message": message,
        "problem": problem,
        "zone": getattr(user, "time_zone", None) or "UTC",
    }
    template = "sales/activities/_my_day.html" if fragment else "sales/activities/my_day.html"
    return render_template(template, **context), status


@bp.get("/my-day")
@login_required
def my_day():
    service = request_service()
    if not can_read_activities(service):
        abort(403)
    return render_my_day(service)


@bp.post("/my-day/<int:activity_id>/done")
@login_required
def mark_done(activity_id: int):
    """Mark one of the user's activities done (the completion hook fills in completed_at)."""
    service = request_service()
    if not service.can(ACTIVITIES, "edit"):
        return _refused(403, "You may not change activities.")
    try:
        record = service.get(ACTIVITIES, activity_id, fields=["subject"])
        version = bounded_int(request.form.get("version", "").strip(), minimum=1)
        service.update(ACTIVITIES, activity_id, {"done": True}, version=version)
    except NotFound:
        return _refused(404, "That activity no longer exists, or is not yours to see.")
    except Forbidden as exc:
        return _refused(403, exc.message)
    except Conflict as exc:
        return _after_write(service, problem=exc.message, status=409)
    except ValidationFailed as exc:
        return _after_write(service, problem="; ".join(exc.errors.values()), status=422)
    name = record.get("subject") or f"Activity #{activity_id}"
    return _after_write(service, message=f"Done: “{name}”.")


def _refused(status: int, message: str):
    """403/404 for "Done": htmx does not swap these, so it is sent back to the page."""
    if wants_fragment():
        flash(message, "error")
        return message, status, {"HX-Redirect": url_for("sales.my_day")}
    abort(status, description=message)


@bp.post("/my-day/tasks")
@login_required
def new_task():
    """Create an open task owned by the user, optionally related to a record."""
    service = request_service()
    if not service.can(ACTIVITIES, "create"):
        abort(403)
    texts = {name: request.form.get(name, "").strip() for name in TASK_FIELDS}
    values: dict[str, Any] = {"kind": "task", "done": False, "subject": texts["subject"]}
    if texts["due_at"]:
        values["due_at"] = texts["due_at"]
    errors: dict[str, str] = {}
    if texts["related_to"]:
        link = _link(texts["related_to"])
        if link is None:
            errors["related_to"] = WRONG_RELATED
        else:
            values["related_to"] = {"object": link.object, "id": link.id}
    if not texts["subject"]:
        errors["subject"] = "Give the task a subject."
    if errors:
        return render_my_day(service, texts=texts, errors=errors, status=422)
    try:
        service.create(ACTIVITIES, values)
    except ValidationFailed as exc:
        return render_my_day(service, texts=texts, errors=exc.errors, status=422)
    except Forbidden as exc:
        return render_my_day(service, texts=texts, errors={"": exc.message}, status=403)
    message = f"Task “{texts['subject']}” added."
    flash(message, "success")
    return redirect(url_for("sales.my_day"), 303)


def _after_write(service: RecordService, *, message: str = "", problem: str = "", status=200):
    if wants_fragment():
        return render_my_day(
            service, message=message, problem=problem, status=status, fragment=True
        )
    if problem:
        flash(problem, "error")
    else:
        flash(message, "success")
    return redirect(url_for("sales.my_day"), 303)
