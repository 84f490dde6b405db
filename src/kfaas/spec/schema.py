"""``kfaas schema``: print the JSON schema of ``function.yaml``."""

from __future__ import annotations

import argparse
import json
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--indent", type=int, default=2, help="JSON indentation (default 2)")


def run(args: argparse.Namespace) -> int:
    from kfaas.spec import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=args.indent) + "\n")
    return 0
