"""Counts its invocations per request id in MongoDB (the effect a test counts), returns its input."""

import kfaas


@kfaas.cloud_event
async def handle(event, ctx: kfaas.Context):
    await ctx.db.effects.update_one({"_id": event["kfaasexecution"]}, {"$inc": {"counter": 1}}, upsert=True)
    return event.data
