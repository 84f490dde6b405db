"""Serve an ASGI app with granian in this process, with Knative's shutdown contract.

granian (a Rust HTTP server) was chosen by measurement: see docs/benchmarks.md. It runs embedded in the
current event loop, so there is one process per container and no worker spawn at start-up.

On SIGTERM (or SIGINT): readiness turns 503, requests in flight get up to ``drain_seconds`` to finish, the
server stops accepting, clients are closed in the app's lifespan shutdown, and the process exits 0.

A port that is taken is refused before anything starts (:class:`PortClaim`, :class:`PortInUse`): granian
binds with ``SO_REUSEPORT`` on Linux, so without the claim a second server on the same port would bind
beside the first and the kernel would share the connections between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from typing import Any, Protocol

log = logging.getLogger("kfaas.serve")

__all__ = [
    "HEADER_READ_TIMEOUT",
    "DrainableApp",
    "PortClaim",
    "PortInUse",
    "StartupFailed",
    "run",
    "serve",
    "serve_embedded",
]

HEADER_READ_TIMEOUT = 30.0  # seconds a client may take to send a request's head (then granian closes)


class StartupFailed(RuntimeError):
    """The app's lifespan start-up failed (the app logged why); the server did not start."""


class PortInUse(OSError):
    """The port is taken; the message names it (and whether another kfaas server holds it)."""


class PortClaim:
    """The right to serve on ``host:port``, taken before the server binds and held while it runs.

    granian (2.x) binds its listener with ``SO_REUSEPORT`` on Linux. Two processes of one user that both
    set it may listen on the same port, and the kernel then spreads the connections over them: a second
    ``kfaas gateway`` on a port in use would start without a word and answer some of the requests meant
    for the first. A claim refuses that in two steps, each raising :class:`PortInUse`:

    1. it binds an abstract Unix socket named after the port (Linux), held for the claim's life: a second
       kfaas server on that port fails here, even when both start at the same instant;
    2. it binds a plain TCP socket (``SO_REUSEADDR``, no ``SO_REUSEPORT``) to ``host:port`` and closes it:
       this fails while anything at all listens there, a kfaas server (whose ``SO_REUSEPORT`` socket lets no
       socket without the option beside it) or any other program.

    Port 0 (the system picks one) is never contested and claims nothing.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._lock: socket.socket | None = None
        if port == 0:
            return
        if sys.platform == "linux":
            lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                lock.bind(f"\0kfaas-port-{port}")
            except OSError:
                lock.close()
                raise PortInUse(
                    f"{host}:{port} is in use: another kfaas server listens on port {port}"
                ) from None
            self._lock = lock
        try:
            self._probe()
        except BaseException:
            self.release()
            raise

    def _probe(self) -> None:
        try:
            infos = socket.getaddrinfo(
                self.host or None, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except socket.gaierror as exc:
            raise OSError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT left over is no owner
            try:
                probe.bind(address)
            except OSError as exc:
                raise PortInUse(f"{self.host}:{self.port} is in use ({exc.strerror})") from None

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> PortClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _bind_failure(exc: BaseException, host: str, port: int) -> BaseException:
    """granian reports a bind that failed as RuntimeError("Address already in use (os error 98)")."""
    if isinstance(exc, RuntimeError) and "in use" in str(exc).lower():
        return PortInUse(f"{host}:{port} is in use ({exc})")
    return exc


def _http1() -> Any:
    """granian's HTTP/1 settings, written out: the request head's bounds that kfaas.base.asgi relies on."""
    from granian.http import HTTP1Settings

    from kfaas.base.asgi import MAX_HEADER_BYTES, SERVER_MAX_HEAD

    assert MAX_HEADER_BYTES < SERVER_MAX_HEAD, "kfaas's own header limit must trip before granian's"
    return HTTP1Settings(header_read_timeout=int(HEADER_READ_TIMEOUT * 1000), max_buffer_size=SERVER_MAX_HEAD)


class DrainableApp(Protocol):
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...

    async def drain(self, timeout: float) -> bool: ...

    async def shutdown(self) -> None: ...


async def serve(
    app: DrainableApp,
    host: str,
    port: int,
    *,
    drain_seconds: float = 20.0,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    claim: PortClaim | None = None,
    rsgi: bool = False,
) -> None:
    """Serve until SIGTERM/SIGINT or until ``stop`` is set, then drain and return.

    Raises :class:`PortInUse` at once when the port is taken (``claim``: one taken earlier, kept until the
    server stops). With ``rsgi`` the app is served over granian's own interface (``app.__rsgi__``), which
    has no lifespan: ``app.startup()`` runs before the server starts (a failure is logged and raises
    :class:`StartupFailed`) and ``app.shutdown()`` after it stopped.
    """
    from granian.constants import HTTPModes, Interfaces
    from granian.server.embed import Server

    claim = claim or PortClaim(host, port)

    logging.getLogger("granian").setLevel(logging.ERROR)  # "embedded server is experimental" on every start
    if rsgi:
        try:
            await app.startup()  # type: ignore[attr-defined]  # RSGI apps have one: there is no lifespan
        except Exception as exc:
            log.exception("start-up failed")
            claim.release()
            raise StartupFailed(str(exc)) from None
    server = Server(
        app,
        address=host,
        port=port,
        interface=Interfaces.RSGI if rsgi else Interfaces.ASGI,
        http=HTTPModes.http1,  # queue-proxy and the broker speak HTTP/1.1 to the container
        http1_settings=_http1(),
        websockets=False,
        log_access=False,
        backlog=1024,
        log_enabled=False,  # our JSON logging (kfaas.base.log) is configured instead
    )
    # granian waits this long for open requests when it stops; past it, it gives up on them
    server.workers_kill_timeout = max(1, round(drain_seconds))
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def watch() -> None:
        await stop.wait()
        log.info("stopping: no new connections; draining requests in flight (up to %ss)", drain_seconds)
        server.stop()  # type: ignore[no-untyped-call]  # granian closes the listener and lets open requests finish
        await app.drain(drain_seconds)

    serving = asyncio.create_task(server.serve())
    watcher = asyncio.create_task(watch())
    if ready is not None:
        ready.set()
    try:
        await serving
    except (TimeoutError, asyncio.CancelledError):
        log.warning("requests were still open after %ss; stopping anyway", drain_seconds)
        await app.shutdown()  # the lifespan shutdown did not run: close the clients here
    except RuntimeError as exc:
        raise _bind_failure(exc, host, port) from None
    except Exception as exc:
        if type(exc).__name__ == "FatalError":  # granian.errors.FatalError("ASGI lifespan startup")
            raise StartupFailed(str(exc)) from None
        raise
    finally:
        watcher.cancel()
        claim.release()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if rsgi:
            await app.shutdown()
    log.info("stopped")


def run(
    app: DrainableApp,
    host: str,
    port: int,
    *,
    drain_seconds: float = 20.0,
    claim: PortClaim | None = None,
    rsgi: bool = False,
) -> None:
    """Run :func:`serve` on a fresh event loop (uvloop when installed); :class:`PortInUse` before it starts."""
    claim = claim or PortClaim(host, port)
    try:
        import uvloop
    except ImportError:  # uvloop is optional (not on Windows)
        asyncio.run(serve(app, host, port, drain_seconds=drain_seconds, claim=claim, rsgi=rsgi))
    else:
        uvloop.run(serve(app, host, port, drain_seconds=drain_seconds, claim=claim, rsgi=rsgi))


async def serve_embedded(
    app: Any, host: str, port: int, *, rsgi: bool = False, claim: PortClaim | None = None
) -> None:
    """Serve ``app`` (ASGI without lifespan, or RSGI) on host:port in the running loop until cancelled.

    For servers that live inside another process's loop (the broker ingress and the gateway of
    ``kfaas dev``): the app shares the caller's connections, and its HTTP parsing stays in Rust. Raises
    :class:`PortInUse` when the port is taken (``claim``: taken earlier by the caller, released here).
    """
    from granian.constants import HTTPModes, Interfaces
    from granian.server.embed import Server

    claim = claim or PortClaim(host, port)
    logging.getLogger("_granian").setLevel(logging.WARNING)
    server = Server(
        app,
        address=host,
        port=port,
        interface=Interfaces.RSGI if rsgi else Interfaces.ASGINL,
        http=HTTPModes.http1,  # as the servers of the containers: the same head limits everywhere
        http1_settings=_http1(),
        log_access=False,
        websockets=False,
    )
    task = asyncio.ensure_future(server.serve())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        server.stop()  # type: ignore[no-untyped-call]
        with contextlib.suppress(RuntimeError):
            await task
        raise
    except RuntimeError as exc:
        raise _bind_failure(exc, host, port) from None
    finally:
        claim.release()
