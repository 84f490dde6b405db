"""Google Cloud Functions' legacy ("background") events and CloudEvents, converted both ways.

A legacy event is a JSON object posted as is: its context (``eventId``, ``timestamp``, ``eventType``,
``resource``) either at the top level or under ``context``, its payload under ``data``. A Pub/Sub push
(``{"subscription": ..., "message": {...}}``) is read as the legacy Pub/Sub event it stands for.

The rules are those of the Functions Framework conformance suite's mapping document
(GoogleCloudPlatform/functions-framework-conformance, ``docs/mapping.md``), checked against its event
pairs: the legacy type names the CloudEvent type, the service and resource make the ``source``, and some
services move part of the resource into ``subject`` or reshape the data (Pub/Sub wraps it in ``message``,
Firebase Auth renames two metadata fields, Firebase Realtime Database adds a location from ``domain``).
The reverse direction undoes each of these; a CloudEvent of a type no legacy event has is handed over
with its own attributes (``id``, ``time``, ``type``, ``source``) as the context.
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from typing import Any

from kfaas.base.errors import InvalidEvent
from kfaas.events._http import check_attributes, read_json

__all__ = [
    "cloudevent_to_legacy",
    "is_legacy_event",
    "legacy_context",
    "legacy_payload",
    "legacy_to_cloudevent",
]

_PUBSUB = "pubsub.googleapis.com"
_STORAGE = "storage.googleapis.com"
_FIRESTORE = "firestore.googleapis.com"
_AUTH = "firebaseauth.googleapis.com"
_DATABASE = "firebasedatabase.googleapis.com"
_ANALYTICS = "firebaseanalytics.googleapis.com"
_PUBSUB_MESSAGE = "type.googleapis.com/google.pubsub.v1.PubsubMessage"

# legacy eventType -> CloudEvent type (mapping.md, "GCF HTTP to CloudEvent conversion")
_TO_CE_TYPE = {
    "google.pubsub.topic.publish": "google.cloud.pubsub.topic.v1.messagePublished",
    "providers/cloud.pubsub/eventTypes/topic.publish": "google.cloud.pubsub.topic.v1.messagePublished",
    "google.storage.object.finalize": "google.cloud.storage.object.v1.finalized",
    "google.storage.object.delete": "google.cloud.storage.object.v1.deleted",
    "google.storage.object.archive": "google.cloud.storage.object.v1.archived",
    "google.storage.object.metadataUpdate": "google.cloud.storage.object.v1.metadataUpdated",
    "providers/cloud.firestore/eventTypes/document.write": "google.cloud.firestore.document.v1.written",
    "providers/cloud.firestore/eventTypes/document.create": "google.cloud.firestore.document.v1.created",
    "providers/cloud.firestore/eventTypes/document.update": "google.cloud.firestore.document.v1.updated",
    "providers/cloud.firestore/eventTypes/document.delete": "google.cloud.firestore.document.v1.deleted",
    "providers/firebase.auth/eventTypes/user.create": "google.firebase.auth.user.v1.created",
    "providers/firebase.auth/eventTypes/user.delete": "google.firebase.auth.user.v1.deleted",
    "providers/firebase.remoteConfig/remoteconfig.update": "google.firebase.remoteconfig.remoteConfig.v1.updated",
    "providers/google.firebase.analytics/eventTypes/event.log": "google.firebase.analytics.log.v1.written",
    "providers/google.firebase.database/eventTypes/ref.create": "google.firebase.database.ref.v1.created",
    "providers/google.firebase.database/eventTypes/ref.write": "google.firebase.database.ref.v1.written",
    "providers/google.firebase.database/eventTypes/ref.update": "google.firebase.database.ref.v1.updated",
    "providers/google.firebase.database/eventTypes/ref.delete": "google.firebase.database.ref.v1.deleted",
}
# The other way: the Pub/Sub type has two legacy names, the newer one is given back
_TO_LEGACY_TYPE = {
    ce: legacy
    for legacy, ce in _TO_CE_TYPE.items()
    if legacy != "providers/cloud.pubsub/eventTypes/topic.publish"
}
# a legacy event without context.resource.service: its service by the prefix of its type
_SERVICE_BY_PREFIX = (
    ("providers/cloud.firestore/", _FIRESTORE),
    ("providers/google.firebase.analytics/", _ANALYTICS),
    ("providers/firebase.auth/", _AUTH),
    ("providers/google.firebase.database/", _DATABASE),
    ("providers/cloud.pubsub/", _PUBSUB),
    ("providers/cloud.storage/", _STORAGE),
    ("providers/firebase.remoteConfig/", "firebaseremoteconfig.googleapis.com"),
    ("google.pubsub.", _PUBSUB),
    ("google.storage.", _STORAGE),
)
# services whose resource name is split into the CloudEvent's source and subject
_SPLIT = {
    _STORAGE: re.compile(r"(projects/[^/]+/buckets/[^/]+)/(objects/.+?)(#\d+)?"),
    _FIRESTORE: re.compile(r"(projects/[^/]+/databases/[^/]+)/(documents/.+)"),
    _DATABASE: re.compile(r"projects/_/(instances/[^/]+)/(refs/.+)"),
    _ANALYTICS: re.compile(r"(projects/[^/]+)/(events/[^/]+)"),
}
_AUTH_METADATA = (("createdAt", "createTime"), ("lastSignedInAt", "lastSignInTime"))
_TOPIC = re.compile(r"projects/[^/?]+/topics/[^/?]+")
_SOURCE = re.compile(r"//([^/]+)/(.+)")
_WHERE = "legacy event"


def legacy_payload(headers: dict[str, str], body: bytes) -> Any:
    """The JSON body of a request without CloudEvent headers when it is a legacy event (see
    :func:`is_legacy_event`), else None: such a request is then refused as no CloudEvent at all."""
    if not body or body[:1] not in b"{ \t\r\n":
        return None
    try:
        payload = read_json(body, "legacy event")
    except InvalidEvent:
        return None
    return payload if is_legacy_event(payload) else None


def is_legacy_event(payload: Any) -> bool:
    """Whether a JSON body is meant as a legacy event: it names an ``eventType`` (at the top or in its
    ``context``) or it is a Pub/Sub push. Anything else is not taken for one."""
    if not isinstance(payload, dict):
        return False
    context = payload.get("context")
    return (
        "eventType" in payload or (isinstance(context, dict) and "eventType" in context) or _is_push(payload)
    )


def _is_push(payload: dict[str, Any]) -> bool:
    message = payload.get("message")
    return (
        "context" not in payload
        and "subscription" in payload
        and isinstance(message, dict)
        and "data" in message
        and "messageId" in message
    )


def legacy_context(payload: Any, path: str = "") -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(data, context, the whole payload) of a legacy event body, a Pub/Sub push read as one.

    ``context`` has the four keys a legacy function's context is made of. Raises InvalidEvent naming what
    is missing or of the wrong type.
    """
    if not isinstance(payload, dict):
        raise InvalidEvent(f"{_WHERE}: expected a JSON object")
    if _is_push(payload):
        message = payload["message"]
        topic = _TOPIC.search(path)
        context = {
            "eventId": message["messageId"],
            "timestamp": message.get("publishTime")
            or datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "eventType": "google.pubsub.topic.publish",
            "resource": {
                "service": _PUBSUB,
                "type": _PUBSUB_MESSAGE,
                "name": topic.group(0) if topic else "",
            },
        }
        data = {
            "@type": _PUBSUB_MESSAGE,
            "data": message["data"],
            "attributes": message.get("attributes", {}),
        }
        return data, context, payload
    raw = payload.get("context") or {
        key: payload.get(key, "") for key in ("eventId", "timestamp", "eventType", "resource")
    }
    if not isinstance(raw, dict):
        raise InvalidEvent(f"{_WHERE}: 'context' must be a JSON object")
    context = {key: raw.get(key, "") for key in ("eventId", "timestamp", "eventType", "resource")}
    for key in ("eventId", "timestamp", "eventType"):
        if not isinstance(context[key], str):
            raise InvalidEvent(f"{_WHERE}: '{key}' must be a string")
    if not isinstance(context["resource"], str | dict):
        raise InvalidEvent(f"{_WHERE}: 'resource' must be a string or an object")
    return payload.get("data", ""), context, payload


def legacy_to_cloudevent(payload: Any, path: str = "") -> Any:
    """The CloudEvent (the SDK's ``cloudevents.http.CloudEvent``) a legacy event body stands for.

    ``path`` is the request path: a Pub/Sub push names its topic there. Raises InvalidEvent when the body
    is not a legacy event or names a type or resource the mapping does not know.
    """
    from cloudevents.http import CloudEvent

    data, context, whole = legacy_context(payload, path)
    data = copy.deepcopy(data)  # reshaped below; the caller's body stays as it came
    legacy_type = context["eventType"]
    if not legacy_type:
        raise InvalidEvent(f"{_WHERE}: missing 'eventType'")
    if not context["eventId"]:
        raise InvalidEvent(f"{_WHERE}: missing 'eventId'")
    ce_type = _TO_CE_TYPE.get(legacy_type)
    if ce_type is None:
        raise InvalidEvent(f"{_WHERE}: no CloudEvent type is known for eventType {legacy_type[:128]!r}")
    service, resource, subject = _split(context, legacy_type)

    if service == _PUBSUB and isinstance(data, dict):
        data.setdefault("messageId", context["eventId"])
        data.setdefault("publishTime", context["timestamp"])
        data = {"message": data}
    elif service == _AUTH and isinstance(data, dict):
        _rename(data.get("metadata"), _AUTH_METADATA)
        if "uid" in data:
            subject = f"users/{data['uid']}"
    elif service == _DATABASE:
        domain = whole.get("domain")
        if not isinstance(domain, str) or not domain:
            raise InvalidEvent(f"{_WHERE}: a Firebase Realtime Database event needs a 'domain'")
        location = "us-central1" if domain == "firebaseio.com" else domain.split(".", 1)[0]
        resource = f"projects/_/locations/{location}/{resource}"
    elif service == _ANALYTICS:
        app = _path(data, "userDim", "appInfo", "appId")
        if not isinstance(app, str) or not app:
            raise InvalidEvent(f"{_WHERE}: a Firebase Analytics event needs data.userDim.appInfo.appId")
        resource = f"{resource}/apps/{app}"

    attributes = {
        "specversion": "1.0",
        "id": context["eventId"],
        "source": f"//{service}/{resource}",
        "type": ce_type,
        "datacontenttype": "application/json",
    }
    if context["timestamp"]:
        attributes["time"] = context["timestamp"]
    if subject:
        attributes["subject"] = subject
    check_attributes(attributes, _WHERE)
    return CloudEvent(attributes, data)


def _split(context: dict[str, Any], legacy_type: str) -> tuple[str, str, str]:
    """(service, resource, subject) of a legacy event's resource."""
    resource = context["resource"]
    service = ""
    if isinstance(resource, dict):
        service = resource.get("service") or ""
        name = resource.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidEvent(f"{_WHERE}: 'resource' has no 'name'")
        if not isinstance(service, str):
            raise InvalidEvent(f"{_WHERE}: 'resource.service' must be a string")
    else:
        name = resource
        if not name:
            raise InvalidEvent(f"{_WHERE}: missing 'resource'")
    if not service:
        service = next((s for prefix, s in _SERVICE_BY_PREFIX if legacy_type.startswith(prefix)), "")
        if not service:
            raise InvalidEvent(f"{_WHERE}: no service is known for eventType {legacy_type[:128]!r}")
    pattern = _SPLIT.get(service)
    if pattern is None:
        return service, name, ""
    match = pattern.fullmatch(name)
    if match is None:
        raise InvalidEvent(f"{_WHERE}: resource {name[:128]!r} is not of the form a {service} event has")
    return service, match.group(1), match.group(2)


def cloudevent_to_legacy(event: Any) -> tuple[Any, dict[str, Any]]:
    """(data, context) a legacy function ``(data, context)`` is handed for a CloudEvent.

    ``context`` has ``eventId``, ``timestamp``, ``eventType`` and ``resource``. A CloudEvent of one of the
    mapped types gets the legacy type and resource back; any other keeps its own type and source.
    """
    data = copy.deepcopy(event.get_data())
    ce_type = event["type"]
    legacy_type = _TO_LEGACY_TYPE.get(ce_type)
    context: dict[str, Any] = {
        "eventId": event["id"],
        "timestamp": event.get("time") or "",
        "eventType": legacy_type or ce_type,
        "resource": event["source"],
    }
    if legacy_type is None:
        return data, context
    match = _SOURCE.fullmatch(event["source"])
    if match is None:
        raise InvalidEvent(
            f"CloudEvent of type {ce_type!r}: source {event['source'][:128]!r} is not //<service>/<resource>, "
            "which a legacy function needs"
        )
    service, name = match.groups()
    subject = event.get("subject")
    if service == _PUBSUB:
        if isinstance(data, dict):
            data = data.get("message", data)
            if isinstance(data, dict):
                data.pop("messageId", None)
                data.pop("publishTime", None)
        context["resource"] = {"service": service, "name": name, "type": _PUBSUB_MESSAGE}
    elif service == _AUTH:
        if isinstance(data, dict):
            _rename(data.get("metadata"), [(new, old) for old, new in _AUTH_METADATA])
        context["resource"] = name
    elif service == _STORAGE:
        kind = data.get("kind") if isinstance(data, dict) else None
        context["resource"] = {
            "name": _join(name, subject),
            "service": service,
            "type": kind or "storage#object",
        }
    elif service == _DATABASE:
        context["resource"] = _join(re.sub(r"/locations/[^/]+", "", name, count=1), subject)
    elif service == _ANALYTICS:
        context["resource"] = _join(re.sub(r"/apps/[^/]+$", "", name), subject)
    else:
        context["resource"] = _join(name, subject)
    return data, context


def _join(name: str, subject: Any) -> str:
    return f"{name}/{subject}" if subject else name


def _rename(mapping: Any, pairs: Any) -> None:
    if isinstance(mapping, dict):
        for old, new in pairs:
            if old in mapping:
                mapping[new] = mapping.pop(old)


def _path(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data
