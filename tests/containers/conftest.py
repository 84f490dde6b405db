"""Fixtures of the container tests: a Docker engine, the project's images built from Dockerfile.base, and
containers run as Knative runs them (helpers in dockertest.py).

Without a Docker engine every test here skips, saying so; with ``KFAAS_REQUIRE_TOOLS=1`` (CI) it fails
instead. ``scripts/docker up`` starts an engine of the project's own (docs/testing.md).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import toolfinder
from dockertest import BUILDS, MB, Container, Engine, base_image, docker_unavailable

from kfaas.spec import AppSpec, load_app

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.containers)


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    client, why = docker_unavailable()
    if client is None:
        toolfinder.missing(f"a Docker engine ({why}; start one with `scripts/docker up`, docs/testing.md)")
    try:
        yield Engine(client, base_image())
    finally:
        client.close()


@pytest.fixture(scope="session")
def app() -> AppSpec:
    return load_app(ROOT / "functions")


@pytest.fixture
def containers(engine: Engine) -> Iterator[Callable[..., Container]]:
    """``containers(image, name=..., port=..., env=...)``: run a container, removed after the test."""
    started: list[Container] = []

    def run(image: str, **options: Any) -> Container:
        container = engine.run(image, **options)
        started.append(container)
        return container

    try:
        yield run
    finally:
        for container in started:
            container.remove()


@pytest.fixture
async def database(mongodb_url: str) -> AsyncIterator[tuple[str, Any]]:
    """(name, AsyncDatabase) of a database of its own on the real server, dropped afterwards."""
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, serverSelectionTimeoutMS=5000)
    name = f"kfaas_ct_{uuid.uuid4().hex[:12]}"
    try:
        yield name, client[name]
    finally:
        try:
            await client.drop_database(name)
        finally:
            await client.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not BUILDS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("images built for the container tests")
    write(f"base: {next(iter(BUILDS.values())).base}")
    write(f"{'image':<34} {'size':>9} {'build':>8}  cache")
    for build in BUILDS.values():
        cache = "all steps cached" if build.cached else f"{build.cached_steps}/{build.steps} steps cached"
        write(f"{build.tag:<34} {build.size / MB:>6.0f} MB {build.seconds:>7.1f}s  {cache}")
    total = sum(b.seconds for b in BUILDS.values())
    write(f"{len(BUILDS)} images built in {total:.0f}s")
