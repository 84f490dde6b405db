"""The suite's testcontainers path (tests/conftest.py) driven with the project's own service images.

Where a registry serves them, the fixtures start ``mongo:7.0`` and ``rabbitmq:3.13``. Here none does, so two
images are built from what this machine reaches, on the same base as the function images, and started by the
very same fixture code (``KFAAS_MONGO_IMAGE``, ``KFAAS_RABBITMQ_IMAGE``): FerretDB's binary (the one
``scripts/services`` builds) on SQLite, and Debian's rabbitmq-server. Their entrypoints start them as the
official images start theirs (tests/containers/images/). A pytest session of its own runs with no service
URL set, so its fixtures must take the containers path, and uses every service fixture of the suite.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import toolfinder
from dockertest import Engine

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parents[1]
IMAGES = Path(__file__).parent / "images"
SERVICES = TESTS.parent / "scripts" / "services"

INNER_SUITE = """
import asyncio
import uuid

import aio_pika
import docker


def test_the_urls_come_from_testcontainers(mongodb_url, amqp_url):
    assert "@127.0.0.1:" in mongodb_url, mongodb_url
    assert "@127.0.0.1:" in amqp_url, amqp_url
    client = docker.from_env()
    try:
        images = {tag for c in client.containers.list() for tag in c.image.tags}
    finally:
        client.close()
    assert {"{mongo}", "{rabbitmq}"} <= images, images


async def test_mongo_db_reads_what_it_wrote(mongo_db):
    await mongo_db.things.insert_one({"_id": "a", "n": 1})
    assert await mongo_db.things.find_one({"_id": "a"}) == {"_id": "a", "n": 1}


async def test_amqp_url_reaches_quorum_queues_with_confirms(amqp_url):
    name = f"tc-{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect(amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        await channel.default_exchange.publish(aio_pika.Message(b"hello"), routing_key=name, timeout=10)
        message = await queue.get(timeout=10, fail=True)
        await message.ack()
        assert message.body == b"hello"
        await channel.queue_delete(name)


async def test_rabbitmq_ctl_stops_and_starts_the_container_broker(rabbitmq_ctl, amqp_url):
    await rabbitmq_ctl.stop_app()
    try:
        await asyncio.wait_for(aio_pika.connect(amqp_url, timeout=3), 5)
    except Exception:
        pass
    else:
        raise AssertionError("RabbitMQ accepted a connection while stopped")
    await rabbitmq_ctl.start_app()
    connection = await aio_pika.connect(amqp_url, timeout=10)
    await connection.close()
"""


def ferretdb_binary() -> str:
    if os.environ.get("KFAAS_FERRETDB_BIN"):
        return os.environ["KFAAS_FERRETDB_BIN"]
    match = re.search(r"^readonly FERRETDB_VERSION=(\S+)$", SERVICES.read_text(), flags=re.M)
    assert match is not None, "scripts/services names its FerretDB version"
    return toolfinder.require(f"ferretdb-{match.group(1)}", "scripts/services install builds it")


def build_service_image(engine: Engine, name: str, tmp: Path, extra: dict[str, str]) -> str:
    context = tmp / name
    shutil.copytree(IMAGES / name, context)
    for target, source in extra.items():
        shutil.copy2(source, context / target)
    return engine.build(f"kfaas-test/{name}:ci", path=context, dockerfile="Dockerfile")


@pytest.fixture(scope="session")
def service_images(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(MongoDB-wire image, RabbitMQ image), built before pytester moves HOME (the binary's cache is there)."""
    tmp = tmp_path_factory.mktemp("service-images")
    mongo = build_service_image(engine, "ferretdb", tmp, {"ferretdb": ferretdb_binary()})
    return mongo, build_service_image(engine, "rabbitmq", tmp, {})


def test_suite_fixtures_start_the_project_images_through_testcontainers(
    engine: Engine,
    service_images: tuple[str, str],
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mongo, rabbitmq = service_images
    for name in ("MONGODB_URL", "AMQP_URL", "KFAAS_RABBITMQCTL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KFAAS_MONGO_IMAGE", mongo)
    monkeypatch.setenv("KFAAS_RABBITMQ_IMAGE", rabbitmq)
    monkeypatch.setenv("KFAAS_REQUIRE_SERVICES", "1")
    monkeypatch.setenv("KFAAS_SERVICE_TIMEOUT", "30")
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    pytester.makepyfile(
        test_inner=INNER_SUITE.replace("{mongo}", mongo).replace("{rabbitmq}", rabbitmq),
        toolfinder=(TESTS / "toolfinder.py").read_text(),
    )
    result = pytester.runpytest_subprocess(
        "-rsfE",
        "-p",
        "no:cacheprovider",
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=session",
        "-o",
        "asyncio_default_test_loop_scope=session",
        "-W",
        "error",
        "-W",
        "ignore::DeprecationWarning",
        timeout=240,
    )
    assert result.ret == 0, result.stdout.str()[-6000:]
    result.assert_outcomes(passed=4)
    # the session stopped its containers (no reaper here: the fixture itself must)
    left = [c.name for c in engine.client.containers.list() if set(c.image.tags) & {mongo, rabbitmq}]
    assert left == [], f"containers left running: {left}"
