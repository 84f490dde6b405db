"""The broker part: the dev broker, its sources, ``kfaas dlq`` and the Knative dead-letter sink.

The dev broker gives Knative's RabbitMQ broker semantics on RabbitMQ, for compose and ``kfaas dev``.

It reads the same function descriptions as the renderers and gives them the contract of the
eventing-rabbitmq broker (docs/broker.md says what it does and what it lacks):

- an HTTP ingress (RSGI, and ASGI for embedding) at ``POST /<broker>`` taking CloudEvents in binary,
  structured and batch mode; 202 once RabbitMQ confirmed the publish, 400 JSON naming the problem,
  408/413/431 JSON over the request limits of ``kfaas.base.asgi`` (413 also over RabbitMQ's own
  ``max_message_size``), 503 when RabbitMQ is down;
- per broker a durable headers exchange ``b.<namespace>.<broker>``; per trigger a quorum queue
  ``t.<namespace>.<function>-<trigger>`` bound with the trigger's exact attribute filter, a quorum
  dead-letter queue ``….dlq``, quorum wait queues ``….wait.<ms>ms`` (one per retry delay) and, for
  parallelism 1, a due queue ``….due``;
- delivery per trigger: ``parallelism`` events in flight, ``retry`` with linear or exponential backoff, a
  per-attempt ``timeout``, then the dead-letter queue with ``knativeerrordest``, ``knativeerrorcode`` and
  ``knativeerrordata`` (base64). A retrying event waits in RabbitMQ (a wait queue whose TTL is the delay
  dead-letters it back), with its retry count in the ``x-kfaas-retries`` header: it holds no delivery
  slot, and a broker restart does not start its retries over. Parallelism 1 stays FIFO: the trigger takes
  no next event while its event waits. A message is acked only after its outcome is safe (answered, or its
  copy in a wait queue or its dead letter confirmed);
- a 200 answer carrying a CloudEvent is published back to the same broker;
- sources: queue (RabbitmqSource), ping (PingSource) and bucket (S3 event records from an object store)
  from the descriptions; ``kfaas bucket-source`` runs one bucket source alone (Kubernetes).
- stream sources (a RabbitMQ stream for Kinesis) are not the broker's: each has a consumer of its own,
  :class:`StreamConsumer` (``kfaas stream run``, ``_streams``), that delivers batches to its function in
  offset order and checkpoints in MongoDB; the broker only delivers its feeds to it, as to a subscriber.

Embedding it (what ``kfaas dev`` does)::

    from kfaas.broker import DevBroker
    from kfaas.spec import load_app

    urls = {"notify-email": "http://127.0.0.1:8101/", ...}
    broker = DevBroker(load_app(Path("functions")), amqp_url, resolve_url=urls.__getitem__)
    await broker.start()              # topology, trigger consumers, sources
    app = broker.ingress              # ASGI app: serve it (e.g. kfaas.broker.serve_ingress) on a port
    ...                               # K_SINK of a function = http://127.0.0.1:<port>/default
    await broker.stop()               # in-flight unacked events go back to their queues

``DevBroker(..., namespace="default", clock=SystemClock())``: the namespace is part of the name of every
exchange and trigger queue (tests use a unique one); a queue source's queue keeps its own name, as on
Knative. ``start`` (or ``connect`` first) claims both on RabbitMQ: a second broker in the namespace, or a
second consumer of a source queue, is refused with ``BrokerConflict`` naming the holder (``_claims``); a
RabbitMQ that does not answer gives ``RabbitMQUnreachable`` naming the URL. The clock drives ping schedules
and the queue source's waits (``ManualClock`` in tests); retry waits happen in RabbitMQ.
``await broker.publish("default", event)`` sends an event without HTTP. ``serve_ingress(broker, host,
port)`` serves the ingress with granian in the running loop until cancelled.

Modules: ``_broker`` (topology, trigger dispatch), ``_ingress`` (the HTTP ingress), ``_sources`` (queue, ping
and bucket sources), ``_s3`` (S3 event records → CloudEvents), ``bucketsource`` (``kfaas bucket-source``),
``_streams`` (the stream source), ``stream`` (``kfaas stream``), ``_claims`` (what a broker holds on RabbitMQ,
and who holds it), ``_connect`` (the first connection), ``_names`` (RabbitMQ names and the CloudEvent <-> AMQP
mapping), ``_http`` (the delivery client), ``_clock``, ``_serve``, ``cli`` (``kfaas broker``), ``dlq`` (``kfaas
dlq``), ``deadletters`` (``kfaas dead-letters``).

May import: the shared base, the events part and the spec; never the function runtime.
"""

from __future__ import annotations

from kfaas.base.errors import InvalidEvent
from kfaas.broker._broker import BrokerUnavailable, DevBroker
from kfaas.broker._claims import BrokerConflict
from kfaas.broker._clock import Clock, ManualClock, SystemClock
from kfaas.broker._connect import RabbitMQUnreachable
from kfaas.broker._names import TriggerRef, triggers_of
from kfaas.broker._serve import serve_ingress
from kfaas.broker._streams import StreamConsumer, StreamStopped
from kfaas.events import parse_events

__all__ = [
    "BrokerConflict",
    "BrokerUnavailable",
    "Clock",
    "DevBroker",
    "InvalidEvent",
    "ManualClock",
    "RabbitMQUnreachable",
    "StreamConsumer",
    "StreamStopped",
    "SystemClock",
    "TriggerRef",
    "parse_events",
    "serve_ingress",
    "triggers_of",
]
