"""Two http functions declaring one route (method + path template) are refused when the descriptions load.

The gateway can send a route to one function only, so ``load_app`` refuses the pair and names both, and
every command that reads the descriptions (``kfaas render``, ``kfaas dev``, ``kfaas gateway``) exits 2 with
that message before it starts anything.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kfaas.spec import SpecError, load_app

APP = "from fastapi import FastAPI\n\napp = FastAPI()\n"


def _function(root: Path, name: str, routes: str) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "main.py").write_text(APP)
    (folder / "function.yaml").write_text(
        f"kind: http\ntarget: app\nroutes:\n{textwrap.indent(routes, '  ')}"
    )


@pytest.fixture
def clashing(tmp_path: Path) -> Path:
    root = tmp_path / "functions"
    _function(root, "get-user", '- {path: "/users/{id}", methods: [GET]}\n')
    _function(root, "lookup-user", '- {path: "/users/{userId}/", methods: [GET, PUT]}\n')
    return root


def test_load_app_names_both_functions(clashing: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_app(clashing)
    message = str(caught.value)
    assert (
        "route GET /users/{id} and /users/{userId}/ is declared by both get-user and lookup-user" in message
    )
    assert "PUT" not in message  # only the method they share


@pytest.mark.parametrize(
    ("first", "second", "clash"),
    [
        ('- {path: "/x", methods: [GET]}\n', '- {path: "/x", methods: [HEAD]}\n', "HEAD /x"),
        ('- {path: "/x/{a}/y", methods: [POST]}\n', '- {path: "/x/{b}/y/", methods: [POST]}\n', "POST"),
        ('- {path: "/x", methods: [GET]}\n', '- {path: "/x", methods: [POST]}\n', None),
        ('- {path: "/x/{id}", methods: [GET]}\n', '- {path: "/x/me", methods: [GET]}\n', None),
    ],
)
def test_what_counts_as_the_same_route(tmp_path: Path, first: str, second: str, clash: str | None) -> None:
    root = tmp_path / "functions"
    _function(root, "a", first)
    _function(root, "b", second)
    if clash is None:
        assert [f.name for f in load_app(root).functions] == ["a", "b"]
        return
    with pytest.raises(SpecError, match=f"route {clash}.* is declared by both a and b"):
        load_app(root)


@pytest.mark.parametrize(
    "command",
    [
        ["render", "all", "--check", "--functions"],
        ["gateway", "--port", "0", "--functions"],
        ["dev", "--functions"],
    ],
)
def test_every_command_refuses_before_starting(clashing: Path, tmp_path: Path, command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kfaas", *command, str(clashing)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "is declared by both get-user and lookup-user" in lines[0]
    assert lines[0].startswith(f"kfaas {command[0]}: ")
