"""daily-report: on a ping (the seed's Cron rule), email the previous day's order totals.

Consumes ``dev.knative.sources.ping`` from the ping source in function.yaml (schedule, timezone, data).
The day reported is the UTC day before the event's ``time`` attribute, so a late or repeated ping reports
the same day, and tests choose the day by choosing the event time. The ping's ``data`` may name the
recipient (``{"to": "ops@example.com"}``); otherwise the ``REPORT_TO`` setting does. One email per day:
the send runs inside ``ctx.once`` keyed by the day. Reads ``order_totals_by_day`` (order-analytics).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from cloudevents.http import CloudEvent

import kfaas

PING = "dev.knative.sources.ping"
BY_DAY = "order_totals_by_day"
# Read once at import (the process's start-up), never inside the handler.
REPORT_TO = os.environ.get("REPORT_TO", "")


def report_day(event: CloudEvent) -> str:
    raw = event.get("time")
    fired = datetime.fromisoformat(raw.replace("Z", "+00:00")) if raw else datetime.now(UTC)
    if fired.tzinfo is None:
        fired = fired.replace(tzinfo=UTC)
    return (fired.astimezone(UTC).date() - timedelta(days=1)).isoformat()


def recipient(data: Any) -> str:
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError:
            data = None
    to = data.get("to") if isinstance(data, dict) else None
    return str(to or REPORT_TO)


@kfaas.cloud_event
async def handle(event: CloudEvent, ctx: kfaas.Context) -> None:
    if event["type"] != PING:
        raise kfaas.InvalidEvent(f"daily-report does not handle events of type {event['type']!r}")
    to = recipient(event.data)
    if not to:
        raise kfaas.InvalidEvent('no recipient: set REPORT_TO or give the ping source data {"to": ...}')
    day = report_day(event)
    totals = await ctx.db[BY_DAY].find_one({"_id": day}) or {}
    orders, cents = int(totals.get("orders", 0)), int(totals.get("totalCents", 0))
    subject = f"Orders on {day}: {orders}, total {cents / 100:.2f}"
    body = f"Order totals for {day} (UTC):\n\n  orders: {orders}\n  total:  {cents / 100:.2f}\n"
    try:
        async with ctx.once(f"daily-report|{day}"):
            await ctx.send_email(to, subject, body)
    except kfaas.AlreadyDone:
        ctx.log.info("report for %s already sent", day)
