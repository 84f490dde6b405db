"""``kfaas serve``: host one function (the entrypoint of every function container).

Flags and environment variables are functions-framework's: ``--target``/``FUNCTION_TARGET``,
``--source``/``FUNCTION_SOURCE``, ``--signature-type``/``FUNCTION_SIGNATURE_TYPE``, ``--port``/``PORT``,
``--host``/``HOST``. Every other setting comes from the environment (docs/runtime.md).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from kfaas.runtime.settings import Settings, SettingsError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", help="function name in the source (FUNCTION_TARGET)")
    parser.add_argument("--source", help="Python file that defines it (FUNCTION_SOURCE, default main.py)")
    parser.add_argument(
        "--signature-type",
        choices=["http", "cloudevent", "asgi"],
        help="http, cloudevent or asgi (FUNCTION_SIGNATURE_TYPE; default: detected from the decorator)",
    )
    parser.add_argument("--host", help="address to listen on (HOST, default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port to listen on (PORT, default 8080)")
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
        )
        problem = _malformed_url(settings)
        if problem:
            raise SettingsError(problem)
    except SettingsError as exc:
        sys.stderr.write(f"kfaas serve: {exc}\n")
        return 2
    configure_logging(settings.log_level)
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
            target = load_target(settings.source, settings.target, settings.signature_type)
    except LoadError as exc:
        sys.stderr.write(f"kfaas serve: {exc}\n")
        return 2
    if args.dry_run:
        sys.stdout.write(
            f"would serve {target.name} ({settings.signature_type if loader else target.signature_type}) "
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
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    try:
        claim = PortClaim(settings.host, settings.port)
        app = FunctionApp(target, Context(settings))
        log.info(
            "serving %s (%s) on %s:%d",
            target.name,
            target.signature_type,
            settings.host,
            settings.port,
            extra={"function": settings.function_name or target.name},
        )
        run_server(app, settings.host, settings.port, drain_seconds=settings.drain_seconds, claim=claim)
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
