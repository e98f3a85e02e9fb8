"""Formulas: small, safe expressions over a record's fields.

The syntax is a subset of Python expressions: field names, numbers, 'text', True,
False, None, + - * / %, comparisons, ``and or not``, ``x if condition else y`` and a
few functions. It is parsed once into an AST and evaluated by walking that AST with a
whitelist, never with ``eval``: no attributes, no subscripts, no other names.
"""

from __future__ import annotations

import ast
import functools
import operator
import re
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from bastion.data.catalog import FieldMeta
from bastion.data.values import (
    FALSE_WORDS,
    MAX_INTEGER,
    TRUE_WORDS,
    Money,
    RecordLink,
    is_empty,
    to_text,
)


class FormulaError(ValueError):
    """A formula that cannot be parsed or evaluated; the message says why."""


def _number(value: Any) -> Any:
    if isinstance(value, Money):
        return value.amount
    if isinstance(value, float):
        return Decimal(str(value))
    return value


def _days_between(start: Any, end: Any) -> int | None:
    if start is None or end is None:
        return None
    if isinstance(start, datetime):
        start = start.date()
    if isinstance(end, datetime):
        end = end.date()
    return (end - start).days


def _round(value: Any, digits: int = 0) -> Any:
    value = _number(value)
    if value is None:
        return None
    return Decimal(value).quantize(Decimal(1).scaleb(-int(digits)))


def _concat(*parts: Any) -> str:
    return "".join("" if part is None else str(part) for part in parts)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "concat": _concat,
    "lower": lambda text: None if text is None else str(text).lower(),
    "upper": lambda text: None if text is None else str(text).upper(),
    "length": lambda text: 0 if text is None else len(str(text)),
    "is_empty": is_empty,
    "coalesce": lambda *values: next((v for v in values if not is_empty(v)), None),
    "round": _round,
    "abs": lambda value: None if value is None else abs(_number(value)),
    "min": lambda *values: min((_number(v) for v in values if v is not None), default=None),
    "max": lambda *values: max((_number(v) for v in values if v is not None), default=None),
    "today": lambda: datetime.now(UTC).date(),
    "now": lambda: datetime.now(UTC),
    "days_between": _days_between,
    "contains": lambda haystack, needle: (
        haystack is not None and needle is not None and str(needle) in haystack
    ),
}

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
}
_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_ALLOWED = (
    ast.Expression,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.BinOp,
    ast.UnaryOp,
    ast.USub,
    ast.UAdd,
    ast.Not,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.Compare,
    ast.IfExp,
    ast.Call,
    *_BINARY,
    *_COMPARE,
)
MAX_LENGTH = 2000
#: Evaluation recurses once per level; "1+1+...+1" within MAX_LENGTH is ~1000 deep.
MAX_DEPTH = 100


def _depth(tree: ast.AST) -> int:
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in ast.iter_child_nodes(node))
    return deepest


@functools.lru_cache(maxsize=512)
def compile_formula(source: str) -> ast.Expression:
    if len(source) > MAX_LENGTH:
        raise FormulaError(f"A formula is limited to {MAX_LENGTH} characters.")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise FormulaError(f"The formula is not valid: {exc.msg}.") from None
    if _depth(tree) > MAX_DEPTH:
        raise FormulaError(f"A formula may nest at most {MAX_DEPTH} levels deep.")
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise FormulaError(f"A formula may not use {type(node).__name__}.")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                raise FormulaError(f"Unknown function; use one of {', '.join(sorted(FUNCTIONS))}.")
            if node.keywords:
                raise FormulaError("Formula functions take no keyword arguments.")
        if isinstance(node, ast.Constant) and isinstance(node.value, float):
            node.value = Decimal(repr(node.value))  # exact arithmetic for money
    return tree


def referenced_names(source: str) -> set[str]:
    tree = compile_formula(source)
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)}  # type: ignore[union-attr]
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - called


def check_formula(source: str, field_names: Iterable[str]) -> None:
    """Refuse a formula that does not parse or names a field the object does not have."""
    unknown = referenced_names(source) - set(field_names) - {"True", "False", "None"}
    if unknown:
        raise FormulaError(f"The formula names unknown fields: {', '.join(sorted(unknown))}.")


def _formula_inputs(formulas: tuple[tuple[str, str], ...]) -> dict[str, set[str]]:
    """Each formula's name -> the other formulas it reads."""
    names = {name for name, _ in formulas}
    return {name: referenced_names(source) & names for name, source in formulas}


@functools.lru_cache(maxsize=256)
def formula_order(formulas: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """(name, source) pairs -> names in an order where inputs come first.

    A formula on a cycle, or reading one, is left out: it has no value (None).
    """
    waiting = _formula_inputs(formulas)
    order: list[str] = []
    while True:
        ready = [name for name, inputs in waiting.items() if not inputs & waiting.keys()]
        if not ready:
            return tuple(order)
        order += ready
        for name in ready:
            del waiting[name]


def formula_cycle(name: str, formulas: Iterable[tuple[str, str]]) -> bool:
    """True when formula ``name`` reads itself, directly or through other formulas."""
    inputs = _formula_inputs(tuple(formulas))
    seen: set[str] = set()
    stack = list(inputs.get(name, ()))
    while stack:
        current = stack.pop()
        if current == name:
            return True
        if current not in seen:
            seen.add(current)
            stack.extend(inputs.get(current, ()))
    return False


def evaluate(source: str, values: dict[str, Any]) -> Any:
    """The formula's value for a record; None when an input is empty or arithmetic fails."""
    tree = compile_formula(source)
    try:
        return _eval(tree.body, values)
    except (TypeError, ArithmeticError, InvalidOperation, ValueError):
        return None


def _eval(node: ast.AST, values: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        value = values.get(node.id)
        if isinstance(value, RecordLink):
            return str(value)
        return _number(value)
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, values), _eval(node.right, values)
        if left is None or right is None:
            return None
        if isinstance(left, str) or isinstance(right, str):
            # Text only joins: 'x' * n or '%999999999d' % n would allocate without bound.
            return f"{left}{right}" if isinstance(node.op, ast.Add) else None
        if isinstance(left, int) and isinstance(right, Decimal):
            left = Decimal(left)
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, values)
        if isinstance(node.op, ast.Not):
            return not operand
        if operand is None:
            return None
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_eval(item, values) for item in node.values)
        return any(_eval(item, values) for item in node.values)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, values)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, values)
            if (left is None or right is None) and not isinstance(op, ast.Eq | ast.NotEq):
                return False
            if (
                isinstance(left, datetime)
                and isinstance(right, date)
                and not isinstance(right, datetime)
            ):
                left = left.date()
            elif isinstance(right, datetime) and type(left) is date:
                right = right.date()
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        branch = node.body if _eval(node.test, values) else node.orelse
        return _eval(branch, values)
    if isinstance(node, ast.Call):
        args = [_eval(arg, values) for arg in node.args]
        return FUNCTIONS[node.func.id](*args)  # type: ignore[union-attr]
    raise FormulaError(f"A formula may not use {type(node).__name__}.")


# --------------------------------------------------------------------------- result types


def evaluate_as(source: str, values: dict[str, Any], formula_type: str, scale: int = 2) -> Any:
    """The formula's value converted to its declared type (see ``conform``)."""
    return conform(evaluate(source, values), formula_type, scale)


def conform(value: Any, formula_type: str, scale: int = 2) -> Any:
    """``value`` as a value of ``formula_type``, or None when it is not one.

    A formula's expression may compute anything ("length(tags) + title" is text); what
    the API, the pages and the OpenAPI document promise is the declared type. A value
    is converted when that is exact or a plain rounding (2.5 -> 3 for an integer, a
    decimal to its scale, half up as people round money); otherwise it is empty rather
    than of the wrong type.
    """
    if is_empty(value):
        return None
    convert = _CONVERTERS.get(formula_type)
    if convert is None:  # not a declarable type (definitions refuse others): leave as is
        return value
    try:
        return convert(value, scale)
    except (TypeError, ValueError, ArithmeticError):
        return None


def _as_decimal(value: Any) -> Decimal | None:
    """A finite Decimal for a number or a number written as text; None otherwise."""
    if isinstance(value, Money):
        value = value.amount
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        value = Decimal(repr(value))
    elif isinstance(value, str):
        value = Decimal(value.strip().replace(",", ""))
    if not isinstance(value, int | Decimal):
        return None
    number = Decimal(value)
    return number if number.is_finite() else None


def _to_integer(value: Any, _scale: int) -> int | None:
    if type(value) is int:
        number: Decimal | None = Decimal(value)
    elif isinstance(value, str) and not _INTEGER_TEXT.fullmatch(value.strip().replace(",", "")):
        return None  # "2div", "1e9999": not a whole number a person wrote
    else:
        number = _as_decimal(value)
    if number is None:
        return None
    whole = int(number.to_integral_value(rounding=ROUND_HALF_UP))
    return whole if abs(whole) <= MAX_INTEGER else None


def _to_decimal(value: Any, scale: int) -> Decimal | None:
    number = _as_decimal(value)
    if number is None:
        return None
    return number.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)


def _to_text(value: Any, _scale: int) -> str | None:
    text = value if isinstance(value, str) else to_text(_TEXT_META, value)
    return text.strip() or None


def _to_boolean(value: Any, _scale: int) -> bool | None:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower() if isinstance(value, str | int) else ""
    if word in TRUE_WORDS:
        return True
    return False if word in FALSE_WORDS else None


def _to_date(value: Any, _scale: int) -> date | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value.strip()) == 10:
        return date.fromisoformat(value.strip())
    return None


def _to_datetime(value: Any, _scale: int) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # formulas compute in UTC, as today() and now()
    return moment.astimezone(UTC)


_INTEGER_TEXT = re.compile(r"[+-]?[0-9]{1,19}(?:\.0*)?")
#: to_text reads only the value; it needs some field for its signature.
_TEXT_META = FieldMeta("formula", "text", "Formula")
_CONVERTERS: dict[str, Callable[[Any, int], Any]] = {
    "integer": _to_integer,
    "decimal": _to_decimal,
    "text": _to_text,
    "boolean": _to_boolean,
    "date": _to_date,
    "datetime": _to_datetime,
}
