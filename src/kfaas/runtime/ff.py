"""Code written for functions-framework, unchanged: its package's face, its registry, its Flask functions.

``import functions_framework`` imports Flask, Werkzeug and the cloudevents SDK (about 60 ms), although most
functions use only its decorators. While ``kfaas serve`` loads a function, :func:`install` puts a finder in
front of the import system that serves ``functions_framework`` and ``functions_framework.aio`` from here:
the decorators (``http``, ``cloud_event``, ``typed``, ``errorhandler``, ``aio.http``, ``aio.cloud_event``),
registering into functions-framework's own ``_function_registry`` (a module of the installed package,
which imports nothing heavy). Every other name of those modules (``flask``, ``CloudEvent``,
``create_app``, ``aio.create_asgi_app``...) is taken from the real module on first use:
its code runs then, once, Flask with it. Submodules (``functions_framework.exceptions``, ...) are the real
ones. So code that uses more than the decorators, or imports ``flask`` itself, sees what it always did;
it only pays for Flask when it touches it.

Which request an ``http`` function gets follows functions-framework: ``@functions_framework.http``
functions, and undecorated ones in a module that imports ``functions_framework``, get a Flask request (its
default mode); ``@functions_framework.aio.http`` ones a Starlette one, and ``--asgi`` (its ASGI mode) makes
every ``http`` function a Starlette one. kfaas's own ``http`` functions, coroutines and functions of modules
that do not import ``functions_framework`` get a Starlette request.
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.util
import logging
import sys
import types
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from importlib.abc import Loader

from kfaas.base.asgi import read_body

__all__ = [
    "ErrorHandlers",
    "error_handlers",
    "find_handler",
    "flask_bridge",
    "forget",
    "install",
    "legacy_context",
    "registered",
    "uses_functions_framework",
]

log = logging.getLogger("kfaas.serve")

_NAME = "functions_framework"
_AIO = "functions_framework.aio"
# (exception class or HTTP status, handler) in the order functions_framework.errorhandler registered them
_ERROR_HANDLERS: list[tuple[Any, Callable[[BaseException], Any]]] = []


# -- the package face ---------------------------------------------------------------------------------
class _Finder:
    """A meta path finder for ``functions_framework`` and ``functions_framework.aio`` (see the module
    docstring); every other import goes on to the usual finders."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in (_NAME, _AIO):
            return None
        real = importlib.machinery.PathFinder.find_spec(fullname, path)
        if real is None:  # not installed: the import fails as it would without kfaas
            return None
        spec = importlib.machinery.ModuleSpec(fullname, cast("Loader", _Loader(real)), is_package=True)
        spec.submodule_search_locations = list(real.submodule_search_locations or [])
        spec.origin = real.origin
        return spec


class _Loader:
    def __init__(self, real: Any) -> None:
        self.real = real

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        module.__file__ = self.real.origin
        attrs = _package(self.real) if module.__name__ == _NAME else _aio(self.real)
        module.__dict__.update(attrs)


_FINDER = _Finder()


def install() -> None:
    """Serve ``import functions_framework`` from here from now on (once; a module already imported stays)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def _real_module(spec: Any) -> types.ModuleType:
    """The installed module's own code, run once into a module object of its own (not in sys.modules: the
    face stays there), whose imports of ``functions_framework.*`` resolve through the face."""
    real = importlib.util.spec_from_file_location(
        spec.name, spec.origin, submodule_search_locations=spec.submodule_search_locations
    )
    if real is None or real.loader is None:
        raise ImportError(f"cannot load {spec.name} from {spec.origin}")
    module = importlib.util.module_from_spec(real)
    real.loader.exec_module(module)
    return module


def _fallback(spec: Any, own: Callable[[], dict[str, Any]]) -> Callable[[str], Any]:
    loaded: list[types.ModuleType] = []

    def __getattr__(name: str) -> Any:
        if not name.startswith("__"):
            try:  # a submodule: `from functions_framework import exceptions`
                if importlib.util.find_spec(f"{spec.name}.{name}") is not None:
                    return importlib.import_module(f"{spec.name}.{name}")
            except ImportError:
                pass
        if not loaded:
            log.debug("%s.%s is not one of kfaas's: loading the module itself", spec.name, name)
            loaded.append(_real_module(spec))
        real = loaded[0]
        if name == "__all__":  # `from functions_framework import *` gives what the module itself gives
            names = getattr(real, "__all__", None) or [n for n in vars(real) if not n.startswith("_")]
            return sorted(set(names) | {n for n in own() if not n.startswith("_")})
        try:
            return getattr(real, name)
        except AttributeError:
            raise AttributeError(f"module {spec.name!r} has no attribute {name!r}") from None

    return __getattr__


def _registry() -> Any:
    return importlib.import_module(f"{_NAME}._function_registry")


def _package(spec: Any) -> dict[str, Any]:
    registry = _registry()

    def http(func: Any) -> Any:
        """functions_framework.http: a Flask-style HTTP function."""
        registry.REGISTRY_MAP[func.__name__] = registry.HTTP_SIGNATURE_TYPE
        return _wrap(func)

    def cloud_event(func: Any) -> Any:
        """functions_framework.cloud_event: a CloudEvent function."""
        registry.REGISTRY_MAP[func.__name__] = registry.CLOUDEVENT_SIGNATURE_TYPE
        return _wrap(func)

    def typed(*args: Any) -> Any:
        """functions_framework.typed / typed(InputType): the body made into the input type's from_dict."""
        typed_event = importlib.import_module(f"{_NAME}._typed_event")

        def register(input_type: Any) -> Callable[[Any], Any]:
            def decorate(func: Any) -> Any:
                typed_event.register_typed_event(input_type, func)
                return _wrap(func)

            return decorate

        if len(args) == 1 and isinstance(args[0], types.FunctionType):
            return register(None)(args[0])
        return register(args[0] if args else None)

    def errorhandler(code_or_exception: Any) -> Callable[[Any], Any]:
        """functions_framework.errorhandler: answer an exception class (or an HTTP status) with a handler."""

        def decorate(func: Any) -> Any:
            _ERROR_HANDLERS.append((code_or_exception, func))
            return func

        return decorate

    names = {
        "http": http,
        "cloud_event": cloud_event,
        "typed": typed,
        "errorhandler": errorhandler,
        "_function_registry": registry,
        "exceptions": importlib.import_module(f"{_NAME}.exceptions"),
    }
    names["__getattr__"] = _fallback(spec, lambda: names)
    return names


def _aio(spec: Any) -> dict[str, Any]:
    registry = _registry()

    def _register(func: Any, kind: str) -> Any:
        registry.REGISTRY_MAP[func.__name__] = kind
        registry.ASGI_FUNCTIONS.add(func.__name__)
        if _is_coroutine_function(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await func(*args, **kwargs)

            return async_wrapper
        return _wrap(func)

    def http(func: Any) -> Any:
        """functions_framework.aio.http: an HTTP function taking a Starlette request."""
        return _register(func, registry.HTTP_SIGNATURE_TYPE)

    def cloud_event(func: Any) -> Any:
        """functions_framework.aio.cloud_event: a CloudEvent function (sync or async)."""
        return _register(func, registry.CLOUDEVENT_SIGNATURE_TYPE)

    names: dict[str, Any] = {"http": http, "cloud_event": cloud_event}
    names["__getattr__"] = _fallback(spec, lambda: names)
    return names


def _wrap(func: Any) -> Any:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


def _is_coroutine_function(func: Any) -> bool:
    code = getattr(func, "__code__", None)
    return code is not None and bool(code.co_flags & 0x0080)  # inspect.CO_COROUTINE


# -- reading what the code declared -------------------------------------------------------------------
def registered(name: str) -> tuple[str | None, bool, Any]:
    """(signature type, registered by ``functions_framework.aio``, input type of a typed function) of what
    functions-framework's decorators registered under ``name``; (None, False, None) when nothing was."""
    registry = sys.modules.get(f"{_NAME}._function_registry")
    if registry is None:
        return None, False, None
    kind = getattr(registry, "REGISTRY_MAP", {}).get(name)
    if not kind:
        return None, False, None
    return (
        kind,
        name in getattr(registry, "ASGI_FUNCTIONS", ()),
        getattr(registry, "INPUT_TYPE_MAP", {}).get(name),
    )


def forget(name: str) -> None:
    """Drop what functions-framework's registry holds under ``name`` (before a module declaring it loads)."""
    registry = sys.modules.get(f"{_NAME}._function_registry")
    if registry is not None:
        registry.REGISTRY_MAP.pop(name, None)
        registry.INPUT_TYPE_MAP.pop(name, None)
        registry.ASGI_FUNCTIONS.discard(name)


def uses_functions_framework(module: types.ModuleType) -> bool:
    """Whether ``module`` was written against functions-framework: one of its names is
    ``functions_framework`` (or a module of it) or one of its decorators. Read from the module's own
    names, so that another module loaded earlier in the same process does not count."""
    for value in vars(module).values():
        if isinstance(value, types.ModuleType):
            name = value.__name__
            if name == _NAME or name.startswith(f"{_NAME}."):
                return True
        elif (
            isinstance(value, types.FunctionType)
            and value.__module__ == __name__
            and value.__qualname__.startswith(("_package.", "_aio."))
        ):
            return True
    return False


ErrorHandlers = list[tuple[Any, Callable[[BaseException], Any]]]


def error_handlers() -> ErrorHandlers:
    """The handlers ``functions_framework.errorhandler`` registered so far, in order."""
    return list(_ERROR_HANDLERS)


def find_handler(handlers: ErrorHandlers, exc: BaseException) -> Callable[[BaseException], Any] | None:
    """The handler for ``exc``: the one registered for the nearest class of its MRO, as Flask picks it."""
    by_class = {key: func for key, func in handlers if isinstance(key, type)}
    for cls in type(exc).__mro__:
        if cls in by_class:
            return by_class[cls]
    return None


def legacy_context(context: dict[str, Any]) -> Any:
    """functions-framework's context object for a legacy function (``google.cloud.functions.context``):
    ``event_id``, ``timestamp``, ``event_type``, ``resource``."""
    try:
        from google.cloud.functions.context import Context
    except ImportError:  # functions-framework not installed: the same attributes on a plain object
        return types.SimpleNamespace(
            event_id=context["eventId"],
            timestamp=context["timestamp"],
            event_type=context["eventType"],
            resource=context["resource"],
        )
    return Context(**context)


# -- Flask functions ----------------------------------------------------------------------------------
Scope = MutableMapping[str, Any]
ASGI = Callable[[Scope, Any, Any], Awaitable[None]]


def flask_bridge(func: Any, name: str, source: str, handlers: ErrorHandlers, threads: int = 32) -> ASGI:
    """An ASGI app that serves ``func(request)`` as functions-framework's Flask mode does.

    The Flask app is functions-framework's for an ``http`` function: every method on every path (but
    ``/robots.txt`` and ``/favicon.ico``, 404), templates from ``templates/`` beside the source, the
    ``errorhandler`` registrations. An exception no handler answers is a 500 with kfaas's JSON error.
    It runs as WSGI in ``threads`` of a2wsgi's.
    """
    from pathlib import Path

    import flask
    import werkzeug.routing
    from a2wsgi import WSGIMiddleware

    from kfaas.base.errors import public_message

    app = flask.Flask(name, template_folder=str(Path(source).parent / "templates"))

    def crash(exc: Any) -> Any:
        original = getattr(exc, "original_exception", None) or exc
        return flask.jsonify(error=public_message(original)), 500

    app.register_error_handler(500, crash)
    for key, handler in handlers:
        app.register_error_handler(key, handler)

    def run(path: str) -> Any:
        return func(flask.request._get_current_object())  # type: ignore[attr-defined]

    def not_found() -> Any:
        flask.abort(404, description="Not Found")

    app.url_map.add(werkzeug.routing.Rule("/", defaults={"path": ""}, endpoint="run"))
    app.url_map.add(werkzeug.routing.Rule("/robots.txt", endpoint="not_found"))
    app.url_map.add(werkzeug.routing.Rule("/favicon.ico", endpoint="not_found"))
    app.url_map.add(werkzeug.routing.Rule("/<path:path>", endpoint="run"))
    app.view_functions["run"] = run
    app.view_functions["not_found"] = not_found
    wsgi: Any = WSGIMiddleware(app, workers=threads)  # type: ignore[arg-type]

    async def bridge(scope: Scope, receive: Any, send: Any) -> None:
        # kfaas has read the whole body (bounded) before the function runs. a2wsgi reads request bodies with
        # asyncio.run_coroutine_threadsafe(receive(), ...), which needs receive() to be a coroutine, and
        # granian's is not one: it gets a coroutine function that hands over the body read. The body's
        # length goes into Content-Length, so that Werkzeug reads a body that came chunked (it reads no
        # more than Content-Length says, and nothing without one).
        body = await read_body(receive)
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-length", b"transfer-encoding")]
        headers.append((b"content-length", str(len(body)).encode()))
        sent = False

        async def body_once() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return dict(await receive())

        await wsgi({**scope, "headers": headers}, body_once, send)

    return bridge
