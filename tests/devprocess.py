"""``kfaas dev`` as a subprocess for the tests: started on a private copy of a functions folder, its output kept
for waits and failure messages. The system tests (tests/system) and the lambda tests (tests/aws) build on it.

Every wait is bounded, and a failure message ends with the tail of kfaas dev's output.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest


class DevProcess:
    """One ``kfaas dev`` process on ``functions``; subclasses say what its environment is (:meth:`env`)."""

    #: arguments every start passes after the ports
    start_args: tuple[str, ...] = ()
    #: how many lines of output a failure message shows
    tail = 60
    #: whether a run that needed SIGKILL to stop fails the test
    strict_stop = True
    #: how long a start waits for "kfaas dev: ready" by default
    ready_timeout = 60.0

    def __init__(self, functions: Path, port: int, broker_port: int) -> None:
        self.functions = functions
        self.port = port
        self.broker_port = broker_port
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def env(self) -> dict[str, str]:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, *extra: str, timeout: float | None = None) -> None:
        argv = [sys.executable, "-m", "kfaas", "dev", "--functions", str(self.functions)]
        argv += ["--port", str(self.port), "--broker-port", str(self.broker_port), *self.start_args, *extra]
        self.process = subprocess.Popen(  # noqa: ASYNC220 - a long-lived child whose output a thread reads
            argv, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.functions.parent
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        await self.wait_for_line("kfaas dev: ready", timeout or self.ready_timeout)

    def _read(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            with self._lock:
                self.lines.append(raw.decode(errors="replace").rstrip())

    def output(self, last: int | None = None) -> str:
        with self._lock:
            return "\n".join(self.lines[-(last or self.tail) :])

    def count(self, *needles: str) -> int:
        with self._lock:
            return sum(1 for line in self.lines if all(n in line for n in needles))

    async def wait_for_line(self, needle: str, timeout: float, count: int = 1) -> None:
        await self.wait_until(
            lambda: self.count(needle) >= count, timeout, f"{count} line(s) with {needle!r}"
        )

    def _fail_if_exited(self, what: str) -> None:
        if self.process is not None and self.process.poll() is not None:
            pytest.fail(f"kfaas dev exited ({self.process.returncode}) waiting for {what}:\n{self.output()}")

    async def wait_until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            self._fail_if_exited(what)
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout:g}s; kfaas dev said:\n{self.output()}")
            await asyncio.sleep(0.1)

    async def eventually(self, probe: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
        """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            result = await probe()
            if result:
                return result
            self._fail_if_exited(what)
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{what}: not within {timeout:g}s (last: {result!r}); kfaas dev said:\n{self.output()}"
                )
            await asyncio.sleep(0.2)

    def stop(self, timeout: float = 30.0) -> int:
        if self.process is None:
            return 0
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
                    if self.strict_stop:
                        pytest.fail(
                            f"kfaas dev did not stop within {timeout:g}s after SIGINT:\n{self.output()}"
                        )
            return self.process.returncode
        finally:
            if self._reader is not None:
                self._reader.join(10)
            if self.process.stdout is not None:
                self.process.stdout.close()

    def kfaas(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Another kfaas command on this run's functions and environment (``dlq``, ``stream``...)."""
        command, *rest = args
        return subprocess.run(
            [sys.executable, "-m", "kfaas", command, "--functions", str(self.functions), *rest],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def dlq(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.kfaas("dlq", *args)
