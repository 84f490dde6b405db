"""Choice rules compiled into predicates: ``compile_rule(rule)(data, context) -> bool``.

A comparison whose Variable holds another type than the operator compares is false, not an error (AWS
records this); a Variable that finds nothing is a ``States.Runtime`` error, except for ``IsPresent``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kfaas.saga._errors import RUNTIME, StatesError
from kfaas.saga._paths import compile_path

__all__ = ["compile_rule"]

Rule = Callable[[Any, Any], bool]
_CMP: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": operator.eq,
    "LessThan": operator.lt,
    "GreaterThan": operator.gt,
    "LessThanEquals": operator.le,
    "GreaterThanEquals": operator.ge,
}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


_KINDS: dict[str, tuple[Callable[[Any], bool], Callable[[Any], Any]]] = {
    "String": (lambda v: isinstance(v, str), lambda v: v),
    "Numeric": (_is_number, lambda v: v),
    "Boolean": (lambda v: isinstance(v, bool), lambda v: v),
    "Timestamp": (lambda v: _timestamp(v) is not None, _timestamp),
}
_TESTS: dict[str, Callable[[Any], bool]] = {
    "IsNull": lambda v: v is None,
    "IsNumeric": _is_number,
    "IsString": lambda v: isinstance(v, str),
    "IsBoolean": lambda v: isinstance(v, bool),
    "IsTimestamp": lambda v: _timestamp(v) is not None,
}
_OPERATOR = re.compile(
    r"^(String|Numeric|Boolean|Timestamp)(Equals|LessThan|GreaterThan|LessThanEquals|GreaterThanEquals)(Path)?$"
)


def compile_rule(rule: dict[str, Any]) -> Rule:  # noqa: PLR0911, PLR0912 (one branch per rule kind)
    if "And" in rule or "Or" in rule:
        combinator = "And" if "And" in rule else "Or"
        parts_raw = rule[combinator]
        if not isinstance(parts_raw, list) or not parts_raw:
            raise ValueError(f"{combinator} must be a non-empty array of rules")
        parts = [compile_rule(p) for p in parts_raw]
        if combinator == "And":
            return lambda data, ctx: all(p(data, ctx) for p in parts)
        return lambda data, ctx: any(p(data, ctx) for p in parts)
    if "Not" in rule:
        if not isinstance(rule["Not"], dict):
            raise ValueError("Not must be one rule")
        inner = compile_rule(rule["Not"])
        return lambda data, ctx: not inner(data, ctx)
    if "Variable" not in rule:
        raise ValueError("a choice rule needs Variable (or And, Or, Not)")
    variable = compile_path(rule["Variable"])
    ops = [k for k in rule if k not in ("Variable", "Next", "Comment")]
    if len(ops) != 1:
        raise ValueError(f"a choice rule needs exactly one comparison, found {ops or 'none'}")
    op = ops[0]
    value = rule[op]

    def read(data: Any, ctx: Any) -> Any:
        try:
            return variable.get(data, ctx)
        except StatesError:
            raise StatesError(
                RUNTIME,
                f"Invalid path '{variable.text}': The choice state's condition path references an undefined value.",
            ) from None

    if op == "IsPresent":
        want = bool(value)
        return lambda data, ctx: variable.exists(data, ctx) is want
    if op in _TESTS:
        test, want = _TESTS[op], bool(value)
        return lambda data, ctx: test(read(data, ctx)) is want
    if op in ("StringMatches",):
        if not isinstance(value, str):
            raise ValueError("StringMatches needs a string pattern")
        pattern = _wildcard(value)
        return lambda data, ctx: isinstance(v := read(data, ctx), str) and pattern.fullmatch(v) is not None
    match = _OPERATOR.match(op)
    if match is None:
        raise ValueError(f"unknown comparison operator {op!r}")
    kind, comparison, is_path = match.groups()
    accepts, convert = _KINDS[kind]
    cmp = _CMP[comparison]
    if kind == "Boolean" and comparison != "Equals":
        raise ValueError(f"unknown comparison operator {op!r}")
    if is_path:
        other = compile_path(value)

        def by_path(data: Any, ctx: Any) -> bool:
            left = read(data, ctx)
            try:
                right = other.get(data, ctx)
            except StatesError:
                raise StatesError(
                    RUNTIME,
                    f"Invalid path '{other.text}': The choice state's condition path references an undefined value.",
                ) from None
            return accepts(left) and accepts(right) and bool(cmp(convert(left), convert(right)))

        return by_path
    if not accepts(value):
        raise ValueError(f"{op} needs {kind.lower()} value, not {value!r}")
    constant = convert(value)
    return lambda data, ctx: accepts(v := read(data, ctx)) and bool(cmp(convert(v), constant))


def _wildcard(pattern: str) -> re.Pattern[str]:
    """``*`` matches any run of characters; ``\\*`` is a literal star (the only escape ASL defines)."""
    parts = re.split(r"(\\\\|\\\*|\*)", pattern)
    regex = ""
    for part in parts:
        if part == "*":
            regex += ".*"
        elif part == "\\*":
            regex += re.escape("*")
        elif part == "\\\\":
            regex += re.escape("\\")
        else:
            regex += re.escape(part)
    return re.compile(regex, re.DOTALL)
