"""``kfaas gateway``: run the API gateway (the ``gateway`` service of compose, the public Knative Service)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from kfaas.gateway._app import SWAGGER_UI, build
from kfaas.spec import options as _cliopts

__all__ = ["configure", "run"]

log = logging.getLogger("kfaas.gateway")


def configure(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    _cliopts.functions_folder(parser)
    parser.add_argument("--host", default=env("HOST", "0.0.0.0"), help="address to listen on (env HOST)")
    parser.add_argument("--port", type=int, default=int(env("PORT", "8080")), help="port (env PORT, 8080)")
    _cliopts.url_template(parser)
    _cliopts.function_urls(parser)
    parser.add_argument(
        "--cors-origins",
        default=env("KFAAS_CORS_ORIGINS", "*"),
        help="allowed origins, comma-separated, or * (env KFAAS_CORS_ORIGINS)",
    )
    parser.add_argument(
        "--openapi-ttl",
        type=float,
        default=float(env("KFAAS_OPENAPI_TTL", "60")),
        help="seconds a function's OpenAPI document is kept before it is fetched again (env KFAAS_OPENAPI_TTL)",
    )
    parser.add_argument(
        "--swagger-ui",
        default=env("KFAAS_SWAGGER_UI", SWAGGER_UI),
        help="where the /docs page loads Swagger UI (swagger-ui-dist) from (env KFAAS_SWAGGER_UI)",
    )


def run(args: argparse.Namespace) -> int:
    from kfaas.base.asgi import Limits
    from kfaas.base.log import configure_logging
    from kfaas.base.server import PortClaim
    from kfaas.base.server import run as run_server
    from kfaas.spec import SpecError, load_app

    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    try:
        gateway = build(
            load_app(args.functions),
            _cliopts.url_mapping(args.url),
            args.url_template,
            args.cors_origins,
            limits=Limits.from_env(),
            openapi_ttl=args.openapi_ttl,
            swagger_ui=args.swagger_ui,
        )
    except (SpecError, ValueError) as exc:
        sys.stderr.write(f"kfaas gateway: {exc}\n")
        return 2
    try:
        claim = PortClaim(args.host, args.port)
    except OSError as exc:
        log.error("cannot serve: %s", exc)
        return 1
    for route in gateway.routes:
        log.info("route %s %s -> %s", ",".join(sorted(route.methods)), route.template, route.function)
    try:
        run_server(gateway, args.host, args.port, drain_seconds=10.0, claim=claim)
    except OSError as exc:
        log.error("cannot serve: %s", exc)
        return 1
    return 0
