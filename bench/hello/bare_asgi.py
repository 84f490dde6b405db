"""Ceiling for the throughput table: granian embedded exactly as `kfaas serve` runs it, around an ASGI app
that reads the body and answers 200 without looking at the CloudEvent. No runtime on granian can beat it.

Usage: python bench/hello/bare_asgi.py PORT
"""

import sys
from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"OK"})


async def main(port: int) -> None:
    from granian.constants import HTTPModes, Interfaces
    from granian.server.embed import Server

    server = Server(
        app,
        address="127.0.0.1",
        port=port,
        interface=Interfaces.ASGI,
        http=HTTPModes.http1,
        websockets=False,
        log_access=False,
        log_enabled=False,
    )
    await server.serve()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(int(sys.argv[1])))
