"""``kfaas bucket-source``: one bucket source on its own, sending its events to a sink (a Knative Broker).

On Kubernetes there is no Knative source for S3 event records, and a RabbitmqSource would hand them over as
opaque ``dev.knative.rabbitmq.event`` payloads, so each bucket source of the descriptions runs as a
Deployment of the platform image with this command: the same runner as the dev broker's (its queue
``s.<namespace>.<function>-<name>`` bound to the store's exchange, filtering, dead letters in
``….dlq``), publishing each event by POSTing it in binary mode to ``K_SINK`` (set by a SinkBinding). A sink
that does not answer 2xx counts as the broker being unavailable: the runner retries with the source's
backoff, then returns the notification to its queue. One replica: a second would only share the queue.
The RabbitMQ URL comes from ``AMQP_URL`` or the file ``AMQP_URL_FILE`` names (a mounted Secret).
``GET /health/liveness`` and ``GET /health/readiness`` (ready while its RabbitMQ connection is up and the
queue consumed) answer on ``--port`` (``PORT``, 8080) for the pod's probes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfaas.spec import options as _cliopts

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection
    from cloudevents.http import CloudEvent

    from kfaas.spec import AppSpec

__all__ = ["SinkHost", "configure", "run"]

log = logging.getLogger("kfaas.broker.bucketsource")
SINK_TIMEOUT = 10.0  # seconds one POST to the sink may take


def configure(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    _cliopts.functions_folder(parser)
    parser.add_argument(
        "--source",
        default=env("KFAAS_SOURCE", ""),
        help="the source to run, <function>/<source name> (env KFAAS_SOURCE)",
    )
    parser.add_argument("--sink", default=env("K_SINK", ""), help="where events are POSTed (env K_SINK)")
    parser.add_argument("--port", type=int, default=int(env("PORT", "8080")), help="health port (env PORT)")
    parser.add_argument("--host", default=env("HOST", "0.0.0.0"), help="health address (env HOST)")
    _cliopts.amqp_url(parser)
    _cliopts.namespace(parser)


class SinkHost:
    """What a source runner needs, publishing to an HTTP sink instead of the dev broker's exchange."""

    def __init__(self, app: AppSpec, namespace: str, sink: str, connection: AbstractRobustConnection) -> None:
        import httpx

        from kfaas.broker._clock import Clock, SystemClock

        self.app = app
        self.namespace = namespace
        self.clock: Clock = SystemClock()
        self.sink = sink
        self._connection = connection
        self._client = httpx.AsyncClient(timeout=SINK_TIMEOUT, trust_env=False)

    @property
    def connection(self) -> AbstractRobustConnection:
        return self._connection

    async def publish(self, broker: str, event: CloudEvent) -> None:
        import httpx
        from cloudevents.conversion import to_binary

        from kfaas.broker._names import BrokerUnavailable

        headers, body = to_binary(event)
        try:
            answer = await self._client.post(self.sink, headers=headers, content=body)
        except httpx.HTTPError as exc:
            raise BrokerUnavailable(f"the sink {self.sink} did not answer: {exc}") from exc
        if answer.status_code >= 300:
            raise BrokerUnavailable(
                f"the sink {self.sink} answered {answer.status_code}: {answer.text[:200]}"
            )

    async def close(self) -> None:
        await self._client.aclose()


def run(args: argparse.Namespace) -> int:
    from kfaas.base.log import configure_logging

    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    url_file = os.environ.get("AMQP_URL_FILE")
    if not args.amqp_url and url_file:  # a mounted Secret (Kubernetes): the password stays out of the env
        try:
            args.amqp_url = Path(url_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            sys.stderr.write(f"kfaas bucket-source: AMQP_URL_FILE {url_file}: {exc}\n")
            return 2
    if not _cliopts.has_amqp_url("bucket-source", args.amqp_url):
        return 2
    if not args.sink:
        sys.stderr.write("kfaas bucket-source: no sink: set K_SINK or --sink (the broker's URL)\n")
        return 2
    app = _cliopts.load_functions("bucket-source", args.functions)
    if app is None:
        return 2
    from kfaas.spec import BucketSource

    sources = {
        f"{fn.name}/{s.name}": (fn, s)
        for fn in app.functions
        for s in fn.sources
        if isinstance(s, BucketSource)
    }
    if args.source not in sources:
        known = ", ".join(sorted(sources)) or "none"
        sys.stderr.write(
            f"kfaas bucket-source: --source {args.source!r} is no bucket source (known: {known})\n"
        )
        return 2
    fn, spec = sources[args.source]
    return asyncio.run(_serve(app, fn, spec, args))


async def _serve(app: AppSpec, fn: object, spec: object, args: argparse.Namespace) -> int:
    from kfaas.broker._connect import RabbitMQUnreachable, connect
    from kfaas.broker._sources import BucketSourceRunner
    from kfaas.spec import BucketSource, FunctionSpec

    assert isinstance(fn, FunctionSpec)
    assert isinstance(spec, BucketSource)
    try:
        connection = await connect(args.amqp_url, name=f"kfaas-bucket-source-{fn.name}-{spec.name}")
    except RabbitMQUnreachable as exc:
        log.error("%s", exc)
        return 1
    host = SinkHost(app, args.namespace, args.sink, connection)
    runner = BucketSourceRunner(host, fn, spec)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    from kfaas.base.server import serve_embedded
    from kfaas.broker._names import connection_ready

    consuming = False

    async def health(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        ok = path == "/health/liveness" or (
            path == "/health/readiness" and consuming and connection_ready(connection)
        )
        status = 200 if ok else (503 if path == "/health/readiness" else 404)
        body = json.dumps({"status": "ok" if ok else "unavailable", "source": runner.name}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    server = asyncio.ensure_future(serve_embedded(health, args.host, args.port))
    try:
        await runner.start()
        consuming = True
        log.info(
            "bucket source %s: bucket %s from exchange %s to %s",
            runner.name,
            spec.bucket,
            spec.exchange,
            args.sink,
        )
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait([server, stopped], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if server.done() and server.exception() is not None:
            log.error("cannot serve the health endpoints: %s", server.exception())
            return 1
    finally:
        consuming = False
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await server
        await runner.stop()
        await host.close()
        await connection.close()
    return 0
