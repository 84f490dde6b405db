"""SES ``SendEmail`` / ``SendRawEmail`` (v1) and SESv2 ``SendEmail`` -> the SMTP relay.

The relay is the one the functions use (``SMTP_HOST``, ``SMTP_PORT``, ``SMTP_USERNAME``, ``SMTP_PASSWORD``,
``SMTP_STARTTLS``). A simple message becomes a MIME message (text, HTML, or both as
``multipart/alternative``) From the Source, To/Cc as headers, Bcc only in the envelope; a raw message is sent
as it is, to its Destinations (or the To/Cc/Bcc of its headers), its Bcc header removed. The MessageId
answered is also the email's ``Message-ID``. A relay that refuses a recipient or the sender answers
``MessageRejected``; a relay that does not answer, ``ServiceUnavailable`` (503, retried by the SDKs).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import smtplib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from typing import Any

from kfaas.aws._wire import ApiError

__all__ = ["Mailer", "SimpleEmail", "SmtpSettings", "address_list"]

MAX_RAW = 10 * 1024 * 1024  # bytes of one message (SES's limit)
MAX_RECIPIENTS = 50


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 25
    username: str = ""
    password: str = ""
    starttls: bool = False

    @classmethod
    def from_env(cls, env: dict[str, str]) -> SmtpSettings:
        try:
            port = int(env.get("SMTP_PORT") or 25)
        except ValueError:
            raise ValueError(f"SMTP_PORT={env.get('SMTP_PORT')!r} is not a port number") from None
        return cls(
            env.get("SMTP_HOST", ""),
            port,
            env.get("SMTP_USERNAME", ""),
            env.get("SMTP_PASSWORD", ""),
            env.get("SMTP_STARTTLS", "").lower() in ("1", "true", "yes"),
        )


@dataclass
class SimpleEmail:
    source: str
    to: list[str]
    cc: list[str]
    bcc: list[str]
    reply_to: list[str]
    subject: str
    text: str | None
    html: str | None
    headers: list[tuple[str, str]]


def _rejected(message: str) -> ApiError:
    return ApiError("MessageRejected", message)


def _address(value: str, what: str) -> str:
    _, addr = parseaddr(value)
    if not addr or "@" not in addr or addr.startswith("@") or addr.endswith("@"):
        raise ApiError("InvalidParameterValue", f"Illegal address in {what}: {value!r}")
    return value


def _envelope_address(value: str) -> str:
    return parseaddr(value)[1]


def _message_id() -> str:
    return f"{uuid.uuid4().hex}-{uuid.uuid4().hex[:12]}-000000"


class Mailer:
    """Sends through the SMTP relay, one connection per message, in a worker thread (smtplib)."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def build(self, mail: SimpleEmail, message_id: str) -> EmailMessage:
        message = EmailMessage(policy=email.policy.SMTP)
        message["From"] = _address(mail.source, "Source")
        if mail.to:
            message["To"] = ", ".join(_address(a, "ToAddresses") for a in mail.to)
        if mail.cc:
            message["Cc"] = ", ".join(_address(a, "CcAddresses") for a in mail.cc)
        for a in mail.bcc:
            _address(a, "BccAddresses")
        if mail.reply_to:
            message["Reply-To"] = ", ".join(_address(a, "ReplyToAddresses") for a in mail.reply_to)
        message["Subject"] = mail.subject
        message["Message-ID"] = f"<{message_id}@email.kfaas.local>"
        for name, value in mail.headers:
            message[name] = value
        if mail.text is None and mail.html is None:
            raise ApiError("InvalidParameterValue", "The message has no body: give Body.Text or Body.Html")
        if mail.text is not None:
            message.set_content(mail.text)
            if mail.html is not None:
                message.add_alternative(mail.html, subtype="html")
        else:
            message.set_content(mail.html or "", subtype="html")
        return message

    async def send_simple(self, mail: SimpleEmail) -> str:
        recipients = [*mail.to, *mail.cc, *mail.bcc]
        if not recipients:
            raise ApiError("InvalidParameterValue", "Missing final '@domain': the message has no recipients")
        if len(recipients) > MAX_RECIPIENTS:
            raise _rejected(f"Recipient count exceeds {MAX_RECIPIENTS}.")
        message_id = _message_id()
        message = self.build(mail, message_id)
        await self._send(
            _envelope_address(mail.source), [_envelope_address(a) for a in recipients], message.as_bytes()
        )
        return message_id

    async def send_raw(self, raw: bytes, source: str | None, destinations: Sequence[str]) -> str:
        if not raw:
            raise ApiError("InvalidParameterValue", "RawMessage.Data is empty")
        if len(raw) > MAX_RAW:
            raise _rejected(f"Message length is more than {MAX_RAW // (1024 * 1024)} MB")
        parsed = email.message_from_bytes(raw, policy=email.policy.SMTP)
        sender = source or parsed.get("From") or ""
        if not _envelope_address(sender):
            raise ApiError("InvalidParameterValue", "Missing required header 'From'.")
        if destinations:
            recipients = [_envelope_address(_address(d, "Destinations")) for d in destinations]
        else:
            fields = [str(v) for k in ("To", "Cc", "Bcc") for v in parsed.get_all(k, [])]
            recipients = [addr for _, addr in getaddresses(fields) if addr]
        if not recipients:
            raise ApiError("InvalidParameterValue", "Missing final '@domain': the message has no recipients")
        if len(recipients) > MAX_RECIPIENTS:
            raise _rejected(f"Recipient count exceeds {MAX_RECIPIENTS}.")
        message_id = _message_id()
        if "Bcc" in parsed:
            del parsed["Bcc"]
            raw = parsed.as_bytes()
        await self._send(_envelope_address(sender), recipients, raw)
        return message_id

    async def _send(self, sender: str, recipients: list[str], data: bytes) -> None:
        if not self.settings.host:
            raise ApiError(
                "ServiceUnavailable", "no SMTP relay is configured (SMTP_HOST)", status=503, sender=False
            )
        await asyncio.to_thread(self._deliver, sender, recipients, data)

    def _deliver(self, sender: str, recipients: list[str], data: bytes) -> None:
        s = self.settings
        try:
            with smtplib.SMTP(s.host, s.port, timeout=10) as smtp:
                if s.starttls:
                    smtp.starttls()
                if s.username:
                    smtp.login(s.username, s.password)
                smtp.sendmail(sender, recipients, data)
        except smtplib.SMTPRecipientsRefused as exc:
            raise _rejected(f"the relay refused recipient(s) {', '.join(sorted(exc.recipients))}") from None
        except smtplib.SMTPSenderRefused as exc:
            raise _rejected(f"the relay refused the sender {exc.sender}: {exc.smtp_error!r}") from None
        except smtplib.SMTPDataError as exc:
            raise _rejected(f"the relay refused the message: {exc.smtp_code} {exc.smtp_error!r}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise ApiError(
                "ServiceUnavailable",
                f"SMTP relay {s.host}:{s.port} failed: {type(exc).__name__}: {exc}",
                status=503,
                sender=False,
            ) from None


def address_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError("InvalidParameterValue", f"{what} must be a list of addresses")
    return list(value)
