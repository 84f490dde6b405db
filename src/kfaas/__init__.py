"""kfaas: portable serverless functions in Python — CloudEvents over HTTP on Knative, RabbitMQ and MongoDB.

The public surface is small on purpose::

    import kfaas

    @kfaas.cloud_event
    async def handle(event, ctx: kfaas.Context): ...

Heavier pieces (the description model, the dev broker, renderers) live in their own modules and are
imported only by the commands that need them, so a function container starts fast.
"""

from kfaas.base.errors import (
    AlreadyDone,
    ConfigurationError,
    InProgress,
    InvalidEvent,
    KfaasError,
    ServiceUnavailable,
)
from kfaas.base.version import __version__
from kfaas.runtime.context import Claim, Context
from kfaas.runtime.settings import Settings
from kfaas.runtime.targets import cloud_event, http

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kfaas.runtime.outbox import OutboxMessage


def __getattr__(name: str) -> object:
    # imported on first use: a function that sends no outbox message does not pay for it at start-up
    if name == "OutboxMessage":
        from kfaas.runtime.outbox import OutboxMessage

        return OutboxMessage
    raise AttributeError(f"module 'kfaas' has no attribute {name!r}")


__all__ = [
    "AlreadyDone",
    "Claim",
    "ConfigurationError",
    "Context",
    "InProgress",
    "InvalidEvent",
    "KfaasError",
    "OutboxMessage",
    "ServiceUnavailable",
    "Settings",
    "__version__",
    "cloud_event",
    "http",
]
