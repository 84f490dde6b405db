"""``kfaas import sam template.yaml [more.yaml ...]``: a SAM application as kfaas function folders.

Exit 0 when imported (the report printed, and written beside the functions folder); 1 with ``--strict``
when something is not mapped (nothing written); 2 for a template that cannot be imported or bad options.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from kfaas.spec.options import functions_folder


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="format", required=True, metavar="sam")
    sam = sub.add_parser(
        "sam",
        help="import an AWS SAM template (template.yaml)",
        description="Write one function folder per Lambda function and one state machine folder per state "
        "machine of a SAM template; print what each resource became and what was not mapped.",
    )
    sam.add_argument(
        "templates",
        type=Path,
        nargs="+",
        metavar="TEMPLATE",
        help="the SAM template; further files add resources (a template, or a snippet LogicalId: {Type: ...})",
    )
    functions_folder(sam)
    sam.add_argument(
        "--statemachines",
        type=Path,
        default=None,
        help="folder of the state machines (default: statemachines beside the functions folder)",
    )
    sam.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a value for one of the template's Parameters (repeatable); Defaults are used otherwise",
    )
    sam.add_argument(
        "--region",
        default=os.environ.get("AWS_REGION", "us-east-1"),
        help="the region in ARNs and lambda.region (env AWS_REGION; default us-east-1)",
    )
    sam.add_argument("--account", default="000000000000", help="the account in ARNs (default 000000000000)")
    sam.add_argument(
        "--strict", action="store_true", help="fail (exit 1, nothing written) if anything is not mapped"
    )
    sam.add_argument(
        "--force", action="store_true", help="write over function and state machine folders that exist"
    )
    sam.add_argument("--dry-run", action="store_true", help="print the report, write nothing")


def run(args: argparse.Namespace) -> int:  # noqa: PLR0911 (one branch per SAM property or event kind)
    parameters: dict[str, str] = {}
    for item in args.parameter:
        name, sep, value = item.partition("=")
        if not sep or not name:
            sys.stderr.write(f"kfaas import sam: --parameter expects NAME=VALUE, got {item!r}\n")
            return 2
        parameters[name] = value
    if len(args.account) != 12 or not args.account.isdigit():
        sys.stderr.write(f"kfaas import sam: --account {args.account!r} is not a 12-digit AWS account id\n")
        return 2
    from kfaas.aws.sam.importer import SamError, import_sam

    try:
        result = import_sam(
            args.templates,
            args.functions,
            statemachines=args.statemachines,
            parameters=parameters,
            region=args.region,
            account=args.account,
            strict=args.strict,
            force=args.force,
            dry_run=args.dry_run,
        )
    except SamError as exc:
        sys.stderr.write(f"kfaas import sam: {exc}\n")
        return 2
    except ModuleNotFoundError as exc:  # the translator is an extra: kfaas[sam]
        if not str(exc.name).startswith(("samtranslator", "boto3", "botocore")):
            raise
        sys.stderr.write(
            f"kfaas import sam: {exc.name} is not installed: pip install 'kfaas[sam]' (aws-sam-translator)\n"
        )
        return 2
    report = result.report
    sys.stdout.write(report.to_text())
    unmapped = report.of("unmapped")
    if result.report_file is None:
        if args.strict and unmapped:
            sys.stderr.write(
                f"kfaas import sam: --strict: {len(unmapped)} item(s) not mapped (listed above); nothing written\n"
            )
            return 1
        sys.stdout.write("kfaas import sam: --dry-run: nothing written\n")
        return 0
    for path in report.written:
        sys.stdout.write(f"wrote {path}\n")
    sys.stdout.write(
        f"wrote {result.report_file}\nkfaas import sam: {len(result.plan.functions)} function(s), "
        f"{len(result.plan.machines)} state machine(s); {len(unmapped)} item(s) not mapped. "
        f"Next: kfaas render all --functions {args.functions}\n"
    )
    return 0
