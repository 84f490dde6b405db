"""Drop-in ``http`` / ``cloud_event`` decorators and how ``kfaas serve`` finds and classifies a target.

The decorators have functions-framework's signatures but do not import Flask. Code decorated with
functions-framework's decorators (``http``, ``cloud_event``, ``typed``, their ``functions_framework.aio``
variants) is recognised through functions-framework's own registry, so it runs unchanged
(kfaas.runtime.ff serves that package's face without Flask).
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
BUILT_IN = ("http", "cloudevent", "event", "typed", "asgi")
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

    ``signature_type`` is ``http``, ``cloudevent``, ``event`` (a legacy ``(data, context)`` function),
    ``typed`` or ``asgi``. An ``http`` function's ``request`` is ``starlette`` or ``flask``; a Flask one is
    served through ``app`` (WSGI in threads). ``input_type`` is a typed function's input class, and
    ``error_handlers`` the ``functions_framework.errorhandler`` registrations that apply to it.

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
        request: str = "starlette",
        input_type: Any = None,
        error_handlers: list[tuple[Any, Any]] | None = None,
        app: Any = None,
    ) -> None:
        self.func = func
        self.signature_type = signature_type
        self.name = name
        self.routes = routes
        self.on_start = on_start
        self.on_stop = on_stop
        self.checks = checks
        self.request = request
        self.input_type = input_type
        self.error_handlers = error_handlers or []
        self.app = app
        # a sync wrapper around a coroutine function (functions_framework.cloud_event on an async def)
        # returns a coroutine too, so it counts as async
        self.is_async = (
            _is_coroutine(func)
            or _is_coroutine(getattr(func, "__wrapped__", None))
            or _is_coroutine(getattr(func, "__call__", None))  # noqa: B004
        )
        self.wants_context = signature_type not in ("asgi", "event") and _positional_count(func) >= 2

    @property
    def kind(self) -> str:
        """How ``kfaas serve`` names what it serves: the signature type, ``http (flask)`` for Flask ones."""
        return f"http ({self.request})" if self.signature_type == "http" else self.signature_type


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


def _is_asgi_app(obj: Any) -> bool:
    """An ASGI application object (FastAPI, Starlette, ...): an instance with ``async __call__(scope, r, s)``."""
    if hasattr(obj, "__code__") or hasattr(obj, "__func__"):
        return False
    call = getattr(obj, "__call__", None)  # noqa: B004
    return call is not None and _is_coroutine(call) and _positional_count(call) == 3


def load_target(
    source: str | Path, target: str, signature_type: str = "", *, asgi: bool = False, threads: int = 32
) -> Target:
    """Import ``source`` and return ``target`` with its signature type.

    The type is, in order: the kfaas decorator; functions-framework's decorators (its registry); then
    ``signature_type`` (``--signature-type`` / ``FUNCTION_SIGNATURE_TYPE``); ``asgi`` for an ASGI application
    object (e.g. a FastAPI app, also when ``http`` was asked for); else ``http``. A declared type wins over
    the setting, as in functions-framework, since platforms set the variable for every function.
    ``asgi`` is functions-framework's ``--asgi``: ``http`` functions take a Starlette request. ``threads``
    run a Flask function's requests.
    """
    from kfaas.runtime import ff

    if not target:
        raise LoadError("no function target: set FUNCTION_TARGET or pass --target")
    if signature_type and signature_type not in BUILT_IN:
        raise LoadError(f"signature type {signature_type!r} is not one of: {', '.join(BUILT_IN)}")
    ff.install()
    ff.forget(target)  # what the registry holds is what this module declares
    handlers_before = len(ff.error_handlers())
    module = _load_module(Path(source))
    try:
        func = getattr(module, target)
    except AttributeError:
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise LoadError(
            f"{source} has no attribute {target!r} (callables defined there: {', '.join(names) or 'none'})"
        ) from None
    declared = getattr(func, _KIND_ATTR, None)
    registered, by_aio, input_type = (None, False, None) if declared else ff.registered(target)
    kind = declared or registered or signature_type or ("asgi" if _is_asgi_app(func) else "http")
    if kind == "http" and not (declared or registered) and _is_asgi_app(func):
        kind = "asgi"  # an application object is no function of a request, whatever the setting says
    if kind == "asgi":
        if not _is_asgi_app(func):
            raise LoadError(f"{target!r} is not an ASGI application (async __call__(scope, receive, send))")
        return Target(func, "asgi", target)
    if not callable(func):
        raise LoadError(f"{target!r} in {source} is not callable")
    if kind == "cloudevent" and _is_asgi_app(func):
        raise LoadError(f"{target!r} is an ASGI application, not a CloudEvent function")
    # functions-framework serves what its own decorators or the setting name through Flask, and applies
    # its errorhandler registrations there; its aio decorators and --asgi mean Starlette
    framework = bool(registered) or (not declared and ff.uses_functions_framework(module))
    flask_mode = framework and not by_aio and not asgi
    handlers = ff.error_handlers()[handlers_before:] if flask_mode else []
    if kind == "typed":
        return Target(
            func, "typed", target, input_type=_input_type(func, input_type), error_handlers=handlers
        )
    if kind == "http":
        coroutine = _is_coroutine(func) or _is_coroutine(getattr(func, "__wrapped__", None))
        if flask_mode and not coroutine:
            app = ff.flask_bridge(func, target, str(source), handlers, threads)
            return Target(func, "http", target, request="flask", app=app)
        return Target(func, "http", target)
    return Target(func, kind, target, error_handlers=handlers)


def _input_type(func: Any, registered: Any) -> Any:
    """A typed function's input class: the one functions_framework.typed registered, else the annotation
    of its first parameter; it must have ``from_dict``."""
    input_type = registered
    if input_type is None:
        code = _code(func)
        names = code.co_varnames[: code.co_argcount] if code is not None else ()
        annotations = getattr(getattr(func, "__wrapped__", func), "__annotations__", {})
        input_type = annotations.get(names[0]) if names else None
    if input_type is None or not callable(getattr(input_type, "from_dict", None)):
        raise LoadError(
            "a typed function needs an input type with a from_dict method: decorate it with "
            "@functions_framework.typed(InputType) or annotate its first parameter"
        )
    return input_type


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
    raise LoadError(f"signature type {signature_type!r} is not one of: {', '.join(known)}")
