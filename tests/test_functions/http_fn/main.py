"""HTTP functions returning each of functions-framework's reply shapes."""

import kfaas


@kfaas.http
async def text(request):
    return f"hello {request.query_params.get('name', 'world')}"


@kfaas.http
def created(request, ctx):
    return {"settings_port": ctx.settings.port}, 201, {"X-Kind": "tuple"}


@kfaas.http
def fail(request):
    raise ValueError("secret internal detail")
