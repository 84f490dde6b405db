"""Calls EventBridge, SQS and SES with boto3's defaults: endpoints and credentials come from the environment."""

import json
import os

import boto3


def handler(event, context):
    detail = event["detail"]
    boto3.client("events").put_events(
        Entries=[{"Source": "caller", "DetailType": "OrderProcessed", "Detail": json.dumps(detail)}]
    )
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=os.environ["CALLER_QUEUE"])["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(detail))
    boto3.client("ses").send_email(
        Source="caller@example.com",
        Destination={"ToAddresses": ["user@example.com"]},
        Message={"Subject": {"Data": f"order {detail['orderId']}"}, "Body": {"Text": {"Data": "processed"}}},
    )
