"""The gateway part: ``kfaas gateway``, one base URL in front of every HTTP function (the seed's API Gateway).

Routes come from the ``routes`` of each ``kind: http`` description (path templates such as ``/users/{id}``);
a request is proxied to the function that declares the path and method, at a URL taken from a name → URL
mapping (``--url name=URL``, what ``kfaas dev`` passes) or from ``KFAAS_FUNCTION_URL_TEMPLATE``
(``http://{name}:8080`` in compose). A literal path segment wins over a template one (``/orders/stats``
before ``/orders/{id}``).

- CORS for every answer (``KFAAS_CORS_ORIGINS``, ``*`` by default; a comma-separated list echoes a listed
  ``Origin``), preflight ``OPTIONS`` answered here; a function's own CORS headers are replaced, not doubled;
- 404 JSON for a path no function declares, 405 JSON (with ``Allow``) for a known path and another method;
- 502 JSON when the function does not answer (down, refusing), 504 JSON when it is slower than its
  description's ``timeout``;
- ``GET /health/liveness`` and ``/health/readiness`` of the gateway itself;
- ``GET /openapi.json``: one OpenAPI document for the whole API, merged from the functions' own documents
  as the gateway routes them, fetched on demand and cached (``_openapi``); ``GET /docs``: Swagger UI on it;
- the request limits of ``kfaas.base.asgi`` (body size and time, header fields), answered with 413/408/431
  JSON before anything reaches a function;
- one JSON log line per request: method, path, function, status, duration.

Pooled ``httpx.AsyncClient`` connections; served with granian like the runtime.

May import: the shared base, the events part and the spec; never the function runtime.
"""

from kfaas.gateway._app import Gateway, GatewayRoute, build, resolver, routes_of

__all__ = ["Gateway", "GatewayRoute", "build", "resolver", "routes_of"]
