"""tenantkit's own records, behind one ``Database`` protocol.

Pick a backend by URL with :func:`open_database`::

    db = open_database("sqlite:///.tenantkit/tenantkit.db")
    db = open_database("postgresql://user@host/dbname")   # pip install tenantkit[postgres]

Drivers are imported only when their backend is opened.
"""

from __future__ import annotations

from tenantkit.db.base import (
    ApiKeyRecord,
    AuditEntry,
    Database,
    Lease,
    StorageUsage,
    Tenant,
    Transaction,
    UsageEvent,
    UsageTotals,
)
from tenantkit.errors import ConfigurationError

__all__ = [
    "ApiKeyRecord",
    "AuditEntry",
    "Database",
    "Lease",
    "StorageUsage",
    "Tenant",
    "Transaction",
    "UsageEvent",
    "UsageTotals",
    "open_database",
]


def open_database(url: str, *, migrate: bool = True) -> Database:
    """Open the records database named by ``url``, migrating its schema.

    Raises:
        ConfigurationError: for a URL no backend understands, or PostgreSQL
            without the ``postgres`` extra installed.
    """
    db: Database
    if url.startswith("sqlite:///"):
        from tenantkit.db.sqlite import SQLiteDatabase

        db = SQLiteDatabase(url)
    elif url.startswith(("postgresql://", "postgres://")):
        try:
            from tenantkit.db.postgres import PostgresDatabase
        except ImportError as exc:
            raise ConfigurationError(
                "PostgreSQL needs the postgres extra: pip install 'tenantkit[postgres]'"
            ) from exc
        db = PostgresDatabase(url)
    else:
        scheme = url.split(":", 1)[0]
        raise ConfigurationError(
            f"unsupported database URL scheme {scheme!r}: use sqlite:///PATH or postgresql://..."
        )
    if migrate:
        db.migrate()
    return db
