"""``kfaas saga``: run the state machine engine (the ``kfaas-saga`` service of compose and Kubernetes).

It reads the state machines of ``statemachines/`` (beside ``--functions``), keeps executions in MongoDB
(``MONGODB_URL``, database ``MONGODB_DATABASE``), sends task requests to the broker ingress (``K_SINK``, e.g.
``http://broker:8080/default``) and serves the broker's deliveries and the executions API on ``--port``.
Run as many as you like against the same MongoDB: they share the executions.
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

log = logging.getLogger("kfaas.saga")


def configure(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    _cliopts.functions_folder(parser)
    parser.add_argument("--port", type=int, default=int(env("PORT", "8080")), help="HTTP port (env PORT)")
    parser.add_argument("--host", default=env("HOST", "0.0.0.0"), help="address (env HOST)")
    parser.add_argument("--mongodb-url", default=env("MONGODB_URL"), help="MongoDB URL (env MONGODB_URL)")
    parser.add_argument(
        "--mongodb-url-file",
        default=env("MONGODB_URL_FILE"),
        help="read the MongoDB URL from this file, e.g. a mounted Secret (env MONGODB_URL_FILE)",
    )
    parser.add_argument(
        "--database", default=env("MONGODB_DATABASE", "kfaas"), help="database (env MONGODB_DATABASE; kfaas)"
    )
    parser.add_argument(
        "--sink", default=env("K_SINK"), help="the broker ingress task requests are sent to (env K_SINK)"
    )
    parser.add_argument(
        "--advertise-url",
        default=env("KFAAS_SAGA_URL", ""),
        help="this engine's URL as the other engines reach it (env KFAAS_SAGA_URL; informational)",
    )
    parser.add_argument(
        "--lease",
        type=float,
        default=float(env("KFAAS_SAGA_LEASE", "5")),
        help="seconds without a heartbeat before an engine's executions are taken over (5)",
    )


def run(args: argparse.Namespace) -> int:
    from kfaas.base.log import configure_logging

    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.mongodb_url_file and not args.mongodb_url:
        try:
            with open(args.mongodb_url_file, encoding="utf-8") as file:
                args.mongodb_url = file.read().strip()
        except OSError as exc:
            sys.stderr.write(f"kfaas saga: cannot read the MongoDB URL from {args.mongodb_url_file}: {exc}\n")
            return 2
    missing = [
        name for name, value in (("MONGODB_URL", args.mongodb_url), ("K_SINK", args.sink)) if not value
    ]
    if missing:
        sys.stderr.write(f"kfaas saga: {' and '.join(missing)} not set (see kfaas saga --help)\n")
        return 2
    app = _cliopts.load_functions("saga", args.functions)
    if app is None:
        return 2
    if not app.statemachines:
        sys.stderr.write(
            f"kfaas saga: no state machines beside {args.functions} (statemachines/*/statemachine.yaml)\n"
        )
        return 2
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_serve(app, args))
    return uvloop.run(_serve(app, args))


async def _serve(app: object, args: argparse.Namespace) -> int:
    from pymongo import AsyncMongoClient

    from kfaas.base.server import serve_embedded
    from kfaas.saga._engine import Engine
    from kfaas.saga._server import EngineApp
    from kfaas.spec import AppSpec

    assert isinstance(app, AppSpec)
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        args.mongodb_url, serverSelectionTimeoutMS=5000, timeoutMS=10000, tz_aware=True, appname="kfaas-saga"
    )
    engine = Engine(app, client[args.database], args.sink, url=args.advertise_url, lease=args.lease)
    try:
        await client.admin.command("ping")
        await engine.start()
    except Exception as exc:
        log.error("cannot start: MongoDB at %s did not answer: %r", _redact(args.mongodb_url), exc)
        await client.close()
        return 1
    server = asyncio.ensure_future(serve_embedded(EngineApp(engine), args.host, args.port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "engine %s on http://%s:%d, task requests to %s", engine.engine_id, args.host, args.port, args.sink
    )
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait([server, stopped], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    server.cancel()
    await asyncio.gather(server, return_exceptions=True)
    await engine.stop()
    await client.close()
    return 0


def _redact(url: str) -> str:
    import re

    return re.sub(r"//[^@/]*@", "//***@", url)
