"""Error types whose meaning crosses parts: a function raises them, the runtime, the broker ingress and the
dead-letter sink answer them, the broker's retry policy follows from the status they map to.

Every one of them derives from :class:`KfaasError`. Their messages are written for the caller: when a
function fails with one, the answer (and so a dead letter's ``knativeerrordata``) carries the message;
any other exception is reported by its type only, its message and trace staying in the log.
"""

from __future__ import annotations

__all__ = [
    "AlreadyDone",
    "ConfigurationError",
    "InProgress",
    "InvalidEvent",
    "KfaasError",
    "ServiceUnavailable",
    "public_message",
]

MESSAGE_MAX = 500  # characters of a kfaas error's message an answer carries


class KfaasError(Exception):
    """The base of kfaas's error types: a message meant for whoever reads the answer or the dead letter."""


class ServiceUnavailable(KfaasError, RuntimeError):
    """A backing service (MongoDB, RabbitMQ, SMTP, the broker) did not answer in time: retry later (503)."""


class InvalidEvent(KfaasError, ValueError):
    """The request is not a valid CloudEvent (400), or a handler refuses an event for good (422).

    A handler raises it for input that can never succeed (a malformed order): the broker does not retry a
    4xx other than 404/409/429 and dead-letters it at once, with this message as the reason.
    """


class AlreadyDone(KfaasError):
    """The effect guarded by :meth:`kfaas.Context.once` already happened for this key."""


class InProgress(KfaasError, RuntimeError):
    """Another delivery of the same event holds the claim right now: retry later."""


class ConfigurationError(KfaasError, RuntimeError):
    """The function asked for something its settings do not provide (no ``MONGODB_URL``, no ``K_SINK``...)."""


def public_message(exc: BaseException) -> str:
    """What an answer may say about ``exc``: a kfaas error's type and message, any other exception's type.

    A message of a kfaas error is written for the caller; any other exception's message may hold data or
    internals (a query, a path, a secret), so it stays in the log, with the trace.
    """
    name = type(exc).__name__
    if isinstance(exc, KfaasError):
        text = " ".join(str(exc).split())  # one line: no trace or multi-line dump reaches the caller
        if len(text) > MESSAGE_MAX:
            text = text[: MESSAGE_MAX - 1] + "…"
        return (
            f"the function failed ({name}: {text}); see its log" if text else f"the function failed ({name})"
        )
    return f"the function failed ({name}); see its log"
