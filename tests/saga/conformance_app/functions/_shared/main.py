"""The five kinds of test function the recorded ASL cases name, behind one handler (``kfaasfunction`` picks).

Every delivery is recorded as its own document (insert-only: counting stays right under concurrency), with
the request's id: a request delivered twice (the broker's at-least-once delivery, or the engine publishing a
task again after a reload) is one invocation of the task attempt it carries.
"""

import asyncio
import uuid

import kfaas


class CustomException(Exception):  # the recording's class: sets message, never calls super().__init__
    def __init__(self):
        self.message = "CustomException message"


@kfaas.cloud_event
async def handle(event, ctx: kfaas.Context):
    name = event["kfaasfunction"]
    await ctx.db.invocations.insert_one(
        {"_id": uuid.uuid4().hex, "e": event["kfaasexecution"], "fn": name, "request": event["id"]}
    )
    if name == "identity":
        return event.data
    if name in ("echo1", "echo2"):
        return {"Return": "HelloWorld"}
    if name == "raise-exception":
        raise Exception("Some exception was raised.")
    if name == "raise-custom":
        raise CustomException
    if name == "sleep60":
        await asyncio.sleep(60)
        return event.data
    raise LookupError(f"no test function {name}")
