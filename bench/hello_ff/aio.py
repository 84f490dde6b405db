"""The benchmark's functions-framework ASGI-mode function: `functions_framework.aio.cloud_event` on a
coroutine that replies with a CloudEvent. Served by `kfaas serve` and `functions-framework --asgi`."""

import functions_framework.aio
from cloudevents.http import CloudEvent


@functions_framework.aio.cloud_event
async def hello(cloud_event: CloudEvent) -> CloudEvent:
    return CloudEvent(
        {"type": "dev.kfaas.bench.greeted", "source": "/bench/hello"}, {"to": cloud_event["source"]}
    )
