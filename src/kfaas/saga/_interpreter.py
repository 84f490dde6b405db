"""The interpreter: a pure transition function over an execution's state, one JSON document.

Nothing here waits, sleeps or does I/O. An execution's state (``Run.doc``) is plain JSON: the running
*frames* (the top level, each Parallel branch and each Map iteration in progress), their current state,
input, retry counts, the task each one waits for and its timers. Every call — :meth:`Run.step` (run the
state a frame has entered), :meth:`Run.on_result` / :meth:`Run.on_error` (a task answered),
:meth:`Run.on_timer` (a Wait, a retry back-off or a timeout is due), :meth:`Run.stop`, :meth:`Run.redrive` —
is one *transition*: it changes the document and appends history events, and the caller persists both before
it asks for the next one. What the caller must do afterwards is read from the document: tasks to invoke
(:meth:`Run.tasks`), the next timer (:meth:`Run.next_due`), frames ready to run (:meth:`Run.runnable`).

The in-memory runner (``_local``) and the durable engine (``_engine``) both drive this same code.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kfaas.saga._definition import (
    ABSENT,
    Catcher,
    Choice,
    Fail,
    Machine,
    MapState,
    Parallel,
    Pass,
    Retrier,
    State,
    Succeed,
    Task,
    Wait,
    parse_timestamp,
)
from kfaas.saga._errors import DATA_LIMIT, HEARTBEAT_TIMEOUT, RUNTIME, TERMINAL, TIMEOUT, StatesError, matches
from kfaas.saga._paths import ROOT_PATH, Path, set_path

__all__ = ["DEFAULT_LIMITS", "Limits", "Run", "iso"]


@dataclass(frozen=True)
class Limits:
    """The quotas an execution is held to (AWS Standard workflows' values by default)."""

    max_history_events: int = 25_000
    max_payload_bytes: int = 256 * 1024
    max_execution_seconds: float = 365 * 24 * 3600.0


DEFAULT_LIMITS = Limits()

_FINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


class Run:
    """One execution: ``Run(machine, doc)`` continues one; ``Run.start(...)`` begins one."""

    def __init__(
        self,
        machine: Machine,
        doc: dict[str, Any],
        *,
        limits: Limits = DEFAULT_LIMITS,
        task_deadline: Callable[[str], float | None] | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.machine = machine
        self.doc = doc
        self.limits = limits
        self.task_deadline = task_deadline or (lambda resource: None)
        self.rand = rand
        self.events: list[dict[str, Any]] = []  # the events of the current transition

    # -- starting --------------------------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        machine: Machine,
        input_: Any,
        *,
        execution_id: str,
        name: str,
        state_machine: str,
        now: float,
        limits: Limits = DEFAULT_LIMITS,
        task_deadline: Callable[[str], float | None] | None = None,
        rand: Callable[[], float] = random.random,
    ) -> Run:
        doc: dict[str, Any] = {
            "status": "RUNNING",
            "seq": 0,
            "frames": {},
            "nextFrame": 1,
            "redriveCount": 0,
            "context": {
                "Execution": {
                    "Id": execution_id,
                    "Input": input_,
                    "Name": name,
                    "StartTime": iso(now),
                    "RedriveCount": 0,
                },
                "StateMachine": {"Id": state_machine, "Name": state_machine},
            },
            "startedAt": now,
            "deadline": now
            + min(machine.timeout_seconds or limits.max_execution_seconds, limits.max_execution_seconds),
        }
        run = cls(machine, doc, limits=limits, task_deadline=task_deadline, rand=rand)
        run._event("ExecutionStarted", now, input=input_)
        if _size(input_) > limits.max_payload_bytes:
            run._end_execution(
                "FAILED",
                now,
                error=StatesError(DATA_LIMIT, run._limit_text("the execution input", "max_payload_bytes")),
            )
            return run
        run._frame("r", None, "", machine.start_at, input_)
        return run

    # -- what the caller reads -------------------------------------------------------------------------
    @property
    def status(self) -> str:
        return str(self.doc["status"])

    @property
    def done(self) -> bool:
        return self.status in _FINAL

    def runnable(self) -> list[str]:
        """Frames whose next step can run now (they entered a state, or a retry is to run)."""
        return [fid for fid, f in self.doc["frames"].items() if f["phase"] in ("enter", "rerun")]

    def tasks(self) -> list[dict[str, Any]]:
        """Every task invocation in flight: ``{id, resource, payload, state, attempt}``."""
        return [f["task"] for f in self.doc["frames"].values() if f["phase"] == "task"]

    def next_due(self) -> float | None:
        """The earliest timer (epoch seconds): a Wait, a retry back-off, a task timeout or the deadline."""
        if self.done:
            return None
        dues = [self.doc["deadline"]]
        for frame in self.doc["frames"].values():
            for key in ("due", "timeoutAt", "heartbeatAt"):
                if frame.get(key) is not None:
                    dues.append(frame[key])
        return float(min(dues))

    def task_frame(self, task_id: str) -> str | None:
        for fid, frame in self.doc["frames"].items():
            if frame["phase"] == "task" and frame["task"]["id"] == task_id:
                return str(fid)
        return None

    # -- transitions -----------------------------------------------------------------------------------
    def step(self, fid: str, now: float) -> None:
        """Run the state frame ``fid`` is in (entered, or to run again after a retry back-off)."""
        frame = self.doc["frames"][fid]
        state = self._state(frame)
        if frame["phase"] == "enter":
            frame["entered"] = self._event(
                f"{state.type}StateEntered", now, name=state.name, input=frame["input"], frame=fid
            )
            frame["enteredAt"] = now
        frame["phase"] = "running"
        try:
            self._run_state(fid, frame, state, now)
        except StatesError as exc:
            self._state_failed(fid, exc, now)

    def on_result(self, task_id: str, output: Any, now: float) -> bool:
        """A task answered; False when no frame waits for it (late, duplicate or cancelled)."""
        fid = self.task_frame(task_id)
        if fid is None:
            return False
        frame = self.doc["frames"][fid]
        state = self._state(frame)
        assert isinstance(state, Task)
        self._clear_task(frame)
        self._event("TaskSucceeded", now, resource=state.resource, output=output, frame=fid)
        try:
            if _size(output) > self.limits.max_payload_bytes:
                raise StatesError(DATA_LIMIT, self._limit_text("the task result", "max_payload_bytes"))
            self._complete(fid, frame, state, output, now)
        except StatesError as exc:
            self._state_failed(fid, exc, now)
        return True

    def on_error(self, task_id: str, error: str, cause: str | None, now: float) -> bool:
        fid = self.task_frame(task_id)
        if fid is None:
            return False
        frame = self.doc["frames"][fid]
        state = self._state(frame)
        self._clear_task(frame)
        self._event(
            "TaskFailed", now, resource=getattr(state, "resource", ""), error=error, cause=cause, frame=fid
        )
        self._state_failed(fid, StatesError(error, cause), now)
        return True

    def on_heartbeat(self, task_id: str, now: float) -> bool:
        fid = self.task_frame(task_id)
        if fid is None:
            return False
        frame = self.doc["frames"][fid]
        if frame.get("heartbeatAt") is not None:
            frame["heartbeatAt"] = now + frame["heartbeatSeconds"]
        return True

    def due_timers(self, now: float) -> list[tuple[str, str]]:
        """``(frame id, timer)`` pairs due at ``now``; ``("", "deadline")`` for the execution's own limit."""
        if self.done:
            return []
        if now >= self.doc["deadline"]:
            return [("", "deadline")]
        out = []
        for fid, frame in self.doc["frames"].items():
            for key in ("due", "timeoutAt", "heartbeatAt"):
                if frame.get(key) is not None and frame[key] <= now:
                    out.append((fid, key))
                    break
        return out

    def on_timer(self, fid: str, timer: str, now: float) -> None:
        """A timer from :meth:`due_timers` fired."""
        if timer == "deadline":
            self._end_execution(
                "TIMED_OUT",
                now,
                error=StatesError(
                    TIMEOUT, "the execution ran longer than its TimeoutSeconds / execution time limit"
                ),
            )
            return
        frame = self.doc["frames"].get(fid)
        if frame is None or frame.get(timer) is None:
            return
        state = self._state(frame)
        if timer == "due":
            frame["due"] = None
            if frame["phase"] == "retry":
                frame["phase"] = "rerun"
                return
            # a Wait state is over
            try:
                self._exit(fid, frame, state, self._output(state, frame["effective"]), now)
            except StatesError as exc:
                self._state_failed(fid, exc, now)
            return
        error = HEARTBEAT_TIMEOUT if timer == "heartbeatAt" else TIMEOUT
        cause = frame["task"].get("deadlineCause") if timer == "timeoutAt" else None
        self._clear_task(frame)
        self._event(
            "TaskTimedOut", now, resource=getattr(state, "resource", ""), error=error, cause=cause, frame=fid
        )
        self._state_failed(fid, StatesError(error, cause), now)

    def stop(self, now: float, error: str | None = None, cause: str | None = None) -> None:
        """StopExecution: the execution ends ABORTED at once; tasks in flight are forgotten."""
        if self.done:
            return
        self._end_execution("ABORTED", now, error=StatesError(error, cause) if error else None)

    def redrive(self, now: float) -> None:
        """RedriveExecution: a failed, timed-out or aborted execution runs again from the state that failed.

        Completed states are kept: every frame that was running when it ended (the failed state, and in a
        Parallel or Map the branches and iterations that had not finished) starts that state again, with its
        input; finished branches and iterations keep their results.
        """
        if self.doc["status"] not in ("FAILED", "TIMED_OUT", "ABORTED"):
            raise ValueError(
                f"only a failed, timed-out or aborted execution can be redriven, not {self.status}"
            )
        frames = self.doc.get("endedFrames") or {}
        if "r" not in frames:
            raise ValueError("this execution ended before any state ran; start a new one instead")
        root = dict(frames["r"])
        for key in ("results", "pending", "nextItem", "running", "items", "effective"):
            root.pop(key, None)
        root.update(
            phase="enter", attempt=0, retries=[], due=None, task=None, timeoutAt=None, heartbeatAt=None
        )
        self.doc.pop("endedFrames")
        self.doc["frames"] = {"r": root}
        self.doc["status"] = "RUNNING"
        self.doc["redriveCount"] += 1
        self.doc["context"]["Execution"]["RedriveCount"] = self.doc["redriveCount"]
        for key in ("output", "error", "cause", "stoppedAt"):
            self.doc.pop(key, None)
        self.doc["deadline"] = now + min(
            self.machine.timeout_seconds or self.limits.max_execution_seconds,
            self.limits.max_execution_seconds,
        )
        self._event("ExecutionRedriven", now, redriveCount=self.doc["redriveCount"])

    # -- internals: frames -------------------------------------------------------------------------------
    def _frame(
        self, fid: str, parent: str | None, machine: str, state: str, input_: Any, **extra: Any
    ) -> None:
        self.doc["frames"][fid] = {
            "id": fid,
            "parent": parent,
            "machine": machine,
            "state": state,
            "input": input_,
            "phase": "enter",
            "attempt": 0,
            "retries": [],
            **extra,
        }

    def _state(self, frame: dict[str, Any]) -> State:
        return self.machine.get(frame["machine"]).states[frame["state"]]

    def _new_id(self, prefix: str) -> str:
        n = self.doc["nextFrame"]
        self.doc["nextFrame"] = n + 1
        return f"{prefix}{n}"

    def _event(self, kind: str, now: float, **details: Any) -> int:
        if self.doc["seq"] >= self.limits.max_history_events and kind not in (
            "ExecutionFailed",
            "ExecutionSucceeded",
            "ExecutionAborted",
            "ExecutionTimedOut",
        ):
            raise _HistoryFull
        self.doc["seq"] += 1
        frame = details.pop("frame", None)
        event: dict[str, Any] = {"id": self.doc["seq"], "type": kind, "timestamp": iso(now)}
        if frame is not None and frame != "r":
            event["frame"] = frame
        event["details"] = {k: v for k, v in details.items() if v is not None or k in ("output", "input")}
        self.events.append(event)
        return int(self.doc["seq"])

    def _context(self, frame: dict[str, Any], state: State) -> dict[str, Any]:
        ctx = dict(self.doc["context"])
        ctx["State"] = {
            "Name": state.name,
            "EnteredTime": iso(frame.get("enteredAt", self.doc["startedAt"])),
            "RetryCount": frame["attempt"],
        }
        item = self._map_item(frame)
        if item is not None:
            ctx["Map"] = {"Item": item}
        if frame["phase"] == "task":
            ctx["Task"] = {"Token": frame["task"]["id"]}
        return ctx

    def _map_item(self, frame: dict[str, Any]) -> dict[str, Any] | None:
        current: dict[str, Any] | None = frame
        while current is not None:
            if "item" in current:
                return dict(current["item"])
            current = self.doc["frames"].get(current["parent"]) if current["parent"] else None
        return None

    # -- internals: running a state ------------------------------------------------------------------------
    def _effective(self, frame: dict[str, Any], state: State) -> Any:
        if state.input_path is None:
            return {}
        if state.input_path is ROOT_PATH:
            return frame["input"]
        return state.input_path.get(frame["input"], self._context(frame, state))

    def _output(self, state: State, value: Any) -> Any:
        if state.output_path is None:
            return {}
        if state.output_path is ROOT_PATH:
            return value
        return state.output_path.get(value, self.doc["context"])

    def _result_into(self, frame: dict[str, Any], path: Path | None, result: Any) -> Any:
        if path is None:
            return frame["input"]
        if path is ROOT_PATH:
            return result
        return set_path(frame["input"], path, result)

    def _run_state(self, fid: str, frame: dict[str, Any], state: State, now: float) -> None:
        if isinstance(state, Pass):
            effective = self._effective(frame, state)
            if state.parameters is not None:
                effective = state.parameters.apply(effective, self._context(frame, state))
            result = effective if state.result is ABSENT else state.result
            self._exit(
                fid,
                frame,
                state,
                self._output(state, self._result_into(frame, state.result_path, result)),
                now,
            )
        elif isinstance(state, Task):
            self._schedule(fid, frame, state, now)
        elif isinstance(state, Choice):
            effective = self._effective(frame, state)
            ctx = self._context(frame, state)
            target = next((n for rule, n in state.choices if rule(effective, ctx)), state.default)
            if target is None:
                raise StatesError(
                    "States.NoChoiceMatched", f"no choice rule matched and {state.name} has no Default"
                )
            self._event(
                "ChoiceStateExited", now, name=state.name, output=self._output(state, effective), frame=fid
            )
            self._goto(fid, frame, target, self._output(state, effective))
        elif isinstance(state, Wait):
            self._wait(frame, state, now)
        elif isinstance(state, Succeed):
            self._exit(fid, frame, state, self._output(state, self._effective(frame, state)), now, final=True)
        elif isinstance(state, Fail):
            ctx = self._context(frame, state)
            error = state.error_path(frame["input"], ctx) if state.error_path else state.error
            cause = state.cause_path(frame["input"], ctx) if state.cause_path else state.cause
            raise StatesError(
                str(error) if error is not None else "", str(cause) if cause is not None else None
            )
        elif isinstance(state, Parallel):
            effective = self._effective(frame, state)
            if state.parameters is not None:
                effective = state.parameters.apply(effective, self._context(frame, state))
            self._event("ParallelStateStarted", now, name=state.name, frame=fid)
            frame.update(phase="children", results=[None] * len(state.branches), pending=len(state.branches))
            for i, branch in enumerate(state.branches):
                self._frame(self._new_id(f"{fid}.p"), fid, branch.key, branch.start_at, effective, slot=i)
        elif isinstance(state, MapState):
            self._start_map(fid, frame, state, now)

    def _schedule(self, fid: str, frame: dict[str, Any], state: Task, now: float) -> None:
        effective = self._effective(frame, state)
        frame["phase"] = "task"
        frame["task"] = {"id": "", "resource": state.resource}
        ctx = self._context(frame, state)
        payload = state.parameters.apply(effective, ctx) if state.parameters is not None else effective
        if _size(payload) > self.limits.max_payload_bytes:
            frame["phase"], frame["task"] = "running", None
            raise StatesError(DATA_LIMIT, self._limit_text("the task input", "max_payload_bytes"))
        attempt = frame["attempt"]
        task = {
            "id": f"{frame['entered']}.{attempt}",
            "resource": state.resource,
            "payload": payload,
            "state": state.name,
            "attempt": attempt,
        }
        timeout = state.timeout_seconds
        if state.timeout_path is not None:
            timeout = self._positive(state.timeout_path.get(effective, ctx), "TimeoutSecondsPath")
        heartbeat = state.heartbeat_seconds
        if state.heartbeat_path is not None:
            heartbeat = self._positive(state.heartbeat_path.get(effective, ctx), "HeartbeatSecondsPath")
        if timeout is None:
            timeout = self.task_deadline(state.resource)
            if timeout is not None:
                task["deadlineCause"] = (
                    f"no answer from {state.resource} within {timeout:g}s (its timeout and its trigger's retries)"
                )
        frame["task"] = task
        frame["timeoutAt"] = now + timeout if timeout is not None else None
        frame["heartbeatSeconds"] = heartbeat
        frame["heartbeatAt"] = now + heartbeat if heartbeat is not None else None
        self._event(
            "TaskScheduled",
            now,
            resource=state.resource,
            parameters=payload,
            timeoutInSeconds=timeout,
            heartbeatInSeconds=heartbeat,
            frame=fid,
        )

    @staticmethod
    def _positive(value: Any, field: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise StatesError(
                RUNTIME, f"The {field} parameter references a value that is not a positive number: {value!r}"
            )
        return float(value)

    def _clear_task(self, frame: dict[str, Any]) -> None:
        frame["phase"] = "running"
        frame["task"] = None
        frame["timeoutAt"] = frame["heartbeatAt"] = None

    def _complete(
        self, fid: str, frame: dict[str, Any], state: Task | Parallel | MapState, result: Any, now: float
    ) -> None:
        """A Task, Parallel or Map produced its result: ResultSelector, ResultPath, OutputPath, then on."""
        if state.result_selector is not None:
            result = state.result_selector.apply(result, self._context(frame, state))
        self._exit(
            fid, frame, state, self._output(state, self._result_into(frame, state.result_path, result)), now
        )

    def _wait(self, frame: dict[str, Any], state: Wait, now: float) -> None:
        effective = self._effective(frame, state)
        ctx = self._context(frame, state)
        if state.seconds is not None:
            due = now + state.seconds
        elif state.timestamp is not None:
            due = state.timestamp.timestamp()
        elif state.seconds_path is not None:
            value = state.seconds_path.get(effective, ctx)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise StatesError(
                    RUNTIME,
                    f"The SecondsPath parameter does not reference a number: {state.seconds_path.text} == {json.dumps(value)}",
                )
            if value < 0:
                raise StatesError(
                    RUNTIME,
                    f"The SecondsPath parameter references a negative value: {state.seconds_path.text} == {json.dumps(value)}",
                )
            due = now + float(value)
        else:
            assert state.timestamp_path is not None
            value = state.timestamp_path.get(effective, ctx)
            try:
                due = parse_timestamp(value).timestamp()
            except ValueError:
                raise StatesError(
                    RUNTIME,
                    f"The TimestampPath parameter does not reference a valid ISO-8601 timestamp: {json.dumps(value)}",
                ) from None
        frame.update(phase="wait", due=due, effective=effective)

    def _start_map(self, fid: str, frame: dict[str, Any], state: MapState, now: float) -> None:
        effective = self._effective(frame, state)
        items = state.items_path.get(effective, self._context(frame, state))
        if not isinstance(items, list):
            raise StatesError(
                RUNTIME, f"Map: the ItemsPath {state.items_path.text} does not reference an array"
            )
        self._event("MapStateStarted", now, name=state.name, length=len(items), frame=fid)
        frame.update(
            phase="children",
            results=[None] * len(items),
            pending=len(items),
            nextItem=0,
            running=0,
            effective=effective,
            items=items,
        )
        if not items:
            self._children_done(fid, frame, state, now)
            return
        self._fill_map(fid, frame, state, now)

    def _fill_map(self, fid: str, frame: dict[str, Any], state: MapState, now: float) -> None:
        limit = state.max_concurrency or len(frame["items"])
        assert state.iterator is not None
        while frame["nextItem"] < len(frame["items"]) and frame["running"] < limit:
            index = frame["nextItem"]
            frame["nextItem"] = index + 1
            frame["running"] += 1
            item = {"Index": index, "Value": frame["items"][index]}
            ctx = self._context(frame, state)
            ctx["Map"] = {"Item": item}
            iteration_input = (
                state.item_selector.apply(frame["effective"], ctx)
                if state.item_selector is not None
                else item["Value"]
            )
            self._event("MapIterationStarted", now, name=state.name, index=index, frame=fid)
            self._frame(
                self._new_id(f"{fid}.m"),
                fid,
                state.iterator.key,
                state.iterator.start_at,
                iteration_input,
                slot=index,
                item=item,
            )

    def _children_done(self, fid: str, frame: dict[str, Any], state: Parallel | MapState, now: float) -> None:
        results = frame["results"]
        for key in ("results", "pending", "nextItem", "running", "items", "effective"):
            frame.pop(key, None)
        frame["phase"] = "running"
        self._event(f"{state.type}StateSucceeded", now, name=state.name, frame=fid)
        self._complete(fid, frame, state, results, now)

    def _exit(
        self, fid: str, frame: dict[str, Any], state: State, output: Any, now: float, *, final: bool = False
    ) -> None:
        if _size(output) > self.limits.max_payload_bytes:
            raise StatesError(
                DATA_LIMIT, self._limit_text(f"the output of state {state.name}", "max_payload_bytes")
            )
        self._event(f"{state.type}StateExited", now, name=state.name, output=output, frame=fid)
        if final or state.end:
            self._frame_done(fid, output, now)
        else:
            assert state.next is not None
            self._goto(fid, frame, state.next, output)

    def _goto(self, fid: str, frame: dict[str, Any], target: str, input_: Any) -> None:
        frame.update(
            state=target,
            input=input_,
            phase="enter",
            attempt=0,
            retries=[],
            due=None,
            task=None,
            timeoutAt=None,
            heartbeatAt=None,
        )
        frame.pop("effective", None)

    # -- internals: ends -------------------------------------------------------------------------------
    def _frame_done(self, fid: str, output: Any, now: float) -> None:
        frame = self.doc["frames"].pop(fid)
        parent_id = frame["parent"]
        if parent_id is None:
            self.doc["output"] = output
            self._end_execution("SUCCEEDED", now)
            return
        parent = self.doc["frames"][parent_id]
        state = self._state(parent)
        assert isinstance(state, Parallel | MapState)
        parent["results"][frame["slot"]] = output
        parent["pending"] -= 1
        if isinstance(state, MapState):
            parent["running"] -= 1
            self._event("MapIterationSucceeded", now, name=state.name, index=frame["slot"], frame=parent_id)
        try:
            if parent["pending"] == 0:
                self._children_done(parent_id, parent, state, now)
            elif isinstance(state, MapState):
                self._fill_map(parent_id, parent, state, now)
        except StatesError as exc:
            self._state_failed(parent_id, exc, now)

    def _drop_children(self, fid: str) -> None:
        for child in [c for c, f in self.doc["frames"].items() if f["parent"] == fid]:
            self._drop_children(child)
            self.doc["frames"].pop(child, None)

    def _state_failed(self, fid: str, error: StatesError, now: float) -> None:
        """The state of frame ``fid`` failed: retry it, catch it, or fail the frame."""
        frame = self.doc["frames"][fid]
        state = self._state(frame)
        if not isinstance(state, Fail):  # the error that sent the execution down its failure path
            self.doc["lastError"] = {"state": state.name, "error": error.error, "cause": error.cause}
        if error.error in TERMINAL:
            self._end_execution("FAILED", now, error=self._runtime(error, frame))
            return
        retriers: list[Retrier] = getattr(state, "retry", [])
        for i, retrier in enumerate(retriers):
            if matches(retrier.error_equals, error.error):
                counts = frame["retries"] + [0] * (len(retriers) - len(frame["retries"]))
                if counts[i] < retrier.max_attempts:
                    delay = retrier.delay(counts[i], self.rand)
                    counts[i] += 1
                    self._drop_children(fid)
                    frame.update(
                        retries=counts,
                        attempt=frame["attempt"] + 1,
                        phase="retry",
                        due=now + delay,
                        task=None,
                        timeoutAt=None,
                        heartbeatAt=None,
                    )
                    for key in ("results", "pending", "nextItem", "running", "items", "effective"):
                        frame.pop(key, None)
                    return
                break
        catchers: list[Catcher] = getattr(state, "catch", [])
        for catcher in catchers:
            if matches(catcher.error_equals, error.error):
                self._drop_children(fid)
                for key in ("results", "pending", "nextItem", "running", "items", "effective"):
                    frame.pop(key, None)
                try:
                    output = self._result_into(frame, catcher.result_path, error.as_output())
                except StatesError as exc:
                    self._end_execution("FAILED", now, error=self._runtime(exc, frame))
                    return
                self._event(f"{state.type}StateExited", now, name=state.name, output=output, frame=fid)
                self._goto(fid, frame, catcher.next, output)
                return
        if isinstance(state, Parallel | MapState):
            self._event(
                f"{state.type}StateFailed",
                now,
                name=state.name,
                error=error.error,
                cause=error.cause,
                frame=fid,
            )
        self._frame_failed(fid, error, now)

    def _frame_failed(self, fid: str, error: StatesError, now: float) -> None:
        frame = self.doc["frames"][fid]
        parent_id = frame["parent"]
        if parent_id is None:
            self._end_execution("FAILED", now, error=error)
            return
        parent = self.doc["frames"][parent_id]
        pstate = self._state(parent)
        if isinstance(pstate, MapState):
            self._event("MapIterationFailed", now, name=pstate.name, index=frame["slot"], frame=parent_id)
        self._drop_children(parent_id)
        self._state_failed(parent_id, error, now)

    def _runtime(self, error: StatesError, frame: dict[str, Any]) -> StatesError:
        if error.error != RUNTIME or (error.cause or "").startswith("An error occurred"):
            return error
        state = frame["state"]
        return StatesError(
            RUNTIME,
            f"An error occurred while executing the state '{state}' (entered at the event id #{frame.get('entered')}). "
            f"{error.cause}",
        )

    def _limit_text(self, what: str, limit: str) -> str:
        value = getattr(self.limits, limit)
        return f"{what} is larger than the payload limit of {value} bytes ({limit})"

    def _end_execution(self, status: str, now: float, error: StatesError | None = None) -> None:
        root = self.doc["frames"].get("r")
        if status != "SUCCEEDED" and root is not None:
            # a redrive starts the top-level state that was running again, with the input it had
            self.doc["endedFrames"] = {"r": root}
        self.doc["frames"] = {}
        self.doc["status"] = status
        self.doc["stoppedAt"] = now
        if error is not None:
            self.doc["error"] = error.error or None  # a Fail state without Error: no error at all, as on AWS
            self.doc["cause"] = error.cause
        kind = {
            "SUCCEEDED": "ExecutionSucceeded",
            "FAILED": "ExecutionFailed",
            "TIMED_OUT": "ExecutionTimedOut",
            "ABORTED": "ExecutionAborted",
        }[status]
        if status == "SUCCEEDED":
            details: dict[str, Any] = {"output": self.doc.get("output")}
        else:
            details = {k: self.doc[k] for k in ("error", "cause") if self.doc.get(k) is not None}
        self.doc["seq"] += 1
        self.events.append({"id": self.doc["seq"], "type": kind, "timestamp": iso(now), "details": details})


class _HistoryFull(Exception):
    """The history reached its limit: the execution fails (it cannot record anything more)."""


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a full history into the execution's failure, naming the limit."""
    import functools

    @functools.wraps(method)
    def wrapper(self: Run, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except _HistoryFull:
            now = float(kwargs.get("now", args[-1] if args else 0.0))
            self._end_execution(
                "FAILED",
                now,
                error=StatesError(
                    RUNTIME,
                    f"the execution history reached its limit of {self.limits.max_history_events} events "
                    "(max_history_events)",
                ),
            )
            return None

    return wrapper


for _name in ("step", "on_result", "on_error", "on_timer", "stop", "redrive"):
    setattr(Run, _name, _guarded(getattr(Run, _name)))
