"""Reading SAM templates and turning them into CloudFormation with AWS's own translator."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SamError", "Template", "parse_file", "read_templates", "translate"]

SAM_TRANSFORM = "AWS::Serverless-2016-10-31"
CODE_PLACEHOLDER_BUCKET = "kfaas-import"  # stands for a local CodeUri while the translator runs


class SamError(Exception):
    """A template that cannot be imported; the message names the file and the problem."""


@dataclass
class Template:
    """The SAM template as written (merged from its files) and its CloudFormation translation."""

    files: list[Path]
    sam: dict[str, Any]
    cfn: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> Path:
        """The folder CodeUri and DefinitionUri are relative to: the first template's."""
        return self.files[0].parent

    def sam_resource(self, logical_id: str) -> dict[str, Any]:
        resource = self.sam.get("Resources", {}).get(logical_id)
        return resource if isinstance(resource, dict) else {}


def parse_file(file: Path) -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SamError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SamError(f"{file}: cannot be read: {exc}") from None
    try:
        data = yaml_parse(text)
    except Exception as exc:  # yaml and json both raise their own error types; the message names the line
        raise SamError(f"{file}: not valid YAML or JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SamError(f"{file}: expected a template (a mapping with Resources) at the top level")
    return data


def read_templates(files: list[Path]) -> Template:
    """Read ``files`` into one template: the first is a template; each further file is a template too or a
    snippet of resources (``LogicalId: {Type: ..., Properties: ...}``, as the seed writes its saga), whose
    resources are added to the first one's."""
    if not files:
        raise SamError("no template given")
    merged = parse_file(files[0])
    resources = merged.get("Resources")
    if "Resources" not in merged and all(isinstance(v, dict) and "Type" in v for v in merged.values()):
        resources = dict(merged)  # the first file may itself be a snippet of resources
        merged = {"Resources": resources}
    if not isinstance(resources, dict) or not resources:
        raise SamError(f"{files[0]}: no Resources: a SAM template declares its resources under Resources")
    for extra in files[1:]:
        data = parse_file(extra)
        more = data.get("Resources", data if "Transform" not in data else None)
        if not isinstance(more, dict) or not all(isinstance(v, dict) and "Type" in v for v in more.values()):
            raise SamError(
                f"{extra}: neither a template nor a snippet of resources (LogicalId: {{Type: ...}})"
            )
        clash = sorted(set(more) & set(resources))
        if clash:
            raise SamError(f"{extra}: resources {', '.join(clash)} are already declared in {files[0]}")
        resources.update(more)
        for section in ("Parameters", "Globals", "Conditions", "Mappings"):
            if isinstance(data.get(section), dict):
                merged.setdefault(section, {}).update(data[section])
    merged.setdefault("Transform", SAM_TRANSFORM)
    for logical_id, resource in resources.items():
        if not isinstance(resource, dict) or not isinstance(resource.get("Type"), str):
            raise SamError(f"{files[0]}: resource {logical_id} has no Type")
    return Template(files=files, sam=merged)


def _parameters(template: Template, given: dict[str, str]) -> dict[str, str]:
    declared = template.sam.get("Parameters") or {}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        raise SamError(
            f"--parameter {', '.join(unknown)}: not a parameter of the template (its parameters: {known})"
        )
    values: dict[str, str] = {}
    for name, spec in declared.items():
        if name in given:
            values[name] = given[name]
        elif isinstance(spec, dict) and "Default" in spec:
            default = spec["Default"]
            values[name] = ",".join(map(str, default)) if isinstance(default, list) else str(default)
    return values


def translate(template: Template, parameters: dict[str, str], region: str) -> None:
    """Run aws-sam-translator on the template: ``template.cfn`` becomes the CloudFormation AWS deploys.

    A local ``CodeUri`` (a folder or a zip) stands in as an S3 location while it runs, as ``sam validate``
    does; nothing calls AWS (the boto3 session only names the region; managed policies stay names).
    """
    import boto3
    from samtranslator.model.exceptions import InvalidDocumentException, InvalidTemplateException
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    # the translator logs its metrics and guesses at WARNING level: none of it is the user's business here
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    template.parameters = _parameters(template, parameters)
    sam = copy.deepcopy(template.sam)
    for resource in sam["Resources"].values():
        props = resource.get("Properties")
        if resource["Type"] != "AWS::Serverless::Function" or not isinstance(props, dict):
            continue
        if isinstance(props.get("CodeUri"), str) and not props["CodeUri"].startswith("s3://"):
            props["CodeUri"] = f"s3://{CODE_PLACEHOLDER_BUCKET}/{props['CodeUri'].strip('./') or 'code'}"
    globals_ = sam.get("Globals", {}).get("Function", {}) if isinstance(sam.get("Globals"), dict) else {}
    if isinstance(globals_, dict) and isinstance(globals_.get("CodeUri"), str):
        globals_["CodeUri"] = f"s3://{CODE_PLACEHOLDER_BUCKET}/{globals_['CodeUri'].strip('./') or 'code'}"
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
    try:
        template.cfn = translator.translate(
            sam,
            parameter_values=dict(template.parameters),
            get_managed_policy_map=lambda: {},
        )
    except (InvalidDocumentException, InvalidTemplateException) as exc:
        causes = getattr(exc, "causes", None) or [exc]
        problems = "; ".join(str(getattr(c, "message", c)) for c in causes)
        raise SamError(f"{template.files[0]}: not a valid SAM template: {problems}") from None
