"""JSONPath as the States Language uses it: Paths, Reference Paths, payload templates and ``$$``.

Parsing is python-jsonpath's (RFC 9535, with the filter syntax ``[?(@.x == 1)]`` ASL definitions use). What
ASL adds on top, written here: a *definite* path (names and indexes only, RFC 9535's "singular query") gives
one value and fails with ``States.Runtime`` when it finds nothing, an indefinite one (filters, wildcards,
slices, descendants) gives the list of matches, as Jayway JsonPath (AWS's implementation) does; ``$$`` reads
the context object; a Reference Path (ResultPath) is written into a copy of the input. Definite paths are
evaluated by walking the parsed names and indexes directly: the per-transition cost stays a few microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jsonpath
from jsonpath.exceptions import JSONPathError
from jsonpath.selectors import IndexSelector, NameSelector

from kfaas.saga._errors import RUNTIME, StatesError

__all__ = [
    "ROOT_PATH",
    "Path",
    "PathSyntaxError",
    "compile_path",
    "key_text",
    "set_path",
]

Key = str | int


class PathSyntaxError(ValueError):
    """A path that is not valid JSONPath (or not a Reference Path where one is required)."""


def key_text(keys: tuple[Key, ...]) -> str:
    """Jayway's spelling of a path's keys: ``$['a'][0]``."""
    return "$" + "".join(f"[{k}]" if isinstance(k, int) else f"['{k}']" for k in keys)


@dataclass(frozen=True)
class Path:
    """A compiled Path: ``get(data, context)`` applies it."""

    text: str
    context: bool  # starts with $$: read from the context object
    keys: tuple[Key, ...] | None  # definite path: its names and indexes
    query: Any  # indefinite path: the python-jsonpath query

    @property
    def definite(self) -> bool:
        return self.keys is not None

    def get(self, data: Any, context: Any = None) -> Any:
        root = context if self.context else data
        if self.keys is None:
            return list(self.query.findall(root))
        value = root
        for i, key in enumerate(self.keys):
            if isinstance(key, int):
                if not isinstance(value, list) or not -len(value) <= key < len(value):
                    raise StatesError(
                        RUNTIME,
                        f"Invalid path '{self.text}' : Missing property in path {key_text(self.keys[: i + 1])}",
                    )
                value = value[key]
            else:
                if not isinstance(value, dict) or key not in value:
                    raise StatesError(
                        RUNTIME,
                        f"Invalid path '{self.text}' : Missing property in path {key_text(self.keys[: i + 1])}",
                    )
                value = value[key]
        return value

    def exists(self, data: Any, context: Any = None) -> bool:
        """For ``IsPresent``: a definite path finds a value (null counts); an indefinite one matches something."""
        if self.keys is None:
            return bool(self.get(data, context))
        try:
            self.get(data, context)
        except StatesError:
            return False
        return True


def compile_path(text: str, *, reference: bool = False) -> Path:
    """Compile an ASL Path (``$...`` or ``$$...``); ``reference`` requires a Reference Path (ResultPath)."""
    if not isinstance(text, str) or not text.startswith("$"):
        raise PathSyntaxError(f"{text!r} is not a JSONPath (it must start with '$')")
    context = text.startswith("$$")
    source = text[1:] if context else text
    try:
        query = jsonpath.compile(source)
    except JSONPathError as exc:
        raise PathSyntaxError(f"{text!r} is not a valid JSONPath: {str(exc).splitlines()[0]}") from None
    keys = _definite_keys(query)
    if reference and (keys is None or context):
        raise PathSyntaxError(
            f"{text!r} is not a Reference Path: only names and indexes ($.a.b, $['c'], $[0]) can be written to"
        )
    return Path(text, context, keys, None if keys is not None else query)


def _definite_keys(query: Any) -> tuple[Key, ...] | None:
    segments = getattr(query, "segments", None)
    if segments is None or not query.singular_query():
        return None
    keys: list[Key] = []
    for segment in segments:
        if type(segment).__name__ != "JSONPathChildSegment" or len(segment.selectors) != 1:
            return None
        selector = segment.selectors[0]
        if isinstance(selector, NameSelector):
            keys.append(selector.name)
        elif isinstance(selector, IndexSelector):
            keys.append(selector.index)
        else:
            return None
    return tuple(keys)


ROOT_PATH = compile_path("$")


def set_path(data: Any, path: Path, value: Any) -> Any:
    """``data`` with ``value`` written at a Reference Path; missing objects on the way are created.

    Copy-on-write: the objects along the path are copied, everything else is shared with ``data``.
    """
    assert path.keys is not None
    if not path.keys:
        return value
    return _set(data, path.keys, value, path.text)


def _set(node: Any, keys: tuple[Key, ...], value: Any, text: str) -> Any:
    key, rest = keys[0], keys[1:]
    if isinstance(key, int):
        if not isinstance(node, list) or not -len(node) <= key < len(node):
            raise StatesError(RUNTIME, f"Invalid path '{text}': cannot write index {key} of {_kind(node)}")
        out_list = list(node)
        out_list[key] = _set(node[key], rest, value, text) if rest else value
        return out_list
    if node is None:
        node = {}
    if not isinstance(node, dict):
        raise StatesError(
            RUNTIME,
            f"Invalid path '{text}': the ResultPath needs an object where the input has {_kind(node)}",
        )
    out = dict(node)
    out[key] = _set(node.get(key), rest, value, text) if rest else value
    return out


def _kind(value: Any) -> str:
    return (
        "null" if value is None else type(value).__name__.replace("dict", "object").replace("list", "array")
    )
