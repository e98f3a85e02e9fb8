"""leads area of the sales plugin (see bastion_sales.area for what it contributes).

Scoring (``scoring``: the pure evaluation; ``scores``: keeping stored scores current),
assignment of new leads (``assignment``), conversion (``conversion``, its page in
``views`` and its API in ``api``) and the rules' settings pages (``rules_views``).
"""

from __future__ import annotations

from typing import Any

import click

from bastion.api import (
    JobRunning,
    Permission,
    RecordAction,
    RecordError,
    RecordPanel,
    RecordService,
    has_permission,
    url_for,
)
from bastion_sales.leads import api, assignment, rules_views, views  # noqa: F401  (routes)
from bastion_sales.leads.hooks import (
    activity_changed,
    assignment_rule_changing,
    lead_changing,
    rule_changing,
)
from bastion_sales.leads.rescoring import rescore_open_leads
from bastion_sales.leads.scores import forget_rules, request_rules, score_lead
from bastion_sales.leads.scoring import Contribution, ScoreResult

CONFIGURE = "sales.configure"

PERMISSIONS = [
    Permission(
        CONFIGURE,
        "Configure sales",
        "Edit pipelines, lead scoring and assignment rules, and the sales settings.",
    )
]

CHANGING = {
    "leads": lead_changing,
    "lead_scoring_rules": rule_changing,
    "lead_assignment_rules": assignment_rule_changing,
}
CHANGED = {
    "activities": activity_changed,
    "lead_scoring_rules": forget_rules,
    "lead_assignment_rules": assignment.forget_rules,
}
HIDDEN_RULES = "Rules on fields you cannot see"


def panels(object_name: str, record: Any, user: Any) -> list[RecordPanel]:
    """The lead's conversion (when converted) and its score, rule by rule (computed
    now, from the current rules)."""
    if object_name != "leads" or record is None:
        return []
    found = conversion_panels(record, user)
    # The rules are read by the system: readers of a lead need not read the rules.
    system = RecordService(None, system=True)
    values = dict(system.get("leads", record.id).values)
    rules = request_rules(system)
    result = score_lead(system, record.id, values, rules=rules)
    context = {
        "score": result.total,
        "contributions": visible_contributions(result, rules, record.values),
        "stored": values.get("score"),
        "can_configure": has_permission(user, CONFIGURE),
    }
    found.append(RecordPanel("Score", "sales/leads/_score_panel.html", context=context, order=20))
    return found


def conversion_panels(record: Any, user: Any) -> list[RecordPanel]:
    """On a converted lead: when, and links to the records it became.

    A converted lead stays editable, so this first panel sends users on to the records
    where the work now happens. Names are read with the user's own service: a record
    they may not see is named by its number only, without a link.
    """
    if not record.get("converted_at") and record.get("status") != "converted":
        return []
    service = RecordService(user)
    links = []
    for field, object_name, label in (
        ("converted_account", "accounts", "Account"),
        ("converted_contact", "contacts", "Contact"),
        ("converted_opportunity", "opportunities", "Opportunity"),
    ):
        target = record.get(field)
        if target is None:
            continue
        links.append(_converted_link(service, object_name, target, label))
    context = {"converted_at": record.get("converted_at"), "links": links}
    # At the top: once converted, the work goes on in the records it became.
    return [
        RecordPanel(
            "Converted",
            "sales/leads/_converted_panel.html",
            context=context,
            order=5,
            placement="top",
        )
    ]


def _converted_link(service: RecordService, object_name: str, record_id: int, label: str):
    try:
        target = service.get(object_name, record_id)
    except RecordError:
        return {"label": label, "text": f"#{record_id}", "url": None}
    meta = service.object(object_name)
    title = target.get(meta.name_field) if meta.name_field else None
    text = str(title or target.get("name") or target.get("full_name") or f"#{record_id}")
    url = url_for("records.detail", object=object_name, record_id=record_id)
    return {"label": label, "text": text, "url": url}


def visible_contributions(
    result: ScoreResult, rules: list[dict[str, Any]], readable: Any
) -> list[Contribution]:
    """The contributions a reader may see.

    A field rule (its id, name, reason) tells the field's value: rules on fields hidden
    from the reader (``readable`` holds only the fields they may read) are folded into
    one anonymous row. The total still counts them: the score is a readable field.
    """
    tested = {r["id"]: r.get("field") for r in rules if r.get("kind") == "field_value"}
    shown: list[Contribution] = []
    hidden = 0
    masked = False
    for item in result.contributions:
        if item.rule_id in tested and tested[item.rule_id] not in readable:
            hidden += item.points
            masked = True
        else:
            shown.append(item)
    if masked:
        shown.append(Contribution(None, HIDDEN_RULES, hidden, ""))
    return shown


def actions(object_name: str, record: Any, user: Any) -> list[RecordAction]:
    """A "Convert" button on a lead not converted yet, for users who may edit leads."""
    if object_name != "leads" or record is None:
        return []
    if record.get("status") == "converted" or record.get("converted_at"):
        return []
    if not RecordService(user).can("leads", "edit"):
        return []
    url = url_for("sales.convert_lead", lead_id=record.id)
    return [RecordAction("Convert", url, style="primary", order=10)]


@click.command("rescore")
@click.option("--batch", default=200, show_default=True, help="Leads per transaction.")
def rescore_command(batch: int) -> None:
    """Recalculate the score of every open (not converted) lead from the current rules.

    A lead that cannot be rescored (it kept changing, or a write was refused) is
    reported and skipped; the others are saved. The exit status is 1 when any failed.
    When another rescoring run is in progress this one does nothing (exit status 0).
    """
    try:
        result = rescore_open_leads(batch)
    except JobRunning:
        click.echo("Another rescoring run is in progress.")
        return
    for message in result.failures:
        click.echo(message, err=True)
    summary = f"Rescored {result.rescored} open leads; {result.changed} changed."
    if result.failures:
        click.echo(f"{summary} {len(result.failures)} failed.")
        raise SystemExit(1)
    click.echo(summary)


COMMANDS = [rescore_command]
