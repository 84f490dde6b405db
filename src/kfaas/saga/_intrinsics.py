"""The intrinsic functions of the States Language (``States.Format('{}', $.a)`` and the rest).

No Python library implements them, so the parser and the functions are written here: a recursive-descent
parser for the call syntax (string literals with the ``\\'``, ``\\{``, ``\\}``, ``\\\\`` escapes, numbers,
``true``/``false``/``null``, paths, nested calls) that compiles a call once into a closure, and each function
as AWS documents and records it (``States.Format`` renders objects as Java maps, ``States.MathAdd`` rounds
each argument half-up, ``States.StringSplit`` splits on every character of the delimiter, ...).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import uuid
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from kfaas.saga._errors import RUNTIME, StatesError
from kfaas.saga._paths import PathSyntaxError, compile_path

__all__ = ["FUNCTIONS", "compile_intrinsic", "is_intrinsic"]

Evaluator = Callable[[Any, Any], Any]


def is_intrinsic(text: str) -> bool:
    return isinstance(text, str) and text.startswith("States.") and text.rstrip().endswith(")")


def compile_intrinsic(text: str) -> Evaluator:
    """Compile ``States.Name(args...)``; raises PathSyntaxError naming the problem."""
    parser = _Parser(text)
    node = parser.call()
    parser.skip_space()
    if parser.pos != len(text):
        raise PathSyntaxError(f"{text!r}: unexpected {text[parser.pos :]!r} after the intrinsic function")
    return node


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> PathSyntaxError:
        return PathSyntaxError(f"{self.text!r}: {what} at character {self.pos + 1}")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\n":
            self.pos += 1

    def call(self) -> Evaluator:
        start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos].isalnum() or self.text[self.pos] in "._"):
            self.pos += 1
        name = self.text[start : self.pos]
        if name not in FUNCTIONS:
            known = ", ".join(sorted(FUNCTIONS))
            raise PathSyntaxError(f"{self.text!r}: unknown intrinsic function {name!r} (known: {known})")
        if self.pos >= len(self.text) or self.text[self.pos] != "(":
            raise self.fail("expected '('")
        self.pos += 1
        args: list[Evaluator] = []
        literals: list[bool] = []
        self.skip_space()
        if self.pos < len(self.text) and self.text[self.pos] == ")":
            self.pos += 1
        else:
            while True:
                self.skip_space()
                literals.append(self.pos < len(self.text) and self.text[self.pos] == "'")
                args.append(self.argument())
                self.skip_space()
                if self.pos >= len(self.text):
                    raise self.fail("missing ')'")
                char = self.text[self.pos]
                self.pos += 1
                if char == ")":
                    break
                if char != ",":
                    raise self.fail(f"expected ',' or ')' but found {char!r}")
        function = FUNCTIONS[name]
        # string literals keep \\{ and \\} only where braces mean something: the template of States.Format
        unescape = [lit and not (name == "States.Format" and i == 0) for i, lit in enumerate(literals)]

        def evaluate(data: Any, context: Any) -> Any:
            values = [a(data, context) for a in args]
            for i, flag in enumerate(unescape):
                if flag:
                    values[i] = _unescape(values[i])
            try:
                return function(*values)
            except StatesError:
                raise
            except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
                raise StatesError(RUNTIME, f"{name} failed: {exc}") from None

        return evaluate

    def argument(self) -> Evaluator:
        text, pos = self.text, self.pos
        if pos >= len(text):
            raise self.fail("missing argument")
        char = text[pos]
        if char == "'":
            value = self.string()
            return lambda data, context: value
        if char == "$":
            return self.path()
        if text.startswith("States.", pos):
            return self.call()
        end = pos
        while end < len(text) and text[end] not in ",) \t\n":
            end += 1
        word = text[pos:end]
        self.pos = end
        if word in ("true", "false", "null"):
            literal = json.loads(word)
            return lambda data, context: literal
        try:
            number = json.loads(word)
        except ValueError:
            raise self.fail(f"unexpected {word!r}") from None
        if not isinstance(number, int | float):
            raise self.fail(f"unexpected {word!r}")
        return lambda data, context: number

    def string(self) -> str:
        self.pos += 1
        out: list[str] = []
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char == "\\" and self.pos + 1 < len(text):
                # escaped quote, brace or backslash; kept escaped for braces so Format can tell them apart
                nxt = text[self.pos + 1]
                out.append("\\" + nxt if nxt in "{}" else nxt)
                self.pos += 2
                continue
            if char == "'":
                self.pos += 1
                return "".join(out)
            out.append(char)
            self.pos += 1
        raise self.fail("unterminated string literal")

    def path(self) -> Evaluator:
        text = self.text
        start = self.pos
        depth = 0
        quote = ""
        while self.pos < len(text):
            char = text[self.pos]
            if quote:
                if char == quote:
                    quote = ""
            elif char in "'\"":
                quote = char
            elif char in "[(":
                depth += 1
            elif char in "])":
                if depth == 0:
                    break
                depth -= 1
            elif char == "," and depth == 0:
                break
            self.pos += 1
        source = text[start : self.pos].strip()
        path = compile_path(source)

        def read(data: Any, context: Any) -> Any:
            return path.get(data, context)

        return read


def _unescape(text: str) -> str:
    return text.replace("\\{", "{").replace("\\}", "}")


# -- the functions -----------------------------------------------------------------------------------


def _java(value: Any) -> str:  # noqa: PLR0911 (one rendering per JSON type)
    """How Step Functions (Java) renders a value inside States.Format."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value) if not value.is_integer() or abs(value) >= 1e7 else f"{value:.1f}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_java(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_java(v) for v in value) + "]"
    return str(value)


def _format(template: str, *args: Any) -> str:
    if not isinstance(template, str):
        raise StatesError(RUNTIME, "States.Format: the first argument must be a string")
    out: list[str] = []
    i = used = 0
    while i < len(template):
        if template.startswith("\\{", i) or template.startswith("\\}", i):
            out.append(template[i + 1])
            i += 2
        elif template.startswith("{}", i):
            if used >= len(args):
                raise StatesError(RUNTIME, "States.Format: more placeholders {} than arguments")
            out.append(_java(args[used]))
            used += 1
            i += 2
        else:
            out.append(template[i])
            i += 1
    if used != len(args):
        raise StatesError(RUNTIME, f"States.Format: {len(args)} arguments for {used} placeholders")
    return "".join(out)


def _string_to_json(text: Any) -> Any:
    if not isinstance(text, str):
        raise StatesError(RUNTIME, "States.StringToJson: the argument must be a string")
    if not text.strip():
        return None
    return json.loads(text)


def _json_to_string(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _array(*values: Any) -> list[Any]:
    return list(values)


def _int_arg(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
        raise StatesError(RUNTIME, f"{name} must be an integer, not {json.dumps(value)}")
    return int(value)


def _array_partition(array: Any, size: Any) -> list[Any]:
    if not isinstance(array, list):
        raise StatesError(RUNTIME, "States.ArrayPartition: the first argument must be an array")
    n = _int_arg(size, "States.ArrayPartition: the chunk size")
    if n <= 0:
        raise StatesError(RUNTIME, "States.ArrayPartition: the chunk size must be positive")
    return [array[i : i + n] for i in range(0, len(array), n)]


def _array_contains(array: Any, value: Any) -> bool:
    if not isinstance(array, list):
        raise StatesError(RUNTIME, "States.ArrayContains: the first argument must be an array")
    return any(_json_equal(item, value) for item in array)


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _array_range(start: Any, end: Any, step: Any) -> list[int]:
    a = _int_arg(start, "States.ArrayRange: start")
    b = _int_arg(end, "States.ArrayRange: end")
    s = _int_arg(step, "States.ArrayRange: step")
    if s == 0:
        raise StatesError(RUNTIME, "States.ArrayRange: the step must not be 0")
    out = list(range(a, b + (1 if s > 0 else -1), s))
    if len(out) > 1000:
        raise StatesError(RUNTIME, "States.ArrayRange: more than 1000 elements")
    return out


def _array_get_item(array: Any, index: Any) -> Any:
    if not isinstance(array, list):
        raise StatesError(RUNTIME, "States.ArrayGetItem: the first argument must be an array")
    return array[_int_arg(index, "States.ArrayGetItem: the index")]


def _array_length(array: Any) -> int:
    if not isinstance(array, list):
        raise StatesError(RUNTIME, "States.ArrayLength: the argument must be an array")
    return len(array)


def _array_unique(array: Any) -> list[Any]:
    if not isinstance(array, list):
        raise StatesError(RUNTIME, "States.ArrayUnique: the argument must be an array")
    out: list[Any] = []
    for item in array:
        if not any(_json_equal(item, seen) for seen in out):
            out.append(item)
    return out


def _base64_encode(text: Any) -> str:
    if not isinstance(text, str):
        raise StatesError(RUNTIME, "States.Base64Encode: the argument must be a string")
    return base64.b64encode(text.encode()).decode()


def _base64_decode(text: Any) -> str:
    if not isinstance(text, str):
        raise StatesError(RUNTIME, "States.Base64Decode: the argument must be a string")
    return base64.b64decode(text, validate=True).decode()


_HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}


def _hash(data: Any, algorithm: Any) -> str:
    if algorithm not in _HASHES:
        raise StatesError(RUNTIME, f"States.Hash: the algorithm must be one of {', '.join(_HASHES)}")
    text = data if isinstance(data, str) else _json_to_string(data)
    return hashlib.new(_HASHES[algorithm], text.encode()).hexdigest()


def _json_merge(a: Any, b: Any, deep: Any) -> Any:
    if not isinstance(a, dict) or not isinstance(b, dict):
        raise StatesError(RUNTIME, "States.JsonMerge: both values must be objects")
    if deep is not False:
        raise StatesError(RUNTIME, "States.JsonMerge: only a shallow merge (false) is supported, as on AWS")
    return {**a, **b}


def _math_random(start: Any, end: Any, seed: Any = None) -> int:
    a = _int_arg(start, "States.MathRandom: start")
    b = _int_arg(end, "States.MathRandom: end")
    rng = (
        random.Random(_int_arg(seed, "States.MathRandom: seed"))  # noqa: S311 (not for secrets)
        if seed is not None
        else random.SystemRandom()
    )
    return rng.randrange(a, b) if b > a else a


def _round_half_up(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StatesError(RUNTIME, f"{name} must be a number, not {json.dumps(value)}")
    return int(Decimal(str(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _math_add(a: Any, b: Any) -> int:
    return _round_half_up(a, "States.MathAdd: the first value") + _round_half_up(
        b, "States.MathAdd: the second value"
    )


def _string_split(text: Any, delimiters: Any) -> list[str]:
    if not isinstance(text, str) or not isinstance(delimiters, str):
        raise StatesError(RUNTIME, "States.StringSplit: both arguments must be strings")
    pieces = [text]
    for char in delimiters:
        pieces = [p for piece in pieces for p in piece.split(char)]
    return [p for p in pieces if p]


def _uuid() -> str:
    return str(uuid.uuid4())


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "States.Format": _format,
    "States.StringToJson": _string_to_json,
    "States.JsonToString": _json_to_string,
    "States.Array": _array,
    "States.ArrayPartition": _array_partition,
    "States.ArrayContains": _array_contains,
    "States.ArrayRange": _array_range,
    "States.ArrayGetItem": _array_get_item,
    "States.ArrayLength": _array_length,
    "States.ArrayUnique": _array_unique,
    "States.Base64Encode": _base64_encode,
    "States.Base64Decode": _base64_decode,
    "States.Hash": _hash,
    "States.JsonMerge": _json_merge,
    "States.MathRandom": _math_random,
    "States.MathAdd": _math_add,
    "States.StringSplit": _string_split,
    "States.UUID": _uuid,
}
