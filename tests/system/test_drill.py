"""The fault drill: thousands of orders through the gateway while RabbitMQ restarts, process-order is killed
and MongoDB is unreachable for 10 s; every accepted order is processed exactly once and nothing is lost.

``kfaas dev`` runs the shipped descriptions (only the orders queue is renamed) against the real RabbitMQ and
MongoDB-wire server; MongoDB is reached through a TCP proxy the test cuts. Orders carry client ids, so each
answer can be checked against what happened. ``KFAAS_DRILL_ORDERS`` (2000) and ``KFAAS_DRILL_RATE`` (orders
offered per second, 40) size it; ``KFAAS_DRILL_LOG`` names a file for kfaas dev's whole output.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from kfaas_system import DevRun, dead_letter_counts
from tcpproxy import TcpProxy

from kfaas.dev.smtp import MailSink

ORDERS = int(os.environ.get("KFAAS_DRILL_ORDERS", "2000"))
RATE = float(os.environ.get("KFAAS_DRILL_RATE", "40"))
USERS = 20
IN_FLIGHT = 8  # requests at once, as a few clients would send them (more only queues up in MongoDB)
MONGODB_OUTAGE = 10.0
RABBITMQ_OUTAGE = 15.0  # as long as in the drill this test replays
SETTLE = 600.0  # seconds the pipeline may take to drain once the last order was answered (a busy machine)


def _pid_of(dev: DevRun, function: str) -> int:
    """The pid of the ``kfaas serve`` child of kfaas dev that runs ``function`` (from /proc)."""
    assert dev.process is not None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = next((line.split()[1] for line in status.splitlines() if line.startswith("PPid:")), "")
        if ppid == str(dev.process.pid) and f"KFAAS_FUNCTION={function}".encode() in environ:
            return int(entry.name)
    pytest.fail(f"no process of {function} under kfaas dev ({dev.process.pid})")


async def _until(dev: DevRun, check: Any, timeout: float, what: str) -> None:
    """Poll ``check`` every 2 s (``dev.eventually`` polls 5 times a second: too often for a count)."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert dev.process is not None
        if dev.process.poll() is not None:
            pytest.fail(f"kfaas dev exited ({dev.process.returncode}) waiting for {what}:\n{dev.output()}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g}s; kfaas dev said:\n{dev.output()}")
        await asyncio.sleep(2.0)


class Drill:
    """Sends the orders at a steady rate and records every answer."""

    def __init__(self, client: httpx.AsyncClient, users: list[str]) -> None:
        self.client = client
        self.users = users
        self.answers: dict[str, int] = {}
        self.cents: dict[str, int] = {}
        self.owner: dict[str, str] = {}
        self.sent = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self._milestones: dict[int, asyncio.Event] = {}

    async def reached(self, count: int) -> None:
        """Return once ``count`` orders have been answered (the client queues what it cannot send yet)."""
        event = self._milestones.setdefault(count, asyncio.Event())
        if len(self.answers) >= count:
            event.set()
        await event.wait()

    def _answered(self, order_id: str, code: int) -> None:
        self.answers[order_id] = code
        for count, event in self._milestones.items():
            if len(self.answers) >= count:
                event.set()

    def order(self, i: int) -> dict[str, Any]:
        order_id = f"drill-{i:05d}-{uuid.uuid4().hex[:6]}"
        user = self.users[i % len(self.users)]
        cents = 100 + i
        self.cents[order_id] = cents
        self.owner[order_id] = user
        return {"id": order_id, "userId": user, "items": [{"sku": "drill", "qty": 1, "price": cents / 100}]}

    async def place(self, order: dict[str, Any], slots: asyncio.Semaphore) -> None:
        async with slots:
            try:
                response = await self.client.post("/orders", json=order)
                self._answered(order["id"], response.status_code)
                if response.status_code != 202:
                    self.errors[f"{response.status_code} {response.json().get('error', '')[:60]}"] += 1
            except httpx.HTTPError as exc:  # no answer: the outcome is unknown to the client
                self._answered(order["id"], 0)
                self.errors[f"no answer: {type(exc).__name__}"] += 1

    async def run(self, count: int, rate: float) -> None:
        slots = asyncio.Semaphore(IN_FLIGHT)
        started = time.monotonic()
        tasks = []
        for i in range(count):
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(self.place(self.order(i), slots)))
            self.sent += 1
        await asyncio.gather(*tasks)


def _true(check: Any) -> Any:
    async def probe() -> bool:
        return bool(check())

    return probe


@pytest.mark.timeout(1200)
async def test_no_order_is_lost_or_doubled_under_faults(
    tmp_path: Path,
    dev: DevRun,
    db: Any,
    mongodb_url: str,
    amqp_url: str,
    mail_sink: MailSink,
    rabbitmq_ctl: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    began = time.monotonic()
    proxy = TcpProxy("127.0.0.1", urlsplit(mongodb_url).port or 27017)
    await proxy.start()
    dev.mongodb_url = f"mongodb://127.0.0.1:{proxy.port}/"  # every function reaches MongoDB through it
    timeline: list[str] = []
    reporter: asyncio.Task[None] | None = None

    def note(what: str) -> None:
        timeline.append(f"{time.monotonic() - began:6.1f}s {what}")

    try:
        await dev.start()
        users = []
        for i in range(USERS):
            user_id = f"drill-user-{i}"
            await db.users.insert_one(
                {"_id": user_id, "email": f"{user_id}@example.com", "name": f"User {i}"}
            )
            users.append(user_id)
        async with httpx.AsyncClient(base_url=dev.base_url, timeout=60) as client:
            drill = Drill(client, users)
            sending = asyncio.create_task(drill.run(ORDERS, RATE))

            async def after(share: float) -> None:
                await drill.reached(int(ORDERS * share))

            async def pipeline_moves(what: str) -> None:
                """Wait until emails go out again: the pipeline recovered from the fault before."""
                seen = len(mail_sink.messages)
                await _until(dev, _true(lambda: len(mail_sink.messages) >= seen + 20), SETTLE, what)

            async def faults() -> None:
                # one fault at a time, each once the pipeline has recovered from the one before, so that
                # each of them meets orders in every stage (a slow stop_app must not make them overlap)
                await after(0.10)
                note(f"RabbitMQ stop_app ({len(drill.answers)} answered)")
                await rabbitmq_ctl.stop_app()
                await asyncio.sleep(RABBITMQ_OUTAGE)
                await rabbitmq_ctl.start_app()
                note("RabbitMQ started again")
                await pipeline_moves("emails after RabbitMQ came back")
                await after(0.40)
                os.kill(_pid_of(dev, "process-order"), signal.SIGKILL)
                note(f"process-order SIGKILLed ({len(drill.answers)} answered)")
                await pipeline_moves("emails after process-order was restarted")
                await after(0.60)
                note(f"MongoDB unreachable ({len(drill.answers)} answered)")
                await proxy.stop()
                await asyncio.sleep(MONGODB_OUTAGE)
                await proxy.start()
                note("MongoDB reachable again")

            async def progress() -> None:
                while True:
                    await asyncio.sleep(15)
                    with capsys.disabled():
                        print(
                            f"drill {time.monotonic() - began:5.0f}s: {len(drill.answers)} answered, "
                            f"{sum(c == 202 for c in drill.answers.values())} accepted, "
                            f"{len(mail_sink.messages)} emailed",
                            flush=True,
                        )

            reporter = asyncio.create_task(progress())
            note("sending")
            await faults()
            await sending
            note(f"all {drill.sent} orders answered")

        accepted = {order_id for order_id, code in drill.answers.items() if code == 202}
        refused = set(drill.answers) - accepted

        expected = collections.Counter(drill.owner[o] for o in accepted)

        async def settled() -> bool:
            # cheapest first, and seldom: a count over the orders costs FerretDB ~0.1 ms per document
            if len(mail_sink.messages) < len(accepted):
                return False
            totals = {d["_id"]: d["orders"] for d in await db.order_totals_by_user.find({}).to_list()}
            if any(totals.get(user, 0) < n for user, n in expected.items()):
                return False
            return await db.orders.count_documents({"status": "processed"}) >= len(accepted)

        await _until(dev, settled, SETTLE, f"{len(accepted)} orders processed, emailed and counted")
        await asyncio.sleep(3)  # a duplicate still on its way would arrive within this
        note("settled")

        stored = {d["_id"]: d for d in await db.orders.find({}).to_list()}
        processed = {o for o, d in stored.items() if d.get("status") == "processed"}
        ghosts = sorted(o for o, d in stored.items() if d.get("status") != "processed")
        left_behind = sorted(refused & set(stored))
        mails = collections.Counter(m["Subject"].split()[2] for m in mail_sink.messages)
        doubled_mails = sorted(o for o, n in mails.items() if n > 1)
        totals = {d["_id"]: d for d in await db.order_totals_by_user.find({}).to_list()}
        by_day = await db.order_totals_by_day.find({}).to_list()
        dead = await dead_letter_counts(amqp_url, dev)
        outbox = await db.kfaas_outbox.count_documents({})
        counts = {
            "orders sent": drill.sent,
            "answered 202": len(accepted),
            "refused (non-2xx)": len(refused),
            "processed": len(processed & accepted),
            "emails": sum(mails.values()),
            "analytics counts": sum(t["orders"] for t in totals.values()),
            "dead letters": sum(dead.values()),
            "ghost orders": len(ghosts),
            "refused but stored": len(left_behind),
            "outbox entries left": outbox,
        }
        with capsys.disabled():
            print("\n-- fault drill --------------------------------------------")
            print("\n".join(timeline))
            print("\n".join(f"{k:>22}: {v}" for k, v in counts.items()))
            print(f"{'refusals':>22}: {dict(drill.errors) or 'none'}")
            print(f"{'took':>22}: {time.monotonic() - began:.0f}s")

        assert accepted, "no order was accepted"
        assert processed == accepted, (sorted(accepted - processed)[:5], sorted(processed - accepted)[:5])
        assert not ghosts, ghosts[:5]
        assert not left_behind, left_behind[:5]
        assert set(mails) == accepted, (sorted(accepted - set(mails))[:5], sorted(set(mails) - accepted)[:5])
        assert not doubled_mails, doubled_mails[:5]
        for user, n in expected.items():
            assert totals[user]["orders"] == n, (user, totals[user], n)
            assert totals[user]["totalCents"] == sum(
                drill.cents[o] for o in accepted if drill.owner[o] == user
            )
        assert sum(d["orders"] for d in by_day) == len(accepted)
        assert sum(dead.values()) == 0, dead
        assert outbox == 0
    finally:
        if reporter is not None:
            reporter.cancel()
        await proxy.stop()
        log_file = Path(os.environ.get("KFAAS_DRILL_LOG") or tmp_path / "kfaas-dev.log")
        await asyncio.to_thread(log_file.write_text, dev.output(last=10**9) + "\n", encoding="utf-8")
        with capsys.disabled():
            print(f"kfaas dev's output: {log_file}")
