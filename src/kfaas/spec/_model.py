"""The typed model of ``function.yaml`` (pydantic): every field, its default and its checks."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DEFAULT_BROKER",
    "DESCRIPTION_FILE",
    "AppSpec",
    "DatabaseAccess",
    "Delivery",
    "Events",
    "FunctionSpec",
    "PingSource",
    "QueueSource",
    "Route",
    "Scaling",
    "SpecError",
    "Trigger",
    "parse_duration",
    "route_conflicts",
]

DEFAULT_BROKER = "default"
DESCRIPTION_FILE = "function.yaml"

_NAME = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"  # a DNS-1035 label: Knative Service names must be one
_DURATION = re.compile(
    r"^P(?!$)(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?=\d)(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_CE_ATTRIBUTE = re.compile(r"^[a-z0-9]{1,20}$")  # CloudEvents attribute names
_PATH_PARAM = re.compile(r"\{[^/{}]*\}")


class SpecError(ValueError):
    """A function description that cannot be used; the message names the file and the field."""


def parse_duration(text: str) -> timedelta:
    """Parse the ISO 8601 durations Knative uses (``PT0.5S``, ``PT10S``, ``P1D``); years/months are refused."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as PT0.5S or PT1M")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])


def _check_duration(value: str | None) -> str | None:
    if value is not None:
        parse_duration(value)
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class Route(_Model):
    """An HTTP route the API gateway sends to this function (the seed's API Gateway event)."""

    path: str = Field(pattern=r"^/", description="Path template, e.g. /users/{id}")
    methods: list[HttpMethod] = Field(default_factory=lambda: list[HttpMethod](["GET"]))


def route_key(path: str) -> str:
    """A path template with its parameter names and trailing slash left out: ``/users/{id}`` and
    ``/users/{userId}/`` are one route to the gateway, which matches a parameter to any segment."""
    return _PATH_PARAM.sub("{}", path.rstrip("/")) or "/"


def route_conflicts(functions: list[FunctionSpec]) -> list[str]:
    """Every method + path template that two http functions declare, naming both (empty: no conflict).

    The gateway answers HEAD for every GET route, so one function's HEAD conflicts with another's GET.
    """
    owners: dict[tuple[str, str], tuple[str, str]] = {}
    clashes: dict[tuple[str, str, str, str], set[str]] = {}
    for fn in functions:
        if fn.kind != "http":
            continue
        for route in fn.routes:
            methods = set(route.methods) | ({"HEAD"} if "GET" in route.methods else set())
            for method in methods:
                first, first_path = owners.setdefault((method, route_key(route.path)), (fn.name, route.path))
                if first != fn.name:
                    clashes.setdefault((first, first_path, fn.name, route.path), set()).add(method)
    messages = []
    for (first, first_path, second, second_path), methods in clashes.items():
        shown = sorted(methods - {"HEAD"} if methods - {"HEAD"} else methods)
        paths = first_path if first_path == second_path else f"{first_path} and {second_path}"
        messages.append(
            f"route {'/'.join(shown)} {paths} is declared by both {first} and {second}: "
            "a method and path template belong to one function"
        )
    return messages


class Delivery(_Model):
    """Knative's delivery spec: retries with backoff, a per-attempt timeout and a dead-letter sink."""

    retry: int = Field(default=3, ge=0, le=100, description="Retries after the first attempt")
    backoff_policy: Literal["linear", "exponential"] = Field(default="exponential", alias="backoffPolicy")
    backoff_delay: Annotated[str, Field(alias="backoffDelay")] = "PT0.5S"
    timeout: str | None = Field(default=None, description="Per-attempt timeout, ISO 8601 (e.g. PT10S)")
    dead_letter: bool = Field(
        default=True,
        alias="deadLetter",
        description="Send events that exhaust their retries to the trigger's dead-letter queue",
    )

    @field_validator("backoff_delay", "timeout")
    @classmethod
    def _durations(cls, value: str | None) -> str | None:
        return _check_duration(value)

    def delay_for(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based), as Knative computes it."""
        base = parse_duration(self.backoff_delay).total_seconds()
        if self.backoff_policy == "linear":
            return base * attempt
        return base * float(2 ** (attempt - 1))

    def timeout_seconds(self) -> float | None:
        return parse_duration(self.timeout).total_seconds() if self.timeout else None


class Trigger(_Model):
    """A broker subscription: events whose attributes equal every ``filter`` entry reach the function."""

    name: str = Field(
        pattern=_NAME, description="Unique within the function; the Trigger is <function>-<name>"
    )
    broker: str = DEFAULT_BROKER
    filter: dict[str, str] = Field(
        default_factory=dict,
        description="Exact match on CloudEvent attributes, ANDed (all the RabbitMQ broker implements)",
    )
    delivery: Delivery = Field(default_factory=Delivery)
    parallelism: int = Field(default=1, ge=1, le=1000, description="Events in flight at once; 1 keeps FIFO")

    @field_validator("filter")
    @classmethod
    def _attributes(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _CE_ATTRIBUTE.match(key):
                raise ValueError(f"filter key {key!r} is not a CloudEvents attribute name ([a-z0-9]{{1,20}})")
        return value


class QueueSource(_Model):
    """RabbitmqSource semantics: each message of an existing queue becomes a CloudEvent sent to the broker.

    A message whose body is a structured CloudEvent keeps its attributes; any other body becomes an event of
    type ``dev.knative.rabbitmq.event``.
    """

    kind: Literal["queue"] = "queue"
    name: str = Field(pattern=_NAME, description="Source name; the RabbitmqSource is <function>-<name>")
    queue: str = Field(min_length=1, description="The queue to consume (declared durable, quorum)")
    broker: str = DEFAULT_BROKER
    parallelism: int = Field(default=1, ge=1, le=1000)
    delivery: Delivery = Field(default_factory=Delivery)


class PingSource(_Model):
    """PingSource semantics: on a cron schedule, send an event of type ``dev.knative.sources.ping``."""

    kind: Literal["ping"] = "ping"
    name: str = Field(pattern=_NAME)
    schedule: str = Field(description="Five-field cron expression, e.g. '0 1 * * *'")
    timezone: str = "UTC"
    data: dict[str, Any] | str | None = None
    content_type: str = Field(default="application/json", alias="contentType")
    broker: str = DEFAULT_BROKER

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        from croniter import croniter

        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a five-field cron expression")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


Source = Annotated[QueueSource | PingSource, Field(discriminator="kind")]


class Scaling(_Model):
    """Knative autoscaling. ``min`` is the seed's provisioned concurrency (0 = scale to zero)."""

    min: int = Field(default=0, ge=0)
    max: int = Field(default=10, ge=0, description="0 means no limit")
    target: int = Field(default=100, ge=1, description="Target concurrent requests per instance")
    retention: str | None = Field(
        default=None, description="scale-to-zero-pod-retention-period, e.g. 5m (Knative duration)"
    )

    @model_validator(mode="after")
    def _bounds(self) -> Scaling:
        if self.max and self.min > self.max:
            raise ValueError(f"scaling.min ({self.min}) is greater than scaling.max ({self.max})")
        return self


class DatabaseAccess(_Model):
    """The seed's IAM policies: which collections this function may read or write."""

    role: Literal["read", "readWrite"] = "read"
    collections: list[str] = Field(min_length=1)


class Events(_Model):
    """Documentation only: the event types a function consumes and emits."""

    consumes: list[str] = Field(default_factory=list)
    emits: list[str] = Field(default_factory=list)


class FunctionSpec(_Model):
    """One function: what ``functions/<name>/function.yaml`` holds."""

    name: str = Field(pattern=_NAME)
    description: str = ""
    kind: Literal["http", "cloudevent"]
    target: str = Field(default="handle", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    source: str = "main.py"
    routes: list[Route] = Field(default_factory=list)
    triggers: list[Trigger] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)
    events: Events = Field(default_factory=Events)
    scaling: Scaling = Field(default_factory=Scaling)
    timeout: int = Field(default=30, ge=1, le=3600, description="Request timeout in seconds")
    memory: str = Field(default="256Mi", pattern=r"^[0-9]+(Mi|Gi)$")
    cpu: str = Field(default="250m", pattern=r"^[0-9]+m?$")
    env: dict[str, str] = Field(default_factory=dict)
    secrets: list[str] = Field(
        default_factory=list, description="Environment variables read from the function's Secret"
    )
    database: DatabaseAccess | None = None
    publishes: bool = Field(default=False, description="Sends events to the broker itself (a SinkBinding)")
    uses: list[Literal["mongodb", "rabbitmq", "smtp"]] = Field(
        default_factory=list, description="Backing services; readiness checks each one"
    )
    path: Path | None = Field(default=None, exclude=True, description="Folder it was read from")

    @model_validator(mode="after")
    def _consistent(self) -> FunctionSpec:
        if self.kind == "cloudevent" and self.routes:
            raise ValueError("routes are for kind 'http'; a cloudevent function is reached through triggers")
        names = [t.name for t in self.triggers] + [s.name for s in self.sources]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"trigger/source names must be unique, repeated: {sorted(dup)}")
        if self.database and "mongodb" not in self.uses:
            raise ValueError("database permissions need 'mongodb' in uses")
        return self

    @property
    def folder(self) -> Path:
        if self.path is None:
            raise SpecError(f"function {self.name!r} was not loaded from a folder")
        return self.path


class AppSpec(_Model):
    """Every function of an application (the folders of ``functions/``), in name order, and its state machines.

    ``statemachines`` holds the descriptions of ``statemachines/`` (kfaas.spec.StateMachineSpec); ``engine`` is
    then the saga engine as a subscriber of the broker (its triggers: task replies and the starts).
    """

    functions: list[FunctionSpec]
    root: Path
    statemachines: list[Any] = Field(default_factory=list)
    engine: FunctionSpec | None = None

    @property
    def subscribers(self) -> list[FunctionSpec]:
        """Everything a broker trigger delivers to: the functions, and the saga engine when there is one."""
        return [*self.functions, self.engine] if self.engine is not None else list(self.functions)

    def get(self, name: str) -> FunctionSpec:
        for fn in self.functions:
            if fn.name == name:
                return fn
        known = ", ".join(f.name for f in self.functions)
        raise SpecError(f"no function named {name!r} (known: {known})")

    @property
    def brokers(self) -> list[str]:
        names = {t.broker for f in self.subscribers for t in f.triggers}
        names |= {s.broker for f in self.functions for s in f.sources}
        return sorted(names)
