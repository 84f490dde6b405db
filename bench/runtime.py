"""Runtime benchmark: cold start and warm throughput of one hello CloudEvent function, side by side.

Runtimes, all serving the same function (bench/hello/):
  kfaas        ``kfaas serve --signature-type cloudevent``
  ff-asgi      ``functions-framework --signature-type cloudevent --asgi`` (gunicorn + one uvicorn worker)
  func-python  Knative Functions' Python middleware (hypercorn), in its own venv (bench/setup.sh)
  granian-bare reference ceiling: granian embedded as kfaas runs it, a bare ASGI app that ignores the event
  uvicorn-bare the same bare app on uvicorn (uvloop + httptools): the server kfaas did not pick, same run

(a) cold start: process start -> first 2xx to ``POST /`` with a binary-mode CloudEvent, polled with raw socket
    connects every millisecond; rounds interleave the runtimes, the first round is discarded (it warms the
    bytecode and page caches), the median of the rest is reported with min/max.
(b) warm throughput: ``wrk`` at 64 connections on 127.0.0.1 against one server process, a warm-up run, then a
    fixed-duration run. Any non-2xx/3xx answer or a non-2xx to the pre-check invalidates the number.
Then the import-time profile of ``kfaas serve`` startup (``python -X importtime``).

Other processes' CPU use is sampled before and during every round and pass; ``--quiet 0.1`` waits for a quiet
machine and redoes a measurement others disturbed. Per-request server CPU is reported beside req/s.

``--hello ff`` measures the cold start of the functions in bench/hello_ff/, which ``import functions_framework``
(a replying ``cloud_event``, an ``aio.cloud_event`` coroutine, a ``typed`` function), each under kfaas and
functions-framework (``--asgi``; typed functions only run in its Flask mode), beside the plain hello;
``--throughput`` adds wrk on the plain hello (kfaas, ff-asgi, func-python) in the same run.

Usage: .venv/bin/python bench/runtime.py [--quick] [--quiet 0.1] [--hello sync|async|ff] [--only kfaas,...]
       [--compare VENV]   (also runs the kfaas of another venv, side by side: a before/after of a change)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent
FUNC_PYTHON_VENV = ROOT / ".venv-func-python"
LUA = BENCH / "binary-cloudevent.lua"
HOST = "127.0.0.1"
BODY = b'{"message":"hello"}'
TARGETS = {  # (metric, row, baseline row, comparison, bound)
    "cold start vs ff-asgi": ("cold_ms", "kfaas", "ff-asgi", "<=", 0.5),
    "cold start vs func-python": ("cold_ms", "kfaas", "func-python", "<=", 0.8),
    "throughput vs ff-asgi": ("rps", "kfaas", "ff-asgi", ">=", 1.5),
    "throughput vs func-python": ("rps", "kfaas", "func-python", ">=", 4.0),
}
# --hello ff: functions that `import functions_framework` (bench/hello_ff/), each served by kfaas and by
# functions-framework (--asgi, but typed functions, which only its Flask mode serves), beside the plain hello
FF_SOURCES = {  # row suffix -> (file, ff runs it with --asgi)
    "cloud_event": ("cloud_event.py", True),
    "aio": ("aio.py", True),
    "typed": ("typed.py", False),
}
FF_TARGETS = {
    "plain hello": ("cold_ms", "kfaas", "ff-asgi", "<=", 0.5),
    "import functions_framework, cloud_event": (
        "cold_ms",
        "kfaas:cloud_event",
        "ff-asgi:cloud_event",
        "<=",
        0.5,
    ),
    "import functions_framework, aio": ("cold_ms", "kfaas:aio", "ff-asgi:aio", "<=", 0.5),
    # functions-framework --asgi refuses typed functions ("ASGI server does not support typed events"): the
    # typed function against --asgi serving its cloud_event, and against its Flask mode serving the same one
    "import functions_framework, typed (vs --asgi)": (
        "cold_ms",
        "kfaas:typed",
        "ff-asgi:cloud_event",
        "<=",
        0.5,
    ),
    "import functions_framework, typed (vs Flask mode)": ("cold_ms", "kfaas:typed", "ff:typed", "<=", 0.5),
}
# --hello ff --throughput: wrk on the plain hello only (kfaas, ff-asgi, func-python), the runtime's targets
FF_THROUGHPUT_TARGETS = {k: v for k, v in TARGETS.items() if v[0] == "rps"}
# Settings that would make a runtime connect to services at startup: the hello function has none.
SCRUBBED_ENV = ("MONGODB_URL", "AMQP_URL", "K_SINK", "PORT", "HOST", "LISTEN_ADDRESS", "WORKERS")
SCRUBBED_PREFIXES = ("FUNCTION_", "KFAAS_", "SMTP_", "PYTHONDONTWRITEBYTECODE", "PYTHONPROFILEIMPORTTIME")


@dataclass
class Runtime:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    port_in_env: str = ""  # env variable that takes "127.0.0.1:<port>" instead of a --port flag
    missing: str = ""  # why it cannot run here, if it cannot

    def command(self, port: int) -> tuple[list[str], dict[str, str]]:
        argv = [a.replace("{port}", str(port)) for a in self.argv]
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in SCRUBBED_ENV and not k.startswith(SCRUBBED_PREFIXES)
        }
        env.update(self.env)
        if self.port_in_env:
            env[self.port_in_env] = f"{HOST}:{port}"
        return argv, env


def runtimes(hello: str = "hello") -> list[Runtime]:
    source = str(BENCH / "hello" / "main.py")
    kfaas = Runtime(
        "kfaas",
        [
            str(BIN / "kfaas"),
            "serve",
            "--source",
            source,
            "--target",
            hello,
            "--signature-type",
            "cloudevent",
            "--host",
            HOST,
            "--port",
            "{port}",
        ],
    )
    if not (BIN / "kfaas").exists():
        kfaas.missing = f"no kfaas in {BIN} (install kfaas into this venv)"
    ff = Runtime(
        "ff-asgi",
        [
            str(BIN / "functions-framework"),
            "--target",
            hello,
            "--source",
            source,
            "--signature-type",
            "cloudevent",
            "--asgi",
            "--host",
            HOST,
            "--port",
            "{port}",
        ],
    )
    fp_python = FUNC_PYTHON_VENV / "bin" / "python"
    fp = Runtime(
        "func-python",
        [str(fp_python), str(BENCH / "hello" / "func_python" / "main.py")],
        port_in_env="LISTEN_ADDRESS",
    )
    if not fp_python.exists():
        fp.missing = f"{FUNC_PYTHON_VENV.name} missing: run `bash bench/setup.sh`"
    if hello == "ff":  # the plain hello as the reference, then each functions-framework function
        rows = runtimes("hello")[:3]  # kfaas, ff-asgi, func-python on the plain hello
        for kind, (name, asgi) in FF_SOURCES.items():
            path = str(BENCH / "hello_ff" / name)
            rows.append(
                Runtime(
                    f"kfaas:{kind}",
                    [str(BIN / "kfaas"), "serve", "--source", path, "--target", "hello",
                     "--host", HOST, "--port", "{port}"],
                    missing=kfaas.missing,
                )
            )  # fmt: skip
            rows.append(
                Runtime(
                    f"{'ff-asgi' if asgi else 'ff'}:{kind}",
                    [str(BIN / "functions-framework"), "--target", "hello", "--source", path,
                     *(["--asgi"] if asgi else []), "--host", HOST, "--port", "{port}"],
                )
            )  # fmt: skip
        return rows
    bare = Runtime("granian-bare", [sys.executable, str(BENCH / "hello" / "bare_asgi.py"), "{port}"])
    uvicorn = Runtime(
        "uvicorn-bare",
        [str(BIN / "uvicorn"), "bare_asgi:app", "--app-dir", str(BENCH / "hello"), "--host", HOST, "--port", "{port}",
         "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"],
    )  # fmt: skip
    if not (BIN / "uvicorn").exists():
        uvicorn.missing = "uvicorn is not installed in this venv (it comes with kfaas[dev])"
    return [kfaas, ff, fp, bare, uvicorn]


# --------------------------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Server:
    """One runtime process (its own process group, so gunicorn's worker goes with it), output to a file."""

    def __init__(self, runtime: Runtime, extra_python_flags: tuple[str, ...] = ()) -> None:
        self.runtime = runtime
        self.port = free_port()
        argv, env = runtime.command(self.port)
        if extra_python_flags:  # run the entry script under the venv's interpreter with these flags
            python = (
                argv[0] if argv[0].endswith(("python", "python3")) else str(Path(argv[0]).parent / "python")
            )
            script = argv[1:] if argv[0] == python else argv
            argv = [python, *extra_python_flags, *script]
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{runtime.name}-", suffix=".log", delete=False)  # noqa: SIM115
        self.connected_at: float | None = None
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def tail(self, n: int = 15) -> str:
        self.log.flush()
        lines = Path(self.log.name).read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def log_text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def cpu_seconds(self) -> float:
        """User+system CPU of every live process in this server's process group."""
        total = 0
        tick = os.sysconf("SC_CLK_TCK")
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == self.proc.pid:  # fields[2] is pgrp
                total += int(fields[11]) + int(fields[12])
        return total / tick

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        with contextlib.suppress(ProcessLookupError):  # a worker left behind by its master
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def cloudevent_request(port: int, event_id: str) -> bytes:
    head = (
        f"POST / HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"ce-specversion: 1.0\r\nce-id: {event_id}\r\nce-source: /bench/probe\r\n"
        f"ce-type: dev.kfaas.bench.hello\r\nContent-Length: {len(BODY)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + BODY


def exchange(
    port: int, request: bytes, timeout: float = 5.0, server: Server | None = None
) -> tuple[int, bytes] | None:
    """Send one request on a fresh connection; ``None`` while nothing listens, else (status, raw response).

    The first successful connect is recorded on ``server`` (the port is open; the app may not be ready).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((HOST, port))
        except (ConnectionRefusedError, ConnectionResetError):
            return None
        if server is not None and server.connected_at is None:
            server.connected_at = time.perf_counter()
        try:
            s.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, BrokenPipeError):
            return None  # accepted by the listen backlog, then dropped: not serving yet
    if not data.startswith(b"HTTP/"):
        return None
    return int(data.split(b" ", 2)[1]), data


def wait_first_2xx(server: Server, timeout: float = 20.0) -> tuple[float, int, bytes]:
    """Poll every millisecond until POST / answers 2xx. Returns (ms since process start, status, response)."""
    deadline = server.started + timeout
    attempt = 0
    while True:
        attempt += 1
        answer = exchange(server.port, cloudevent_request(server.port, f"probe-{attempt}"), server=server)
        now = time.perf_counter()
        if answer is not None:
            status, raw = answer
            if 200 <= status < 300:
                return (now - server.started) * 1000, status, raw
            if status < 500:  # a 4xx will not go away: the request or the function is wrong
                raise RuntimeError(
                    f"{server.runtime.name} answered {status}:\n{raw.decode(errors='replace')}"
                )
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.runtime.name} exited with {server.proc.returncode}:\n{server.tail()}"
            )
        if now > deadline:
            raise RuntimeError(f"{server.runtime.name}: no 2xx within {timeout} s:\n{server.tail()}")
        time.sleep(0.001)


# --------------------------------------------------------------------------------------------- measurements


def load() -> dict[str, Any]:
    one, five, fifteen = os.getloadavg()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    return {"loadavg": [one, five, fifteen], "uptime": uptime}


def _cpu_times() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def cpu_busy(seconds: float = 0.5) -> float:
    """Share of all cores busy over ``seconds`` (0..1); called while no benchmarked process runs."""
    busy0, total0 = _cpu_times()
    time.sleep(seconds)
    busy1, total1 = _cpu_times()
    return (busy1 - busy0) / max(total1 - total0, 1)


def _own_cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # reaped ones: wrk, stopped servers
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class OthersMeter:
    """CPU used outside the benchmark while it measures: all CPU time minus this process, its reaped
    children and ``extra`` seconds of live ones, as a share of all cores."""

    def __init__(self) -> None:
        self.busy0, self.total0 = _cpu_times()
        self.own0 = _own_cpu()

    def share(self, extra: float = 0.0) -> float:
        busy1, total1 = _cpu_times()
        tick = os.sysconf("SC_CLK_TCK")
        own = _own_cpu() - self.own0 + extra
        return max(0.0, ((busy1 - self.busy0) / tick - own) / max((total1 - self.total0) / tick, 1e-9))


@dataclass
class Quiet:
    """Wait for the machine to be quiet before a measurement: others' CPU use at most ``below`` (0 = never wait)."""

    below: float = 0.0
    max_wait: float = 60.0
    log: list[float] = field(default_factory=list)

    def too_busy(self, share: float) -> bool:
        """Others took more than this during a measurement: redo it (only when waiting for quiet is on)."""
        return bool(self.below) and share > max(2 * self.below, 0.2)

    def wait(self) -> float:
        deadline = time.monotonic() + self.max_wait
        busy = cpu_busy()
        while self.below and busy > self.below and time.monotonic() < deadline:
            busy = cpu_busy(1.0)
        self.log.append(busy)
        return busy


def cold_starts(rts: list[Runtime], rounds: int, quiet: Quiet) -> dict[str, dict[str, Any]]:
    samples: dict[str, list[float]] = {rt.name: [] for rt in rts}
    port_open: dict[str, list[float]] = {rt.name: [] for rt in rts}
    errors: dict[str, str] = {}
    during: list[float] = []
    r, redone = 0, 0
    while r <= rounds:  # round 0 warms caches and is discarded
        busy = quiet.wait() if r else 0.0
        meter = OthersMeter()
        this_round: dict[str, tuple[float, float]] = {}
        for rt in rts:
            if rt.name in errors:
                continue
            server = Server(rt)
            try:
                ms, _, _ = wait_first_2xx(server)
            except RuntimeError as exc:
                errors[rt.name] = str(exc)
                print(f"  {rt.name}: FAILED {str(exc).splitlines()[0]}")
                continue
            finally:
                server.stop()
            assert server.connected_at is not None
            this_round[rt.name] = (ms, (server.connected_at - server.started) * 1000)
        others = meter.share()
        line = "  ".join(f"{n} {ms:.1f} ms" for n, (ms, _) in this_round.items())
        if r and quiet.too_busy(others) and redone < rounds:
            redone += 1
            print(f"  round {r}/{rounds} redone, others took {others:.0%} of the CPU during it: {line}")
            continue
        if r:
            during.append(others)
            for name, (ms, opened) in this_round.items():
                samples[name].append(ms)
                port_open[name].append(opened)
            print(f"  round {r}/{rounds} (others busy {busy:.0%} before, {others:.0%} during): {line}")
        r += 1
    out: dict[str, dict[str, Any]] = {}
    for name, s in samples.items():
        if name in errors:
            out[name] = {"error": errors[name]}
        else:
            out[name] = {
                "median_ms": statistics.median(s),
                "min_ms": min(s),
                "max_ms": max(s),
                "samples_ms": s,
                # first accepted connect: kfaas/func-python bind after imports, gunicorn (ff) before its worker loads
                "port_open_median_ms": statistics.median(port_open[name]),
                "others_busy_during": during,
            }
    return out


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+),", out)
    if not m:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    result["requests"] = int(m.group(1))
    result["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx_3xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["socket_errors"] = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True)) if m else {}
    )
    m = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if m:
        result["latency_avg_ms"] = _ms(m.group(1))
        result["latency_max_ms"] = _ms(m.group(3))
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.MULTILINE)
        if m:
            result[f"latency_p{pct}_ms"] = _ms(m.group(1))
    return result


def run_wrk(port: int, seconds: float, connections: int, threads: int) -> tuple[str, dict[str, Any]]:
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        "--timeout",
        "5s",
        "-s",
        str(LUA),
        f"http://{HOST}:{port}/",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    return proc.stdout, parse_wrk(proc.stdout)


def throughput(rt: Runtime, warmup: float, seconds: float, connections: int, threads: int) -> dict[str, Any]:
    server = Server(rt)
    try:
        _, status, raw = wait_first_2xx(server)
        head = raw.split(b"\r\n\r\n", 1)[0].decode(errors="replace").splitlines()
        run_wrk(server.port, warmup, connections, threads)
        before = load()
        cpu0 = server.cpu_seconds()
        meter = OthersMeter()
        out, result = run_wrk(server.port, seconds, connections, threads)
        cpu = server.cpu_seconds() - cpu0
        others = meter.share(extra=cpu)
        alive = server.proc.poll() is None
    finally:
        server.stop()
    errors = sum(result["socket_errors"].values())
    result.update(
        precheck_status=status,
        precheck_head=head[0],
        load_before=before["loadavg"],
        server_cpu_s=round(cpu, 2),
        server_cpu_share=round(cpu / seconds, 2),
        # server CPU per request: less sensitive than req/s to other processes taking the cores
        cpu_us_per_request=round(cpu / max(result["requests"], 1) * 1e6, 1),
        server_alive_after=alive,
        others_busy_during=round(others, 3),
        wrk_output=out,
    )
    problems = []
    if not 200 <= status < 300:
        problems.append(f"pre-check answered {status}, not 2xx")
    if result["non_2xx_3xx"]:
        problems.append(f"{result['non_2xx_3xx']} non-2xx/3xx responses")
    if errors > 0.01 * max(result["requests"], 1):
        problems.append(f"{errors} socket errors")
    if not alive:
        problems.append("server died")
    result["valid"] = not problems
    result["problems"] = problems
    return result


def summarise(passes: list[dict[str, Any]]) -> dict[str, Any]:
    """One runtime's passes -> the median pass (by rps); valid only if every pass was."""
    if any("error" in p for p in passes):
        return {"error": next(p["error"] for p in passes if "error" in p), "valid": False, "passes": passes}
    ranked = sorted(passes, key=lambda p: p["rps"])
    out = {k: v for k, v in ranked[(len(ranked) - 1) // 2].items() if k != "wrk_output"}
    out["rps"] = statistics.median(p["rps"] for p in passes)
    out["rps_passes"] = [p["rps"] for p in passes]
    out["valid"] = all(p["valid"] for p in passes)
    out["problems"] = [q for p in passes for q in p["problems"]]
    out["passes"] = passes
    return out


def import_profile(rt: Runtime, top: int = 10, runs: int = 3) -> dict[str, Any]:
    """:func:`import_profile_once` ``runs`` times; the run with the median total import time."""
    profiles = sorted((import_profile_once(rt, top) for _ in range(runs)), key=lambda p: p["total_import_ms"])
    chosen = profiles[(len(profiles) - 1) // 2]
    chosen["total_import_ms_runs"] = [p["total_import_ms"] for p in profiles]
    return chosen


def import_profile_once(rt: Runtime, top: int = 10) -> dict[str, Any]:
    """Start ``rt`` under ``-X importtime`` until its first 2xx; the imports ranked by cumulative time."""
    server = Server(rt, extra_python_flags=("-X", "importtime"))
    try:
        ms, _, _ = wait_first_2xx(server)
        text = server.log_text()
    finally:
        server.stop()
    rows: list[dict[str, Any]] = []
    for line in text.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if m:
            rows.append(
                {
                    "self_ms": int(m.group(1)) / 1000,
                    "cumulative_ms": int(m.group(2)) / 1000,
                    "depth": len(m.group(3)) // 2,
                    "module": m.group(4),
                }
            )
    top_level = [r for r in rows if r["depth"] == 0]
    return {
        "first_2xx_ms_under_importtime": ms,
        "modules": len(rows),
        "total_import_ms": sum(r["self_ms"] for r in rows),
        "top_cumulative": sorted(rows, key=lambda r: -r["cumulative_ms"])[:top],
        "top_level": sorted(top_level, key=lambda r: -r["cumulative_ms"])[:top],
    }


def interpreter_floor(python: str, rounds: int) -> float:
    """Median ms for `python -c pass`: the part of every cold start no runtime can shave."""
    times = []
    for _ in range(rounds + 1):
        t = time.perf_counter()
        subprocess.run([python, "-c", "pass"], check=True)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times[1:])


def versions() -> dict[str, Any]:
    main: dict[str, str | None] = {}
    wanted = {}
    for line in (BENCH / "requirements-runtime.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            wanted[name] = version
    for name in ["kfaas", *wanted]:
        try:
            main[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            main[name] = None
    for name, version in wanted.items():
        if main[name] != version:
            print(f"WARNING: {name} {main[name]} installed, the benchmark pins {version}")
    fp: dict[str, str] = {}
    fp_python = FUNC_PYTHON_VENV / "bin" / "python"
    if fp_python.exists():
        code = (
            "import importlib.metadata as m, json; print(json.dumps({n: m.version(n) for n in "
            "('func-python', 'cloudevents', 'hypercorn')}))"
        )
        fp = json.loads(
            subprocess.run([str(fp_python), "-c", code], capture_output=True, text=True, check=True).stdout
        )
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return {
        "main_venv": main,
        "func_python_venv": fp,
        "wrk": (wrk.stdout + wrk.stderr).splitlines()[0],
        "python": platform.python_version(),
    }


# --------------------------------------------------------------------------------------------- report


def ratios(results: dict[str, dict[str, Any]], targets: dict[str, Any] = TARGETS) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for label, (metric, name, baseline, op, bound) in targets.items():
        mine, theirs = results.get(name, {}).get(metric), results.get(baseline, {}).get(metric)
        row: dict[str, Any] = {"target": label, "rule": f"{name} {op} {bound}x {baseline}", "ratio": None}
        if mine is None or theirs is None:
            row["verdict"] = "N/A (not measured)"
        else:
            row["ratio"] = mine / theirs
            met = row["ratio"] <= bound if op == "<=" else row["ratio"] >= bound
            row["verdict"] = "MET" if met else "NOT MET"
        if metric == "rps":  # the same comparison per CPU-second of the server (informative, not the target)
            mine_cpu = results.get(name, {}).get("cpu_us_per_request")
            theirs_cpu = results.get(baseline, {}).get("cpu_us_per_request")
            if mine_cpu and theirs_cpu and mine is not None and theirs is not None:
                row["ratio_per_cpu"] = theirs_cpu / mine_cpu
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 cold starts, 1 s + 3 s of wrk")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated runtimes (kfaas,ff-asgi,func-python,granian-bare,uvicorn-bare)",
    )
    parser.add_argument("--rounds", type=int, help="cold-start rounds (default 9, quick 5)")
    parser.add_argument("--duration", type=float, help="measured wrk seconds (default 10, quick 3)")
    parser.add_argument("--warmup", type=float, help="wrk warm-up seconds (default 2, quick 1)")
    parser.add_argument("--passes", type=int, help="interleaved wrk passes per runtime (default 3, quick 1)")
    parser.add_argument(
        "--hello",
        choices=["sync", "async", "ff"],
        default="sync",
        help="kfaas and ff-asgi serve `hello` (sync, run in a worker thread) or `hello_async` (a coroutine); "
        "ff: the functions of bench/hello_ff/ that import functions_framework, cold start only "
        "(--throughput adds wrk on the plain hello), each against functions-framework, beside the plain hello",
    )
    parser.add_argument(
        "--throughput", action="store_true", help="with --hello ff: wrk on the plain hello too"
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--threads", type=int, default=1, help="wrk threads (1 leaves the other core to the server)"
    )
    parser.add_argument(
        "--out", type=Path, help="JSON results file (default bench/results/runtime-<date>.json)"
    )
    parser.add_argument(
        "--quiet",
        type=float,
        default=0.0,
        help="before each round/pass wait until other processes use at most this share of the CPU (e.g. 0.1)",
    )
    parser.add_argument("--quiet-wait", type=float, default=60.0, help="longest wait for --quiet, seconds")
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="VENV",
        help="also run the kfaas installed in VENV as 'kfaas-compare' (another build, e.g. the last release)",
    )
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the `finally` blocks stop the servers started so far
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rounds = args.rounds or (5 if args.quick else 9)
    duration = args.duration or (3.0 if args.quick else 10.0)
    warmup = args.warmup or (1.0 if args.quick else 2.0)
    passes = args.passes or (1 if args.quick else 3)
    today = dt.date.today().isoformat()
    variant = "" if args.hello == "sync" else f"-{args.hello}"
    out_path = args.out or BENCH / "results" / (
        f"runtime-{today}{variant}-quick.json.tmp" if args.quick else f"runtime-{today}{variant}.json"
    )

    start_load = load()
    start_load["cpu_busy_1s"] = cpu_busy(1.0)  # the load average also remembers the last minute's runs
    print(
        f"load at start: {start_load['uptime']}  (cores: {os.cpu_count()}; "
        f"CPU busy now: {start_load['cpu_busy_1s']:.0%})"
    )
    if start_load["cpu_busy_1s"] > 0.25:
        print("WARNING: the machine is busy; these numbers are not final (run again when it is quiet)")
    info = versions()
    print(f"python {info['python']}, {info['wrk']}")
    print(f"main venv: {info['main_venv']}\nfunc-python venv: {info['func_python_venv']}")

    rts = runtimes({"sync": "hello", "async": "hello_async", "ff": "ff"}[args.hello])
    targets = FF_TARGETS if args.hello == "ff" else TARGETS
    measure_throughput = args.hello != "ff" or args.throughput
    if args.hello == "ff" and args.throughput:
        targets = {**FF_TARGETS, **FF_THROUGHPUT_TARGETS}
    if args.compare:
        other = args.compare.resolve() / "bin" / "kfaas"
        compare = Runtime("kfaas-compare", [str(other), *rts[0].argv[1:]])
        if not other.exists():
            compare.missing = f"{other} does not exist"
        rts.insert(1, compare)
    if args.only:
        rts = [rt for rt in rts if rt.name in args.only.split(",")]
    for rt in rts:
        if rt.missing:
            print(f"SKIPPED {rt.name}: {rt.missing}")
    ready = [rt for rt in rts if not rt.missing]

    floor = interpreter_floor(sys.executable, 5)
    print(f"\ninterpreter floor (`python -c pass`): {floor:.1f} ms")

    print(
        f"\n(a) cold start, process start -> first 2xx on POST / (binary CloudEvent), {rounds} rounds + 1 discarded"
    )
    quiet = Quiet(args.quiet, args.quiet_wait)
    cold = cold_starts(ready, rounds, quiet)

    if measure_throughput:
        print(
            f"\n(b) warm throughput: wrk -t{args.threads} -c{args.connections}, {warmup:g} s warm-up + {duration:g} s,"
            f" {passes} interleaved pass(es), median reported"
        )
    runs: dict[str, list[dict[str, Any]]] = {rt.name: [] for rt in ready}
    # --hello ff: the functions-framework functions are measured for their cold start, wrk runs the plain hello
    loaded = [rt for rt in ready if args.hello != "ff" or ":" not in rt.name]
    for p in range(1, passes + 1 if measure_throughput else 1):
        for rt in loaded:
            for attempt in (1, 2):  # one redo when others took the CPU during the pass (with --quiet)
                if runs[rt.name] and "error" in runs[rt.name][-1]:
                    break
                busy = quiet.wait()
                print(f"  pass {p} {rt.name}: others busy {busy:.0%} ...", end=" ", flush=True)
                try:
                    w = throughput(rt, warmup, duration, args.connections, args.threads)
                    w["others_busy_before"] = round(busy, 3)
                except RuntimeError as exc:
                    runs[rt.name].append({"error": str(exc), "valid": False})
                    print(f"FAILED {str(exc).splitlines()[0]}")
                    break
                print(
                    f"{w['rps']:.0f} rps, p99 {w.get('latency_p99_ms', float('nan')):.2f} ms, server CPU "
                    f"{w['server_cpu_share']:.2f} cores, others {w['others_busy_during']:.0%} during"
                    f"{'' if w['valid'] else '  INVALID: ' + '; '.join(w['problems'])}"
                )
                if attempt == 1 and quiet.too_busy(w["others_busy_during"]):
                    print("    redone: others took the CPU during the pass")
                    continue
                runs[rt.name].append(w)
                break
    warm = {name: summarise(r) for name, r in runs.items() if r}

    results: dict[str, dict[str, Any]] = {}
    for rt in rts:
        c, w = cold.get(rt.name, {}), warm.get(rt.name, {})
        results[rt.name] = {
            "cold_ms": c.get("median_ms"),
            "rps": w.get("rps") if w.get("valid") else None,
            "cpu_us_per_request": w.get("cpu_us_per_request") if w.get("valid") else None,
            "cold_start": c or {"error": rt.missing},
            "throughput": w or {"error": rt.missing},
        }

    print(
        f"\n{'runtime':<18} {'cold median':>12} {'min':>8} {'max':>8} {'port open':>10} {'req/s':>10} {'p99 ms':>8} {'CPU':>5} {'CPU us/req':>10} {'status':>6}  valid"
    )
    for name, r in results.items():
        c, w = r["cold_start"], r["throughput"]
        if "median_ms" in c:
            cold_cols = f"{c['median_ms']:>9.1f} ms {c['min_ms']:>8.1f} {c['max_ms']:>8.1f} {c['port_open_median_ms']:>10.1f}"
        else:
            cold_cols = f"{'-':>12} {'-':>8} {'-':>8} {'-':>10}"
        if "rps" in w:
            warm_cols = (
                f"{w['rps']:>10.0f} {w.get('latency_p99_ms', float('nan')):>8.2f} {w['server_cpu_share']:>5.2f} {w['cpu_us_per_request']:>10.1f} "
                f"{w['precheck_status']:>6}  {'yes' if w['valid'] else 'NO: ' + '; '.join(w['problems'])}"
            )
        else:
            warm_cols = f"{'-':>10} {'-':>8} {'-':>5} {'-':>10} {'-':>6}  {(w.get('error') or '').splitlines()[0] if w.get('error') else ''}"
        print(f"{name:<18} {cold_cols} {warm_cols}")

    busiest = max(quiet.log, default=0.0)
    print(f"\nother processes used up to {busiest:.0%} of the CPU before a measurement", end="")
    print(" -- numbers taken on a busy machine are not final" if busiest > 0.25 else "")

    verdicts = ratios(results, targets)
    print("\ntargets")
    for v in verdicts:
        ratio = f"{v['ratio']:.2f}x" if v["ratio"] is not None else "-"
        per_cpu = f"  (per server CPU-second: {v['ratio_per_cpu']:.2f}x)" if "ratio_per_cpu" in v else ""
        print(f"  {v['target']:<48} {v['rule']:<44} measured {ratio:>7}  {v['verdict']}{per_cpu}")

    profile: dict[str, Any] = {}
    profiled = "kfaas:cloud_event" if args.hello == "ff" else "kfaas"
    kfaas = next((rt for rt in ready if rt.name == profiled), None)
    if kfaas is not None:
        try:
            profile = import_profile(kfaas)
        except RuntimeError as exc:
            profile = {"error": str(exc)}
        if "error" in profile:
            print(f"\nimport-time profile FAILED: {profile['error']}")
        else:
            print(
                f"\nimport-time profile of `{profiled}` startup: {profile['modules']} modules, "
                f"{profile['total_import_ms']:.1f} ms importing (first 2xx at "
                f"{profile['first_2xx_ms_under_importtime']:.1f} ms under -X importtime; median of runs "
                + ", ".join(f"{t:.1f}" for t in profile["total_import_ms_runs"])
                + ")"
            )
            print(f"  top 10 by cumulative time{'':<22}self ms  cumulative ms")
            for r in profile["top_cumulative"]:
                name = "  " * r["depth"] + r["module"]
                print(f"  {name:<47} {r['self_ms']:>7.1f} {r['cumulative_ms']:>14.1f}")
            print(
                "  top-level imports by cumulative time: "
                + ", ".join(f"{r['module']} {r['cumulative_ms']:.1f}" for r in profile["top_level"])
            )

    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "load_at_start": start_load,
            "load_at_end": load(),
        },
        "versions": info,
        "config": {
            "cold_rounds": rounds,
            "wrk_threads": args.threads,
            "wrk_connections": args.connections,
            "wrk_warmup_s": warmup,
            "wrk_duration_s": duration,
            "wrk_passes": passes,
            "hello": args.hello,
            "host": HOST,
        },
        "interpreter_floor_ms": floor,
        "others_busy": {"samples": quiet.log, "max": max(quiet.log, default=0.0), "quiet_below": args.quiet},
        "results": results,
        "targets": verdicts,
        "kfaas_import_profile": profile,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"\nload at end: {report['machine']['load_at_end']['uptime']}\nresults: {out_path.relative_to(ROOT) if out_path.is_relative_to(ROOT) else out_path}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
