"""functions-framework's ASGI-mode decorators, unchanged."""

from functions_framework import aio


@aio.http
async def hello(request):
    name = request.query_params.get("name", "world")
    return {"hello": name}


@aio.cloud_event
async def event(cloud_event):
    return None
