"""``python -m stack.anomaly [--seed N] [--ci]``: run the evaluation and print its figures;
exit 1 when a target fails. ``--ci`` (or CI set in the environment) is the reduced form."""

from __future__ import annotations

import argparse
import os
import sys

from .evaluate import CI, FULL, evaluate
from .report import lines, targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.anomaly")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--ci", action="store_true", default=bool(os.environ.get("CI")))
    args = parser.parse_args(argv)
    result = evaluate(args.seed, CI if args.ci else FULL)
    print("\n".join(lines(result)))
    return 0 if all(targets(result.rules, result.detectable).values()) else 1


if __name__ == "__main__":
    sys.exit(main())
