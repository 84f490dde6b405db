"""Dev broker benchmark: ingress -> broker -> 3 triggers -> 3 subscribers, beside raw aio-pika, same run.

    AMQP_URL=amqp://guest:guest@127.0.0.1:5672/ .venv/bin/python bench/broker.py [--rate 1000] [--seconds 20]

Processes (all on 127.0.0.1): this one generates load; one runs the dev broker (ingress on granian's embedded
server, one aio-pika connection); one serves the 3 subscribers (bare ASGI apps on granian that answer 202);
for the raw baseline one consumes. Latency is end to end, from the instant an event was *scheduled* to be
sent (open loop, so a stalled sender cannot hide queueing) to its arrival at each subscriber.

(a) steady offered load (default 1,000 events/s for 20 s): p50/p99 per trigger, and raw aio-pika (publish
with confirms into a quorum queue -> consume with manual acks) at the same rate.
(b) sustained rate: as fast as the system goes for --burst seconds (closed loop), events fully fanned out
per second; raw aio-pika messages consumed per second the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import signal
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

TRIGGERS = ("fan-a", "fan-b", "fan-c")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(coro: Any) -> Any:
    """Run a process's main coroutine on uvloop (as ``kfaas broker`` does) when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# -- subscriber process ----------------------------------------------------------------------------------
def subscribers_main(ports: list[int], conn: Any) -> None:
    from kfaas.base.server import serve_embedded

    latencies: dict[int, list[float]] = {p: [] for p in ports}

    def app_for(port: int) -> Any:
        record = latencies[port].append

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return
            while (await receive()).get("more_body"):
                pass
            for key, value in scope["headers"]:
                if key == b"ce-benchsent":
                    record((time.monotonic_ns() - int(value)) / 1e6)
                    break
            await send({"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})

        return app

    async def main() -> None:
        servers = [asyncio.create_task(serve_embedded(app_for(p), "127.0.0.1", p)) for p in ports]
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command == "stats":
                conn.send({p: list(v) for p, v in latencies.items()})
                for v in latencies.values():
                    v.clear()
            elif command == "count":
                conn.send(min(len(v) for v in latencies.values()))
            else:
                break
        for s in servers:
            s.cancel()
        await asyncio.gather(*servers, return_exceptions=True)

    run(main())


# -- broker process --------------------------------------------------------------------------------------
def broker_main(amqp_url: str, namespace: str, port: int, sub_ports: list[int], parallelism: int) -> None:
    from kfaas.broker import DevBroker, serve_ingress
    from kfaas.spec import AppSpec, FunctionSpec

    functions = [
        FunctionSpec.model_validate(
            {"name": name, "kind": "cloudevent", "triggers": [{"name": "t", "parallelism": parallelism}]}
        )
        for name in TRIGGERS
    ]
    urls = {name: f"http://127.0.0.1:{p}/" for name, p in zip(TRIGGERS, sub_ports, strict=True)}

    async def main() -> None:
        broker = DevBroker(
            AppSpec(functions=functions, root=Path(".")), amqp_url, urls.__getitem__, namespace=namespace
        )
        await broker.start()
        await serve_ingress(broker, "127.0.0.1", port)

    run(main())


# -- raw aio-pika consumer process -----------------------------------------------------------------------
def raw_consumer_main(amqp_url: str, queue_name: str, conn: Any, ready: Any) -> None:
    import aio_pika

    latencies: list[float] = []

    async def main() -> None:
        connection = await aio_pika.connect_robust(amqp_url)
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=64)
        queue = await channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            latencies.append((time.monotonic_ns() - int(message.headers["sent"])) / 1e6)  # type: ignore[arg-type]
            await message.ack()

        await queue.consume(on_message)
        ready.set()
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command == "stats":
                conn.send(list(latencies))
                latencies.clear()
            elif command == "count":
                conn.send(len(latencies))
            else:
                break
        await connection.close()

    asyncio.run(main())


# -- HTTP load generator: keep-alive HTTP/1.1 over a pool of raw connections ---------------------------
class Pool:
    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.size = size
        self.jobs: asyncio.Queue[tuple[int, int] | None] = asyncio.Queue()
        self.statuses: dict[int, int] = {}
        self.workers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.workers = [asyncio.create_task(self._worker()) for _ in range(self.size)]

    async def _worker(self) -> None:
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while (job := await self.jobs.get()) is not None:
            n, sent = job
            body = b'{"n": %d}' % n
            request = (
                b"POST /default HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                b"ce-specversion: 1.0\r\nce-id: %d\r\nce-source: /bench\r\nce-type: bench.event\r\n"
                b"ce-benchsent: %d\r\ncontent-length: %d\r\n\r\n%s" % (n, sent, len(body), body)
            )
            try:
                if conn is None:
                    conn = await asyncio.open_connection("127.0.0.1", self.port)
                reader, writer = conn
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if length:
                    await reader.readexactly(length)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                status = 0  # connection lost: counted, and the next job opens a new connection
                if conn is not None:
                    conn[1].close()
                conn = None
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.jobs.task_done()
        if conn is not None:
            conn[1].close()

    async def close(self) -> None:
        for _ in self.workers:
            await self.jobs.put(None)
        await asyncio.gather(*self.workers)


async def offered(pool: Pool, rate: float, seconds: float, start_n: int = 0) -> int:
    """Open loop: event i is due at t0 + i/rate; its timestamp is that due time."""
    total = int(rate * seconds)
    t0 = time.monotonic_ns()
    interval = 1e9 / rate
    for i in range(total):
        due = t0 + int(i * interval)
        delay = (due - time.monotonic_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        pool.jobs.put_nowait((start_n + i, due))
    await pool.jobs.join()
    return total


async def closed(pool: Pool, seconds: float, start_n: int) -> int:
    """Closed loop: keep the pool busy for ``seconds``; returns how many events were sent."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        while pool.jobs.qsize() < pool.size * 2:
            pool.jobs.put_nowait((start_n + n, time.monotonic_ns()))
            n += 1
        await asyncio.sleep(0.001)
    await pool.jobs.join()
    return n


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ask(conn: Any, command: str) -> Any:
    conn.send(command)
    return conn.recv()


async def wait_count(conn: Any, want: int, timeout: float) -> tuple[int, float]:
    deadline = time.monotonic() + timeout
    while True:
        got = ask(conn, "count")
        if got >= want or time.monotonic() > deadline:
            return got, time.monotonic()
        await asyncio.sleep(0.02)


async def wait_port(port: int) -> None:
    for _ in range(500):
        with contextlib.suppress(OSError):
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        await asyncio.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


async def bench_broker(args: argparse.Namespace, amqp_url: str, namespace: str) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    sub_ports = [free_port() for _ in TRIGGERS]
    ingress = free_port()
    parent, child = ctx.Pipe()
    subs = ctx.Process(target=subscribers_main, args=(sub_ports, child), daemon=True)
    subs.start()
    broker = ctx.Process(
        target=broker_main, args=(amqp_url, namespace, ingress, sub_ports, args.parallelism), daemon=True
    )
    broker.start()
    for p in [*sub_ports, ingress]:
        await wait_port(p)
    result: dict[str, Any] = {}
    try:
        pool = Pool(ingress, args.connections)
        await pool.start()
        # warm-up
        await offered(pool, 200, 1.0, start_n=10_000_000)
        await wait_count(parent, 200, 10)
        ask(parent, "stats")
        pool.statuses.clear()

        cpu0 = cpu_seconds(broker.pid), cpu_seconds(subs.pid)
        sent = await offered(pool, args.rate, args.seconds)
        got, _ = await wait_count(parent, pool.statuses.get(202, 0), 30)
        cpu1 = cpu_seconds(broker.pid), cpu_seconds(subs.pid)
        stats = ask(parent, "stats")
        per = {name: stats[p] for name, p in zip(TRIGGERS, sub_ports, strict=True)}
        result["steady"] = {
            "sent": sent,
            "delivered_min": got,
            "statuses": dict(pool.statuses),
            # CPU per event (ms) of the broker process and of the subscribers' process, less noisy than rates
            "cpu_ms": ((cpu1[0] - cpu0[0]) * 1e3 / sent, (cpu1[1] - cpu0[1]) * 1e3 / sent),
            "per_trigger": {
                n: (len(v), pct(v, 0.5), pct(v, 0.99), max(v, default=0)) for n, v in per.items()
            },
        }
        pool.statuses.clear()

        t0 = time.monotonic()
        sent = await closed(pool, args.burst, start_n=20_000_000)
        accepted = pool.statuses.get(202, 0)
        got, t_end = await wait_count(parent, accepted, 60)
        ask(parent, "stats")
        result["sustained"] = {
            "sent": sent,
            "accepted": accepted,
            "delivered_min": got,
            "rate": got / (t_end - t0),
            "statuses": dict(pool.statuses),
        }
        await pool.close()
    finally:
        with contextlib.suppress(Exception):
            parent.send("stop")
        broker.terminate()
        broker.join(5)
        subs.join(5)
        if subs.is_alive():
            subs.terminate()
    return result


async def bench_raw(args: argparse.Namespace, amqp_url: str, queue_name: str) -> dict[str, Any]:
    import aio_pika

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    ready = ctx.Event()
    consumer = ctx.Process(target=raw_consumer_main, args=(amqp_url, queue_name, child, ready), daemon=True)
    consumer.start()
    await asyncio.get_running_loop().run_in_executor(None, ready.wait, 30)
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    result: dict[str, Any] = {}
    window = asyncio.Semaphore(args.connections)

    async def publish(sent: int) -> None:
        async with window:
            await channel.default_exchange.publish(
                aio_pika.Message(b'{"n": 1}', headers={"sent": sent}, delivery_mode=2), routing_key=queue_name
            )

    try:
        tasks: set[asyncio.Task[None]] = set()
        total = int(args.rate * args.seconds)
        t0 = time.monotonic_ns()
        interval = 1e9 / args.rate
        for i in range(total):
            due = t0 + int(i * interval)
            delay = (due - time.monotonic_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(publish(due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        await wait_count(parent, total, 30)
        lat = ask(parent, "stats")
        result["steady"] = {"sent": total, "received": len(lat), "p50": pct(lat, 0.5), "p99": pct(lat, 0.99)}

        start = time.monotonic()
        n = 0
        while time.monotonic() - start < args.burst:
            batch = [asyncio.create_task(publish(time.monotonic_ns())) for _ in range(args.connections)]
            await asyncio.gather(*batch)
            n += len(batch)
        got, t_end = await wait_count(parent, n, 60)
        ask(parent, "stats")
        result["sustained"] = {"sent": n, "received": got, "rate": got / (t_end - start)}
    finally:
        with contextlib.suppress(Exception):
            parent.send("stop")
        consumer.join(5)
        with contextlib.suppress(Exception):
            await channel.queue_delete(queue_name)
        await connection.close()
    return result


async def cleanup(amqp_url: str, namespace: str) -> None:
    import aio_pika

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for name in TRIGGERS:
            await channel.queue_delete(f"t.{namespace}.{name}-t")
            await channel.queue_delete(f"t.{namespace}.{name}-t.dlq")
        await channel.exchange_delete(f"b.{namespace}.default")


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="offered events/s in (a)")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of (a)")
    parser.add_argument("--burst", type=float, default=10.0, help="duration of (b)")
    parser.add_argument("--connections", type=int, default=32, help="HTTP connections / publish window")
    parser.add_argument("--parallelism", type=int, default=32, help="parallelism of each trigger")
    args = parser.parse_args()
    amqp_url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    if not amqp_url.split("@")[-1].startswith(("127.0.0.1", "localhost")):
        print("refusing: the benchmark only targets a RabbitMQ on loopback", file=sys.stderr)
        return 2
    tag = uuid.uuid4().hex[:8]
    namespace = f"bench-{tag}"
    # a SIGTERM (e.g. from `timeout`) unwinds through the finally blocks: children stopped, queues deleted
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min avg), cores: {os.cpu_count()}")
    try:
        broker = await bench_broker(args, amqp_url, namespace)
    finally:
        await cleanup(amqp_url, namespace)
    print(f"load mid:    {os.getloadavg()[0]:.2f}")
    raw = await bench_raw(args, amqp_url, f"bench-raw-{tag}")
    print(f"load after:  {os.getloadavg()[0]:.2f}")

    steady = broker["steady"]
    print(f"\n(a) {args.rate:.0f} events/s offered for {args.seconds:.0f} s, parallelism {args.parallelism}")
    print(
        f"    ingress answers: {steady['statuses']}; sent {steady['sent']}, min delivered {steady['delivered_min']}"
    )
    print(f"    {'path':<24} {'received':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    worst = 0.0
    all_delivered = True
    for name, (count, p50, p99, mx) in steady["per_trigger"].items():
        worst = max(worst, p99)
        all_delivered &= count == steady["sent"] == steady["statuses"].get(202, 0)
        print(f"    broker -> {name:<13} {count:>9} {p50:>8.2f} {p99:>8.2f} {mx:>8.1f}")
    broker_cpu, subs_cpu = steady["cpu_ms"]
    print(f"    CPU per event: broker process {broker_cpu:.3f} ms, the 3 subscribers {subs_cpu:.3f} ms")
    rs = raw["steady"]
    print(f"    {'raw aio-pika':<24} {rs['received']:>9} {rs['p50']:>8.2f} {rs['p99']:>8.2f}")
    met_a = all_delivered and worst <= 25.0
    print(
        f"    target: all events reach all 3 triggers with p99 <= 25 ms: {'MET' if met_a else 'NOT MET'}"
        f" (worst p99 {worst:.2f} ms, {worst / rs['p99']:.1f}x raw p99)"
    )
    bs, rsus = broker["sustained"], raw["sustained"]
    ratio = bs["rate"] / rsus["rate"]
    print(f"\n(b) sustained, closed loop {args.burst:.0f} s")
    print(
        f"    broker: {bs['rate']:.0f} events/s fanned out to 3"
        f" ({bs['delivered_min']}/{bs['accepted']} accepted delivered; ingress answers {bs['statuses']})"
    )
    if any(code != 202 for code in (*steady["statuses"], *bs["statuses"])):
        print("    WARNING: the ingress refused events (RabbitMQ unavailable?): this run is not comparable")
    print(f"    raw aio-pika: {rsus['rate']:.0f} msg/s ({rsus['received']}/{rsus['sent']})")
    print(f"    ratio broker/raw: {ratio:.2f} (target >= 0.5: {'MET' if ratio >= 0.5 else 'NOT MET'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
