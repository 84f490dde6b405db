"""Where the schemas and tools of the validation tests come from, and how a missing one is reported.

The schemas live in ``../shared/`` next to the repository when it exists (CI and our machines); a checkout
without it skips only the checks that need them, saying so, and fails instead under KFAAS_REQUIRE_TOOLS=1.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import toolfinder
from toolfinder import missing

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
CRD_SCHEMAS = SHARED / "crd-schemas"
COMPOSE_SCHEMA = SHARED / "schemas" / "compose-spec.json"
FIXTURE_FUNCTIONS = Path(__file__).parent / "fixtures" / "functions"
KUBERNETES_VERSION = "1.32"  # the oldest version the docs support for kind/minikube


def kustomize_command() -> list[str]:
    """``kustomize build`` or ``kubectl kustomize``, whichever exists (kustomize first: it is pinned in CI)."""
    kustomize = toolfinder.which("kustomize")
    if kustomize:
        return [kustomize, "build"]
    kubectl = toolfinder.which("kubectl")
    if kubectl:
        return [kubectl, "kustomize"]
    missing("kustomize (go install sigs.k8s.io/kustomize/kustomize/v5) or kubectl")
    raise AssertionError("unreachable")


def _strict(node: Any) -> Any:
    """Reject unknown fields even where the CRD preserves them (Knative's eventing CRDs mark whole specs
    ``x-kubernetes-preserve-unknown-fields``, so a misspelt or unsupported field such as
    ``delivery.timeout`` would pass unnoticed and be ignored by the cluster)."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _strict(value) for key, value in node.items()}
    if "properties" in node and "additionalProperties" not in node:
        out["additionalProperties"] = False
    return out


@cache
def crd_schema(api_version: str, kind: str) -> dict[str, Any] | None:
    group, _, version = api_version.rpartition("/")
    path = CRD_SCHEMAS / group / f"{kind.lower()}_{version}.json"
    if not group or not path.is_file():
        return None
    schema: dict[str, Any] = _strict(json.loads(path.read_text()))
    # apiVersion, kind and metadata are always allowed at the top level (see the folder's README).
    schema["properties"].setdefault("metadata", {"type": "object"})
    return schema
