"""The security suite: each test tries one attack on a real part (a uvicorn process on a raw
socket, the stack's configuration, a running stack) and records what it expected and what
happened. The table of every attack is printed at the end of the run (docs/security.md keeps
the latest one)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class Attack:
    name: str  # what was tried, in a few words
    expected: str  # the answer the stack must give
    happened: str = "not run"  # what the test saw
    blocked: bool = False


ATTACKS: list[Attack] = []


@pytest.fixture
def attack() -> Callable[[str, str], Attack]:
    """``attack("anonymous 64 MiB POST /users", "401 before the body is read")`` records one
    attack; the test sets ``.happened`` to what it saw and ``.blocked`` once it is proven."""

    def record(name: str, expected: str) -> Attack:
        found = Attack(name, expected)
        ATTACKS.append(found)
        return found

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not ATTACKS:
        return
    terminalreporter.section("security: attacks tried")
    rows = [("attack", "expected", "happened", "blocked")]
    rows += [(a.name, a.expected, a.happened, "yes" if a.blocked else "NO") for a in ATTACKS]
    widths = [min(60, max(len(r[i]) for r in rows)) for i in range(4)]
    for row in rows:
        cells = [cell[:w].ljust(w) for cell, w in zip(row, widths, strict=True)]
        terminalreporter.write_line("| " + " | ".join(cells) + " |")
    blocked = sum(a.blocked for a in ATTACKS)
    terminalreporter.write_line(f"{len(ATTACKS)} attacks tried, {blocked} blocked")
