"""``kfaas dev`` supervision, without backing services: a function that crashes is reported with its exit
code and last log lines and restarted; one that keeps crashing stops everything with exit code 1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from kfaas.dev._supervisor import function_env
from kfaas.dev.smtp import free_port
from kfaas.spec import FunctionSpec

CRASHY = textwrap.dedent(
    """
    import os

    from fastapi import FastAPI

    app = FastAPI()


    @app.get("/crashy/hello")
    def hello() -> dict[str, str]:
        return {"hello": "world"}


    @app.get("/crashy/crash")
    def crash() -> None:
        print("about to crash on purpose", flush=True)
        os._exit(3)
    """
)


class Dev:
    def __init__(self, functions: Path, *args: str) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "AMQP_", "SMTP_"))}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kfaas",
                "dev",
                "--functions",
                str(functions),
                "--port",
                str(self.port),
                "--broker-port",
                str(free_port()),
                *args,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip())

    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, needle: str, timeout: float, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while sum(needle in line for line in list(self.lines)) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"no {needle!r} (x{count}) within {timeout:g}s; kfaas dev said:\n{self.text()}")
            time.sleep(0.05)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=10)

    def close(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(10)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return self.process.returncode


@pytest.fixture
def crashy_app(tmp_path: Path) -> Path:
    folder = tmp_path / "functions" / "crashy"
    folder.mkdir(parents=True)
    (folder / "main.py").write_text(CRASHY)
    (folder / "function.yaml").write_text(
        "kind: http\ntarget: app\nroutes:\n  - {path: /crashy/hello}\n  - {path: /crashy/crash}\n"
    )
    return folder.parent


def test_a_crash_is_reported_and_the_function_restarted(crashy_app: Path) -> None:
    dev = Dev(crashy_app)
    try:
        dev.wait_for("kfaas dev: ready", 60)
        assert dev.get("/crashy/hello").json() == {"hello": "world"}
        assert dev.get("/crashy/crash").status_code == 502  # the gateway: the function is gone
        dev.wait_for("crashy crashed (exit code 3); its last log lines:", 10)
        dev.wait_for("about to crash on purpose", 1, count=2)  # its own line, then quoted in the report
        dev.wait_for("restarting in 1s", 5)
        dev.wait_for("ready again", 30)
        assert dev.get("/crashy/hello").status_code == 200
    finally:
        code = dev.close()
    assert code == 0, dev.text()
    assert "kfaas dev: stopped" in dev.text()


def test_a_function_that_keeps_crashing_stops_everything(crashy_app: Path) -> None:
    dev = Dev(crashy_app, "--max-restarts", "2")
    try:
        dev.wait_for("kfaas dev: ready", 60)
        for attempt in range(1, 4):  # 2 restarts are allowed within 60 s; the 3rd crash gives up
            dev.wait_for(
                "ready" if attempt == 1 else "ready again", 60, count=1 if attempt == 1 else attempt - 1
            )
            dev.get("/crashy/crash")
            dev.wait_for("crashy crashed (exit code 3)", 10, count=attempt)
        dev.process.wait(60)
    finally:
        code = dev.close()
    assert code == 1, dev.text()
    assert (
        "crashy crashed 3 times within 60s; giving up (last exit code 3); stopping everything" in dev.text()
    )


def test_each_function_gets_only_the_services_it_uses() -> None:
    spec = FunctionSpec(
        name="f", kind="cloudevent", uses=["mongodb"], env={"A": "1"}, secrets=["TOKEN"], path=Path("/app/f")
    )
    services = {"MONGODB_URL": "mongodb://m/", "AMQP_URL": "amqp://r/", "SMTP_HOST": "mail"}
    env = function_env(
        spec, 9000, services, {"PATH": "/bin", "AMQP_URL": "amqp://leak/", "TOKEN": "t"}, "http://b"
    )
    assert env["MONGODB_URL"] == "mongodb://m/"
    assert env["MONGODB_DATABASE"] == "kfaas"
    assert "AMQP_URL" not in env
    assert "SMTP_HOST" not in env
    assert "K_SINK" not in env  # it does not publish
    assert (env["PORT"], env["HOST"], env["KFAAS_FUNCTION"]) == ("9000", "127.0.0.1", "f")
    assert env["FUNCTION_SIGNATURE_TYPE"] == "cloudevent"
    assert env["KFAAS_TIMEOUT"] == "30"  # the description's timeout: the runtime ends an invocation there
    assert env["FUNCTION_SOURCE"] == str(Path("/app/f/main.py"))
    assert (env["A"], env["TOKEN"], env["PATH"]) == ("1", "t", "/bin")
