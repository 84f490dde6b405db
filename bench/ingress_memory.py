"""Memory of the broker ingress around a refused 200 MB upload: RSS of a `kfaas broker` process before and after.

    AMQP_URL=amqp://guest:guest@127.0.0.1:5672/ .venv/bin/python bench/ingress_memory.py \
        [--size-mb 200] [--kfaas /path/to/other/venv/bin/kfaas ...]

Starts `kfaas broker` (each `--kfaas` command given, default this venv's) on a private namespace, reads its
VmRSS and VmHWM (peak) from /proc, sends one upload of --size-mb megabytes over a raw socket in 1 MiB writes,
first with a Content-Length header and then chunked, stopping as soon as the server answers, and reads the
process's memory again after each. Several `--kfaas` commands run one after the other in the same run, so an
older build can be measured beside this one. Loopback only; one upload per case; the queues and exchange
of the namespace are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

DESCRIPTION = """\
kind: cloudevent
triggers:
  - name: t
    filter: {type: com.example.memory}
    delivery: {retry: 0, backoffPolicy: linear, backoffDelay: PT0.05S}
"""
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def upload(port: int, size: int, chunked: bool) -> tuple[str, int, float]:
    """Send up to ``size`` bytes of body, stopping when the server answers; (status line, bytes sent, s)."""
    head = [
        "POST /default HTTP/1.1",
        "host: 127.0.0.1",
        "ce-id: memory-1",
        "ce-source: /bench",
        "ce-type: com.example.memory",
        "ce-specversion: 1.0",
        "content-type: application/octet-stream",
        "transfer-encoding: chunked" if chunked else f"content-length: {size}",
    ]
    chunk = b"x" * MIB
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk
    started = time.monotonic()
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        while sent < size:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        else:
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        try:
            while b"\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except (ConnectionResetError, TimeoutError):
            pass
    status = answer.split(b"\r\n", 1)[0].decode("latin-1") or "(connection closed, no answer)"
    return status, sent, time.monotonic() - started


def measure(kfaas: str, amqp_url: str, folder: Path, size: int) -> list[str]:
    namespace = f"bench-mem-{uuid.uuid4().hex[:8]}"
    port = free_port()
    argv = [kfaas, "broker", "--functions", str(folder), "--amqp-url", amqp_url, "--namespace", namespace]
    process = subprocess.Popen(
        [*argv, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    lines = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/readiness", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"{kfaas} broker did not become ready")
            time.sleep(0.1)
        time.sleep(1.0)  # let start-up allocations settle
        rss, peak = memory_mb(process.pid)
        lines.append(f"  at rest:                RSS {rss:7.1f} MB   peak {peak:7.1f} MB")
        for chunked in (False, True):
            status, sent, seconds = upload(port, size, chunked)
            time.sleep(1.0)
            rss, peak = memory_mb(process.pid)
            how = "chunked" if chunked else "Content-Length"
            lines.append(
                f"  after {how:<15}  RSS {rss:7.1f} MB   peak {peak:7.1f} MB   "
                f"({sent / MIB:.0f} MiB sent in {seconds:.2f}s; answer: {status})"
            )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        asyncio.run(cleanup(amqp_url, namespace))
    return lines


async def cleanup(amqp_url: str, namespace: str) -> None:
    import aio_pika

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for queue in (f"t.{namespace}.sub-t", f"t.{namespace}.sub-t.dlq"):
            await channel.queue_delete(queue)
        await channel.exchange_delete(f"b.{namespace}.default")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=200, help="size of the upload in MiB (200)")
    parser.add_argument(
        "--kfaas",
        action="append",
        default=[],
        help="kfaas command to measure (repeatable; default: this venv's)",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the results")
    args = parser.parse_args()
    amqp_url = os.environ.get("AMQP_URL")
    if not amqp_url:
        sys.stderr.write("set AMQP_URL\n")
        return 2
    commands = args.kfaas or [str(Path(sys.executable).with_name("kfaas"))]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "functions"
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "function.yaml").write_text(DESCRIPTION)
        (folder / "sub" / "main.py").write_text("def handle(event):\n    return None\n")
        print(f"load before: {os.getloadavg()[0]:.2f} (1-min avg), cores: {os.cpu_count()}")
        for command in commands:
            print(f"{command} broker, one {args.size_mb} MiB upload per case:")
            for line in measure(command, amqp_url, folder, args.size_mb * MIB):
                print(line)
        print(f"load after:  {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
