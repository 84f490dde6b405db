"""The whole HTTP API against its own OpenAPI document: schemathesis (all checks) through the gateway of
``kfaas dev``, in front of real ``kfaas serve`` processes of the HTTP functions on the real MongoDB and
RabbitMQ.

Passes when schemathesis finds nothing: no server error, every answered status declared in the document
with its JSON schema, negative data refused, valid data accepted, links between operations honoured. At
least ``MIN_CASES`` cases, bounded in time by ``--max-examples`` and ``TIMEOUT``. The seed is fixed so that
CI runs the same cases (``KFAAS_SCHEMATHESIS_SEED`` picks another, ``KFAAS_SCHEMATHESIS_EXAMPLES`` more
cases per operation); a failure prints schemathesis's report, with a curl command reproducing each case.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from kfaas_system import DevRun

HTTP_FUNCTIONS = ("create-user", "get-user", "place-order", "get-order")
MIN_CASES = 1000
TIMEOUT = 240.0
SEED = os.environ.get("KFAAS_SCHEMATHESIS_SEED", "20261201")
EXAMPLES = os.environ.get("KFAAS_SCHEMATHESIS_EXAMPLES", "250")  # per operation and phase


def _tally(ndjson: Path) -> tuple[int, collections.Counter[str], collections.Counter[int]]:
    """(cases, check results by status, answers by HTTP status) from schemathesis's event stream."""
    cases: set[str] = set()
    checks: collections.Counter[str] = collections.Counter()
    statuses: collections.Counter[int] = collections.Counter()
    with ndjson.open(encoding="utf-8") as events:
        for line in events:
            if not line.startswith('{"ScenarioFinished"'):
                continue
            recorder = json.loads(line)["ScenarioFinished"]["recorder"]
            cases |= set(recorder.get("cases", {}))
            for results in recorder.get("checks", {}).values():
                checks.update(result["status"] for result in results)
            for interaction in recorder.get("interactions", {}).values():
                if interaction.get("response"):
                    statuses[interaction["response"]["status_code"]] += 1
    return len(cases), checks, statuses


async def test_the_api_keeps_to_its_openapi_document(
    dev: DevRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await dev.start(*(arg for name in HTTP_FUNCTIONS for arg in ("--only", name)))
    async with httpx.AsyncClient(base_url=dev.base_url) as client:
        document = (await client.get("/openapi.json")).json()
    assert document["x-kfaas"]["functions"] == dict.fromkeys(sorted(HTTP_FUNCTIONS), "ok")

    reports = tmp_path / "reports"
    argv = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{dev.base_url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        EXAMPLES,
        "--seed",
        SEED,
        "--generation-database",
        "none",
        "--request-timeout",
        "15",
        "--no-color",
        "--report",
        "json,ndjson",
        "--report-dir",
        str(reports),
    ]
    hooks = Path(__file__).with_name("schemathesis_hooks.py")
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": hooks.stem,
        "PYTHONPATH": os.pathsep.join([str(hooks.parent), os.environ.get("PYTHONPATH", "")]),
    }
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"schemathesis did not finish within {TIMEOUT:g}s; kfaas dev said:\n{dev.output()}")
    text = output.decode(errors="replace")

    (summary_file,) = reports.glob("json-*.json")
    summary: dict[str, Any] = json.loads(summary_file.read_text())
    (ndjson,) = reports.glob("ndjson-*.ndjson")
    cases, checks, statuses = _tally(ndjson)
    line = (
        f"schemathesis {summary['schemathesis_version']} (seed {SEED}): {cases} cases, "
        f"{sum(checks.values())} checks ({dict(checks)}), failures {summary['failures']}, "
        f"errors {summary['errors']}, answers {dict(sorted(statuses.items()))}, "
        f"{summary['running_time']:.0f}s"
    )
    with capsys.disabled():
        print(f"\n{line}")
    assert process.returncode == 0, f"{line}\n{text[-20000:]}"
    assert summary["failures"] == []
    assert summary["errors"] == []
    assert summary["operations"]["tested"] == 4
    assert summary["test_cases"]["generated"] >= MIN_CASES, line
    assert cases >= MIN_CASES, line
    assert set(checks) == {"success"}, line
    assert not [status for status in statuses if status >= 500], line
