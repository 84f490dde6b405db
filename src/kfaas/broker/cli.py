"""``kfaas broker``: run the dev broker standalone (the ``broker`` service of docker-compose.yml).

Functions are reached at ``KFAAS_FUNCTION_URL_TEMPLATE`` (``--url-template``), e.g. ``http://{name}:8080/``
in compose, or at the URL ``--url NAME=URL`` gives one of them (functions on one host, each on its port); the
ingress listens on ``--host``/``--port`` (``PORT``, 8080) at ``/<broker>``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from kfaas.spec import options as _cliopts

__all__ = ["configure", "run"]

log = logging.getLogger("kfaas.broker")


def configure(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    _cliopts.functions_folder(parser)
    parser.add_argument("--port", type=int, default=int(env("PORT", "8080")), help="ingress port (env PORT)")
    parser.add_argument("--host", default=env("HOST", "0.0.0.0"), help="ingress address (env HOST)")
    _cliopts.amqp_url(parser)
    parser.add_argument(
        "--url-template",
        default=env("KFAAS_FUNCTION_URL_TEMPLATE", "http://{name}:8080/"),
        help="URL of a function from its name (env KFAAS_FUNCTION_URL_TEMPLATE)",
    )
    _cliopts.function_urls(parser)
    _cliopts.namespace(parser)


def run(args: argparse.Namespace) -> int:
    from kfaas.base.log import configure_logging

    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))  # JSON lines, like every kfaas container
    if not _cliopts.has_amqp_url("broker", args.amqp_url):
        return 2
    if "{name}" not in args.url_template:
        sys.stderr.write(f"kfaas broker: the URL template {args.url_template!r} has no {{name}}\n")
        return 2
    app = _cliopts.load_functions("broker", args.functions)
    if app is None:
        return 2
    from kfaas.base.asgi import Limits

    try:
        limits = Limits.from_env()
        args.urls = _function_urls(args.url, {fn.name for fn in app.functions}, args.functions)
    except ValueError as exc:
        sys.stderr.write(f"kfaas broker: {exc}\n")
        return 2
    try:
        import uvloop
    except ImportError:  # uvloop is optional (not on Windows)
        return asyncio.run(_serve(app, args, limits))
    return uvloop.run(_serve(app, args, limits))


def _function_urls(items: list[str], names: set[str], folder: object) -> dict[str, str]:
    """The ``--url NAME=URL`` mapping; ValueError naming a malformed item or a name that is no function's."""
    urls = _cliopts.url_mapping(items)
    unknown = sorted(set(urls) - names)
    if unknown:
        raise ValueError(f"--url names no function of {folder}: {', '.join(unknown)}")
    return urls


async def _serve(app: object, args: argparse.Namespace, limits: object) -> int:
    from kfaas.base.asgi import Limits
    from kfaas.base.server import PortClaim
    from kfaas.broker import BrokerConflict, DevBroker, RabbitMQUnreachable, serve_ingress
    from kfaas.spec import AppSpec

    assert isinstance(app, AppSpec)
    assert isinstance(limits, Limits)
    template: str = args.url_template
    urls: dict[str, str] = args.urls

    def resolve_url(name: str) -> str:
        return urls.get(name) or template.format(name=name)

    try:
        claim = PortClaim(args.host, args.port)  # a taken port is refused before anything connects
    except OSError as exc:
        log.error("cannot serve: %s", exc)
        return 1
    broker = DevBroker(app, args.amqp_url, resolve_url, namespace=args.namespace, limits=limits)
    try:
        await broker.start()
    except (RabbitMQUnreachable, BrokerConflict) as exc:
        claim.release()
        log.error("%s", exc)
        return 1
    server = asyncio.ensure_future(serve_ingress(broker, args.host, args.port, claim=claim))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("ingress on http://%s:%d/<broker> for %s", args.host, args.port, ", ".join(broker.brokers))
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait([server, stopped], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    server.cancel()
    failed: BaseException | None = None
    try:
        await server
    except asyncio.CancelledError:
        pass
    except OSError as exc:
        failed = exc
    await broker.stop()
    if failed is not None:
        log.error("cannot serve: %s", failed)
        return 1
    return 0
