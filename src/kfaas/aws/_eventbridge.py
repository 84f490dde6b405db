"""EventBridge ``PutEvents`` -> CloudEvents POSTed to the broker's ingress, one per entry.

An entry becomes an event with ``type`` = DetailType, ``source`` = Source, ``data`` = Detail (JSON),
``id`` = the EventId answered, ``time`` = Time (or now), ``subject`` = the first of Resources (what
``kfaas.aws.events.eventbridge_event`` reads back as ``resources``). The bus is the broker: ``default`` (or no
EventBusName) is the broker URL configured, another name (or an event-bus ARN) the broker of that name beside
it. The ingress is the broker's external contract (the dev broker, or a Knative broker), so this works the
same on both. Each entry is answered as AWS does: ``{"EventId"}`` once the broker accepted it, else
``{"ErrorCode", "ErrorMessage"}``, with ``FailedEntryCount``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from kfaas.aws._wire import ApiError

__all__ = ["MAX_ENTRIES", "EventBus"]

MAX_ENTRIES = 10
MAX_SIZE = 256 * 1024  # bytes of all entries of one request (EventBridge's limit)


def _entry_size(entry: dict[str, Any]) -> int:
    """An entry's size as EventBridge counts it: Source, DetailType, Detail, Resources, and 14 for Time."""
    size = 14 if entry.get("Time") is not None else 0
    for key in ("Source", "DetailType", "Detail"):
        if isinstance(entry.get(key), str):
            size += len(entry[key].encode())
    for resource in entry.get("Resources") or []:
        if isinstance(resource, str):
            size += len(resource.encode())
    return size


def _bus_name(value: Any) -> str:
    if value is None or value == "":
        return "default"
    if not isinstance(value, str):
        raise ValueError("EventBusName must be a string")
    name = value.rsplit(":event-bus/", 1)[-1] if value.startswith("arn:") else value
    if not name or "/" in name:
        raise ValueError(f"EventBusName {value!r} is not a bus name or an event-bus ARN")
    return name


def _time(value: Any) -> str:
    if value is None:
        return datetime.now(UTC).isoformat()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).isoformat()
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).isoformat()
    raise ValueError("Time must be a timestamp")


class EventBus:
    """Sends PutEvents entries to broker ingresses: ``broker_url`` is the default bus's."""

    def __init__(self, broker_url: str, *, timeout: float = 10.0) -> None:
        self.broker_url = broker_url.rstrip("/")
        self.timeout = timeout
        self._client: Any = None

    def url(self, bus: str) -> str:
        if bus == "default":
            return self.broker_url
        return self.broker_url.rsplit("/", 1)[0] + "/" + bus

    async def start(self) -> None:
        import httpx

        self._client = httpx.AsyncClient(timeout=self.timeout, trust_env=False)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def put_events(self, body: dict[str, Any]) -> dict[str, Any]:
        entries = body.get("Entries")
        if not isinstance(entries, list) or not entries:
            raise ApiError(
                "ValidationException",
                "1 validation error detected: Value null at 'entries' failed to satisfy constraint: "
                "Member must not be null",
            )
        if len(entries) > MAX_ENTRIES:
            raise ApiError(
                "ValidationException",
                f"1 validation error detected: Value '{len(entries)} entries' at 'entries' failed to satisfy "
                f"constraint: Member must have length less than or equal to {MAX_ENTRIES}",
            )
        if not all(isinstance(e, dict) for e in entries):
            raise ApiError("ValidationException", "every member of Entries must be an object")
        if sum(_entry_size(e) for e in entries) > MAX_SIZE:
            raise ApiError(
                "ValidationException", "Total size of the entries in the request is over the limit."
            )
        results = await asyncio.gather(*(self._put(e) for e in entries))
        return {"FailedEntryCount": sum(1 for r in results if "ErrorCode" in r), "Entries": list(results)}

    async def _put(self, entry: dict[str, Any]) -> dict[str, Any]:  # noqa: PLR0911 (one answer per failure)
        from cloudevents.http import CloudEvent

        from kfaas.events import to_binary

        def failed(code: str, message: str) -> dict[str, Any]:
            return {"ErrorCode": code, "ErrorMessage": message}

        for key in ("Source", "DetailType", "Detail"):
            value = entry.get(key)
            if not isinstance(value, str) or not value:
                return failed(
                    "InvalidArgument", f"Parameter {key} is not valid. Reason: {key} is a required argument."
                )
        try:
            detail = json.loads(entry["Detail"])
        except ValueError:
            return failed("MalformedDetail", "Detail is malformed.")
        if not isinstance(detail, dict):
            return failed("MalformedDetail", "Detail is malformed.")
        try:
            bus = _bus_name(entry.get("EventBusName"))
            when = _time(entry.get("Time"))
        except ValueError as exc:
            return failed("InvalidArgument", str(exc))
        resources = entry.get("Resources") or []
        if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
            return failed("InvalidArgument", "Parameter Resources is not valid. Reason: a list of strings.")
        event_id = str(uuid.uuid4())
        attributes = {
            "id": event_id,
            "type": entry["DetailType"],
            "source": entry["Source"],
            "time": when,
            "datacontenttype": "application/json",
        }
        if resources:
            attributes["subject"] = resources[0]
        headers, data = to_binary(CloudEvent(attributes, detail))
        assert self._client is not None, "EventBus.start() first"
        url = self.url(bus)
        try:
            answer = await self._client.post(url, headers=headers, content=data)
        except Exception as exc:  # transport errors: the broker is unreachable
            return failed("InternalFailure", f"the broker at {url} did not answer: {type(exc).__name__}")
        if answer.status_code in (200, 202):
            return {"EventId": event_id}
        if answer.status_code == 404:
            return failed("ResourceNotFoundException", f"Event bus {bus} does not exist.")
        if answer.status_code >= 500:
            return failed("InternalFailure", f"the broker answered {answer.status_code}: {answer.text[:200]}")
        return failed(
            "InvalidArgument", f"the broker refused the event ({answer.status_code}): {answer.text[:200]}"
        )
