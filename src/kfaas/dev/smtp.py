"""A local SMTP sink: accepts every email, keeps it in memory and logs a line per message.

``kfaas dev`` starts one when no SMTP relay is set (``SMTP_HOST``; ``--mail-sink PORT`` moves it,
``--no-mail-sink`` leaves it off), and the tests read the
emails the functions send from it. Needs ``aiosmtpd`` (in the ``test`` extra).
"""

from __future__ import annotations

import email
import email.policy
import logging
import socket
import threading
import time
from email.message import EmailMessage
from typing import Any

__all__ = ["MailSink"]

log = logging.getLogger("kfaas.dev.mail")


_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, and never one this process handed out before: the kernel may give the same free
    port to two binds in a row, and the servers of one ``kfaas dev`` run start after all are chosen."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise OSError(f"no free port on {host} that was not handed out already")


class MailSink:
    """An SMTP server on ``host:port`` (a free port when 0) that stores what it receives."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._messages: list[EmailMessage] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._controller: Any = None

    # aiosmtpd handler hook
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._changed:
            self._messages.append(message)
            self._changed.notify_all()
        log.info("mail to %s: %s", ", ".join(envelope.rcpt_tos), message["Subject"])
        return "250 Message accepted"

    def start(self) -> MailSink:
        try:
            from aiosmtpd.controller import Controller
        except ImportError as exc:
            raise RuntimeError("the SMTP sink needs aiosmtpd: pip install 'kfaas[test]'") from exc
        self._controller = Controller(self, hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> MailSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def messages(self) -> list[EmailMessage]:
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def wait_for(self, count: int, timeout: float, to: str | None = None) -> list[EmailMessage]:
        """Block until at least ``count`` messages (to ``to``, if given) arrived or ``timeout`` s passed."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [m for m in self._messages if to is None or to in str(m["To"])]
                left = deadline - time.monotonic()
                if len(found) >= count or left <= 0:
                    return found
                self._changed.wait(left)
