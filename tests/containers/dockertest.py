"""Building the project's images from Dockerfile.base and running them as a user's engine and Knative do.

Every image is built from the repository's own ``Dockerfile.base``, with only its ``BASE_IMAGE`` argument
swapped when ``KFAAS_BASE_IMAGE`` names another base (CI: one made from Debian's packages by
``scripts/docker base``, since no registry serves the official Python image there). Builds use the classic
builder API and the host's network; the engine's layer cache makes a second build of unchanged sources a
matter of seconds.

Every container runs the way Knative runs a pod that meets the restricted profile: read-only root
filesystem with a tmpfs on /tmp, the image's non-root user, no capabilities, no privilege escalation, the
memory and CPU of its description, and the host's network (the engine here has no bridge), listening on
127.0.0.1 at a port of its own.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = "Dockerfile.base"
TAG = "ci"
MB = 1_000_000


@dataclass
class Build:
    tag: str
    seconds: float
    steps: int
    cached_steps: int
    size: int
    base: str

    @property
    def cached(self) -> bool:
        return self.steps > 0 and self.cached_steps == self.steps


# What the session built, for the summary at its end (conftest's pytest_terminal_summary).
BUILDS: dict[str, Build] = {}


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity of a description (``256Mi``, ``1Gi``) in bytes."""
    units = {"Mi": 2**20, "Gi": 2**30}
    return int(quantity[:-2]) * units[quantity[-2:]]


def nano_cpus(quantity: str) -> int:
    """A Kubernetes CPU quantity (``250m``, ``1``) in the engine's billionths of a CPU."""
    return int(quantity[:-1]) * 1_000_000 if quantity.endswith("m") else int(float(quantity) * 1e9)


class BuildFailed(AssertionError):
    pass


class Engine:
    """A Docker engine that answered a ping, with the images this session built on it."""

    def __init__(self, client: Any, base_image: str | None) -> None:
        self.client = client
        self.base_image = base_image
        self._images: dict[str, str] = {}
        # one build at a time: the first fills the layer cache the others then reuse (in parallel, a cold
        # cache would install the same dependencies once per image)
        self._lock = threading.Lock()

    @property
    def base(self) -> str:
        return self.base_image or "python:3.12.12-slim-bookworm (Dockerfile.base's default)"

    def build(self, tag: str, *, path: Path = ROOT, dockerfile: str = DOCKERFILE, **options: Any) -> str:
        """Build ``tag`` (once per session); fails naming the step and the engine's last output lines."""
        with self._lock:
            return self._build(tag, path, dockerfile, options)

    def _build(self, tag: str, path: Path, dockerfile: str, options: dict[str, Any]) -> str:
        if tag in self._images:
            return self._images[tag]
        buildargs = dict(options.pop("buildargs", {}))
        if self.base_image:
            buildargs["BASE_IMAGE"] = self.base_image
        started = time.monotonic()
        lines: list[str] = []
        steps = cached = 0
        in_stage = False
        for chunk in self.client.api.build(
            path=str(path),
            dockerfile=dockerfile,
            tag=tag,
            buildargs=buildargs,
            network_mode="host",
            rm=True,
            forcerm=True,
            decode=True,
            **options,
        ):
            if "error" in chunk:
                tail = "".join(lines[-40:])
                raise BuildFailed(f"building {tag} failed: {chunk['error'].strip()}\n{tail}")
            text = chunk.get("stream", "")
            if text.startswith("Step "):
                # FROM steps and the ARGs before the first FROM are never "cached": count the others
                in_stage = in_stage or " : FROM " in text
                steps += in_stage and " : FROM " not in text
            elif "Using cache" in text:
                cached += 1
            lines.append(text)
        seconds = time.monotonic() - started
        size = int(self.client.images.get(tag).attrs["Size"])
        BUILDS[tag] = Build(tag, seconds, steps, cached, size, self.base)
        self._images[tag] = tag
        return tag

    def function_image(self, name: str) -> str:
        return self.build(f"kfaas-test/{name}:{TAG}", buildargs={"FUNCTION": name}, target="function")

    def platform_image(self) -> str:
        return self.build(f"kfaas-test/platform:{TAG}", target="platform")

    def image_size(self, tag: str) -> int:
        return int(self.client.images.get(tag).attrs["Size"])

    def run(
        self,
        image: str,
        *,
        name: str,
        port: int,
        env: dict[str, str],
        memory: str = "256Mi",
        cpu: str = "250m",
        command: list[str] | None = None,
        volumes: dict[str, dict[str, str]] | None = None,
    ) -> Container:
        """Start ``image`` hardened as Knative runs it, listening on 127.0.0.1:``port``."""
        limit = memory_bytes(memory)
        container = self.client.containers.run(
            image,
            command=command,
            name=f"kfaas-test-{name}-{uuid.uuid4().hex[:8]}",
            detach=True,
            network_mode="host",
            environment={**env, "HOST": "127.0.0.1", "PORT": str(port)},
            read_only=True,
            tmpfs={"/tmp": "rw,nosuid,nodev,size=64m"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            mem_limit=limit,
            memswap_limit=limit,  # no swap, as on Kubernetes
            nano_cpus=nano_cpus(cpu),
            volumes=volumes or {},
            labels={"kfaas.test": "containers"},
        )
        return Container(container, name, port)


@dataclass
class Container:
    """A running container of the session; :meth:`remove` always runs (the fixtures see to it)."""

    raw: Any
    name: str
    port: int
    stopped: bool = field(default=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self, tail: int = 60) -> str:
        try:
            return str(self.raw.logs(tail=tail).decode(errors="replace"))
        except Exception as exc:  # the container may be gone already
            return f"(no logs: {exc!r})"

    def status(self) -> str:
        self.raw.reload()
        return str(self.raw.status)

    def fail(self, message: str) -> None:
        pytest.fail(f"{self.name}: {message}\n--- its log ---\n{self.logs()}", pytrace=False)

    def wait_ready(self, timeout: float = 90.0, path: str = "/health/readiness") -> float:
        """Poll readiness until 200; seconds it took. Fails with the log when the container exits."""
        started = time.monotonic()
        last = "no answer"
        while time.monotonic() - started < timeout:
            if self.status() == "exited":
                self.fail(f"exited ({self.raw.attrs['State']['ExitCode']}) before it was ready")
            try:
                answer = httpx.get(self.url + path, timeout=2.0)
                if answer.status_code == 200:
                    return time.monotonic() - started
                last = f"{answer.status_code} {answer.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.2)
        self.fail(f"not ready within {timeout:g}s (last: {last})")
        raise AssertionError("unreachable")

    def exec(self, *argv: str) -> tuple[int, str]:
        code, output = self.raw.exec_run(list(argv), demux=False)
        return int(code), output.decode(errors="replace")

    def terminate(self, timeout: float) -> tuple[int, float]:
        """SIGTERM, as Knative scales a revision down; (exit code, seconds until exit). -1 past ``timeout``."""
        started = time.monotonic()
        self.raw.kill(signal="SIGTERM")
        try:
            result = self.raw.wait(timeout=timeout)
        except Exception:  # requests' ReadTimeout: still running past the bound
            return -1, time.monotonic() - started
        self.stopped = True
        return int(result["StatusCode"]), time.monotonic() - started

    def remove(self) -> None:
        try:
            self.raw.remove(force=True)
        except Exception as exc:  # already gone; nothing else to clean up
            print(f"removing {self.name}: {exc!r}")


def inspect_image(engine: Engine, image: str) -> dict[str, Any]:
    """What the image holds that it should not: run a look-around script in it (read-only, as its user)."""
    script = r"""
import importlib.util, json, os, shutil
report = {
    "uid": os.getuid(),
    "gid": os.getgid(),
    "tools": sorted(t for t in ("pip", "pip3", "gcc", "cc", "c++", "make", "git", "curl", "wget") if shutil.which(t)),
    "modules": sorted(m for m in ("pip", "setuptools", "wheel", "pytest") if importlib.util.find_spec(m)),
    "paths": sorted(p for p in ("/src", "/overlay", "/app/src", "/app/pyproject.toml", "/app/tests", "/root/.cache")
                    if os.path.lexists(p)),
}
suspicious = []
for top in ("/app", "/opt/kfaas"):
    for folder, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files + dirs:
            path = os.path.join(folder, name)
            if name in (".env", ".git", ".netrc", ".pypirc", "id_rsa", "id_ed25519"):
                suspicious.append(path)
            elif name.endswith((".key", ".pem")) and os.path.isfile(path):
                with open(path, "rb") as f:
                    if b"PRIVATE KEY" in f.read():
                        suspicious.append(path)
report["suspicious"] = sorted(suspicious)
print(json.dumps(report))
"""
    output = engine.client.containers.run(
        image,
        entrypoint=["python", "-c", script],
        command=[],
        remove=True,
        network_mode="none",
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
    )
    result: dict[str, Any] = json.loads(output.decode().strip().splitlines()[-1])
    config = engine.client.images.get(image).attrs["Config"]
    result["user"] = config.get("User")
    result["env"] = [e.split("=", 1)[0] for e in config.get("Env") or []]
    return result


def docker_unavailable() -> tuple[Any, str | None]:
    """(a client, None) when a Docker engine answers a ping, else (None, why not)."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        return None, "the docker package is not installed"
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except (DockerException, OSError) as exc:
        return None, f"no Docker engine answers ({type(exc).__name__})"
    return client, None


def base_image() -> str | None:
    return os.environ.get("KFAAS_BASE_IMAGE", "").strip() or None
