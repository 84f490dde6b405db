"""A state machine definition: validated (every problem listed) and compiled once before it runs.

Validation is statelint's (the Python port of awslabs/statelint: required and allowed fields, their types,
transitions, ``States.ALL`` last, reachability) plus what only compiling shows: every path, payload template,
intrinsic call and Choice rule is parsed here, so a definition that would fail at its first transition is
refused before it starts. statelint's own JSONPath checks are left out: it rejects filters and names that
AWS accepts (``$.x[?(@.year == 1997)]``, ``$.delivery-partner``); python-jsonpath decides instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kfaas.saga._errors import ALL, StatesError
from kfaas.saga._paths import ROOT_PATH, Path, PathSyntaxError, compile_path
from kfaas.saga._templates import Template, compile_template

__all__ = [
    "ABSENT",
    "Catcher",
    "Choice",
    "DefinitionError",
    "Fail",
    "Machine",
    "MapState",
    "Parallel",
    "Pass",
    "Retrier",
    "State",
    "Succeed",
    "Task",
    "Wait",
    "compile_definition",
]

ROOT = ROOT_PATH
STATE_TYPES = ("Pass", "Task", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map")


class DefinitionError(ValueError):
    """A definition that cannot run; ``problems`` lists every problem found, each naming where it is."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            f"the state machine definition has {len(problems)} problem(s):\n  - " + "\n  - ".join(problems)
        )
        self.problems = problems


ABSENT = object()  # a Pass state without Result


@dataclass(frozen=True)
class Retrier:
    error_equals: list[str]
    interval: float = 1.0
    max_attempts: int = 3
    backoff: float = 2.0
    max_delay: float | None = None
    jitter: bool = False

    def delay(self, retries_done: int, rand: Callable[[], float]) -> float:
        """Seconds before the retry that follows ``retries_done`` earlier ones of this retrier."""
        seconds = self.interval * self.backoff**retries_done
        if self.max_delay is not None:
            seconds = min(seconds, self.max_delay)
        return seconds * rand() if self.jitter else seconds


@dataclass(frozen=True)
class Catcher:
    error_equals: list[str]
    next: str
    result_path: Path | None


@dataclass
class State:
    name: str
    type: str
    next: str | None = None
    end: bool = False
    input_path: Path | None = ROOT  # None: JSON null (the state sees {})
    output_path: Path | None = ROOT


@dataclass
class Pass(State):
    parameters: Template | None = None
    result: Any = ABSENT
    result_path: Path | None = ROOT


@dataclass
class Task(State):
    resource: str = ""
    parameters: Template | None = None
    result_selector: Template | None = None
    result_path: Path | None = ROOT
    retry: list[Retrier] = field(default_factory=list)
    catch: list[Catcher] = field(default_factory=list)
    timeout_seconds: float | None = None
    timeout_path: Path | None = None
    heartbeat_seconds: float | None = None
    heartbeat_path: Path | None = None


Rule = Callable[[Any, Any], bool]


@dataclass
class Choice(State):
    choices: list[tuple[Rule, str]] = field(default_factory=list)
    default: str | None = None


@dataclass
class Wait(State):
    seconds: float | None = None
    timestamp: datetime | None = None
    seconds_path: Path | None = None
    timestamp_path: Path | None = None


@dataclass
class Succeed(State):
    pass


@dataclass
class Fail(State):
    error: str | None = None
    cause: str | None = None
    error_path: Callable[[Any, Any], Any] | None = None
    cause_path: Callable[[Any, Any], Any] | None = None


@dataclass
class Parallel(State):
    branches: list[Machine] = field(default_factory=list)
    parameters: Template | None = None
    result_selector: Template | None = None
    result_path: Path | None = ROOT
    retry: list[Retrier] = field(default_factory=list)
    catch: list[Catcher] = field(default_factory=list)


@dataclass
class MapState(State):
    iterator: Machine | None = None
    items_path: Path = ROOT
    item_selector: Template | None = None
    max_concurrency: int = 0
    result_selector: Template | None = None
    result_path: Path | None = ROOT
    retry: list[Retrier] = field(default_factory=list)
    catch: list[Catcher] = field(default_factory=list)


@dataclass
class Machine:
    """One ``{StartAt, States}`` block: the top level, a Parallel branch or a Map's item processor."""

    key: str  # where it sits: "" for the top level, "<parent>/<state>/<branch index|it>" below
    start_at: str
    states: dict[str, State]
    timeout_seconds: float | None = None
    children: dict[str, Machine] = field(default_factory=dict)  # every nested machine by key (top level only)

    def get(self, key: str) -> Machine:
        return self if key == self.key else self.children[key]


def compile_definition(definition: Any, *, lint: bool = True) -> Machine:
    """Validate and compile; raises DefinitionError listing every problem."""
    problems: list[str] = []
    if not isinstance(definition, dict):
        raise DefinitionError(["the definition must be a JSON object with StartAt and States"])
    if lint:
        problems += _statelint(definition)
    children: dict[str, Machine] = {}
    root = _Compiler(problems, children).machine(definition, "", "State Machine")
    if problems:
        raise DefinitionError(list(dict.fromkeys(problems)))
    assert root is not None
    root.children = children
    return root


def _statelint(definition: dict[str, Any]) -> list[str]:
    from statelint.config import Config
    from statelint.nodes.factory.factory import StateFactory
    from statelint.nodes.state_machine import StateMachine
    from statelint.problem import ProblemType

    # paths and resources are checked when compiling (python-jsonpath; kfaas's resource names), and
    # integers are as good as floats for BackoffRate
    ignored = {
        ProblemType.FLOAT,
        ProblemType.URI,
        ProblemType.JSON_PATH,
        ProblemType.REFERENCE_PATH,
        ProblemType.REFERENCE_PATH_OR_FUNC,
    }
    try:
        found = StateMachine(StateFactory(), definition, Config()).validate()
    except Exception as exc:  # a structure statelint cannot walk: report it, compiling lists the rest
        return [f"statelint could not check the definition: {exc!r}"]
    return [str(p) for p in found if p.type not in ignored and "is not a JSONPath" not in str(p)]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Compiler:
    def __init__(self, problems: list[str], children: dict[str, Machine]) -> None:
        self.problems = problems
        self.children = children

    def problem(self, where: str, text: str) -> None:
        self.problems.append(f"{where}: {text}")

    def path(self, where: str, value: Any, *, reference: bool = False, nullable: bool = True) -> Path | None:
        if value is None and nullable:
            return None
        try:
            return compile_path(value, reference=reference)
        except PathSyntaxError as exc:
            self.problem(where, str(exc))
            return ROOT

    def template(self, where: str, value: Any) -> Template | None:
        if value is None:
            return None
        try:
            return compile_template(value, where)
        except PathSyntaxError as exc:
            self.problem(where, str(exc))
            return None

    def machine(self, block: Any, key: str, where: str) -> Machine | None:
        if not isinstance(block, dict):
            self.problem(where, "must be an object with StartAt and States")
            return None
        start_at = block.get("StartAt")
        states_raw = block.get("States")
        if not isinstance(start_at, str):
            self.problem(where, "StartAt is missing (the name of the first state)")
        if not isinstance(states_raw, dict) or not states_raw:
            self.problem(where, "States is missing or empty")
            states_raw = {}
        states: dict[str, State] = {}
        for name, raw in states_raw.items():
            state = self.state(name, raw, key, f"{where}.States.{name}")
            if state is not None:
                states[name] = state
        names = set(states_raw)
        if isinstance(start_at, str) and start_at not in names:
            self.problem(
                where, f"StartAt names {start_at!r}, which is not a state (states: {', '.join(names)})"
            )
        for state in states.values():
            targets = [state.next] if state.next else []
            if isinstance(state, Choice):
                targets += [n for _, n in state.choices] + ([state.default] if state.default else [])
            for catcher in getattr(state, "catch", []):
                targets.append(catcher.next)
            for target in targets:
                if target not in names:
                    self.problem(
                        f"{where}.States.{state.name}", f"Next names {target!r}, which is not a state"
                    )
        timeout = block.get("TimeoutSeconds")
        machine = Machine(key, start_at if isinstance(start_at, str) else "", states, timeout)
        if key:
            self.children[key] = machine
        return machine

    def state(self, name: str, raw: Any, key: str, where: str) -> State | None:  # noqa: PLR0911, PLR0912
        if not isinstance(raw, dict):
            self.problem(where, "must be an object")
            return None
        kind = raw.get("Type")
        if kind not in STATE_TYPES:
            self.problem(where, f"unknown state type {kind!r} (one of {', '.join(STATE_TYPES)})")
            return None
        if len(name) > 80:
            self.problem(where, "a state name is at most 80 characters")
        base: dict[str, Any] = {"name": name, "type": kind}
        if kind not in ("Choice", "Succeed", "Fail"):
            base["next"] = raw.get("Next")
            base["end"] = bool(raw.get("End", False))
            if not base["next"] and not base["end"]:
                self.problem(where, "needs Next or End: true")
        if kind != "Fail":
            base["input_path"] = self.path(f"{where}.InputPath", raw.get("InputPath", "$"))
            base["output_path"] = self.path(f"{where}.OutputPath", raw.get("OutputPath", "$"))
        if kind == "Pass":
            return Pass(
                **base,
                parameters=self.template(f"{where}.Parameters", raw.get("Parameters")),
                result=raw.get("Result", ABSENT),
                result_path=self.path(f"{where}.ResultPath", raw.get("ResultPath", "$"), reference=True),
            )
        if kind == "Task":
            return self.task(raw, base, where)
        if kind == "Choice":
            return self.choice(raw, base, where)
        if kind == "Wait":
            return self.wait(raw, base, where)
        if kind == "Succeed":
            return Succeed(**base)
        if kind == "Fail":
            return self.fail(raw, base, where)
        if kind == "Parallel":
            branches_raw = raw.get("Branches")
            branches = []
            if not isinstance(branches_raw, list) or not branches_raw:
                self.problem(where, "Branches must be a non-empty array")
                branches_raw = []
            for i, branch in enumerate(branches_raw):
                machine = self.machine(branch, f"{key}/{name}/{i}", f"{where}.Branches[{i}]")
                if machine is not None:
                    branches.append(machine)
            return Parallel(
                **base,
                branches=branches,
                parameters=self.template(f"{where}.Parameters", raw.get("Parameters")),
                result_selector=self.template(f"{where}.ResultSelector", raw.get("ResultSelector")),
                result_path=self.path(f"{where}.ResultPath", raw.get("ResultPath", "$"), reference=True),
                retry=self.retriers(raw, where),
                catch=self.catchers(raw, where),
            )
        return self.map(raw, base, key, where)

    def retriers(self, raw: dict[str, Any], where: str) -> list[Retrier]:
        out: list[Retrier] = []
        items = raw.get("Retry", [])
        if not isinstance(items, list):
            self.problem(where, "Retry must be an array")
            return out
        for i, item in enumerate(items):
            w = f"{where}.Retry[{i}]"
            if not isinstance(item, dict):
                self.problem(w, "must be an object")
                continue
            errors = self.error_equals(item, w, last=i == len(items) - 1)
            max_delay = item.get("MaxDelaySeconds")
            jitter = item.get("JitterStrategy", "NONE")
            if jitter not in ("FULL", "NONE"):
                self.problem(w, f"JitterStrategy must be FULL or NONE, not {jitter!r}")
            interval, attempts, backoff = (
                item.get("IntervalSeconds", 1),
                item.get("MaxAttempts", 3),
                item.get("BackoffRate", 2.0),
            )
            if not _number(interval) or interval < 1:
                self.problem(w, "IntervalSeconds must be a positive integer")
                interval = 1
            if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 0:
                self.problem(w, "MaxAttempts must be an integer >= 0")
                attempts = 0
            if not _number(backoff) or backoff < 1:
                self.problem(w, "BackoffRate must be a number >= 1.0")
                backoff = 1.0
            out.append(
                Retrier(
                    errors,
                    float(interval),
                    attempts,
                    float(backoff),
                    float(max_delay) if isinstance(max_delay, int | float) else None,
                    jitter == "FULL",
                )
            )
        return out

    def catchers(self, raw: dict[str, Any], where: str) -> list[Catcher]:
        out: list[Catcher] = []
        items = raw.get("Catch", [])
        if not isinstance(items, list):
            self.problem(where, "Catch must be an array")
            return out
        for i, item in enumerate(items):
            w = f"{where}.Catch[{i}]"
            if not isinstance(item, dict) or not isinstance(item.get("Next"), str):
                self.problem(w, "must be an object with ErrorEquals and Next")
                continue
            errors = self.error_equals(item, w, last=i == len(items) - 1)
            result_path = self.path(f"{w}.ResultPath", item.get("ResultPath", "$"), reference=True)
            out.append(Catcher(errors, item["Next"], result_path))
        return out

    def error_equals(self, item: dict[str, Any], where: str, *, last: bool) -> list[str]:
        errors = item.get("ErrorEquals")
        if not isinstance(errors, list) or not errors or not all(isinstance(e, str) for e in errors):
            self.problem(where, "ErrorEquals must be a non-empty array of error names")
            return []
        if ALL in errors and (len(errors) > 1 or not last):
            self.problem(where, "States.ALL must stand alone, in the last retrier or catcher")
        return list(errors)

    def task(self, raw: dict[str, Any], base: dict[str, Any], where: str) -> Task:
        resource = raw.get("Resource")
        if not isinstance(resource, str) or not resource:
            self.problem(where, "Resource is missing (the function to run)")
            resource = ""
        state = Task(
            **base,
            resource=resource,
            parameters=self.template(f"{where}.Parameters", raw.get("Parameters")),
            result_selector=self.template(f"{where}.ResultSelector", raw.get("ResultSelector")),
            result_path=self.path(f"{where}.ResultPath", raw.get("ResultPath", "$"), reference=True),
            retry=self.retriers(raw, where),
            catch=self.catchers(raw, where),
        )
        for field_name, attr, path_attr in (
            ("TimeoutSeconds", "timeout_seconds", "timeout_path"),
            ("HeartbeatSeconds", "heartbeat_seconds", "heartbeat_path"),
        ):
            value = raw.get(field_name)
            if value is not None:
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    self.problem(where, f"{field_name} must be a positive integer")
                else:
                    setattr(state, attr, float(value))
            path_value = raw.get(field_name + "Path")
            if path_value is not None:
                setattr(state, path_attr, self.path(f"{where}.{field_name}Path", path_value, nullable=False))
        if (
            state.timeout_seconds is not None
            and state.heartbeat_seconds is not None
            and state.heartbeat_seconds >= state.timeout_seconds
        ):
            self.problem(where, "HeartbeatSeconds must be smaller than TimeoutSeconds")
        return state

    def wait(self, raw: dict[str, Any], base: dict[str, Any], where: str) -> Wait:
        state = Wait(**base)
        given = [k for k in ("Seconds", "Timestamp", "SecondsPath", "TimestampPath") if k in raw]
        if len(given) != 1:
            self.problem(where, "needs exactly one of Seconds, Timestamp, SecondsPath, TimestampPath")
        if "Seconds" in raw:
            if not isinstance(raw["Seconds"], int) or isinstance(raw["Seconds"], bool) or raw["Seconds"] < 0:
                self.problem(where, "Seconds must be an integer >= 0")
            else:
                state.seconds = float(raw["Seconds"])
        if "Timestamp" in raw:
            try:
                state.timestamp = parse_timestamp(raw["Timestamp"])
            except ValueError:
                self.problem(where, f"Timestamp {raw['Timestamp']!r} is not an RFC 3339 timestamp")
        if "SecondsPath" in raw:
            state.seconds_path = self.path(f"{where}.SecondsPath", raw["SecondsPath"], nullable=False)
        if "TimestampPath" in raw:
            state.timestamp_path = self.path(f"{where}.TimestampPath", raw["TimestampPath"], nullable=False)
        return state

    def fail(self, raw: dict[str, Any], base: dict[str, Any], where: str) -> Fail:
        state = Fail(**base, error=raw.get("Error"), cause=raw.get("Cause"))
        for field_name, attr in (("ErrorPath", "error_path"), ("CausePath", "cause_path")):
            value = raw.get(field_name)
            if value is None:
                continue
            setattr(state, attr, self.dynamic(f"{where}.{field_name}", value))
        return state

    def dynamic(self, where: str, value: Any) -> Callable[[Any, Any], Any] | None:
        from kfaas.saga._intrinsics import compile_intrinsic, is_intrinsic

        try:
            if isinstance(value, str) and is_intrinsic(value):
                return compile_intrinsic(value)
            path = compile_path(value)
        except PathSyntaxError as exc:
            self.problem(where, str(exc))
            return None
        return path.get

    def map(self, raw: dict[str, Any], base: dict[str, Any], key: str, where: str) -> MapState:
        processor = raw.get("ItemProcessor", raw.get("Iterator"))
        config = processor.get("ProcessorConfig", {}) if isinstance(processor, dict) else {}
        if isinstance(config, dict) and config.get("Mode", "INLINE") != "INLINE":
            self.problem(where, "only inline Map states are supported (ProcessorConfig.Mode INLINE)")
        body = (
            {k: v for k, v in processor.items() if k != "ProcessorConfig"}
            if isinstance(processor, dict)
            else None
        )
        iterator = self.machine(body, f"{key}/{base['name']}/it", f"{where}.ItemProcessor")
        concurrency = raw.get("MaxConcurrency", 0)
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 0:
            self.problem(where, "MaxConcurrency must be an integer >= 0")
            concurrency = 0
        if "ItemSelector" in raw and "Parameters" in raw:
            self.problem(where, "ItemSelector and Parameters (its older name) cannot both be given")
        selector = raw.get("ItemSelector", raw.get("Parameters"))
        items_path = self.path(f"{where}.ItemsPath", raw.get("ItemsPath", "$"), nullable=False) or ROOT
        return MapState(
            **base,
            iterator=iterator,
            items_path=items_path,
            item_selector=self.template(f"{where}.ItemSelector", selector),
            max_concurrency=concurrency,
            result_selector=self.template(f"{where}.ResultSelector", raw.get("ResultSelector")),
            result_path=self.path(f"{where}.ResultPath", raw.get("ResultPath", "$"), reference=True),
            retry=self.retriers(raw, where),
            catch=self.catchers(raw, where),
        )

    def choice(self, raw: dict[str, Any], base: dict[str, Any], where: str) -> Choice:
        choices = []
        items = raw.get("Choices")
        if not isinstance(items, list) or not items:
            self.problem(where, "Choices must be a non-empty array")
            items = []
        for i, item in enumerate(items):
            w = f"{where}.Choices[{i}]"
            if not isinstance(item, dict) or not isinstance(item.get("Next"), str):
                self.problem(w, "a choice rule needs Next")
                continue
            rule = self.rule(item, w)
            if rule is not None:
                choices.append((rule, item["Next"]))
        return Choice(**base, choices=choices, default=raw.get("Default"))

    def rule(self, item: dict[str, Any], where: str) -> Rule | None:
        from kfaas.saga._choice import compile_rule

        try:
            return compile_rule(item)
        except (PathSyntaxError, ValueError) as exc:
            self.problem(where, str(exc))
            return None


def parse_timestamp(value: Any) -> datetime:
    """An RFC 3339 timestamp with a time zone (``2016-03-14T01:59:00Z``)."""
    if not isinstance(value, str) or "T" not in value:
        raise ValueError(value)
    parsed = datetime.fromisoformat(value.replace("z", "Z"))
    if parsed.tzinfo is None:
        raise ValueError(value)
    return parsed


def states_error_for(exc: Exception) -> StatesError:
    return exc if isinstance(exc, StatesError) else StatesError("States.Runtime", str(exc))
