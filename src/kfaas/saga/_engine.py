"""The durable engine: executions in MongoDB, tasks through the broker, any number of engine processes.

How one engine process works (docs/state-machines.md has the picture):

- **Group commit.** Each cycle takes every execution this engine owns that has work (a reply or a stop to
  apply, a timer due, a state entered), computes *one* transition for each with the interpreter and inserts
  all those transition documents with one ``insert_many``. An execution's next transition is computed only
  after its previous one is stored: every transition is persisted before the next step starts. A transition
  whose ``_id`` (``<execution>#<n>``) already exists lost a race to another engine: the execution is given up
  here (the other engine owns it now).
- **Effects after the commit.** Task requests go to the broker ingress only after the transition that
  scheduled them is stored; an engine that dies in between leaves them in the stored state, and whoever
  continues the execution publishes every task still waiting (a duplicate request is possible, so a task
  request's id is stable per execution, state entry and attempt: functions key idempotency on it).
- **Replies** reach whichever engine the broker delivers to. The owner applies them and answers the broker
  only once the transition that consumed them is stored; any other engine stores them in ``saga_signals``
  first and answers then, and the owner picks them up.
- **Ownership.** Each engine heartbeats in ``saga_engines``. Executions of an engine whose heartbeat is older
  than the lease, and executions nobody owns (started or redriven by ``kfaas executions``), are claimed by
  the others with a compare-and-set on the summary's owner, then loaded from their newest transition: timers
  and tasks in flight are in it, so none is lost.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kfaas.saga._definition import Machine, compile_definition
from kfaas.saga._interpreter import Limits, Run
from kfaas.saga._store import ExecutionAlreadyExists, Store, execution_id, now_dt

if TYPE_CHECKING:
    from kfaas.spec import AppSpec, StateMachineSpec

__all__ = ["Engine", "ExecutionAlreadyExists", "InvalidRequest"]

log = logging.getLogger("kfaas.saga")

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,79}$")
REQUEST = "com.kfaas.task.request"
RESULT = "com.kfaas.task.result"
ERROR = "com.kfaas.task.error"
HEARTBEAT = "com.kfaas.task.heartbeat"
_LAMBDA_ERROR_KEYS = {"errorType", "errorMessage", "stackTrace", "requestId", "cause"}


class InvalidRequest(ValueError):
    """A start or a signal the engine refuses (400): the message names the problem."""


@dataclass
class _Machine:
    spec: StateMachineSpec
    machine: Machine
    limits: Limits


@dataclass
class _Live:
    """An execution this engine owns, in memory."""

    id: str
    machine: _Machine
    run: Run
    n: int  # the newest stored transition
    queue: collections.deque[tuple[dict[str, Any], asyncio.Future[bool] | None]] = field(
        default_factory=collections.deque
    )
    published: set[str] = field(default_factory=set)
    queued_signals: set[str] = field(default_factory=set)


class Engine:
    def __init__(
        self,
        app: AppSpec,
        db: Any,
        sink: str,
        *,
        engine_id: str | None = None,
        url: str = "",
        lease: float = 5.0,
        poll: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.store = Store(db)
        self.sink = sink
        self.engine_id = engine_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.url = url
        self.lease = lease
        self.poll = poll
        self.clock = clock
        self.machines: dict[str, _Machine] = {}
        for spec in app.statemachines:
            limits = Limits(
                spec.limits.max_history_events,
                spec.limits.max_payload_bytes,
                float(spec.limits.max_execution_seconds),
            )
            self.machines[spec.name] = _Machine(spec, compile_definition(spec.asl), limits)
        self.deadlines = self._deadlines(app)
        self.live: dict[str, _Live] = {}
        self.loading: set[str] = set()
        # owned here, to be loaded again from MongoDB after a store failed: the task requests it had published
        # already (they need not be sent again)
        self.reload: dict[str, set[str]] = {}
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task[Any]] = []
        self.background: set[asyncio.Task[Any]] = set()
        self.http: Any = None
        self.ready = False
        self.stopping = False
        self.transitions_committed = 0
        # timings for bench/saga.py: seconds of the engine's own work per transition, and from a task reply
        # arriving to the next task request accepted by the broker (None: not recorded)
        self.cpu_timings: list[float] | None = None
        self.reply_to_request: list[float] | None = None
        self._arrived: dict[str, float] = {}

    @staticmethod
    def _deadlines(app: AppSpec) -> dict[str, float]:
        """A Task without TimeoutSeconds waits for its function's whole delivery budget, then times out."""
        out = {}
        for fn in app.functions:
            for trigger in fn.triggers:
                if trigger.name == "tasks":
                    d = trigger.delivery
                    attempt = d.timeout_seconds() or float(fn.timeout)
                    backoff = sum(d.delay_for(i) for i in range(1, d.retry + 1))
                    out[f"fn:{fn.name}"] = attempt * (d.retry + 1) + backoff + 10.0
        return out

    def _run_args(self, m: _Machine) -> dict[str, Any]:
        return {"limits": m.limits, "task_deadline": self.deadlines.get}

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        import httpx

        self.http = httpx.AsyncClient(timeout=10.0, trust_env=False)
        await self.store.ensure_indexes()
        await self.store.heartbeat(self.engine_id, self.url, self.clock())
        self.tasks = [
            asyncio.create_task(self._commit_loop(), name="saga commit"),
            asyncio.create_task(self._membership_loop(), name="saga membership"),
            asyncio.create_task(self._signal_loop(), name="saga signals"),
        ]
        self.ready = True
        log.info(
            "saga engine %s ready: state machines %s", self.engine_id, ", ".join(self.machines) or "none"
        )

    async def stop(self) -> None:
        """Stop working; executions owned here are released so the other engines take them over at once."""
        self.stopping = True
        self.ready = False
        self.wake.set()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for task in list(self.background):
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        with contextlib.suppress(Exception):
            for exec_id in list(self.live):
                await self.store.update(
                    exec_id, {"owner": None}, {"owner": self.engine_id, "status": "RUNNING"}
                )
            await self.store.forget_engine(self.engine_id)
        self.live.clear()
        if self.http is not None:
            await self.http.aclose()

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    # -- starting --------------------------------------------------------------------------------------
    async def start_execution(self, machine_name: str, name: str | None, input_: Any) -> dict[str, Any]:
        m = self.machines.get(machine_name)
        if m is None:
            raise InvalidRequest(
                f"no state machine {machine_name!r} (known: {', '.join(self.machines) or 'none'})"
            )
        name = name or str(uuid.uuid4())
        if not NAME.match(name):
            raise InvalidRequest(
                f"execution name {name!r}: 1-80 letters, digits, '-', '_' or '.', starting with a letter or digit"
            )
        size = len(json.dumps(input_, separators=(",", ":")).encode())
        if size > m.limits.max_payload_bytes:
            raise InvalidRequest(
                f"the input is {size} bytes, over the payload limit of {m.limits.max_payload_bytes} bytes "
                "(maxPayloadBytes)"
            )
        now = self.clock()
        exec_id = execution_id(machine_name, name)
        summary = {
            "_id": exec_id,
            "stateMachine": machine_name,
            "name": name,
            "status": "RUNNING",
            "input": _dumps(input_),
            "startDate": now_dt(now),
            "owner": self.engine_id,
            "redriveCount": 0,
        }
        stored = await self.store.insert_execution(summary)
        if stored is not summary:
            return stored  # idempotent start: it runs already, with this input
        run = Run.start(
            m.machine,
            input_,
            execution_id=exec_id,
            name=name,
            state_machine=machine_name,
            now=now,
            **self._run_args(m),
        )
        live = _Live(exec_id, m, run, 0)
        await self._commit_single(live, now)
        return summary

    async def _commit_single(self, live: _Live, now: float) -> None:
        doc = self._transition_doc(live, now)
        lost, failed = await self.store.insert_transitions([doc])
        if lost or failed:
            if failed:
                self.reload[live.id] = set(live.published)
            return
        self.live[live.id] = live
        await self._after_commit([(live, doc, [])])
        self.wake.set()

    # -- events from the broker -------------------------------------------------------------------------
    async def handle_event(self, event: Any) -> tuple[int, dict[str, Any]]:
        kind = event["type"]
        if kind in (RESULT, ERROR, HEARTBEAT):
            return await self._reply(event, kind)
        started = []
        for m in self.machines.values():
            for start in m.spec.starts:
                if all(event.get(k) == v for k, v in start.filter.items()):
                    name = self._name_from(event, start.execution_name)
                    summary = await self.start_execution(m.spec.name, name, _data(event))
                    started.append(summary["_id"])
        if not started:
            return 200, {"ignored": f"no state machine starts on {kind!r}"}
        return 202, {"executions": started}

    @staticmethod
    def _name_from(event: Any, spec: str) -> str:
        if spec.startswith("data."):
            value: Any = _data(event)
            for part in spec[5:].split("."):
                value = value.get(part) if isinstance(value, dict) else None
        else:
            value = event.get(spec)
        if value is None or str(value) == "":
            raise InvalidRequest(f"the event has no {spec} to name the execution with")
        return re.sub(r"[^A-Za-z0-9_.\-]", "-", str(value))[:80]

    async def _reply(self, event: Any, kind: str) -> tuple[int, dict[str, Any]]:
        exec_id = event.get("kfaasexecution")
        request = event.get("kfaasrequest") if kind != HEARTBEAT else event.get("kfaasrequest") or event["id"]
        if not exec_id or not request or not str(request).startswith(f"{exec_id}/"):
            raise InvalidRequest("a task reply needs kfaasexecution and kfaasrequest (the request's id)")
        task_id = str(request)[len(exec_id) + 1 :]
        data = _data(event)
        signal: dict[str, Any] = {
            "_id": f"{exec_id}|{task_id}|{kind.rsplit('.', 1)[1]}",
            "e": exec_id,
            "task": task_id,
        }
        if kind == HEARTBEAT:
            signal["kind"] = "heartbeat"
            signal["_id"] += f"|{event['id']}"
        elif kind == ERROR or (
            isinstance(data, dict)
            and isinstance(data.get("errorType"), str)
            and set(data) <= _LAMBDA_ERROR_KEYS
        ):
            error, cause = _lambda_error(data)
            signal.update(kind="error", error=error, cause=cause)
        else:
            signal.update(kind="result", output=data)
        await self.signal(signal)
        return 200, {"accepted": signal["_id"]}

    async def signal(self, signal: dict[str, Any], timeout: float = 10.0) -> None:
        """Apply a signal durably: by the owner (answering once the transition is stored) or via the inbox."""
        if self.reply_to_request is not None:
            self._arrived[signal["e"]] = time.perf_counter()
        live = self.live.get(signal["e"])
        if live is not None and not self.stopping:
            future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            live.queue.append((signal, future))
            live.queued_signals.add(signal["_id"])
            self.wake.set()
            with contextlib.suppress(TimeoutError):
                if await asyncio.wait_for(asyncio.shield(future), timeout):
                    return
        await self.store.add_signal(signal)

    # -- the commit loop ---------------------------------------------------------------------------------
    async def _commit_loop(self) -> None:  # noqa: PLR0912 (one cycle: collect, store, apply)
        while not self.stopping:
            self.wake.clear()  # before looking: a signal queued from here on wakes the next wait
            now = self.clock()
            batch: list[tuple[_Live, dict[str, Any], list[asyncio.Future[bool]]]] = []
            for live in list(self.live.values()):
                started = time.perf_counter()
                try:
                    item = self._next_transition(live, now)
                    if item is not None and self.cpu_timings is not None:
                        self.cpu_timings.append(time.perf_counter() - started)
                except Exception:
                    log.exception("execution %s: the interpreter failed; giving it up here", live.id)
                    self.live.pop(live.id, None)
                    continue
                if item is not None:
                    batch.append(item)
            if not batch:
                await self._idle(now)
                continue
            try:
                lost, failed = await self.store.insert_transitions([doc for _, doc, _ in batch])
            except Exception as exc:
                log.warning("storing %d transition(s) failed, reloading them: %r", len(batch), exc)
                lost, failed = set(), set(range(len(batch)))
            done = []
            for i, (live, doc, futures) in enumerate(batch):
                if i in lost or i in failed:
                    if i in lost:
                        log.info(
                            "execution %s: transition %s was stored by another engine; leaving it",
                            live.id,
                            doc["n"],
                        )
                    else:
                        self.reload[live.id] = set(
                            live.published
                        )  # loaded again from its last stored transition
                    self.live.pop(live.id, None)
                    for f in futures:
                        if not f.done():
                            f.set_result(False)
                else:
                    done.append((live, doc, futures))
            if failed:
                await asyncio.sleep(0.5)
            self.transitions_committed += len(done)
            await self._after_commit(done)

    async def _idle(self, now: float) -> None:
        dues = [d for live in self.live.values() if (d := live.run.next_due()) is not None]
        timeout = max(0.0, min(dues) - now) if dues else 1.0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), min(timeout, 1.0))

    def _next_transition(
        self, live: _Live, now: float
    ) -> tuple[_Live, dict[str, Any], list[asyncio.Future[bool]]] | None:
        run = live.run
        futures: list[asyncio.Future[bool]] = []
        consumed: list[str] = []
        while live.queue:
            signal, future = live.queue.popleft()
            live.queued_signals.discard(signal["_id"])
            if future is not None:
                futures.append(future)
            consumed.append(signal["_id"])
            if self._apply(run, signal, now):
                return live, self._transition_doc(live, now, consumed), futures
        if futures or consumed:  # only stale signals: nothing to store, they are answered
            for f in futures:
                if not f.done():
                    f.set_result(True)
            if consumed:
                self.spawn(self.store.delete_signals(consumed))
        if run.done:
            return None
        timers = run.due_timers(now)
        if timers:
            run.on_timer(*timers[0], now)
            return live, self._transition_doc(live, now), []
        ready = run.runnable()
        if ready:
            run.step(ready[0], now)
            return live, self._transition_doc(live, now), []
        return None

    @staticmethod
    def _apply(run: Run, signal: dict[str, Any], now: float) -> bool:  # noqa: PLR0911 (one per signal kind)
        kind = signal["kind"]
        if kind == "result":
            return run.on_result(signal["task"], signal.get("output"), now)
        if kind == "error":
            return run.on_error(signal["task"], signal["error"], signal.get("cause"), now)
        if kind == "heartbeat":
            return run.on_heartbeat(signal["task"], now)
        if kind == "stop":
            if run.done:
                return False
            run.stop(now, error=signal.get("error"), cause=signal.get("cause"))
            return True
        if kind == "redrive":
            if run.status not in ("FAILED", "TIMED_OUT", "ABORTED"):
                return False
            try:
                run.redrive(now)
            except ValueError as exc:
                log.warning("execution %s: redrive refused: %s", run.doc["context"]["Execution"]["Id"], exc)
                return False
            return True
        return False

    def _transition_doc(self, live: _Live, now: float, consumed: list[str] | None = None) -> dict[str, Any]:
        n = live.n + 1
        doc = {
            "_id": f"{live.id}#{n:010d}",
            "e": live.id,
            "n": n,
            "at": now,
            "events": _dumps(live.run.events),
            "state": _dumps(live.run.doc),
            "consumed": consumed or [],
            "first": live.run.events[0]["type"] if live.run.events else None,
        }
        live.run.events = []
        return doc

    async def _after_commit(
        self, done: list[tuple[_Live, dict[str, Any], list[asyncio.Future[bool]]]]
    ) -> None:
        for live, doc, futures in done:
            live.n = doc["n"]
            for f in futures:
                if not f.done():
                    f.set_result(True)
            if doc["consumed"]:
                self.spawn(self.store.delete_signals(doc["consumed"]))
            run = live.run
            if run.done:
                self.live.pop(live.id, None)
                self.spawn(self._finish(live))
                continue
            for task in run.tasks():
                if task["id"] not in live.published:
                    live.published.add(task["id"])
                    self.spawn(self._publish(live, task))
            if doc["first"] == "ExecutionRedriven":
                self.spawn(self.store.update(live.id, {"status": "RUNNING"}, {"owner": self.engine_id}))

    async def _finish(self, live: _Live) -> None:
        doc = live.run.doc
        fields = {
            "status": doc["status"],
            "output": _dumps(doc.get("output")) if doc["status"] == "SUCCEEDED" else None,
            "error": doc.get("error"),
            "cause": doc.get("cause"),
            "lastError": doc.get("lastError"),
            "stopDate": now_dt(doc.get("stoppedAt", self.clock())),
            "owner": None,
            "transitions": live.n,
            "redriveCount": doc.get("redriveCount", 0),
        }
        for attempt in range(20):
            try:
                await self.store.update(live.id, fields)
                return
            except Exception as exc:
                log.warning("execution %s: storing its end failed (%r); retrying", live.id, exc)
                await asyncio.sleep(min(5.0, 0.2 * 2**attempt))

    async def _publish(self, live: _Live, task: dict[str, Any]) -> None:
        """Send one task request to the broker ingress, until it is accepted or the task is over."""
        from cloudevents.conversion import to_binary
        from cloudevents.http import CloudEvent

        from kfaas.spec import function_name

        attributes = {
            "type": REQUEST,
            "source": f"/kfaas/saga/{live.machine.spec.name}",
            "id": f"{live.id}/{task['id']}",
            "kfaasfunction": function_name(task["resource"]) or task["resource"],
            "kfaasexecution": live.id,
            "datacontenttype": "application/json",
        }
        headers, body = to_binary(CloudEvent(attributes, task["payload"]))
        delay = 0.2
        while not self.stopping:
            current = self.live.get(live.id)
            if current is None or task["id"] not in {t["id"] for t in current.run.tasks()}:
                return
            try:
                response = await self.http.post(self.sink, headers=headers, content=body)
                if response.status_code < 300:
                    arrived = self._arrived.pop(live.id, None)
                    if arrived is not None and self.reply_to_request is not None:
                        self.reply_to_request.append(time.perf_counter() - arrived)
                    return
                log.warning(
                    "task %s: the broker answered %s: %s",
                    attributes["id"],
                    response.status_code,
                    response.text[:200],
                )
            except Exception as exc:
                log.warning("task %s: the broker did not answer: %r", attributes["id"], exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    # -- ownership ----------------------------------------------------------------------------------
    async def _membership_loop(self) -> None:
        beat = 0
        while not self.stopping:
            try:
                now = self.clock()
                await self.store.heartbeat(self.engine_id, self.url, now)
                if beat % 2 == 0:
                    await self._claim(now)
                for exec_id, published in list(self.reload.items()):
                    self.reload.pop(exec_id, None)
                    summary = await self.store.get(exec_id)
                    if (
                        summary is not None
                        and summary.get("owner") == self.engine_id
                        and exec_id not in self.live
                    ):
                        await self._load(summary, published)
                if beat % 10 == 5:
                    mine = await self.store.owned_by(self.engine_id)
                    for exec_id in [e for e in self.live if e not in mine]:
                        log.info("execution %s is owned elsewhere now; leaving it", exec_id)
                        self.live.pop(exec_id, None)
            except Exception as exc:
                log.warning("saga membership: %r", exc)
            beat += 1
            await asyncio.sleep(self.lease / 5)

    async def _claim(self, now: float) -> None:
        engines = await self.store.engines_list()
        dead = [
            e["_id"] for e in engines if e["_id"] != self.engine_id and e.get("alive", 0) < now - self.lease
        ]
        alive = {e["_id"] for e in engines if e.get("alive", 0) >= now - self.lease}
        known = {e["_id"] for e in engines}
        candidates = await self.store.claimable(dead)
        for summary in candidates:
            previous = summary.get("owner")
            if previous in alive or (previous is not None and previous not in known and previous not in dead):
                continue
            if summary["_id"] in self.live or summary["_id"] in self.loading:
                continue
            claimed = await self.store.claim(summary["_id"], previous, self.engine_id)
            if claimed is not None:
                log.info("execution %s: taken over from %s", summary["_id"], previous or "nobody")
                self.loading.add(summary["_id"])
                try:
                    await self._load(claimed)
                finally:
                    self.loading.discard(summary["_id"])
        for doc in dead:
            with contextlib.suppress(Exception):
                if not await self.store.claimable([doc], limit=1):
                    await self.store.forget_engine(doc)

    async def _load(self, summary: dict[str, Any], published: set[str] | None = None) -> None:
        m = self.machines.get(summary["stateMachine"])
        if m is None:
            log.error(
                "execution %s: state machine %s is not known to this engine",
                summary["_id"],
                summary["stateMachine"],
            )
            return
        latest = await self.store.latest(summary["_id"])
        if latest is None:
            start = summary["startDate"].timestamp()
            run = Run.start(
                m.machine,
                json.loads(summary["input"]),
                execution_id=summary["_id"],
                name=summary["name"],
                state_machine=m.spec.name,
                now=start,
                **self._run_args(m),
            )
            await self._commit_single(_Live(summary["_id"], m, run, 0), self.clock())
            return
        n, state = latest
        run = Run(m.machine, state, **self._run_args(m))
        live = _Live(summary["_id"], m, run, n)
        if run.done and summary.get("redriveCount", 0) > run.doc.get("redriveCount", 0):
            live.queue.append(
                ({"_id": f"{live.id}|redrive|{summary['redriveCount']}", "kind": "redrive"}, None)
            )
        elif run.done:
            await self._finish(live)
            return
        for signal in await self.store.signals_of(live.id):
            live.queue.append((signal, None))
            live.queued_signals.add(signal["_id"])
        self.live[live.id] = live
        live.published = set(published or ())
        for task in run.tasks():
            if task["id"] not in live.published:  # an engine taking over sends every task still waiting
                live.published.add(task["id"])
                self.spawn(self._publish(live, task))
        self.wake.set()

    async def _signal_loop(self) -> None:
        while not self.stopping:
            try:
                for signal in await self.store.pending_signals():
                    live = self.live.get(signal["e"])
                    if live is not None and signal["_id"] not in live.queued_signals:
                        live.queue.append((signal, None))
                        live.queued_signals.add(signal["_id"])
                        self.wake.set()
            except Exception as exc:
                log.warning("saga signals: %r", exc)
            await asyncio.sleep(self.poll)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _data(event: Any) -> Any:
    data = event.get_data() if hasattr(event, "get_data") else event.data
    if isinstance(data, bytes | bytearray):
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return data.decode(errors="replace")
    return data


def _lambda_error(data: Any) -> tuple[str, str | None]:
    """(error, cause) of an error reply, as Step Functions reports a Lambda error."""
    if isinstance(data, dict):
        error = data.get("errorType") or "States.TaskFailed"
        cause = json.dumps(
            {k: data[k] for k in ("errorMessage", "errorType", "stackTrace") if k in data},
            separators=(",", ":"),
        )
        return str(error), cause
    return "States.TaskFailed", None if data is None else str(data)
