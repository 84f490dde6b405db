"""The service fixtures and scripts/services, tested on real servers.

The fixtures' skip-or-fail behaviour is checked by running small suites in a pytest subprocess (pytester)
with the real conftest; scripts/services is run on ports of its own, so the servers other tests use are
never stopped.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import random
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFTEST = (Path(__file__).parent / "conftest.py").read_text()
SERVICES = ROOT / "scripts" / "services"

INNER_SUITE = """
import os
from pathlib import Path


def test_mongo(mongodb_url):
    assert mongodb_url


def test_amqp(amqp_url):
    assert amqp_url


def test_missing_tool(require_tool):
    require_tool("kfaas-no-such-tool")


def test_present_tool(require_tool):
    assert Path(require_tool("sh")).name == "sh"
"""


def _run_inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, **env: str | None) -> Any:
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_inner=INNER_SUITE, toolfinder=(Path(__file__).parent / "toolfinder.py").read_text()
    )
    return pytester.runpytest_subprocess(
        "-rsfE",
        "-p",
        "no:cacheprovider",
        "-o",
        "asyncio_mode=auto",
        "-W",
        "error",
        "-W",
        "ignore::DeprecationWarning",
    )


UNREACHABLE = {
    "MONGODB_URL": "mongodb://kfaas:s3cret@127.0.0.1:1/",
    "AMQP_URL": "amqp://guest:s3cret@127.0.0.1:1/",
    "KFAAS_SERVICE_TIMEOUT": "1",
}


def test_unreachable_services_skip_naming_the_url(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run_inner(
        pytester, monkeypatch, KFAAS_REQUIRE_SERVICES=None, KFAAS_REQUIRE_TOOLS=None, **UNREACHABLE
    )
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines(
        [
            "*MongoDB at mongodb://kfaas:***@127.0.0.1:1/ (from MONGODB_URL) does not answer a ping within 1s*",
            "*RabbitMQ at amqp://guest:***@127.0.0.1:1/ (from AMQP_URL) does not accept a connection within 1s*",
            "*kfaas-no-such-tool is not installed*",
        ],
        consecutive=False,
    )
    assert "s3cret" not in result.stdout.str()


def test_required_services_and_tools_fail_instead(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run_inner(
        pytester, monkeypatch, KFAAS_REQUIRE_SERVICES="1", KFAAS_REQUIRE_TOOLS="1", **UNREACHABLE
    )
    # a fixture that fails makes an error; require_tool called in the test body makes a failure
    result.assert_outcomes(passed=1, errors=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*MongoDB at mongodb://kfaas:***@127.0.0.1:1/*KFAAS_REQUIRE_SERVICES=1 forbids skipping*",
            "*RabbitMQ at amqp://guest:***@127.0.0.1:1/*KFAAS_REQUIRE_SERVICES=1 forbids skipping*",
            "*kfaas-no-such-tool is not installed*KFAAS_REQUIRE_TOOLS=1 forbids skipping*",
        ],
        consecutive=False,
    )


def test_without_urls_or_docker_the_reason_says_how(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run_inner(
        pytester,
        monkeypatch,
        MONGODB_URL=None,
        AMQP_URL=None,
        KFAAS_REQUIRE_SERVICES=None,
        KFAAS_REQUIRE_TOOLS=None,
        DOCKER_HOST=f"unix://{pytester.path}/no-docker.sock",
    )
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines(
        [
            "*MONGODB_URL is not set and no Docker engine answers*scripts/services up*",
            "*AMQP_URL is not set and no Docker engine answers*scripts/services up*",
        ],
        consecutive=False,
    )


@pytest.mark.integration
def test_mongo_db_is_dropped_after_the_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mongodb_url: str
) -> None:
    record = pytester.path / "database-name"
    monkeypatch.setenv("MONGODB_URL", mongodb_url)
    monkeypatch.setenv("RECORD", str(record))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_inner="""
        import os
        from pathlib import Path

        async def test_write(mongo_db):
            await mongo_db.things.insert_one({"_id": 1, "v": "x"})
            assert await mongo_db.things.find_one({"_id": 1}) == {"_id": 1, "v": "x"}
            assert mongo_db.name in await mongo_db.client.list_database_names()
            Path(os.environ["RECORD"]).write_text(mongo_db.name)
        """
    )
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
    )
    result.assert_outcomes(passed=1)
    name = record.read_text()
    assert name.startswith("kfaas_test_")

    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_url, serverSelectionTimeoutMS=5000)
    try:
        assert name not in client.list_database_names()
    finally:
        client.close()


@pytest.mark.integration
async def test_amqp_url_reaches_a_broker_with_quorum_queues(amqp_url: str) -> None:
    connection = await aio_pika.connect(amqp_url, timeout=5)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(
            f"kfaas-test-services-{uuid.uuid4().hex[:8]}", durable=True, arguments={"x-queue-type": "quorum"}
        )
        try:
            await channel.default_exchange.publish(aio_pika.Message(b"ping"), routing_key=queue.name)
            message = await queue.get(timeout=5)
            await message.ack()
            assert message.body == b"ping"
        finally:
            await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()


# --- scripts/services -----------------------------------------------------------------------------------------


def _load_conftest() -> ModuleType:
    """tests/conftest.py as a module of its own name (several conftest modules exist in this suite)."""
    spec = importlib.util.spec_from_file_location(
        "kfaas_tests_root_conftest", Path(__file__).parent / "conftest.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _alternate_ports() -> tuple[int, int, int]:
    """An AMQP port (with +10000 management and +20000 distribution), a MongoDB port and an epmd port, all
    free and all below the kernel's ephemeral range."""
    rng = random.Random()
    for _ in range(50):
        amqp, mongo, epmd = (
            rng.randrange(10000, 12000),
            rng.randrange(12000, 12700),
            rng.randrange(12700, 13000),
        )
        if all(_free(p) for p in (amqp, amqp + 10000, amqp + 20000, mongo, epmd)):
            return amqp, mongo, epmd
    pytest.fail("no free ports for an alternate RabbitMQ and FerretDB")


def _outward_address() -> str | None:
    """This machine's address on its default route (no packet is sent), or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))
        except OSError:
            return None
        address = str(sock.getsockname()[0])
    return None if address.startswith("127.") else address


def _services(command: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510 - the caller checks returncode and shows the output
        [str(SERVICES), command], env=env, capture_output=True, text=True, timeout=timeout
    )


def _listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


@pytest.mark.integration
@pytest.mark.timeout(900)
async def test_services_up_env_status_down_on_alternate_ports(
    tmp_path: Path, require_tool: Callable[[str], str]
) -> None:
    require_tool("python3")
    require_tool("rabbitmq-server")
    if not os.environ.get("KFAAS_FERRETDB_BIN"):
        require_tool("go")  # to build FerretDB once, when the cache has no binary yet
    amqp_port, mongo_port, epmd_port = _alternate_ports()
    stream_port = next((p for p in range(13000, 13300) if _free(p)), None)
    assert stream_port is not None, "no free port for the stream protocol"
    env = {
        **os.environ,
        "KFAAS_SERVICES_DIR": str(tmp_path / "state"),
        "KFAAS_AMQP_PORT": str(amqp_port),
        "KFAAS_RABBITMQ_STREAM_PORT": str(stream_port),  # the stream plugin's listener: its own port too
        "KFAAS_MONGO_PORT": str(mongo_port),
        "KFAAS_RABBITMQ_MANAGEMENT": "0",
        "ERL_EPMD_PORT": str(epmd_port),  # an epmd of its own, which `down` must stop again
    }
    env["PATH"] = os.pathsep.join([env.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
    try:
        up = await asyncio.to_thread(_services, "up", env)
        assert up.returncode == 0, up.stderr
        assert "starting RabbitMQ" in up.stderr
        assert "starting FerretDB" in up.stderr

        ports = (amqp_port, amqp_port + 20000, stream_port, mongo_port, epmd_port)
        assert all(_listening(port) for port in ports)
        outward = _outward_address()
        if outward is not None:  # everything listens on loopback only
            assert not any(_listening(port, outward) for port in ports)

        status = _services("status", env, 60)
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count("started here") == 3  # RabbitMQ, FerretDB, versitygw

        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in _services("env", env, 60).stdout.splitlines()
        )
        urls = {key: value.strip("'") for key, value in exports.items()}
        assert urls["MONGODB_URL"] == f"mongodb://127.0.0.1:{mongo_port}/"
        assert urls["AMQP_URL"] == f"amqp://guest:guest@127.0.0.1:{amqp_port}/"
        assert urls["KFAAS_RABBITMQ_STREAM_URL"] == f"rabbitmq-stream://guest:guest@127.0.0.1:{stream_port}/"
        s3_port = amqp_port + 2000
        assert urls["S3_ENDPOINT_URL"] == f"http://127.0.0.1:{s3_port}"
        assert _listening(s3_port)
        if outward is not None:
            assert not _listening(s3_port, outward)
        from s3store import S3Store

        store = S3Store(
            urls["S3_ENDPOINT_URL"],
            urls["AWS_ACCESS_KEY_ID"],
            urls["AWS_SECRET_ACCESS_KEY"],
            "us-east-1",
            urls["KFAAS_S3_EXCHANGE"],
        )
        buckets = await asyncio.to_thread(store.client().list_buckets)
        assert {b["Name"] for b in buckets["Buckets"]} == {"uploads", "thumbnails"}
        # the exchange versitygw publishes to was declared before it started (else its channel closes)
        probe = await aio_pika.connect(urls["AMQP_URL"], timeout=5)
        async with probe:
            channel = await probe.channel()
            await channel.get_exchange(urls["KFAAS_S3_EXCHANGE"], ensure=True)

        from pymongo import AsyncMongoClient

        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            urls["MONGODB_URL"], serverSelectionTimeoutMS=5000
        )
        try:
            assert (await mongo.admin.command("ping"))["ok"] == 1
        finally:
            await mongo.close()

        # the rabbitmqctl wrapper `env` names drives an outage of this node, as the rabbitmq_ctl fixture does
        fixtures = _load_conftest()
        os.environ["KFAAS_RABBITMQCTL"] = urls["KFAAS_RABBITMQCTL"]
        try:
            ctl = fixtures.RabbitMQCtl(urls["AMQP_URL"], fixtures.rabbitmqctl_for(urls["AMQP_URL"]))
        finally:
            del os.environ["KFAAS_RABBITMQCTL"]
        assert await ctl.amqp_ports() == {amqp_port}
        connection = await aio_pika.connect(urls["AMQP_URL"], timeout=5)
        await ctl.stop_app()
        assert not _listening(amqp_port)
        await ctl.start_app()
        assert _listening(amqp_port)
        await connection.close()

        again = _services("up", env, 120)
        assert again.returncode == 0, again.stderr
        assert again.stderr.count("already running") == 3
    finally:
        down = await asyncio.to_thread(_services, "down", env, 180)
    assert down.returncode == 0, down.stderr
    assert "stopping epmd" in down.stderr
    assert not any(
        _listening(port) for port in (amqp_port, amqp_port + 20000, mongo_port, epmd_port, amqp_port + 2000)
    )
    assert not any((tmp_path / "state").iterdir())
    assert _services("status", env, 60).returncode == 1


@pytest.mark.integration
def test_services_up_reuses_running_servers_and_down_leaves_them(
    tmp_path: Path, mongodb_url: str, amqp_url: str
) -> None:
    mongo, amqp = urlsplit(mongodb_url), urlsplit(amqp_url)
    if mongo.hostname not in {"127.0.0.1", "localhost"} or amqp.hostname not in {"127.0.0.1", "localhost"}:
        pytest.skip("the suite's servers are not on 127.0.0.1, so scripts/services cannot find them")
    env = {
        **os.environ,
        "KFAAS_SERVICES_DIR": str(tmp_path / "state"),
        "KFAAS_AMQP_PORT": str(amqp.port or 5672),
        "KFAAS_MONGO_PORT": str(mongo.port or 27017),
    }
    # the suite's object store too, when it has one on this machine; else none is started
    s3 = urlsplit(os.environ.get("S3_ENDPOINT_URL", ""))
    if s3.hostname in {"127.0.0.1", "localhost"} and s3.port:
        env["KFAAS_S3_PORT"] = str(s3.port)
    else:
        env["KFAAS_S3"] = "0"
    up = _services("up", env, 120)
    assert up.returncode == 0, up.stderr
    assert up.stderr.count("reusing the server already answering") == (3 if env.get("KFAAS_S3") != "0" else 2)
    assert "KFAAS_RABBITMQCTL" not in _services("env", env, 60).stdout
    down = _services("down", env, 120)
    assert down.returncode == 0, down.stderr
    assert "nothing started from" in down.stderr
    assert _listening(amqp.port or 5672)
    assert _listening(mongo.port or 27017)


def _postgresql_bindir() -> str | None:
    """PostgreSQL's server programs as scripts/services finds them (Debian keeps them off PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if found:
        return str(found[-1].parent)
    initdb = shutil.which("initdb")
    return str(Path(initdb).parent) if initdb else None


def _psql(bindir: str) -> str | None:
    return str(Path(bindir, "psql")) if Path(bindir, "psql").exists() else shutil.which("psql")


@pytest.mark.integration
@pytest.mark.timeout(600)
async def test_services_ferretdb_on_postgresql_up_status_down(
    tmp_path: Path, amqp_url: str, require_tool: Callable[[str], str]
) -> None:
    """KFAAS_FERRETDB_BACKEND=pg: a PostgreSQL of its own on loopback, FerretDB storing into it, all gone
    after down; RabbitMQ (the suite's, on its port) is reused and left alone."""
    import toolfinder

    require_tool("python3")
    bindir = _postgresql_bindir()
    if bindir is None:
        toolfinder.missing("PostgreSQL's server programs (Debian: apt-get install postgresql)")
    psql = _psql(bindir or "") or require_tool("psql")
    if not os.environ.get("KFAAS_FERRETDB_BIN"):
        require_tool("go")
    _, mongo_port, _ = _alternate_ports()
    pg_port = next(p for p in range(13000, 13500) if _free(p) and p != mongo_port)
    amqp_port = urlsplit(amqp_url).port or 5672
    env = {
        **os.environ,
        "KFAAS_SERVICES_DIR": str(tmp_path / "state"),
        "KFAAS_AMQP_PORT": str(amqp_port),
        "KFAAS_MONGO_PORT": str(mongo_port),
        "KFAAS_FERRETDB_BACKEND": "pg",
        "KFAAS_PG_PORT": str(pg_port),
    }
    try:
        up = await asyncio.to_thread(_services, "up", env)
        assert up.returncode == 0, up.stderr
        assert f"reusing the server already answering on 127.0.0.1:{amqp_port}" in up.stderr
        assert "starting PostgreSQL" in up.stderr
        assert f"(PostgreSQL on 127.0.0.1:{pg_port}) on 127.0.0.1:{mongo_port}" in up.stderr
        assert _listening(pg_port)
        assert _listening(mongo_port)
        outward = _outward_address()
        if outward is not None:
            assert not _listening(pg_port, outward)

        status = _services("status", env, 60)
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"postgres  127.0.0.1:{pg_port}  up (started here" in status.stdout
        assert "pg)" in status.stdout  # FerretDB's line names its backend

        from pymongo import AsyncMongoClient

        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            f"mongodb://127.0.0.1:{mongo_port}/", serverSelectionTimeoutMS=5000
        )
        try:
            await mongo["pgcheck"]["things"].insert_one({"_id": "a", "n": 1})
            assert await mongo["pgcheck"]["things"].find_one({"_id": "a"}) == {"_id": "a", "n": 1}
        finally:
            await mongo.close()
        # the document is in PostgreSQL: FerretDB keeps a database as a schema of the ferretdb database
        schemas = await asyncio.to_thread(
            subprocess.run,
            [
                psql,
                "-h",
                "127.0.0.1",
                "-p",
                str(pg_port),
                "-U",
                "postgres",
                "-d",
                "ferretdb",
                "-Atc",
                "SELECT schema_name FROM information_schema.schemata",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert schemas.returncode == 0, schemas.stderr
        assert "pgcheck" in schemas.stdout.split()

        again = _services("up", env, 120)
        assert again.returncode == 0, again.stderr
        assert "PostgreSQL already running" in again.stderr
    finally:
        kept = tmp_path / "state" / f"postgresql-{pg_port}" / "home-path"
        data_path = Path(kept.read_text().strip()) if kept.exists() else None
        down = await asyncio.to_thread(_services, "down", env, 180)
    assert down.returncode == 0, down.stderr
    assert "stopping PostgreSQL" in down.stderr
    assert "stopping RabbitMQ" not in down.stderr
    assert not _listening(pg_port)
    assert not _listening(mongo_port)
    assert _listening(amqp_port)
    assert not any((tmp_path / "state").iterdir())
    if data_path is not None:  # the data directory outside the state directory is removed too
        assert not data_path.exists()


def test_services_refuses_an_unknown_ferretdb_backend(tmp_path: Path) -> None:
    env = {**os.environ, "KFAAS_SERVICES_DIR": str(tmp_path), "KFAAS_FERRETDB_BACKEND": "mysql"}
    result = _services("status", env, 60)
    assert result.returncode == 2
    assert "KFAAS_FERRETDB_BACKEND=mysql: expected sqlite or pg" in result.stderr
