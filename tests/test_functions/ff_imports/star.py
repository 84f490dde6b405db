"""`from functions_framework import *` gives the names the package itself gives."""

import sys

from functions_framework import *  # noqa: F403


@cloud_event  # noqa: F405
def star(event):
    from cloudevents.http import CloudEvent

    names = sorted(n for n in ("flask", "http", "typed", "create_app", "errorhandler") if n in globals())
    return CloudEvent({"type": "star", "source": "/star"}, {"names": names, "flask": "flask" in sys.modules})
