"""``kfaas serve``: host one function (the entrypoint of every function container).

Flags and environment variables are functions-framework's: ``--target``/``FUNCTION_TARGET``,
``--source``/``FUNCTION_SOURCE``, ``--signature-type``/``FUNCTION_SIGNATURE_TYPE``, ``--port``/``PORT``,
``--host``/``HOST``, ``--asgi``/``FUNCTION_USE_ASGI``, ``--debug``/``DEBUG``. Every other setting comes from
the environment (docs/runtime.md). ``--dry-run`` loads the function and says what would be served.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from kfaas.runtime.settings import Settings, SettingsError

_RELOADED = "KFAAS_RELOADED_CHILD"  # set in the child `kfaas serve --debug` restarts on change


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", help="function name in the source (FUNCTION_TARGET)")
    parser.add_argument("--source", help="Python file that defines it (FUNCTION_SOURCE, default main.py)")
    parser.add_argument(
        "--signature-type",
        help="http, cloudevent, event (legacy background functions), typed or asgi, for a function no "
        "decorator declares (FUNCTION_SIGNATURE_TYPE; a decorator wins; default: http); a type an installed "
        "package provides, such as lambda",
    )
    parser.add_argument("--host", help="address to listen on (HOST, default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port to listen on (PORT, default 8080)")
    parser.add_argument(
        "--asgi",
        action="store_true",
        default=None,
        help="http functions take a Starlette request, as under functions-framework --asgi (FUNCTION_USE_ASGI)",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=None,
        help="development: DEBUG logs, the trace in error answers, restart when a .py file beside the "
        "source changes (DEBUG)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="load the function, print what would run, exit"
    )
    parser.epilog = "environment:\n" + "\n".join(
        f"  {name:<26} {help_} (default {default})" for name, default, help_ in Settings.describe()
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def run(args: argparse.Namespace) -> int:
    from kfaas.base.log import configure_logging

    try:
        settings = Settings.from_env(
            target=args.target,
            source=args.source,
            signature_type=args.signature_type,
            host=args.host,
            port=args.port,
            asgi=args.asgi,
            debug=args.debug,
        )
        problem = _malformed_url(settings)
        if problem:
            raise SettingsError(problem)
    except SettingsError as exc:
        sys.stderr.write(f"kfaas serve: {exc}\n")
        return 2
    if settings.debug and not args.dry_run and not os.environ.get(_RELOADED):
        return _reload(settings)
    configure_logging("DEBUG" if settings.debug else settings.log_level)
    # Each failed connection attempt would be two lines (aiormq's error, aio_pika's "reconnecting"), on
    # every readiness probe while RabbitMQ is away: the app logs the change of readiness instead, once.
    logging.getLogger("aiormq.connection").setLevel(logging.CRITICAL)
    logging.getLogger("aio_pika").setLevel(max(logging.WARNING, logging.getLogger().level))
    if not settings.target:
        settings = _from_description(settings)

    from kfaas.runtime.targets import LoadError, load_target, plugin_loader

    try:
        loader = plugin_loader(settings.signature_type)  # another package's signature type, e.g. lambda
        if loader is not None:
            target = loader(settings)
        else:
            target = load_target(
                settings.source,
                settings.target,
                settings.signature_type,
                asgi=settings.asgi,
                threads=settings.threads,
            )
    except LoadError as exc:
        sys.stderr.write(f"kfaas serve: {exc}\n")
        return 2
    if args.dry_run:
        sys.stdout.write(
            f"would serve {target.name} ({settings.signature_type if loader else target.kind}) "
            f"from {settings.source} "
            f"on {settings.host}:{settings.port}\n"
        )
        return 0
    return _serve(settings, target)


def _serve(settings: Settings, target: Any) -> int:
    from kfaas.base.server import PortClaim, StartupFailed
    from kfaas.base.server import run as run_server
    from kfaas.runtime.app import FunctionApp
    from kfaas.runtime.context import Context

    log = logging.getLogger("kfaas.serve")
    # the request log flushes its lines itself (kfaas.runtime.log): no write per line
    sys.stdout.reconfigure(line_buffering=False)  # type: ignore[union-attr]
    try:
        claim = PortClaim(settings.host, settings.port)
        app = FunctionApp(target, Context(settings))
        if settings.debug:
            log.warning("debug mode: error answers carry their trace; do not use it in production")
        log.info(
            "serving %s (%s) on %s:%d",
            target.name,
            target.kind,
            settings.host,
            settings.port,
            extra={"function": settings.function_name or target.name},
        )
        run_server(
            app,
            settings.host,
            settings.port,
            drain_seconds=settings.drain_seconds,
            claim=claim,
            rsgi=app.rsgi,
        )
    except OSError as exc:
        log.error("cannot serve: %s", exc)
        return 1
    except StartupFailed:
        return 1  # the app logged why ("start-up failed", with the trace)
    return 0


def _malformed_url(settings: Settings) -> str | None:
    """A MONGODB_URL or AMQP_URL that no retry can fix (its scheme is checked by Settings already).

    An unreachable service is not this: the process keeps serving, readiness answers 503 naming the service
    (Knative sends no traffic to the pod meanwhile), and it turns ready as soon as the service answers.
    """
    from kfaas.base.urls import redact

    if settings.mongodb_url.startswith("mongodb://"):  # +srv would need a DNS lookup: left to the driver
        from pymongo.errors import ConfigurationError, InvalidURI
        from pymongo.uri_parser import parse_uri

        try:
            parse_uri(settings.mongodb_url)
        except (InvalidURI, ConfigurationError, ValueError) as exc:
            return f"MONGODB_URL={redact(settings.mongodb_url)!r} is not a valid MongoDB URL: {exc}"
    if settings.amqp_url:
        from yarl import URL

        try:
            url = URL(settings.amqp_url)
            if not url.host or url.port is None:
                raise ValueError("no host")
        except (ValueError, TypeError) as exc:
            return f"AMQP_URL={redact(settings.amqp_url)!r} is not a valid AMQP URL: {exc}"
    return None


def _from_description(settings: Settings) -> Settings:
    """Without FUNCTION_TARGET, take the target (and the signature type of a cloudevent function) from the
    ``function.yaml`` beside the source, so an image built from a function folder needs no other setting."""
    import dataclasses
    from pathlib import Path

    description = Path(settings.source).parent / "function.yaml"
    if not description.is_file():
        return settings
    import yaml

    raw = yaml.safe_load(description.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        return settings
    kind = raw.get("kind")
    if kind not in (None, "http", "cloudevent"):  # a kind another package serves (kfaas.aws: lambda)
        return dataclasses.replace(settings, signature_type=settings.signature_type or str(kind))
    signature = settings.signature_type or ("cloudevent" if kind == "cloudevent" else "")
    return dataclasses.replace(settings, target=str(raw.get("target", "handle")), signature_type=signature)


def _reload(settings: Settings) -> int:
    """``--debug``: run ``kfaas serve`` as a child and start it again when a ``.py`` file in the source's
    folder changes (polled every half second), until SIGTERM or Ctrl-C, which the child gets too."""
    import signal
    import subprocess
    import threading
    import time
    from pathlib import Path

    folder = Path(settings.source).resolve().parent

    def snapshot() -> dict[Path, float]:
        found = {}
        for path in folder.rglob("*.py"):
            try:
                found[path] = path.stat().st_mtime
            except OSError:
                continue
        return found

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    env = {**os.environ, _RELOADED: "1"}
    sys.stderr.write(f"kfaas serve: debug mode, restarting on changes to {folder}/**.py\n")
    while True:
        seen = snapshot()
        child = subprocess.Popen([sys.executable, "-m", "kfaas", *sys.argv[1:]], env=env)  # noqa: S603
        while child.poll() is None and not stopping.is_set() and snapshot() == seen:
            time.sleep(0.5)
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=settings.drain_seconds + 5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if stopping.is_set():
            return 0
        if child.returncode not in (0, -signal.SIGTERM) and snapshot() == seen:
            sys.stderr.write("kfaas serve: the function stopped; waiting for a change to start it again\n")
            while not stopping.is_set() and snapshot() == seen:
                time.sleep(0.5)
            if stopping.is_set():
                return child.returncode or 0
        sys.stderr.write("kfaas serve: a source file changed, restarting\n")
