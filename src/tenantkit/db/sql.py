"""Portable SQL shared by the SQLite and PostgreSQL backends.

Everything here is plain SQL both engines run alike (``ON CONFLICT``,
``RETURNING``, standard types). What differs, placeholders, locking and the
driver's errors, is a small hook on the backend (``SQLTransaction._lock`` and
the ``placeholder`` each backend passes in).
"""

# SQL text here is built only from module constants and validated identifiers;
# every value goes through a driver parameter.
# ruff: noqa: S608

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from tenantkit.db.base import (
    TABLES,
    ApiKeyRecord,
    AuditEntry,
    Lease,
    StorageUsage,
    Tenant,
    TenantStatus,
    UsageEvent,
    UsageTotals,
)
from tenantkit.errors import KeyNotFound, TenantAlreadyExists, TenantNotFound

__all__ = [
    "MIGRATIONS",
    "PRIMARY_KEYS",
    "TOMBSTONE_MARK",
    "Cursor",
    "SQLDatabase",
    "SQLTransaction",
    "tombstone_id",
    "utc_day",
]

_F = "DOUBLE PRECISION"

# Each migration is a list of statements; a migration's number is its index + 1.
MIGRATIONS: Sequence[Sequence[str]] = (
    (
        "CREATE TABLE tenants (id TEXT PRIMARY KEY, name TEXT NOT NULL, tier TEXT NOT NULL,"
        f" status TEXT NOT NULL, email TEXT, suspended_reason TEXT, created_at {_F} NOT NULL,"
        f" updated_at {_F} NOT NULL)",
        "CREATE TABLE api_keys (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL,"
        " label TEXT NOT NULL, hint TEXT NOT NULL, scopes TEXT NOT NULL,"
        f" created_at {_F} NOT NULL, expires_at {_F}, revoked_at {_F}, last_used_at {_F})",
        "CREATE INDEX api_keys_tenant ON api_keys (tenant_id)",
        f"CREATE TABLE limiter_state (key TEXT PRIMARY KEY, value {_F} NOT NULL)",
        "CREATE TABLE leases (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL,"
        f" acquired_at {_F} NOT NULL, expires_at {_F} NOT NULL)",
        "CREATE INDEX leases_tenant ON leases (tenant_id)",
        "CREATE TABLE usage_events (request_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL,"
        " function TEXT NOT NULL, status INTEGER NOT NULL,"
        f" started_at {_F} NOT NULL, ended_at {_F} NOT NULL, compute_seconds {_F} NOT NULL,"
        f" gpu_type TEXT, gpu_count INTEGER NOT NULL, gpu_seconds {_F} NOT NULL,"
        " bytes_in BIGINT NOT NULL, bytes_out BIGINT NOT NULL)",
        "CREATE INDEX usage_events_tenant_time ON usage_events (tenant_id, started_at)",
        "CREATE INDEX usage_events_time ON usage_events (started_at)",
        "CREATE TABLE usage_daily (tenant_id TEXT NOT NULL, day TEXT NOT NULL,"
        " function TEXT NOT NULL, requests BIGINT NOT NULL, errors BIGINT NOT NULL,"
        f" compute_seconds {_F} NOT NULL, gpu_seconds {_F} NOT NULL,"
        " bytes_in BIGINT NOT NULL, bytes_out BIGINT NOT NULL,"
        " PRIMARY KEY (tenant_id, day, function))",
        "CREATE TABLE usage_gauges (tenant_id TEXT NOT NULL, day TEXT NOT NULL,"
        f" name TEXT NOT NULL, value {_F} NOT NULL, PRIMARY KEY (tenant_id, day, name))",
        "CREATE TABLE storage_usage (tenant_id TEXT PRIMARY KEY, bytes BIGINT NOT NULL,"
        " files BIGINT NOT NULL)",
        f"CREATE TABLE audit_log (id TEXT PRIMARY KEY, at {_F} NOT NULL, actor TEXT NOT NULL,"
        " action TEXT NOT NULL, tenant_id TEXT, detail TEXT NOT NULL)",
        "CREATE INDEX audit_log_tenant ON audit_log (tenant_id, at)",
    ),
)

PRIMARY_KEYS: Mapping[str, tuple[str, ...]] = {
    "tenants": ("id",),
    "api_keys": ("id",),
    "limiter_state": ("key",),
    "leases": ("id",),
    "usage_events": ("request_id",),
    "usage_daily": ("tenant_id", "day", "function"),
    "usage_gauges": ("tenant_id", "day", "name"),
    "storage_usage": ("tenant_id",),
    "audit_log": ("id",),
}

_TENANT_COLS = "id, name, tier, status, created_at, updated_at, email, suspended_reason"
_KEY_COLS = "id, tenant_id, label, hint, created_at, scopes, expires_at, revoked_at, last_used_at"
_EVENT_COLS = (
    "request_id, tenant_id, function, status, started_at, ended_at, compute_seconds,"
    " gpu_type, gpu_count, gpu_seconds, bytes_in, bytes_out"
)
_TOTAL_COLS = "requests, errors, compute_seconds, gpu_seconds, bytes_in, bytes_out"
_ADD_TOTALS = (
    "ON CONFLICT (tenant_id, day, function) DO UPDATE"
    " SET requests = usage_daily.requests + excluded.requests,"
    " errors = usage_daily.errors + excluded.errors,"
    " compute_seconds = usage_daily.compute_seconds + excluded.compute_seconds,"
    " gpu_seconds = usage_daily.gpu_seconds + excluded.gpu_seconds,"
    " bytes_in = usage_daily.bytes_in + excluded.bytes_in,"
    " bytes_out = usage_daily.bytes_out + excluded.bytes_out"
)
_IDENTIFIER = re.compile(r"[a-z_]{1,40}")
_TENANT_FIELDS = frozenset({"name", "tier", "status", "email", "suspended_reason"})


TOMBSTONE_MARK = "~deleted-"
"""Between a deleted tenant's id and its deletion time in the id its usage is archived under."""


def tombstone_id(tenant_id: str, deleted_at: float) -> str:
    """The id a deleted tenant's usage is kept under: ``<id>~deleted-<UNIX seconds>``.

    ``~`` is never part of a tenant id, so no tenant can ever read it as its
    own; the seconds are zero-padded to 10 digits so the latest tombstone of
    an id sorts last.

    Example:
        >>> tombstone_id("acme", 1_700_000_000.5)
        'acme~deleted-1700000000'
    """
    return f"{tenant_id}{TOMBSTONE_MARK}{max(0, int(deleted_at)):010d}"


def utc_day(ts: float) -> str:
    """The UTC day of a UNIX time, as ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def with_placeholder(sql: str, placeholder: str) -> str:
    """``sql`` written with ``?`` markers, in the driver's marker style."""
    return sql if placeholder == "?" else sql.replace("?", placeholder)


class Cursor(Protocol):
    """The part of a DB-API cursor tenantkit uses."""

    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Any: ...

    def execute(self, sql: Any, params: Sequence[Any] = ..., /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def fetchmany(self, size: int = ..., /) -> list[Any]: ...


def _tenant(row: Sequence[Any]) -> Tenant:
    values = list(row)
    values[4], values[5] = float(values[4]), float(values[5])
    return Tenant(*values)


def _key(row: Sequence[Any]) -> ApiKeyRecord:
    values = list(row)
    values[5] = tuple(json.loads(values[5]))
    return ApiKeyRecord(*values)


def _totals(row: Sequence[Any]) -> UsageTotals:
    return UsageTotals(
        requests=int(row[0]),
        errors=int(row[1]),
        compute_seconds=float(row[2]),
        gpu_seconds=float(row[3]),
        bytes_in=int(row[4]),
        bytes_out=int(row[5]),
    )


class SQLTransaction:
    """``Transaction`` over a DB-API cursor, in SQL both backends accept.

    Args:
        cursor: An open cursor inside a transaction.
        placeholder: The driver's parameter marker (``?`` or ``%s``).
    """

    _key_share = ""
    """Appended to ``lock_tenant``'s SELECT (PostgreSQL: `` FOR KEY SHARE``)."""

    def __init__(self, cursor: Cursor, placeholder: str = "?") -> None:
        self._cur = cursor
        self._placeholder = placeholder

    # -- plumbing -------------------------------------------------------------

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        self._cur.execute(with_placeholder(sql, self._placeholder), params)
        return self._cur

    def _lock(self, key: str) -> None:
        """Serialise writers on ``key`` until the transaction ends.

        SQLite write transactions already hold the database lock; PostgreSQL
        overrides this with an advisory transaction lock.
        """

    # -- tenants --------------------------------------------------------------

    def create_tenant(self, tenant: Tenant) -> None:
        cur = self._exec(
            f"INSERT INTO tenants ({_TENANT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO NOTHING",
            (
                tenant.id,
                tenant.name,
                tenant.tier,
                tenant.status,
                tenant.created_at,
                tenant.updated_at,
                tenant.email,
                tenant.suspended_reason,
            ),
        )
        if cur.rowcount != 1:
            raise TenantAlreadyExists(f"tenant {tenant.id!r} already exists")
        if self._has_usage(tenant.id):
            # Usage stored under the bare id while no tenant had it: late events
            # of a deleted tenant. Never the new tenant's.
            self._archive_usage(tenant.id, self._tombstone_for(tenant.id, tenant.created_at))

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        row = self._exec(
            f"SELECT {_TENANT_COLS} FROM tenants WHERE id = ?", (tenant_id,)
        ).fetchone()
        return None if row is None else _tenant(row)

    def list_tenants(self, *, limit: int = 100, after: str | None = None) -> list[Tenant]:
        rows = self._exec(
            f"SELECT {_TENANT_COLS} FROM tenants WHERE id > ? ORDER BY id LIMIT ?",
            (after or "", limit),
        ).fetchall()
        return [_tenant(r) for r in rows]

    def count_tenants(self) -> int:
        return int(self._exec("SELECT COUNT(*) FROM tenants").fetchone()[0])

    def update_tenant(self, tenant_id: str, *, now: float, **changes: Any) -> Tenant:
        unknown = set(changes) - _TENANT_FIELDS
        if unknown:
            raise ValueError(f"cannot change tenant fields {sorted(unknown)}")
        sets = "".join(f"{name} = ?, " for name in changes)
        row = self._exec(
            f"UPDATE tenants SET {sets}updated_at = ? WHERE id = ? RETURNING {_TENANT_COLS}",
            (*changes.values(), now, tenant_id),
        ).fetchone()
        if row is None:
            raise TenantNotFound(f"tenant {tenant_id!r} not found")
        return _tenant(row)

    def delete_tenant(self, tenant_id: str, *, now: float | None = None) -> bool:
        # The tenant row goes first: on PostgreSQL its row lock then orders this
        # deletion against any admission holding the row (``lock_tenant``).
        if self._exec("DELETE FROM tenants WHERE id = ?", (tenant_id,)).rowcount != 1:
            return False
        for table, column in (
            ("api_keys", "tenant_id"),
            ("leases", "tenant_id"),
            ("storage_usage", "tenant_id"),
        ):
            self._exec(f"DELETE FROM {table} WHERE {column} = ?", (tenant_id,))
        # the tenant's limiter keys: "rate:<id>" and any "rate:<id>:<part>"
        prefix = re.sub(r"([\\%_])", r"\\\1", f"rate:{tenant_id}:")
        self._exec(
            "DELETE FROM limiter_state WHERE key = ? OR key LIKE ? ESCAPE '\\'",
            (f"rate:{tenant_id}", prefix + "%"),
        )
        self._archive_usage(tenant_id, tombstone_id(tenant_id, time.time() if now is None else now))
        return True

    def lock_tenant(self, tenant_id: str) -> TenantStatus | None:
        row = self._exec(
            f"SELECT status FROM tenants WHERE id = ?{self._key_share}", (tenant_id,)
        ).fetchone()
        return None if row is None else cast("TenantStatus", row[0])

    def _has_usage(self, tenant_id: str) -> bool:
        for table in ("usage_daily", "usage_events", "usage_gauges"):
            sql = f"SELECT 1 FROM {table} WHERE tenant_id = ? LIMIT 1"
            if self._exec(sql, (tenant_id,)).fetchone() is not None:
                return True
        return False

    def _tombstone_for(self, tenant_id: str, fallback: float) -> str:
        """The latest tombstone of ``tenant_id``; else the one at ``fallback``."""
        low = f"{tenant_id}{TOMBSTONE_MARK}"
        row = self._exec(
            "SELECT MAX(tenant_id) FROM usage_daily WHERE tenant_id > ? AND tenant_id < ?",
            (low, low[:-1] + chr(ord(low[-1]) + 1)),
        ).fetchone()
        return (
            str(row[0])
            if row is not None and row[0] is not None
            else tombstone_id(tenant_id, fallback)
        )

    def _archive_usage(self, tenant_id: str, tombstone: str) -> None:
        """Move the usage stored under ``tenant_id`` to ``tombstone`` (merging totals).

        Totals move as ``DELETE ... RETURNING`` gives them, so an increment a
        concurrent flush commits meanwhile is moved, not lost (PostgreSQL
        re-reads a row whose update it waited for); events that flush inserts
        stay under the bare id and are archived when the id is created again.
        """
        self._exec(
            "UPDATE usage_events SET tenant_id = ? WHERE tenant_id = ?", (tombstone, tenant_id)
        )
        daily = self._exec(
            f"DELETE FROM usage_daily WHERE tenant_id = ? RETURNING day, function, {_TOTAL_COLS}",
            (tenant_id,),
        ).fetchall()
        for day, function, *totals in sorted(daily):
            self._add_daily(tombstone, day, function, _totals(totals))
        gauges = self._exec(
            "DELETE FROM usage_gauges WHERE tenant_id = ? RETURNING day, name, value",
            (tenant_id,),
        ).fetchall()
        for day, name, value in sorted(gauges):
            self.set_gauge(tombstone, day, name, float(value))

    # -- api keys -------------------------------------------------------------

    def create_key(self, key: ApiKeyRecord) -> None:
        self._exec(
            f"INSERT INTO api_keys ({_KEY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key.id,
                key.tenant_id,
                key.label,
                key.hint,
                key.created_at,
                json.dumps(list(key.scopes)),
                key.expires_at,
                key.revoked_at,
                key.last_used_at,
            ),
        )

    def get_key(self, key_id: str) -> ApiKeyRecord | None:
        row = self._exec(f"SELECT {_KEY_COLS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return None if row is None else _key(row)

    def list_keys(self, tenant_id: str) -> list[ApiKeyRecord]:
        rows = self._exec(
            f"SELECT {_KEY_COLS} FROM api_keys WHERE tenant_id = ? ORDER BY created_at, id",
            (tenant_id,),
        ).fetchall()
        return [_key(r) for r in rows]

    def set_key_revoked(self, key_id: str, revoked_at: float) -> ApiKeyRecord:
        row = self._exec(
            "UPDATE api_keys SET revoked_at = CASE WHEN revoked_at IS NULL OR revoked_at > ?"
            f" THEN ? ELSE revoked_at END WHERE id = ? RETURNING {_KEY_COLS}",
            (revoked_at, revoked_at, key_id),
        ).fetchone()
        if row is None:
            raise KeyNotFound(f"key {key_id!r} not found")
        return _key(row)

    def touch_key(self, key_id: str, used_at: float) -> None:
        self._exec("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (used_at, key_id))

    # -- limiter state --------------------------------------------------------

    def lock_limiter(self, key: str) -> float | None:
        self._lock(key)
        row = self._exec("SELECT value FROM limiter_state WHERE key = ?", (key,)).fetchone()
        return None if row is None else float(row[0])

    def set_limiter(self, key: str, value: float) -> None:
        self._exec(
            "INSERT INTO limiter_state (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # -- leases ---------------------------------------------------------------

    def active_leases(self, tenant_id: str, now: float) -> int:
        self._lock(f"leases:{tenant_id}")
        total, active = self._exec(
            "SELECT COUNT(*), COUNT(CASE WHEN expires_at > ? THEN 1 END) FROM leases"
            " WHERE tenant_id = ?",
            (now, tenant_id),
        ).fetchone()
        if int(total) > int(active):  # only when some lease lapsed (a crashed caller)
            self._exec(
                "DELETE FROM leases WHERE tenant_id = ? AND expires_at <= ?", (tenant_id, now)
            )
        return int(active)

    def count_leases(self, tenant_id: str, now: float) -> int:
        self._lock(f"leases:{tenant_id}")
        row = self._exec(
            "SELECT COUNT(*) FROM leases WHERE tenant_id = ? AND expires_at > ?", (tenant_id, now)
        ).fetchone()
        return int(row[0])

    def add_lease(self, lease: Lease) -> None:
        self._exec(
            "INSERT INTO leases (id, tenant_id, acquired_at, expires_at) VALUES (?, ?, ?, ?)",
            (lease.id, lease.tenant_id, lease.acquired_at, lease.expires_at),
        )

    def remove_lease(self, lease_id: str) -> bool:
        return self._exec("DELETE FROM leases WHERE id = ?", (lease_id,)).rowcount == 1

    # -- usage ----------------------------------------------------------------

    def record_usage(self, events: Iterable[UsageEvent]) -> int:
        daily: dict[tuple[str, str, str], UsageTotals] = defaultdict(UsageTotals)
        new = 0
        created: dict[str, float | None] = {}
        archives: dict[str, str] = {}
        # One global order (request id, then day row) so concurrent batches that
        # overlap take their row locks in the same order and cannot deadlock.
        for e in sorted(events, key=lambda event: event.request_id):
            if e.tenant_id not in created:
                created[e.tenant_id] = self._created_at(e.tenant_id)
            since = created[e.tenant_id]
            if since is not None and e.started_at < since:
                # A call of an earlier tenant of this id, metered after that tenant
                # was deleted: kept with its archived usage, never the new tenant's.
                if e.tenant_id not in archives:
                    archives[e.tenant_id] = self._tombstone_for(e.tenant_id, since)
                e = replace(e, tenant_id=archives[e.tenant_id])
            cur = self._exec(
                f"INSERT INTO usage_events ({_EVENT_COLS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_id) DO NOTHING",
                (
                    e.request_id,
                    e.tenant_id,
                    e.function,
                    e.status,
                    e.started_at,
                    e.ended_at,
                    e.compute_seconds,
                    e.gpu_type,
                    e.gpu_count,
                    e.gpu_seconds,
                    e.bytes_in,
                    e.bytes_out,
                ),
            )
            if cur.rowcount != 1:
                continue
            new += 1
            daily[(e.tenant_id, utc_day(e.started_at), e.function)].add(UsageTotals.from_event(e))
        for (tenant_id, day, function), t in sorted(daily.items()):
            self._add_daily(tenant_id, day, function, t)
        return new

    def _created_at(self, tenant_id: str) -> float | None:
        row = self._exec("SELECT created_at FROM tenants WHERE id = ?", (tenant_id,)).fetchone()
        return None if row is None else float(row[0])

    def _add_daily(self, tenant_id: str, day: str, function: str, t: UsageTotals) -> None:
        self._exec(
            f"INSERT INTO usage_daily (tenant_id, day, function, {_TOTAL_COLS})"
            f" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) {_ADD_TOTALS}",
            (
                tenant_id,
                day,
                function,
                t.requests,
                t.errors,
                t.compute_seconds,
                t.gpu_seconds,
                t.bytes_in,
                t.bytes_out,
            ),
        )

    def usage_events(
        self, tenant_id: str, start: float, end: float, *, limit: int | None = None
    ) -> list[UsageEvent]:
        sql = (
            f"SELECT {_EVENT_COLS} FROM usage_events WHERE tenant_id = ?"
            " AND started_at >= ? AND started_at < ? ORDER BY started_at, request_id"
        )
        params: tuple[Any, ...] = (tenant_id, start, end)
        if limit is not None:
            sql += " LIMIT ?"
            params += (limit,)
        return [UsageEvent(*row) for row in self._exec(sql, params).fetchall()]

    def usage_totals(
        self, tenant_id: str, first_day: str, last_day: str
    ) -> dict[str, dict[str, UsageTotals]]:
        rows = self._exec(
            f"SELECT day, function, {_TOTAL_COLS} FROM usage_daily"
            " WHERE tenant_id = ? AND day >= ? AND day <= ? ORDER BY day, function",
            (tenant_id, first_day, last_day),
        ).fetchall()
        result: dict[str, dict[str, UsageTotals]] = {}
        for row in rows:
            result.setdefault(row[0], {})[row[1]] = _totals(row[2:])
        return result

    def compute_seconds_on(self, tenant_id: str, day: str) -> float:
        row = self._exec(
            "SELECT COALESCE(SUM(compute_seconds), 0) FROM usage_daily"
            " WHERE tenant_id = ? AND day = ?",
            (tenant_id, day),
        ).fetchone()
        return float(row[0])

    def archived_tenant_ids(self, tenant_id: str) -> list[str]:
        # A prefix compared with = (not a range or LIKE), so PostgreSQL's collation
        # cannot change which ids match.
        prefix = f"{tenant_id}{TOMBSTONE_MARK}"
        selects = " UNION ".join(
            f"SELECT tenant_id FROM {table} WHERE SUBSTR(tenant_id, 1, ?) = ?"
            for table in ("usage_daily", "usage_events", "usage_gauges")
        )
        rows = self._exec(selects, (len(prefix), prefix) * 3).fetchall()
        return sorted(
            str(row[0])
            for row in rows
            if str(row[0])[len(prefix) :].isdigit() and str(row[0]).isascii()
        )

    def count_usage_events(self, tenant_id: str | None = None) -> int:
        if tenant_id is None:
            row = self._exec("SELECT COUNT(*) FROM usage_events").fetchone()
        else:
            row = self._exec(
                "SELECT COUNT(*) FROM usage_events WHERE tenant_id = ?", (tenant_id,)
            ).fetchone()
        return int(row[0])

    def prune_usage_events(self, before: float, *, limit: int | None = None) -> int:
        if limit is None:
            return self._exec("DELETE FROM usage_events WHERE started_at < ?", (before,)).rowcount
        return self._exec(
            "DELETE FROM usage_events WHERE request_id IN (SELECT request_id FROM usage_events"
            " WHERE started_at < ? ORDER BY started_at LIMIT ?)",
            (before, limit),
        ).rowcount

    # -- gauges ---------------------------------------------------------------

    def set_gauge(self, tenant_id: str, day: str, name: str, value: float) -> None:
        self._exec(
            "INSERT INTO usage_gauges (tenant_id, day, name, value) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (tenant_id, day, name) DO UPDATE SET value = excluded.value",
            (tenant_id, day, name, value),
        )

    def gauges(self, tenant_id: str, first_day: str, last_day: str) -> dict[str, float]:
        rows = self._exec(
            "SELECT name, value FROM usage_gauges WHERE tenant_id = ? AND day >= ? AND day <= ?"
            " ORDER BY day",
            (tenant_id, first_day, last_day),
        ).fetchall()
        return {name: float(value) for name, value in rows}

    # -- storage accounting ---------------------------------------------------

    def storage_usage(self, tenant_id: str) -> StorageUsage:
        row = self._exec(
            "SELECT bytes, files FROM storage_usage WHERE tenant_id = ?", (tenant_id,)
        ).fetchone()
        if row is None:
            return StorageUsage(tenant_id, 0, 0)
        return StorageUsage(tenant_id, int(row[0]), int(row[1]))

    def adjust_storage(
        self,
        tenant_id: str,
        delta_bytes: int,
        delta_files: int,
        *,
        max_bytes: int | None = None,
        max_files: int | None = None,
    ) -> StorageUsage | None:
        self._exec(
            "INSERT INTO storage_usage (tenant_id, bytes, files) VALUES (?, 0, 0)"
            " ON CONFLICT (tenant_id) DO NOTHING",
            (tenant_id,),
        )
        sql = "UPDATE storage_usage SET bytes = bytes + ?, files = files + ? WHERE tenant_id = ?"
        params: list[Any] = [delta_bytes, delta_files, tenant_id]
        if max_bytes is not None and delta_bytes > 0:
            sql += " AND bytes + ? <= ?"
            params += [delta_bytes, max_bytes]
        if max_files is not None and delta_files > 0:
            sql += " AND files + ? <= ?"
            params += [delta_files, max_files]
        row = self._exec(sql + " RETURNING bytes, files", params).fetchone()
        return None if row is None else StorageUsage(tenant_id, int(row[0]), int(row[1]))

    def set_storage_usage(self, usage: StorageUsage) -> None:
        self._exec(
            "INSERT INTO storage_usage (tenant_id, bytes, files) VALUES (?, ?, ?)"
            " ON CONFLICT (tenant_id) DO UPDATE SET bytes = excluded.bytes, files = excluded.files",
            (usage.tenant_id, usage.bytes, usage.files),
        )

    # -- audit ----------------------------------------------------------------

    def audit(self, entry: AuditEntry) -> None:
        self._exec(
            "INSERT INTO audit_log (id, at, actor, action, tenant_id, detail)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                entry.id,
                entry.at,
                entry.actor,
                entry.action,
                entry.tenant_id,
                json.dumps(entry.detail, sort_keys=True),
            ),
        )

    def audit_entries(self, tenant_id: str | None = None, limit: int = 100) -> list[AuditEntry]:
        cols = "SELECT id, at, actor, action, tenant_id, detail FROM audit_log"
        if tenant_id is None:
            rows = self._exec(f"{cols} ORDER BY at DESC LIMIT ?", (limit,)).fetchall()
        else:
            rows = self._exec(
                f"{cols} WHERE tenant_id = ? ORDER BY at DESC LIMIT ?", (tenant_id, limit)
            ).fetchall()
        return [AuditEntry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    # -- export / import ------------------------------------------------------

    def export_rows(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for table in TABLES:
            keys = ", ".join(PRIMARY_KEYS[table])
            cur = self._exec(f"SELECT * FROM {table} ORDER BY {keys}")
            names = [d[0] for d in cur.description]
            while batch := cur.fetchmany(1000):
                for row in batch:
                    yield table, dict(zip(names, row, strict=True))

    def import_rows(self, rows: Iterable[tuple[str, dict[str, Any]]]) -> int:
        applied = 0
        for table, row in rows:
            if table not in PRIMARY_KEYS:
                raise ValueError(f"unknown table {table!r}")
            cols = list(row)
            if not all(_IDENTIFIER.fullmatch(c) for c in cols):
                raise ValueError(f"row for {table!r} has an invalid column name")
            keys = PRIMARY_KEYS[table]
            if not set(keys) <= set(cols):
                raise ValueError(f"row for {table!r} lacks its key {keys}")
            updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in keys)
            action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
            self._exec(
                f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
                f" ON CONFLICT ({', '.join(keys)}) {action}",
                [row[c] for c in cols],
            )
            applied += 1
        return applied


class SQLDatabase:
    """Transactions and migrations over a DB-API driver; backends fill in the hooks.

    Subclasses set ``placeholder`` and ``transaction_class`` and implement
    ``_cursor`` (a context manager yielding a cursor inside a transaction).
    """

    url: str
    backend: str
    transaction_class: type[SQLTransaction] = SQLTransaction
    placeholder = "?"

    def _cursor(self, *, write: bool) -> AbstractContextManager[Cursor]:
        raise NotImplementedError

    def _transaction(self, cur: Cursor) -> SQLTransaction:
        """The transaction object wrapping ``cur`` (backends may configure it)."""
        return self.transaction_class(cur, self.placeholder)

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[SQLTransaction]:
        with self._cursor(write=write) as cur:
            yield self._transaction(cur)

    def schema_version(self) -> int:
        with self._cursor(write=False) as cur:
            return self._read_version(cur)

    def _read_version(self, cur: Cursor) -> int:
        if not self._has_migrations_table(cur):
            return 0
        cur.execute("SELECT MAX(version) FROM schema_migrations")
        row = cur.fetchone()
        return int(row[0] or 0)

    def _has_migrations_table(self, cur: Cursor) -> bool:
        cur.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        )
        return cur.fetchone() is not None

    def _prepare_schema(self, cur: Cursor) -> None:
        """Backend hook run first in ``migrate``, under the migration lock."""

    def _render_ddl(self, statement: str) -> str:
        """A migration statement as this backend runs it."""
        return statement

    def migrate(self) -> int:
        """Apply pending migrations, each in one transaction; safe to run concurrently."""
        with self._cursor(write=True) as cur:
            self._transaction(cur)._lock("schema_migrations")
            self._prepare_schema(cur)
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                f" (version INTEGER PRIMARY KEY, applied_at {_F} NOT NULL)"
            )
            version = self._read_version(cur)
            for number, statements in enumerate(MIGRATIONS, start=1):
                if number <= version:
                    continue
                for statement in statements:
                    cur.execute(self._render_ddl(statement))
                cur.execute(
                    with_placeholder(
                        "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                        self.placeholder,
                    ),
                    (number, time.time()),
                )
                version = number
        return version
