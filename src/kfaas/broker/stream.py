"""``kfaas stream run|replay|status``: the consumer of a stream source, replays, and the lag of each source.

``run <function>-<source>`` is the stream source of one function (the Deployment on Kubernetes, a service in
compose, a process of ``kfaas dev``): it consumes the stream, delivers batches to the function and serves the
appends of the source's feeds (``POST /``) and its health on ``$PORT``. ``replay`` moves a source back (or
forward) to an offset or a time; the running consumer picks it up between batches. ``status`` shows, per
source, the last checkpointed offset, the stream's last offset and the lag between them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any

from kfaas.base.urls import redact
from kfaas.spec import options as _cliopts

__all__ = ["configure", "run"]

log = logging.getLogger("kfaas.broker.streams")


def configure(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    _cliopts.functions_folder(parser)
    _cliopts.amqp_url(parser)
    parser.add_argument(
        "--amqp-url-file",
        default=env("AMQP_URL_FILE"),
        help="read the RabbitMQ URL from this file, e.g. a mounted Secret (env AMQP_URL_FILE)",
    )
    _cliopts.namespace(parser)
    parser.add_argument("--mongodb-url", default=env("MONGODB_URL"), help="MongoDB URL (env MONGODB_URL)")
    parser.add_argument(
        "--mongodb-url-file",
        default=env("MONGODB_URL_FILE"),
        help="read the MongoDB URL from this file, e.g. a mounted Secret (env MONGODB_URL_FILE)",
    )
    parser.add_argument(
        "--database", default=env("MONGODB_DATABASE", "kfaas"), help="database (env MONGODB_DATABASE; kfaas)"
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="run|replay|status")
    run_ = sub.add_parser("run", help="consume a stream source and deliver its batches to the function")
    run_.add_argument("source", help="<function>-<source>")
    run_.add_argument("--port", type=int, default=int(env("PORT", "8080")), help="HTTP port (env PORT)")
    run_.add_argument("--host", default=env("HOST", "0.0.0.0"), help="address (env HOST)")
    _cliopts.url_template(run_)
    run_.add_argument("--url", help="the function's URL, over the template")
    replay = sub.add_parser("replay", help="deliver a source again from an offset or a time")
    replay.add_argument("source", help="<function>-<source>")
    replay.add_argument(
        "--from",
        dest="start",
        required=True,
        metavar="OFFSET|TIME",
        help="an offset (0 = the oldest record kept), an ISO 8601 time (2026-12-02T01:00:00Z) or a "
        "duration back from now (PT10M)",
    )
    status = sub.add_parser("status", help="checkpoint, last offset and lag of every stream source")
    status.add_argument("source", nargs="?", help="only this one (<function>-<source>)")
    status.add_argument("--json", action="store_true", help="print JSON")


def _from_file(args: argparse.Namespace, name: str, what: str) -> bool:
    """Fill ``args.<name>`` from ``args.<name>_file`` when only the file is given; False after an error."""
    path = getattr(args, f"{name}_file")
    if path and not getattr(args, name):
        try:
            with open(path, encoding="utf-8") as file:
                setattr(args, name, file.read().strip())
        except OSError as exc:
            sys.stderr.write(f"kfaas stream: cannot read the {what} URL from {path}: {exc}\n")
            return False
    return True


def _mongodb_url(args: argparse.Namespace) -> str | None:
    if not _from_file(args, "mongodb_url", "MongoDB"):
        return None
    if not args.mongodb_url:
        sys.stderr.write(
            "kfaas stream: no MongoDB URL (the checkpoints): set MONGODB_URL or pass --mongodb-url\n"
        )
        return None
    return str(args.mongodb_url)


def run(args: argparse.Namespace) -> int:  # noqa: PLR0911 (one return per refusal)
    from kfaas.spec import SpecError

    logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    if not _from_file(args, "amqp_url", "RabbitMQ"):
        return 2
    if not _cliopts.has_amqp_url("stream", args.amqp_url) or _mongodb_url(args) is None:
        return 2
    app = _cliopts.load_functions("stream", args.functions)
    if app is None:
        return 2
    wanted = getattr(args, "source", None)
    try:
        streams = [app.stream(wanted)] if wanted else app.streams
    except SpecError as exc:
        sys.stderr.write(f"kfaas stream: {exc}\n")
        return 2
    if args.action == "replay":
        from kfaas.broker._streams import parse_from

        try:
            args.offset, args.since = parse_from(args.start)
        except ValueError as exc:
            sys.stderr.write(f"kfaas stream: {exc}\n")
            return 2
    if args.action == "run":
        from kfaas.base.log import configure_logging

        configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
        return _loop_run(_serve(args, streams[0]))
    return _loop_run(_tool(args, streams))


def _loop_run(coro: Any) -> int:
    try:
        import uvloop
    except ImportError:
        return int(asyncio.run(coro))
    return int(uvloop.run(coro))


def _client(args: argparse.Namespace, name: str) -> Any:
    from pymongo import AsyncMongoClient

    return AsyncMongoClient(
        args.mongodb_url, serverSelectionTimeoutMS=5000, timeoutMS=10000, tz_aware=True, appname=name
    )


async def _serve(args: argparse.Namespace, found: Any) -> int:
    from kfaas.base.server import serve_embedded
    from kfaas.broker._claims import BrokerConflict
    from kfaas.broker._streams import StreamConsumer, StreamStopped

    consumer_spec, fn, source = found
    url = args.url or args.url_template.format(name=fn.name)
    client = _client(args, f"kfaas-stream-{consumer_spec.name}")
    try:
        await client.admin.command("ping")
    except Exception as exc:
        log.error("cannot start: MongoDB at %s did not answer: %r", redact(args.mongodb_url), exc)
        await client.close()
        return 1
    consumer = StreamConsumer(
        consumer_spec,
        fn,
        source,
        amqp_url=args.amqp_url,
        database=client[args.database],
        url=url,
        namespace=args.namespace,
    )
    consuming = asyncio.ensure_future(consumer.run())
    server = asyncio.ensure_future(serve_embedded(consumer, args.host, args.port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopped = asyncio.ensure_future(stop.wait())
    log.info(
        "stream source %s: %s -> %s, appends and health on http://%s:%d",
        consumer_spec.name,
        source.stream,
        url,
        args.host,
        args.port,
    )
    await asyncio.wait([consuming, server, stopped], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if consuming.done() and not consuming.cancelled():
        failure = consuming.exception()
        if isinstance(failure, BrokerConflict | StreamStopped):
            log.error("%s", failure)
            code = 1
        elif failure is not None:
            log.error("stream source %s failed: %r", consumer_spec.name, failure)
            code = 1
    if server.done() and not server.cancelled() and server.exception() is not None:
        log.error("cannot serve on %s:%d: %s", args.host, args.port, server.exception())
        code = 1
    for task in (stopped, consuming, server):
        task.cancel()
    await asyncio.gather(consuming, server, return_exceptions=True)
    await consumer.http.aclose()
    await client.close()
    return code


async def _tool(args: argparse.Namespace, streams: list[Any]) -> int:
    import aio_pika

    from kfaas.broker._streams import Checkpoints

    client = _client(args, "kfaas-stream-cli")
    checkpoints = Checkpoints.of(client[args.database])
    try:
        if args.action == "replay":
            consumer_spec, _, source = streams[0]
            consumer_id = f"{args.namespace}/{consumer_spec.name}"
            position = await checkpoints.replay(consumer_id, args.offset, args.since)
            where = f"offset {args.offset}" if args.offset is not None else f"{args.since.isoformat()}"
            sys.stdout.write(
                f"{consumer_spec.name}: replays {source.stream} from {where} (epoch {position.epoch}); "
                "a running consumer starts over there after its current batch\n"
            )
            return 0
        try:
            connection = await aio_pika.connect(args.amqp_url)
        except (aio_pika.exceptions.AMQPError, ConnectionError, OSError) as exc:
            sys.stderr.write(f"kfaas stream: RabbitMQ at {redact(args.amqp_url)}: {exc!r}\n")
            return 1
        async with connection:
            rows = [await _status_row(args, connection, checkpoints, found) for found in streams]
    except Exception as exc:
        from pymongo.errors import PyMongoError

        if not isinstance(exc, PyMongoError):
            raise
        sys.stderr.write(f"kfaas stream: MongoDB at {redact(args.mongodb_url)}: {exc}\n")
        return 1
    finally:
        await client.close()
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
        return 0
    if not rows:
        sys.stdout.write("no stream sources\n")
    for row in rows:
        lag = "?" if row["lag"] is None else row["lag"]
        checkpoint = "none" if row["checkpoint"] is None else row["checkpoint"]
        sys.stdout.write(
            f"{row['source']}: stream {row['stream']}  checkpoint {checkpoint}  last {row['last']}  lag {lag}  "
            f"failed {row['failed']}\n"
        )
    return 0


async def _status_row(
    args: argparse.Namespace, connection: Any, checkpoints: Any, found: Any
) -> dict[str, Any]:
    import aio_pika

    from kfaas.broker._streams import dead_letter_queue, tail_offset

    consumer_spec, fn, source = found
    position = await checkpoints.latest(f"{args.namespace}/{consumer_spec.name}")
    last = await tail_offset(connection, source.stream)
    done = position.offset if position is not None else None
    if last is None:
        lag: int | None = 0
    elif done is None:
        lag = None if position is not None else last + 1  # a replay from a time: not known until it runs
    else:
        lag = max(last - done, 0)
    failed = 0
    channel = await connection.channel()
    try:
        queue = await channel.declare_queue(
            dead_letter_queue(args.namespace, consumer_spec.name), passive=True
        )
        failed = queue.declaration_result.message_count or 0
    except aio_pika.exceptions.ChannelNotFoundEntity:
        pass
    return {
        "source": consumer_spec.name,
        "function": fn.name,
        "stream": source.stream,
        "checkpoint": done,
        "epoch": position.epoch if position is not None else None,
        "checkpointed_at": position.at if position is not None else None,
        "last": last,
        "lag": lag,
        "failed": failed,
    }
