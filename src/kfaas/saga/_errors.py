"""The error names of the Amazon States Language and how Retry and Catch match them."""

from __future__ import annotations

from typing import Any

__all__ = [
    "ALL",
    "DATA_LIMIT",
    "HEARTBEAT_TIMEOUT",
    "NO_CHOICE",
    "RUNTIME",
    "TASK_FAILED",
    "TIMEOUT",
    "StatesError",
    "matches",
]

ALL = "States.ALL"
TASK_FAILED = "States.TaskFailed"
TIMEOUT = "States.Timeout"
HEARTBEAT_TIMEOUT = "States.HeartbeatTimeout"
RUNTIME = "States.Runtime"
DATA_LIMIT = "States.DataLimitExceeded"
NO_CHOICE = "States.NoChoiceMatched"
BRANCH_FAILED = "States.BranchFailed"
INTRINSIC_FAILURE = "States.IntrinsicFailure"
PERMISSIONS = "States.Permissions"
RESULT_PATH_MATCH = "States.ResultPathMatchFailure"
PARAMETER_PATH = "States.ParameterPathFailure"

# Terminal errors: no Retry and no Catch handles them, not even one naming them (AWS: "A States.Runtime
# error isn't retriable, and will always cause the execution to fail").
TERMINAL = frozenset({RUNTIME, DATA_LIMIT})
# States.TaskFailed matches every task error except a timeout (AWS's "wildcard except States.Timeout").
_NOT_TASK_FAILED = frozenset({TIMEOUT, HEARTBEAT_TIMEOUT})


class StatesError(Exception):
    """A failure with an ASL error name and an optional cause (None: no cause at all, as AWS records it)."""

    def __init__(self, error: str, cause: str | None = None) -> None:
        super().__init__(f"{error}: {cause}" if cause is not None else error)
        self.error = error
        self.cause = cause

    def as_output(self) -> dict[str, Any]:
        """The ``{"Error", "Cause"}`` object a Catch hands to its next state."""
        out: dict[str, Any] = {"Error": self.error}
        if self.cause is not None:
            out["Cause"] = self.cause
        return out


def matches(error_equals: list[str], error: str) -> bool:
    """Whether a retrier's or catcher's ``ErrorEquals`` covers ``error``."""
    if error in TERMINAL:
        return False
    for name in error_equals:
        if name in (error, ALL):
            return True
        if name == TASK_FAILED and error not in _NOT_TASK_FAILED:
            return True
        if name == TIMEOUT and error == HEARTBEAT_TIMEOUT:
            return True
    return False
