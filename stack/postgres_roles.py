"""The PostgreSQL roles the stack holds, and the SQL that makes them so on every start.

Three roles: ``postgres``, the superuser, used only to bootstrap (its password
``POSTGRES_PASSWORD``); ``assistant``, the app's, which owns the schema ``public`` of the
database ``assistant`` (where the app creates its tables) and nothing more: no superuser, no
CREATEDB, CREATEROLE, REPLICATION or BYPASSRLS, no membership of any role, not the owner of the
database (``ASSISTANT_DATABASE_PASSWORD``); ``postgres_exporter``, pg_monitor's read-only
statistics (``POSTGRES_EXPORTER_PASSWORD``).

``make up`` writes ``.run/<env>/secrets/postgres_roles`` (``roles_sql``): one DO block that
refuses a cluster whose superuser is the app's role (made before issue 14), creates a missing
role, sets each role's attributes and its password as the SCRAM-SHA-256 verifier computed
here, as psql's ``\\password`` does (the password itself never reaches a command line, the
server or its log), and gives the schema to the app's role. It runs in the database
``assistant`` as the superuser on every start of PostgreSQL: in PostgreSQL's single-user mode
on the stopped cluster (natively, native_postgres.py; in Compose, postgres/entrypoint.sh), which
needs no connection nor password, so a changed superuser password takes effect too; and on the
postgres image's first start by postgres/initdb-roles.sh, through psql.
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

SUPERUSER = "postgres"  # compose.yaml's POSTGRES_USER; initdb -U natively
APP_ROLE = "assistant"  # the user of the app's database URL (secrets.database_url)
DATABASE = "assistant"  # compose.yaml's POSTGRES_DB
EXPORTER_ROLE = "postgres_exporter"  # compose.yaml's DATA_SOURCE_USER
# role -> the variable that holds its password
ROLES = {
    SUPERUSER: "POSTGRES_PASSWORD",
    APP_ROLE: "ASSISTANT_DATABASE_PASSWORD",
    EXPORTER_ROLE: "POSTGRES_EXPORTER_PASSWORD",
}
# what the app's role may not do or be, set on every start (a role made before keeps none)
APP_ATTRIBUTES = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"
LEGACY = (
    "the app's role {app} is this cluster's superuser: it was made before the app got its own "
    "role (issue 14). Its data must move to a new cluster: see docs/security.md, section 3"
)
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
    """The SQL that makes the roles what ``ROLES`` says, each password from ``values``; run
    as the superuser in the database ``DATABASE``. One statement (a DO block), so single-user
    mode applies it whole or not at all. A verifier in ``previous`` (the file as it was) that
    still matches is kept, so the file changes only with a password."""
    kept = dict(re.findall(r"ALTER ROLE (\w+) PASSWORD '([^']+)'", previous))

    def password(role: str) -> str:
        given = values[ROLES[role]]
        return kept[role] if matches(kept.get(role, ""), given) else verifier(given)

    legacy = LEGACY.format(app=APP_ROLE).replace("'", "''")
    lines = [
        "-- The PostgreSQL roles the stack holds, their passwords as SCRAM-SHA-256 verifiers",
        "-- (never the passwords). Written by make up (stack/postgres_roles.py); applied as the",
        f"-- superuser in the database {DATABASE} on every start of PostgreSQL.",
        "DO $roles$",
        "DECLARE",
        "  granted name;",
        "BEGIN",
        f"  IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}' AND rolsuper) THEN",
        f"    RAISE EXCEPTION '{legacy}';",
        "  END IF;",
        f"  ALTER ROLE {SUPERUSER} PASSWORD '{password(SUPERUSER)}';",
        "  -- the app's role: it owns its schema, and nothing more",
        f"  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN",
        f"    CREATE ROLE {APP_ROLE};",
        "  END IF;",
        f"  ALTER ROLE {APP_ROLE} {APP_ATTRIBUTES};",
        f"  ALTER ROLE {APP_ROLE} PASSWORD '{password(APP_ROLE)}';",
        "  FOR granted IN SELECT r.rolname FROM pg_auth_members m",
        "                 JOIN pg_roles r ON r.oid = m.roleid",
        f"                 WHERE m.member = '{APP_ROLE}'::regrole LOOP",
        f"    EXECUTE format('REVOKE %I FROM {APP_ROLE}', granted);",
        "  END LOOP;",
        f"  ALTER DATABASE {DATABASE} OWNER TO {SUPERUSER};",
        f"  ALTER SCHEMA public OWNER TO {APP_ROLE};",
        "  -- postgres_exporter: pg_monitor's statistics, no table data",
        f"  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{EXPORTER_ROLE}') THEN",
        f"    CREATE ROLE {EXPORTER_ROLE} LOGIN CONNECTION LIMIT 3;",
        f"    GRANT pg_monitor TO {EXPORTER_ROLE};",
        "  END IF;",
        f"  ALTER ROLE {EXPORTER_ROLE} PASSWORD '{password(EXPORTER_ROLE)}';",
        "END",
        "$roles$;",
        "",
    ]
    return "\n".join(lines)
