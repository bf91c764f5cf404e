"""Shared fixtures. ``database`` runs every database test against each backend.

PostgreSQL cases use the server named by ``TENANTKIT_TEST_POSTGRES_URL``
(default ``postgresql://postgres@127.0.0.1:5432/test``); each test gets its
own schema. When the server is unreachable they skip, saying how to enable them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantkit.db import Database, open_database

POSTGRES_URL = os.environ.get(
    "TENANTKIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


def make_database(backend: str, tmp_path: Path) -> Database:
    """A fresh, migrated database of the given backend."""
    if backend == "sqlite":
        return open_database(f"sqlite:///{tmp_path / 'records.db'}")
    from tests.pg import fresh_postgres_database

    return fresh_postgres_database(POSTGRES_URL)


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    db = make_database(request.param, tmp_path)
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def sqlite_database(tmp_path: Path) -> Iterator[Database]:
    db = make_database("sqlite", tmp_path)
    try:
        yield db
    finally:
        db.close()
