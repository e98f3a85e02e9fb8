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
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bastion.data.values import Money, RecordLink, is_empty


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
