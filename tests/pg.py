"""PostgreSQL test helpers: a fresh schema per test, or a skip that says why."""

from __future__ import annotations

from tenantkit.db import Database


def fresh_postgres_database(url: str) -> Database:
    import pytest

    pytest.skip("the PostgreSQL backend is not built yet")
