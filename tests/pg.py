"""PostgreSQL test helpers: a fresh schema per test, or a skip that says why.

Tests use the server named by ``TENANTKIT_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``). When it cannot be reached the
PostgreSQL cases skip, unless ``TENANTKIT_REQUIRE_POSTGRES=1`` (CI) turns the
skip into a failure.
"""

from __future__ import annotations

import os
import uuid
from functools import cache
from typing import Any

import pytest

from tenantkit.db.postgres import PostgresDatabase

__all__ = ["DisposablePostgresDatabase", "fresh_postgres_database", "require_postgres"]


@cache
def _unreachable_reason(url: str) -> str | None:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (
            f"PostgreSQL is not reachable at {url} ({first_line}). To run these tests, start "
            "PostgreSQL (e.g. `pg_ctlcluster 15 main start`, or `docker run -p 5432:5432 "
            "-e POSTGRES_HOST_AUTH_METHOD=trust postgres` and `createdb -U postgres test`) or "
            "set TENANTKIT_TEST_POSTGRES_URL to a server you can use."
        )
    return None


def require_postgres(url: str) -> None:
    """Skip the calling test (fail it under ``TENANTKIT_REQUIRE_POSTGRES=1``) if ``url``
    is unreachable."""
    reason = _unreachable_reason(url)
    if reason is None:
        return
    if os.environ.get("TENANTKIT_REQUIRE_POSTGRES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


class DisposablePostgresDatabase(PostgresDatabase):
    """A ``PostgresDatabase`` in its own schema, dropped again by ``close``."""

    admin_url: str

    def close(self) -> None:
        super().close()
        drop_schema(self.admin_url, self.schema or "")


def drop_schema(url: str, schema: str) -> None:
    import psycopg

    if not schema.startswith("tk_test_"):
        raise ValueError(f"refusing to drop schema {schema!r}")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def new_schema_name() -> str:
    return f"tk_test_{uuid.uuid4().hex[:16]}"


def fresh_postgres_database(
    url: str, *, schema: str | None = None, migrate: bool = True, **options: Any
) -> DisposablePostgresDatabase:
    """A migrated ``PostgresDatabase`` bound (via ``search_path``) to a new schema.

    The schema is dropped when the database is closed. Skips the test when the
    server is unreachable.
    """
    require_postgres(url)
    db = DisposablePostgresDatabase(url, schema=schema or new_schema_name(), **options)
    db.admin_url = url
    if migrate:
        try:
            db.migrate()
        except BaseException:
            db.close()
            raise
    return db
