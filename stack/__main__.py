"""``python -m stack <command> [--env dev|stage|prod] [--runtime auto|native|compose]
[--topology single|ha]``; the Makefile's targets call it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import (
    ENVIRONMENTS,
    ROOT,
    acceptance,
    compose,
    engine,
    images,
    lint,
    mutation,
    native,
    render,
    secrets,
)
from .backup import backup, restore
from .settings import TOPOLOGIES, StackError, check_environment, topology

RUNTIMES = ("auto", "native", "compose")
# where RUNTIME=auto may pick the native runtime when no Docker engine answers; stage and prod
# run natively only when asked for (RUNTIME=native)
NATIVE_BY_DEFAULT = ("dev",)


def choose_runtime(requested: str, env: str, command: str) -> str:
    """compose when a Docker engine answers (a ping, not the client's presence), else native.
    A natively running stack is always the one `down`/`status`/`logs` talk to; else a running
    local engine is."""
    if requested != "auto":
        return requested
    if command != "up" and native.load_state(native.layout(env))["env"] == env:
        return "native"
    reason = compose.engine_error()
    if reason is None:
        return "compose"
    # the local engine runs only when asked for (make engine, RUNTIME=compose): a stack on it
    # is the one down/status/logs/clean talk to
    if command != "up":
        return "compose" if engine.answers() else "native"
    if env not in NATIVE_BY_DEFAULT:
        raise StackError(native_refusal(env, reason))
    return "native"


def native_refusal(env: str, reason: str) -> str:
    return (
        f"ENV={env} will not fall back to the native runtime: no Docker engine answers "
        f"({reason}), and natively every component runs as a local process on this machine, "
        "without the containers' isolation (docs/security.md). Ask for one: "
        "RUNTIME=compose (Compose on the local engine) or RUNTIME=native"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stack", description=__doc__.split("\n")[0])
    p.add_argument(
        "command",
        choices=[
            "generate",
            "lint",
            "mutation",
            "preflight",
            "up",
            "down",
            "status",
            "logs",
            "clean",
            "engine",
            "engine-down",
            "engine-status",
            "images",
            "acceptance",
            "secrets",
            "backup",
            "restore",
        ],
        help="generate: rewrite generated files; lint: check every configuration; "
        "mutation: break each alert one way at a time and count what the rule tests catch; "
        "preflight: what `up` checks, without starting anything; engine, engine-down, "
        "engine-status: the local container engine (Podman) for machines without Docker; "
        "acceptance: the README's quick start on a bare Debian 12 container; secrets: "
        "random values for the stack's own secrets into .env (mode 0600); backup, restore: "
        "the HA topology's long-term store (VictoriaMetrics) into a new folder and back",
    )
    p.add_argument("--env", default="dev", help=f"one of {', '.join(ENVIRONMENTS)}")
    p.add_argument("--runtime", default="auto", choices=RUNTIMES)
    p.add_argument(
        "--topology", default=None, choices=TOPOLOGIES,
        help="up, down, status, logs, clean, preflight: default the environment's TOPOLOGY",
    )  # fmt: skip
    p.add_argument("--ref", default="HEAD", help="acceptance: the commit to check")
    p.add_argument(
        "--only", default="",
        help="mutation: the mutants of the rule files or alerts whose name contains this",
    )  # fmt: skip
    p.add_argument("--workers", type=int, default=2, help="mutation: promtool runs at a time")
    p.add_argument("--keep", action="store_true", help="acceptance: keep the container")
    p.add_argument(
        "--report", type=Path, default=None,
        help="acceptance: copy the JUnit report of the container's `make test` here",
    )  # fmt: skip
    p.add_argument("--rotate", default="", help="secrets: NAME,NAME or all: replace set values")
    p.add_argument(
        "--dir", type=Path, default=None,
        help="backup: a new folder (default .run/backups/<env>/<UTC time>); restore: a backup's",
    )  # fmt: skip
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
        if args.command == "mutation":
            score = mutation.check(
                ROOT, workers=args.workers, only=lambda m: args.only in f"{m.file} {m.alert}"
            )
            print(score.report())
            return 0 if score.complete else 1
        if args.command == "engine":
            environ = engine.up()
            print("clients use it with:")
            print("".join(f"  export {k}={v}\n" for k, v in environ.items()), end="")
            return 0
        if args.command == "images":
            engine.up()
            images.build()
            return 0
        if args.command == "acceptance":
            return acceptance.run(args.ref, keep=args.keep, report=args.report)
        if args.command == "engine-down":
            return engine.down()
        if args.command == "engine-status":
            return engine.status()
        if args.command == "secrets":
            secrets.generate(args.env, args.rotate)
            return 0
        shape = topology(args.env, args.topology)
        if args.command == "preflight":
            lint.preflight(args.env, shape)
            return 0
        runtime = choose_runtime(args.runtime, args.env, args.command)
        if args.command in ("backup", "restore"):
            print(f"{args.command} {args.env}: {runtime} runtime", flush=True)
            work = backup if args.command == "backup" else restore
            return work(args.env, shape, args.dir, runtime)
        if args.command in ("up", "clean"):
            print(f"{args.command} {args.env}: {runtime} runtime, {shape} topology", flush=True)
        module = native if runtime == "native" else compose
        if args.command == "up":
            if runtime == "native":  # what make installed already, for callers without make
                native.check_other_env(args.env)
                native.install_packages()
            lint.preflight(args.env, shape)
        return getattr(module, args.command)(args.env, shape)  # type: ignore[no-any-return]
    except StackError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
