from __future__ import annotations

import asyncio

import pytest
from bson import ObjectId
from order_functions import load_function, make_event

import kfaas
from kfaas.dev.smtp import MailSink

pytestmark = pytest.mark.integration

fn = load_function("notify-email")


def processed(order_id: str, user_id: str) -> dict[str, object]:
    return {
        "orderId": order_id,
        "userId": user_id,
        "total": 25.99,
        "totalCents": 2599,
        "items": 2,
        "placedAt": "2026-01-02T03:04:05+00:00",
    }


async def test_one_email_per_order_even_when_delivered_twice(ctx: kfaas.Context, mail_sink: MailSink) -> None:
    user_id = ObjectId()
    await ctx.db["users"].insert_one({"_id": user_id, "email": "ada@example.com", "name": "Ada"})
    event = make_event(fn.PROCESSED, processed("o-1", str(user_id)))

    await fn.handle(event, ctx)
    await fn.handle(event, ctx)  # a redelivery
    await fn.handle(make_event(fn.PROCESSED, processed("o-1", str(user_id))), ctx)  # same order, new event id

    mails = await asyncio.to_thread(mail_sink.wait_for, 1, 5.0)
    await asyncio.sleep(0.2)  # a wrongly sent second email would arrive within this
    assert len(mail_sink.messages) == 1
    assert mails[0]["To"] == "ada@example.com"
    assert mails[0]["From"] == "orders@kfaas.test"
    assert "o-1" in mails[0]["Subject"]
    assert "Hello Ada" in mails[0].get_content()
    assert "25.99" in mails[0].get_content()


async def test_users_with_string_ids_are_found(ctx: kfaas.Context, mail_sink: MailSink) -> None:
    await ctx.db["users"].insert_one({"_id": "u-7", "email": "bob@example.com"})
    await fn.handle(make_event(fn.PROCESSED, processed("o-2", "u-7")), ctx)
    mails = await asyncio.to_thread(mail_sink.wait_for, 1, 5.0)
    assert [m["To"] for m in mails] == ["bob@example.com"]


async def test_unknown_user_is_a_permanent_failure_with_the_reason(
    ctx: kfaas.Context, mail_sink: MailSink
) -> None:
    """InvalidEvent: the runtime answers 422 and the broker dead-letters it at once (no retries holding a
    slot of the trigger); redriven once the user exists, it sends the email."""
    with pytest.raises(kfaas.InvalidEvent, match="user 'nobody' of order 'o-3' does not exist"):
        await fn.handle(make_event(fn.PROCESSED, processed("o-3", "nobody")), ctx)
    await ctx.db["users"].insert_one({"_id": "no-mail", "name": "No Mail"})
    with pytest.raises(kfaas.InvalidEvent, match="user 'no-mail' of order 'o-5' has no email address"):
        await fn.handle(make_event(fn.PROCESSED, processed("o-5", "no-mail")), ctx)
    assert mail_sink.messages == []
    # nothing was claimed: once the user exists, the redriven event sends the email
    await ctx.db["users"].insert_one({"_id": "nobody", "email": "late@example.com"})
    await fn.handle(make_event(fn.PROCESSED, processed("o-3", "nobody")), ctx)
    assert len(await asyncio.to_thread(mail_sink.wait_for, 1, 5.0)) == 1


async def test_smtp_down_is_retryable_and_sends_later(ctx: kfaas.Context, mail_sink: MailSink) -> None:
    await ctx.db["users"].insert_one({"_id": "u-8", "email": "cy@example.com"})
    mail_sink.stop()
    with pytest.raises(kfaas.ServiceUnavailable):
        await fn.handle(make_event(fn.PROCESSED, processed("o-4", "u-8")), ctx)
    mail_sink.start()
    await fn.handle(make_event(fn.PROCESSED, processed("o-4", "u-8")), ctx)
    assert len(await asyncio.to_thread(mail_sink.wait_for, 1, 5.0)) == 1


async def test_event_without_order_id_is_invalid(ctx: kfaas.Context) -> None:
    with pytest.raises(kfaas.InvalidEvent, match="orderId and userId"):
        await fn.handle(make_event(fn.PROCESSED, {"userId": "u"}), ctx)
