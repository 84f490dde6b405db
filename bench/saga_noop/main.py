"""A no-op task function for bench/saga.py: returns its input."""

import kfaas


@kfaas.cloud_event
def handle(event):
    return event.data
