"""Writes every EventBridge event it is handed to the file LAMBDA_TEST_RECORD names, one JSON line each."""

import json
import os


def handler(event, context):
    with open(os.environ["LAMBDA_TEST_RECORD"], "a", encoding="utf-8") as out:
        out.write(json.dumps({"event": event, "request_id": context.aws_request_id}) + "\n")
