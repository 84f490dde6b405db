"""``ctx.once`` claims never block longer than the delivery they belong to: ``kfaas serve`` processes on a real
MongoDB, ended by their timeout, by a caller that goes away, and by SIGKILL; and the record of an effect
outliving a MongoDB outage that starts right after it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from tcpproxy import TcpProxy

import kfaas
from kfaas import Settings
from kfaas.runtime.context import CLAIMS_COLLECTION, IDEMPOTENCY_COLLECTION, invocation

pytestmark = pytest.mark.integration

SOURCE = str(Path(__file__).resolve().parents[1] / "test_functions" / "cloudevents" / "main.py")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``kfaas serve`` of the ``claimed`` sample on a database of its own."""

    def __init__(
        self, mongodb_url: str, database: str, timeout: float, target: str = "claimed", **env: str
    ) -> None:
        self.port = _free_port()
        env = {
            **os.environ,
            "KFAAS_FUNCTION": "claimed",
            "MONGODB_URL": mongodb_url,
            "MONGODB_DATABASE": database,
            "KFAAS_TIMEOUT": str(timeout),
            **env,
        }
        env.pop("AMQP_URL", None)
        argv = [sys.executable, "-m", "kfaas", "serve", "--source", SOURCE, "--target", target]
        argv += ["--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def ready(self, timeout: float = 15.0) -> None:
        end = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < end:
                if self.proc.poll() is not None:
                    pytest.fail(
                        f"kfaas serve exited {self.proc.returncode}: {self.proc.stderr and self.proc.stderr.read()}"
                    )
                try:
                    if (await client.get(self.url + "health/readiness")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        pytest.fail("kfaas serve did not get ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def _event(event_id: str, seconds: float) -> tuple[dict[str, str], str]:
    headers = {
        "ce-id": event_id,
        "ce-source": "/tests/once",
        "ce-type": "com.example.claimed",
        "ce-specversion": "1.0",
        "content-type": "application/json",
    }
    return headers, f'{{"seconds": {seconds}}}'


async def _post(url: str, event_id: str, seconds: float, timeout: float = 30.0) -> httpx.Response:
    headers, body = _event(event_id, seconds)
    async with httpx.AsyncClient(timeout=timeout) as client:
        return await client.post(url, headers=headers, content=body)


@pytest.fixture
async def database(mongodb_url: str) -> AsyncIterator[tuple[str, Any]]:
    from pymongo import AsyncMongoClient

    name = f"kfaas_once_{uuid.uuid4().hex[:10]}"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongodb_url, serverSelectionTimeoutMS=5000, tz_aware=True
    )
    try:
        yield name, client[name]
    finally:
        await client.drop_database(name)
        await client.close()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


async def _start(servers: list[Server], mongodb_url: str, database: str, timeout: float) -> Server:
    server = Server(mongodb_url, database, timeout)
    servers.append(server)
    await server.ready()
    return server


async def test_an_invocation_past_its_timeout_is_cancelled_and_releases_its_claim(
    mongodb_url: str, database: tuple[str, Any], servers: list[Server]
) -> None:
    """A block still running when its claim's lease ends (the timeout plus one MongoDB write, 2 s here) is
    cancelled then, its claim released: the retry runs it, the delivery after that finds it done."""
    server = await _start(servers, mongodb_url, database[0], timeout=1.0)
    started = time.monotonic()
    first = await _post(server.url, "e-timeout", 10)
    assert first.status_code == 504, first.text
    assert "timeout of 1s" in first.json()["error"]
    assert time.monotonic() - started < 5
    again = await _post(server.url, "e-timeout", 0)
    assert again.status_code == 204, again.text
    record = await database[1][IDEMPOTENCY_COLLECTION].find_one({"_id": "claimed|e-timeout"})
    assert record is not None
    assert record["state"] == "done"
    assert (await _post(server.url, "e-timeout", 0)).status_code == 204  # done: nothing runs again


async def test_a_caller_that_goes_away_mid_effect_does_not_get_it_twice(
    tmp_path: Path, mongodb_url: str, database: tuple[str, Any], servers: list[Server]
) -> None:
    """The caller leaves while the block's effect runs in a thread (an email being sent): the invocation
    ends only once the block has ended and been recorded, so the retry finds it done, not released."""
    effects = tmp_path / "effects"
    server = Server(mongodb_url, database[0], 30.0, "claimed_effect", KFAAS_TEST_EFFECTS=str(effects))
    servers.append(server)
    await server.ready()
    with pytest.raises(httpx.ReadTimeout):
        await _post(server.url, "e-mid", 1.5, timeout=0.3)
    retry = await _post(server.url, "e-mid", 0)  # while the effect is still under way
    assert retry.status_code == 503, retry.text
    assert "another delivery holds 'claimed-effect|e-mid'" in retry.json()["error"]
    await asyncio.sleep(1.7)
    again = await _post(server.url, "e-mid", 0)
    assert again.status_code == 204, again.text  # recorded done: nothing runs again
    assert effects.read_text().splitlines() == ["e-mid"]


async def test_the_claim_of_a_killed_process_blocks_only_until_its_timeout(
    mongodb_url: str, database: tuple[str, Any], servers: list[Server]
) -> None:
    timeout = 2.0
    server = await _start(servers, mongodb_url, database[0], timeout=timeout)
    holder = asyncio.ensure_future(_post(server.url, "e-killed", 20))
    claims = database[1][CLAIMS_COLLECTION]
    for _ in range(100):
        claim = await claims.find_one({"_id": "claimed|e-killed#0"})
        if claim is not None:
            break
        await asyncio.sleep(0.05)
    assert claim is not None, "the first delivery never claimed the key"
    claimed_at = datetime.now(UTC)
    server.proc.send_signal(signal.SIGKILL)
    with pytest.raises(httpx.TransportError):
        await holder
    # the lease ends with the invocation's timeout (plus one MongoDB write), not a fixed minute
    assert claim["lease_until"] <= claimed_at + timedelta(seconds=timeout + 2.0 + 0.5)

    following = await _start(servers, mongodb_url, database[0], timeout=timeout)
    busy = await _post(following.url, "e-killed", 0)
    if claim["lease_until"] > datetime.now(UTC):
        assert busy.status_code == 503, busy.text
        assert "another delivery holds 'claimed|e-killed' until" in busy.json()["error"]
    await asyncio.sleep(max(0.0, (claim["lease_until"] - datetime.now(UTC)).total_seconds()) + 0.2)
    taken = await _post(following.url, "e-killed", 0)
    assert taken.status_code == 204, taken.text
    assert (await database[1][IDEMPOTENCY_COLLECTION].find_one({"_id": "claimed|e-killed"}))[
        "state"
    ] == "done"
    taken_over = await database[1][CLAIMS_COLLECTION].find_one({"_id": "claimed|e-killed#1"})
    assert taken_over is not None  # the dead claim was not rewritten: the next generation was inserted


async def test_a_dead_claim_is_taken_over_by_exactly_one_of_many_deliveries(mongodb_url: str) -> None:
    """Twenty deliveries find the same expired claim at once. On FerretDB 1.x (SQLite) twenty concurrent
    compare-and-set updates of one document gave several winners; the next generation's insert has one."""
    name = f"kfaas_once_{uuid.uuid4().hex[:10]}"
    contexts = [
        kfaas.Context(Settings(mongodb_url=mongodb_url, mongodb_database=name, timeout=30.0))
        for _ in range(4)
    ]
    for ctx in contexts:
        await ctx.start()
    ran: list[int] = []
    try:
        past = datetime.now(UTC) - timedelta(seconds=5)
        await (
            contexts[0]
            .db[CLAIMS_COLLECTION]
            .insert_one(
                {
                    "_id": "k|race#0",
                    "key": "k|race",
                    "holder": "dead",
                    "lease_until": past,
                    "expires_at": past,
                }
            )
        )

        async def deliver(i: int) -> str:
            try:
                async with contexts[i % len(contexts)].once("k|race"):
                    ran.append(i)
                    await asyncio.sleep(0.5)
            except kfaas.InProgress:
                return "in progress"
            except kfaas.AlreadyDone:
                return "done"
            return "ran"

        outcomes = await asyncio.gather(*(deliver(i) for i in range(20)))
        assert len(ran) == 1, ran
        assert outcomes.count("ran") == 1
        assert set(outcomes) <= {"ran", "in progress", "done"}
        with pytest.raises(kfaas.AlreadyDone):
            async with contexts[0].once("k|race"):
                pass
    finally:
        await contexts[0].mongo.drop_database(name)
        for ctx in contexts:
            await ctx.close()


async def test_a_released_claim_is_claimed_again_by_the_next_delivery(mongodb_url: str) -> None:
    name = f"kfaas_once_{uuid.uuid4().hex[:10]}"
    ctx = kfaas.Context(Settings(mongodb_url=mongodb_url, mongodb_database=name, timeout=30.0))
    await ctx.start()
    try:
        for _ in range(3):  # three attempts fail: each releases its claim
            with pytest.raises(ConnectionError):
                async with ctx.once("k|retry"):
                    raise ConnectionError("SMTP is away")
        async with ctx.once("k|retry"):
            pass
        claims = await ctx.db[CLAIMS_COLLECTION].find({"key": "k|retry"}).to_list()
        assert sorted(c["_id"] for c in claims) == [f"k|retry#{n}" for n in range(4)]
        assert [c.get("released", False) for c in sorted(claims, key=lambda c: c["_id"])] == [
            True,
            True,
            True,
            False,
        ]
        with pytest.raises(kfaas.AlreadyDone):
            async with ctx.once("k|retry"):
                pass
    finally:
        await ctx.mongo.drop_database(name)
        await ctx.close()


async def test_recording_an_effect_outlasts_a_mongodb_outage_right_after_it(mongodb_url: str) -> None:
    """The email went out, then MongoDB went away: the claim is recorded done once MongoDB is back (within
    the lease), so a redelivery does not send the email again."""
    proxy = TcpProxy("127.0.0.1", urlsplit(mongodb_url).port or 27017)
    await proxy.start()
    name = f"kfaas_once_{uuid.uuid4().hex[:10]}"
    settings = Settings(
        function_name="test",
        mongodb_url=f"mongodb://127.0.0.1:{proxy.port}/",
        mongodb_database=name,
        mongodb_timeout_ms=500,
        timeout=30.0,
    )
    ctx = kfaas.Context(settings)
    await ctx.start()
    effects = 0

    async def outage() -> None:
        await proxy.stop()
        await asyncio.sleep(1.5)
        await proxy.start()

    try:
        with invocation(settings.timeout):
            async with ctx.once("k|1"):
                effects += 1
                restore = asyncio.ensure_future(outage())
        await restore
        with pytest.raises(kfaas.AlreadyDone):
            async with ctx.once("k|1"):
                effects += 1
        assert effects == 1
        record = await ctx.db[IDEMPOTENCY_COLLECTION].find_one({"_id": "k|1"})
        assert record is not None
        assert record["state"] == "done"
    finally:
        await ctx.mongo.drop_database(name)
        await ctx.close()
        await proxy.stop()


async def test_a_claim_inside_an_invocation_leases_only_its_remaining_time(mongodb_url: str) -> None:
    name = f"kfaas_once_{uuid.uuid4().hex[:10]}"
    ctx = kfaas.Context(Settings(mongodb_url=mongodb_url, mongodb_database=name, mongodb_timeout_ms=1000))
    await ctx.start()
    try:
        with invocation(3.0):
            assert 2.9 < (ctx.remaining_seconds() or 0) <= 3.0
            async with ctx.once("k|lease", lease=timedelta(minutes=10)):
                claim = await ctx.db[CLAIMS_COLLECTION].find_one({"_id": "k|lease#0"})
        assert claim is not None
        held = claim["lease_until"] - datetime.now(UTC)
        assert held <= timedelta(seconds=3.0 + 1.0), held  # 3 s left + one write, not the 10 minutes asked
        assert ctx.remaining_seconds() is None  # outside an invocation
    finally:
        await ctx.mongo.drop_database(name)
        await ctx.close()


async def test_an_update_whose_answer_was_lost_is_not_applied_twice(mongo_db: Any, mongodb_url: str) -> None:
    """MongoDB applies a $inc and the connection breaks before its answer: the claim's update_one finds the
    key in the document and does not count it again, in the same delivery or in the next one."""
    ctx = kfaas.Context(Settings(mongodb_url=mongodb_url, mongodb_database=mongo_db.name, timeout=30.0))
    await ctx.start()
    try:
        async with ctx.once("count|o-1") as claim:
            assert await claim.update_one("totals", {"_id": "d"}, {"$inc": {"n": 1}}, upsert=True)
            # what a retry after a lost answer does: the same update again, under the same claim
            assert await claim.update_one("totals", {"_id": "d"}, {"$inc": {"n": 1}}, upsert=True)
            doc = await mongo_db["totals"].find_one({"_id": "d"})
            assert doc is not None
            assert doc["n"] == 1
            assert doc["_kfaas_pending"] == ["count|o-1"]
            raise ConnectionResetError("the process dies before the block is recorded")
    except ConnectionResetError:
        pass
    try:
        # the next delivery runs the block again: the update is found applied, and is not counted twice
        async with ctx.once("count|o-1") as claim:
            assert await claim.update_one("totals", {"_id": "d"}, {"$inc": {"n": 1}}, upsert=True)
        async with ctx.once("count|o-2") as claim:
            assert await claim.update_one("totals", {"_id": "d"}, {"$inc": {"n": 1}}, upsert=True)
        with pytest.raises(kfaas.AlreadyDone):
            async with ctx.once("count|o-1"):
                pass
        doc = await mongo_db["totals"].find_one({"_id": "d"})
        assert doc is not None
        assert doc["n"] == 2
        assert doc["_kfaas_pending"] == []  # recorded done: the documents no longer carry the keys
        async with ctx.once("count|o-3") as claim:
            assert not await claim.update_one("totals", {"_id": "missing"}, {"$inc": {"n": 1}})
    finally:
        await ctx.close()


async def test_an_increment_whose_answer_mongodb_lost_counts_once(mongodb_url: str) -> None:
    """Through a proxy that throws MongoDB's answers away for a while: the $inc is applied, its answer is
    lost, the driver times out, and claim.update_one's retry finds the key in the document."""
    proxy = TcpProxy("127.0.0.1", urlsplit(mongodb_url).port or 27017)
    await proxy.start()
    name = f"kfaas_once_{uuid.uuid4().hex[:10]}"
    settings = Settings(
        mongodb_url=f"mongodb://127.0.0.1:{proxy.port}/",
        mongodb_database=name,
        mongodb_timeout_ms=300,
        timeout=30,
    )
    ctx = kfaas.Context(settings)
    await ctx.start()
    try:
        async with ctx.once("count|lost"):  # the claim, the TTL indexes: made before answers get lost
            pass
        async with ctx.once("count|lost-2") as claim:
            proxy.drop_replies = True
            update = asyncio.ensure_future(
                claim.update_one("totals", {"_id": "d"}, {"$inc": {"n": 1}}, upsert=True)
            )
            await asyncio.sleep(1.5)  # several tries time out meanwhile; the first was applied
            proxy.drop_replies = False
            assert await update
        doc = await ctx.db["totals"].find_one({"_id": "d"})
        assert doc is not None
        assert doc["n"] == 1
    finally:
        await ctx.mongo.drop_database(name)
        await ctx.close()
        await proxy.stop()
