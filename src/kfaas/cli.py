"""``kfaas <command>``: each command lives in its own module, imported only when that command runs.

A command module exposes ``configure(parser)`` and ``run(args) -> int``. Keeping the dispatch table free of
imports means ``kfaas serve`` (the entrypoint of every function container) loads nothing it does not use.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("kfaas.runtime.serve", "serve one function (the entrypoint of every function container)"),
    "dev": ("kfaas.dev.cli", "run every function, the dev broker and the gateway on this machine"),
    "broker": ("kfaas.broker.cli", "run the dev broker (ingress, triggers, sources) on RabbitMQ"),
    "gateway": ("kfaas.gateway.cli", "run the API gateway in front of the HTTP functions"),
    "bucket-source": (
        "kfaas.broker.bucketsource",
        "run one bucket source (S3 event records to CloudEvents) sending to a sink (Kubernetes)",
    ),
    "dlq": ("kfaas.broker.dlq", "list, show and redrive a trigger's dead letters"),
    "stream": ("kfaas.broker.stream", "run a stream source's consumer, replay it, show the lag of each"),
    "dead-letters": (
        "kfaas.broker.deadletters",
        "the dead-letter sink on Knative: keeps dead letters in RabbitMQ",
    ),
    "saga": ("kfaas.saga.cli", "run the state machine engine (executions in MongoDB, tasks over the broker)"),
    "executions": ("kfaas.saga.executions", "list, show, start, stop and redrive state machine executions"),
    "render": ("kfaas.render.cli", "render docker-compose.yml, k8s/ and the chart values"),
    "invoke": (
        "kfaas.aws.invoke",
        "run one event through a function, as it would arrive (like sam local invoke)",
    ),
    "aws-endpoints": (
        "kfaas.aws.endpoints",
        "serve the EventBridge, SQS and SES APIs (SigV4) on the broker, RabbitMQ and SMTP",
    ),
    "import": ("kfaas.aws.sam.cli", "import an AWS SAM template as function folders (kfaas import sam)"),
    "schema": ("kfaas.spec.schema", "print the JSON schema of function.yaml"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "usage: kfaas <command> [options]\n\ncommands:\n" + "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(_usage())
        return 0 if args else 2
    if args[0] == "--version":
        from kfaas.base.version import __version__

        sys.stdout.write(f"kfaas {__version__}\n")
        return 0
    name = args[0]
    if name not in COMMANDS:
        sys.stderr.write(f"kfaas: unknown command {name!r}\n\n{_usage()}")
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"kfaas {name}", description=COMMANDS[name][1])
    module.configure(parser)
    return int(module.run(parser.parse_args(args[1:])))


# Commands that run granian's embedded server. Its Rust threads can still be winding down while the
# interpreter finalizes, which now and then aborts the process (SIGABRT) after a clean stop; these commands
# therefore end with os._exit once their own shutdown is done and the output is flushed.
_SERVERS = frozenset(
    {"serve", "dev", "broker", "gateway", "dead-letters", "saga", "aws-endpoints", "bucket-source"}
)


def entrypoint() -> None:
    """The ``kfaas`` console script and ``python -m kfaas``."""
    code = main()
    if len(sys.argv) > 1 and sys.argv[1] in _SERVERS:
        import logging
        import os

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


if __name__ == "__main__":
    entrypoint()
