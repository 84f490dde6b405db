"""Order pipeline benchmark: ``POST /orders`` to the email and the analytics count, on ``kfaas dev``.

    .venv/bin/python bench/pipeline.py --backend name=sqlite,url=mongodb://127.0.0.1:27221/,metrics=URL \
        [--backend name=pg,url=...,metrics=URL,pg-port=5421] [--functions NAME=DIR ...] \
        [--rates 10,15,20,30,40] [--seconds 10] [--quiet 0.5]

For each backend (a MongoDB-wire server: FerretDB on SQLite, or on PostgreSQL) and each folder of functions
(``--functions``, default the repository's; several run one after the other, a baseline beside a change),
one ``kfaas dev`` run of the four functions of the order flow (place-order, process-order, notify-email,
order-analytics, in a private copy whose orders queue, broker namespace and database belong to this run)
on the RabbitMQ of ``--amqp-url``, with this process as the SMTP sink. After 20 warm-up orders, a stepped
open-loop offered rate: at each step ``rate x seconds`` orders (at most ``--max-orders``) are sent at even
intervals through the gateway, then the step waits (at most ``--drain`` s) until every accepted order has
its email and order-analytics has answered for it.

Per step: offered and achieved rate (orders completed / time from the first send to the last completion);
latency from the send to the later of the email and order-analytics' answer (p50/p99), and to the 202, the
email and the count separately; refused (non-202) and lost orders (a 202 without exactly one email or
without its analytics answer) and dead letters, and the per-day total checked against the orders counted;
the CPU of each process per order (from /proc: kfaas dev is the gateway, the dev broker and the queue
source in one process; each ``kfaas serve``; FerretDB; PostgreSQL; RabbitMQ; this process, the load and the
sink); MongoDB commands per order by name, from FerretDB's own request counter (``metrics=``, its debug
address: nothing is added to the measured path; this process's own queries are subtracted). The highest
sustained rate is the highest step whose achieved rate is within 5% of the offered one, with p99 <= ``--p99``
seconds, nothing refused, lost or dead-lettered; stepping stops after the first step that is not.

The machine's load is printed at the start and with every step (the CPU share of processes outside the
run); ``--quiet 0.5`` waits before each step (at most ``--quiet-wait`` s) until others use at most half of
it. Loopback only, bounded in orders and time. Results: bench/results/pipeline-<date>.json (``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pymongo import monitoring

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ("place-order", "process-order", "notify-email", "order-analytics")
TICK = os.sysconf("SC_CLK_TCK")
USERS = 50
SUBJECT = re.compile(r"Your order (\S+) has been processed")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------------------ /proc helpers


def cpu_seconds(pid: int, reaped: bool = True) -> float:
    """CPU seconds of ``pid``, with those of its children that have ended and been waited for (``reaped``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    own = int(fields[11]) + int(fields[12])  # utime + stime
    children = int(fields[13]) + int(fields[14]) if reaped else 0  # cutime + cstime
    return (own + children) / TICK


def children_of() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(pid: int, tree: dict[int, list[int]]) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(tree.get(p, []))
    return out


def listening_pid(port: int) -> int | None:
    """The process listening on 127.0.0.1:port (or any address), found through its socket's inode."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(parts[9])
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(entry.name)
        except OSError:
            continue
    return None


def env_of(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def cpu_busy_total() -> tuple[float, float]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / TICK, sum(fields[:8]) / TICK


def others_busy(seconds: float) -> float:
    b0, t0 = cpu_busy_total()
    time.sleep(seconds)
    b1, t1 = cpu_busy_total()
    return (b1 - b0) / max(t1 - t0, 1e-9)


# ------------------------------------------------------------------------------------------------ backends


@dataclass
class Backend:
    name: str
    url: str
    metrics: str = ""
    pg_port: int = 0

    @classmethod
    def parse(cls, text: str) -> Backend:
        parts = dict(p.split("=", 1) for p in text.split(",") if "=" in p)
        unknown = set(parts) - {"name", "url", "metrics", "pg-port"}
        if unknown or "url" not in parts:
            raise argparse.ArgumentTypeError(
                f"--backend {text!r}: expected name=NAME,url=MONGODB_URL[,metrics=URL][,pg-port=PORT]"
            )
        return cls(
            parts.get("name", "mongo"), parts["url"], parts.get("metrics", ""), int(parts.get("pg-port", 0))
        )

    def mongo_port(self) -> int:
        match = re.search(r"://(?:[^@/]*@)?[^:/]+:(\d+)", self.url)
        return int(match.group(1)) if match else 27017

    def commands(self) -> dict[str, int]:
        """FerretDB's request counter by command (empty when no metrics URL is given)."""
        if not self.metrics:
            return {}
        text = urllib.request.urlopen(self.metrics.rstrip("/") + "/debug/metrics", timeout=10).read().decode()
        out: dict[str, int] = {}
        for line in text.splitlines():
            m = re.match(r'ferretdb_client_requests_total\{command="([^"]*)",opcode="[^"]*"\} (\S+)', line)
            if m:
                out[m.group(1)] = out.get(m.group(1), 0) + int(float(m.group(2)))
        return out


# -------------------------------------------------------------------------------------------- mail sink


class TimedSink:
    """The SMTP sink of kfaas dev, with the arrival time of every email, keyed by order id."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrived: dict[str, list[float]] = {}
        self.lock = threading.Lock()
        self.controller: Any = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        now = time.time()
        raw = (envelope.original_content or envelope.content).decode(errors="replace")
        m = SUBJECT.search(raw)
        if m:
            with self.lock:
                self.arrived.setdefault(m.group(1), []).append(now)
        return "250 Message accepted"

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()


# ------------------------------------------------------------------------------------------ the dev run


class Run:
    def __init__(self, backend: Backend, amqp_url: str, sink: TimedSink, tmp: Path, functions: Path) -> None:
        self.backend = backend
        self.amqp_url = amqp_url
        self.sink = sink
        self.run_id = uuid.uuid4().hex[:8]
        self.namespace = f"bench-{self.run_id}"
        self.queue = f"orders-bench-{self.run_id}"
        self.database = f"kfaas_bench_{self.run_id}"
        self.port = free_port()
        self.functions = tmp / "functions"
        self.lines: list[str] = []
        self.lock = threading.Lock()
        self.analytics_done: dict[str, float] = {}  # order id -> time order-analytics answered 2xx
        self.proc: subprocess.Popen[bytes] | None = None
        shutil.copytree(functions, self.functions, ignore=shutil.ignore_patterns("__pycache__"))
        self._edit("process-order", self._rename_queue)
        self._edit("place-order", lambda d: d.setdefault("env", {}).update(ORDERS_QUEUE=self.queue))

    def _edit(self, function: str, change: Any) -> None:
        path = self.functions / function / "function.yaml"
        data = yaml.safe_load(path.read_text())
        change(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    def _rename_queue(self, spec: dict[str, Any]) -> None:
        for source in spec.get("sources", []):
            if source.get("kind") == "queue":
                source["queue"] = self.queue

    def start(self, timeout: float) -> None:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "MONGODB_", "AMQP_", "KFAAS_"))
        }
        env.update(
            MONGODB_URL=self.backend.url,
            MONGODB_DATABASE=self.database,
            AMQP_URL=self.amqp_url,
            KFAAS_NAMESPACE=self.namespace,
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=str(self.sink.port),
            PYTHONUNBUFFERED="1",
        )
        argv = [sys.executable, "-m", "kfaas", "dev", "--functions", str(self.functions)]
        argv += ["--port", str(self.port), "--broker-port", str(free_port()), "--saga-port", str(free_port())]
        for name in FUNCTIONS:
            argv += ["--only", name]
        self.proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.functions.parent
        )
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not any("kfaas dev: ready" in line for line in self.lines[-50:]):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("kfaas dev did not get ready:\n" + "\n".join(self.lines[-40:]))
            time.sleep(0.2)

    def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            if len(self.lines) > 5000:
                del self.lines[:1000]
            name, _, rest = line.partition(" | ")
            if name.strip() == "order-analytics" and '"msg": "request"' in rest:
                try:
                    record = json.loads(rest)
                except ValueError:
                    continue
                ce_id = str(record.get("ce_id", ""))
                if 200 <= int(record.get("status", 0)) < 300 and ce_id.startswith("order-processed-"):
                    stamp = dt.datetime.fromisoformat(record["time"].replace("Z", "+00:00")).timestamp()
                    with self.lock:
                        self.analytics_done.setdefault(ce_id.removeprefix("order-processed-"), stamp)

    def processes(self, backend_pids: dict[str, int]) -> dict[str, tuple[int, bool]]:
        """Process name -> (pid, with its descendants): kfaas dev alone, each function, the servers."""
        assert self.proc is not None
        tree = children_of()
        out: dict[str, tuple[int, bool]] = {"kfaas dev": (self.proc.pid, False)}
        for child in tree.get(self.proc.pid, []):
            out[env_of(child).get("KFAAS_FUNCTION") or f"child {child}"] = (child, True)
        out.update({name: (pid, True) for name, pid in backend_pids.items()})
        out["bench (load + SMTP sink)"] = (os.getpid(), False)
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def server_pids(backend: Backend, amqp_port: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, port in (
        ("FerretDB", backend.mongo_port()),
        ("PostgreSQL", backend.pg_port),
        ("RabbitMQ", amqp_port),
    ):
        pid = listening_pid(port) if port else None
        if pid is not None:
            out[name] = pid
    return out


def cpu_of(groups: dict[str, tuple[int, bool]]) -> dict[str, float]:
    """CPU seconds per group. A group with descendants (PostgreSQL forks a process per connection) counts
    those alive now and, through each one's cutime, those ended meanwhile; kfaas dev counts itself alone
    (its children are the functions, counted apart)."""
    tree = children_of()
    out = {}
    for name, (pid, family) in groups.items():
        pids = descendants(pid, tree) if family else [pid]
        out[name] = sum(cpu_seconds(p, reaped=family) for p in pids)
    return out


# ------------------------------------------------------------------------------------------------- a step


@dataclass
class Step:
    rate: float
    orders: int
    label: str  # part of the order ids: unique per step
    sent: dict[str, float] = field(default_factory=dict)  # order id -> send time (wall)
    accepted_at: dict[str, float] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)  # status -> count


async def send_orders(run: Run, step: Step, users: list[str], max_in_flight: int) -> float:
    import httpx

    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    gate = asyncio.Semaphore(max_in_flight)
    url = f"http://127.0.0.1:{run.port}/orders"

    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one(i: int) -> None:
            order_id = f"b{run.run_id}-{step.label}-{i}"
            body = {
                "id": order_id,
                "userId": users[i % len(users)],
                "items": [{"sku": f"sku-{i % 7}", "qty": 1 + i % 3, "price": 9.5}],
            }
            async with gate:
                step.sent[order_id] = time.time()
                try:
                    response = await client.post(url, json=body)
                    status = response.status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__  # type: ignore[assignment]
                if status == 202:
                    step.accepted_at[order_id] = time.time()
                else:
                    step.refused[str(status)] = step.refused.get(str(status), 0) + 1

        start = time.monotonic()
        tasks = []
        for i in range(step.orders):
            delay = start + i / step.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        return time.monotonic() - start


async def measure_step(
    run: Run, db: Any, step: Step, users: list[str], args: argparse.Namespace, day_key: str
) -> dict[str, Any]:
    totals = db["order_totals_by_day"]
    before_doc = await totals.find_one({"_id": day_key})
    counted_before = int(before_doc["orders"]) if before_doc else 0
    groups = run.processes(server_pids(run.backend, args.amqp_port))
    cpu0 = cpu_of(groups)
    cmd0 = run.backend.commands()
    busy0, total0 = cpu_busy_total()
    wall0 = time.time()
    send_s = await send_orders(run, step, users, args.max_in_flight)

    accepted = set(step.accepted_at)
    deadline = time.monotonic() + args.drain
    while time.monotonic() < deadline:
        with run.sink.lock:
            emailed = sum(1 for oid in accepted if oid in run.sink.arrived)
        with run.lock:
            answered = sum(1 for oid in accepted if oid in run.analytics_done)
        if emailed >= len(accepted) and answered >= len(accepted):
            doc = await totals.find_one({"_id": day_key})
            if doc and int(doc["orders"]) - counted_before >= len(accepted):
                break
        await asyncio.sleep(0.25)
    drained = time.monotonic() < deadline
    cpu1 = cpu_of(groups)
    cmd1 = run.backend.commands()
    busy1, total1 = cpu_busy_total()

    # completion times: the email (the sink) and order-analytics' answer (its request log line: the time it
    # answered 204 for the order's processed event, after both counts were written)
    ids = sorted(accepted)
    with run.lock:
        counted = {oid: run.analytics_done[oid] for oid in ids if oid in run.analytics_done}
    processed = 0
    for i in range(0, len(ids), 500):
        processed += await db["orders"].count_documents(
            {"_id": {"$in": ids[i : i + 500]}, "status": "processed"}
        )
    doc = await totals.find_one({"_id": day_key})
    counted_delta = (int(doc["orders"]) if doc else 0) - counted_before

    with run.sink.lock:
        mails = {oid: list(run.sink.arrived.get(oid, [])) for oid in ids}
    lost = [oid for oid in ids if len(mails[oid]) != 1 or oid not in counted]
    e2e, to_mail, to_count, to_202 = [], [], [], []
    last_done = wall0
    for oid in ids:
        t0 = step.sent[oid]
        to_202.append(step.accepted_at[oid] - t0)
        if mails[oid]:
            to_mail.append(mails[oid][0] - t0)
        if oid in counted:
            to_count.append(counted[oid] - t0)
        if mails[oid] and oid in counted:
            done = max(mails[oid][0], counted[oid])
            e2e.append(done - t0)
            last_done = max(last_done, done)
    elapsed = max(last_done - wall0, send_s)
    complete = len(e2e)
    dead = await dead_letters(run)
    own_commands = getattr(db.client, "_bench_commands", None)
    commands = {k: cmd1.get(k, 0) - cmd0.get(k, 0) for k in cmd1}
    if own_commands is not None:
        for name, n in own_commands.take().items():
            commands[name] = commands.get(name, 0) - n
    commands = {k: v for k, v in commands.items() if v > 0}
    run_cpu = {name: cpu1[name] - cpu0.get(name, 0.0) for name in cpu1}
    all_cpu = busy1 - busy0
    others = max(0.0, all_cpu - sum(run_cpu.values())) / max(total1 - total0, 1e-9)
    n = max(complete, 1)
    result = {
        "offered_rate": step.rate,
        "sent": step.orders,
        "send_seconds": round(send_s, 2),
        "accepted": len(accepted),
        "refused": step.refused,
        "completed": complete,
        "achieved_rate": round(complete / elapsed, 1) if elapsed > 0 else 0.0,
        "lost": len(lost),
        "lost_ids": lost[:10],
        "emails_duplicated": sum(1 for m in mails.values() if len(m) > 1),
        "processed_in_db": processed,
        "day_total_delta": counted_delta,
        "dead_letters": dead,
        "drained": drained,
        "latency_s": {
            "e2e_p50": round(pct(e2e, 0.5), 3),
            "e2e_p99": round(pct(e2e, 0.99), 3),
            "e2e_max": round(max(e2e, default=float("nan")), 3),
            "to_202_p50": round(pct(to_202, 0.5), 3),
            "to_202_p99": round(pct(to_202, 0.99), 3),
            "to_email_p99": round(pct(to_mail, 0.99), 3),
            "to_count_p99": round(pct(to_count, 0.99), 3),
        },
        "cpu_ms_per_order": {
            k: round(1000 * v / n, 2) for k, v in sorted(run_cpu.items(), key=lambda kv: -kv[1])
        },
        "cpu_cores_used": round(sum(run_cpu.values()) / max(elapsed, 1e-9), 2),
        "others_cpu_share": round(others, 3),
        "mongo_commands_per_order": {
            k: round(v / n, 2) for k, v in sorted(commands.items(), key=lambda kv: -kv[1])
        },
        "mongo_round_trips_per_order": round(
            sum(v for k, v in commands.items() if k not in ("hello", "isMaster", "ismaster", "ping")) / n, 2
        )
        if commands
        else None,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    result["sustained"] = (
        drained
        and not lost
        and not step.refused
        and not dead
        and counted_delta == len(accepted)
        and result["achieved_rate"] >= 0.95 * step.rate
        and result["latency_s"]["e2e_p99"] <= args.p99
    )
    return result


async def dead_letters(run: Run) -> int:
    import aio_pika

    from kfaas.broker import triggers_of
    from kfaas.spec import load_app

    app = load_app(run.functions)
    total = 0
    connection = await aio_pika.connect(run.amqp_url, timeout=10)
    async with connection:
        for ref in triggers_of(app, run.namespace):
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(ref.dead_letter_queue, passive=True)
                total += queue.declaration_result.message_count or 0
            except aio_pika.exceptions.ChannelClosed:
                pass
    return total


async def cleanup(run: Run) -> None:
    import aio_pika

    from kfaas.broker import triggers_of
    from kfaas.broker._names import broker_exchange
    from kfaas.spec import load_app

    app = load_app(run.functions)
    connection = await aio_pika.connect(run.amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel()
        for ref in triggers_of(app, run.namespace):
            for queue in (ref.queue, ref.dead_letter_queue):
                await channel.queue_delete(queue)
        for broker in app.brokers:
            await channel.exchange_delete(broker_exchange(run.namespace, broker))
        await channel.queue_delete(run.queue)


class OwnCommands(monitoring.CommandListener):
    """This process's own MongoDB commands, to subtract from the server's counter."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()

    def started(self, event: Any) -> None:
        with self.lock:
            self.counts[event.command_name] = self.counts.get(event.command_name, 0) + 1

    def succeeded(self, event: Any) -> None:
        pass

    def failed(self, event: Any) -> None:
        pass

    def take(self) -> dict[str, int]:
        with self.lock:
            out, self.counts = self.counts, {}
        return out


def quiet_wait(below: float, max_wait: float) -> float:
    busy = others_busy(1.0)
    deadline = time.monotonic() + max_wait
    while below and busy > below and time.monotonic() < deadline:
        busy = others_busy(1.0)
    return busy


async def bench_backend(
    backend: Backend, variant: str, functions: Path, args: argparse.Namespace
) -> dict[str, Any]:
    from bson import ObjectId
    from pymongo import AsyncMongoClient

    sink = TimedSink()
    sink.start()
    with tempfile.TemporaryDirectory(prefix="kfaas-pipeline-") as tmp:
        run = Run(backend, args.amqp_url, sink, Path(tmp), functions)
        own = OwnCommands()
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            backend.url, event_listeners=[own], serverSelectionTimeoutMS=10_000
        )
        client._bench_commands = own  # type: ignore[attr-defined]
        db = client[run.database]
        users = []
        for i in range(USERS):
            oid = ObjectId()
            await db["users"].insert_one({"_id": oid, "name": f"User {i}", "email": f"user{i}@example.com"})
            users.append(str(oid))
        steps: list[dict[str, Any]] = []
        try:
            print(
                f"[{backend.name}/{variant}] starting kfaas dev ({', '.join(FUNCTIONS)} of {functions}) "
                f"on {backend.url}",
                flush=True,
            )
            run.start(args.ready_timeout)
            # warm-up: a few orders through the whole flow (imports, connections, queues)
            warm = Step(rate=10.0, orders=20, label="warm")
            await measure_step(run, db, warm, users, args, dt.datetime.now(dt.UTC).date().isoformat())
            own.take()
            for n, rate in enumerate(args.rates):
                busy = quiet_wait(args.quiet, args.quiet_wait)
                orders = min(int(rate * args.seconds), args.max_orders)
                step = Step(rate=rate, orders=orders, label=f"s{n}")
                day = dt.datetime.now(dt.UTC).date().isoformat()
                result = await measure_step(run, db, step, users, args, day)
                result["others_busy_before"] = round(busy, 3)
                steps.append(result)
                print_step(f"{backend.name}/{variant}", result)
                if not result["sustained"]:
                    break
        finally:
            run.stop()
            sink.stop()
            try:
                await cleanup(run)
            finally:
                await client.drop_database(run.database)
                await client.close()
    sustained = [s["offered_rate"] for s in steps if s["sustained"]]
    return {
        "backend": backend.name,
        "functions": variant,
        "functions_dir": _shown(functions),
        "url": backend.url,
        "steps": steps,
        "highest_sustained": max(sustained, default=0),
    }


def print_step(name: str, r: dict[str, Any]) -> None:
    lat = r["latency_s"]
    print(
        f"[{name}] offered {r['offered_rate']:g}/s: {r['accepted']}/{r['sent']} accepted, achieved "
        f"{r['achieved_rate']}/s, e2e p50 {lat['e2e_p50']}s p99 {lat['e2e_p99']}s, lost {r['lost']}, "
        f"dead letters {r['dead_letters']}, refused {r['refused'] or 0}, sustained {r['sustained']}",
        flush=True,
    )
    print(
        f"    CPU ms/order: {r['cpu_ms_per_order']}  (run used {r['cpu_cores_used']} cores; others {r['others_cpu_share']:.0%})"
    )
    print(
        f"    MongoDB commands/order: {r['mongo_round_trips_per_order']} {r['mongo_commands_per_order']}",
        flush=True,
    )


def _shown(path: Path) -> str:
    """A folder as results record it: relative to the repository, never a path of the machine it ran on."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return f"<{path.name}/ outside the repository>"


def functions_variant(text: str) -> tuple[str, Path]:
    name, _, folder = text.partition("=")
    path = Path(folder).resolve()
    if not name or not (path / "order-analytics" / "function.yaml").is_file():
        raise argparse.ArgumentTypeError(
            f"--functions {text!r}: expected NAME=DIR, DIR holding the functions"
        )
    return name, path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", type=Backend.parse, action="append", help="name=,url=,metrics=,pg-port=")
    parser.add_argument(
        "--functions",
        type=functions_variant,
        action="append",
        help="NAME=DIR: run this folder of functions (default: current=functions/); repeat to compare",
    )
    parser.add_argument(
        "--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    parser.add_argument("--rates", default="10,20,30,40,60,80,100", help="offered orders/s, in order")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each step's sending")
    parser.add_argument("--max-orders", type=int, default=2000, help="at most this many orders per step")
    parser.add_argument("--max-in-flight", type=int, default=200, help="concurrent POSTs at most")
    parser.add_argument(
        "--drain", type=float, default=60.0, help="longest wait for a step's orders to finish"
    )
    parser.add_argument("--p99", type=float, default=1.0, help="the p99 bound of a sustained rate, seconds")
    parser.add_argument("--ready-timeout", type=float, default=120.0)
    parser.add_argument(
        "--quiet",
        type=float,
        default=0.0,
        help="wait before each step until others use at most this CPU share",
    )
    parser.add_argument("--quiet-wait", type=float, default=60.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.rates = [float(r) for r in args.rates.split(",")]
    args.amqp_port = int(re.search(r":(\d+)/?", args.amqp_url.rsplit("@", 1)[-1]).group(1))  # type: ignore[union-attr]
    backends = args.backend or [Backend("mongo", os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/"))]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    start_busy = others_busy(1.0)
    print(f"load at start: loadavg {os.getloadavg()}, CPU busy {start_busy:.0%} of {os.cpu_count()} cores")
    if start_busy > 0.25:
        print("WARNING: the machine is busy; these numbers are not final (run again when it is quiet)")
    variants = args.functions or [("current", ROOT / "functions")]
    # backends in turn; for each, the variants of the functions (a baseline beside a change) in turn
    results = [asyncio.run(bench_backend(b, name, path, args)) for b in backends for name, path in variants]
    summary = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "cores": os.cpu_count(),
        "start_cpu_busy": round(start_busy, 3),
        "args": {k: v for k, v in vars(args).items() if k not in ("backend", "out")},
        "results": results,
    }
    for r in results:
        print(
            f"{r['backend']}/{r['functions']}: highest sustained rate {r['highest_sustained']:g} orders/s (p99 <= {args.p99:g} s, nothing lost)"
        )
    out = args.out or ROOT / "bench" / "results" / f"pipeline-{dt.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
