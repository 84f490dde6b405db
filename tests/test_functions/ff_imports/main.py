"""functions-framework code that uses more of the package than its decorators, and reports what got imported."""

import sys

import functions_framework
from functions_framework import aio as ff_aio


def loaded():
    return sorted(name for name in ("flask", "werkzeug", "starlette") if name in sys.modules)


@functions_framework.cloud_event
def decorators_only(cloud_event):
    """Replies with the heavy modules loaded so far: none, when only the decorators are used."""
    from cloudevents.http import CloudEvent

    return CloudEvent({"type": "loaded", "source": "/ff_imports"}, {"loaded": loaded()})


@functions_framework.cloud_event
def uses_the_package(cloud_event):
    """Names that are not decorators come from the package itself, Flask with them."""
    from cloudevents.http import CloudEvent

    names = {
        "CloudEvent_is_the_sdks": functions_framework.CloudEvent is CloudEvent,
        "has_create_app": callable(functions_framework.create_app),
        "exceptions": functions_framework.exceptions.FunctionsFrameworkException.__name__,
        "aio_create_asgi_app": callable(ff_aio.create_asgi_app),
        "flask_request": functions_framework.flask.Request.__name__,
    }
    return CloudEvent({"type": "names", "source": "/ff_imports"}, {"names": names, "loaded": loaded()})


@ff_aio.cloud_event
async def aio_decorated(cloud_event):
    from cloudevents.http import CloudEvent

    return CloudEvent({"type": "loaded", "source": "/ff_imports"}, {"loaded": loaded()})
