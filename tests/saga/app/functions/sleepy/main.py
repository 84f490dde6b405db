"""Never answers in time: sleeps 60 s."""

import asyncio

import kfaas


@kfaas.cloud_event
async def handle(event, ctx: kfaas.Context):
    await asyncio.sleep(60)
    return event.data
