"""The aws part: AWS Lambda functions on kfaas, unchanged (docs/migrating-from-aws.md).

A description of ``kind: lambda`` names a handler as SAM does (``handler``, ``runtime``) or a Lambda container
image (``image``). This part serves it under ``kfaas serve``:

- ``events``: the Lambda events built from what kfaas receives (API Gateway REST and HTTP API events from
  the function's routes, SQS records from its queue sources, EventBridge events from the broker and its
  ping sources) and the HTTP response read back from the handler's answer: pure functions;
- ``serve``: the loader the runtime finds through the entry point ``kfaas.signature_types: lambda``; it hands
  the runtime a cloudevent target with the API routes beside it;
- ``_adapter``: events in, answers out, SQS batching and partial batch responses, reply events;
- ``_invoke``: the handler in this process (python runtimes, ``context`` as awslambdaric's);
- ``_bridge``: the Lambda Runtime API and the pool of runtime processes (``bootstrap``, any runtime client),
  or one Lambda image's client beside kfaas's container;
- ``_config``: the description, read without the description model (a function container skips pydantic);
- ``_context``, ``_errors``: Lambda's context object and its error objects;
- ``invoke``: ``kfaas invoke <function> --event <file>``;
- ``endpoints``: ``kfaas aws-endpoints``, the parts of the EventBridge, SQS and SES APIs that handlers call
  (``PutEvents`` to the broker's ingress, ``SendMessage`` to RabbitMQ, ``SendEmail`` to SMTP), AWS Signature V4
  checked (``_sigv4``, with botocore's signer), in the protocols' wire formats (``_wire``); ``_eventbridge``,
  ``_sqs``, ``_ses`` do each API's work. A platform service, not a function container: it stands on the
  base, the events part and the external contracts of the broker, RabbitMQ and SMTP, never on the runtime,
  the broker's code or the spec (an import rule).
- ``sam``: ``kfaas import sam template.yaml``, a SAM application as function folders and state machines
  (through aws-sam-translator; it reads and writes descriptions with the spec).

May import: the runtime (it stands above it: it hands the runtime a Target), the events part and the shared
base. Never the broker, the gateway, render or dev; the spec only in ``invoke`` and ``sam`` (commands, not a
function container). The runtime never imports this part: it loads it through the entry point, and only for
``kind: lambda``. This ``__init__`` imports nothing.
"""
