"""Service URLs in messages: never with their password."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact"]


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (``amqp://kfaas:***@rabbitmq:5672/``), fit for a log."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not even a URL (a bad port, say): hide whatever stands between ':' and '@'
        scheme, sep, rest = url.partition("://")
        creds, at, host = rest.rpartition("@")
        return f"{scheme}{sep}{creds.split(':')[0]}:***@{host}" if at else url
    if password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
