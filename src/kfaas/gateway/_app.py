"""The gateway's ASGI app: routing, CORS, proxying to the functions, JSON errors."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kfaas.base.asgi import MAX_HEADER_BYTES, MAX_HEADERS, Limits, RequestRefused, read_body, refusal
from kfaas.base.inflight import InFlight
from kfaas.gateway._openapi import ApiDocument

if TYPE_CHECKING:
    import httpx

    from kfaas.spec import AppSpec

__all__ = [
    "RESERVED",
    "SWAGGER_UI",
    "Gateway",
    "GatewayRoute",
    "build",
    "gateway_limits",
    "resolver",
    "routes_of",
]

log = logging.getLogger("kfaas.gateway")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# What the gateway serves itself; no function may declare these paths.
RESERVED = ("/openapi.json", "/docs", "/health/liveness", "/health/readiness")
# Where the page at /docs loads Swagger UI from (swagger-ui-dist on jsDelivr, as FastAPI's own /docs does)
SWAGGER_UI = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5"
# The gateway adds header fields when it forwards a request (x-forwarded-*, host, content-length and httpx's
# accept, accept-encoding, connection, user-agent): its own limits leave room for them below the function's,
# so a request it lets through is never refused by the function for what the gateway added.
_ADDED_HEADERS = 8
_ADDED_HEADER_BYTES = 1024


def gateway_limits(limits: Limits | None = None) -> Limits:
    """The request limits of the gateway: ``limits`` (the body's) with the header limits lowered as above."""
    body = limits or Limits()
    return Limits(
        max_body=body.max_body,
        body_timeout=body.body_timeout,
        max_headers=MAX_HEADERS - _ADDED_HEADERS,
        max_header_bytes=MAX_HEADER_BYTES - _ADDED_HEADER_BYTES,
    )


# Hop-by-hop headers (RFC 9110 section 7.6.1) are not forwarded; host and length are set by the client.
_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
_CORS_PREFIX = "access-control-"
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class GatewayRoute:
    """One path template and its methods, served by one function."""

    template: str
    methods: frozenset[str]
    function: str
    timeout: float
    pattern: re.Pattern[str]
    literal_segments: int

    @classmethod
    def build(cls, template: str, methods: Sequence[str], function: str, timeout: float) -> GatewayRoute:
        parts = []
        literal = 0
        for segment in template.strip("/").split("/"):
            if _PARAM.fullmatch(segment):
                parts.append(f"(?P<{_PARAM.fullmatch(segment).group(1)}>[^/]+)")  # type: ignore[union-attr]
            else:
                literal += 1
                parts.append(re.escape(segment))
        regex = "^/" + "/".join(parts) + "/?$" if template.strip("/") else "^/$"
        methods_set = frozenset(m.upper() for m in methods)
        if "GET" in methods_set:
            methods_set |= {"HEAD"}
        return cls(template, methods_set, function, timeout, re.compile(regex), literal)


def routes_of(app: AppSpec) -> list[GatewayRoute]:
    """Every route of every http function, most specific first; a method + path template that two
    functions declare is an error (``load_app`` refuses such descriptions already)."""
    from kfaas.spec import route_conflicts

    conflicts = route_conflicts(app.functions)
    if conflicts:
        raise ValueError("; ".join(conflicts))
    routes = [
        GatewayRoute.build(r.path, r.methods, fn.name, float(fn.timeout))
        for fn in app.functions
        if fn.serves_http
        for r in fn.routes
    ]
    if app.engine is not None:
        # StartExecution and DescribeExecution of the state machine engine (docs/state-machines.md); listing,
        # history, stop and redrive stay on the engine's own port and `kfaas executions`
        routes += [
            GatewayRoute.build("/state-machines/{machine}/executions", ["POST"], app.engine.name, 30.0),
            GatewayRoute.build("/executions/{execution}", ["GET"], app.engine.name, 30.0),
        ]
    return sorted(routes, key=lambda r: (-r.literal_segments, r.template))


def _json(
    status: int, payload: Mapping[str, Any], extra: Sequence[tuple[bytes, bytes]] = ()
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    return status, [(b"content-type", b"application/json"), *extra], json.dumps(payload).encode()


def _with(
    answer: tuple[int, list[tuple[bytes, bytes]], bytes], cors: list[tuple[bytes, bytes]]
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    status, headers, body = answer
    return status, [*headers, *cors], body


class Gateway:
    """The gateway's ASGI app. ``await start()`` opens the pooled client, ``await close()`` closes it."""

    def __init__(
        self,
        routes: list[GatewayRoute],
        resolve_url: Callable[[str], str],
        *,
        cors_origins: Sequence[str] = ("*",),
        limits: Limits | None = None,
        openapi_ttl: float = 60.0,
        swagger_ui: str = SWAGGER_UI,
    ) -> None:
        for route in routes:
            if _PARAM.sub("{}", route.template.rstrip("/")) in RESERVED:
                raise ValueError(
                    f"{route.function} declares {route.template}, which the gateway serves itself "
                    f"({', '.join(RESERVED)})"
                )
        self.routes = routes
        self.resolve_url = resolve_url
        self.cors_origins = tuple(o.strip() for o in cors_origins if o.strip())
        self.limits = gateway_limits(limits)
        self.document = ApiDocument(routes, resolve_url, ttl=openapi_ttl)
        self.swagger_ui = swagger_ui.rstrip("/")
        self._client: httpx.AsyncClient | None = None
        self.in_flight = InFlight()
        self.draining = False

    # -- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=512, max_keepalive_connections=64, keepalive_expiry=30),
                follow_redirects=False,
                trust_env=False,
            )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def drain(self, timeout: float) -> bool:
        self.draining = True
        return await self.in_flight.wait_idle(timeout)

    async def shutdown(self) -> None:
        await self.close()

    # -- routing ---------------------------------------------------------------------------------------
    def match(self, method: str, path: str) -> tuple[GatewayRoute | None, set[str]]:
        """The route for ``method path``, or None and the methods the path allows (empty: unknown path)."""
        allowed: set[str] = set()
        for route in self.routes:
            if route.pattern.match(path):
                if method in route.methods:
                    return route, allowed
                allowed |= route.methods
        return None, allowed

    def _cors(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        if "*" in self.cors_origins:
            return [(b"access-control-allow-origin", b"*"), (b"access-control-expose-headers", b"Location")]
        if origin and origin in self.cors_origins:
            return [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-expose-headers", b"Location"),
                (b"vary", b"Origin"),
            ]
        return []

    # -- ASGI ------------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        with self.in_flight:
            function, (status, headers, body) = await self._handle(scope, receive)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
        log.info(
            "%s %s -> %s %d",
            scope["method"],
            scope["path"],
            function,
            status,
            extra={
                "function": function,
                "status": status,
                "ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle(
        self, scope: Scope, receive: Receive
    ) -> tuple[str, tuple[int, list[tuple[bytes, bytes]], bytes]]:
        method, path = scope["method"], scope["path"]
        headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]
        origin = next((v for k, v in headers if k == "origin"), None)
        cors = self._cors(origin)
        if path in ("/health/liveness", "/health/readiness"):
            return "-", self._health(path)
        try:
            self.limits.check_head(scope["headers"])
        except RequestRefused as exc:
            return "-", _with(refusal(exc), cors)
        if method == "OPTIONS" and any(k == "access-control-request-method" for k, _ in headers):
            return self._preflight(path, headers, cors)
        if path in ("/openapi.json", "/docs"):
            return "-", await self._own(method, path, cors)
        route, allowed = self.match(method, path)
        if route is None:
            return "-", self._no_route(method, path, allowed, cors)
        return route.function, await self._forward(route, scope, receive, headers, cors)

    async def _forward(
        self,
        route: GatewayRoute,
        scope: Scope,
        receive: Receive,
        headers: list[tuple[str, str]],
        cors: list[tuple[bytes, bytes]],
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Read the body (within the limits), then proxy the request to the route's function."""
        try:
            body = await read_body(receive, self.limits.max_body, self.limits.body_timeout)
        except RequestRefused as exc:
            return _with(refusal(exc), cors)
        except ConnectionAbortedError:
            return 499, [], b""  # the client went away: nobody reads this
        return await self._proxy(route, scope, headers, body, cors)

    async def _own(
        self, method: str, path: str, cors: list[tuple[bytes, bytes]]
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """``GET /openapi.json`` (the merged document) and ``GET /docs`` (Swagger UI on it)."""
        if method not in ("GET", "HEAD"):
            return _json(
                405, {"error": f"method {method} not allowed on {path}"}, [*cors, (b"allow", b"GET, HEAD")]
            )
        if path == "/docs":
            return 200, [(b"content-type", b"text/html; charset=utf-8"), *cors], self._docs_page()
        if self._client is None:
            await self.start()
        assert self._client is not None
        body = await self.document.body(self._client)
        return 200, [(b"content-type", b"application/json"), (b"cache-control", b"no-cache"), *cors], body

    def _docs_page(self) -> bytes:
        from fastapi.openapi.docs import get_swagger_ui_html

        page = get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{self.document.title} - Swagger UI",
            swagger_js_url=f"{self.swagger_ui}/swagger-ui-bundle.js",
            swagger_css_url=f"{self.swagger_ui}/swagger-ui.css",
            swagger_favicon_url=f"{self.swagger_ui}/favicon-32x32.png",
        )
        return bytes(page.body)

    def _health(self, path: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if path == "/health/liveness":
            return _json(200, {"status": "alive"})
        return _json(503 if self.draining else 200, {"status": "draining" if self.draining else "ready"})

    @staticmethod
    def _no_route(
        method: str, path: str, allowed: set[str], cors: list[tuple[bytes, bytes]]
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if allowed:
            allow = ", ".join(sorted(allowed)).encode()
            return _json(405, {"error": f"method {method} not allowed on {path}"}, [*cors, (b"allow", allow)])
        return _json(404, {"error": f"no route for {method} {path}"}, cors)

    def _preflight(
        self, path: str, headers: list[tuple[str, str]], cors: list[tuple[bytes, bytes]]
    ) -> tuple[str, tuple[int, list[tuple[bytes, bytes]], bytes]]:
        wanted = next(v for k, v in headers if k == "access-control-request-method").upper()
        route, allowed = self.match(wanted, path)
        if route is None:
            return "-", _json(404 if not allowed else 405, {"error": f"no route for {wanted} {path}"}, cors)
        requested = next((v for k, v in headers if k == "access-control-request-headers"), "")
        extra = [
            (b"access-control-allow-methods", ", ".join(sorted(route.methods | allowed)).encode()),
            (b"access-control-allow-headers", requested.encode("latin-1") or b"*"),
            (b"access-control-max-age", b"600"),
        ]
        return route.function, (204, [*cors, *extra], b"")

    async def _proxy(
        self,
        route: GatewayRoute,
        scope: Scope,
        headers: list[tuple[str, str]],
        body: bytes,
        cors: list[tuple[bytes, bytes]],
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        import httpx

        if self._client is None:
            await self.start()
        assert self._client is not None
        base = self.resolve_url(route.function).rstrip("/")
        query = scope.get("query_string", b"").decode("latin-1")
        url = f"{base}{scope.get('raw_path', b'').decode('latin-1') or scope['path']}"
        if "?" not in url and query:
            url = f"{url}?{query}"
        forward = [(k, v) for k, v in headers if k not in _HOP]
        client = scope.get("client")
        host = next((v for k, v in headers if k == "host"), "")
        forward += [
            ("x-forwarded-for", client[0] if client else ""),
            ("x-forwarded-proto", scope.get("scheme", "http")),
            ("x-forwarded-host", host),
        ]
        try:
            response = await self._client.request(
                scope["method"], url, headers=forward, content=body, timeout=route.timeout
            )
        except httpx.TimeoutException:
            return _json(
                504, {"error": f"function {route.function} did not answer within {route.timeout:g}s"}, cors
            )
        except httpx.TransportError as exc:
            log.warning("function %s at %s is unreachable: %s", route.function, base, exc)
            return _json(502, {"error": f"function {route.function} is not reachable"}, cors)
        out = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in response.headers.multi_items()
            if k.lower() not in _HOP
            and not k.lower().startswith(_CORS_PREFIX)
            and k.lower() != "content-encoding"
        ]
        content = response.content  # decoded by httpx, hence content-encoding is not forwarded
        out.append((b"content-length", str(len(content)).encode()))
        return response.status_code, [*out, *cors], content


def resolver(urls: Mapping[str, str], template: str) -> Callable[[str], str]:
    """URL of a function: from ``urls`` when named there, else from ``template`` (``{name}`` replaced)."""

    def resolve(name: str) -> str:
        return urls[name] if name in urls else template.format(name=name)

    return resolve


def build(
    app: AppSpec,
    urls: Mapping[str, str],
    template: str,
    cors_origins: str,
    *,
    limits: Limits | None = None,
    openapi_ttl: float = 60.0,
    swagger_ui: str = SWAGGER_UI,
) -> Gateway:
    if "{name}" not in template:
        raise ValueError(f"the URL template {template!r} has no {{name}}")
    return Gateway(
        routes_of(app),
        resolver(urls, template),
        cors_origins=cors_origins.split(","),
        limits=limits,
        openapi_ttl=openapi_ttl,
        swagger_ui=swagger_ui,
    )
