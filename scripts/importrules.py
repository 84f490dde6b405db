"""A custom import-linter contract: function code imports only kfaas's public surface.

Function folders (``functions/<name>/``) are not Python packages (their names have dashes), so they are not in
import-linter's graph; this contract reads their source with ``ast`` instead. Configured in pyproject.toml
(``[tool.importlinter]``) and run by ``lint-imports`` from the repository root (``scripts/lint``).
"""

from __future__ import annotations

import ast
from pathlib import Path

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


class FunctionImportsContract(Contract):
    """Every ``*.py`` under ``folder`` may import only the ``allowed`` modules of ``package``.

    Options: ``folder`` (e.g. ``functions``), ``package`` (``kfaas``), ``allowed`` (``kfaas``, ``kfaas.api``).
    """

    type_name = "function_imports"

    folder = fields.StringField()
    package = fields.StringField()
    allowed = fields.SetField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        allowed = set(self.allowed)  # type: ignore[call-overload]
        package = str(self.package)
        folder = Path(str(self.folder))
        files = sorted(folder.rglob("*.py"))
        problems: list[str] = []
        for path in files:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                for module in _imported(node, package):
                    if module not in allowed:
                        problems.append(f"{path}:{node.lineno}: imports {module}")
        if not files:  # a wrong folder setting must not pass silently
            problems.append(f"no Python files under {folder}")
        return ContractCheck(kept=not problems, metadata={"problems": problems, "files": len(files)})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for problem in check.metadata["problems"]:
            output.print_error(problem, bold=False)
            output.new_line()
        output.print(f"Function code may import only: {', '.join(sorted(self.allowed))}.")  # type: ignore[call-overload]


def _imported(node: ast.AST, package: str) -> list[str]:
    """The modules of ``package`` that ``node`` imports (``from kfaas import api`` imports kfaas.api)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name == package or a.name.startswith(package + ".")]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        if node.module == package:
            # names imported from the package face are fine, submodules count as modules
            return [package] + [f"{package}.{a.name}" for a in node.names if _is_submodule(package, a.name)]
        if node.module.startswith(package + "."):
            return [node.module]
    return []


def _is_submodule(package: str, name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(f"{package}.{name}") is not None
    except (ImportError, ValueError):
        return False
