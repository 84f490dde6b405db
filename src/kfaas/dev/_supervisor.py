"""Run every function as a ``kfaas serve`` child process and keep watch over them.

Each child gets its own 127.0.0.1 port and the environment its description asks for; its output is
printed line by line, prefixed with its name, and the last lines are kept for the crash report. Ready
means ``GET /health/readiness`` answered 200.

Crash policy: a function that exits while the app runs is reported (exit code and its last log lines) and
restarted after a backoff (1 s, 2 s, 4 s ... up to 30 s). A function that crashes ``max_restarts`` times
within ``restart_window`` seconds is given up on, and the whole ``kfaas dev`` stops with exit code 1: a
half-running app that looks healthy is worse than a loud failure.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from kfaas.spec import FunctionSpec

__all__ = ["FunctionProcess", "GaveUp", "Supervisor", "function_env"]

log = logging.getLogger("kfaas.dev")

# Settings that kfaas dev decides per function; inherited values are dropped so one function's services
# never leak into another's environment.
_MANAGED = (
    "FUNCTION_TARGET",
    "FUNCTION_SOURCE",
    "FUNCTION_SIGNATURE_TYPE",
    "PORT",
    "HOST",
    "KFAAS_FUNCTION",
    "KFAAS_DESCRIPTION",
    "KFAAS_TIMEOUT",
    "MONGODB_URL",
    "MONGODB_DATABASE",
    "AMQP_URL",
    "K_SINK",
    "SMTP_HOST",
    "SMTP_PORT",
    "SMTP_USERNAME",
    "SMTP_PASSWORD",
    "SMTP_STARTTLS",
    "MAIL_FROM",
    "S3_ENDPOINT_URL",
)
_SMTP = ("SMTP_HOST", "SMTP_PORT", "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_STARTTLS", "MAIL_FROM")
# the object store (uses: [s3]): its endpoint and the credentials the function signs requests with
S3_SETTINGS = ("S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")


class GaveUp(RuntimeError):
    """A function kept crashing; the message has its exit code and last log lines."""


def function_env(
    spec: FunctionSpec, port: int, services: Mapping[str, str], base: Mapping[str, str], sink: str = ""
) -> dict[str, str]:
    """The environment of one function, as compose and the chart give it (docs/order-flow.md).

    ``services`` holds MONGODB_URL, MONGODB_DATABASE, AMQP_URL and the SMTP settings; each is passed only
    to functions whose ``uses`` names it. Secrets named in the description are taken from ``base``.
    """
    env = {k: v for k, v in base.items() if k not in _MANAGED}
    env.update(
        FUNCTION_SOURCE=str(spec.folder / spec.source),
        FUNCTION_TARGET=spec.target,
        KFAAS_FUNCTION=spec.name,
        KFAAS_TIMEOUT=str(spec.timeout),  # the runtime ends an invocation there (ctx.once leases too)
        # cloudevent functions are served as such; http ones are detected (a FastAPI app is asgi)
        FUNCTION_SIGNATURE_TYPE={"cloudevent": "cloudevent", "lambda": "lambda"}.get(spec.kind, ""),
        HOST="127.0.0.1",
        PORT=str(port),
        PYTHONUNBUFFERED="1",
    )
    if spec.kind == "lambda":
        env["KFAAS_DESCRIPTION"] = str(spec.folder / "function.yaml")
    if "mongodb" in spec.uses:
        env["MONGODB_URL"] = services.get("MONGODB_URL", "")
        env["MONGODB_DATABASE"] = services.get("MONGODB_DATABASE") or "kfaas"
    if "rabbitmq" in spec.uses:
        env["AMQP_URL"] = services.get("AMQP_URL", "")
    if "smtp" in spec.uses:
        env.update({k: services[k] for k in _SMTP if services.get(k)})
    if "s3" in spec.uses:
        env.update({k: services[k] for k in S3_SETTINGS if services.get(k)})
    if spec.publishes and sink:
        env["K_SINK"] = sink
    env.update(spec.env)
    for name in spec.secrets:
        if name in base:
            env[name] = base[name]
    return env


@dataclass
class FunctionProcess:
    """One function's child process, its port, its recent output and its restarts."""

    spec: FunctionSpec
    port: int
    env: dict[str, str]
    width: int = 12
    out: TextIO = field(default_factory=lambda: sys.stdout)
    process: asyncio.subprocess.Process | None = None
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=20))
    crashes: list[float] = field(default_factory=list)
    _pumps: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def say(self, line: str) -> None:
        self.out.write(f"{self.name:<{self.width}} | {line}\n")
        self.out.flush()

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kfaas",
            "serve",
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # Ctrl-C in the terminal reaches kfaas dev only; it stops the children
        )
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._pumps = [
            asyncio.create_task(self._pump(self.process.stdout)),
            asyncio.create_task(self._pump(self.process.stderr)),
        ]

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip()
            self.tail.append(text)
            self.say(text)

    async def wait_ready(self, timeout: float) -> float:
        """Seconds until readiness answered 200; raises GaveUp if it exits or times out first."""
        import httpx

        started = time.monotonic()
        async with httpx.AsyncClient(timeout=1.0, trust_env=False) as client:
            while True:
                if self.process is not None and self.process.returncode is not None:
                    await self.drain_output()
                    raise GaveUp(self.report(f"exited with code {self.process.returncode} while starting"))
                with contextlib.suppress(httpx.TransportError):
                    response = await client.get(f"{self.url}/health/readiness")
                    if response.status_code == 200:
                        return time.monotonic() - started
                if time.monotonic() - started > timeout:
                    raise GaveUp(self.report(f"not ready after {timeout:g}s"))
                await asyncio.sleep(0.1)

    async def drain_output(self) -> None:
        if self._pumps:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self._pumps, return_exceptions=True), 2.0)

    def report(self, what: str) -> str:
        lines = "\n".join(f"    {line}" for line in list(self.tail)[-10:]) or "    (no output)"
        return f"{self.name} {what}; its last log lines:\n{lines}"

    async def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (the runtime drains and exits 0), SIGKILL after ``timeout`` s."""
        proc = self.process
        if proc is None or proc.returncode is not None:
            return proc.returncode if proc else None
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            self.say(f"did not stop within {timeout:g}s; killing it")
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        await self.drain_output()
        return proc.returncode


class Supervisor:
    """Starts the function processes, waits until they are ready, restarts crashed ones (see module doc)."""

    def __init__(
        self,
        processes: list[FunctionProcess],
        *,
        ready_timeout: float = 60.0,
        max_restarts: int = 5,
        restart_window: float = 60.0,
        backoff_max: float = 30.0,
    ) -> None:
        self.processes = processes
        self.ready_timeout = ready_timeout
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.backoff_max = backoff_max
        self._stopping = False
        self.failed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._watchers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start every process and wait until all are ready (in parallel); GaveUp names the first failure."""
        for proc in self.processes:
            proc.say(f"starting on {proc.url}")
            await proc.start()
        results = await asyncio.gather(
            *(p.wait_ready(self.ready_timeout) for p in self.processes), return_exceptions=True
        )
        for proc, result in zip(self.processes, results, strict=True):
            if isinstance(result, BaseException):
                raise result
            proc.say(f"ready in {result:.2f}s")
        self._watchers = [asyncio.create_task(self._watch(p)) for p in self.processes]

    async def _watch(self, proc: FunctionProcess) -> None:
        while not self.stopping():
            assert proc.process is not None
            code = await proc.process.wait()
            if self.stopping():
                return
            await proc.drain_output()
            now = time.monotonic()
            proc.crashes = [t for t in proc.crashes if now - t < self.restart_window] + [now]
            log.error("%s", proc.report(f"crashed (exit code {code})"))
            if len(proc.crashes) > self.max_restarts:
                message = (
                    f"{proc.name} crashed {len(proc.crashes)} times within {self.restart_window:g}s; "
                    f"giving up (last exit code {code})"
                )
                if not self.failed.done():
                    self.failed.set_result(message)
                return
            delay = min(self.backoff_max, 2.0 ** (len(proc.crashes) - 1))
            proc.say(f"restarting in {delay:g}s (crash {len(proc.crashes)} of {self.max_restarts} allowed)")
            await asyncio.sleep(delay)
            if self.stopping():
                return
            await proc.start()
            try:
                seconds = await proc.wait_ready(self.ready_timeout)
            except GaveUp as exc:
                log.error("%s", exc)
                continue  # its exit (or hang) counts as the next crash
            proc.say(f"ready again in {seconds:.2f}s")

    def stopping(self) -> bool:
        return self._stopping

    async def stop(self) -> None:
        self._stopping = True
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        codes = await asyncio.gather(*(p.stop() for p in self.processes), return_exceptions=True)
        for proc, code in zip(self.processes, codes, strict=True):
            if code not in (0, None):
                proc.say(f"stopped with exit code {code}")


def environ() -> dict[str, str]:
    return dict(os.environ)
