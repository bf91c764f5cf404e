"""Export and import: a round trip SQLite -> PostgreSQL -> SQLite keeps every row."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tenantkit.db import ApiKeyRecord, AuditEntry, Database, Lease, StorageUsage, Tenant, UsageEvent
from tenantkit.db.backup import export_records, import_records
from tenantkit.db.base import TABLES
from tenantkit.errors import ValidationError
from tests.conftest import make_database

T0 = 1_767_225_600.0


def populate(db: Database) -> None:
    """Some rows in every table, with awkward values (unicode, nulls, fractions)."""
    with db.transaction() as tx:
        tx.create_tenant(Tenant("acme-corp", "Acme ☃ Corp", "pro", "active", T0, T0 + 0.1, "a@b.c"))
        tx.create_tenant(
            Tenant("b-2", 'Bee "quoted"\n', "free", "suspended", T0, T0, None, "unpaid")
        )
        tx.create_key(ApiKeyRecord("k1", "acme-corp", "ci", "mt_…abcd", T0, ("read", "w r")))
        tx.create_key(
            ApiKeyRecord("k2", "b-2", "old", "mt_…efgh", T0, (), T0 + 99, T0 + 50.5, T0 + 1)
        )
        tx.set_limiter("rate:acme-corp", T0 + 1 / 3)
        tx.add_lease(Lease("lease-1", "acme-corp", T0, T0 + 600))
        tx.record_usage(
            [
                UsageEvent(
                    f"req-{i}",
                    "acme-corp" if i % 3 else "b-2",
                    ["embed", "chat"][i % 2],
                    200 if i % 4 else 500,
                    T0 + i * 7_000.25,
                    T0 + i * 7_000.25 + 0.1,
                    compute_seconds=i / 7,
                    gpu_type="A100" if i % 2 else None,
                    gpu_count=i % 2,
                    gpu_seconds=(i % 2) * i / 7,
                    bytes_in=i * 1_000_003,
                    bytes_out=2**40 + i,
                )
                for i in range(40)
            ]
        )
        tx.set_gauge("acme-corp", "2026-01-01", "storage_bytes", 12345)
        tx.set_storage_usage(StorageUsage("acme-corp", 10**12, 7))
        tx.audit(
            AuditEntry("au-1", T0, "cli", "tenant.create", "acme-corp", {"tier": "pro", "n": [1]})
        )
        tx.audit(AuditEntry("au-2", T0 + 1, "admin-api", "key.rotate", None, {"ü": None}))


def export_text(db: Database) -> str:
    buffer = io.StringIO()
    export_records(db, buffer, clock=lambda: T0)
    return buffer.getvalue()


def body(text: str) -> list[str]:
    """The export's rows (the header names the source backend)."""
    return text.splitlines()[1:]


def test_round_trip_sqlite_postgres_sqlite(tmp_path: Path) -> None:
    source = make_database("sqlite", tmp_path / "a")
    middle = make_database("postgres", tmp_path / "b")
    target = make_database("sqlite", tmp_path / "c")
    try:
        populate(source)
        first = export_text(source)
        assert {json.loads(line)["table"] for line in body(first)} == set(TABLES)

        summary = import_records(middle, io.StringIO(first))
        assert summary.rows == len(body(first))
        second = export_text(middle)
        assert body(second) == body(first)

        import_records(target, io.StringIO(second))
        assert body(export_text(target)) == body(first)

        # and the records read back through the API are equal too
        for db in (middle, target):
            with db.transaction(write=False) as tx, source.transaction(write=False) as ref:
                assert tx.list_tenants() == ref.list_tenants()
                assert tx.list_keys("b-2") == ref.list_keys("b-2")
                assert tx.usage_events("acme-corp", 0, 2e9) == ref.usage_events("acme-corp", 0, 2e9)
                assert tx.usage_totals("acme-corp", "2026", "2027") == ref.usage_totals(
                    "acme-corp", "2026", "2027"
                )
                assert tx.audit_entries() == ref.audit_entries()
                assert tx.lock_limiter("rate:acme-corp") == T0 + 1 / 3
    finally:
        for db in (source, middle, target):
            db.close()


def test_import_is_idempotent(database: Database, tmp_path: Path) -> None:
    source = make_database("sqlite", tmp_path / "src")
    try:
        populate(source)
        text = export_text(source)
    finally:
        source.close()
    first = import_records(database, io.StringIO(text))
    after_first = body(export_text(database))
    second = import_records(database, io.StringIO(text))
    assert first == second
    assert body(export_text(database)) == after_first == body(text)
    with database.transaction() as tx:
        assert tx.count_usage_events() == 40


def test_import_replaces_changed_rows(database: Database) -> None:
    populate(database)
    text = export_text(database)
    with database.transaction() as tx:
        tx.update_tenant("acme-corp", now=T0 + 9, tier="enterprise")
        tx.record_usage([UsageEvent("late", "acme-corp", "embed", 200, T0, T0, 5.0)])
    import_records(database, io.StringIO(text))
    with database.transaction() as tx:
        acme = tx.get_tenant("acme-corp")
        assert acme is not None
        assert acme.tier == "pro"
        # rows the export did not have stay; the daily totals are the exported ones
        assert tx.count_usage_events() == 41


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("not json\n", "line 1 is not a tenantkit export header"),
        ('{"format": "other"}\n', "line 1 is not a tenantkit export header"),
        ('{"format": "tenantkit-export", "version": 99}\n', "format version 99"),
        ('{"format": "tenantkit-export", "version": 1, "schema_version": 999}\n', "schema version"),
        (
            '{"format": "tenantkit-export", "version": 1, "schema_version": 1}\n{oops\n',
            "line 2 is not JSON",
        ),
        (
            '{"format": "tenantkit-export", "version": 1, "schema_version": 1}\n'
            '{"table": "secrets", "row": {}}\n',
            "line 2 names no known table",
        ),
        (
            '{"format": "tenantkit-export", "version": 1, "schema_version": 1}\n'
            '{"table": "tenants", "row": {"id": ["x"]}}\n',
            "line 2 holds a non-scalar",
        ),
        (
            '{"format": "tenantkit-export", "version": 1, "schema_version": 1}\n'
            '{"table": "tenants", "row": {"id": NaN}}\n',
            "line 2 is not JSON",
        ),
        (
            '{"format": "tenantkit-export", "version": 1, "schema_version": 1}\n'
            '{"table": "limiter_state", "row": {"key": "k", "value": 1.0}}\n'
            '{"table": "tenants", "row": {"name": "no id"}}\n',
            "lacks its key",
        ),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    database: Database, text: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        import_records(database, io.StringIO(text))
    assert body(export_text(database)) == []
