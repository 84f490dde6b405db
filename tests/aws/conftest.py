"""Fixtures of the lambda tests: a ``kfaas dev`` run of a private copy of a functions folder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from lambdatest import LambdaDev


@pytest.fixture
async def lambda_dev(
    tmp_path: Path, mongodb_url: str, amqp_url: str
) -> AsyncIterator[Callable[[Path], LambdaDev]]:
    """``lambda_dev(folder)``: a not yet started kfaas dev run of a copy of ``folder`` (cleaned up after)."""
    runs: list[LambdaDev] = []

    def make(folder: Path) -> LambdaDev:
        run = LambdaDev(tmp_path / f"run{len(runs)}", folder, mongodb_url, amqp_url)
        runs.append(run)
        return run

    try:
        yield make
    finally:
        for run in runs:
            code = run.stop()
            try:
                await run.cleanup()
            except Exception as exc:  # cleanup must not hide the test's own result
                print(f"cleanup failed: {exc!r}")
            assert code == 0, f"kfaas dev exited {code} on SIGINT:\n{run.output()}"
