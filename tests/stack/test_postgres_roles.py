"""The roles' passwords `make up` hands to PostgreSQL are SCRAM-SHA-256 verifiers computed in
Python (stack/postgres_roles.py): the verifier of a password must be the one PostgreSQL
itself computes (SASLprep included), and the SQL file changes only when a password does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest

from stack.postgres_roles import ROLES, matches, roles_sql, verifier
from tests.service.backends import Postgres

PASSWORDS = [
    "plain-ascii-Zq7vK2mX9LtB",
    "ünïcødé-pässwörd",  # NFKC leaves it; UTF-8 bytes
    "ﬁne\u00a0ligature",  # SASLprep: the ligature becomes "fi", the no-break space a space
    "bidi-\u05d0-mixed",  # prohibited by SASLprep's bidi rule: the raw bytes are hashed
]


@pytest.fixture(scope="module")
def server() -> Iterator[Postgres]:
    postgres = Postgres()
    postgres.start()
    try:
        yield postgres
    finally:
        postgres.close()


def stored_by_postgres(server: Postgres, password: str) -> str:
    """The verifier PostgreSQL stores when given the password itself."""

    async def run() -> str:
        connection = await asyncpg.connect(server.dsn)
        try:
            await connection.execute("DROP ROLE IF EXISTS probe")
            await connection.execute("SET password_encryption = 'scram-sha-256'")
            literal = password.replace("'", "''")
            await connection.execute(f"CREATE ROLE probe LOGIN PASSWORD '{literal}'")
            found: str = await connection.fetchval(
                "SELECT rolpassword FROM pg_authid WHERE rolname = 'probe'"
            )
            return found
        finally:
            await connection.close()

    return asyncio.run(run())


@pytest.mark.parametrize("password", PASSWORDS)
def test_the_verifier_is_the_one_postgresql_computes(server: Postgres, password: str) -> None:
    stored = stored_by_postgres(server, password)
    assert matches(stored, password)  # PostgreSQL's salt, our computation: the same keys
    assert not matches(stored, password + "x")
    assert matches(verifier(password), password)


def test_the_roles_file_changes_only_with_a_password() -> None:
    values = {variable: f"{variable.lower()}-Zq7vK2mX9LtB" for variable in ROLES.values()}
    first = roles_sql(values)
    assert roles_sql(values, previous=first) == first
    for role, variable in ROLES.items():
        assert f"ALTER ROLE {role} PASSWORD 'SCRAM-SHA-256$4096:" in first
        assert values[variable] not in first
    changed = roles_sql(
        values | {"ASSISTANT_DATABASE_PASSWORD": "another-Zq7vK2mX9LtB"}, previous=first
    )
    assert changed != first

    def verifier_of(sql: str, role: str) -> str:
        return sql.split(f"ALTER ROLE {role} PASSWORD")[1].split("\n")[0]

    assert verifier_of(changed, "assistant") != verifier_of(first, "assistant")
    for role in ("postgres", "postgres_exporter"):
        assert verifier_of(changed, role) == verifier_of(first, role)
