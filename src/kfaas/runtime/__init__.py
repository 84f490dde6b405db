"""The runtime part: everything of ``kfaas serve``, the process inside every function container.

- ``serve``: the command (flags and environment variables as functions-framework's);
- ``settings``: the one typed settings object, read once from the environment;
- ``targets``: loading the user's code, the ``http``/``cloud_event`` decorators, the signature types;
- ``ff``: code written for functions-framework (its package's decorators without Flask, its registry, error
  handlers, Flask functions);
- ``app``: the ASGI/RSGI application (health, CloudEvents and legacy events in and out, JSON errors, one log
  line per request);
- ``http``: ``http`` functions (a Starlette request in, functions-framework's return conventions out);
- ``typed``: ``typed`` functions (the JSON body through the input type's ``from_dict``);
- ``replies``: those return conventions without a web framework;
- ``workers``: the threads synchronous functions run in;
- ``testing``: a function's app in a test's process (``kfaas.testing``);
- ``context``: the clients a handler uses (MongoDB, RabbitMQ, SMTP, the event sink), ``ctx.once``, the
  invocation's deadline;
- ``outbox``: ``ctx.outbox``, a document and its messages stored as one unit, and the relay that sends them;
- ``log``: the per-request log line.

May import: the shared base (``kfaas.base``) and the events part. Never the broker, the gateway, the
renderers, ``kfaas dev`` or the command table: a function container loads only what serving a function
needs, which keeps its cold start low (docs/benchmarks.md). This ``__init__`` imports nothing for the same
reason.
"""
