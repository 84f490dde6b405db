"""Stream source benchmark: records per second end to end (stream -> kfaas stream consumer -> a function over
HTTP, batches, checkpoints in MongoDB, order per key checked), beside raw consumption of the same stream in
the same run: aio-pika over AMQP 0.9.1 (what the stream source uses) and rstream over the stream protocol.

    AMQP_URL=amqp://guest:guest@127.0.0.1:5672/ MONGODB_URL=mongodb://127.0.0.1:27017/ \\
    KFAAS_RABBITMQ_STREAM_URL=rabbitmq-stream://guest:guest@127.0.0.1:5552/ \\
      .venv/bin/python bench/stream.py [--records 50000] [--keys 100] [--batch-size 500] [--rounds 3] [--quiet 0.3]

The stream is filled once (``--records`` records over ``--keys`` partition keys, each key's records numbered);
then each round reads all of it three ways, in turn:

- raw aio-pika: one consumer from ``first``, prefetch 2x the batch size, manual acks (one ``multiple`` ack per
  batch), counting records -- no HTTP, no checkpoint;
- raw rstream: one subscriber from ``OffsetType.FIRST`` (credit-based), counting records (skipped when rstream
  or the stream port is missing);
- kfaas: a StreamConsumer (the one ``kfaas stream run`` runs) from a fresh checkpoint, POSTing batches in
  CloudEvents batch mode to a function in another process (a bare ASGI app on granian that reads the batch's
  JSON, checks each key's numbers arrive in order and counts), inserting a checkpoint per batch. Done when the function has every
  record and the last checkpoint is the last offset.

``--quiet S`` waits (up to 60 s) before each round until the 1-minute load average is at most S per core, and
reports the load seen; the ratio kfaas / raw is computed per round, and the median round is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import socket
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the function (another process) ----------------------------------------------------------------------
def function_main(port: int) -> None:
    """A function stand-in: reads each batch's JSON, checks order per key, counts (its own cost kept small,
    as the broker benchmark's subscribers: kfaas serve's parsing is bench/runtime.py's)."""
    from kfaas.base.server import serve_embedded

    state: dict[str, Any] = {"count": 0, "violations": 0, "last": {}}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":
            body = json.dumps({k: state[k] for k in ("count", "violations")}).encode()
        else:
            raw = bytearray()
            while True:
                message = await receive()
                raw += message.get("body", b"")
                if not message.get("more_body"):
                    break
            last: dict[str, int] = state["last"]
            for event in json.loads(raw):
                data = event["data"]
                key, seq = data["key"], data["seq"]
                if seq != last.get(key, -1) + 1 or event["partitionkey"] != key:
                    state["violations"] += 1
                last[key] = seq
                state["count"] += 1
            body = b""
        await send({"type": "http.response.start", "status": 200 if body else 204, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async def main() -> None:
        await serve_embedded(app, "127.0.0.1", port)

    asyncio.run(main())


async def function_state(port: int) -> dict[str, int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /count HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    data = await reader.read()
    writer.close()
    return dict(json.loads(data.split(b"\r\n\r\n", 1)[1]))


# -- filling the stream ----------------------------------------------------------------------------------
async def fill(amqp_url: str, stream: str, records: int, keys: int) -> None:
    import aio_pika
    from cloudevents.http import CloudEvent

    from kfaas.broker._streams import append

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(
            stream, durable=True, arguments={"x-queue-type": "stream", "x-max-age": "3600s"}
        )
        seqs = dict.fromkeys(range(keys), 0)

        async def one(n: int) -> None:
            key = n % keys
            seq = seqs[key]
            seqs[key] = seq + 1
            event = CloudEvent(
                {"type": "com.example.bench", "source": "/bench/stream", "partitionkey": f"k{key}"},
                {"key": f"k{key}", "seq": seq, "pad": "x" * 100},
            )
            await append(channel, stream, [event])

        chunk = 500
        for start in range(0, records, chunk):  # confirms of a chunk awaited together, in publish order
            await asyncio.gather(*(one(n) for n in range(start, min(start + chunk, records))))


# -- the three readers -----------------------------------------------------------------------------------
async def raw_aio_pika(amqp_url: str, stream: str, records: int, batch: int) -> float:
    import aio_pika

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=2 * batch)
        queue = await channel.declare_queue(stream, passive=True)
        done = asyncio.Event()
        count = 0

        async def on_message(message: Any) -> None:
            nonlocal count
            count += 1
            if count % batch == 0 or count == records:
                await message.ack(multiple=True)
            if count >= records:
                done.set()

        started = time.perf_counter()
        await queue.consume(on_message, no_ack=False, arguments={"x-stream-offset": "first"})
        await done.wait()
        return records / (time.perf_counter() - started)


async def raw_rstream(stream_url: str, stream: str, records: int) -> float | None:
    try:
        from rstream import Consumer, ConsumerOffsetSpecification, OffsetType
    except ImportError:
        return None
    parts = urlsplit(stream_url)
    consumer = Consumer(
        parts.hostname or "127.0.0.1",
        parts.port or 5552,
        username=parts.username or "guest",
        password=parts.password or "guest",
    )
    done = asyncio.Event()
    count = 0

    async def on_message(_message: Any, _context: Any) -> None:
        nonlocal count
        count += 1
        if count >= records:
            done.set()

    try:
        await consumer.start()
    except (OSError, ConnectionError):
        return None
    started = time.perf_counter()
    await consumer.subscribe(
        stream, on_message, offset_specification=ConsumerOffsetSpecification(OffsetType.FIRST, None)
    )
    await done.wait()
    elapsed = time.perf_counter() - started
    await consumer.close()
    return records / elapsed


async def kfaas_consumer(
    amqp_url: str, mongodb_url: str, stream: str, records: int, batch: int, port: int
) -> tuple[float, dict[str, int]]:
    from pymongo import AsyncMongoClient

    from kfaas.broker import StreamConsumer
    from kfaas.spec import AppSpec, FunctionSpec

    fn = FunctionSpec.model_validate(
        {
            "name": "bench",
            "kind": "cloudevent",
            "sources": [
                {"kind": "stream", "name": "s", "stream": stream, "batchSize": batch, "maxAge": "PT1H"}
            ],
        }
    )
    consumer_spec, fn, source = AppSpec(functions=[fn], root=Path(".")).streams[0]
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, tz_aware=True)
    database = client[f"kfaas_bench_{uuid.uuid4().hex[:8]}"]
    consumer = StreamConsumer(
        consumer_spec,
        fn,
        source,
        amqp_url=amqp_url,
        database=database,
        url=f"http://127.0.0.1:{port}/",
        namespace=f"bench-{uuid.uuid4().hex[:6]}",
    )
    started = time.perf_counter()
    task = asyncio.create_task(consumer.run())
    try:
        while consumer.position is None or consumer.position.offset != records - 1:
            if task.done():
                task.result()
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        state = await function_state(port)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.drop_database(database.name)
        await client.close()
    return records / elapsed, state


async def delete_stream(amqp_url: str, stream: str) -> None:
    import aio_pika

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(stream)


def wait_quiet(limit: float | None) -> float:
    if limit is not None:
        deadline = time.monotonic() + 60
        while os.getloadavg()[0] / (os.cpu_count() or 1) > limit and time.monotonic() < deadline:
            time.sleep(2)
    return os.getloadavg()[0]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quiet", type=float, default=None, help="wait for load/core <= this before a round")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    amqp_url = os.environ.get("AMQP_URL")
    mongodb_url = os.environ.get("MONGODB_URL")
    stream_url = os.environ.get("KFAAS_RABBITMQ_STREAM_URL", "rabbitmq-stream://guest:guest@127.0.0.1:5552/")
    if not amqp_url or not mongodb_url:
        sys.stderr.write("bench/stream.py: set AMQP_URL and MONGODB_URL (scripts/services env)\n")
        return 2
    stream = f"bench-stream-{uuid.uuid4().hex[:8]}"
    print(f"cores: {os.cpu_count()}, load before: {os.getloadavg()[0]:.2f} (1-min avg)")
    started = time.perf_counter()
    asyncio.run(fill(amqp_url, stream, args.records, args.keys))
    print(
        f"filled {stream}: {args.records} records over {args.keys} keys in {time.perf_counter() - started:.1f}s"
    )
    ctx = mp.get_context("spawn")
    rounds: list[dict[str, Any]] = []
    try:
        for n in range(args.rounds):
            load = wait_quiet(args.quiet)
            raw = asyncio.run(raw_aio_pika(amqp_url, stream, args.records, args.batch_size))
            rs = asyncio.run(raw_rstream(stream_url, stream, args.records))
            port = free_port()
            function = ctx.Process(target=function_main, args=(port,), daemon=True)
            function.start()
            try:
                deadline = time.monotonic() + 20
                while True:
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)
                rate, state = asyncio.run(
                    kfaas_consumer(amqp_url, mongodb_url, stream, args.records, args.batch_size, port)
                )
            finally:
                function.terminate()
                function.join(10)
            row = {
                "round": n + 1,
                "load": round(load, 2),
                "raw_aio_pika": round(raw),
                "raw_rstream": round(rs) if rs else None,
                "kfaas": round(rate),
                "delivered": state["count"],
                "order_violations": state["violations"],
                "ratio_vs_aio_pika": round(rate / raw, 3),
                "ratio_vs_rstream": round(rate / rs, 3) if rs else None,
            }
            rounds.append(row)
            print(json.dumps(row))
    finally:
        asyncio.run(delete_stream(amqp_url, stream))
    ok = all(r["delivered"] == args.records and r["order_violations"] == 0 for r in rounds)
    median = statistics.median(r["ratio_vs_aio_pika"] for r in rounds)
    summary = {
        "records": args.records,
        "keys": args.keys,
        "batch_size": args.batch_size,
        "median_kfaas": statistics.median(r["kfaas"] for r in rounds),
        "median_raw_aio_pika": statistics.median(r["raw_aio_pika"] for r in rounds),
        "median_raw_rstream": statistics.median(r["raw_rstream"] for r in rounds if r["raw_rstream"])
        if any(r["raw_rstream"] for r in rounds)
        else None,
        "median_ratio_vs_aio_pika": median,
        "order_kept_and_complete": ok,
        "load_after": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps({"rounds": rounds, "summary": summary}, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
