"""Administrators' pages for the leads' scoring and assignment rules.

``/sales/settings/scoring`` and ``/sales/settings/assignment`` list the rules with a
form to add one; each rule has an edit page and a delete button. Every write goes
through the signed-in user's record service (object permissions, validation including
this area's rule checks, audit, optimistic concurrency); the pages themselves need
``sales.configure``. Plain forms: they work without JavaScript.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.routing import BuildError

from bastion.api import (
    Conflict,
    JobRunning,
    RecordError,
    RecordService,
    UserInfo,
    ValidationFailed,
    bounded_int,
    flash,
    list_teams,
    redirect,
    render_template,
    request,
    request_service,
    requires,
    team_members,
    url_for,
)
from bastion_sales.leads.assignment import TERRITORY_TYPES
from bastion_sales.leads.rescoring import (
    WEB_LIMIT,
    count_open_leads,
    rescore_open_leads,
)
from bastion_sales.leads.scoring import COMPARABLE_TYPES, OPERATOR_LABELS, UNSCORABLE
from bastion_sales.objects import ACTIVITY_KINDS, ASSIGNMENT_METHODS, SCORING_KINDS
from bastion_sales.web import bp

CONFIGURE = "sales.configure"
KIND_LABELS = {
    "field_value": "Field value",
    "activity": "Activity held",
    "inactivity": "No activity for some days",
}
METHOD_LABELS = {"round_robin": "Round robin within a team", "territory": "By territory"}


@dataclass(frozen=True)
class RulePage:
    """What differs between the scoring and the assignment pages."""

    object_name: str
    endpoint: str
    title: str
    intro: str
    #: (field name, form widget) in form order; widgets: text, number, select, checkbox
    fields: tuple[tuple[str, str], ...]
    choices: Callable[[RecordService], dict[str, list[tuple[str, str]]]]
    sort: str
    #: The select choosing the rule's kind, and the kinds each other field is for:
    #: sales.js shows only the chosen kind's fields (without JS all fields show).
    switch: str = ""
    relevant: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _lead_fields(service: RecordService, types: frozenset[str]) -> list[tuple[str, str]]:
    meta = service.object("leads")
    found = [
        (name, item.label)
        for name, item in meta.fields.items()
        if item.type in types and name not in UNSCORABLE
    ]
    return sorted(found, key=lambda pair: pair[1].casefold())


def scoring_choices(service: RecordService) -> dict[str, list[tuple[str, str]]]:
    return {
        "kind": [(k, KIND_LABELS[k]) for k in SCORING_KINDS],
        "field": [("", "(not a field rule)"), *_lead_fields(service, COMPARABLE_TYPES)],
        "operator": list(OPERATOR_LABELS.items()),
        "activity_kind": [("", "(not an activity rule)")] + [(k, k) for k in ACTIVITY_KINDS],
    }


def assignable_users() -> list[tuple[str, str]]:
    """Active members of every team, as (email, "Name <email>") sorted by name.

    The rule keeps the email (the field's stored value); a user outside every team
    cannot be chosen here (the facade lists people by team), but a rule naming one
    still shows it, as the template adds the current value to the options.
    """
    found: dict[int, UserInfo] = {}
    for team in list_teams():
        for member in team_members(team.id):
            found.setdefault(member.id, member)
    people = sorted(found.values(), key=lambda u: ((u.name or u.email).casefold(), u.email))
    return [(u.email, f"{u.name} <{u.email}>" if u.name else u.email) for u in people]


def assignment_choices(service: RecordService) -> dict[str, list[tuple[str, str]]]:
    teams = sorted(team.name for team in list_teams())
    return {
        "method": [(m, METHOD_LABELS[m]) for m in ASSIGNMENT_METHODS],
        "territory_field": _lead_fields(service, TERRITORY_TYPES),
        "team": [("", "(not round robin)")] + [(t, t) for t in teams],
        "assignee": [("", "(not a territory rule)"), *assignable_users()],
    }


SCORING = RulePage(
    object_name="lead_scoring_rules",
    endpoint="sales.scoring_rules",
    title="Lead scoring rules",
    intro=(
        "Each active rule adds its points (or takes them away, when negative) to the "
        "score of the leads it matches. A field rule tests a lead field; an activity "
        "rule counts once when a done activity of its kind is linked to the lead; an "
        "inactivity rule applies when nothing happened to the lead for its days. Changes "
        "apply to a lead at its next change; to apply them to all open leads at once, "
        "rescore them below."
    ),
    fields=(
        ("name", "text"),
        ("kind", "select"),
        ("field", "select"),
        ("operator", "select"),
        ("value", "text"),
        ("activity_kind", "select"),
        ("days", "number"),
        ("points", "number"),
        ("active", "checkbox"),
    ),
    choices=scoring_choices,
    sort="id",
    switch="kind",
    relevant={
        "field": ("field_value",),
        "operator": ("field_value",),
        "value": ("field_value",),
        "activity_kind": ("activity",),
        "days": ("inactivity",),
    },
)

ASSIGNMENT = RulePage(
    object_name="lead_assignment_rules",
    endpoint="sales.assignment_rules",
    title="Lead assignment rules",
    intro=(
        "When a lead is created without an owner chosen for it (its owner is the person "
        "creating it), the first active rule that applies, in order, picks its owner: a "
        "territory rule when the lead field matches its value, a round robin rule by "
        "taking the next active member of its team. Leads from the form, the API and "
        "imports are assigned alike."
    ),
    fields=(
        ("name", "text"),
        ("position", "number"),
        ("method", "select"),
        ("territory_field", "select"),
        ("territory_value", "text"),
        ("assignee", "select"),
        ("team", "select"),
        ("active", "checkbox"),
    ),
    choices=assignment_choices,
    sort="position,id",
    switch="method",
    relevant={
        "territory_field": ("territory",),
        "territory_value": ("territory",),
        "assignee": ("territory",),
        "team": ("round_robin",),
    },
)
#: New assignment rules go after the last one by default, leaving room in between.
POSITION_STEP = 10
PAGES = {"scoring": SCORING, "assignment": ASSIGNMENT}
MISSING_VERSION = (
    "The form did not say which version of the rule you read, so nothing was saved: "
    "reload the page and try again."
)


# --------------------------------------------------------------------------- routes


@bp.route("/settings/scoring", methods=["GET", "POST"], endpoint="scoring_rules")
@requires(CONFIGURE)
def scoring_rules():
    return _list_page(SCORING)


@bp.route("/settings/scoring/<int:rule_id>", methods=["GET", "POST"], endpoint="scoring_rule")
@requires(CONFIGURE)
def scoring_rule(rule_id: int):
    return _edit_page(SCORING, rule_id)


@bp.post("/settings/scoring/<int:rule_id>/delete", endpoint="scoring_rule_delete")
@requires(CONFIGURE)
def scoring_rule_delete(rule_id: int):
    return _delete(SCORING, rule_id)


@bp.post("/settings/scoring/rescore", endpoint="rescore_leads")
@requires(CONFIGURE)
def rescore_leads():
    """Rescore every open lead now, as ``bastion sales rescore`` does, within the request.

    Up to WEB_LIMIT open leads; beyond, the page says to run the command (a request
    should not run for minutes). Refused while another run holds the job lock.
    """
    total = count_open_leads(RecordService(None, system=True))
    if total > WEB_LIMIT:
        flash(
            f"There are {total} open leads, more than this page rescores at once "
            f"({WEB_LIMIT}): ask your operator to run the command "
            "“bastion sales rescore” on the server.",
            "warning",
        )
        return redirect(url_for("sales.scoring_rules"), 303)
    try:
        result = rescore_open_leads()
    except JobRunning:
        flash(
            "Another rescoring run is in progress, so nothing was done: "
            "try again when it has finished.",
            "error",
        )
        return redirect(url_for("sales.scoring_rules"), 303)
    message = f"Rescored {result.rescored} open leads; {result.changed} changed."
    if result.failures:
        shown = " ".join(result.failures[:3])
        more = len(result.failures) - 3
        extra = f" (and {more} more)" if more > 0 else ""
        flash(f"{message} {len(result.failures)} failed: {shown}{extra}", "warning")
    else:
        flash(message, "success")
    return redirect(url_for("sales.scoring_rules"), 303)


@bp.route("/settings/assignment", methods=["GET", "POST"], endpoint="assignment_rules")
@requires(CONFIGURE)
def assignment_rules():
    return _list_page(ASSIGNMENT)


@bp.route("/settings/assignment/<int:rule_id>", methods=["GET", "POST"], endpoint="assignment_rule")
@requires(CONFIGURE)
def assignment_rule(rule_id: int):
    return _edit_page(ASSIGNMENT, rule_id)


@bp.post("/settings/assignment/<int:rule_id>/delete", endpoint="assignment_rule_delete")
@requires(CONFIGURE)
def assignment_rule_delete(rule_id: int):
    return _delete(ASSIGNMENT, rule_id)


# --------------------------------------------------------------------------- helpers


def refusal(exc: RecordError):
    return render_template(
        "error.html", status=exc.status, title=exc.title, detail=exc.message
    ), exc.status


def _settings_url() -> str | None:
    """The sales settings page (the activities area's), which links to these pages."""
    try:
        return url_for("sales.settings_page")
    except BuildError:
        return None


def _form_values(page: RulePage, *, creating: bool) -> dict[str, Any]:
    """The submitted values: blanks left out on create, cleared on edit."""
    values: dict[str, Any] = {}
    for name, widget in page.fields:
        if widget == "checkbox":
            values[name] = request.form.get(name) == "true"
            continue
        text = request.form.get(name, "").strip()
        if text:
            values[name] = text
        elif not creating:
            values[name] = None
    return values


def _texts(page: RulePage, values: dict[str, Any]) -> dict[str, str]:
    texts = {}
    for name, widget in page.fields:
        value = values.get(name)
        if widget == "checkbox":
            texts[name] = "true" if value in (True, "true") else ""
        else:
            texts[name] = "" if value is None else str(value)
    return texts


def _defaults(page: RulePage, service: RecordService, rules: list[Any]) -> dict[str, str]:
    meta = service.object(page.object_name)
    values = {name: meta.fields[name].default for name, _ in page.fields}
    if "position" in values:
        # After the last rule: a new rule rarely belongs first, and the field's
        # default (10) would tie with the first rule.
        positions = [r.get("position") for r in rules if r.get("position") is not None]
        if positions:
            values["position"] = max(positions) + POSITION_STEP
    return _texts(page, values)


def _rules(page: RulePage, service: RecordService) -> list[Any]:
    return service.query(page.object_name, sort=page.sort, limit=500).records


def _render(page: RulePage, service: RecordService, *, status: int = 200, **context: Any):
    meta = service.object(page.object_name)
    return render_template(
        "sales/leads/rules.html",
        page=page,
        settings_url=_settings_url(),
        meta=meta,
        labels={name: meta.fields[name].label for name, _ in page.fields},
        help={name: meta.fields[name].help_text or "" for name, _ in page.fields},
        choices=page.choices(service),
        kind_labels=KIND_LABELS | METHOD_LABELS,
        operator_labels=OPERATOR_LABELS,
        can_create=service.can(page.object_name, "create"),
        can_edit=service.can(page.object_name, "edit"),
        can_delete=service.can(page.object_name, "delete"),
        team_names={team.name for team in list_teams()},
        **context,
    ), status


def _list_page(page: RulePage):
    service = request_service()
    try:
        if request.method == "GET":
            rules = _rules(page, service)
            return _render(
                page,
                service,
                rules=rules,
                texts=_defaults(page, service, rules),
                errors={},
                rule=None,
            )
        values = _form_values(page, creating=True)
        try:
            created = service.create(page.object_name, values)
        except ValidationFailed as exc:
            return _render(
                page,
                service,
                status=422,
                rules=_rules(page, service),
                texts=_texts(page, values),
                errors=exc.errors,
                rule=None,
            )
        flash(f"Rule “{created.get('name')}” added.", "success")
        return redirect(url_for(page.endpoint), 303)
    except RecordError as exc:
        return refusal(exc)


def _edit_page(page: RulePage, rule_id: int):
    service = request_service()
    try:
        rule = service.get(page.object_name, rule_id)
        if request.method == "GET":
            return _render(
                page,
                service,
                rules=None,
                texts=_texts(page, rule.values),
                errors={},
                rule=rule,
                version=rule.version,
            )
        values = _form_values(page, creating=False)
        version = _form_version()
        try:
            if version is None:
                raise ValidationFailed({"": MISSING_VERSION})
            service.update(page.object_name, rule_id, values, version=version)
        except ValidationFailed as exc:
            return _render(
                page,
                service,
                status=422,
                rules=None,
                texts=_texts(page, values),
                errors=exc.errors,
                rule=rule,
                version=version,
            )
        except Conflict as exc:
            return _render(
                page,
                service,
                status=409,
                rules=None,
                texts=_texts(page, values),
                errors={"": exc.message},
                rule=rule,
                version=version,
            )
        flash(f"Rule “{values.get('name') or rule.get('name')}” saved.", "success")
        return redirect(url_for(page.endpoint), 303)
    except RecordError as exc:
        return refusal(exc)


def _form_version() -> int | None:
    return bounded_int(request.form.get("version", "").strip(), minimum=1)


def _delete(page: RulePage, rule_id: int):
    """Delete the rule as read on the page (its version): not one edited since."""
    service = request_service()
    try:
        rule = service.get(page.object_name, rule_id)
        version = _form_version()
        if version is None:
            raise ValidationFailed({"version": MISSING_VERSION})
        service.delete(page.object_name, rule_id, version=version)
    except RecordError as exc:
        return refusal(exc)
    flash(f"Rule “{rule.get('name')}” deleted.", "success")
    return redirect(url_for(page.endpoint), 303)
