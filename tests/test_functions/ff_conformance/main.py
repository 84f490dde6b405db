"""functions-framework code as its conformance suite drives it, one function per signature type.

Each function writes what it was handed to the file ``FF_OUTPUT`` names (the suite's
``function_output.json``): an http function the request body it read, a CloudEvent function the event as
structured JSON, a legacy function ``{"data": ..., "context": ...}``; the typed function echoes its input
under ``payload``. Nothing here knows about kfaas.
"""

import json
import os
import time

import functions_framework
from cloudevents.conversion import to_json


class Echo:
    """A typed function's input and output: any JSON object, with from_dict/to_dict."""

    def __init__(self, data):
        self.data = data

    @staticmethod
    def from_dict(obj):
        return Echo(obj)

    def to_dict(self):
        return self.data


def _write(content):
    with open(os.environ["FF_OUTPUT"], "w") as f:
        f.write(content)


def write_http(request):
    _write(json.dumps(request.json))
    return "OK", 200


def write_legacy_event(data, context):
    _write(
        json.dumps(
            {
                "data": data,
                "context": {
                    "eventId": context.event_id,
                    "timestamp": context.timestamp,
                    "eventType": context.event_type,
                    "resource": context.resource,
                },
            }
        )
    )


def write_cloud_event(cloud_event):
    _write(to_json(cloud_event).decode())


@functions_framework.http
def write_http_declarative(request):
    # every way Flask gives the body, read in the order a function might
    data = request.data
    _write(
        json.dumps(
            {
                "get_json": request.get_json(),
                "json": request.json,
                "data": data.decode(),
                "request": f"{type(request).__module__}.{type(request).__qualname__}",
            }
        )
    )
    return "OK", 200


@functions_framework.cloud_event
def write_cloud_event_declarative(cloud_event):
    _write(to_json(cloud_event).decode())


@functions_framework.http
def write_http_declarative_concurrent(request):
    time.sleep(1)
    return "OK", 200


@functions_framework.cloud_event
def write_cloud_event_concurrent(cloud_event):
    time.sleep(1)


def write_legacy_event_concurrent(data, context):
    time.sleep(1)


@functions_framework.typed(Echo)
def typed_conformance_test(x):
    return Echo({"payload": x.data})


@functions_framework.typed
def typed_annotated(x: Echo):
    return {"builtin": x.data}
