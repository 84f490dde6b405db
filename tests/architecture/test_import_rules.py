"""The import rules between the parts (pyproject.toml [tool.importlinter]) hold, and our own contract can fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _lint_imports() -> str:
    exe = Path(sys.executable).parent / "lint-imports"
    if not exe.exists():
        pytest.skip("import-linter is not installed (it comes with kfaas[dev])")
    return str(exe)


def test_every_contract_is_kept() -> None:
    result = subprocess.run(
        [_lint_imports(), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_function_code_importing_kfaas_internals_breaks_the_contract(tmp_path: Path) -> None:
    """The custom contract reads function folders with ast: a private import is reported with its line."""
    from grimp import ImportGraph

    sys.path.insert(0, str(ROOT))
    try:
        from scripts.importrules import FunctionImportsContract
    finally:
        sys.path.remove(str(ROOT))
    good = tmp_path / "functions" / "good"
    bad = tmp_path / "functions" / "bad-one"
    good.mkdir(parents=True)
    bad.mkdir(parents=True)
    (good / "main.py").write_text(
        "import kfaas\nfrom kfaas.api import create_api\nfrom kfaas import Context\n"
    )
    (bad / "main.py").write_text(
        "import json\nfrom kfaas.runtime.context import Context\nfrom kfaas import base\n"
    )

    def check(folder: Path) -> tuple[bool, list[str]]:
        contract = FunctionImportsContract(
            name="functions",
            session_options={},
            contract_options={"folder": str(folder), "package": "kfaas", "allowed": ["kfaas", "kfaas.api"]},
        )
        result = contract.check(ImportGraph(), verbose=False)
        return result.kept, result.metadata["problems"]

    kept, problems = check(tmp_path / "functions")
    assert not kept
    assert problems == [
        f"{bad / 'main.py'}:2: imports kfaas.runtime.context",
        f"{bad / 'main.py'}:3: imports kfaas.base",
    ]
    shutil.rmtree(bad)
    assert check(tmp_path / "functions") == (True, [])
    # no files at all is not "kept": a wrong folder setting must not pass silently
    assert check(tmp_path / "nowhere")[0] is False
