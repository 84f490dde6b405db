"""Code written for functions-framework, unchanged."""

import functions_framework

RECEIVED = []


@functions_framework.cloud_event
def handle(cloud_event):
    RECEIVED.append(cloud_event["type"])


@functions_framework.cloud_event
async def handle_async(cloud_event):
    RECEIVED.append(("async", cloud_event["id"]))
