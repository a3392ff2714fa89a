"""``python -m stack <command> [--env dev|stage|prod]``; the Makefile's targets call it."""

from __future__ import annotations

import argparse
import sys

from . import ENVIRONMENTS, ROOT, compose, lint, render
from .settings import StackError, check_environment


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stack", description=__doc__.split("\n")[0])
    p.add_argument(
        "command",
        choices=["generate", "lint", "preflight", "up", "down", "status", "logs"],
        help="generate: rewrite generated files; lint: check every configuration; "
        "preflight: what `up` checks, without starting anything",
    )
    p.add_argument("--env", default="dev", help=f"one of {', '.join(ENVIRONMENTS)}")
    args = p.parse_args(argv)
    try:
        check_environment(args.env)
        if args.command == "generate":
            changed = render.write()
            for path in changed:
                print(f"wrote {path.relative_to(ROOT)}")
            print(f"generate: {len(changed)} file(s) changed")
            return 0
        if args.command == "lint":
            return lint.lint()
        if args.command == "preflight":
            compose.preflight(args.env)
            return 0
        return getattr(compose, args.command)(args.env)
    except StackError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
