"""Lead scoring: the points a lead earns from the administrators' scoring rules.

``evaluate`` is pure: it takes a lead's typed values, the activities related to it and
the rules (plain mappings, as the record service hands them out) and says which rules
contributed how many points, and why. The rest of the module reads those inputs through
a record service and stores the total in the lead's read-only ``score`` field.

Rule kinds:

- ``field_value``: the lead's ``field`` compared with ``value`` by ``operator``. The
  comparison follows the type of the lead's value: numbers (integers, decimals,
  percentages, money amounts) as exact decimals; dates and times by their ISO form;
  yes/no fields by "true"/"false" (also yes/no, 1/0); everything else (text,
  picklists, emails) case- and spacing-insensitively. ``contains`` is a text test;
  ``gt``/``lt`` need a number or a date; ``empty``/``not_empty`` ignore ``value``.
- ``activity``: a *done* activity of ``activity_kind`` related to the lead earns the
  points **once per rule**, however many such activities there are (predictable: a
  rep cannot pump a score by logging ten calls; add a second rule for more).
- ``inactivity``: when nothing happened for ``days`` days, the points apply (usually
  negative). "Happened" is the activities area's definition, stored on the lead as
  ``last_activity_at``: the latest activity related to the lead that is not an open
  task (its completion time, else its creation). Open tasks, such as the follow-up task
  this very rule's silence produces, are plans, not contact. A lead without such
  activities counts from its own creation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

#: Lead field types a field rule may test (lookups and links hold ids, not values).
COMPARABLE_TYPES = frozenset(
    {
        "text",
        "long_text",
        "email",
        "phone",
        "url",
        "picklist",
        "multi_picklist",
        "integer",
        "decimal",
        "percent",
        "currency",
        "boolean",
        "date",
        "datetime",
        "formula",
        "auto_number",
    }
)
NUMERIC_TYPES = frozenset({"integer", "decimal", "percent", "currency"})
ORDERED_TYPES = NUMERIC_TYPES | {"date", "datetime", "formula"}
VALUE_OPERATORS = frozenset({"eq", "ne", "contains", "gt", "lt"})
#: Fields a rule may not test: the score itself (a rule on it would feed on itself).
UNSCORABLE = frozenset({"score", "id", "version"})
OPERATOR_LABELS = {
    "eq": "is",
    "ne": "is not",
    "contains": "contains",
    "gt": "is more than",
    "lt": "is less than",
    "empty": "is empty",
    "not_empty": "is filled in",
}
TRUE_WORDS = frozenset({"true", "yes", "1", "on"})
FALSE_WORDS = frozenset({"false", "no", "0", "off"})


class Contribution(NamedTuple):
    """One rule that counted: its id, its name, its points and why it applied."""

    rule_id: int | None
    rule_name: str
    points: int
    reason: str


@dataclass
class ScoreResult:
    total: int = 0
    contributions: list[Contribution] = field(default_factory=list)


def evaluate(
    lead_values: Mapping[str, Any],
    activities: Iterable[Mapping[str, Any]],
    rules: Iterable[Mapping[str, Any]],
    now: datetime,
) -> ScoreResult:
    """The lead's score under ``rules`` at ``now``: the sum of the matching rules' points.

    Inactive rules and rules that cannot be applied (a field rule on a field the lead
    does not have, an incomplete rule) count nothing; the rules' own validation keeps
    such rules rare.
    """
    activities = list(activities)
    result = ScoreResult()
    for rule in rules:
        if rule.get("active") is False:
            continue
        points = rule.get("points")
        if type(points) is not int:
            continue
        reason = _reason(rule, lead_values, activities, now)
        if reason is None:
            continue
        result.contributions.append(
            Contribution(rule.get("id"), str(rule.get("name") or ""), points, reason)
        )
        result.total += points
    return result


def _reason(
    rule: Mapping[str, Any],
    lead: Mapping[str, Any],
    activities: list[Mapping[str, Any]],
    now: datetime,
) -> str | None:
    kind = rule.get("kind")
    if kind == "field_value":
        return field_reason(rule, lead)
    if kind == "activity":
        wanted = rule.get("activity_kind")
        if not wanted:
            return None
        held = [a for a in activities if a.get("kind") == wanted and a.get("done")]
        if not held:
            return None
        return f"A {wanted} was held" + (f" ({len(held)} in all)" if len(held) > 1 else "")
    if kind == "inactivity":
        days = rule.get("days")
        if type(days) is not int or days < 1:
            return None
        last = last_activity(lead)
        if last is None:
            return None
        idle = _aware(now) - last
        if idle < timedelta(days=days):
            return None
        return f"No activity for {idle.days} days (rule: {days})"
    return None


def last_activity(lead: Mapping[str, Any]) -> datetime | None:
    """When something last happened to the lead: its ``last_activity_at``, else its
    creation."""
    for name in ("last_activity_at", "created_at"):
        value = lead.get(name)
        if isinstance(value, datetime):
            return _aware(value)
    return None


def field_reason(rule: Mapping[str, Any], lead: Mapping[str, Any]) -> str | None:
    """Why a field rule matches the lead, or None when it does not."""
    name = rule.get("field")
    operator = rule.get("operator") or "eq"
    if not name or name not in lead:
        return None
    actual = lead.get(name)
    expected = "" if rule.get("value") is None else str(rule.get("value"))
    if matches(actual, operator, expected):
        shown = "" if operator in {"empty", "not_empty"} else f" {expected}"
        return f"{name} {OPERATOR_LABELS.get(operator, operator)}{shown}"
    return None


def matches(actual: Any, operator: str, expected: str) -> bool:
    """Whether a lead's typed value passes ``operator`` against the rule's text value."""
    if hasattr(actual, "amount") and hasattr(actual, "currency"):  # Money
        actual = actual.amount
    if isinstance(actual, list):  # multi-picklist: the options, joined for text tests
        actual = "; ".join(str(item) for item in actual) or None
    empty = actual is None or (isinstance(actual, str) and not actual.strip())
    if operator == "empty":
        return empty
    if operator == "not_empty":
        return not empty
    if empty:
        return operator == "ne" and expected.strip() != ""
    if isinstance(actual, bool):
        wanted = _boolean(expected)
        if wanted is None or operator not in {"eq", "ne"}:
            return False
        return (actual == wanted) == (operator == "eq")
    if isinstance(actual, int | Decimal | float):
        number = to_decimal(expected)
        if number is None:
            return False
        return _ordered(Decimal(str(actual)), operator, number)
    if isinstance(actual, datetime | date):
        when = _moment(expected, actual)
        if when is None:
            return False
        return _ordered(_normal_moment(actual), operator, when)
    text, wanted_text = _fold(str(actual)), _fold(expected)
    if operator == "eq":
        return text == wanted_text
    if operator == "ne":
        return text != wanted_text
    if operator == "contains":
        return wanted_text in text
    number, wanted_number = to_decimal(str(actual)), to_decimal(expected)
    if number is None or wanted_number is None:
        return False
    return _ordered(number, operator, wanted_number)


def _ordered(actual: Any, operator: str, expected: Any) -> bool:
    if operator == "eq":
        return actual == expected
    if operator == "ne":
        return actual != expected
    if operator == "gt":
        return actual > expected
    if operator == "lt":
        return actual < expected
    if operator == "contains":
        return _fold(str(expected)) in _fold(str(actual))
    return False


def to_decimal(text: str) -> Decimal | None:
    """A plain decimal number; None otherwise. A comma is refused rather than guessed:
    "12,5" is 12.5 in much of Europe and 125 with a thousands separator."""
    if not isinstance(text, str) or "," in text:
        return None
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        return None
    return value if value.is_finite() else None


def _boolean(text: str) -> bool | None:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


def _moment(text: str, like: date) -> Any:
    """The rule's value as the same kind of moment as the lead's (date or aware time)."""
    try:
        if isinstance(like, datetime):
            parsed = datetime.fromisoformat(text.strip())
            return _aware(parsed)
        return date.fromisoformat(text.strip()[:10])
    except ValueError:
        return None


def _normal_moment(value: date) -> Any:
    return _aware(value) if isinstance(value, datetime) else value


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _fold(text: str) -> str:
    return " ".join(text.casefold().split())


# --------------------------------------------------------------------------- rule checks


def check_rule(values: Mapping[str, Any], lead_fields: Mapping[str, Any]) -> dict[str, str]:
    """Problems of a scoring rule's values ({field: message}); ``lead_fields`` maps the
    lead's field names to their metadata (``type``, ``label``)."""
    problems: dict[str, str] = {}
    kind = values.get("kind")
    if kind == "field_value":
        name = values.get("field")
        item = lead_fields.get(name) if name else None
        if not name:
            problems["field"] = "Choose the lead field this rule tests."
        elif item is None or name in UNSCORABLE:
            problems["field"] = f"Leads have no field {name!r} that a rule can test."
        elif getattr(item, "type", None) not in COMPARABLE_TYPES:
            problems["field"] = f"{item.label} holds links to records; a rule cannot test it."
        operator = values.get("operator") or "eq"
        expected = values.get("value")
        if operator in VALUE_OPERATORS and (expected is None or not str(expected).strip()):
            problems["value"] = "Give the value to compare with."
        elif item is not None and not problems.get("field"):
            problem = _value_problem(item, operator, str(expected or ""))
            if problem:
                problems["value" if operator in VALUE_OPERATORS else "operator"] = problem
    elif kind == "activity":
        if not values.get("activity_kind"):
            problems["activity_kind"] = "Choose the kind of activity that earns the points."
    elif kind == "inactivity" and type(values.get("days")) is not int:
        problems["days"] = "Give the number of days without activity."
    return problems


def _value_problem(item: Any, operator: str, expected: str) -> str | None:
    kind = item.type
    if kind == "formula":
        kind = getattr(item, "formula_type", None) or "text"
    if operator in {"gt", "lt"} and kind not in ORDERED_TYPES | {"text"}:
        return f"{item.label} cannot be more or less than a value; use is or is not."
    numeric_test = kind in NUMERIC_TYPES and operator in VALUE_OPERATORS - {"contains"}
    if numeric_test and to_decimal(expected) is None:
        return f"{item.label} is a number: give a number such as 20 or 12.5."
    if kind in NUMERIC_TYPES and operator == "contains":
        return f"{item.label} is a number; use is, is not, more than or less than."
    boolean_test = kind == "boolean" and operator in VALUE_OPERATORS
    if boolean_test and (operator not in {"eq", "ne"} or _boolean(expected) is None):
        return f"{item.label} is yes or no: use is / is not with yes or no."
    if kind in {"date", "datetime"} and operator in {"eq", "ne", "gt", "lt"}:
        try:
            date.fromisoformat(expected.strip()[:10])
        except ValueError:
            return f"{item.label} is a date: give it as 2026-12-31."
    if kind == "picklist" and operator in {"eq", "ne"}:
        options = [str(o).casefold() for o in getattr(item, "options", ()) or ()]
        if options and _fold(expected) not in options:
            shown = ", ".join(getattr(item, "options", ()))
            return f"{item.label} has no option {expected!r}; choose one of: {shown}."
    return None


def now_utc() -> datetime:
    return datetime.now(UTC)
