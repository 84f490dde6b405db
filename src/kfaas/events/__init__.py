"""The events part: reading and writing CloudEvents over HTTP, through the cloudevents SDK, and converting
Google Cloud Functions' legacy events to CloudEvents and back.

One reader for every server that takes CloudEvents (the function runtime, the broker ingress, the dead-letter
sink), so all of them refuse the same requests with the same messages.

May import: the shared base (``kfaas.base``). The cloudevents SDK is imported when an event is first read, so
a function container that never sees one does not pay for it.
"""

from kfaas.events._gcf import (
    cloudevent_to_legacy,
    is_legacy_event,
    legacy_context,
    legacy_payload,
    legacy_to_cloudevent,
)
from kfaas.events._http import BATCH, STRUCTURED, content_mode, parse_events, to_binary

__all__ = [
    "BATCH",
    "STRUCTURED",
    "cloudevent_to_legacy",
    "content_mode",
    "is_legacy_event",
    "legacy_context",
    "legacy_payload",
    "legacy_to_cloudevent",
    "parse_events",
    "to_binary",
]
