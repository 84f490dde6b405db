"""The functions block of ``charts/kfaas/values.yaml``.

Only the lines between the two markers belong to ``kfaas render chart``; the rest of values.yaml is written
by hand (and commented) and left untouched. Each function's values are its description as JSON (the field
names of function.yaml) plus the image to run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kfaas.render import IMAGE_REPOSITORY, PLATFORM_IMAGE, dump_yaml
from kfaas.spec import AppSpec, FunctionSpec

__all__ = ["BEGIN", "END", "VALUES_PATH", "function_values", "render_values", "replace_block"]

VALUES_PATH = "charts/kfaas/values.yaml"
BEGIN = "# -- BEGIN functions (rendered by kfaas render chart; do not edit)"
END = "# -- END functions"

_MINIMAL = f"""\
# Values of the kfaas chart. The functions block below is rendered from functions/*/function.yaml.

{BEGIN}
{END}
"""


def _drop_empty_indexes(values: dict[str, Any]) -> dict[str, Any]:
    """Only subscribers that declare indexes carry the key (the schema has it for functions alone)."""
    if values.get("database") and not values["database"].get("indexes"):
        values["database"].pop("indexes", None)
    return values


def function_values(spec: FunctionSpec) -> dict[str, Any]:
    """The chart values of one function (an empty image tag means the chart's appVersion)."""
    values: dict[str, Any] = spec.model_dump(
        mode="json", by_alias=True, exclude={"path", "description", "events"}
    )
    _drop_empty_indexes(values)
    repository = f"{IMAGE_REPOSITORY}/{spec.name}"
    if spec.kind != "lambda":  # the fields of kind lambda stay out of other functions' values
        for key in ("handler", "runtime", "image", "lambda"):
            values.pop(key, None)
        for route in values["routes"]:
            route.pop("api", None)
        for source in (s for s in values["sources"] if s["kind"] == "queue"):
            for key in ("batchSize", "batchWindow", "reportBatchItemFailures"):
                source.pop(key, None)
    else:
        lambda_image = values.pop("image")
        if lambda_image:
            values["lambdaImage"] = (
                lambda_image  # run unchanged beside kfaas's container (the platform image)
            )
            repository = f"{IMAGE_REPOSITORY}/{PLATFORM_IMAGE}"
        if spec.container_concurrency is not None:
            values["containerConcurrency"] = spec.container_concurrency
    values["image"] = {"repository": repository, "tag": ""}
    return values


def _block(app: AppSpec) -> str:
    functions = {fn.name: function_values(fn) for fn in app.functions}
    body = dump_yaml({"functions": functions}) if functions else "functions: {}\n"
    if app.engine is not None:
        # the saga engine: its triggers (task replies, the state machines' starts) and its MongoDB user
        engine = app.engine.model_dump(
            mode="json", by_alias=True, include={"name", "kind", "triggers", "uses", "database"}
        )
        _drop_empty_indexes(engine)
        body += dump_yaml({"sagaEngine": engine})
    if app.streams:
        # the consumer of each stream source (a Deployment of one replica): its feeds and its MongoDB user
        streams = {
            consumer.name: _drop_empty_indexes(
                {
                    "function": fn.name,
                    "stream": source.stream,
                    **consumer.model_dump(
                        mode="json", by_alias=True, include={"triggers", "uses", "database"}
                    ),
                }
            )
            for consumer, fn, source in app.streams
        }
        body += dump_yaml({"streamSources": streams})
    return f"{BEGIN}\n{body}{END}\n"


def replace_block(text: str, block: str) -> str:
    """``text`` with the lines from BEGIN to END replaced by ``block`` (appended when the markers are absent)."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\n") == BEGIN]
    ends = [i for i, line in enumerate(lines) if line.rstrip("\n") == END]
    if not starts and not ends:
        sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        return text + sep + block
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise ValueError(f"{VALUES_PATH}: expected exactly one '{BEGIN}' line followed by one '{END}' line")
    return "".join(lines[: starts[0]]) + block + "".join(lines[ends[0] + 1 :])


def render_values(app: AppSpec, root: Path) -> dict[str, str]:
    path = root / VALUES_PATH
    current = path.read_text(encoding="utf-8") if path.is_file() else _MINIMAL
    return {VALUES_PATH: replace_block(current, _block(app))}
