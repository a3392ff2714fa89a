"""The PostgreSQL roles whose passwords the stack holds, and the SQL that sets them.

``make up`` writes ``.run/<env>/secrets/postgres_roles`` (``roles_sql``): one ``ALTER ROLE``
per role that exists, each with the SCRAM-SHA-256 verifier of its password computed here, as
psql's ``\\password`` does, so the password itself never reaches psql's arguments, the server
or its log. Every start of PostgreSQL applies it over the local socket as the superuser: the
native runtime (native_postgres.py) and, in Compose, postgres/entrypoint.sh. The postgres image
sets passwords only when it creates its cluster; this makes a changed secret take effect at
the next ``make up``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import stringprep
import unicodedata
from collections.abc import Mapping

# role -> the variable that holds its password (compose.yaml: POSTGRES_USER, DATA_SOURCE_USER)
ROLES = {"assistant": "POSTGRES_PASSWORD", "postgres_exporter": "POSTGRES_EXPORTER_PASSWORD"}
ITERATIONS = 4096  # PostgreSQL's default (scram_iterations)
SALT_BYTES = 16
_VERIFIER = re.compile(
    r"SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)"
)


def saslprep(password: str) -> bytes:
    """The bytes PostgreSQL hashes (src/common/saslprep.c): ASCII as it is; otherwise RFC
    4013's SASLprep, or the raw UTF-8 where SASLprep prohibits the result."""
    raw = password.encode()
    if password.isascii():
        return raw
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in password if not stringprep.in_table_b1(c)
    )
    normal = unicodedata.normalize("NFKC", mapped)
    prohibited = (
        stringprep.in_table_c12, stringprep.in_table_c21_c22, stringprep.in_table_c3,
        stringprep.in_table_c4, stringprep.in_table_c5, stringprep.in_table_c6,
        stringprep.in_table_c7, stringprep.in_table_c8, stringprep.in_table_c9,
        stringprep.in_table_a1,
    )  # fmt: skip
    if not normal or any(check(c) for c in normal for check in prohibited):
        return raw
    right_to_left = [stringprep.in_table_d1(c) for c in normal]
    if any(right_to_left) and (
        any(stringprep.in_table_d2(c) for c in normal)
        or not (right_to_left[0] and right_to_left[-1])
    ):
        return raw
    return normal.encode()


def verifier(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``, as PostgreSQL stores it."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def matches(found: str, password: str) -> bool:
    """Whether the verifier ``found`` is one of ``password``."""
    parsed = _VERIFIER.fullmatch(found)
    if parsed is None:
        return False
    expected = verifier(password, base64.b64decode(parsed[2]), int(parsed[1]))
    return hmac.compare_digest(expected, found)


def roles_sql(values: Mapping[str, str], previous: str = "") -> str:
    """The SQL that sets each role's password from ``values``. A verifier in ``previous`` (the
    file as it was) that still matches is kept, so the file changes only with a password."""
    kept = dict(re.findall(r"ALTER ROLE (\w+) PASSWORD '([^']+)'", previous))
    lines = [
        "-- The passwords of the PostgreSQL roles the stack holds, as SCRAM-SHA-256 verifiers",
        "-- (never the passwords). Written by make up (stack/postgres_roles.py); applied on",
        "-- every start of PostgreSQL, over its local socket, as the superuser.",
        "DO $roles$",
        "BEGIN",
    ]
    for role, variable in ROLES.items():
        password = values[variable]
        secret = kept[role] if matches(kept.get(role, ""), password) else verifier(password)
        lines += [
            f"  IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN",
            f"    ALTER ROLE {role} PASSWORD '{secret}';",
            "  END IF;",
        ]
    return "\n".join([*lines, "END", "$roles$;", ""])
