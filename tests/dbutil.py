"""Helpers for database tests that need a URL another process can open."""

from __future__ import annotations

from tenantkit.db import Database


def url_of(db: Database) -> str:
    """A URL that opens the same records as ``db`` (its schema included)."""
    schema = getattr(db, "schema", None)
    if db.backend == "postgres" and schema:
        sep = "&" if "?" in db.url else "?"
        return f"{db.url}{sep}schema={schema}"
    return db.url
