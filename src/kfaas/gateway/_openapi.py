"""One OpenAPI document for the whole API: the HTTP functions' own documents, merged as the gateway routes them.

When: on demand. The first ``GET /openapi.json`` fetches ``GET /openapi.json`` of every HTTP function at
once (a FastAPI app under ``kfaas serve`` serves its own), each within ``FETCH_TIMEOUT``; a document is
kept for ``ttl`` seconds (60), a failure for ``FAILURE_TTL`` (5, or ``ttl`` when shorter), so a function
that was down is asked again soon. Nothing is fetched at start-up: on Knative that would wake every function scaled to zero.

What: every operation of a function's document whose path and method the function's description routes
(the path as the function names its parameters; an operation the gateway does not route is left out). A
route whose function has no document, or is down, still appears, with its path parameters and the
gateway's own answers, and says why its details are missing; ``x-kfaas.functions`` tells, per function,
``ok``, ``unavailable: <reason>`` or ``no document: <reason>``. Components (schemas, responses,
parameters...) that several functions define alike are kept once; ones that share a name but differ are
renamed ``<function>.<name>`` in every function that defines them, their ``$ref``s rewritten, and listed in
``x-kfaas.renamed`` (nothing is silently overwritten). Operation ids that clash get the function's name in
front. Every operation also declares the answers the gateway itself gives (408, 413, 431, 502, 504) with the
``kfaas.GatewayError`` schema.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from kfaas.base.version import __version__

if TYPE_CHECKING:
    import httpx


class GatewayRoute(Protocol):
    """What the merge needs of a route (kfaas.gateway.GatewayRoute)."""

    @property
    def template(self) -> str: ...

    @property
    def methods(self) -> frozenset[str]: ...

    @property
    def function(self) -> str: ...


__all__ = ["FAILURE_TTL", "FETCH_TIMEOUT", "ApiDocument", "merge"]

log = logging.getLogger("kfaas.gateway")

FETCH_TIMEOUT = 5.0
FAILURE_TTL = 5.0
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_PARAM = re.compile(r"\{([^}/]+)\}")
_GATEWAY_ERROR = "kfaas.GatewayError"
_GATEWAY_ANSWERS = {
    "408": "The request body did not arrive in time (the gateway's limit)",
    "413": "The request body is larger than the gateway accepts",
    "431": "Too many header fields, or too large ones",
    "502": "The function did not answer (down or refusing connections)",
    "504": "The function did not answer within its timeout",
}


@dataclass
class _Fetched:
    at: float
    document: dict[str, Any] | None
    problem: str  # "" when document is set


def _key(path: str) -> str:
    """A path with its parameter names taken out: ``/users/{user_id}`` and ``/users/{id}`` are one path."""
    return _PARAM.sub("{}", path.rstrip("/") or "/")


def _gateway_responses() -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{_GATEWAY_ERROR}"}
    return {
        status: {"description": text, "content": {"application/json": {"schema": dict(ref)}}}
        for status, text in _GATEWAY_ANSWERS.items()
    }


def _rewrite_refs(node: Any, renames: dict[str, str]) -> Any:
    """``node`` with every ``$ref`` of ``renames`` (old ref -> new ref) replaced, as a new object."""
    if isinstance(node, dict):
        return {
            key: (
                renames.get(value, value)
                if key == "$ref" and isinstance(value, str)
                else _rewrite_refs(value, renames)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(item, renames) for item in node]
    return node


def _stub(method: str, path: str, function: str, why: str) -> dict[str, Any]:
    """An operation for a route whose function's document is missing: what the gateway knows of it."""
    return {
        "summary": f"{method.upper()} {path} ({function})",
        "description": f"Served by the function {function}. Its OpenAPI document is missing here: {why}.",
        "operationId": f"{function}.{method}{_key(path).replace('/', '_').replace('{}', 'param')}",
        "tags": [function],
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PARAM.findall(path)
        ],
        "responses": {"default": {"description": "The function's answer (not described: no document)"}},
    }


def _rename_path_parameters(operation: dict[str, Any], theirs: str, ours: str) -> dict[str, Any]:
    """``operation`` of path ``theirs`` put under ``ours`` (the same path, other parameter names)."""
    names = dict(zip(_PARAM.findall(theirs), _PARAM.findall(ours), strict=True))
    if all(a == b for a, b in names.items()):
        return operation
    operation = copy.deepcopy(operation)
    for parameter in operation.get("parameters", []):
        if isinstance(parameter, dict) and parameter.get("in") == "path" and parameter.get("name") in names:
            parameter["name"] = names[parameter["name"]]
    return operation


def merge(
    routes: Sequence[GatewayRoute],
    documents: dict[str, dict[str, Any] | None],
    problems: dict[str, str],
    *,
    title: str = "kfaas API",
    version: str = __version__,
) -> dict[str, Any]:
    """The merged document of ``routes`` from each function's document (None: missing, ``problems`` says why)."""
    functions = sorted({route.function for route in routes})
    docs = {name: documents.get(name) for name in functions}
    components, renamed = _merge_components(docs)
    paths = _Paths()
    tags: list[dict[str, str]] = []
    status: dict[str, str] = {}
    for name in functions:
        doc = docs[name]
        own = [route for route in routes if route.function == name]
        if doc is None:
            status[name] = problems.get(name, "no document")
            paths.add_stubs(name, own, status[name])
            continue
        status[name] = "ok"
        info = doc.get("info", {})
        tags.append({"name": name, "description": str(info.get("description") or info.get("title") or name)})
        paths.add_document(name, own, _rewrite_refs(doc, renamed.get(name, {})))
    _unique_operation_ids(paths.items)
    gateway = _gateway_responses()
    for item in paths.items.values():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            for code, response in gateway.items():
                responses.setdefault(code, response)
    components.setdefault("schemas", {})[_GATEWAY_ERROR] = {
        "type": "object",
        "properties": {"error": {"type": "string", "description": "What went wrong"}},
        "required": ["error"],
        "description": "An answer of the gateway itself (the function was not reached, or did not answer)",
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "The HTTP functions behind one gateway, from their own OpenAPI documents.",
        },
        "tags": tags,
        "paths": dict(sorted(paths.items.items())),
        "components": components,
        "x-kfaas": {
            "functions": status,
            "renamed": {
                f"{name}: {old}": new for name, items in renamed.items() for old, new in items.items()
            },
        },
    }


class _Paths:
    """The merged ``paths``: one spelling per path (OpenAPI forbids two that differ by parameter names only)."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self._spelling: dict[str, str] = {}

    def put(self, path: str, method: str, operation: dict[str, Any]) -> None:
        spelled = self._spelling.setdefault(_key(path), path)
        self.items.setdefault(spelled, {})[method] = _rename_path_parameters(operation, path, spelled)

    def add_document(self, name: str, own: list[GatewayRoute], doc: dict[str, Any]) -> None:
        """The operations of ``doc`` that ``own`` routes; a stub for each route the document lacks."""
        routed: set[tuple[str, str]] = set()
        for path, item in doc.get("paths", {}).items():
            methods = {m for r in own if _key(r.template) == _key(path) for m in r.methods}
            if not methods or not isinstance(item, dict):
                continue  # a path the gateway does not route to this function
            for method in METHODS:
                operation = item.get(method)
                if method == "head" or method.upper() not in methods or not isinstance(operation, dict):
                    continue
                self.put(path, method, {**operation, "tags": operation.get("tags") or [name]})
                routed.add((_key(path), method))
        missing = [
            (route, method)
            for route in own
            for method in sorted(m.lower() for m in route.methods - {"HEAD"})
            if (_key(route.template), method) not in routed
        ]
        for route, method in missing:
            log.warning("the document of %s does not describe %s %s", name, method.upper(), route.template)
            self.put(route.template, method, _stub(method, route.template, name, "it does not describe it"))

    def add_stubs(self, name: str, own: list[GatewayRoute], why: str) -> None:
        for route in own:
            for method in sorted(m.lower() for m in route.methods - {"HEAD"}):
                self.put(route.template, method, _stub(method, route.template, name, why))


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node)) if node else set()
    return set()


def _merge_components(
    docs: dict[str, dict[str, Any] | None],
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]]]:
    """(merged components, per function the ``$ref`` renames of its clashing components).

    A component is shared when every function that defines it defines it alike and it refers to no
    clashing component (else the same ``$ref`` would mean different things); the others are renamed.
    """
    seen: dict[str, list[tuple[str, Any]]] = {}  # ref -> [(function, definition)]
    for name, doc in docs.items():
        for kind, items in ((doc or {}).get("components") or {}).items():
            if isinstance(items, dict):
                for item, definition in items.items():
                    seen.setdefault(f"#/components/{kind}/{item}", []).append((name, definition))
    clashing = {
        ref for ref, versions in seen.items() if len({json.dumps(d, sort_keys=True) for _, d in versions}) > 1
    }
    while True:  # what refers to a clashing component clashes too
        more = {
            ref for ref, versions in seen.items() if ref not in clashing and _refs(versions[0][1]) & clashing
        }
        if not more:
            break
        clashing |= more
    renamed: dict[str, dict[str, str]] = {}
    for ref in sorted(clashing):
        kind, item = ref.split("/")[2:4]
        for name, _ in seen[ref]:
            renamed.setdefault(name, {})[ref] = f"#/components/{kind}/{name}.{item}"
    merged: dict[str, dict[str, Any]] = {}
    for ref, versions in sorted(seen.items()):
        kind, item = ref.split("/")[2:4]
        if ref not in clashing:
            merged.setdefault(kind, {})[item] = versions[0][1]
            continue
        for name, definition in versions:
            merged.setdefault(kind, {})[f"{name}.{item}"] = _rewrite_refs(definition, renamed[name])
    return merged, renamed


def _unique_operation_ids(paths: dict[str, dict[str, Any]]) -> None:
    count: dict[str, int] = {}
    for item in paths.values():
        for operation in item.values():
            if "operationId" in operation:
                count[operation["operationId"]] = count.get(operation["operationId"], 0) + 1
    for item in paths.values():
        for operation in item.values():
            op = operation.get("operationId")
            if op is not None and count[op] > 1:
                operation["operationId"] = f"{operation['tags'][0]}.{op}"


class ApiDocument:
    """The merged document, fetched on demand and cached (see the module docstring)."""

    def __init__(
        self,
        routes: Sequence[GatewayRoute],
        resolve_url: Callable[[str], str],
        *,
        ttl: float = 60.0,
        title: str = "kfaas API",
    ) -> None:
        self.routes = list(routes)
        self.resolve_url = resolve_url
        self.ttl = ttl
        self.title = title
        self._fetched: dict[str, _Fetched] = {}
        self._lock = asyncio.Lock()
        self._document: dict[str, Any] | None = None
        self._body: bytes = b""

    def _stale(self, name: str, now: float) -> bool:
        entry = self._fetched.get(name)
        if entry is None:
            return True
        return now - entry.at > (self.ttl if entry.document is not None else min(self.ttl, FAILURE_TTL))

    async def body(self, client: httpx.AsyncClient) -> bytes:
        """The merged document as JSON, fetching what is missing or stale first."""
        names = sorted({route.function for route in self.routes})
        async with self._lock:  # one fetch at a time, however many ask at once
            now = time.monotonic()
            stale = [name for name in names if self._stale(name, now)]
            if stale or self._document is None:
                fetched = await asyncio.gather(*(self._fetch(client, name) for name in stale))
                self._fetched.update(zip(stale, fetched, strict=True))
                documents = {name: self._fetched[name].document for name in names}
                problems = {
                    name: self._fetched[name].problem for name in names if self._fetched[name].problem
                }
                self._document = merge(self.routes, documents, problems, title=self.title)
                self._body = json.dumps(self._document).encode()
            return self._body

    async def _fetch(self, client: httpx.AsyncClient, name: str) -> _Fetched:
        import httpx

        url = self.resolve_url(name).rstrip("/") + "/openapi.json"
        now = time.monotonic()
        try:
            response = await client.get(url, timeout=FETCH_TIMEOUT, headers={"accept": "application/json"})
        except httpx.TimeoutException:
            log.warning("the OpenAPI document of %s did not arrive within %gs", name, FETCH_TIMEOUT)
            return _Fetched(now, None, f"unavailable: {url} did not answer within {FETCH_TIMEOUT:g}s")
        except httpx.TransportError as exc:
            log.warning("the OpenAPI document of %s cannot be fetched: %s", name, exc)
            return _Fetched(now, None, f"unavailable: {url} is not reachable")
        if response.status_code != 200:
            return _Fetched(now, None, f"no document: GET {url} answered {response.status_code}")
        try:
            document = response.json()
        except ValueError:
            return _Fetched(now, None, f"no document: GET {url} did not answer JSON")
        if not isinstance(document, dict) or not str(document.get("openapi", "")).startswith("3."):
            return _Fetched(
                now, None, f"no document: GET {url} answered JSON that is not an OpenAPI 3 document"
            )
        return _Fetched(now, document, "")
