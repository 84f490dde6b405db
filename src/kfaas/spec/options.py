"""Options several commands share, spelled once (same flag, same environment variable, same default)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kfaas.spec import AppSpec


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


def function_urls(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="URL of one function, over the template (repeatable)",
    )


def url_mapping(items: list[str]) -> dict[str, str]:
    """``--url NAME=URL`` items as a mapping; ValueError naming the first malformed one."""
    urls = {}
    for item in items:
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise ValueError(f"--url expects NAME=URL, got {item!r}")
        urls[name] = url
    return urls


def amqp_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--amqp-url", default=os.environ.get("AMQP_URL"), help="RabbitMQ URL (env AMQP_URL)")


def has_amqp_url(command: str, url: str | None) -> bool:
    """True when a RabbitMQ URL is given; else a one-line error on stderr (the command exits 2)."""
    if url:
        return True
    sys.stderr.write(f"kfaas {command}: no RabbitMQ URL: set AMQP_URL or pass --amqp-url\n")
    return False


def load_functions(command: str, folder: Path) -> AppSpec | None:
    """The descriptions in ``folder``; for a bad one, a one-line error on stderr and None (exit 2)."""
    from kfaas.spec import SpecError, load_app

    try:
        return load_app(folder)
    except SpecError as exc:
        sys.stderr.write(f"kfaas {command}: {exc}\n")
        return None
