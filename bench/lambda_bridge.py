"""Lambda Runtime API bridge benchmark: per-invocation overhead on the Go hello handler, side by side.

Cases, all ``kfaas serve`` of the same hello route (``GET /hello``, an API Gateway REST event, 200 "hello"):
  python       the hello handler in kfaas's process (the Python path: bench/lambda_hello/app.py)
  go-bridge    the Go hello handler (aws-lambda-go's lambda.Start, bench/lambda_hello/main.go) as runtime
               processes behind kfaas's Runtime API: a pool of 1 and a pool of 4

Each case is measured with ``wrk --latency`` at as many connections as the pool has processes (1 and 4: every
request finds a free process, so latency is one invocation's), after a warm-up. Passes interleave the cases
(python 1, go 1, python 4, go 4, ...); the median pass by req/s is reported with p50/p99. The bridge's added
cost is go-bridge's p50 minus python's at the same concurrency (target: <= 1 ms).

Other processes' CPU use is sampled during every pass; ``--quiet 0.1`` waits for others to use at most 10%
of the CPU before each pass and redoes a pass they disturbed (bench/runtime.py's quiet-wait). The load seen
is in the output.

Usage: .venv/bin/python bench/lambda_bridge.py [--quiet 0.1] [--seconds 10] [--passes 3] [--json FILE]
Needs: wrk, Go (the hello handler is built into a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runtime import BIN, HOST, OthersMeter, Quiet, free_port, load, parse_wrk

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "bench" / "lambda_hello"


def build_go(folder: Path) -> Path:
    out = folder / "bootstrap"
    env = {**os.environ, "CGO_ENABLED": "0"}
    subprocess.run(
        ["go", "build", "-trimpath", "-buildvcs=false", "-o", str(out), "."],
        cwd=HELLO,
        env=env,
        check=True,
        timeout=900,
    )
    return out


def case_folder(base: Path, name: str, runtime: str, handler: str, concurrency: int) -> Path:
    folder = base / name
    folder.mkdir()
    shutil.copy2(HELLO / "app.py", folder / "app.py")
    (folder / "function.yaml").write_text(
        f"kind: lambda\nruntime: {runtime}\nhandler: {handler}\ntimeout: 10\n"
        f"lambda: {{concurrency: {concurrency}}}\nroutes:\n  - {{path: /hello, methods: [GET]}}\n"
    )
    return folder


class Serve:
    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("KFAAS_", "FUNCTION_", "MONGODB_", "AMQP_"))
        }
        env.update(
            HOST=HOST, PORT=str(self.port), FUNCTION_SOURCE=str(folder / "main.py"), LOG_LEVEL="WARNING"
        )
        self.log = tempfile.NamedTemporaryFile(prefix="bench-lambda-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(BIN / "kfaas"), "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        import urllib.request

        while True:
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.port}/hello", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"kfaas serve of {folder} did not answer:\n{Path(self.log.name).read_text()}"
                )
            time.sleep(0.05)

    def cpu_seconds(self) -> float:
        total = 0
        tick = os.sysconf("SC_CLK_TCK")
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == self.proc.pid:
                total += int(fields[11]) + int(fields[12])
        return total / tick

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def wrk(port: int, seconds: float, connections: int) -> dict[str, Any]:
    argv = [
        "wrk",
        f"-t{min(connections, 2)}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        "--timeout",
        "5s",
    ]
    proc = subprocess.run(
        [*argv, f"http://{HOST}:{port}/hello"],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {proc.stderr or proc.stdout}")
    result = parse_wrk(proc.stdout)
    if result["non_2xx_3xx"] or any(result["socket_errors"].values()):
        raise RuntimeError(f"wrk saw errors, the pass does not count:\n{proc.stdout}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per pass (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument(
        "--quiet", type=float, default=0.0, help="wait until others use at most this CPU share"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if not shutil.which("wrk") or not shutil.which("go"):
        sys.stderr.write("bench/lambda_bridge.py needs wrk and go on PATH\n")
        return 2
    quiet = Quiet(args.quiet)
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-lambda-") as tmp:
        base = Path(tmp)
        bootstrap = build_go(base)
        cases = {}
        for pool in (1, 4):
            cases[f"python c={pool}"] = (case_folder(base, f"py{pool}", "python3.12", "app.hello", 1), pool)
            go = case_folder(base, f"go{pool}", "provided.al2023", "bootstrap", pool)
            shutil.copy2(bootstrap, go / "bootstrap")
            cases[f"go-bridge pool={pool} c={pool}"] = (go, pool)
        before = load()
        for n in range(args.passes):
            for name, (folder, connections) in cases.items():
                redo = 0
                while True:
                    busy = quiet.wait()
                    server = Serve(folder)
                    try:
                        wrk(server.port, args.warmup, connections)
                        meter = OthersMeter()
                        cpu0 = server.cpu_seconds()
                        result = wrk(server.port, args.seconds, connections)
                        cpu = server.cpu_seconds() - cpu0
                        others = meter.share(cpu)
                    finally:
                        server.stop()
                    if quiet.too_busy(others) and redo < 3:
                        redo += 1
                        print(f"  {name}: pass {n + 1} redone, others took {others:.0%} of the CPU")
                        continue
                    break
                result.update(
                    others_busy_before=busy,
                    others_busy_during=others,
                    server_cpu_us_per_request=cpu / max(result["requests"], 1) * 1e6,
                )
                results.setdefault(name, []).append(result)
                print(
                    f"  pass {n + 1} {name:<26} {result['rps']:>8.0f} req/s  p50 {result['latency_p50_ms']:.3f} ms"
                    f"  p99 {result['latency_p99_ms']:.3f} ms  (others {others:.0%})"
                )
    summary: dict[str, Any] = {}
    for name, passes in results.items():
        ranked = sorted(passes, key=lambda r: r["rps"])
        median = ranked[(len(ranked) - 1) // 2]
        summary[name] = {
            "rps": median["rps"],
            "p50_ms": median["latency_p50_ms"],
            "p99_ms": median["latency_p99_ms"],
            "p50_ms_passes": [r["latency_p50_ms"] for r in passes],
            "server_cpu_us_per_request": median["server_cpu_us_per_request"],
            "others_busy_during": [round(r["others_busy_during"], 3) for r in passes],
        }
    print("\ncase                        req/s      p50 ms   p99 ms   server CPU/request")
    for name, s in summary.items():
        print(
            f"{name:<26} {s['rps']:>8.0f}   {s['p50_ms']:>7.3f}  {s['p99_ms']:>7.3f}   {s['server_cpu_us_per_request']:>7.0f} us"
        )
    added = {}
    for pool in (1, 4):
        go, py = summary[f"go-bridge pool={pool} c={pool}"], summary[f"python c={pool}"]
        added[pool] = go["p50_ms"] - py["p50_ms"]
        verdict = "meets" if added[pool] <= 1.0 else "misses"
        print(f"bridge added p50 at pool {pool}: {added[pool]:+.3f} ms ({verdict} the <= 1 ms target)")
    after = load()
    print(f"load average before {before['loadavg']}, after {after['loadavg']}; quiet waits saw {quiet.log}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "summary": summary,
                    "added_p50_ms": added,
                    "load_before": before,
                    "load_after": after,
                    "quiet": args.quiet,
                    "passes": results,
                    "statistics": {
                        name: statistics.median(r["latency_p50_ms"] for r in passes)
                        for name, passes in results.items()
                    },
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
