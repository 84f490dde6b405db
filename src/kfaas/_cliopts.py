"""Options several commands share, spelled once (same flag, same environment variable, same default)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def functions_folder(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--functions",
        type=Path,
        default=Path(os.environ.get("KFAAS_FUNCTIONS", "functions")),
        help="folder of the function descriptions (env KFAAS_FUNCTIONS; default ./functions)",
    )


def namespace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--namespace",
        default=os.environ.get("KFAAS_NAMESPACE", "default"),
        help="namespace part of the broker's RabbitMQ names (env KFAAS_NAMESPACE; default 'default')",
    )


def url_template(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url-template",
        default=os.environ.get("KFAAS_FUNCTION_URL_TEMPLATE", "http://{name}:8080"),
        help="URL of a function from its name (env KFAAS_FUNCTION_URL_TEMPLATE; default http://{name}:8080)",
    )
