"""Error types whose meaning crosses parts: a function raises them, the runtime, the broker ingress and the
dead-letter sink answer them, the broker's retry policy follows from the status they map to."""

from __future__ import annotations

__all__ = ["AlreadyDone", "InProgress", "InvalidEvent", "ServiceUnavailable"]


class ServiceUnavailable(RuntimeError):
    """A backing service (MongoDB, RabbitMQ, SMTP, the broker) did not answer in time: retry later (503)."""


class InvalidEvent(ValueError):
    """The request is not a valid CloudEvent (400), or a handler refuses an event for good (422).

    A handler raises it for input that can never succeed (a malformed order): the broker does not retry a
    4xx other than 404/409/429 and dead-letters it at once, with this message as the reason.
    """


class AlreadyDone(Exception):
    """The effect guarded by :meth:`kfaas.Context.once` already happened for this key."""


class InProgress(RuntimeError):
    """Another delivery of the same event holds the claim right now: retry later."""
