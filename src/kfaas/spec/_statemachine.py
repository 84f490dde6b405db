"""State machine descriptions (``statemachines/<name>/statemachine.yaml``) and their definitions.

A description names its definition file, left as it was written: Amazon States Language in JSON or YAML,
or a SAM/CloudFormation snippet or template holding an ``AWS::Serverless::StateMachine`` (or
``AWS::StepFunctions::StateMachine``) with ``Definition``, ``DefinitionUri`` or ``DefinitionString`` and its
``DefinitionSubstitutions``. A Task's ``Resource`` names a kfaas function: ``!GetAtt
ReserveInventoryFunction.Arn`` → ``reserve-inventory`` (the logical id in kebab case, without its
``Function`` suffix), ``fn:<name>``, a Lambda ARN ``arn:aws:lambda:...:function:<name>`` or the name itself
(underscores become hyphens: kfaas names are DNS labels). Loading rewrites every Resource to ``fn:<name>``.

CloudFormation's short tags (``!GetAtt``, ``!Ref``, ``!Sub``...) are read by a PyYAML loader of a few lines
here rather than a library (cfn-flip brings click and six for the same few constructors).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from kfaas.spec._model import _NAME, DEFAULT_BROKER, Delivery, SpecError, Trigger, validate_description

__all__ = [
    "ENGINE",
    "ENGINE_COLLECTIONS",
    "ERROR_EVENT",
    "HEARTBEAT_EVENT",
    "REQUEST_EVENT",
    "RESULT_EVENT",
    "STATEMACHINE_FILE",
    "ExecutionLimits",
    "Start",
    "StateMachineSpec",
    "function_name",
    "load_statemachine",
    "task_functions",
]

STATEMACHINE_FILE = "statemachine.yaml"
ENGINE = "kfaas-saga"  # the engine's name: its compose service, its Kubernetes Service, its triggers' prefix
# what the engine's own MongoDB user may use (kfaas.saga._store)
ENGINE_COLLECTIONS = ("saga_executions", "saga_transitions", "saga_signals", "saga_engines")
REQUEST_EVENT = "com.kfaas.task.request"
RESULT_EVENT = "com.kfaas.task.result"
ERROR_EVENT = "com.kfaas.task.error"
HEARTBEAT_EVENT = "com.kfaas.task.heartbeat"
_STATE_MACHINE_TYPES = ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Start(_Model):
    """Events that start an execution: a broker trigger with an exact filter (e.g. every order processed)."""

    name: str = Field(pattern=_NAME, description="Unique within the state machine")
    broker: str = DEFAULT_BROKER
    filter: dict[str, str] = Field(min_length=1, description="Exact match on CloudEvent attributes, ANDed")
    execution_name: str = Field(
        default="id",
        alias="executionName",
        description="The attribute (id, subject, ...) or data field (data.orderId) naming the execution; "
        "an event naming a running execution returns it (idempotent start)",
    )
    delivery: Delivery = Field(
        default_factory=lambda: Delivery.model_validate({"retry": 10, "backoffDelay": "PT1S"})
    )


class ExecutionLimits(_Model):
    """Quotas enforced on every execution (AWS Standard workflows' values by default)."""

    max_history_events: int = Field(default=25_000, ge=10, le=1_000_000, alias="maxHistoryEvents")
    max_payload_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024, alias="maxPayloadBytes")
    max_execution_seconds: int = Field(default=365 * 24 * 3600, ge=1, alias="maxExecutionSeconds")


class StateMachineSpec(_Model):
    name: str = Field(pattern=_NAME)
    description: str = ""
    definition_file: str = Field(
        alias="definition", description="The definition file, relative to the folder"
    )
    resource: str | None = Field(
        default=None, description="Which state machine of a SAM template (its logical id); optional when one"
    )
    starts: list[Start] = Field(default_factory=list)
    limits: ExecutionLimits = Field(default_factory=ExecutionLimits)
    asl: dict[str, Any] = Field(
        default_factory=dict, exclude=True, description="The definition, Resources resolved"
    )
    path: Path | None = Field(default=None, exclude=True)

    @property
    def functions(self) -> list[str]:
        return sorted(task_functions(self.asl))


# -- CloudFormation YAML ---------------------------------------------------------------------------------


class _CfnLoader(yaml.SafeLoader):
    pass


def _cfn_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def _read(file: Path) -> Any:
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{file}: missing") from None
    try:
        return json.loads(text) if file.suffix == ".json" else yaml.load(text, Loader=_CfnLoader)  # noqa: S506 (a SafeLoader subclass)
    except (ValueError, yaml.YAMLError) as exc:
        raise SpecError(f"{file}: not valid {'JSON' if file.suffix == '.json' else 'YAML'}: {exc}") from None


# -- resources ------------------------------------------------------------------------------------------


def _kebab(logical_id: str) -> str:
    base = (
        logical_id[: -len("Function")]
        if logical_id.endswith("Function") and logical_id != "Function"
        else logical_id
    )
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", base).lower()


def function_name(resource: Any) -> str | None:
    """The kfaas function a Task's Resource names, or None when it names none."""
    if isinstance(resource, dict) and len(resource) == 1:
        ((key, value),) = resource.items()
        if key == "Fn::GetAtt" and isinstance(value, list) and value:
            return _kebab(str(value[0]))
        if key == "Ref" and isinstance(value, str):
            return _kebab(value)
        return None
    if not isinstance(resource, str) or not resource:
        return None
    if resource.startswith("fn:"):
        resource = resource[3:]
    elif resource.startswith("arn:"):
        parts = resource.split(":")
        if len(parts) >= 7 and parts[2] == "lambda" and parts[5] == "function":
            resource = parts[6]
        else:
            return None
    return str(resource).replace("_", "-").lower()


def _resolve(block: Any, where: str, problems: list[str]) -> None:
    """Rewrite every Task Resource of ``block`` (and its branches and item processors) to ``fn:<name>``."""
    if not isinstance(block, dict) or not isinstance(block.get("States"), dict):
        return
    for name, state in block["States"].items():
        if not isinstance(state, dict):
            continue
        if state.get("Type") == "Task":
            resource = state.get("Resource")
            fn = function_name(resource)
            if fn is None:
                problems.append(
                    f"{where}.States.{name}.Resource: {resource!r} names no kfaas function (use the function's "
                    "name, fn:<name> or !GetAtt <Name>Function.Arn; service integrations are not supported)"
                )
            else:
                state["Resource"] = f"fn:{fn}"
        for i, branch in enumerate(state.get("Branches") or []):
            _resolve(branch, f"{where}.States.{name}.Branches[{i}]", problems)
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                _resolve(state[key], f"{where}.States.{name}.{key}", problems)


def task_functions(definition: Any) -> set[str]:
    """Names of the functions the (resolved) definition's Task states invoke."""
    found: set[str] = set()

    def walk(block: Any) -> None:
        if not isinstance(block, dict) or not isinstance(block.get("States"), dict):
            return
        for state in block["States"].values():
            if not isinstance(state, dict):
                continue
            if state.get("Type") == "Task" and isinstance(state.get("Resource"), str):
                fn = function_name(state["Resource"])
                if fn:
                    found.add(fn)
            for branch in state.get("Branches") or []:
                walk(branch)
            for key in ("Iterator", "ItemProcessor"):
                walk(state.get(key))

    walk(definition)
    return found


def _substitute(value: Any, substitutions: dict[str, Any]) -> Any:
    if isinstance(value, str):

        def one(match: re.Match[str]) -> str:
            key = match.group(1)
            if key not in substitutions:
                return match.group(0)
            sub = substitutions[key]
            fn = function_name(sub)
            return f"fn:{fn}" if fn and not isinstance(sub, str) else str(sub)

        return re.sub(r"\$\{([A-Za-z0-9_.]+)\}", one, value)
    if isinstance(value, list):
        return [_substitute(v, substitutions) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, substitutions) for k, v in value.items()}
    return value


def _definition_from(raw: Any, file: Path, resource: str | None) -> dict[str, Any]:
    """The ASL definition in a file: ASL itself, or a state machine of a SAM/CloudFormation template."""
    if isinstance(raw, dict) and "States" in raw and "StartAt" in raw:
        return raw
    if not isinstance(raw, dict):
        raise SpecError(f"{file}: expected a state machine definition or a SAM template")
    resources = raw.get("Resources", raw)
    machines = {
        k: v for k, v in resources.items() if isinstance(v, dict) and v.get("Type") in _STATE_MACHINE_TYPES
    }
    if resource:
        if resource not in machines:
            raise SpecError(f"{file}: no state machine {resource!r} (found: {', '.join(machines) or 'none'})")
        chosen = machines[resource]
    elif len(machines) == 1:
        chosen = next(iter(machines.values()))
    else:
        raise SpecError(
            f"{file}: {len(machines)} state machines ({', '.join(machines) or 'none'}); name one with `resource`"
        )
    props = chosen.get("Properties") or {}
    if "Definition" in props:
        definition = props["Definition"]
    elif "DefinitionString" in props and isinstance(props["DefinitionString"], str):
        definition = json.loads(props["DefinitionString"])
    elif isinstance(props.get("DefinitionUri"), str):
        definition = _read(file.parent / props["DefinitionUri"])
    else:
        raise SpecError(f"{file}: the state machine has no Definition, DefinitionString or DefinitionUri")
    if props.get("DefinitionSubstitutions"):
        definition = _substitute(definition, dict(props["DefinitionSubstitutions"]))
    if not isinstance(definition, dict):
        raise SpecError(f"{file}: the definition is not an object")
    return definition


def load_statemachine(folder: Path) -> StateMachineSpec:
    """Read ``folder/statemachine.yaml`` and its definition; errors name the file and the field."""
    file = folder / STATEMACHINE_FILE
    spec = validate_description(StateMachineSpec, _read(file), folder, file)
    names = [s.name for s in spec.starts]
    if len(set(names)) != len(names):
        raise SpecError(f"{file}: start names must be unique")
    definition_path = folder / spec.definition_file
    definition = _definition_from(_read(definition_path), definition_path, spec.resource)
    problems: list[str] = []
    definition = json.loads(json.dumps(definition))  # a plain copy the resolution may rewrite
    _resolve(definition, "Definition", problems)
    if problems:
        raise SpecError(f"{definition_path}: " + "; ".join(problems))
    return spec.model_copy(update={"asl": definition})


def task_trigger(function: str, parallelism: int) -> Trigger:
    """The trigger that brings a function its task requests (derived from the state machines that use it)."""
    return Trigger(
        name="tasks",
        filter={"type": REQUEST_EVENT, "kfaasfunction": function},
        # the default policy: a task request outlasts a MongoDB or RabbitMQ outage like any other event
        delivery=Delivery(),
        parallelism=parallelism,
    )


def engine_triggers(machines: list[StateMachineSpec]) -> list[Trigger]:
    """The engine's own triggers: task replies and heartbeats, and each state machine's starts."""
    delivery = Delivery.model_validate(
        {"retry": 10, "backoffPolicy": "exponential", "backoffDelay": "PT0.5S"}
    )
    triggers = [
        Trigger(name="results", filter={"type": RESULT_EVENT}, delivery=delivery, parallelism=100),
        Trigger(name="errors", filter={"type": ERROR_EVENT}, delivery=delivery, parallelism=100),
        Trigger(name="heartbeats", filter={"type": HEARTBEAT_EVENT}, delivery=delivery, parallelism=20),
    ]
    for machine in machines:
        for start in machine.starts:
            triggers.append(
                Trigger(
                    name=f"{machine.name}-{start.name}"[:63].rstrip("-"),
                    broker=start.broker,
                    filter=dict(start.filter),
                    delivery=start.delivery,
                    parallelism=20,
                )
            )
    return triggers
