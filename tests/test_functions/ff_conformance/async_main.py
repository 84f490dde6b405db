"""functions-framework code for its ASGI mode (``functions_framework.aio``), as its conformance suite drives it.

Like ``main.py`` beside it: each function writes what it was handed to the file ``FF_OUTPUT`` names.
"""

import asyncio
import json
import os

import functions_framework.aio
from cloudevents.conversion import to_json


def _write(content):
    with open(os.environ["FF_OUTPUT"], "w") as f:
        f.write(content)


async def write_http(request):
    _write(json.dumps(await request.json()))
    return "OK", 200


async def write_cloud_event(cloud_event):
    _write(to_json(cloud_event).decode())


@functions_framework.aio.http
async def write_http_declarative(request):
    _write(json.dumps({"json": await request.json(), "request": type(request).__module__}))
    return "OK", 200


@functions_framework.aio.cloud_event
async def write_cloud_event_declarative(cloud_event):
    _write(to_json(cloud_event).decode())


@functions_framework.aio.http
async def write_http_declarative_concurrent(request):
    await asyncio.sleep(1)
    return "OK", 200
