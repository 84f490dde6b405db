"""The events part: reading and writing CloudEvents over HTTP, through the cloudevents SDK.

One reader for every server that takes CloudEvents (the function runtime, the broker ingress, the dead-letter
sink), so all of them refuse the same requests with the same messages.

May import: the shared base (``kfaas.base``). The cloudevents SDK is imported when an event is first read, so
a function container that never sees one does not pay for it.
"""

from kfaas.events._http import BATCH, STRUCTURED, parse_events, to_binary

__all__ = ["BATCH", "STRUCTURED", "parse_events", "to_binary"]
