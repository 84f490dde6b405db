"""``import_sam``: read, translate, map and write a SAM application; the report says what became of what."""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kfaas.aws.sam._mapping import FunctionPlan, MachinePlan, Plan, plan
from kfaas.aws.sam._report import REPORT_FILE, Report
from kfaas.aws.sam._template import SamError, read_templates, translate

__all__ = ["REPORT_FILE", "ImportResult", "SamError", "import_sam"]

_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".aws-sam", ".git", "function.yaml")


@dataclass
class ImportResult:
    report: Report
    plan: Plan
    report_file: Path | None  # None when nothing was written (--strict with unmapped items, --dry-run)


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, width=110, allow_unicode=True, default_flow_style=False)


def _validate_function(fp: FunctionPlan) -> None:
    from pydantic import ValidationError

    from kfaas.spec import FunctionSpec

    try:
        FunctionSpec.model_validate({**fp.description, "name": fp.name})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        raise SamError(f"{fp.logical_id}: its description would not be valid: {problems}") from None


def _readme(fp: FunctionPlan, template: str) -> str:
    d = fp.description
    settings = ", ".join(f"`{k}`" for k in sorted(d.get("env", {}))) or "none of its own"
    services = ", ".join(d.get("uses", [])) or "none"
    consumes = "; ".join(fp.consumes) or "nothing yet (the template gave it no events kfaas maps)"
    emits = (
        f"its result as `{d['lambda']['reply']['type']}`"
        if (d.get("lambda") or {}).get("reply")
        else ("events to the broker (`publishes`)" if d.get("publishes") else "nothing")
    )
    if d.get("image"):
        code = f"The Lambda image `{d['image']}` runs unchanged beside kfaas's container."
    elif str(d.get("runtime", "")).startswith("python"):
        code = f"The handler `{d['handler']}` ({d['runtime']}) runs inside `kfaas serve`, unchanged."
    else:
        code = (
            f"`bootstrap` ({d['runtime']}) is the runtime client, run behind kfaas's Lambda Runtime API: "
            "build it for Linux as for AWS (`sam build` does the same) and put it in this folder."
        )
    database = d.get("database")
    data = f"; {database['role']} on the collections {', '.join(database['collections'])}" if database else ""
    return (
        f"# {fp.name} (SAM's {fp.logical_id})\n\n"
        f"Imported from `{template}` by `kfaas import sam` (the report beside the functions folder says what\n"
        f"became of each property). {code}\n\n"
        f"- Consumes: {consumes}.\n"
        f"- Emits: {emits}.\n"
        f"- Settings: {settings}; services: {services}{data}.\n"
        f"- Alone: `kfaas invoke {fp.name} --functions <functions folder> --event <an AWS sample event>` runs one\n"
        f"  event as it would arrive; `kfaas dev` runs it with the rest of the application.\n"
    )


def _copy_code(fp: FunctionPlan, folder: Path) -> None:
    if fp.inline is not None:
        file = folder / fp.inline[0]
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(fp.inline[1], encoding="utf-8")
        return
    src = fp.code_uri
    if src is None:
        return
    if src.is_dir():
        shutil.copytree(src, folder, dirs_exist_ok=True, ignore=_IGNORED)
    elif src.is_file():
        with zipfile.ZipFile(src) as archive:
            for info in archive.infolist():
                target = (folder / info.filename).resolve()
                if not target.is_relative_to(folder.resolve()):
                    raise SamError(f"{src}: {info.filename!r} would be written outside the function folder")
            archive.extractall(folder)
            for info in archive.infolist():  # keep the executable bit of bootstrap
                mode = (info.external_attr >> 16) & 0o777
                if mode:
                    (folder / info.filename).chmod(mode)


def _write_machine(mp: MachinePlan, folder: Path) -> None:
    snippet = mp.snippet
    if mp.definition_file is not None:
        shutil.copyfile(mp.definition_file, folder / mp.definition_file.name)
        props = snippet[mp.logical_id].setdefault("Properties", {})
        props["DefinitionUri"] = mp.definition_file.name
    head = f"# SAM's {mp.logical_id} as the template declares it: its definition unchanged.\n"
    (folder / "step-functions.yaml").write_text(head + _dump(snippet), encoding="utf-8")
    desc = "# Imported by `kfaas import sam` (docs/migrating-from-aws.md).\n" + _dump(mp.description)
    (folder / "statemachine.yaml").write_text(desc, encoding="utf-8")


def import_sam(
    templates: list[Path],
    functions: Path,
    *,
    statemachines: Path | None = None,
    parameters: dict[str, str] | None = None,
    region: str = "us-east-1",
    account: str = "000000000000",
    strict: bool = False,
    force: bool = False,
    dry_run: bool = False,
) -> ImportResult:
    """Import ``templates`` into ``functions`` (and ``statemachines``, default beside it).

    Raises SamError for a template that cannot be imported; with ``strict``, an unmapped item writes
    nothing (the result's report lists them, ``report_file`` is None).
    """
    machines_root = statemachines if statemachines is not None else functions.parent / "statemachines"
    template = read_templates(templates)
    translate(template, parameters or {}, region)
    report = Report(templates=[str(t) for t in templates])
    known = (
        {p.name for p in functions.iterdir() if (p / "function.yaml").is_file()}
        if functions.is_dir()
        else set()
    )
    result = plan(template, report, region, account, known)
    for fp in result.functions:
        _validate_function(fp)
    if not force:
        taken = [str(functions / f.name) for f in result.functions if (functions / f.name).exists()]
        taken += [str(machines_root / m.name) for m in result.machines if (machines_root / m.name).exists()]
        if taken:
            raise SamError(f"{', '.join(taken)}: already there (pass --force to write over them)")
    if (strict and report.of("unmapped")) or dry_run:
        return ImportResult(report, result, None)
    for fp in result.functions:
        folder = functions / fp.name
        folder.mkdir(parents=True, exist_ok=True)
        _copy_code(fp, folder)
        header = f"# SAM's {fp.logical_id}, imported by `kfaas import sam` from {templates[0].name}.\n"
        (folder / "function.yaml").write_text(header + _dump(fp.description), encoding="utf-8")
        if not (folder / "README.md").exists():
            (folder / "README.md").write_text(_readme(fp, templates[0].name), encoding="utf-8")
        report.written.append(str(folder))
    for mp in result.machines:
        folder = machines_root / mp.name
        folder.mkdir(parents=True, exist_ok=True)
        _write_machine(mp, folder)
        report.written.append(str(folder))
        from kfaas.spec import SpecError, load_statemachine

        try:
            load_statemachine(folder)
        except SpecError as exc:
            raise SamError(f"{mp.logical_id}: the state machine written does not load: {exc}") from None
    report_file = functions.parent / REPORT_FILE
    report_file.write_text(report.to_yaml(), encoding="utf-8")
    return ImportResult(report, result, report_file)
