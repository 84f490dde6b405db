"""A handler written for AWS Lambda, with no kfaas in it: it reports what it received."""

import base64
import json

import helpers  # a sibling module, as in LAMBDA_TASK_ROOT

SEEN = []


class InventoryError(Exception):
    pass


def lambda_handler(event, context):
    SEEN.append(event)
    info = {
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "arn": context.invoked_function_arn,
        "memory": context.memory_limit_in_mb,
        "log_group": context.log_group_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "custom": context.client_context.custom if context.client_context else None,
    }
    if "Records" in event:
        failures = [{"itemIdentifier": r["messageId"]} for r in event["Records"] if "fail" in r["body"]]
        if any(r["body"] == "raise" for r in event["Records"]):
            raise InventoryError("out of stock")
        helpers.record(event)
        return {"batchItemFailures": failures}
    if event.get("detail-type") == "Scheduled Event":
        helpers.record(event)
        return None
    if "detail-type" in event:
        if event["detail"].get("fail"):
            raise InventoryError(f"no stock for {event['detail'].get('sku')}")
        return {"seen": event["id"], "detail": event["detail"]}
    if "httpMethod" in event or event.get("version") == "2.0":
        params = event.get("pathParameters") or {}
        ident = params.get("id") or params.get("path")
        if ident == "boom":
            raise InventoryError("boom")
        if ident == "bare":
            return "just a string"
        if ident == "binary":
            return {
                "statusCode": 200,
                "headers": {"content-type": "image/png"},
                "body": base64.b64encode(b"\x89PNG\x00\x01").decode(),
                "isBase64Encoded": True,
            }
        body = event.get("body")
        if event.get("isBase64Encoded") and body:
            body = base64.b64decode(body).decode("latin-1")
        answer = {
            "statusCode": 201
            if event.get("httpMethod", event.get("requestContext", {}).get("http", {}).get("method"))
            == "POST"
            else 200,
            "headers": {"content-type": "application/json", "x-handler": "python"},
            "multiValueHeaders": {"x-multi": ["a", "b"]},
            "body": json.dumps({"event": event, "context": info, "body": body}),
        }
        if event.get("version") == "2.0":
            answer["cookies"] = ["c=1"]
        return answer
    return {"echo": event, "context": info}
