"""A sibling module of the handler: where it writes what batches and schedules it saw (for the tests)."""

import json
import os


def record(event):
    path = os.environ.get("LAMBDA_TEST_RECORD")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(event) + "\n")
