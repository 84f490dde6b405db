"""checkov over what users apply: the rendered overlays, the chart's ci/ scenarios and Dockerfile.base.

Configured by ``.checkov.yaml`` at the repository root, which names every skipped check and why. checkov is
installed in a venv of its own (its pinned dependencies stay out of kfaas's): ``.ci/run`` does it and puts
``checkov`` in ``~/.cache/kfaas/bin``. Without it the test skips, or fails under KFAAS_REQUIRE_TOOLS=1.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import toolfinder
import yaml
from _render_support import ROOT, kustomize_command

CONFIG = ROOT / ".checkov.yaml"
OVERLAYS = ["kind", "minikube", "production"]
SCENARIOS = sorted(p.name for p in (ROOT / "charts" / "kfaas" / "ci").glob("*-values.yaml"))


def _run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every rendered manifest set as users get it (committed values), and the Dockerfile."""
    out = tmp_path_factory.mktemp("checkov")
    for overlay in OVERLAYS:
        (out / f"overlay-{overlay}.yaml").write_text(
            _run([*kustomize_command(), str(ROOT / "k8s" / "overlays" / overlay)])
        )
    helm = toolfinder.require("helm", "go install helm.sh/helm/v3/cmd/helm@v3.22.0")
    chart = ROOT / "charts" / "kfaas"
    for scenario in SCENARIOS:
        rendered = _run(
            [helm, "template", "rel", str(chart), "--namespace", "kfaas", "-f", str(chart / "ci" / scenario)]
        )
        (out / f"chart-{scenario.removesuffix('-values.yaml')}.yaml").write_text(rendered)
    shutil.copy(ROOT / "Dockerfile.base", out / "Dockerfile.base")
    return out


def test_checkov_finds_nothing(manifests: Path) -> None:
    checkov = toolfinder.require("checkov", "a venv with `pip install checkov` (.ci/run does it)")
    result = subprocess.run(
        [checkov, "--config-file", str(CONFIG), "--directory", str(manifests), "--output", "json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=manifests,
    )
    try:
        reports: Any = json.loads(result.stdout)
    except ValueError:
        pytest.fail(
            f"checkov printed no JSON (exit {result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    reports = reports if isinstance(reports, list) else [reports]
    by_type = {r["check_type"]: r for r in reports}
    assert set(by_type) == {"kubernetes", "dockerfile"}, list(by_type)
    failures = []
    for kind, report in by_type.items():
        summary = report["summary"]
        print(f"checkov {kind}: {summary}")  # shown with -s and in CI's log on failure
        assert summary["parsing_errors"] == 0, kind
        assert summary["passed"] > 0, kind  # it did look at something
        failures += [
            f"{f['check_id']} {f['check_name']}: {f['resource']} ({f['file_path']})"
            for f in report["results"]["failed_checks"]
        ]
    assert not failures, "\n".join(failures)
    assert result.returncode == 0, result.stderr[-2000:]


def test_every_skipped_check_is_named_with_its_reason() -> None:
    """Each entry of skip-check has a comment above it that names the check and argues the skip."""
    text = CONFIG.read_text()
    skipped = yaml.safe_load(text)["skip-check"]
    assert skipped, "nothing skipped? then drop this test's expectations"
    lines = text.splitlines()
    for check in skipped:
        (index,) = [i for i, line in enumerate(lines) if line.strip() == f"- {check}"]
        comment = []
        for line in reversed(lines[:index]):
            if not line.strip().startswith("#"):
                if line.strip().startswith("- CKV"):
                    continue  # one comment may argue two neighbouring checks
                break
            comment.append(line)
        reason = " ".join(reversed(comment))
        assert check in reason, f"{check} has no comment naming it"
        assert len(re.sub(r"[#\s]+", " ", reason)) > 120, f"{check}: the reason is too short to argue it"
