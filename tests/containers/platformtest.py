"""Helpers of the platform-image tests: a private copy of the descriptions and RabbitMQ clean-up.

The broker container reads the descriptions from /app/functions. A test mounts its own copy there, with the
orders queue renamed, and gives the broker a namespace of its own, so its exchanges and queues are its own;
everything is deleted afterwards.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import yaml

from kfaas.spec import AppSpec, load_app

ROOT = Path(__file__).resolve().parents[2]


class Topology:
    """A broker namespace, an orders queue and a copy of functions/ using them."""

    def __init__(self, tmp: Path) -> None:
        run = uuid.uuid4().hex[:10]
        self.namespace = f"ct-{run}"
        self.queue = f"orders-ct-{run}"
        self.functions = tmp / "functions"
        shutil.copytree(
            ROOT / "functions", self.functions, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        path = self.functions / "process-order" / "function.yaml"
        spec = yaml.safe_load(path.read_text())
        for source in spec.get("sources", []):
            if source.get("kind") == "queue":
                source["queue"] = self.queue
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        self.functions.chmod(0o755)

    @property
    def app(self) -> AppSpec:
        return load_app(self.functions)

    def mount(self) -> dict[str, dict[str, str]]:
        return {str(self.functions): {"bind": "/app/functions", "mode": "ro"}}

    async def delete(self, amqp_url: str) -> None:
        import aio_pika

        from kfaas.broker import triggers_of
        from kfaas.broker._names import broker_exchange

        app = self.app
        connection: Any = await aio_pika.connect(amqp_url, timeout=10)
        async with connection:
            channel = await connection.channel()
            for ref in triggers_of(app, self.namespace):
                for queue in (ref.queue, ref.dead_letter_queue):
                    await channel.queue_delete(queue)
            for broker in app.brokers:
                await channel.exchange_delete(broker_exchange(self.namespace, broker))
            await channel.queue_delete(self.queue)
