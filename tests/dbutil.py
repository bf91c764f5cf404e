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


def add_tenants(db: Database, *tenant_ids: str, created_at: float = 0.0) -> None:
    """Create bare active tenant rows (admission refuses calls of unknown tenants)."""
    from tenantkit.db import Tenant

    with db.transaction() as tx:
        for tenant_id in tenant_ids:
            if tx.get_tenant(tenant_id) is None:
                tx.create_tenant(
                    Tenant(tenant_id, tenant_id, "free", "active", created_at, created_at)
                )
