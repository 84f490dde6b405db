"""Drop-in ``http`` / ``cloud_event`` decorators and how ``kfaas serve`` finds and classifies a target.

The decorators have functions-framework's signatures but do not import Flask. Code decorated with
``functions_framework.http`` / ``functions_framework.cloud_event`` (or their ``functions_framework.aio``
variants) is recognised through functions-framework's own registry, so it runs unchanged.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "BUILT_IN",
    "PLUGIN_GROUP",
    "LoadError",
    "Target",
    "cloud_event",
    "http",
    "load_target",
    "plugin_loader",
]

F = TypeVar("F", bound=Callable[..., Any])

_KIND_ATTR = "__kfaas_signature_type__"
BUILT_IN = ("http", "cloudevent", "asgi")
# Signature types other packages provide: an entry point NAME = "module:function" in this group, where
# function(settings) -> Target. kfaas's own `lambda` (kfaas.aws) is one: the runtime does not import the
# part that serves it, and a cloudevent function never loads it (docs/architecture.md).
PLUGIN_GROUP = "kfaas.signature_types"


class LoadError(RuntimeError):
    """The function's source or target cannot be loaded; the message says what to fix."""


def http(func: F) -> F:
    """Mark ``func(request)`` (or ``func(request, ctx)``) as an HTTP function (sync or async)."""
    setattr(func, _KIND_ATTR, "http")
    return func


def cloud_event(func: F) -> F:
    """Mark ``func(event)`` (or ``func(event, ctx)``) as a CloudEvent function (sync or async).

    It may return a ``cloudevents.http.CloudEvent``: that becomes the HTTP reply, which a Knative broker
    publishes (give it a type no trigger of the same function matches).
    """
    setattr(func, _KIND_ATTR, "cloudevent")
    return func


class Target:
    """A loaded function: the callable, its signature type, and how to call it.

    A target made by a plugin (:func:`plugin_loader`) may also carry ``routes`` (an ASGI app that takes the
    requests of a ``cloudevent`` target that are not CloudEvents, such as an API's routes), ``on_start`` /
    ``on_stop`` (awaited at start-up and shutdown, after and before the Context) and ``checks`` (readiness
    results of its own, ``{"name": "ok" | "error: ..."}``).
    """

    def __init__(
        self,
        func: Any,
        signature_type: str,
        name: str,
        *,
        routes: Any = None,
        on_start: Callable[[], Awaitable[None]] | None = None,
        on_stop: Callable[[], Awaitable[None]] | None = None,
        checks: Callable[[], dict[str, str]] | None = None,
    ) -> None:
        self.func = func
        self.signature_type = signature_type
        self.name = name
        self.routes = routes
        self.on_start = on_start
        self.on_stop = on_stop
        self.checks = checks
        # a sync wrapper around a coroutine function (functions_framework.cloud_event on an async def)
        # returns a coroutine too, so it counts as async
        self.is_async = (
            _is_coroutine(func)
            or _is_coroutine(getattr(func, "__wrapped__", None))
            or _is_coroutine(getattr(func, "__call__", None))  # noqa: B004
        )
        self.wants_context = signature_type != "asgi" and _positional_count(func) >= 2


_CO_COROUTINE = 0x0080  # inspect.CO_COROUTINE; reading code flags spares importing inspect at start-up
_CO_VARARGS = 0x0004


def _code(func: Any) -> Any:
    func = getattr(func, "__func__", func)  # bound method
    func = getattr(func, "__wrapped__", func)  # functools.wraps (functions_framework.aio decorators)
    return getattr(func, "__code__", None)


def _is_coroutine(func: Any) -> bool:
    if func is None:
        return False
    code = getattr(getattr(func, "__func__", func), "__code__", None)
    return code is not None and bool(code.co_flags & _CO_COROUTINE)


def _positional_count(func: Any) -> int:
    """Positional parameters ``func`` takes (``self`` excluded for bound methods); 2 for ``*args``."""
    code = _code(func)
    if code is None:  # a callable object: look at its __call__
        call = getattr(type(func), "__call__", None)  # noqa: B004
        code = _code(call)
        if code is None:
            return 1
        return 2 if code.co_flags & _CO_VARARGS else code.co_argcount - 1
    if code.co_flags & _CO_VARARGS:
        return 2
    bound = 1 if hasattr(func, "__self__") else 0
    return int(code.co_argcount) - bound


def _load_module(source: Path) -> Any:
    if not source.is_file():
        raise LoadError(f"function source {source} does not exist (FUNCTION_SOURCE / --source)")
    folder = str(source.parent.resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)  # lets main.py import its sibling modules, as functions-framework does
    spec = importlib.util.spec_from_file_location("main" if source.stem == "main" else source.stem, source)
    if spec is None or spec.loader is None:
        raise LoadError(f"cannot import {source}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _framework_kind(name: str) -> str | None:
    """The type functions-framework's decorators registered; ``flask`` for its WSGI-mode ``http``."""
    ff = sys.modules.get("functions_framework._function_registry")
    if ff is None:  # the user's code never imported functions_framework
        return None
    kind = getattr(ff, "REGISTRY_MAP", {}).get(name)
    if kind == "http" and name not in getattr(ff, "ASGI_FUNCTIONS", ()):
        return "flask"
    return {"http": "http", "cloudevent": "cloudevent"}.get(kind) if kind else None


def _flask_app(func: Any) -> Any:
    """Serve a functions-framework ``http`` function as it expects: a Flask request, Flask's replies.

    The Flask app (WSGI) runs in a2wsgi's thread pool; only functions written this way pay for Flask.
    """
    import flask
    from a2wsgi import WSGIMiddleware

    app = flask.Flask(getattr(func, "__module__", "function") or "function")

    @app.route(
        "/", defaults={"path": ""}, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    )
    @app.route("/<path:path>", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    def view(path: str) -> Any:
        return func(flask.request._get_current_object())  # type: ignore[attr-defined]

    return WSGIMiddleware(app)  # type: ignore[arg-type]


def _is_asgi_app(obj: Any) -> bool:
    """An ASGI application object (FastAPI, Starlette, ...): an instance with ``async __call__(scope, r, s)``."""
    if hasattr(obj, "__code__") or hasattr(obj, "__func__"):
        return False
    call = getattr(obj, "__call__", None)  # noqa: B004
    return call is not None and _is_coroutine(call) and _positional_count(call) == 3


def load_target(source: str | Path, target: str, signature_type: str = "") -> Target:
    """Import ``source`` and return ``target`` with its signature type.

    The type is, in order: ``signature_type`` when given; the kfaas decorator; functions-framework's
    registry; ``asgi`` for an ASGI application object (e.g. a FastAPI app); else ``http``.
    """
    if not target:
        raise LoadError("no function target: set FUNCTION_TARGET or pass --target")
    module = _load_module(Path(source))
    try:
        func = getattr(module, target)
    except AttributeError:
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise LoadError(
            f"{source} has no attribute {target!r} (callables defined there: {', '.join(names) or 'none'})"
        ) from None
    kind = (
        signature_type
        or getattr(func, _KIND_ATTR, None)
        or _framework_kind(target)
        or ("asgi" if _is_asgi_app(func) else "http")
    )
    if kind == "flask":
        return Target(_flask_app(func), "asgi", target)
    if kind == "asgi" and not _is_asgi_app(func):
        raise LoadError(f"{target!r} is not an ASGI application (async __call__(scope, receive, send))")
    if kind != "asgi" and not callable(func):
        raise LoadError(f"{target!r} in {source} is not callable")
    return Target(func, kind, target)


def plugin_loader(signature_type: str) -> Callable[[Any], Target] | None:
    """The loader an installed package registered for ``signature_type`` (None for the built-in types).

    Raises :class:`LoadError` for a type that no package provides, naming those that are.
    """
    if not signature_type or signature_type in BUILT_IN:
        return None
    from importlib.metadata import entry_points

    found = entry_points(group=PLUGIN_GROUP, name=signature_type)
    for entry in found:
        loader: Callable[[Any], Target] = entry.load()
        return loader
    known = sorted({*BUILT_IN, *(e.name for e in entry_points(group=PLUGIN_GROUP))})
    raise LoadError(
        f"signature type {signature_type!r} is not one of: {', '.join(known)} (functions-framework's "
        "'event' type is not supported)"
    )
