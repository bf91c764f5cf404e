"""Schema migrations: idempotent, and safe when many processes start at once."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantkit.db import Database, open_database
from tenantkit.db.sql import MIGRATIONS
from tests.conftest import BACKENDS, POSTGRES_URL
from tests.dbutil import url_of

LATEST = len(MIGRATIONS)


@pytest.fixture(params=BACKENDS)
def unmigrated(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A database with no tables yet (a new schema on PostgreSQL)."""
    if request.param == "sqlite":
        db = open_database(f"sqlite:///{tmp_path / 'new.db'}", migrate=False)
    else:
        from tests.pg import fresh_postgres_database

        db = fresh_postgres_database(POSTGRES_URL, migrate=False)
    try:
        yield db
    finally:
        db.close()


def migrate_in_process(url: str) -> int:
    db = open_database(url, migrate=False)
    try:
        return db.migrate()
    finally:
        db.close()


def applied_versions(db: Database) -> list[int]:
    with db.transaction(write=False) as tx:
        cur = tx._cur  # type: ignore[attr-defined]
        cur.execute("SELECT version FROM schema_migrations ORDER BY version")
        return [int(row[0]) for row in cur.fetchall()]


def test_migrate_is_idempotent(unmigrated: Database) -> None:
    assert unmigrated.schema_version() == 0
    assert unmigrated.migrate() == LATEST
    assert unmigrated.migrate() == LATEST
    assert unmigrated.schema_version() == LATEST
    assert applied_versions(unmigrated) == list(range(1, LATEST + 1))
    with unmigrated.transaction() as tx:
        assert tx.count_tenants() == 0


def test_concurrent_migrations_apply_each_version_once(unmigrated: Database) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        versions = pool.map(migrate_in_process, [url_of(unmigrated)] * 4)
    assert versions == [LATEST] * 4
    assert applied_versions(unmigrated) == list(range(1, LATEST + 1))


def test_open_database_migrates_by_default(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        assert db.schema_version() == LATEST
    finally:
        db.close()
