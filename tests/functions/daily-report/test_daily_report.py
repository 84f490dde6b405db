from __future__ import annotations

import asyncio

import pytest
from order_functions import load_function, make_event

import kfaas
from kfaas.dev.smtp import MailSink

pytestmark = pytest.mark.integration

fn = load_function("daily-report")


async def test_reports_the_previous_utc_day_once(ctx: kfaas.Context, mail_sink: MailSink) -> None:
    await ctx.db[fn.BY_DAY].insert_one({"_id": "2026-04-09", "orders": 3, "totalCents": 12345})
    ping = make_event(
        fn.PING, {"to": "ops@example.com"}, time="2026-04-10T01:00:00+02:00"
    )  # 23:00 UTC on the 9th
    ping_utc = make_event(fn.PING, {"to": "ops@example.com"}, time="2026-04-10T00:30:00Z")

    await fn.handle(ping_utc, ctx)
    await fn.handle(ping_utc, ctx)  # a redelivery sends nothing

    mails = await asyncio.to_thread(mail_sink.wait_for, 1, 5.0)
    assert [m["To"] for m in mails] == ["ops@example.com"]
    assert mails[0]["Subject"] == "Orders on 2026-04-09: 3, total 123.45"
    # The Berlin-time ping fired on the 9th in UTC: it reports the 8th, a day without orders.
    await fn.handle(ping, ctx)
    mails = await asyncio.to_thread(mail_sink.wait_for, 2, 5.0)
    assert mails[1]["Subject"] == "Orders on 2026-04-08: 0, total 0.00"
    assert len(mail_sink.messages) == 2


async def test_without_a_recipient_the_event_is_invalid(
    ctx: kfaas.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fn, "REPORT_TO", "")
    with pytest.raises(kfaas.InvalidEvent, match="no recipient"):
        await fn.handle(make_event(fn.PING, None, time="2026-04-10T00:00:00Z"), ctx)


async def test_report_to_setting_is_the_default_recipient(
    ctx: kfaas.Context, mail_sink: MailSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fn, "REPORT_TO", "team@example.com")
    await fn.handle(make_event(fn.PING, {"report": "daily"}, time="2026-04-10T00:00:00Z"), ctx)
    mails = await asyncio.to_thread(mail_sink.wait_for, 1, 5.0)
    assert [m["To"] for m in mails] == ["team@example.com"]
