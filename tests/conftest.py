"""The suite's service fixtures: real RabbitMQ and MongoDB-wire servers, never mocks.

Where a service comes from, in this order:

1. ``MONGODB_URL`` / ``AMQP_URL`` from the environment (CI and local runs: ``scripts/services up``);
2. a container started with testcontainers, when a Docker engine answers a ping (on the host's network
   with ``KFAAS_DOCKER_NETWORK=host``, for an engine without a bridge: ``scripts/docker env`` sets it);
3. nowhere: the tests that need it skip, or fail when ``KFAAS_REQUIRE_SERVICES=1``.

Each server is checked once per session, within ``KFAAS_SERVICE_TIMEOUT`` seconds (5). Tools the tests shell
out to (helm, kustomize, hadolint...) are found with the ``require_tool`` fixture: missing means skip, or fail
when ``KFAAS_REQUIRE_TOOLS=1``. Heavy imports (pymongo, aio-pika, docker) happen inside the fixtures that need
them, so a run of unit tests does not pay for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import shutil
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

pytest_plugins = ["pytester"]

_T = TypeVar("_T")
_TRUE = {"1", "true", "yes"}
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
_containers_key = pytest.StashKey[dict[str, Any]]()

MONGO_IMAGE = os.environ.get("KFAAS_MONGO_IMAGE", "mongo:7.0")
RABBITMQ_IMAGE = os.environ.get("KFAAS_RABBITMQ_IMAGE", "rabbitmq:3.13")


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def _timeout() -> float:
    return float(os.environ.get("KFAAS_SERVICE_TIMEOUT", "5"))


def redact(url: str) -> str:
    """The URL with its password replaced, fit for a message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc}"))


def _unavailable(message: str) -> NoReturn:
    if _flag("KFAAS_REQUIRE_SERVICES"):
        pytest.fail(f"{message} (KFAAS_REQUIRE_SERVICES=1 forbids skipping)", pytrace=False)
    pytest.skip(message)


_HOW = 'start services with `scripts/services up` and `eval "$(scripts/services env)"` (docs/testing.md)'


def _in_thread(make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine on a loop of its own in a worker thread, away from the suite's event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


# --- Docker / testcontainers ---------------------------------------------------------------------------------


def _docker_unavailable() -> str | None:
    """None when a Docker engine answers a ping, else why not."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        return "the docker package is not installed"
    reason = None
    with warnings.catch_warnings():
        # docker-py leaves the socket of a failed connection to the garbage collector; finalize it here,
        # quietly, rather than in a later test where warnings are errors
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = docker.from_env(timeout=3)
            try:
                client.ping()
            finally:
                client.close()
        except (DockerException, OSError) as exc:  # requests' errors, raised by ping(), are OSErrors
            reason = f"no Docker engine answers ({type(exc).__name__})"
        gc.collect()
    return reason


def _host_network() -> bool:
    return os.environ.get("KFAAS_DOCKER_NETWORK", "").strip() == "host"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _on_host_network(cls: type[Any]) -> type[Any]:
    """``cls`` for an engine without port publishing: the container shares the host's network, so the port
    it listens on (on loopback) is the port to connect to."""

    class OnHostNetwork(cls):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.ports.clear()  # nothing to publish (the engine refuses port bindings on the host network)
            self.with_kwargs(network_mode="host")

        def get_container_host_ip(self) -> str:
            return "127.0.0.1"

        def _get_exposed_port(self, port: int) -> int:
            return port

    return OnHostNetwork


def _container(config: pytest.Config, kind: str, env_var: str) -> Any:
    """Start (once per session) the testcontainers container of ``kind``: "mongodb" or "rabbitmq"."""
    containers = config.stash.setdefault(_containers_key, {})
    if kind in containers:
        return containers[kind]
    why = _docker_unavailable()
    if why is not None:
        _unavailable(f"{env_var} is not set and {why}; {_HOW}")
    host = _host_network()
    # testcontainers moved its modules under testcontainers.community; older releases have them at the top
    if kind == "mongodb":
        try:
            from testcontainers.community.mongodb import MongoDbContainer
        except ImportError:
            from testcontainers.mongodb import MongoDbContainer

        if host:
            port = _free_port()
            container: Any = _on_host_network(MongoDbContainer)(MONGO_IMAGE, port=port)
            container.with_command(["--bind_ip", "127.0.0.1", "--port", str(port)])
        else:
            container = MongoDbContainer(MONGO_IMAGE)
    else:
        try:
            from testcontainers.community.rabbitmq import RabbitMqContainer
        except ImportError:
            from testcontainers.rabbitmq import RabbitMqContainer

        if host:
            # RabbitMQ's own variables: every listener on loopback, on ports apart from other Erlang nodes
            port = _free_port()
            container = _on_host_network(RabbitMqContainer)(RABBITMQ_IMAGE, port=port)
            loopback = "-kernel inet_dist_use_interface {127,0,0,1}"
            for name, value in {
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODENAME": f"kfaas-tc-{port}@localhost",
                "RABBITMQ_DIST_PORT": str(_free_port()),
                "ERL_EPMD_PORT": str(_free_port()),
                "ERL_EPMD_ADDRESS": "127.0.0.1",
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": loopback,
                "RABBITMQ_CTL_ERL_ARGS": loopback,
            }.items():
                container.with_env(name, value)
        else:
            container = RabbitMqContainer(RABBITMQ_IMAGE)
    container.start()
    containers[kind] = container
    return container


@pytest.fixture(scope="session", autouse=True)
def _stop_containers(request: pytest.FixtureRequest) -> Any:
    yield
    for container in request.config.stash.get(_containers_key, {}).values():
        container.stop()


# --- MongoDB ---------------------------------------------------------------------------------------------------


def _check_mongodb(url: str, origin: str) -> None:
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    ms = int(_timeout() * 1000)
    try:
        client: MongoClient[dict[str, Any]] = MongoClient(
            url, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, socketTimeoutMS=ms
        )
        try:
            client.admin.command("ping")
        finally:
            client.close()
    except PyMongoError as exc:
        _unavailable(
            f"MongoDB at {redact(url)} ({origin}) does not answer a ping within {_timeout():g}s: {exc}"
        )


@pytest.fixture(scope="session")
def mongodb_url(request: pytest.FixtureRequest) -> str:
    """URL of a real MongoDB-wire server (FerretDB in CI, MongoDB in a container with Docker)."""
    url = os.environ.get("MONGODB_URL", "").strip()
    origin = "from MONGODB_URL"
    if not url:
        url = str(_container(request.config, "mongodb", "MONGODB_URL").get_connection_url())
        # SCRAM-SHA-256 named: MongoDB negotiates it, a MongoDB-wire server (FerretDB) may not offer it
        url = url.rstrip("/") + "/?authMechanism=SCRAM-SHA-256"
        origin = f"testcontainers {MONGO_IMAGE}"
    _check_mongodb(url, origin)
    return url


@pytest.fixture
async def mongo_db(mongodb_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    """A database of its own on the real server (pymongo's AsyncMongoClient), dropped after the test."""
    from pymongo import AsyncMongoClient

    ms = int(_timeout() * 1000)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, serverSelectionTimeoutMS=ms)
    name = f"kfaas_test_{uuid.uuid4().hex[:16]}"
    try:
        yield client[name]
    finally:
        try:
            await client.drop_database(name)
        finally:
            await client.close()


# --- RabbitMQ --------------------------------------------------------------------------------------------------


async def _amqp_connects(url: str, timeout: float) -> None:
    import aio_pika

    connection = await asyncio.wait_for(aio_pika.connect(url, timeout=timeout), timeout)
    await connection.close()


def _check_amqp(url: str, origin: str) -> None:
    from aio_pika.exceptions import AMQPError

    try:
        _in_thread(lambda: _amqp_connects(url, _timeout()))
    except (AMQPError, OSError, TimeoutError) as exc:
        why = str(exc) or type(exc).__name__
        _unavailable(
            f"RabbitMQ at {redact(url)} ({origin}) does not accept a connection within {_timeout():g}s: {why}"
        )


@pytest.fixture(scope="session")
def amqp_url(request: pytest.FixtureRequest) -> str:
    """URL of a real RabbitMQ (``scripts/services`` in CI, a container with Docker)."""
    url = os.environ.get("AMQP_URL", "").strip()
    origin = "from AMQP_URL"
    if not url:
        container = _container(request.config, "rabbitmq", "AMQP_URL")
        host, port = container.get_container_host_ip(), container.get_exposed_port(container.port)
        vhost = quote(container.vhost, safe="")
        url = f"amqp://{container.username}:{container.password}@{host}:{port}/{vhost}"
        origin = f"testcontainers {RABBITMQ_IMAGE}"
    _check_amqp(url, origin)
    return url


class RabbitMQCtl:
    """Stops and starts the RabbitMQ application behind ``amqp_url``, for outage tests.

    ``stop_app`` leaves the Erlang node up but closes every connection and refuses new ones, as an outage
    does; ``start_app`` brings it back and returns once a client can connect again.
    """

    def __init__(self, amqp_url: str, execute: Callable[[list[str]], Awaitable[tuple[int, str]]]) -> None:
        self.amqp_url = amqp_url
        self._execute = execute
        self.stopped = False

    async def run(self, *args: str) -> str:
        """Run ``rabbitmqctl ARGS`` against the node; its output, or an AssertionError naming the failure."""
        code, output = await self._execute(list(args))
        assert code == 0, f"rabbitmqctl {' '.join(args)} exited {code}: {output.strip()}"
        return output

    async def stop_app(self) -> None:
        self.stopped = True
        await self.run("stop_app")

    async def start_app(self, timeout: float = 60.0) -> None:
        from aio_pika.exceptions import AMQPError

        await self.run("start_app")
        await self.run("await_startup", "--timeout", str(int(timeout)))
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                await _amqp_connects(self.amqp_url, 2.0)
                break
            except (AMQPError, OSError, TimeoutError) as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(
                        f"RabbitMQ did not accept connections {timeout:g}s after start_app"
                    ) from exc
                await asyncio.sleep(0.2)
        self.stopped = False

    async def amqp_ports(self) -> set[int]:
        """The AMQP ports the node listens on, from ``rabbitmqctl status``."""
        status = json.loads(await self.run("-q", "status", "--formatter", "json"))
        return {int(item["port"]) for item in status.get("listeners", []) if item.get("protocol") == "amqp"}


def _sbin_which(name: str) -> str | None:
    """``shutil.which`` that also looks in the sbin directories a non-root PATH often lacks."""
    extra = os.pathsep.join(["/usr/local/sbin", "/usr/sbin", "/sbin"])
    return shutil.which(name) or shutil.which(name, path=extra)


def rabbitmqctl_for(
    amqp_url: str, container: Any = None
) -> Callable[[list[str]], Awaitable[tuple[int, str]]]:
    """How to run rabbitmqctl against the server of ``amqp_url``; skips (or fails) when there is no way.

    A testcontainers broker is reached with ``docker exec``; a broker started by ``scripts/services`` through
    the wrapper it names in ``KFAAS_RABBITMQCTL``; another local broker with ``rabbitmqctl`` on PATH.
    """
    if container is not None:
        wrapped = container.get_wrapped_container()

        async def in_container(args: list[str]) -> tuple[int, str]:
            code, output = await asyncio.to_thread(wrapped.exec_run, ["rabbitmqctl", *args])
            return int(code), output.decode(errors="replace")

        return in_container
    command = os.environ.get("KFAAS_RABBITMQCTL", "").strip() or _sbin_which("rabbitmqctl")
    host = urlsplit(amqp_url).hostname or ""
    if not command:
        _unavailable(f"rabbitmqctl is not installed, so RabbitMQ at {redact(amqp_url)} cannot be stopped")
    if host not in _LOCAL_HOSTS and not os.environ.get("KFAAS_RABBITMQCTL"):
        _unavailable(f"RabbitMQ at {redact(amqp_url)} is not local; set KFAAS_RABBITMQCTL to control it")
    argv0 = str(command)

    async def local(args: list[str]) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            argv0, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), 120)
        except TimeoutError:
            process.kill()
            await process.wait()
            return -1, f"timed out after 120s: {argv0} {' '.join(args)}"
        return int(process.returncode or 0), output.decode(errors="replace")

    return local


@pytest.fixture
async def rabbitmq_ctl(request: pytest.FixtureRequest, amqp_url: str) -> AsyncIterator[RabbitMQCtl]:
    """Control of the broker behind ``amqp_url`` (stop_app / start_app); restarted after the test if stopped.

    Checked first: the node it controls must listen on the port of ``amqp_url``, so an outage test cannot
    stop one broker while its clients talk to another.
    """
    container = request.config.stash.get(_containers_key, {}).get("rabbitmq")
    ctl = RabbitMQCtl(amqp_url, rabbitmqctl_for(amqp_url, container))
    port = urlsplit(amqp_url).port or 5672
    if container is None:
        ports = await ctl.amqp_ports()
        if port not in ports:
            _unavailable(
                f"rabbitmqctl controls a node listening on {sorted(ports)}, not on port {port} of AMQP_URL"
            )
    try:
        yield ctl
    finally:
        if ctl.stopped:
            await ctl.start_app()


# --- tools -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def require_tool() -> Callable[[str], str]:
    """``require_tool("helm")`` returns the tool's path; skips when it is missing, fails with KFAAS_REQUIRE_TOOLS=1."""

    def find(name: str) -> str:
        import toolfinder  # tests/toolfinder.py: tests/ is on pytest's pythonpath

        return toolfinder.require(name)

    return find


@pytest.fixture
def mail_sink() -> Any:
    """An SMTP sink on 127.0.0.1 (aiosmtpd) whose messages the test reads: the stand-in for SES."""
    from kfaas.dev.smtp import MailSink

    with MailSink() as sink:
        yield sink


@pytest.fixture(scope="session")
def s3_store() -> Any:
    """The object store from ``S3_ENDPOINT_URL`` (+ AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and
    KFAAS_S3_EXCHANGE, as ``scripts/services env`` prints them); skips, or fails under
    KFAAS_REQUIRE_SERVICES=1, without one that answers."""
    endpoint = os.environ.get("S3_ENDPOINT_URL", "").strip()
    if not endpoint:
        _unavailable("no S3 store: S3_ENDPOINT_URL is not set (scripts/services up starts versitygw)")
    from s3store import S3Store  # tests/s3store.py

    store = S3Store(
        endpoint,
        os.environ.get("AWS_ACCESS_KEY_ID", ""),
        os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        os.environ.get("AWS_REGION", "us-east-1"),
        os.environ.get("KFAAS_S3_EXCHANGE", "kfaas.s3-events"),
    )
    try:
        store.client().list_buckets()
    except Exception as exc:  # botocore's errors have no common base short of Exception
        _unavailable(f"the S3 store at {endpoint} does not answer ListBuckets: {exc}")
    return store


def _versitygw_bin() -> str | None:
    explicit = os.environ.get("KFAAS_VERSITYGW_BIN")
    if explicit:
        return explicit
    cache = os.environ.get("KFAAS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kfaas"
    )
    candidate = os.path.join(cache, "bin", "versitygw-v1.8.0")
    return candidate if os.access(candidate, os.X_OK) else None


@pytest.fixture
async def s3_events(
    s3_store: Any, amqp_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Any]:
    """An object store whose event records reach RabbitMQ *now*: a versitygw of this test's own, on its own
    exchange (fanout, declared before it starts), with the credentials of ``s3_store``.

    versitygw v1.8.0 never reconnects to RabbitMQ: after any RabbitMQ outage test, the session's store
    publishes nothing more. Without a versitygw binary (``KFAAS_VERSITYGW_BIN`` or scripts/services' cache)
    the session's store is used as it is.
    """
    import subprocess

    import aio_pika
    import httpx
    from s3store import S3Store

    binary = _versitygw_bin()
    if binary is None:
        yield s3_store
        return
    exchange = f"test.s3-events.{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_exchange(exchange, aio_pika.ExchangeType.FANOUT, durable=True)
    data = tmp_path_factory.mktemp("versitygw")
    port = _free_port()
    env = {
        **os.environ,
        "ROOT_ACCESS_KEY_ID": s3_store.access_key,
        "ROOT_SECRET_ACCESS_KEY": s3_store.secret_key,
    }
    args = [
        binary,
        "--port",
        f"127.0.0.1:{port}",
        "--region",
        s3_store.region,
        "--quiet",
        "--health",
        "/health",
    ]
    args += ["--event-rabbitmq-url", amqp_url, "--event-rabbitmq-exchange", exchange, "posix", str(data)]
    log = open(data.parent / f"{data.name}.log", "wb")  # noqa: SIM115, ASYNC230 (kept open for the process)
    process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: ASYNC220
    endpoint = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(endpoint + "/health")).status_code == 200:
                        break
                assert process.poll() is None, (
                    f"versitygw exited: {(data.parent / f'{data.name}.log').read_text()}"
                )
                await asyncio.sleep(0.1)
            else:
                pytest.fail("versitygw did not answer within 30 s")
        yield S3Store(endpoint, s3_store.access_key, s3_store.secret_key, s3_store.region, exchange)
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 30)
        log.close()
        cleanup = await aio_pika.connect(amqp_url)
        async with cleanup:
            with contextlib.suppress(Exception):
                await (await cleanup.channel()).exchange_delete(exchange)
