"""``kfaas dev``: the whole application on this machine, without Docker.

Before anything starts, kfaas dev checks what it needs and stops with one line naming the problem: the
gateway and broker ports (``PortInUse``), MongoDB and RabbitMQ (one connection each, within
``SERVICE_TIMEOUT`` seconds, the URL named with its password hidden), and the dev broker's claims on
RabbitMQ (its namespace, the queues of its queue sources: another broker holding one is named).

What runs, in this order:

1. an SMTP sink that prints a line per email: by default when a function uses SMTP and ``SMTP_HOST`` is not
   set; ``--mail-sink [PORT]`` starts it even so, ``--no-mail-sink`` never;
2. every function of ``--functions`` as a ``kfaas serve`` child process on its own 127.0.0.1 port, with
   MONGODB_URL / MONGODB_DATABASE / AMQP_URL / SMTP_* from this environment (each only to the functions
   whose description ``uses`` it), ``K_SINK`` = the broker ingress for functions that publish, plus their
   ``env`` and secrets; kfaas dev waits until each answers ``/health/readiness``;
3. the dev broker (:class:`kfaas.broker.DevBroker`) in this process: topology, triggers, queue and ping
   sources, its ingress on ``--broker-port`` at ``/<broker>``;
4. the state machine engine (:mod:`kfaas.saga`, when ``statemachines/`` holds any) in this process, its
   executions API on ``--saga-port``;
5. the AWS API endpoints (:mod:`kfaas.aws.endpoints`: EventBridge, SQS, SES with SigV4) on ``--aws-port``
   when a function is ``kind: lambda`` (or with ``--aws-endpoints``); the lambda functions get
   ``AWS_ENDPOINT_URL_EVENTBRIDGE`` / ``_SQS`` / ``_SES`` / ``_SESV2`` and the credentials
   (``KFAAS_AWS_ACCESS_KEY_ID`` / ``KFAAS_AWS_SECRET_ACCESS_KEY`` from this environment, else a pair made
   for this run and printed) as ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``;
6. the API gateway (:mod:`kfaas.gateway`) on ``--port``: once it answers, the app is up.

Ctrl-C or SIGTERM stops the gateway, the broker (unacked events return to their queues), then the
functions (SIGTERM, drained), and exits 0. A crashed function is reported and restarted with backoff; one
that keeps crashing stops everything with exit code 1 (kfaas.dev._supervisor).

``--clock-start`` (``KFAAS_DEV_CLOCK_START``) starts the broker's clock at an ISO 8601 instant when the
broker starts, running at normal speed from there: ping sources fire as if it were that time (for trying or testing a nightly
schedule in seconds). Retry backoffs are durations and are unaffected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import os
import re
import signal
import sys
import time
from datetime import datetime, timedelta
from typing import Any

from kfaas.spec import options as _cliopts

__all__ = ["OffsetClock", "configure", "run"]

log = logging.getLogger("kfaas.dev")

SERVICE_TIMEOUT = 5.0  # seconds each backing service gets to answer the check at start


class OffsetClock:
    """The broker clock of ``--clock-start``: ``start`` when first read, then running at real speed.

    Anchored at the first reading (the broker's start), so how long the functions took to start does not
    eat into the time before a scheduled ping.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the clock start needs a time zone offset, e.g. 2026-04-10T00:59:57+00:00")
        self._start = start
        self._t0: float | None = None

    def now(self) -> datetime:
        if self._t0 is None:
            self._t0 = time.monotonic()
        return self._start + timedelta(seconds=time.monotonic() - self._t0)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


def configure(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    _cliopts.functions_folder(parser)
    parser.add_argument("--port", type=int, default=int(env("PORT", "8080")), help="API gateway port (8080)")
    parser.add_argument("--host", default="127.0.0.1", help="address of the gateway and the broker ingress")
    parser.add_argument(
        "--broker-port", type=int, default=0, help="broker ingress port (default: gateway port + 1)"
    )
    parser.add_argument(
        "--saga-port",
        type=int,
        default=0,
        help="state machine engine port, its executions API (default: gateway port + 2)",
    )
    parser.add_argument(
        "--aws-port",
        type=int,
        default=0,
        help="port of the AWS API endpoints (EventBridge, SQS, SES; default: gateway port + 3)",
    )
    aws = parser.add_mutually_exclusive_group()
    aws.add_argument(
        "--aws-endpoints",
        action="store_true",
        help="serve the AWS API endpoints even when no function is kind: lambda",
    )
    aws.add_argument("--no-aws-endpoints", action="store_true", help="never serve the AWS API endpoints")
    _cliopts.namespace(parser)
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="run only these functions (repeatable)"
    )
    sink = parser.add_mutually_exclusive_group()
    sink.add_argument(
        "--mail-sink",
        type=int,
        nargs="?",
        const=1025,
        default=None,
        metavar="PORT",
        help="the SMTP sink that logs every email runs by default when a function uses SMTP and SMTP_HOST "
        "is not set; --mail-sink runs it even when SMTP_HOST is set, on PORT (1025)",
    )
    sink.add_argument(
        "--no-mail-sink",
        action="store_true",
        help="never start the SMTP sink (functions that use SMTP then need SMTP_HOST)",
    )
    parser.add_argument(
        "--clock-start",
        default=env("KFAAS_DEV_CLOCK_START"),
        help="ISO 8601 instant the broker's clock starts at (ping sources; env KFAAS_DEV_CLOCK_START)",
    )
    parser.add_argument(
        "--max-restarts",
        type=int,
        default=5,
        help="restarts of a crashing function allowed within 60 s before kfaas dev gives up (5)",
    )
    parser.add_argument(
        "--ready-timeout", type=float, default=60.0, help="seconds a function may take to start"
    )


def run(args: argparse.Namespace) -> int:
    from kfaas.spec import SpecError, load_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-5s %(name)s: %(message)s")
    for noisy in ("httpx", "mail.log", "aio_pika", "aiormq"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # aiormq logs every failed connection attempt as an error; aio_pika says the same as a warning
    logging.getLogger("aiormq.connection").setLevel(logging.CRITICAL)
    try:
        app = load_app(args.functions)
    except SpecError as exc:
        sys.stderr.write(f"kfaas dev: {exc}\n")
        return 2
    if args.only:
        unknown = set(args.only) - {f.name for f in app.functions}
        if unknown:
            sys.stderr.write(f"kfaas dev: no function named {', '.join(sorted(unknown))}\n")
            return 2
        # a state machine runs only when every function its Tasks invoke runs too
        machines = [m for m in app.statemachines if set(m.functions) <= set(args.only)]
        app = app.model_copy(
            update={
                "functions": [f for f in app.functions if f.name in args.only],
                "statemachines": machines,
                "engine": app.engine if machines else None,
            }
        )
    problems = _missing_services(app, args)
    images = sorted(f.name for f in app.functions if f.lambda_image)
    if images:
        problems.append(
            f"{', '.join(images)}: a Lambda container image needs a container engine, which kfaas dev does not "
            "use: run the application with docker compose, or leave them out with --only"
        )
    wants_aws = any(f.kind == "lambda" for f in app.functions) or getattr(args, "aws_endpoints", False)
    if (
        wants_aws
        and not getattr(args, "no_aws_endpoints", False)
        and importlib.util.find_spec("botocore") is None
    ):
        problems.append(
            "the AWS API endpoints (served for kind: lambda functions) need botocore: "
            "pip install 'kfaas[platform]', or run without them (--no-aws-endpoints)"
        )
    try:
        from kfaas.base.asgi import Limits

        Limits.from_env()
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        sys.stderr.write("kfaas dev: " + "\n  ".join(problems) + "\n")
        return 2
    clock = None
    if args.clock_start:
        try:
            clock = OffsetClock(datetime.fromisoformat(args.clock_start))
        except ValueError as exc:
            sys.stderr.write(f"kfaas dev: --clock-start {args.clock_start!r}: {exc}\n")
            return 2
    return asyncio.run(_main(app, args, clock))


def _missing_services(app: Any, args: argparse.Namespace) -> list[str]:
    uses = {u: sorted(f.name for f in app.functions if u in f.uses) for u in ("mongodb", "rabbitmq")}
    problems = []
    if app.statemachines:
        uses["mongodb"].append("the state machine engine")
    if app.streams:
        uses["mongodb"].append("the stream sources (their checkpoints)")
    if uses["mongodb"] and not os.environ.get("MONGODB_URL"):
        problems.append(f"MONGODB_URL is not set ({', '.join(uses['mongodb'])} use MongoDB)")
    needs_amqp = uses["rabbitmq"] or any(f.triggers or f.sources for f in app.functions)
    if needs_amqp and not os.environ.get("AMQP_URL"):
        problems.append("AMQP_URL is not set (the dev broker and the functions that use RabbitMQ need it)")
    smtp = sorted(f.name for f in app.functions if "smtp" in f.uses)
    if smtp and args.no_mail_sink and not os.environ.get("SMTP_HOST"):
        problems.append(f"SMTP_HOST is not set and --no-mail-sink is given ({', '.join(smtp)} send email)")
    return problems


async def _main(app: Any, args: argparse.Namespace, clock: OffsetClock | None) -> int:
    dev = _Dev(app, args, clock)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, dev.stop_requested.set)
    try:
        return await dev.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


class _Dev:
    """One ``kfaas dev`` run: mail sink, function processes, broker, gateway; stopped in reverse order."""

    def __init__(self, app: Any, args: argparse.Namespace, clock: OffsetClock | None) -> None:
        self.app = app
        self.args = args
        self.clock = clock
        self.out = sys.stdout
        self.stop_requested = asyncio.Event()
        self.services = {
            k: v
            for k, v in os.environ.items()
            if k.startswith(("MONGODB_", "AMQP_", "SMTP_", "MAIL_"))
            or k in ("S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")
        }
        self.sink: Any = None
        self.broker: Any = None
        self.gateway: Any = None
        self.tasks: list[asyncio.Task[Any]] = []
        self.claims: list[Any] = []  # the ports, claimed before anything starts (kfaas.base.server.PortClaim)
        self.urls: dict[str, str] = {}  # function name -> its URL on this machine
        self.broker_port = args.broker_port or args.port + 1
        self.ingress = f"http://{args.host}:{self.broker_port}"
        self.saga_port = args.saga_port or args.port + 2
        self.engine: Any = None
        self.mongo: Any = None
        self.aws_port = getattr(args, "aws_port", 0) or args.port + 3
        self.aws_credentials: dict[str, str] = {}  # the key the lambda functions get
        self.aws_extra: dict[str, str] = {}  # AWS_ACCESS_KEY_ID of this environment, accepted as well
        wants_aws = any(f.kind == "lambda" for f in app.functions) or getattr(args, "aws_endpoints", False)
        self.aws_wanted = wants_aws and not getattr(args, "no_aws_endpoints", False)
        self.stream_ports: dict[str, int] = {}  # stream source consumer -> the port of its appends

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    async def run(self) -> int:
        from kfaas.dev._supervisor import GaveUp, Supervisor

        problem = await self._preflight()
        if problem:
            sys.stderr.write(f"kfaas dev: {problem}\n")
            await self._release()
            return 1
        if not self._start_mail_sink():
            await self._release()
            return 1
        # after the sink: each function's environment names it (SMTP_HOST, SMTP_PORT)
        processes = self._processes()
        self.urls.update({p.name: p.url for p in processes})
        supervisor = Supervisor(
            processes, ready_timeout=self.args.ready_timeout, max_restarts=self.args.max_restarts
        )
        try:
            if not await self._until_stopped(supervisor.start()):
                return 0
            await self._start_front(supervisor.processes)
            self._banner(supervisor.processes)
            return await self._watch(supervisor)
        except GaveUp as exc:
            self.say(f"kfaas dev: {exc}")
            return 1
        except OSError as exc:
            self.say(f"kfaas dev: {exc}")
            return 1
        finally:
            self.say("kfaas dev: stopping")
            await self._stop_front()
            await supervisor.stop()
            if self.sink is not None:
                self.sink.stop()
            self.say("kfaas dev: stopped")

    async def _preflight(self) -> str | None:
        """What keeps this run from starting, in one line, or None: ports, services, the broker's claims."""
        from kfaas.base.server import PortClaim

        args = self.args
        wanted = [("the gateway", args.port)]
        if self.app.brokers:
            wanted.append(("the broker ingress", self.broker_port))
        if self.app.engine is not None:
            wanted.append(("the state machine engine", self.saga_port))
            self.urls[self.app.engine.name] = f"http://{args.host}:{self.saga_port}"
        if self.aws_wanted:
            wanted.append(("the AWS API endpoints", self.aws_port))
            problem = self._aws_credentials()
            if problem:
                return problem
        for what, port in wanted:
            try:
                self.claims.append(PortClaim(args.host, port))
            except OSError as exc:
                return f"cannot serve {what}: {exc} (choose another with --port / --broker-port)"
        self._stream_urls()
        uses = {u for f in self.app.subscribers for u in f.uses}
        if "mongodb" in uses:
            problem = await _check_mongodb(os.environ["MONGODB_URL"])
            if problem:
                return problem
        if self.app.brokers or "rabbitmq" in uses:
            from kfaas.base.asgi import Limits
            from kfaas.broker import BrokerConflict, DevBroker, RabbitMQUnreachable

            urls = self.urls  # filled once the function processes have their ports
            self.broker = DevBroker(
                self.app,
                os.environ["AMQP_URL"],
                lambda name: urls[name] + "/",
                namespace=args.namespace,
                clock=self.clock,
                limits=Limits.from_env(),  # checked in run()
            )
            try:
                await self.broker.connect()  # also the check of AMQP_URL for the functions that use it
            except RabbitMQUnreachable as exc:
                self.broker = None
                return f"{exc} (AMQP_URL)"
            except BrokerConflict as exc:
                self.broker = None
                return str(exc)
            if not self.app.brokers:  # only the functions need RabbitMQ: the check was all
                await self.broker.stop()
                self.broker = None
        return None

    def _aws_credentials(self) -> str | None:
        """The endpoints' access key: KFAAS_AWS_ACCESS_KEY_ID/_SECRET_ACCESS_KEY, else one made for this run."""
        from kfaas.aws.endpoints import credentials_from_env

        try:
            self.aws_credentials = credentials_from_env(os.environ)
        except ValueError as exc:
            return str(exc)
        if not self.aws_credentials:
            import secrets

            self.aws_credentials = {"AKIAKFAASDEV" + secrets.token_hex(4).upper(): secrets.token_urlsafe(30)}
        # a key of this environment (e.g. the object store's) is what the functions inherit: accept it too
        key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        self.aws_extra = {key: secret} if key and secret else {}
        return None

    async def _release(self) -> None:
        for claim in self.claims:
            claim.release()
        self.claims.clear()
        if self.broker is not None:
            await self.broker.stop()
            self.broker = None

    async def _until_stopped(self, work: Any) -> bool:
        """Run ``work`` unless a stop is requested first (then cancel it and answer False)."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self.stop_requested.wait())
        await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            return False
        task.result()
        return True

    async def _watch(self, supervisor: Any) -> int:
        waiting = asyncio.ensure_future(self.stop_requested.wait())
        watched: list[asyncio.Future[Any]] = [waiting, supervisor.failed, *self.tasks]
        await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if supervisor.failed.done():
            self.say(f"kfaas dev: {supervisor.failed.result()}; stopping everything")
            return 1
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                self.say(f"kfaas dev: {task.get_name()} failed: {task.exception()!r}; stopping everything")
                return 1
        return 0

    def _start_mail_sink(self) -> bool:
        from kfaas.dev.smtp import MailSink

        wants_smtp = any("smtp" in f.uses for f in self.app.functions)
        if self.args.no_mail_sink:
            return True
        if self.args.mail_sink is None and (not wants_smtp or self.services.get("SMTP_HOST")):
            return True
        self.sink = MailSink("127.0.0.1", self.args.mail_sink or 1025)
        try:
            self.sink.start()
        except (RuntimeError, OSError) as exc:
            sys.stderr.write(
                f"kfaas dev: cannot start the SMTP sink: {exc} (or set SMTP_HOST to a relay, or pass --no-mail-sink)\n"
            )
            self.sink = None
            return False
        self.services.update(SMTP_HOST=self.sink.host, SMTP_PORT=str(self.sink.port))
        self.say(f"mail sink on smtp://{self.sink.host}:{self.sink.port} (emails are logged below)")
        logging.getLogger("kfaas.dev.mail").setLevel(logging.INFO)
        return True

    def _processes(self) -> list[Any]:
        from kfaas.dev._supervisor import FunctionProcess, function_env
        from kfaas.dev.smtp import free_port

        width = max([len(f.name) for f in self.app.functions] + [7])
        sink = f"{self.ingress}/default"
        processes = []
        aws: dict[str, str] = {}
        if self.aws_wanted:
            url = f"http://{self.args.host}:{self.aws_port}"
            ((key, secret),) = self.aws_credentials.items()
            aws = {f"AWS_ENDPOINT_URL_{s}": url for s in ("EVENTBRIDGE", "SQS", "SES", "SESV2")}
            if not self.aws_extra:  # else the functions keep the key of this environment
                aws.update(AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret)
        for spec in self.app.functions:
            port = free_port()
            env = function_env(spec, port, self.services, os.environ, sink)
            if spec.kind == "lambda":
                env.update({k: v for k, v in aws.items() if k not in spec.env})
                if aws:  # SDKs in the handler's own process need a region
                    env.setdefault("AWS_REGION", spec.lambda_.region)
                    env.setdefault("AWS_DEFAULT_REGION", spec.lambda_.region)
            processes.append(FunctionProcess(spec, port, env, width=width, out=self.out))
        return processes

    async def _start_front(self, processes: list[Any]) -> None:
        """The broker (with its ingress) and the gateway, once every function is ready."""
        from kfaas.base.asgi import Limits
        from kfaas.base.server import serve_embedded
        from kfaas.broker import serve_ingress
        from kfaas.gateway import build

        args = self.args
        urls = {p.name: p.url for p in processes}
        limits = Limits.from_env()  # checked in run()
        claims = iter(self.claims)
        gateway_claim = next(claims)
        await self._start_streams(urls)
        if self.broker is not None:
            await self.broker.start()
            self.tasks.append(
                asyncio.create_task(
                    serve_ingress(self.broker, args.host, self.broker_port, claim=next(claims)),
                    name="broker ingress",
                )
            )
            self.say(f"{'broker':<8} | ready: {', '.join(self.broker.brokers)} (namespace {args.namespace})")
        if self.app.engine is not None:
            await self._start_engine(next(claims))
            urls[self.app.engine.name] = self.urls[self.app.engine.name]  # the gateway's executions routes
        if self.aws_wanted:
            await self._start_aws(next(claims))
        self.gateway = build(
            self.app, urls, "http://{name}:8080", os.environ.get("KFAAS_CORS_ORIGINS", "*"), limits=limits
        )
        await self.gateway.start()
        self.tasks.append(
            asyncio.create_task(
                serve_embedded(self.gateway, args.host, args.port, claim=gateway_claim), name="gateway"
            )
        )
        await _wait_http(f"http://{args.host}:{args.port}/health/readiness", 15.0)

    def _stream_urls(self) -> None:
        """A port for each stream source's appends: where the broker delivers its feeds."""
        from kfaas.dev.smtp import free_port

        for consumer, _, _ in self.app.streams:
            self.stream_ports[consumer.name] = port = free_port()
            self.urls[consumer.name] = f"http://{self.args.host}:{port}"

    async def _start_streams(self, urls: dict[str, str]) -> None:
        """The consumer of each stream source (``kfaas stream run``) in this process, before the broker feeds
        them; each delivers to its function's process."""
        if not self.app.streams:
            return
        from pymongo import AsyncMongoClient

        from kfaas.base.server import serve_embedded
        from kfaas.broker import StreamConsumer

        if self.mongo is None:
            self.mongo = AsyncMongoClient(
                os.environ["MONGODB_URL"], serverSelectionTimeoutMS=5000, tz_aware=True
            )
        database = self.mongo[os.environ.get("MONGODB_DATABASE") or "kfaas"]
        for consumer_spec, fn, source in self.app.streams:
            consumer = StreamConsumer(
                consumer_spec,
                fn,
                source,
                amqp_url=os.environ["AMQP_URL"],
                database=database,
                url=urls[fn.name],
                namespace=self.args.namespace,
            )
            port = self.stream_ports[consumer_spec.name]
            self.tasks.append(asyncio.create_task(consumer.run(), name=f"stream source {consumer_spec.name}"))
            self.tasks.append(
                asyncio.create_task(
                    serve_embedded(consumer, self.args.host, port),
                    name=f"stream appends {consumer_spec.name}",
                )
            )
            await asyncio.wait_for(consumer.connected.wait(), 30.0)
            self.say(f"{'stream':<8} | ready: {consumer_spec.name} ({source.stream} -> {fn.name})")

    async def _start_engine(self, claim: Any) -> None:
        """The state machine engine (``kfaas saga``) in this process, its API on ``--saga-port``."""
        from pymongo import AsyncMongoClient

        from kfaas.base.server import serve_embedded
        from kfaas.saga import Engine, EngineApp

        if self.mongo is None:
            self.mongo = AsyncMongoClient(
                os.environ["MONGODB_URL"], serverSelectionTimeoutMS=5000, tz_aware=True
            )
        database = os.environ.get("MONGODB_DATABASE") or "kfaas"
        self.engine = Engine(self.app, self.mongo[database], f"{self.ingress}/default")
        await self.engine.start()
        self.tasks.append(
            asyncio.create_task(
                serve_embedded(EngineApp(self.engine), self.args.host, self.saga_port, claim=claim),
                name="saga engine",
            )
        )
        names = ", ".join(m.name for m in self.app.statemachines)
        self.say(f"{'saga':<8} | ready: {names} (executions API on http://{self.args.host}:{self.saga_port})")

    async def _start_aws(self, claim: Any) -> None:
        """The AWS API endpoints in this process: PutEvents to the broker, SQS to RabbitMQ, SES to SMTP."""
        from kfaas.aws.endpoints import AwsEndpoints, SmtpSettings, serve_endpoints
        from kfaas.base.asgi import Limits

        endpoints = AwsEndpoints(
            {**self.aws_credentials, **self.aws_extra},
            broker_url=f"{self.ingress}/default" if self.app.brokers else None,
            amqp_url=os.environ.get("AMQP_URL") or None,
            smtp=SmtpSettings.from_env(self.services),
            limits=Limits.from_env(),
        )
        self.tasks.append(
            asyncio.create_task(
                serve_endpoints(endpoints, self.args.host, self.aws_port, claim=claim), name="aws endpoints"
            )
        )
        await _wait_http(f"http://{self.args.host}:{self.aws_port}/health/liveness", 15.0)
        ((key, _),) = self.aws_credentials.items()
        self.say(
            f"{'aws':<8} | ready: EventBridge, SQS, SES on http://{self.args.host}:{self.aws_port} "
            f"(access key {key})"
        )

    async def _stop_front(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.engine is not None:
            await self.engine.stop()
        if self.mongo is not None:
            await self.mongo.close()
        if self.gateway is not None:
            await self.gateway.close()
        await self._release()

    def _banner(self, processes: list[Any]) -> None:
        base = f"http://{self.args.host}:{self.args.port}"
        lines = [f"kfaas dev: ready — API on {base}, broker ingress on {self.ingress}/<broker>"]
        if self.engine is not None:
            lines.append(
                f"  POST   http://{self.args.host}:{self.saga_port}/state-machines/<name>/executions -> kfaas-saga"
            )
        lines += [
            f"  {','.join(sorted(r.methods - {'HEAD'})):<6} {base}{r.template} -> {r.function}"
            for r in self.gateway.routes
        ]
        lines += [f"  {p.name:<16} {p.url}" for p in processes]
        lines.append(f"OpenAPI document: {base}/openapi.json, Swagger UI: {base}/docs")
        lines.append("Ctrl-C stops everything.")
        self.say("\n".join(lines))


async def _check_mongodb(url: str) -> str | None:
    """None when MongoDB at ``url`` answers a ping within SERVICE_TIMEOUT, else why not, naming the URL."""
    from pymongo import AsyncMongoClient
    from pymongo.errors import PyMongoError

    from kfaas.base.urls import redact

    where = f"MongoDB at {redact(url)}"
    timeout_ms = int(SERVICE_TIMEOUT * 1000)
    try:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
        )
    except (PyMongoError, ValueError) as exc:  # a malformed URL: InvalidURI, ConfigurationError
        return f"{where} is not a MongoDB URL: {exc} (MONGODB_URL)"
    try:
        await client.admin.command("ping")
    except PyMongoError as exc:
        # a server-selection timeout carries the topology description: keep what is before it
        reason = str(exc).split(", Timeout:")[0].split("\n")[0]
        reason = re.sub(r" \(configured timeouts: [^)]*\)", "", reason)
        return f"{where} is not reachable: {reason} (MONGODB_URL)"
    finally:
        await client.close()
    return None


async def _wait_http(url: str, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1.0, trust_env=False) as client:
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(url)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise OSError(f"{url} did not answer within {timeout:g}s")
            await asyncio.sleep(0.05)
