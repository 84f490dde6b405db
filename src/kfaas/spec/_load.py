"""Reading the descriptions from disk: one folder, or every folder of an application."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kfaas.spec._model import DESCRIPTION_FILE, AppSpec, FunctionSpec, SpecError, route_conflicts

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
    if not isinstance(raw, dict):
        raise SpecError(f"{file}: expected a mapping at the top level")
    raw.setdefault("name", folder.name)
    try:
        spec = FunctionSpec.model_validate({**raw, "path": folder})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise SpecError(f"{file}: {problems}") from exc
    if spec.name != folder.name:
        raise SpecError(f"{file}: name {spec.name!r} differs from its folder {folder.name!r}")
    if not (folder / spec.source).is_file():
        raise SpecError(f"{file}: source {spec.source!r} does not exist in {folder}")
    return spec


def load_app(root: Path) -> AppSpec:
    """Read every ``<root>/*/function.yaml`` (folders starting with '_' or '.' are skipped).

    Besides each description on its own, the whole is checked: two http functions may not declare the same
    method and path template (the gateway could route it to only one of them).
    """
    if not root.is_dir():
        raise SpecError(f"{root}: no such functions folder")
    folders = sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(("_", ".")) and p.name != "__pycache__"
    )
    functions = [load_function(p) for p in folders if (p / DESCRIPTION_FILE).exists()]
    conflicts = route_conflicts(functions)
    if conflicts:
        raise SpecError(f"{root}: " + "; ".join(conflicts))
    return AppSpec(functions=functions, root=root)


def json_schema() -> dict[str, Any]:
    """The JSON schema of ``function.yaml`` (for editors and the docs)."""
    schema = FunctionSpec.model_json_schema(by_alias=True)
    schema["properties"].pop("path", None)
    schema["title"] = "kfaas function description (function.yaml)"
    return schema
