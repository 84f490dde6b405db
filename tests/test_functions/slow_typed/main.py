"""A typed function that takes as long as its input says (``seconds``), asleep in a worker thread or awaiting."""

import asyncio
import time

import functions_framework


class Wait:
    def __init__(self, seconds):
        self.seconds = seconds

    @staticmethod
    def from_dict(obj):
        return Wait(float(obj["seconds"]))

    def to_dict(self):
        return {"waited": self.seconds}


@functions_framework.typed(Wait)
def sleeps(wait):
    time.sleep(wait.seconds)
    return wait


@functions_framework.typed(Wait)
async def awaits(wait):
    await asyncio.sleep(wait.seconds)
    return wait
