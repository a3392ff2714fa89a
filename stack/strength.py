"""How strong a secret must be in stage and prod (dev takes .env.example's values as they are).

A secret is refused when it is shorter than ``MIN_LENGTH`` characters, when it is a common
default (``COMMON``, or one of .env.example's values), when its estimated entropy is under
``MIN_BITS``, or when another secret has the same value. ``make secrets`` writes values far
above the floor (``secrets.token_urlsafe(32)``: 43 characters, 256 random bits).

The estimate is deliberately pessimistic about patterns and generous to randomness: the value
is read left to right as tokens, where a common word, a repeat of something earlier (3
characters or more), or a run of one character or of consecutive ones (``aaa``, ``abc``,
``321``) is one token and any other character is one token; each token is worth as much as one
character drawn from the alphabet the value's character classes span (26 lower-case, 26
upper-case, 10 digits, 33 others). A random 16-character letters-and-digits value scores about
95 bits, ``Password12345678`` about 12, ``correct-horse-battery-staple`` about 165. It is an
estimate, not an attacker's model: a human pattern it does not know (``Summer2024Summer2024``)
can pass, which is why ``make secrets`` is the way to set them.
"""

from __future__ import annotations

import math
import string
from collections.abc import Iterable, Mapping

MIN_LENGTH = 16
MIN_BITS = 64

# what people type when asked for a password, and this project's own names: exact matches are
# refused as they are; inside a longer value each counts as a single token of the estimate
COMMON = frozenset(
    [
        "admin",
        "administrator",
        "root",
        "password",
        "passw0rd",
        "p@ssw0rd",
        "pass",
        "secret",
        "default",
        "changeme",
        "change-me",
        "letmein",
        "welcome",
        "guest",
        "test",
        "demo",
        "example",
        "qwerty",
        "asdf",
        "azerty",
        "iloveyou",
        "monkey",
        "dragon",
        "master",
        "login",
        "user",
        "123456",
        "12345678",
        "123456789",
        "1234567890",
        "postgres",
        "postgresql",
        "redis",
        "grafana",
        "prometheus",
        "alertmanager",
        "exporter",
        "assistant",
        "metrics",
        "token",
        "monitoring",
    ]
)
_WORDS = sorted((w for w in COMMON if len(w) >= 3 and not w.isdigit()), key=len, reverse=True)
_CLASSES = (
    (string.ascii_lowercase, 26),
    (string.ascii_uppercase, 26),
    (string.digits, 10),
)


def alphabet_size(value: str) -> int:
    """The size of the alphabet the value's character classes span."""
    size = sum(n for chars, n in _CLASSES if any(c in chars for c in value))
    others = any(not any(c in chars for chars, _ in _CLASSES) for c in value)
    return size + (33 if others else 0)


def _token_length(value: str, lower: str, i: int) -> int:
    """How many characters from ``i`` on make one token."""
    word = next((len(w) for w in _WORDS if lower.startswith(w, i)), 0)
    repeat = 0
    for length in range(len(value) - i, 2, -1):
        if value[i : i + length] in value[:i]:
            repeat = length
            break
    run = 1
    if i + 1 < len(value):
        step = ord(value[i + 1]) - ord(value[i])
        if step in (-1, 0, 1):
            while i + run < len(value) and ord(value[i + run]) - ord(value[i + run - 1]) == step:
                run += 1
    return max(word, repeat, run if run >= 3 else 1)


def estimated_bits(value: str) -> float:
    """The tokens (see the module) times the bits of one character of the value's alphabet."""
    lower = value.lower()
    tokens, i = 0, 0
    while i < len(value):
        i += _token_length(value, lower, i)
        tokens += 1
    return tokens * math.log2(alphabet_size(value)) if value else 0.0


def weaknesses(value: str, defaults: Iterable[str] = ()) -> list[str]:
    """Why ``value`` is too weak for stage and prod (empty: strong enough). ``defaults``: more
    values refused as common defaults (.env.example's)."""
    found = []
    if value.lower() in COMMON or value in set(defaults):
        found.append("a common default")
    if len(value) < MIN_LENGTH:
        plural = "s" if len(value) != 1 else ""
        found.append(f"{len(value)} character{plural}, fewer than {MIN_LENGTH}")
    bits = estimated_bits(value)
    if bits < MIN_BITS:
        found.append(f"about {bits:.0f} bits of estimated entropy, fewer than {MIN_BITS}")
    return found


def duplicates(values: Mapping[str, str]) -> dict[str, list[str]]:
    """Each variable whose value another one has too -> those other variables."""
    return {
        name: [other for other, v in values.items() if other != name and v == value]
        for name, value in values.items()
        if value and list(values.values()).count(value) > 1
    }
