"""Fails with NotReady until the document ``{_id: "fixed"}`` exists in ``flags`` (the "fix" a test applies)."""

import kfaas


class NotReady(Exception):
    pass


@kfaas.cloud_event
async def handle(event, ctx: kfaas.Context):
    await ctx.db.effects.update_one({"_id": event["kfaasexecution"]}, {"$inc": {"flaky": 1}}, upsert=True)
    if await ctx.db.flags.find_one({"_id": "fixed"}) is None:
        raise NotReady("the flag is not set yet")
    return {"ok": True, "input": event.data}
