"""Payload templates (Parameters, ResultSelector, ItemSelector): keys ending in ``.$`` are evaluated."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kfaas.saga._errors import RUNTIME, StatesError
from kfaas.saga._intrinsics import compile_intrinsic, is_intrinsic
from kfaas.saga._paths import PathSyntaxError, compile_path

__all__ = ["Template", "compile_template"]

# -- payload templates (Parameters, ResultSelector, ItemSelector) -------------------------------------------

Evaluator = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class Template:
    """A compiled payload template: ``apply(data, context)`` builds the JSON it describes."""

    build: Evaluator

    def apply(self, data: Any, context: Any) -> Any:
        return self.build(data, context)


def compile_template(template: Any, field: str = "Parameters") -> Template:
    """Keys ending in ``.$`` take the value of a path or an intrinsic function; everything else is literal."""
    return Template(_compile_node(template, field))


def _compile_node(node: Any, where: str) -> Evaluator:
    if isinstance(node, dict):
        parts: list[tuple[str, Evaluator]] = []
        for key, value in node.items():
            if isinstance(key, str) and key.endswith(".$"):
                parts.append((key[:-2], _compile_dynamic(key, value, where)))
            else:
                parts.append((key, _compile_node(value, f"{where}.{key}")))

        def build_object(data: Any, context: Any) -> Any:
            return {k: f(data, context) for k, f in parts}

        return build_object
    if isinstance(node, list):
        items = [_compile_node(v, f"{where}[{i}]") for i, v in enumerate(node)]

        def build_list(data: Any, context: Any) -> Any:
            return [f(data, context) for f in items]

        return build_list
    return lambda data, context: node


def _compile_dynamic(key: str, value: Any, where: str) -> Evaluator:
    if not isinstance(value, str):
        raise PathSyntaxError(f"{where}: the value of {key!r} must be a path or an intrinsic function")
    if is_intrinsic(value):
        return compile_intrinsic(value)
    path = compile_path(value)

    def read(data: Any, context: Any) -> Any:
        try:
            return path.get(data, context)
        except StatesError as exc:
            raise StatesError(
                RUNTIME,
                f"The JSONPath '{value}' specified for the field '{key}' could not be found in the input "
                f"({exc.cause})",
            ) from None

    return read
