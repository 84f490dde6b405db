"""S3 event notification records (the JSON an S3-compatible store publishes) → CloudEvents of a bucket source.

Store-agnostic: it reads the record format AWS documents (``Records[].s3.bucket.name``,
``Records[].s3.object.key``, ``eventName`` with or without the ``s3:`` prefix), which versitygw, MinIO and AWS
itself send. Stores differ in the key: AWS and MinIO URL-encode it (spaces as ``+``), versitygw v1.8.0 sends
it as stored, so the source's ``keyEncoding`` says which. Fields a store adds beyond AWS's (MinIO's
``contentType``) are kept when present. The bucket ARN is never read: versitygw's is malformed
(``arn:aws:s3:::/<bucket>/<key>``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from cloudevents.http import CloudEvent

from kfaas.spec import BUCKET_EVENT_TYPES, BucketSource

__all__ = ["BadRecord", "Notification", "bucket_event", "parse_notification", "source_uri"]

_KINDS = {"ObjectCreated": "created", "ObjectRemoved": "removed"}


class BadRecord(ValueError):
    """A message that is not an S3 event notification, or a record missing what an event needs."""


@dataclass(frozen=True)
class Notification:
    """One message of the store: its records, or none for a test event (``s3:TestEvent``)."""

    records: list[dict[str, Any]]
    test_event: bool = False


def parse_notification(body: bytes) -> Notification:
    """The records of one message; :class:`BadRecord` names what is wrong with it."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRecord(f"not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise BadRecord(f"not an S3 event notification: a JSON {type(parsed).__name__}, not an object")
    if parsed.get("Event") == "s3:TestEvent":  # sent once when notifications are switched on
        return Notification([], test_event=True)
    records = parsed.get("Records")
    if not isinstance(records, list) or not records:
        raise BadRecord("not an S3 event notification: no Records list")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise BadRecord(f"Records[{index}] is not an object")
    return Notification(records)


def _text(record: dict[str, Any], index: int, *path: str) -> str:
    value: Any = record
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    if not isinstance(value, str) or not value:
        raise BadRecord(f"Records[{index}].{'.'.join(path)} is missing or not a string")
    return value


def source_uri(bucket: str) -> str:
    """The ``source`` attribute of every event about ``bucket`` (the same in every namespace)."""
    return f"/kfaas/buckets/{bucket}"


def bucket_event(record: dict[str, Any], index: int, spec: BucketSource) -> CloudEvent | None:
    """The CloudEvent of one record, or None when the source's filters leave it out.

    Raises :class:`BadRecord` for a record without a bucket name, key, event name or time. The id is a
    digest of what identifies the change (bucket, key, event name, sequencer or ETag, time), so a
    notification sent twice gives the same id twice.
    """
    name = _text(record, index, "eventName").removeprefix("s3:")
    bucket = _text(record, index, "s3", "bucket", "name")
    raw_key = _text(record, index, "s3", "object", "key")
    when = _text(record, index, "eventTime")
    kind = _KINDS.get(name.split(":", 1)[0])
    if kind is None or kind not in spec.events or bucket != spec.bucket:
        return None
    key = unquote_plus(raw_key) if spec.key_encoding == "url" else raw_key
    if not key.startswith(spec.prefix) or not key.endswith(spec.suffix):
        return None
    obj = record["s3"]["object"]
    size = obj.get("size")
    etag = obj.get("eTag") or obj.get("etag")
    data: dict[str, Any] = {
        "bucket": bucket,
        "key": key,
        "size": size if isinstance(size, int) else None,
        "etag": str(etag).strip('"') if etag else None,
        "contentType": obj.get("contentType") if isinstance(obj.get("contentType"), str) else None,
        "time": when,
        "eventName": name,
    }
    for field in ("versionId", "sequencer"):
        if isinstance(obj.get(field), str) and obj[field]:
            data[field] = obj[field]
    if isinstance(record.get("awsRegion"), str):
        data["region"] = record["awsRegion"]
    identity = "\x00".join([bucket, key, name, str(obj.get("sequencer") or data["etag"] or ""), when])
    attributes = {
        "type": BUCKET_EVENT_TYPES[kind],
        "source": source_uri(bucket),
        "id": hashlib.sha256(identity.encode()).hexdigest()[:32],
        "subject": key,
        "time": when,
        "datacontenttype": "application/json",
        "bucket": bucket,
    }
    return CloudEvent(attributes, json.dumps(data).encode())
