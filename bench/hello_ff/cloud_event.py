"""The benchmark's functions-framework CloudEvent function: imports `functions_framework` for its decorator
and replies with a CloudEvent, as such code is written. Served by `kfaas serve` and by `functions-framework
--asgi` unchanged (`--target hello`); functions-framework's ASGI mode drops the reply and answers 200 "OK".
"""

import functions_framework
from cloudevents.http import CloudEvent


@functions_framework.cloud_event
def hello(cloud_event: CloudEvent) -> CloudEvent:
    return CloudEvent(
        {"type": "dev.kfaas.bench.greeted", "source": "/bench/hello"}, {"to": cloud_event["source"]}
    )
