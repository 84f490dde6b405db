"""The ASL conformance cases recorded on AWS Step Functions (../shared/conformance/asl/cases.json).

Read at run time from the shared folder beside the repository; the tests that use them skip, saying so,
when it is absent. The five kinds of test function the cases name are here as Python callables.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

CASES_FILE = Path(__file__).resolve().parents[2] / ".." / "shared" / "conformance" / "asl" / "cases.json"


def load_cases() -> list[dict[str, Any]]:
    if not CASES_FILE.is_file():
        return []
    return list(json.loads(CASES_FILE.read_text(encoding="utf-8")))


def case_params() -> list[Any]:
    cases = load_cases()
    if not cases:
        return [
            pytest.param(
                None,
                marks=pytest.mark.skip(
                    reason=f"no conformance cases at {CASES_FILE.resolve()} (shared/ is not beside this checkout)"
                ),
            )
        ]
    return [pytest.param(c, id=c["name"]) for c in cases]


class CustomException(Exception):
    """As in the recording: sets ``message`` but never calls ``super().__init__``, so ``str(exc) == ''``."""

    def __init__(self) -> None:
        self.message = "CustomException message"


async def call_function(name: str, payload: Any) -> Any:
    """The test functions the cases name (their ``functions`` entries describe them)."""
    if name == "identity":
        return payload
    if name in ("echo1", "echo2"):
        return {"Return": "HelloWorld"}
    if name == "raise_exception":
        raise Exception("Some exception was raised.")
    if name == "raise_custom":
        raise CustomException
    if name == "sleep60":
        await asyncio.sleep(60)
        return payload
    raise LookupError(f"no test function named {name!r}")


def check(
    case: dict[str, Any],
    status: str,
    output: Any,
    error: Any,
    cause: Any,
    path: list[str],
    invocations: dict[str, int] | None,
) -> None:
    """Assert an execution's outcome against the recording, with the README's matching rules."""
    expect = case["expect"]
    match = expect.get("match", {})
    assert status == expect["status"], (
        f"status {status} (error {error}: {cause}), recorded {expect['status']}"
    )
    if status == "SUCCEEDED":
        want = expect["output"]
        got = json.loads(json.dumps(output))
        for key, rule in match.items():
            if key.startswith("$."):
                assert rule == "json_subset"
                *parents, field = key[2:].split(".")
                got_parent, want_parent = got, want
                for name in parents:
                    got_parent, want_parent = got_parent[name], want_parent[name]
                assert _json_subset(got_parent[field], want_parent[field]), (
                    f"{key}: {got_parent[field]!r} is not like {want_parent[field]!r}"
                )
                got_parent[field] = want_parent[field]
        assert got == want
    else:
        assert error == expect["error"]
        rule = match.get("cause", "exact")
        if rule == "json_subset":
            assert _json_subset(cause, expect["cause"]), f"cause {cause!r} is not like {expect['cause']!r}"
        elif rule != "ignore":
            assert cause == expect["cause"]
    assert path == expect["path"]
    if "invocations" in expect and invocations is not None:
        assert invocations == {k.removeprefix("fn:"): v for k, v in expect["invocations"].items()}


def _json_subset(actual: Any, want: Any) -> bool:
    if not isinstance(actual, str):
        return False
    try:
        parsed = json.loads(actual)
    except ValueError:
        return False
    return isinstance(parsed, dict) and all(parsed.get(k) == v for k, v in want.items())


def top_level_path(history: list[dict[str, Any]]) -> list[str]:
    return [e["details"]["name"] for e in history if e["type"].endswith("StateEntered") and "frame" not in e]
