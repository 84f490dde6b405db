"""``docker compose config`` on docker-compose.yml with .env.example: the file as Docker Compose v2 reads it.

The JSON schema check (tests/render/test_compose.py) says the file is well formed; this says Compose itself
accepts it, interpolates every variable from .env.example, and stops at once, naming the variable, when
one is missing. Compose v2 comes from ``scripts/docker compose`` (or a Docker installation's plugin);
Debian's docker-compose 1.29 cannot read the file and is not used.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import toolfinder
import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose_command() -> list[str]:
    """A Docker Compose v2 command: the one scripts/docker builds, a Docker CLI plugin, or one on PATH."""
    candidates: list[list[str]] = []
    cache = Path(toolfinder.tool_dirs()[-1]) / "docker-compose"
    if cache.exists():
        candidates.append([str(cache)])
    docker = toolfinder.which("docker")
    if docker:
        candidates.append([docker, "compose"])
    on_path = toolfinder.which("docker-compose")
    if on_path:
        candidates.append([on_path])
    for command in candidates:
        try:
            version = subprocess.run(
                [*command, "version", "--short"], capture_output=True, text=True, timeout=30, check=False
            ).stdout.strip()
        except OSError:
            continue
        if version.lstrip("v").split(".")[0].isdigit() and int(version.lstrip("v").split(".")[0]) >= 2:
            return command
    toolfinder.missing("Docker Compose v2 (`scripts/docker compose` builds it)")
    raise AssertionError("unreachable")


def compose_config(env_file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    # only the env file speaks: none of this process's variables may fill in the compose file
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG")}
    return subprocess.run(
        [
            *compose_command(),
            "--project-directory",
            str(ROOT),
            "-f",
            str(ROOT / "docker-compose.yml"),
            "--env-file",
            str(env_file),
            "config",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    result = compose_config(ROOT / ".env.example", "--format", "json")
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def test_compose_accepts_the_file_with_env_example(config: dict[str, Any]) -> None:
    committed = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert set(config["services"]) == set(committed["services"])
    assert config["name"] == "kfaas"


def test_every_variable_is_interpolated_from_env_example(config: dict[str, Any]) -> None:
    env_example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    get_user = config["services"]["get-user"]["environment"]
    assert get_user["MONGODB_URL"] == (
        f"mongodb://get-user:{env_example['MONGO_PASSWORD_GET_USER']}@mongodb:27017/kfaas?authSource=kfaas"
    )
    # `config` prints a file compose can read again, so a literal `$` comes out escaped as `$$` (as the
    # users script's own template strings do); any other `$` would be a variable left unresolved
    text = json.dumps(config).replace("$$", "")
    assert "$" not in text, "an unresolved variable is left"
    script = config["configs"]["mongodb-users"]["content"]
    assert "$${fn.passwordEnv}" in script


def test_compose_reads_memory_limits_and_read_only_as_the_descriptions_say(config: dict[str, Any]) -> None:
    place_order = config["services"]["place-order"]
    assert place_order["read_only"] is True
    assert place_order["tmpfs"] == ["/tmp"]
    assert int(place_order["mem_limit"]) == 256 * 2**20
    assert float(place_order["cpus"]) == 0.25
    assert config["services"]["gateway"]["ports"][0]["host_ip"] == "127.0.0.1"


def test_a_missing_password_stops_compose_naming_it(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    lines = (ROOT / ".env.example").read_text().splitlines()
    env_file.write_text("\n".join(line for line in lines if not line.startswith("RABBITMQ_PASSWORD=")) + "\n")
    result = compose_config(env_file, "--quiet")
    assert result.returncode != 0
    assert "RABBITMQ_PASSWORD" in result.stderr
    assert "set it in .env" in result.stderr
