"""Every kfaas server refuses a port that is taken, at once, with one line naming the port.

granian binds with SO_REUSEPORT on Linux, so without kfaas.base.server.PortClaim a second server on a port
in use would bind beside the first and the kernel would share the connections between them (seen: 7 of 10
requests answered by the wrong process). Checked here with real processes, against both kinds of owner: a
kfaas server (whose socket has SO_REUSEPORT) and a plain program's listener (which has not).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kfaas.dev.smtp import free_port

ROOT = Path(__file__).resolve().parents[2]
HTTP_FN = ROOT / "tests" / "test_functions" / "http_fn" / "main.py"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "AMQP_", "SMTP_", "KFAAS_"))}
    return env | {"PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def functions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An http function and a cloudevent function with a trigger (so kfaas dev runs a broker ingress)."""
    root = tmp_path_factory.mktemp("ports") / "functions"
    hello = root / "hello"
    hello.mkdir(parents=True)
    (hello / "main.py").write_text("from fastapi import FastAPI\n\napp = FastAPI()\n")
    (hello / "function.yaml").write_text("kind: http\ntarget: app\nroutes:\n  - {path: /hello}\n")
    sink = root / "sink"
    sink.mkdir()
    (sink / "main.py").write_text("def handle(event):\n    return None\n")
    (sink / "function.yaml").write_text("kind: cloudevent\ntriggers:\n  - name: all\n")
    return root


def command(name: str, port: int, functions: Path) -> list[str]:
    """The command line of each kfaas server, listening on ``port``."""
    listen = ["--host", "127.0.0.1", "--port", str(port)]
    unused = "amqp://guest:guest@127.0.0.1:1/"  # the port is refused before anything connects
    return {
        "serve": ["serve", "--source", str(HTTP_FN), "--target", "text", *listen],
        "gateway": ["gateway", "--functions", str(functions), *listen],
        "broker": ["broker", "--functions", str(functions), "--amqp-url", unused, *listen],
        "dead-letters": ["dead-letters", "--functions", str(functions), "--amqp-url", unused, *listen],
        "dev": ["dev", "--functions", str(functions), *listen, "--broker-port", str(free_port())],
        "dev-ingress": [
            "dev",
            "--functions",
            str(functions),
            "--port",
            str(free_port()),
            "--broker-port",
            str(port),
        ],
    }[name]


def start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kfaas", *args],
        env=env or _env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 30.0) -> tuple[str, str]:
    """Its output once it ended; killed (and the test failed) when it is still running after ``timeout``."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"still running after {timeout:g}s:\n{out}\n{err}")


def wait_http(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/liveness", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    pytest.fail(f"nothing answers on port {port} after {timeout:g}s")


@pytest.fixture(scope="module")
def kfaas_owner(functions: Path) -> Iterator[int]:
    """A ``kfaas gateway`` listening on a port: its socket has SO_REUSEPORT, as every granian listener."""
    port = free_port()
    owner = start(command("gateway", port, functions))
    try:
        wait_http(port)
        yield port
    finally:
        owner.terminate()
        finish(owner)


@pytest.fixture(scope="module")
def plain_owner() -> Iterator[int]:
    """A listener that is not kfaas's: no SO_REUSEPORT."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


SERVERS = ["serve", "gateway", "broker", "dead-letters", "dev", "dev-ingress"]


@pytest.mark.parametrize("owner", ["kfaas_owner", "plain_owner"])
@pytest.mark.parametrize("server", SERVERS)
def test_a_taken_port_is_refused_at_once(
    server: str, owner: str, functions: Path, request: pytest.FixtureRequest
) -> None:
    port: int = request.getfixturevalue(owner)
    env = _env() | {"AMQP_URL": "amqp://guest:guest@127.0.0.1:1/", "MONGODB_URL": "mongodb://127.0.0.1:1/"}
    started = time.monotonic()
    process = start(command(server, port, functions), env)
    out, err = finish(process)
    took = time.monotonic() - started
    assert process.returncode == 1, f"exit {process.returncode}\n{out}\n{err}"
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert len(lines) == 1, out + err
    assert f"127.0.0.1:{port} is in use" in lines[0]
    if owner == "kfaas_owner":
        assert "another kfaas server" in lines[0]
    assert took < 10, f"took {took:.1f}s"


def test_the_first_server_keeps_every_request(kfaas_owner: int, functions: Path) -> None:
    """The original fault: a second gateway started on the same port and answered some of its requests."""
    second = start(command("gateway", kfaas_owner, functions))
    finish(second)
    assert second.returncode == 1
    answers = {httpx.get(f"http://127.0.0.1:{kfaas_owner}/hello", timeout=5).status_code for _ in range(20)}
    assert answers == {502}  # the first gateway: its function `hello` is not running


def test_a_port_freed_is_free_again(functions: Path) -> None:
    """A stopped server leaves nothing that refuses the next one (the claim dies with the process)."""
    port = free_port()
    for _ in range(2):
        server = start(command("gateway", port, functions))
        try:
            wait_http(port)
        finally:
            server.terminate()
            finish(server)
        assert server.returncode == 0
