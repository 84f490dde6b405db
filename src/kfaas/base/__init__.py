"""The shared base: what every kfaas server stands on, and nothing else.

- ``server``: the embedded HTTP server (granian in the running event loop) with Knative's shutdown contract;
- ``log``: JSON log lines on stderr;
- ``inflight``: requests in progress, for draining on SIGTERM;
- ``asgi``: small ASGI helpers (JSON answers, the request limits, bounded body readers);
- ``amqp``: opening aio-pika's robust connection so that a failed attempt leaves nothing unclosed;
- ``urls``: service URLs with the password hidden, for messages;
- ``errors``: the error types whose meaning crosses parts (``KfaasError``, ``InvalidEvent``, ...);
- ``version``: the package version.

May import: nothing of kfaas. Imported by the runtime, the broker, the gateway, the renderers and ``kfaas dev``,
so that none of them reaches into another's files.
"""
