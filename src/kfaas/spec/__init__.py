"""The spec part: the function description (``functions/<name>/function.yaml``), its loading and its schema.

Everything kfaas knows about a function comes from here: how to serve it, which HTTP routes the gateway
sends to it, which broker events reach it (triggers with an exact attribute filter and a delivery spec),
which sources feed the broker (a RabbitMQ queue, a cron schedule), how it scales, its resources, settings
and database permissions; and the state machines (``statemachines/<name>/statemachine.yaml``: the definition
file, the events that start an execution, its limits). ``docker-compose.yml``, ``k8s/`` and the chart's values are rendered from these
descriptions, and the dev broker and ``kfaas dev`` read them too, so nothing is written twice by hand.

- ``_model``: the typed model (pydantic); ``_load``: reading one folder or a whole ``functions/`` tree;
- ``_statemachine``: state machine descriptions, their definitions (ASL or a SAM template) and Resources;
- ``schema``: the ``kfaas schema`` command (the JSON schema of the file);
- ``options``: the command-line options shared by every command that reads the descriptions.

May import: the shared base (``kfaas.base``) only. Imported by the broker, the gateway, the renderers and
``kfaas dev``; never by the function runtime (a function container does not pay for pydantic).
"""

from kfaas.spec._load import json_schema, load_app, load_function
from kfaas.spec._model import (
    BUCKET_EVENT_TYPES,
    DEFAULT_BROKER,
    DESCRIPTION_FILE,
    PING_EVENT_TYPE,
    QUEUE_EVENT_TYPE,
    S3_EVENTS_EXCHANGE,
    STREAM_CHECKPOINTS,
    AppSpec,
    BucketSource,
    DatabaseAccess,
    Delivery,
    Events,
    FunctionSpec,
    Index,
    Lambda,
    PingSource,
    QueueSource,
    Reply,
    Route,
    Scaling,
    SpecError,
    StreamSource,
    Trigger,
    parse_duration,
    route_conflicts,
    stream_consumer,
)
from kfaas.spec._statemachine import (
    ENGINE,
    ERROR_EVENT,
    HEARTBEAT_EVENT,
    REQUEST_EVENT,
    RESULT_EVENT,
    STATEMACHINE_FILE,
    ExecutionLimits,
    Start,
    StateMachineSpec,
    function_name,
    load_statemachine,
    task_functions,
)

__all__ = [
    "BUCKET_EVENT_TYPES",
    "DEFAULT_BROKER",
    "DESCRIPTION_FILE",
    "ENGINE",
    "ERROR_EVENT",
    "HEARTBEAT_EVENT",
    "PING_EVENT_TYPE",
    "QUEUE_EVENT_TYPE",
    "REQUEST_EVENT",
    "RESULT_EVENT",
    "S3_EVENTS_EXCHANGE",
    "STATEMACHINE_FILE",
    "STREAM_CHECKPOINTS",
    "AppSpec",
    "BucketSource",
    "DatabaseAccess",
    "Delivery",
    "Events",
    "ExecutionLimits",
    "FunctionSpec",
    "Index",
    "Lambda",
    "PingSource",
    "QueueSource",
    "Reply",
    "Route",
    "Scaling",
    "SpecError",
    "Start",
    "StateMachineSpec",
    "StreamSource",
    "Trigger",
    "function_name",
    "json_schema",
    "load_app",
    "load_function",
    "load_statemachine",
    "parse_duration",
    "route_conflicts",
    "stream_consumer",
    "task_functions",
]
