"""The same hello handler for the Python path (in kfaas's process): API Gateway proxy event in, 200 out."""


def hello(event, context):
    return {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": "hello"}
