"""``kfaas render compose|k8s|chart|all [--check]``.

Without ``--check`` the rendered files are written (only those that changed). With ``--check`` nothing is
written: the command exits 1 naming every file that differs from what the descriptions render, with a
unified diff, so CI catches a hand edit or a forgotten re-render.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target", choices=["compose", "k8s", "chart", "all"], help="what to render (all = the three)"
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file would change")
    parser.add_argument(
        "--functions", type=Path, default=Path("functions"), help="the functions folder (default: functions)"
    )
    parser.add_argument(
        "--root", type=Path, default=Path(), help="project root the files are written under (default: .)"
    )
    parser.add_argument("--quiet", action="store_true", help="with --check: name the files, no diff")


def run(args: argparse.Namespace) -> int:
    from kfaas.render import TARGETS, check, render, write
    from kfaas.spec import SpecError, load_app

    try:
        app = load_app(args.functions)
    except SpecError as exc:
        sys.stderr.write(f"kfaas render: {exc}\n")
        return 2
    targets = list(TARGETS) if args.target == "all" else [args.target]
    try:
        files = render(app, args.root, targets)
    except ValueError as exc:
        sys.stderr.write(f"kfaas render: {exc}\n")
        return 2
    if args.check:
        drifts = check(args.root, files)
        if not drifts:
            sys.stdout.write(f"kfaas render: {len(files)} files up to date\n")
            return 0
        for drift in drifts:
            if not args.quiet:
                sys.stdout.write(drift.diff)
        names = ", ".join(d.path for d in drifts)
        sys.stderr.write(
            f"kfaas render: {len(drifts)} file(s) differ from the function descriptions: {names}\n"
            f"run `kfaas render {args.target}` and commit the result\n"
        )
        return 1
    changed = write(args.root, files)
    for rel in changed:
        sys.stdout.write(f"wrote {rel}\n")
    sys.stdout.write(f"kfaas render: {len(changed)} of {len(files)} files changed\n")
    return 0
