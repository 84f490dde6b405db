"""A lambda function's settings at serve time, from its description (``function.yaml``) and the environment.

The function container does not load the description model (pydantic costs more than a cold start may):
the fields it needs are read from the YAML here, with the model's defaults. ``tests/aws`` holds the two to
the same answers on every fixture description.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kfaas.aws.events import Account

__all__ = ["DESCRIPTION_ENV", "ConfigError", "LambdaConfig", "QueueConfig", "RouteConfig", "load_config"]

DESCRIPTION_ENV = "KFAAS_DESCRIPTION"  # the function.yaml to read (default: beside FUNCTION_SOURCE)
_DURATION_UNITS = {"D": 86400.0, "H": 3600.0, "M": 60.0, "S": 1.0}


class ConfigError(ValueError):
    """The description cannot be served as a lambda function; the message says why."""


@dataclass(frozen=True)
class RouteConfig:
    template: str
    methods: frozenset[str]
    api: str  # rest | http


@dataclass(frozen=True)
class QueueConfig:
    name: str  # the source's name: its events' source ends with rabbitmqsources/<function>-<name>#<queue>
    queue: str
    batch_size: int
    batch_window: float  # seconds
    report_failures: bool


@dataclass(frozen=True)
class LambdaConfig:
    name: str
    folder: Path
    handler: str
    runtime: str
    image: str | None
    timeout: float
    memory_mb: int
    concurrency: int
    stage: str
    account: Account
    routes: tuple[RouteConfig, ...] = ()
    queues: Mapping[str, QueueConfig] = field(default_factory=dict)
    pings: frozenset[str] = frozenset()
    streams: Mapping[str, str] = field(default_factory=dict)  # stream source name -> its stream
    reply_type: str | None = None
    reply_source: str | None = None
    runtime_api_port: int = 9001
    version: str = "$LATEST"

    @property
    def in_process(self) -> bool:
        """A python runtime and no image: the handler is called in this process."""
        return self.image is None and self.runtime.startswith("python")

    @property
    def function_arn(self) -> str:
        return self.account.arn("lambda", f"function:{self.name}")

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{self.name}"


def _seconds(text: str) -> float:
    """An ISO 8601 duration as Knative writes them (PT0.5S, PT1M)."""
    import re

    m = re.fullmatch(
        r"P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?", text
    )
    if not m or text in ("P", "PT"):
        raise ConfigError(f"{text!r} is not an ISO 8601 duration such as PT0.5S")
    d, h, mi, s = (float(x) if x else 0.0 for x in m.groups())
    return d * 86400 + h * 3600 + mi * 60 + s


def _timeout(value: object) -> float:
    """Seconds one invocation may take: KFAAS_TIMEOUT as the runtime reads it (greater than 0)."""
    try:
        seconds = float(str(value))
    except ValueError:
        raise ConfigError(f"timeout {value!r} is not a number of seconds") from None
    if seconds <= 0:
        raise ConfigError(f"timeout {value!r} must be greater than 0 (KFAAS_TIMEOUT or the description's)")
    return seconds


def _memory_mb(text: str) -> int:
    if text.endswith("Gi"):
        return int(text[:-2]) * 1024
    if text.endswith("Mi"):
        return int(text[:-2])
    raise ConfigError(f"memory {text!r} is not <n>Mi or <n>Gi")


def description_path(environ: Mapping[str, str], source: str) -> Path:
    given = environ.get(DESCRIPTION_ENV)
    if given:
        return Path(given)
    return Path(source).parent / "function.yaml"


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> LambdaConfig:
    """Read a ``kind: lambda`` description; ``KFAAS_FUNCTION`` names the function when set."""
    import yaml

    env = os.environ if environ is None else environ
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no description (a lambda function is served from its function.yaml; set "
            f"{DESCRIPTION_ENV} to its path)"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict) or raw.get("kind") != "lambda":
        raise ConfigError(f"{path}: not a description of kind 'lambda'")
    return config_from(raw, path.parent, env)


def config_from(raw: Mapping[str, Any], folder: Path, env: Mapping[str, str]) -> LambdaConfig:
    settings = raw.get("lambda") or {}
    name = env.get("KFAAS_FUNCTION") or str(raw.get("name") or folder.resolve().name)
    api_default = str(settings.get("api", "rest"))
    routes = tuple(
        RouteConfig(
            str(r["path"]),
            frozenset(str(m).upper() for m in r.get("methods", ["GET"])),
            str(r.get("api") or api_default),
        )
        for r in raw.get("routes") or []
    )
    queues: dict[str, QueueConfig] = {}
    pings: set[str] = set()
    streams: dict[str, str] = {}
    for source in raw.get("sources") or []:
        if source.get("kind", "queue") == "queue":
            window = source.get("batchWindow")
            queues[str(source["name"])] = QueueConfig(
                name=str(source["name"]),
                queue=str(source["queue"]),
                batch_size=int(source.get("batchSize", 1)),
                batch_window=_seconds(str(window)) if window else 0.0,
                report_failures=bool(source.get("reportBatchItemFailures", False)),
            )
        elif source.get("kind") == "stream":
            streams[str(source["name"])] = str(source["stream"])
        else:
            pings.add(str(source["name"]))
    reply = settings.get("reply") or {}
    image = raw.get("image")
    handler = raw.get("handler")
    runtime = raw.get("runtime")
    if image is None and (not handler or not runtime):
        raise ConfigError("a lambda function needs a handler and a runtime, or an image")
    return LambdaConfig(
        name=name,
        folder=folder,
        handler=str(handler or ""),
        runtime=str(runtime or ""),
        image=str(image) if image else None,
        timeout=_timeout(env.get("KFAAS_TIMEOUT") or raw.get("timeout", 30)),
        memory_mb=_memory_mb(str(raw.get("memory", "256Mi"))),
        concurrency=int(env.get("KFAAS_LAMBDA_CONCURRENCY") or settings.get("concurrency", 1)),
        stage=str(settings.get("stage", "$default")),
        account=Account(
            str(settings.get("region", "us-east-1")), str(settings.get("account", "000000000000"))
        ),
        routes=routes,
        queues=queues,
        pings=frozenset(pings),
        streams=streams,
        reply_type=str(reply["type"]) if reply.get("type") else None,
        reply_source=str(reply["source"]) if reply.get("source") else None,
        runtime_api_port=int(settings.get("runtimeApiPort", 9001)),
    )
