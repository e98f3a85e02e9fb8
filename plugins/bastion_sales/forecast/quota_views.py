"""Quotas and attainment page (/sales/quotas): see, add, change and remove quotas.

Every write goes through the signed-in user's record service, so the roles decide:
a sales manager creates and edits quotas of their teams' members (scope team_tree),
an administrator anybody's, a rep only reads. The owner of a quota is the person it is
for; the core refuses an owner outside the writer's scope.
"""

from __future__ import annotations

from typing import Any

from bastion.api import (
    Conflict,
    Filter,
    Forbidden,
    NotFound,
    RecordError,
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
    team_members,
    url_for,
)

from ..web import bp
from . import formatting
from .people import Directory, managed_member_ids
from .periods import Period, PeriodError, current_quarter, parse_period
from .quotas import attainment, period_keys

OBJECT = "sales_quotas"


def _service():
    service = request_service()
    if not service.can(OBJECT, "read"):
        abort(403, "You may not see quotas.")
    return service


def _owner_choices(service: Any, directory: Directory) -> list[tuple[int, str]]:
    """Active people a quota may be set for: a manager's teams' members (sub-teams
    too); for someone who manages users (administrators) everybody in a team; anybody
    else who may create quotas: themselves and their own team. The core still refuses
    an owner outside the writer's scope; this only keeps the list to sensible names."""
    if not service.can(OBJECT, "create"):
        return []
    ids = managed_member_ids(current_user.id, directory)
    if not ids:
        ids = {current_user.id}
        if has_permission(current_user, "admin.users"):
            teams = directory.teams()
            roots = [t for t in teams.values() if t.parent_id is None or t.parent_id not in teams]
            for team in roots:
                members = team_members(team.id, include_sub_teams=True)
                directory.remember(members)
                ids.update(info.id for info in members)
        else:
            me = directory.user(current_user.id)
            if me is not None and me.team_id is not None:
                members = team_members(me.team_id)
                directory.remember(members)
                ids.update(info.id for info in members)
    directory.prefetch(ids)
    choices = [(uid, directory.owner(uid).name) for uid in ids]
    return sorted(choices, key=lambda pair: pair[1].lower())


def _page(
    period_text: str | None,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> Any:
    service = _service()
    problem = None
    try:
        period = parse_period(period_text) if period_text else current_quarter()
    except PeriodError as exc:
        problem, period, status = str(exc), current_quarter(), 400
    directory = Directory()
    report = attainment(service, period, directory=directory)
    notice = report.problem
    try:
        records = list(
            service.iterate(OBJECT, filters=[Filter("period", "in", period_keys(period))])
        )
    except RecordError as exc:  # e.g. the period of quotas is hidden from this role
        records, notice = [], notice or f"Quotas cannot be shown: {exc.message}"
    directory.prefetch(r.get("owner") for r in records)
    quotas = sorted(
        ({"record": r, "owner": directory.owner(r.get("owner"))} for r in records),
        key=lambda item: (item["owner"].name.lower(), str(item["record"].get("period"))),
    )
    return render_template(
        "sales/forecast/quotas.html",
        period=period,
        previous=_shift(period, -1),
        following=_shift(period, 1),
        report=report,
        quotas=quotas,
        owners=_owner_choices(service, directory),
        can_create=service.can(OBJECT, "create"),
        can_edit=service.can(OBJECT, "edit"),
        can_delete=service.can(OBJECT, "delete"),
        errors=errors or {},
        form=form or {},
        problem=problem,
        notice=notice,
        money=formatting.amount,
        percent=formatting.percent,
    ), status


def _shift(period: Period, steps: int) -> str:
    return Period(period.kind, period.index + steps).key


@bp.get("/quotas")
@login_required
def quotas_page() -> Any:
    return _page(request.args.get("period"))


def _amount_value(form: Any) -> Any:
    amount = (form.get("amount") or "").strip()
    currency = (form.get("currency") or "").strip().upper()
    if not currency:
        return amount  # the field's (or the site's) currency
    return {"amount": amount, "currency": currency}


@bp.post("/quotas")
@login_required
def create_quota() -> Any:
    service = _service()
    form = {
        k: (request.form.get(k) or "").strip() for k in ("owner", "period", "amount", "currency")
    }
    # "2026-q4" is 2026-Q4: the field's pattern (checked before any hook) wants the "Q".
    form["period"] = form["period"].upper()
    back = form["period"] or request.args.get("view") or None
    if not service.can(OBJECT, "create"):
        return _page(back, errors={"": "You may not set quotas."}, form=form, status=403)
    owner = bounded_int(form["owner"], minimum=1)
    if owner is None:
        return _page(back, errors={"owner": "Choose whose quota this is."}, form=form, status=422)
    values = {"owner": owner, "period": form["period"], "amount": _amount_value(form)}
    try:
        record = service.create(OBJECT, values)
    except ValidationFailed as exc:
        return _page(_viewable(back), errors=exc.errors, form=form, status=422)
    except RecordError as exc:
        return _page(_viewable(back), errors={"": exc.message}, form=form, status=exc.status)
    flash(f"Quota for {record.get('period')} saved.", "success")
    return redirect(url_for("sales.quotas_page", period=_viewable(record.get("period"))))


@bp.post("/quotas/<int:quota_id>")
@login_required
def update_quota(quota_id: int) -> Any:
    service = _service()
    view = _viewable(request.form.get("view"))
    form = {"amount": request.form.get("amount", ""), "currency": request.form.get("currency", "")}
    try:
        service.update(OBJECT, quota_id, {"amount": _amount_value(form)}, version=_version())
    except ValidationFailed as exc:
        message = "; ".join(exc.errors.values())
        return _page(view, errors={f"quota-{quota_id}": message}, status=422)
    except Conflict as exc:
        return _page(view, errors={f"quota-{quota_id}": exc.message}, status=409)
    except (Forbidden, NotFound) as exc:
        return _page(view, errors={"": exc.message}, status=exc.status)
    except RecordError as exc:
        return _page(view, errors={f"quota-{quota_id}": exc.message}, status=exc.status)
    flash("Quota changed.", "success")
    return redirect(url_for("sales.quotas_page", period=view))


@bp.post("/quotas/<int:quota_id>/delete")
@login_required
def delete_quota(quota_id: int) -> Any:
    service = _service()
    view = _viewable(request.form.get("view"))
    try:
        service.delete(OBJECT, quota_id, version=_version())
    except RecordError as exc:
        return _page(view, errors={"": exc.message}, status=exc.status)
    flash("Quota removed.", "success")
    return redirect(url_for("sales.quotas_page", period=view))


def _version() -> int | None:
    """The version the form was read at; the core explains a missing or bad one."""
    return bounded_int((request.form.get("version") or "").strip(), minimum=1)


def _viewable(text: str | None) -> str | None:
    """The period to show after a write: a month quota is shown within its quarter."""
    try:
        return parse_period(text).quarter().key if text else None
    except PeriodError:
        return None
