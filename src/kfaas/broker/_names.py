"""Names of the RabbitMQ objects of the dev broker and the mapping between CloudEvents and AMQP messages.

Names follow eventing-rabbitmq's scheme (``b.<namespace>.<broker>`` for a broker's exchange,
``t.<namespace>.<trigger>`` for a trigger's queue) without the Kubernetes UID suffix, since there is no
cluster here: the same description always gives the same names, so queues survive a restart of the broker.

An event travels through RabbitMQ in binary content mode, as eventing-rabbitmq's messages do: every
CloudEvents attribute is an AMQP header ``ce-<name>``, ``datacontenttype`` is the AMQP content type and the
body is the event's data. The broker exchange is a headers exchange, so a trigger's exact attribute filter is
a binding with ``x-match: all`` — RabbitMQ does the filtering.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent, from_http

from kfaas.spec import AppSpec, Delivery, FunctionSpec, Trigger

__all__ = [
    "ERROR_CODE",
    "ERROR_DATA",
    "ERROR_DEST",
    "ERROR_EXTENSIONS",
    "PREFIX",
    "QUORUM",
    "RETRIES",
    "BrokerUnavailable",
    "TriggerRef",
    "amqp_headers_to_http",
    "broker_exchange",
    "event_from_amqp",
    "event_to_amqp",
    "triggers_of",
]

PREFIX = "ce-"
QUORUM: dict[str, Any] = {
    "x-queue-type": "quorum"
}  # every queue of the broker (and its dead letters) is a quorum queue


RETRIES = "x-kfaas-retries"  # AMQP header: retries an event has had so far (absent = first delivery)
# headers RabbitMQ adds when it dead-letters or redelivers a message: not copied into a message we publish
_RABBITMQ_HEADERS = ("x-death", "x-first-death-", "x-last-death-", "x-delivery-count")


def own_headers(headers: dict[str, Any] | None) -> dict[str, Any]:
    """A message's headers without RabbitMQ's dead-letter and delivery bookkeeping and without RETRIES."""
    return {k: v for k, v in (headers or {}).items() if k != RETRIES and not k.startswith(_RABBITMQ_HEADERS)}


def wait_arguments(ttl_ms: int, target: str) -> dict[str, Any]:
    """A wait queue: every message stays ``ttl_ms``, then RabbitMQ dead-letters it to the queue ``target``.

    One queue per delay, because RabbitMQ expires messages only at the head of a queue: with one TTL per
    queue the head is always the first to expire. At-least-once dead-lettering (RabbitMQ 3.10+, quorum
    queues, with reject-publish overflow) keeps a message until the target queue has confirmed it.
    """
    return {
        **QUORUM,
        "x-message-ttl": ttl_ms,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": target,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


class BrokerUnavailable(RuntimeError):
    """RabbitMQ did not confirm a publish in time (the ingress answers 503)."""


def connection_ready(connection: Any, stopping: bool = False) -> bool:
    """A robust aio-pika connection that is up right now (false while it reconnects or once stopping)."""
    return (
        connection is not None and not connection.is_closed and connection.connected.is_set() and not stopping
    )


ERROR_DEST = "knativeerrordest"
ERROR_CODE = "knativeerrorcode"
ERROR_DATA = "knativeerrordata"
ERROR_EXTENSIONS = (ERROR_DEST, ERROR_CODE, ERROR_DATA)
ERROR_DATA_MAX = 1024  # bytes of the response body kept (Knative's KnativeErrorDataExtensionMaxLength)


def broker_exchange(namespace: str, broker: str) -> str:
    return f"b.{namespace}.{broker}"


@dataclass(frozen=True)
class TriggerRef:
    """One trigger of one function, with the names of its RabbitMQ objects."""

    function: FunctionSpec
    trigger: Trigger
    namespace: str

    @property
    def name(self) -> str:
        """The Knative Trigger's name: ``<function>-<trigger>``."""
        return f"{self.function.name}-{self.trigger.name}"

    @property
    def exchange(self) -> str:
        return broker_exchange(self.namespace, self.trigger.broker)

    @property
    def queue(self) -> str:
        return f"t.{self.namespace}.{self.name}"

    @property
    def dead_letter_queue(self) -> str:
        return f"t.{self.namespace}.{self.name}.dlq"

    @property
    def fifo(self) -> bool:
        """Parallelism 1: events reach the function in the order they arrived, retries included."""
        return self.trigger.parallelism == 1

    @property
    def due_queue(self) -> str:
        """Where a FIFO trigger's retrying event returns after its wait (the trigger waits for it)."""
        return f"t.{self.namespace}.{self.name}.due"

    def wait_ms(self, retry: int) -> int:
        """The wait before retry number ``retry`` (1-based), in whole milliseconds."""
        return round(self.delivery.delay_for(retry) * 1000)

    def wait_queue(self, ms: int) -> str:
        """The queue where retrying events wait ``ms`` milliseconds."""
        return f"t.{self.namespace}.{self.name}.wait.{ms}ms"

    @property
    def wait_queues(self) -> dict[str, int]:
        """Every wait queue the trigger's delivery policy uses, with its delay in milliseconds."""
        delays = sorted({self.wait_ms(n) for n in range(1, self.delivery.retry + 1)})
        return {self.wait_queue(ms): ms for ms in delays}

    @property
    def retry_target(self) -> str:
        """Where a wait queue sends an event back: the due queue (FIFO) or the trigger's own queue."""
        return self.due_queue if self.fifo else self.queue

    @property
    def queues(self) -> list[str]:
        """Every queue of the trigger: its own, the wait queues, the due queue (FIFO), the dead letters."""
        names = [self.queue, *self.wait_queues]
        if self.fifo:
            names.append(self.due_queue)
        return [*names, self.dead_letter_queue]

    @property
    def delivery(self) -> Delivery:
        return self.trigger.delivery

    @property
    def binding_arguments(self) -> dict[str, Any]:
        return {"x-match": "all", **{PREFIX + k: v for k, v in self.trigger.filter.items()}}

    @property
    def attempt_timeout(self) -> float:
        """Seconds one delivery attempt may take: the trigger's ``timeout``, else the function's."""
        return self.delivery.timeout_seconds() or float(self.function.timeout)


def triggers_of(app: AppSpec, namespace: str) -> list[TriggerRef]:
    return [TriggerRef(fn, t, namespace) for fn in app.subscribers for t in fn.triggers]


def event_to_amqp(event: CloudEvent) -> tuple[dict[str, Any], str | None, bytes]:
    """(headers, content type, body) of an event in binary content mode, written by the SDK."""
    http_headers, body = to_binary(event)
    content_type = None
    headers: dict[str, Any] = {}
    for key, value in http_headers.items():
        low = key.lower()
        if low == "content-type":
            content_type = value
        else:
            headers[low] = value
    return headers, content_type, body if isinstance(body, bytes) else str(body).encode()


def amqp_headers_to_http(headers: dict[str, Any] | None, content_type: str | None) -> dict[str, str]:
    """HTTP headers of the binary-mode request for an event stored as AMQP headers."""
    out = {
        k: v.decode() if isinstance(v, bytes) else str(v)
        for k, v in (headers or {}).items()
        if k.startswith(PREFIX)
    }
    if content_type:
        out["content-type"] = content_type
    return out


def event_from_amqp(headers: dict[str, Any] | None, content_type: str | None, body: bytes) -> CloudEvent:
    """The event of a binary-mode AMQP message, read by the SDK."""
    return from_http(amqp_headers_to_http(headers, content_type), body)


def error_data(body: bytes) -> str:
    """``knativeerrordata``: the start of the subscriber's answer, base64 as Knative sends it."""
    return base64.b64encode(body[:ERROR_DATA_MAX]).decode()
