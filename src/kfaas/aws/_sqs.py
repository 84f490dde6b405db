"""SQS ``SendMessage``, ``SendMessageBatch`` and ``GetQueueUrl`` -> the RabbitMQ queue of that name.

A queue URL is ``<endpoint>/<account>/<queue name>``; the message goes to the queue through RabbitMQ's
default exchange, persistent, ``mandatory`` (a queue that does not exist is ``QueueDoesNotExist``, nothing is
kept) and answered only once RabbitMQ confirmed it (publisher confirms). The AMQP message: the body as sent,
``message_id`` = the MessageId answered (a queue source makes it the SQS record's ``messageId``), the time
sent, and the message attributes as AMQP headers (name -> string value, or bytes for Binary) with their data
types in the header ``x-sqs-data-types`` (a JSON object). MD5OfMessageBody and MD5OfMessageAttributes are
computed as SQS does (the SDKs check them).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import struct
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kfaas.aws._wire import ApiError

__all__ = ["DATA_TYPES_HEADER", "Queues", "attributes_md5"]

DATA_TYPES_HEADER = "x-sqs-data-types"
MAX_MESSAGE = 256 * 1024  # bytes of one message, body and attributes (SQS's classic limit)
MAX_BATCH = 10
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}(\.fifo)?$")
_ATTRIBUTE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")
_INVALID_CHARS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def attributes_md5(attributes: Mapping[str, Mapping[str, Any]]) -> str | None:
    """MD5OfMessageAttributes as SQS computes it (names sorted; length-prefixed name, type, value)."""
    if not attributes:
        return None
    out = bytearray()

    def put(raw: bytes) -> None:
        out.extend(struct.pack(">I", len(raw)))
        out.extend(raw)

    for name in sorted(attributes):
        attr = attributes[name]
        put(name.encode())
        put(str(attr["DataType"]).encode())
        if attr.get("BinaryValue") is not None:
            out.append(2)
            put(attr["BinaryValue"])
        else:
            out.append(1)
            put(str(attr["StringValue"]).encode())
    return _md5(bytes(out))


def queue_name(url: str) -> str:
    """The queue's name from its URL (``.../<account>/<name>``) or a bare name."""
    name = url.rstrip("/").rsplit("/", 1)[-1]
    if not _QUEUE_NAME.match(name):
        raise ApiError(
            "AWS.SimpleQueueService.NonExistentQueue",
            f"The specified queue does not exist: {url!r} is not a queue URL",
            json_type="com.amazonaws.sqs#QueueDoesNotExist",
        )
    return name


def _invalid(message: str) -> ApiError:
    return ApiError("InvalidParameterValue", message, json_type="com.amazonaws.sqs#InvalidParameterValue")


def message_attributes(raw: Any) -> dict[str, dict[str, Any]]:  # noqa: PLR0912 (one check per rule)
    """Validated attributes, ``{name: {DataType, StringValue | BinaryValue (bytes)}}`` (JSON shape in)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _invalid("MessageAttributes must be a map of names to attribute values")
    if len(raw) > 10:
        raise _invalid(f"Number of message attributes [{len(raw)}] exceeds the allowed maximum [10].")
    out: dict[str, dict[str, Any]] = {}
    for name, value in raw.items():
        if not _ATTRIBUTE_NAME.match(name) or name.startswith(("AWS.", "Amazon.", ".")) or ".." in name:
            raise _invalid(f"Message attribute name '{name}' is invalid.")
        if not isinstance(value, dict):
            raise _invalid(f"The message attribute '{name}' must be an object")
        data_type = value.get("DataType")
        if not isinstance(data_type, str) or data_type.split(".", 1)[0] not in ("String", "Number", "Binary"):
            raise _invalid(
                f"The message attribute '{name}' has an invalid message attribute type, the set of supported type prefixes is Binary, Number, and String."
            )
        if data_type.startswith("Binary"):
            binary = value.get("BinaryValue")
            if isinstance(binary, str):
                try:
                    binary = base64.b64decode(binary, validate=True)
                except binascii.Error:
                    raise _invalid(
                        f"The message attribute '{name}' has a BinaryValue that is not base64"
                    ) from None
            if not isinstance(binary, bytes | bytearray) or not binary:
                raise _invalid(f"The message attribute '{name}' with type 'Binary' must use field 'Binary'.")
            out[name] = {"DataType": data_type, "BinaryValue": bytes(binary)}
        else:
            string = value.get("StringValue")
            if not isinstance(string, str) or not string:
                raise _invalid(
                    f"The message attribute '{name}' must contain non-empty message attribute value for message attribute type '{data_type.split('.', 1)[0]}'."
                )
            if data_type.startswith("Number"):
                try:
                    float(string)
                except ValueError:
                    raise _invalid(
                        f"Can't cast the value of message (user) attribute '{name}' to a number."
                    ) from None
            out[name] = {"DataType": data_type, "StringValue": string}
    return out


def check_body(body: Any, attributes: Mapping[str, Mapping[str, Any]]) -> str:
    if not isinstance(body, str) or not body:
        raise ApiError(
            "MissingParameter",
            "The request must contain the parameter MessageBody.",
            json_type="com.amazonaws.sqs#MissingParameter",
        )
    if _INVALID_CHARS.search(body):
        raise ApiError(
            "InvalidMessageContents",
            "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | "
            "#xE000 to #xFFFD | #x10000 to #x10FFFF",
            json_type="com.amazonaws.sqs#InvalidMessageContents",
        )
    size = len(body.encode())
    for name, attr in attributes.items():
        value = attr.get("BinaryValue") or str(attr.get("StringValue", "")).encode()
        size += len(name.encode()) + len(str(attr["DataType"]).encode()) + len(value)
    if size > MAX_MESSAGE:
        raise _invalid(
            f"One or more parameters are invalid. Reason: Message must be shorter than {MAX_MESSAGE} bytes."
        )
    return body


def check_delay(value: Any) -> None:
    if value in (None, 0, "0"):
        return
    raise _invalid(
        "DelaySeconds is not supported: kfaas's RabbitMQ queues deliver at once (leave it out or set it to 0)"
    )


class Queues:
    """Publishes to RabbitMQ queues with confirms; one robust connection, one confirming channel."""

    def __init__(self, amqp_url: str, *, confirm_timeout: float = 10.0) -> None:
        self.amqp_url = amqp_url
        self.confirm_timeout = confirm_timeout
        self._connection: Any = None
        self._channel: Any = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        import aio_pika

        self._connection = await aio_pika.connect_robust(self.amqp_url, timeout=10)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def _confirming(self) -> Any:
        async with self._lock:
            if self._channel is None or self._channel.is_closed:
                self._channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            return self._channel

    def _unavailable(self, exc: BaseException) -> ApiError:
        return ApiError(
            "ServiceUnavailable",
            f"RabbitMQ did not take the message: {type(exc).__name__}: {exc}",
            status=503,
            json_type="com.amazonaws.sqs#ServiceUnavailable",
            sender=False,
        )

    def _no_queue(self, name: str) -> ApiError:
        return ApiError(
            "AWS.SimpleQueueService.NonExistentQueue",
            f"The specified queue does not exist: there is no RabbitMQ queue {name!r}",
            json_type="com.amazonaws.sqs#QueueDoesNotExist",
        )

    async def exists(self, name: str) -> bool:
        import aio_pika

        if self._connection is None:
            raise self._unavailable(RuntimeError("not connected"))
        try:
            channel = await self._connection.channel()
        except Exception as exc:
            raise self._unavailable(exc) from None
        try:
            await channel.declare_queue(name, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return False
        except Exception as exc:
            raise self._unavailable(exc) from None
        finally:
            if not channel.is_closed:
                await channel.close()
        return True

    async def send(
        self, name: str, body: str, attributes: Mapping[str, Mapping[str, Any]], extra: Mapping[str, str]
    ) -> str:
        """Publish one message and wait for RabbitMQ's confirm; the MessageId."""
        import aio_pika
        from aiormq.exceptions import PublishError

        message_id = str(uuid.uuid4())
        headers: dict[str, Any] = {}
        for attr_name, attr in attributes.items():
            headers[attr_name] = (
                bytearray(attr["BinaryValue"]) if "BinaryValue" in attr else attr["StringValue"]
            )
        if attributes:
            headers[DATA_TYPES_HEADER] = json.dumps({k: v["DataType"] for k, v in attributes.items()})
        headers.update(extra)
        message = aio_pika.Message(
            body.encode(),
            message_id=message_id,
            timestamp=datetime.now(UTC),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers=headers,
        )
        if self._connection is None:
            raise self._unavailable(RuntimeError("not connected"))
        try:
            channel = await self._confirming()
            async with asyncio.timeout(self.confirm_timeout):
                await channel.default_exchange.publish(message, routing_key=name, mandatory=True)
        except PublishError:  # basic.return: no queue of that name (mandatory)
            raise self._no_queue(name) from None
        except aio_pika.exceptions.DeliveryError as exc:  # basic.nack: RabbitMQ did not keep it
            raise self._unavailable(exc) from None
        except TimeoutError as exc:
            raise self._unavailable(exc) from None
        except ApiError:
            raise
        except Exception as exc:
            raise self._unavailable(exc) from None
        return message_id
