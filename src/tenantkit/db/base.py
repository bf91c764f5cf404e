"""The records tenantkit keeps, and the protocol every database backend speaks.

A backend hands out transactions; every read and write goes through one::

    with db.transaction() as tx:          # a write transaction
        tenant = tx.get_tenant("acme-corp")
        tx.update_tenant(tenant.id, tier="pro", now=clock())

Write transactions serialise the read-modify-write steps that need it
(SQLite ``BEGIN IMMEDIATE``; PostgreSQL an advisory lock per key, taken by
``lock_limiter`` and ``active_leases``), so callers never see a race. Times
are UNIX seconds (floats, UTC).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

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
]

TenantStatus = Literal["active", "suspended"]


@dataclass(frozen=True, slots=True)
class Tenant:
    """A tenant: one customer of the SaaS."""

    id: str
    name: str
    tier: str
    status: TenantStatus
    created_at: float
    updated_at: float
    email: str | None = None
    suspended_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.status == "active"

    def public(self) -> dict[str, Any]:
        """The record as JSON-ready data (what ``GET /tenant`` shows)."""
        return {
            "tenant_id": self.id,
            "name": self.name,
            "tier": self.tier,
            "status": self.status,
            "email": self.email,
            "suspended_reason": self.suspended_reason,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """What is stored about an API key: never the key itself.

    ``revoked_at`` may lie in the future: a rotated key keeps working until then.
    """

    id: str
    tenant_id: str
    label: str
    hint: str
    created_at: float
    scopes: tuple[str, ...] = ()
    expires_at: float | None = None
    revoked_at: float | None = None
    last_used_at: float | None = None

    def usable_at(self, now: float) -> bool:
        """Whether the key may authenticate at ``now``."""
        if self.revoked_at is not None and now >= self.revoked_at:
            return False
        return not (self.expires_at is not None and now >= self.expires_at)

    def public(self) -> dict[str, Any]:
        return {
            "key_id": self.id,
            "tenant_id": self.tenant_id,
            "label": self.label,
            "hint": self.hint,
            "scopes": list(self.scopes),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "last_used_at": self.last_used_at,
        }


@dataclass(frozen=True, slots=True)
class Lease:
    """A concurrency slot held by one call in flight."""

    id: str
    tenant_id: str
    acquired_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One call, as metered. ``request_id`` is the idempotency key."""

    request_id: str
    tenant_id: str
    function: str
    status: int
    started_at: float
    ended_at: float
    compute_seconds: float = 0.0
    gpu_type: str | None = None
    gpu_count: int = 0
    gpu_seconds: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400


@dataclass(slots=True)
class UsageTotals:
    """Usage summed over a period (and optionally one function)."""

    requests: int = 0
    errors: int = 0
    compute_seconds: float = 0.0
    gpu_seconds: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    by_function: dict[str, UsageTotals] = field(default_factory=dict)

    @classmethod
    def from_event(cls, event: UsageEvent) -> UsageTotals:
        """What one call adds to the totals."""
        return cls(
            requests=1,
            errors=0 if event.ok else 1,
            compute_seconds=event.compute_seconds,
            gpu_seconds=event.gpu_seconds,
            bytes_in=event.bytes_in,
            bytes_out=event.bytes_out,
        )

    def add(self, other: UsageTotals) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.compute_seconds += other.compute_seconds
        self.gpu_seconds += other.gpu_seconds
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "requests": self.requests,
            "errors": self.errors,
            "compute_seconds": round(self.compute_seconds, 6),
            "gpu_seconds": round(self.gpu_seconds, 6),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
        }
        if self.by_function:
            data["by_function"] = {k: v.as_dict() for k, v in sorted(self.by_function.items())}
        return data


@dataclass(frozen=True, slots=True)
class StorageUsage:
    """Bytes and files a tenant stores, as last accounted."""

    tenant_id: str
    bytes: int
    files: int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """An admin action, kept for the audit trail."""

    id: str
    at: float
    actor: str
    action: str
    tenant_id: str | None
    detail: dict[str, Any]

    @classmethod
    def new(
        cls, at: float, actor: str, action: str, tenant_id: str | None, **detail: Any
    ) -> AuditEntry:
        """A new entry with a fresh random id."""
        return cls(uuid.uuid4().hex, at, actor, action, tenant_id, detail)


class Transaction(Protocol):
    """Every operation on tenantkit's records. Obtain one from ``Database.transaction``."""

    # tenants
    def create_tenant(self, tenant: Tenant) -> None:
        """Insert a tenant. Raises ``TenantAlreadyExists``.

        Usage stored under the id while no tenant held it (events of a deleted
        tenant metered after its deletion) is archived first, as
        ``delete_tenant`` does, so the new tenant starts with none.
        """

    def get_tenant(self, tenant_id: str) -> Tenant | None: ...

    def list_tenants(self, *, limit: int = 100, after: str | None = None) -> list[Tenant]:
        """Tenants ordered by id, ``limit`` at a time, starting after ``after``."""

    def update_tenant(self, tenant_id: str, *, now: float, **changes: Any) -> Tenant:
        """Change ``tier``, ``status``, ``suspended_reason``, ``name`` or ``email``.

        Raises ``TenantNotFound``.
        """

    def delete_tenant(self, tenant_id: str, *, now: float | None = None) -> bool:
        """Delete a tenant with its keys, limiter state, leases and storage counters.

        Its usage (events, daily totals, gauges) is archived, not deleted: moved
        to the id ``tombstone_id(tenant_id, now)`` (``<id>~deleted-<seconds>``,
        which no tenant id can equal) for billing, so a tenant created later
        with the same id starts with no usage. ``now`` defaults to the wall
        clock. Returns whether the tenant existed (nothing changes if not).
        """

    def lock_tenant(self, tenant_id: str) -> TenantStatus | None:
        """The tenant's status (``None``: no such tenant), holding the row so it
        cannot be deleted before this transaction ends (PostgreSQL ``FOR KEY
        SHARE``; SQLite's write transaction holds the whole database)."""

    def count_tenants(self) -> int: ...

    # api keys
    def create_key(self, key: ApiKeyRecord) -> None: ...

    def get_key(self, key_id: str) -> ApiKeyRecord | None: ...

    def list_keys(self, tenant_id: str) -> list[ApiKeyRecord]: ...

    def set_key_revoked(self, key_id: str, revoked_at: float) -> ApiKeyRecord:
        """Set when a key stops working (keeps an earlier time). Raises ``KeyNotFound``."""

    def touch_key(self, key_id: str, used_at: float) -> None: ...

    # limiter state (GCRA theoretical arrival times)
    def lock_limiter(self, key: str) -> float | None:
        """Read a limiter value, holding a lock on it until the transaction ends."""

    def set_limiter(self, key: str, value: float) -> None: ...

    # concurrency leases
    def active_leases(self, tenant_id: str, now: float) -> int:
        """Count the tenant's unexpired leases, deleting its expired ones (if any).

        Takes the tenant's lease lock (PostgreSQL advisory) first.
        """

    def count_leases(self, tenant_id: str, now: float) -> int:
        """Count the tenant's unexpired leases (same lock, never deletes)."""

    def add_lease(self, lease: Lease) -> None: ...

    def remove_lease(self, lease_id: str) -> bool: ...

    # usage
    def record_usage(self, events: Iterable[UsageEvent]) -> int:
        """Insert events not seen before (by request id) and add them to the daily
        totals. Returns how many were new.

        An event that started before the tenant now holding its id was created
        belongs to an earlier, deleted tenant of that id: it is stored under
        that tenant's latest tombstone (see ``delete_tenant``), never counted
        for the current one.
        """

    def usage_events(
        self, tenant_id: str, start: float, end: float, *, limit: int | None = None
    ) -> list[UsageEvent]: ...

    def usage_totals(
        self, tenant_id: str, first_day: str, last_day: str
    ) -> dict[str, dict[str, UsageTotals]]:
        """Daily totals from ``first_day`` to ``last_day`` (``YYYY-MM-DD``), inclusive:
        ``{day: {function: totals}}``."""

    def compute_seconds_on(self, tenant_id: str, day: str) -> float: ...

    def archived_tenant_ids(self, tenant_id: str) -> list[str]:
        """The ids a deleted ``tenant_id``'s usage is archived under
        (``<id>~deleted-<UNIX seconds>``, see ``tombstone_id``), oldest first."""

    def count_usage_events(self, tenant_id: str | None = None) -> int: ...

    def prune_usage_events(self, before: float, *, limit: int | None = None) -> int:
        """Delete events that started before ``before`` (their totals stay).

        With ``limit``, delete at most that many (oldest first), so a large
        backlog can be pruned in short transactions. Returns how many went.
        """

    # gauges (storage bytes and files, per day)
    def set_gauge(self, tenant_id: str, day: str, name: str, value: float) -> None: ...

    def gauges(self, tenant_id: str, first_day: str, last_day: str) -> dict[str, float]:
        """Latest value of each gauge over the days, by name."""

    # storage accounting
    def storage_usage(self, tenant_id: str) -> StorageUsage: ...

    def adjust_storage(
        self,
        tenant_id: str,
        delta_bytes: int,
        delta_files: int,
        *,
        max_bytes: int | None = None,
        max_files: int | None = None,
    ) -> StorageUsage | None:
        """Add to a tenant's storage totals unless that would pass a maximum.

        Returns the new totals, or ``None`` (and changes nothing) when refused.
        """

    def set_storage_usage(self, usage: StorageUsage) -> None: ...

    # audit
    def audit(self, entry: AuditEntry) -> None: ...

    def audit_entries(self, tenant_id: str | None = None, limit: int = 100) -> list[AuditEntry]: ...

    # export / import
    def export_rows(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every record as ``(table, row)``."""

    def import_rows(self, rows: Iterable[tuple[str, dict[str, Any]]]) -> int:
        """Insert or replace rows (idempotent). Returns how many were applied."""


class Database(Protocol):
    """A records database. Backends: ``tenantkit.db.sqlite``, ``tenantkit.db.postgres``."""

    url: str
    backend: str

    def transaction(self, *, write: bool = True) -> AbstractContextManager[Transaction]:
        """Open a transaction; it commits on exit and rolls back on an exception."""

    def migrate(self) -> int:
        """Apply pending schema migrations; return the schema version."""

    def schema_version(self) -> int: ...

    def ping(self) -> bool:
        """Whether the database answers now."""

    def close(self) -> None: ...


TABLES: Sequence[str] = (
    "tenants",
    "api_keys",
    "limiter_state",
    "leases",
    "usage_events",
    "usage_daily",
    "usage_gauges",
    "storage_usage",
    "audit_log",
)
