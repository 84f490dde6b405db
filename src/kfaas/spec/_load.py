"""Reading the descriptions from disk: one folder, or every folder of an application."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kfaas.spec._model import (
    DESCRIPTION_FILE,
    AppSpec,
    FunctionSpec,
    SpecError,
    route_conflicts,
    validate_description,
)
from kfaas.spec._statemachine import (
    ENGINE,
    ENGINE_COLLECTIONS,
    STATEMACHINE_FILE,
    StateMachineSpec,
    engine_triggers,
    load_statemachine,
    task_trigger,
)

__all__ = ["json_schema", "load_app", "load_function"]


def load_function(folder: Path) -> FunctionSpec:
    """Read and validate ``folder/function.yaml``; errors name the file and the field."""
    file = folder / DESCRIPTION_FILE
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SpecError(f"{file}: missing (every function folder needs a {DESCRIPTION_FILE})") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"{file}: not valid YAML: {exc}") from exc
    spec = validate_description(FunctionSpec, raw, folder, file)
    if spec.kind == "lambda":
        _check_handler(file, folder, spec)
    elif not (folder / spec.source).is_file():
        raise SpecError(f"{file}: source {spec.source!r} does not exist in {folder}")
    return spec


def _check_handler(file: Path, folder: Path, spec: FunctionSpec) -> None:
    """A python handler's module must be in the folder (a bootstrap is built, so it may not be there yet)."""
    if not spec.lambda_in_process or spec.handler is None:
        return
    module, _, function = spec.handler.rpartition(".")
    if not module or not function:
        raise SpecError(f"{file}: handler {spec.handler!r} is not module.function (e.g. app.lambda_handler)")
    path = folder.joinpath(*module.split("."))
    if not path.with_suffix(".py").is_file() and not (path / "__init__.py").is_file():
        raise SpecError(f"{file}: handler {spec.handler!r}: no {path.relative_to(folder)}.py in {folder}")


def _folders(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(("_", ".")) and p.name != "__pycache__"
    )


def load_app(root: Path, statemachines: Path | None = None) -> AppSpec:
    """Read every ``<root>/*/function.yaml`` (folders starting with '_' or '.' are skipped), and the state
    machines of ``statemachines`` (default: the ``statemachines`` folder beside ``root``).

    Every function a state machine's Task names gets the trigger of its task requests (``tasks``), and the
    app gets the saga engine as a subscriber: nothing about them is written twice by hand.
    """
    if not root.is_dir():
        raise SpecError(f"{root}: no such functions folder")
    functions = [load_function(p) for p in _folders(root) if (p / DESCRIPTION_FILE).exists()]
    # two http functions may not declare the same method and path template (the gateway could route it to
    # only one of them)
    conflicts = route_conflicts(functions)
    if conflicts:
        raise SpecError(f"{root}: " + "; ".join(conflicts))
    machine_root = statemachines if statemachines is not None else root.parent / "statemachines"
    machines: list[StateMachineSpec] = []
    if machine_root.is_dir():
        machines = [load_statemachine(p) for p in _folders(machine_root) if (p / STATEMACHINE_FILE).exists()]
    if not machines:
        return AppSpec(functions=functions, root=root)
    known = {fn.name for fn in functions}
    if ENGINE in known:
        raise SpecError(f"{root / ENGINE}: the name {ENGINE!r} belongs to the state machine engine")
    used: dict[str, list[str]] = {}
    for machine in machines:
        for name in machine.functions:
            used.setdefault(name, []).append(machine.name)
    missing = sorted(set(used) - known)
    if missing:
        raise SpecError(
            "; ".join(
                f"state machine {used[m][0]!r} invokes {m!r}, which is not a function in {root}"
                for m in missing
            )
            + f" (functions: {', '.join(sorted(known))})"
        )
    with_tasks = []
    for fn in functions:
        if fn.name in used:
            if any(t.name == "tasks" for t in fn.triggers):
                raise SpecError(
                    f"{fn.folder / DESCRIPTION_FILE}: the trigger name 'tasks' is kept for task requests"
                )
            parallelism = max(1, min(fn.scaling.target, 100))
            with_tasks.append(
                fn.model_copy(update={"triggers": [*fn.triggers, task_trigger(fn.name, parallelism)]})
            )
        else:
            with_tasks.append(fn)
    engine = FunctionSpec.model_validate(
        {
            "name": ENGINE,
            "kind": "cloudevent",
            "description": "the state machine engine (kfaas saga)",
            "triggers": [t.model_dump(by_alias=True) for t in engine_triggers(machines)],
            "uses": ["mongodb"],
            "database": {"role": "readWrite", "collections": list(ENGINE_COLLECTIONS)},
        }
    )
    return AppSpec(functions=with_tasks, root=root, statemachines=machines, engine=engine)


def json_schema() -> dict[str, Any]:
    """The JSON schema of ``function.yaml`` (for editors and the docs)."""
    schema = FunctionSpec.model_json_schema(by_alias=True)
    schema["properties"].pop("path", None)
    schema["title"] = "kfaas function description (function.yaml)"
    return schema
