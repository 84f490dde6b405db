"""The typed model of ``function.yaml`` (pydantic): every field, its default and its checks."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

__all__ = [
    "BUCKET_EVENT_TYPES",
    "DEFAULT_BROKER",
    "DESCRIPTION_FILE",
    "PING_EVENT_TYPE",
    "QUEUE_EVENT_TYPE",
    "STREAM_CHECKPOINTS",
    "AppSpec",
    "BucketSource",
    "DatabaseAccess",
    "Delivery",
    "Events",
    "FunctionSpec",
    "Index",
    "Lambda",
    "PingSource",
    "QueueSource",
    "Reply",
    "Route",
    "Scaling",
    "SpecError",
    "StreamSource",
    "Trigger",
    "parse_duration",
    "route_conflicts",
    "stream_consumer",
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
QUEUE_EVENT_TYPE = "dev.knative.rabbitmq.event"  # what RabbitmqSource (and the dev broker) sends
PING_EVENT_TYPE = "dev.knative.sources.ping"  # what PingSource sends
# what a bucket source sends, per kind of object change (the S3 event names ObjectCreated:*, ObjectRemoved:*)
BUCKET_EVENT_TYPES = {
    "created": "com.amazonaws.s3.ObjectCreated",
    "removed": "com.amazonaws.s3.ObjectRemoved",
}
S3_EVENTS_EXCHANGE = "kfaas.s3-events"  # where the object store publishes its S3 event records


class SpecError(ValueError):
    """A function description that cannot be used; the message names the file and the field."""


_Described = TypeVar("_Described", bound=BaseModel)


def validate_description(model: type[_Described], raw: Any, folder: Path, file: Path) -> _Described:
    """Validate a description file's content as ``model``; the folder gives the name and the path.

    Errors name the file and every field in trouble; a ``name`` other than the folder's is refused.
    """
    if not isinstance(raw, dict):
        raise SpecError(f"{file}: expected a mapping at the top level")
    raw.setdefault("name", folder.name)
    try:
        spec = model.model_validate({**raw, "path": folder})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise SpecError(f"{file}: {problems}") from None
    name = getattr(spec, "name", folder.name)
    if name != folder.name:
        raise SpecError(f"{file}: name {name!r} differs from its folder {folder.name!r}")
    return spec


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

    path: str = Field(
        pattern=r"^/", description="Path template, e.g. /users/{id} (a {name+} segment is greedy)"
    )
    methods: list[HttpMethod] = Field(default_factory=lambda: list[HttpMethod](["GET"]))
    api: Literal["rest", "http"] | None = Field(
        default=None,
        description="kind lambda only: the API Gateway event the handler gets, 'rest' (a REST API, payload "
        "1.0: SAM's Api event) or 'http' (an HTTP API, payload 2.0: SAM's HttpApi event); default lambda.api",
    )


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
        if not fn.serves_http:
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
    """Knative's delivery spec: retries with backoff, a per-attempt timeout and a dead-letter sink.

    The defaults (8 retries, exponential from 0.5 s: 127.5 s of waits) outlast an outage of MongoDB or
    RabbitMQ of a minute and more, and a ``ctx.once`` claim left by a function killed mid-delivery (its
    lease is the function's timeout), before anything is dead-lettered.
    """

    retry: int = Field(default=8, ge=0, le=100, description="Retries after the first attempt")
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

    def retry_window(self) -> float:
        """Seconds from a first failure to the last retry when every attempt fails at once: the longest
        outage this policy outlasts without a dead letter."""
        return sum(self.delay_for(n) for n in range(1, self.retry + 1))


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
    # made from a source of a lambda function, not written in the description: not in the schema or dumps
    derived: SkipJsonSchema[bool] = Field(default=False, exclude=True)

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
    # kind lambda only (SAM's SQS event): how the queue's messages are handed over as SQS records
    batch_size: int = Field(
        default=1,
        ge=1,
        le=1000,
        alias="batchSize",
        description="kind lambda: most SQS records in one invocation (SAM BatchSize)",
    )
    batch_window: str | None = Field(
        default=None,
        alias="batchWindow",
        description="kind lambda: longest wait for a batch to fill, ISO 8601 (SAM "
        "MaximumBatchingWindowInSeconds; default: no wait beyond the records already there)",
    )
    report_batch_item_failures: bool = Field(
        default=False,
        alias="reportBatchItemFailures",
        description="kind lambda: honour a partial batch response, {batchItemFailures: [...]} (SAM "
        "FunctionResponseTypes: [ReportBatchItemFailures]); off, as on AWS: the batch succeeds or fails whole",
    )

    @field_validator("batch_window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        return _check_duration(value)


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


class BucketSource(_Model):
    """S3 event notifications: each record the object store publishes to RabbitMQ about ``bucket`` becomes
    a CloudEvent of type ``com.amazonaws.s3.ObjectCreated`` (or ``...ObjectRemoved``) on the broker.

    The store publishes every record to the exchange ``exchange`` (docs/object-storage.md); the source
    filters by bucket, event kind, prefix and suffix itself, since a store's notifications may be
    server-wide.
    """

    kind: Literal["bucket"] = "bucket"
    name: str = Field(pattern=_NAME, description="Source name; its queue is bucket.<function>-<name>")
    bucket: str = Field(
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", description="The bucket whose changes are sent"
    )
    events: list[Literal["created", "removed"]] = Field(
        default_factory=lambda: list[Literal["created", "removed"]](["created"]),
        min_length=1,
        description="Which changes: created (s3:ObjectCreated:*), removed (s3:ObjectRemoved:*)",
    )
    prefix: str = Field(default="", description="Only keys starting with this (S3's prefix filter rule)")
    suffix: str = Field(default="", description="Only keys ending with this (S3's suffix filter rule)")
    key_encoding: Literal["none", "url"] = Field(
        default="none",
        alias="keyEncoding",
        description="How the store writes s3.object.key: none (as stored: versitygw) or url (URL-encoded, "
        "spaces as '+': AWS and MinIO); the events carry the decoded key either way",
    )
    exchange: str = Field(
        default=S3_EVENTS_EXCHANGE,
        min_length=1,
        description="The RabbitMQ exchange (fanout) the object store publishes its event records to",
    )
    broker: str = DEFAULT_BROKER
    parallelism: int = Field(default=1, ge=1, le=1000)
    delivery: Delivery = Field(default_factory=Delivery)

    @property
    def types(self) -> list[str]:
        return [BUCKET_EVENT_TYPES[e] for e in self.events]


class StreamSource(_Model):
    """A RabbitMQ stream (the seed's Kinesis stream): its records reach this function directly, in offset
    order, in batches, from one consumer per stream that checkpoints in MongoDB (docs/streams.md)."""

    kind: Literal["stream"] = "stream"
    name: str = Field(pattern=_NAME, description="Source name; the consumer is <function>-<name>")
    stream: str = Field(min_length=1, max_length=200, description="The stream (x-queue-type: stream)")
    feed: list[dict[str, str]] = Field(
        default_factory=list,
        description="Append the broker's events matching any of these exact attribute filters to the stream "
        "(one trigger each, whose subscriber is the stream consumer); without feeds, producers append to the "
        "stream themselves",
    )
    broker: str = DEFAULT_BROKER
    partition_key: str = Field(
        default="partitionkey",
        alias="partitionKey",
        pattern=r"^[a-z0-9]{1,20}$",
        description="The CloudEvent attribute holding a record's key (the CloudEvents partitioning extension)",
    )
    batch_size: int = Field(default=100, ge=1, le=10000, alias="batchSize", description="Kinesis BatchSize")
    batch_window: str | None = Field(
        default=None,
        alias="batchWindow",
        description="Longest wait for a batch to fill, ISO 8601 (Kinesis MaximumBatchingWindowInSeconds)",
    )
    starting_position: Literal["TRIM_HORIZON", "LATEST"] = Field(
        default="TRIM_HORIZON",
        alias="startingPosition",
        description="Where a consumer without a checkpoint starts: the oldest record, or the next one",
    )
    maximum_retry_attempts: int = Field(
        default=3,
        ge=-1,
        le=10000,
        alias="maximumRetryAttempts",
        description="Retries of a failing batch before onFailure (-1: until it succeeds, as on AWS)",
    )
    bisect_batch_on_function_error: bool = Field(
        default=False,
        alias="bisectBatchOnFunctionError",
        description="Split a failing batch in two and retry each half, down to the failing record",
    )
    on_failure: Literal["destination", "stop"] = Field(
        default="destination",
        alias="onFailure",
        description="After the retries: 'destination' sends the records to the source's dead-letter queue "
        "(DestinationConfig.OnFailure) and moves on; 'stop' halts the stream at them",
    )
    backoff_delay: str = Field(
        default="PT0.5S", alias="backoffDelay", description="First retry wait, doubled"
    )
    max_age: str = Field(
        default="P7D", alias="maxAge", description="Retention of the stream (x-max-age), ISO 8601"
    )

    @field_validator("batch_window", "backoff_delay", "max_age")
    @classmethod
    def _durations(cls, value: str | None) -> str | None:
        return _check_duration(value)

    @field_validator("feed")
    @classmethod
    def _feed(cls, value: list[dict[str, str]]) -> list[dict[str, str]]:
        for i, attributes in enumerate(value):
            if not attributes:
                raise ValueError(f"feed[{i}] is empty: a filter without attributes would take every event")
            for key in attributes:
                if not _CE_ATTRIBUTE.match(key):
                    raise ValueError(
                        f"feed key {key!r} is not a CloudEvents attribute name ([a-z0-9]{{1,20}})"
                    )
        return value


STREAM_CHECKPOINTS = "kfaas_stream_checkpoints"  # the collection of the stream consumers' checkpoints


def stream_consumer(fn: FunctionSpec, source: StreamSource) -> FunctionSpec:
    """The consumer of a stream source as a subscriber of its own (like the saga engine): named
    ``<function>-<source>``, one trigger per feed filter, its own MongoDB user for the checkpoints."""
    name = f"{fn.name}-{source.name}"
    if not re.match(_NAME, name):
        raise ValueError(f"stream source {source.name!r}: the consumer name {name!r} is over 63 characters")
    triggers = [
        Trigger(
            name="feed" if len(source.feed) == 1 else f"feed{i + 1}",
            broker=source.broker,
            filter=attributes,
            parallelism=1,  # the broker's order is the stream's order
        )
        for i, attributes in enumerate(source.feed)
    ]
    return FunctionSpec(
        name=name,
        description=f"The consumer of the stream {source.stream!r} for {fn.name}",
        kind="cloudevent",
        triggers=triggers,
        uses=["mongodb", "rabbitmq"],
        database=DatabaseAccess(role="readWrite", collections=[STREAM_CHECKPOINTS]),
        timeout=fn.timeout,
    )


Source = Annotated[QueueSource | PingSource | BucketSource | StreamSource, Field(discriminator="kind")]


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


class Index(_Model):
    """A unique index of one collection (a DynamoDB table's key schema: its partition and sort keys)."""

    collection: str = Field(min_length=1)
    keys: list[str] = Field(min_length=1, description="The fields, in order (ascending)")


class DatabaseAccess(_Model):
    """The seed's IAM policies: which collections this function may read or write."""

    role: Literal["read", "readWrite"] = "read"
    collections: list[str] = Field(min_length=1)
    indexes: list[Index] = Field(
        default_factory=list,
        description="Unique indexes created with the database users (compose, k8s, the chart): a DynamoDB "
        "table's key schema",
    )

    @model_validator(mode="after")
    def _indexed_collections(self) -> DatabaseAccess:
        stray = sorted({i.collection for i in self.indexes} - set(self.collections))
        if stray:
            raise ValueError(f"indexes on {', '.join(stray)}: not among the collections {self.collections}")
        return self


class Events(_Model):
    """Documentation only: the event types a function consumes and emits."""

    consumes: list[str] = Field(default_factory=list)
    emits: list[str] = Field(default_factory=list)


class Reply(_Model):
    """kind lambda: the handler's return value for an event becomes a reply CloudEvent (SAM's OnSuccess
    destination to EventBridge); the broker publishes it."""

    type: str = Field(
        min_length=1, description="CloudEvent type of the reply (no trigger of this function's)"
    )
    source: str | None = Field(default=None, description="CloudEvent source (default /kfaas/<function>)")


class Lambda(_Model):
    """How a ``kind: lambda`` function is hosted: AWS Lambda's model, under kfaas (docs/migrating-from-aws.md)."""

    api: Literal["rest", "http"] = Field(
        default="rest", description="The API Gateway event of its routes: rest (payload 1.0) or http (2.0)"
    )
    stage: str = Field(default="$default", min_length=1, description="requestContext.stage of API events")
    concurrency: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Invocations at once per instance: for a runtime client (bootstrap, image), the number "
        "of runtime processes; Knative's containerConcurrency follows from it",
    )
    region: str = Field(default="us-east-1", description="The region in ARNs and AWS_REGION")
    account: str = Field(default="000000000000", pattern=r"^[0-9]{12}$", description="The account in ARNs")
    reply: Reply | None = None
    runtime_api_port: int = Field(
        default=9001,
        ge=1024,
        le=65535,
        alias="runtimeApiPort",
        description="image: the port of the Runtime API the image's runtime client connects to",
    )


def _bucket_triggers(source: dict[str, Any]) -> list[dict[str, Any]]:
    """The derived triggers of a lambda function's bucket source: ``<name>`` for its first kind of change,
    ``<name>-<kind>`` for a second, each filtering on the type and the ``bucket`` extension."""
    kinds = source.get("events") or ["created"]
    out = []
    for index, kind in enumerate(kinds if isinstance(kinds, list) else []):
        if kind not in BUCKET_EVENT_TYPES:
            continue  # the source's own validation names it
        trigger: dict[str, Any] = {
            "name": source.get("name") if index == 0 else f"{source.get('name')}-{kind}",
            "filter": {"type": BUCKET_EVENT_TYPES[kind], "bucket": source.get("bucket")},
            "derived": True,
            "parallelism": source.get("parallelism", 1),
        }
        if source.get("broker"):
            trigger["broker"] = source["broker"]
        if source.get("delivery") is not None:
            trigger["delivery"] = source["delivery"]
        out.append(trigger)
    return out


class FunctionSpec(_Model):
    """One function: what ``functions/<name>/function.yaml`` holds."""

    name: str = Field(pattern=_NAME)
    description: str = ""
    kind: Literal["http", "cloudevent", "lambda"]
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
    uses: list[Literal["mongodb", "rabbitmq", "smtp", "s3"]] = Field(
        default_factory=list,
        description="Backing services; readiness checks each of mongodb, rabbitmq and smtp; s3 gives the "
        "function the object store's S3_ENDPOINT_URL and credentials (AWS_ACCESS_KEY_ID, ...)",
    )
    # kind lambda (SAM's AWS::Serverless::Function): the handler, its runtime, or a Lambda container image
    handler: str | None = Field(
        default=None,
        description="kind lambda: SAM's Handler: module.function for python runtimes (app.lambda_handler), "
        "the executable for others (bootstrap)",
    )
    runtime: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9.]*$",
        description="kind lambda: SAM's Runtime: python3.x runs the handler in kfaas's process; "
        "provided.al2023, provided.al2 and the others run it through the Lambda Runtime API",
    )
    image: str | None = Field(
        default=None,
        min_length=1,
        description="kind lambda: a Lambda container image (SAM PackageType Image), run unchanged beside a "
        "kfaas container serving the Runtime API",
    )
    lambda_: Lambda = Field(default_factory=Lambda, alias="lambda")
    path: Path | None = Field(default=None, exclude=True, description="Folder it was read from")

    @model_validator(mode="before")
    @classmethod
    def _lambda_triggers(cls, data: Any) -> Any:
        """A lambda function's queue and ping sources feed it (SAM's SQS and Schedule events): each gets a
        trigger of the same name unless one is written. They filter on the type only: the source attribute
        names the namespace, which differs per install; the function takes only its own sources' events."""
        if not isinstance(data, dict) or data.get("kind") != "lambda":
            return data
        triggers = list(data.get("triggers") or [])
        named = {t.get("name") for t in triggers if isinstance(t, dict)}
        for source in data.get("sources") or []:
            if not isinstance(source, dict) or source.get("name") in named:
                continue
            kind = source.get("kind", "queue")
            if kind == "bucket":  # SAM's S3 event: one trigger per kind of change, on this bucket only
                triggers += _bucket_triggers(source)
                continue
            if kind == "stream":  # a stream source delivers to its function itself, not through a trigger
                continue
            trigger: dict[str, Any] = {
                "name": source.get("name"),
                "filter": {"type": QUEUE_EVENT_TYPE if kind == "queue" else PING_EVENT_TYPE},
                "derived": True,
            }
            if source.get("broker"):
                trigger["broker"] = source["broker"]
            if kind == "queue":
                if source.get("delivery") is not None:
                    trigger["delivery"] = source["delivery"]
                # a batch forms from events in flight together: the trigger delivers that many at once
                size = source.get("batchSize", source.get("batch_size", 1))
                parallelism = source.get("parallelism", 1)
                if isinstance(size, int) and isinstance(parallelism, int):
                    trigger["parallelism"] = max(size, parallelism)
            triggers.append(trigger)
        # the derived ones are rebuilt from the sources on every read: they are neither written nor doubled
        return {**data, "triggers": triggers}

    @model_validator(mode="after")
    def _consistent(self) -> FunctionSpec:
        if self.kind == "cloudevent" and self.routes:
            raise ValueError("routes are for kind 'http'; a cloudevent function is reached through triggers")
        self._check_lambda()
        names = [t.name for t in self.triggers] + [s.name for s in self.sources]
        if self.kind == "lambda":  # a lambda's source and the trigger that hands it over share its name
            names = [t.name for t in self.triggers] + [
                s.name for s in self.sources if s.name not in {t.name for t in self.triggers}
            ]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"trigger/source names must be unique, repeated: {sorted(dup)}")
        if self.database and "mongodb" not in self.uses:
            raise ValueError("database permissions need 'mongodb' in uses")
        return self

    def _check_lambda(self) -> None:
        lambda_only = [
            name
            for name, value in (("handler", self.handler), ("runtime", self.runtime), ("image", self.image))
            if value is not None
        ]
        if self.kind != "lambda":
            if lambda_only:
                raise ValueError(f"{', '.join(lambda_only)}: only for kind 'lambda'")
            if any(r.api for r in self.routes):
                raise ValueError("routes[].api is only for kind 'lambda'")
            if "lambda" in self.model_fields_set or "lambda_" in self.model_fields_set:
                raise ValueError("lambda: only for kind 'lambda'")
            return
        if self.image is None and not self.handler:
            raise ValueError("kind 'lambda' needs a handler (SAM's Handler) or an image")
        if self.image is None and not self.runtime:
            raise ValueError(
                "kind 'lambda' with a handler needs a runtime (SAM's Runtime: python3.12, provided.al2023, ...)"
            )
        if self.image is not None and self.runtime and self.runtime.startswith("python"):
            raise ValueError("an image brings its own runtime: leave runtime out")
        if self.image is not None and self.lambda_.concurrency > 1:
            raise ValueError(
                "lambda.concurrency: a Lambda image runs one runtime client per instance; scale out with scaling.max"
            )

    @property
    def serves_http(self) -> bool:
        """The gateway routes requests to it: an http function, or a lambda function with routes."""
        return self.kind == "http" or (self.kind == "lambda" and bool(self.routes))

    @property
    def lambda_in_process(self) -> bool:
        """A python runtime without an image: the handler runs inside kfaas's own process."""
        return self.kind == "lambda" and self.image is None and (self.runtime or "").startswith("python")

    @property
    def lambda_image(self) -> bool:
        """A Lambda container image, run as its own container beside kfaas's (Runtime API over localhost)."""
        return self.kind == "lambda" and self.image is not None

    @property
    def container_concurrency(self) -> int | None:
        """Knative's containerConcurrency: what a lambda function's instance takes at once (None: no limit).

        One invocation per runtime process, and a batch of SQS records is made of that many deliveries
        held together, so: concurrency x the largest batch size.
        """
        if self.kind != "lambda" or self.lambda_in_process:
            return None
        batch = max([s.batch_size for s in self.sources if isinstance(s, QueueSource)] or [1])
        return self.lambda_.concurrency * batch

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
        """Everything a broker trigger delivers to: the functions, the saga engine when there is one, and the
        consumers of stream sources (their feeds)."""
        engine = [self.engine] if self.engine is not None else []
        return [*self.functions, *engine, *(c for c, _, _ in self.streams)]

    @property
    def streams(self) -> list[tuple[FunctionSpec, FunctionSpec, StreamSource]]:
        """Every stream source: (its consumer, the function it feeds, the source)."""
        return [
            (stream_consumer(fn, s), fn, s)
            for fn in self.functions
            for s in fn.sources
            if isinstance(s, StreamSource)
        ]

    def stream(self, name: str) -> tuple[FunctionSpec, FunctionSpec, StreamSource]:
        """The stream source whose consumer is ``name`` (``<function>-<source>``); SpecError naming the known."""
        for found in self.streams:
            if found[0].name == name:
                return found
        known = ", ".join(c.name for c, _, _ in self.streams) or "none"
        raise SpecError(f"no stream source {name!r} (known: {known})")

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
