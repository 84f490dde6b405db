"""One typed settings object, read once from the environment at start-up.

A frozen dataclass rather than pydantic-settings: importing pydantic-settings costs ~230 ms, more than the
whole cold-start budget of a function container (docs/benchmarks.md). Every field is documented in
docs/runtime.md and has the environment variable named in its metadata.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

from kfaas.base.asgi import BODY_TIMEOUT, MAX_BODY

SignatureType = Literal["http", "cloudevent", "event", "typed", "asgi"]
# The URL schemes each service setting accepts: a URL that can never work stops `kfaas serve` at start
_SCHEMES = {
    "mongodb_url": ("mongodb://", "mongodb+srv://"),
    "amqp_url": ("amqp://", "amqps://"),
    "sink": ("http://", "https://"),
}

__all__ = ["Settings", "SettingsError", "SignatureType"]


class SettingsError(ValueError):
    """An environment variable holds a value kfaas cannot use; the message names it."""


def _env(name: str, help_: str) -> dict[str, str]:
    return {"env": name, "help": help_}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a function container is configured with (the runtime contract)."""

    # Serving (the same variables as functions-framework)
    target: str = field(default="", metadata=_env("FUNCTION_TARGET", "Name of the function in the source"))
    source: str = field(default="main.py", metadata=_env("FUNCTION_SOURCE", "File that defines it"))
    signature_type: str = field(
        default="",
        metadata=_env(
            "FUNCTION_SIGNATURE_TYPE",
            "http | cloudevent | event | typed | asgi, for a function no decorator declares (default: http)",
        ),
    )
    asgi: bool = field(
        default=False,
        metadata=_env(
            "FUNCTION_USE_ASGI", "http functions take a Starlette request (functions-framework's --asgi)"
        ),
    )
    debug: bool = field(
        default=False,
        metadata=_env("DEBUG", "Development mode: DEBUG logs, traces in error answers, reload on change"),
    )
    host: str = field(default="0.0.0.0", metadata=_env("HOST", "Address to listen on"))
    port: int = field(default=8080, metadata=_env("PORT", "Port to listen on"))
    function_name: str = field(default="", metadata=_env("KFAAS_FUNCTION", "Name used in logs and events"))
    drain_seconds: float = field(
        default=20.0, metadata=_env("KFAAS_DRAIN_SECONDS", "Longest wait for in-flight requests on SIGTERM")
    )
    timeout: float = field(
        default=30.0,
        metadata=_env("KFAAS_TIMEOUT", "Seconds one invocation may take (the description's timeout)"),
    )
    threads: int = field(
        default=32,
        metadata=_env(
            "KFAAS_THREADS", "Threads that run synchronous functions (requests they serve at once)"
        ),
    )
    log_level: str = field(default="INFO", metadata=_env("LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR"))
    # Backing services
    mongodb_url: str = field(default="", metadata=_env("MONGODB_URL", "mongodb:// URL; empty = no MongoDB"))
    mongodb_database: str = field(default="kfaas", metadata=_env("MONGODB_DATABASE", "Database name"))
    mongodb_timeout_ms: int = field(
        default=2000, metadata=_env("MONGODB_TIMEOUT_MS", "Server selection / operation timeout")
    )
    amqp_url: str = field(default="", metadata=_env("AMQP_URL", "amqp:// URL; empty = no RabbitMQ"))
    sink: str = field(default="", metadata=_env("K_SINK", "Where ctx.publish sends events (SinkBinding)"))
    smtp_host: str = field(default="", metadata=_env("SMTP_HOST", "SMTP relay host; empty = no email"))
    smtp_port: int = field(default=25, metadata=_env("SMTP_PORT", "SMTP relay port"))
    smtp_username: str = field(default="", metadata=_env("SMTP_USERNAME", "SMTP login (optional)"))
    smtp_password: str = field(default="", repr=False, metadata=_env("SMTP_PASSWORD", "SMTP password"))
    smtp_starttls: bool = field(default=False, metadata=_env("SMTP_STARTTLS", "Upgrade with STARTTLS"))
    mail_from: str = field(
        default="no-reply@kfaas.local", metadata=_env("MAIL_FROM", "Sender address of emails")
    )
    ready_timeout: float = field(
        default=1.0, metadata=_env("KFAAS_READY_TIMEOUT", "Seconds a readiness check may take per service")
    )
    # Request limits (kfaas.base.asgi): answered 413 / 408 with a JSON body
    max_body_bytes: int = field(
        default=MAX_BODY, metadata=_env("KFAAS_MAX_BODY_BYTES", "Largest request body accepted")
    )
    body_timeout: float = field(
        default=BODY_TIMEOUT, metadata=_env("KFAAS_BODY_TIMEOUT", "Seconds a request body may take to arrive")
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every field from ``environ`` (default ``os.environ``); ``overrides`` win (CLI flags)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f.metadata["env"]
            if overrides.get(f.name) is not None:
                raw: Any = overrides[f.name]
            elif name in env:
                raw = env[name]
            else:
                continue
            values[f.name] = _coerce(f.name, name, f.type, raw)
        settings = cls(**values)
        for attr, schemes in _SCHEMES.items():
            url = getattr(settings, attr)
            if url and not url.lower().startswith(schemes):
                from kfaas.base.urls import redact

                name = next(f.metadata["env"] for f in fields(cls) if f.name == attr)
                raise SettingsError(f"{name}={redact(url)!r} does not start with {' or '.join(schemes)}")
        for attr, env_name in (
            ("max_body_bytes", "KFAAS_MAX_BODY_BYTES"),
            ("body_timeout", "KFAAS_BODY_TIMEOUT"),
            ("timeout", "KFAAS_TIMEOUT"),
            ("threads", "KFAAS_THREADS"),
        ):
            if getattr(settings, attr) <= 0:
                raise SettingsError(f"{env_name}={getattr(settings, attr)!r} must be greater than 0")
        if settings.signature_type and settings.signature_type not in get_args(SignatureType):
            # another package may provide it (kfaas.runtime.targets.plugin_loader): asked only then
            from kfaas.runtime.targets import LoadError, plugin_loader

            try:
                plugin_loader(settings.signature_type)
            except LoadError as exc:
                raise SettingsError(f"FUNCTION_SIGNATURE_TYPE={settings.signature_type!r}: {exc}") from None
        return settings

    @staticmethod
    def describe() -> list[tuple[str, str, str]]:
        """(variable, default, help) for every setting, for docs and ``kfaas serve --help``."""
        return [(f.metadata["env"], repr(f.default), f.metadata["help"]) for f in fields(Settings)]


def _coerce(attr: str, env_name: str, type_name: Any, raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        if type_name in ("int", int):
            return int(raw)
        if type_name in ("float", float):
            return float(raw)
        if type_name in ("bool", bool):
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
    except ValueError:
        raise SettingsError(f"{env_name}={raw!r} is not a valid {type_name} (setting {attr})") from None
    return raw
