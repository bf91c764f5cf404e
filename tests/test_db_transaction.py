"""Every ``Transaction`` method, against SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest

from tenantkit.db import (
    ApiKeyRecord,
    AuditEntry,
    Database,
    Lease,
    StorageUsage,
    Tenant,
    UsageEvent,
    UsageTotals,
)
from tenantkit.db.sql import tombstone_id, utc_day
from tenantkit.errors import (
    DatabaseError,
    KeyNotFound,
    TenantAlreadyExists,
    TenantNotFound,
)

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAY = 86_400.0


def tenant(tenant_id: str = "acme-corp", **kw: object) -> Tenant:
    fields: dict[str, object] = {
        "id": tenant_id,
        "name": "Acme Corporation",
        "tier": "free",
        "status": "active",
        "created_at": T0,
        "updated_at": T0,
        "email": "admin@acme.example",
    }
    fields.update(kw)
    return Tenant(**fields)  # type: ignore[arg-type]


def event(request_id: str, **kw: object) -> UsageEvent:
    fields: dict[str, object] = {
        "request_id": request_id,
        "tenant_id": "acme-corp",
        "function": "embed",
        "status": 200,
        "started_at": T0 + 10,
        "ended_at": T0 + 11.5,
        "compute_seconds": 1.25,
        "gpu_type": "A100",
        "gpu_count": 1,
        "gpu_seconds": 1.25,
        "bytes_in": 100,
        "bytes_out": 2_000,
    }
    fields.update(kw)
    return UsageEvent(**fields)  # type: ignore[arg-type]


# -- tenants -------------------------------------------------------------------


def test_create_get_and_count_tenants(database: Database) -> None:
    with database.transaction() as tx:
        assert tx.get_tenant("acme-corp") is None
        tx.create_tenant(tenant())
        tx.create_tenant(tenant("beta", email=None))
    with database.transaction(write=False) as tx:
        assert tx.get_tenant("acme-corp") == tenant()
        assert tx.get_tenant("beta") == tenant("beta", email=None)
        assert tx.count_tenants() == 2


def test_duplicate_tenant_is_refused_and_keeps_the_first(database: Database) -> None:
    with database.transaction() as tx:
        tx.create_tenant(tenant())
    with pytest.raises(TenantAlreadyExists), database.transaction() as tx:
        tx.create_tenant(tenant(name="Impostor"))
    with database.transaction() as tx:
        got = tx.get_tenant("acme-corp")
    assert got is not None
    assert got.name == "Acme Corporation"


def test_list_tenants_paginates_in_byte_order(database: Database) -> None:
    # "a-b" < "a0" < "ab" in byte order; some locales ignore '-' and disagree.
    ids = ["ab", "a-b", "a0", "zz", "b-1", "b1"]
    with database.transaction() as tx:
        for tenant_id in ids:
            tx.create_tenant(tenant(tenant_id))
    seen: list[str] = []
    after: str | None = None
    while True:
        with database.transaction(write=False) as tx:
            page = tx.list_tenants(limit=4, after=after)
        if not page:
            break
        assert len(page) <= 4
        seen += [t.id for t in page]
        after = page[-1].id
    assert seen == sorted(ids)


def test_update_tenant(database: Database) -> None:
    with database.transaction() as tx:
        tx.create_tenant(tenant())
        updated = tx.update_tenant(
            "acme-corp", now=T0 + 5, tier="pro", status="suspended", suspended_reason="unpaid"
        )
    assert updated == tenant(
        tier="pro", status="suspended", suspended_reason="unpaid", updated_at=T0 + 5
    )
    with database.transaction() as tx:
        assert tx.get_tenant("acme-corp") == updated
        assert tx.update_tenant("acme-corp", now=T0 + 6).updated_at == T0 + 6


def test_update_tenant_refuses_unknown_fields_and_tenants(database: Database) -> None:
    with database.transaction() as tx:
        tx.create_tenant(tenant())
    with pytest.raises(ValueError, match="id"), database.transaction() as tx:
        tx.update_tenant("acme-corp", now=T0, id="other")
    with pytest.raises(TenantNotFound), database.transaction() as tx:
        tx.update_tenant("nobody", now=T0, tier="pro")


def test_delete_tenant_removes_its_records_and_archives_its_usage(database: Database) -> None:
    with database.transaction() as tx:
        tx.create_tenant(tenant())
        tx.create_tenant(tenant("other"))
        tx.create_key(ApiKeyRecord("k1", "acme-corp", "default", "mt_…abcd", T0))
        tx.create_key(ApiKeyRecord("k2", "other", "default", "mt_…efgh", T0))
        tx.set_limiter("rate:acme-corp", T0)
        tx.set_limiter("rate:acme-corp:interval", 36.0)
        tx.set_limiter("rate:acme-corp-2", T0)  # another tenant whose id extends this one
        tx.set_limiter("rate:other", T0)
        tx.add_lease(Lease("l1", "acme-corp", T0, T0 + 60))
        tx.set_storage_usage(StorageUsage("acme-corp", 10, 1))
        tx.record_usage([event("r1")])
    with database.transaction() as tx:
        tx.set_gauge("acme-corp", "2026-01-01", "storage_bytes", 10)
    with database.transaction() as tx:
        assert tx.delete_tenant("acme-corp", now=T0 + 60) is True
        assert tx.delete_tenant("acme-corp", now=T0 + 60) is False
    with database.transaction() as tx:
        assert tx.get_tenant("acme-corp") is None
        assert tx.get_key("k1") is None
        assert tx.get_key("k2") is not None
        assert tx.lock_limiter("rate:acme-corp") is None
        assert tx.lock_limiter("rate:acme-corp:interval") is None
        assert tx.lock_limiter("rate:acme-corp-2") == T0
        assert tx.lock_limiter("rate:other") == T0
        assert tx.active_leases("acme-corp", T0) == 0
        assert tx.storage_usage("acme-corp") == StorageUsage("acme-corp", 0, 0)
        # usage is kept for billing under the tombstone, and no longer the id's
        archived = tombstone_id("acme-corp", T0 + 60)
        assert archived == "acme-corp~deleted-1767225660"
        assert tx.count_usage_events("acme-corp") == 0
        assert tx.usage_totals("acme-corp", "2026-01-01", "2026-01-01") == {}
        assert tx.gauges("acme-corp", "2026-01-01", "2026-01-01") == {}
        assert tx.count_usage_events(archived) == 1
        assert (
            tx.usage_totals(archived, "2026-01-01", "2026-01-01")["2026-01-01"]["embed"].requests
            == 1
        )
        assert tx.gauges(archived, "2026-01-01", "2026-01-01") == {"storage_bytes": 10}


def test_failed_transaction_rolls_back(database: Database) -> None:
    def create_twice() -> None:
        with database.transaction() as tx:
            tx.create_tenant(tenant("first"))
            tx.create_tenant(tenant("first"))

    with pytest.raises(TenantAlreadyExists):
        create_twice()
    with database.transaction() as tx:
        assert tx.count_tenants() == 0


# -- keys ------------------------------------------------------------------------


def test_key_records(database: Database) -> None:
    key = ApiKeyRecord(
        "k1", "acme-corp", "ci", "mt_…abcd", T0, scopes=("read", "write"), expires_at=T0 + 99
    )
    with database.transaction() as tx:
        tx.create_tenant(tenant())
        tx.create_key(key)
        tx.create_key(ApiKeyRecord("k0", "acme-corp", "default", "mt_…0000", T0 - 1))
    with database.transaction() as tx:
        assert tx.get_key("k1") == key
        assert [k.id for k in tx.list_keys("acme-corp")] == ["k0", "k1"]
        assert tx.list_keys("nobody") == []
        tx.touch_key("k1", T0 + 7)
        assert tx.get_key("k1") == ApiKeyRecord(
            "k1",
            "acme-corp",
            "ci",
            "mt_…abcd",
            T0,
            scopes=("read", "write"),
            expires_at=T0 + 99,
            last_used_at=T0 + 7,
        )


def test_revocation_keeps_the_earliest_time(database: Database) -> None:
    with database.transaction() as tx:
        tx.create_key(ApiKeyRecord("k1", "acme-corp", "default", "h", T0))
        assert tx.set_key_revoked("k1", T0 + 100).revoked_at == T0 + 100
        assert tx.set_key_revoked("k1", T0 + 200).revoked_at == T0 + 100
        assert tx.set_key_revoked("k1", T0 + 50).revoked_at == T0 + 50
    with pytest.raises(KeyNotFound), database.transaction() as tx:
        tx.set_key_revoked("nope", T0)


def test_duplicate_key_id_is_a_database_error(database: Database) -> None:
    with database.transaction() as tx:
        tx.create_key(ApiKeyRecord("k1", "acme-corp", "default", "h", T0))
    with pytest.raises(DatabaseError) as info, database.transaction() as tx:
        tx.create_key(ApiKeyRecord("k1", "acme-corp", "default", "h", T0))
    # The message is tenantkit's own; the driver's text stays in the cause.
    assert "UNIQUE" not in str(info.value).upper()
    assert info.value.__cause__ is not None
    with database.transaction() as tx:  # the database is still usable
        assert tx.get_key("k1") is not None


# -- limiter and leases ------------------------------------------------------------


def test_limiter_state(database: Database) -> None:
    with database.transaction() as tx:
        assert tx.lock_limiter("rate:acme-corp") is None
        tx.set_limiter("rate:acme-corp", T0 + 0.25)
        assert tx.lock_limiter("rate:acme-corp") == T0 + 0.25
        tx.set_limiter("rate:acme-corp", T0 + 36.5)
    with database.transaction() as tx:
        assert tx.lock_limiter("rate:acme-corp") == T0 + 36.5
        assert tx.lock_limiter("rate:other") is None


def test_leases_expire_and_are_counted_per_tenant(database: Database) -> None:
    with database.transaction() as tx:
        tx.add_lease(Lease("a", "acme-corp", T0, T0 + 10))
        tx.add_lease(Lease("b", "acme-corp", T0, T0 + 20))
        tx.add_lease(Lease("c", "other", T0, T0 + 5))
        assert tx.active_leases("acme-corp", T0 + 1) == 2
        assert tx.active_leases("acme-corp", T0 + 10) == 1  # expiry is exclusive
        assert tx.active_leases("other", T0 + 1) == 1
    with database.transaction() as tx:
        assert tx.remove_lease("a") is False  # expired and deleted above
        assert tx.remove_lease("b") is True
        assert tx.remove_lease("b") is False
        assert tx.active_leases("acme-corp", T0) == 0
        assert tx.active_leases("other", T0 + 5) == 0


# -- usage -----------------------------------------------------------------------


def test_record_usage_is_idempotent_by_request_id(database: Database) -> None:
    with database.transaction() as tx:
        assert tx.record_usage([event("r1"), event("r2", status=500, compute_seconds=0.5)]) == 2
    with database.transaction() as tx:
        # r1 again (even with other numbers), r1 twice in one batch, and one new event
        assert tx.record_usage([event("r1", compute_seconds=99.0), event("r3"), event("r3")]) == 1
    with database.transaction() as tx:
        assert tx.count_usage_events() == 3
        assert tx.count_usage_events("acme-corp") == 3
        assert tx.count_usage_events("other") == 0
        totals = tx.usage_totals("acme-corp", "2026-01-01", "2026-01-01")
    assert (
        totals["2026-01-01"]["embed"].as_dict()
        == UsageTotals(
            requests=3,
            errors=1,
            compute_seconds=3.0,
            gpu_seconds=3.75,
            bytes_in=300,
            bytes_out=6_000,
        ).as_dict()
    )


def test_usage_events_query(database: Database) -> None:
    events = [event(f"r{i}", started_at=T0 + i * 3600, ended_at=T0 + i * 3601) for i in range(5)]
    with database.transaction() as tx:
        tx.record_usage(events)
        tx.record_usage([event("x", tenant_id="other")])
    with database.transaction(write=False) as tx:
        assert tx.usage_events("acme-corp", T0, T0 + 5 * 3600) == events
        assert tx.usage_events("acme-corp", T0 + 3600, T0 + 3 * 3600) == events[1:3]
        assert tx.usage_events("acme-corp", T0, T0 + DAY, limit=2) == events[:2]
        assert tx.usage_events("nobody", T0, T0 + DAY) == []


def test_usage_totals_by_day_and_function(database: Database) -> None:
    with database.transaction() as tx:
        tx.record_usage(
            [
                event("a", started_at=T0 + 1, compute_seconds=1.0),
                event("b", started_at=T0 + 2, function="chat", compute_seconds=2.0),
                event("c", started_at=T0 + DAY - 0.5, compute_seconds=4.0),
                event("d", started_at=T0 + DAY, compute_seconds=8.0),
                event("e", started_at=T0 + DAY, tenant_id="other", compute_seconds=16.0),
            ]
        )
    with database.transaction(write=False) as tx:
        totals = tx.usage_totals("acme-corp", "2026-01-01", "2026-01-02")
        assert sorted(totals) == ["2026-01-01", "2026-01-02"]
        assert totals["2026-01-01"]["embed"].requests == 2
        assert totals["2026-01-01"]["embed"].compute_seconds == 5.0
        assert totals["2026-01-01"]["chat"].compute_seconds == 2.0
        assert totals["2026-01-02"]["embed"].compute_seconds == 8.0
        assert tx.usage_totals("acme-corp", "2026-01-02", "2026-01-02").keys() == {"2026-01-02"}
        assert tx.compute_seconds_on("acme-corp", "2026-01-01") == 7.0
        assert tx.compute_seconds_on("acme-corp", "2026-01-03") == 0.0
        assert tx.compute_seconds_on("other", utc_day(T0 + DAY)) == 16.0


def test_prune_usage_events_keeps_totals(database: Database) -> None:
    with database.transaction() as tx:
        tx.record_usage([event(f"r{i}", started_at=T0 + i * 1000) for i in range(10)])
        before = tx.usage_totals("acme-corp", "2000-01-01", "2100-01-01")
    with database.transaction() as tx:
        assert tx.prune_usage_events(T0 + 3000, limit=2) == 2
        assert tx.prune_usage_events(T0 + 3000) == 1
        assert tx.prune_usage_events(T0 + 3000) == 0
        assert tx.count_usage_events() == 7
        assert [e.request_id for e in tx.usage_events("acme-corp", 0, T0 + DAY)] == [
            f"r{i}" for i in range(3, 10)
        ]
        assert tx.usage_totals("acme-corp", "2000-01-01", "2100-01-01") == before


# -- gauges and storage ----------------------------------------------------------------


def test_gauges_latest_value_wins(database: Database) -> None:
    with database.transaction() as tx:
        tx.set_gauge("acme-corp", "2026-01-01", "storage_bytes", 10)
        tx.set_gauge("acme-corp", "2026-01-02", "storage_bytes", 30)
        tx.set_gauge("acme-corp", "2026-01-02", "storage_bytes", 20)
        tx.set_gauge("acme-corp", "2026-01-01", "files", 3)
        tx.set_gauge("other", "2026-01-02", "files", 9)
    with database.transaction(write=False) as tx:
        assert tx.gauges("acme-corp", "2026-01-01", "2026-01-31") == {
            "storage_bytes": 20.0,
            "files": 3.0,
        }
        assert tx.gauges("acme-corp", "2026-01-01", "2026-01-01") == {
            "storage_bytes": 10.0,
            "files": 3.0,
        }
        assert tx.gauges("acme-corp", "2026-02-01", "2026-02-28") == {}


def test_adjust_storage_refuses_going_over_a_maximum(database: Database) -> None:
    with database.transaction() as tx:
        assert tx.storage_usage("acme-corp") == StorageUsage("acme-corp", 0, 0)
        assert tx.adjust_storage("acme-corp", 60, 1, max_bytes=100, max_files=2) == StorageUsage(
            "acme-corp", 60, 1
        )
        assert tx.adjust_storage("acme-corp", 41, 1, max_bytes=100, max_files=2) is None
        assert tx.adjust_storage("acme-corp", 10, 2, max_bytes=100, max_files=2) is None
        assert tx.adjust_storage("acme-corp", 40, 1, max_bytes=100, max_files=2) == StorageUsage(
            "acme-corp", 100, 2
        )
        # shrinking is always allowed, even when already over a (lowered) maximum
        assert tx.adjust_storage("acme-corp", -30, -1, max_bytes=50, max_files=1) == StorageUsage(
            "acme-corp", 70, 1
        )
        assert tx.adjust_storage("acme-corp", 1000, 5) == StorageUsage("acme-corp", 1070, 6)
    with database.transaction() as tx:
        assert tx.storage_usage("acme-corp") == StorageUsage("acme-corp", 1070, 6)
        tx.set_storage_usage(StorageUsage("acme-corp", 5, 1))
        assert tx.storage_usage("acme-corp") == StorageUsage("acme-corp", 5, 1)


# -- audit -----------------------------------------------------------------------


def test_audit_entries(database: Database) -> None:
    entries = [
        AuditEntry("a1", T0, "cli", "tenant.create", "acme-corp", {"tier": "free"}),
        AuditEntry("a2", T0 + 1, "admin-api", "tenant.suspend", "acme-corp", {"reason": "x"}),
        AuditEntry("a3", T0 + 2, "cli", "signing-key.rotate", None, {}),
    ]
    with database.transaction() as tx:
        for entry in entries:
            tx.audit(entry)
    with database.transaction(write=False) as tx:
        assert tx.audit_entries() == entries[::-1]
        assert tx.audit_entries(limit=1) == [entries[2]]
        assert tx.audit_entries("acme-corp") == [entries[1], entries[0]]
        assert tx.audit_entries("other") == []


# -- export / import (see test_db_backup.py for the cross-backend round trip) ------------


def test_export_and_import_rows(database: Database, tmp_path: object) -> None:
    with database.transaction() as tx:
        tx.create_tenant(tenant())
        tx.record_usage([event("r1")])
        rows = list(tx.export_rows())
    tables = [table for table, _ in rows]
    assert tables == ["tenants", "usage_events", "usage_daily"]
    with database.transaction() as tx:
        assert tx.import_rows(rows) == 3
        assert tx.import_rows(rows) == 3
        assert list(tx.export_rows()) == rows


@pytest.mark.parametrize(
    ("table", "row", "message"),
    [
        ("nope", {"id": "x"}, "unknown table"),
        ("tenants", {"name": "no key"}, "lacks its key"),
        ("tenants", {"id": "x", "name; DROP TABLE tenants": "y"}, "invalid column"),
    ],
)
def test_import_rows_refuses_bad_rows(
    database: Database, table: str, row: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message), database.transaction() as tx:
        tx.import_rows([(table, row)])


# -- database ------------------------------------------------------------------------


def test_database_basics(database: Database) -> None:
    assert database.ping() is True
    assert database.schema_version() == database.migrate() >= 1
    assert database.backend in {"sqlite", "postgres"}


def test_a_recreated_tenant_starts_with_no_usage(database: Database) -> None:
    """The old tenant's usage is archived, late events of it never reach the new one."""
    deleted_at = T0 + 100
    with database.transaction() as tx:
        tx.create_tenant(tenant())
        tx.record_usage([event("old-1")])
        tx.set_gauge("acme-corp", utc_day(T0), "storage_bytes", 5)
    with database.transaction() as tx:
        assert tx.delete_tenant("acme-corp", now=deleted_at)
    archived = tombstone_id("acme-corp", deleted_at)
    with database.transaction() as tx:  # a call in flight at deletion is metered now
        assert tx.record_usage([event("old-2", started_at=T0 + 90)]) == 1
    with database.transaction() as tx:
        tx.create_tenant(tenant(created_at=T0 + 200, updated_at=T0 + 200))
        assert tx.count_usage_events("acme-corp") == 0
        assert tx.compute_seconds_on("acme-corp", utc_day(T0)) == 0
        assert tx.gauges("acme-corp", utc_day(T0), utc_day(T0)) == {}
    with database.transaction() as tx:  # one more late event, and the new tenant's first
        new = tx.record_usage(
            [event("old-3", started_at=T0 + 95), event("new-1", started_at=T0 + 250)]
        )
        assert new == 2
    with database.transaction() as tx:
        assert [e.request_id for e in tx.usage_events("acme-corp", T0, T0 + DAY)] == ["new-1"]
        assert tx.compute_seconds_on("acme-corp", utc_day(T0)) == 1.25
        old = tx.usage_events(archived, T0, T0 + DAY)
        assert [e.request_id for e in old] == ["old-1", "old-2", "old-3"]
        assert {e.tenant_id for e in old} == {archived}
        assert (
            tx.usage_totals(archived, utc_day(T0), utc_day(T0))[utc_day(T0)]["embed"].requests == 3
        )
        assert tx.gauges(archived, utc_day(T0), utc_day(T0)) == {"storage_bytes": 5}


def test_deleting_an_id_twice_in_one_second_merges_its_archive(database: Database) -> None:
    for n in range(2):
        with database.transaction() as tx:
            tx.create_tenant(tenant())
            tx.record_usage([event(f"r{n}")])
            assert tx.delete_tenant("acme-corp", now=T0 + 30.5 + n * 0.25)
    archived = tombstone_id("acme-corp", T0 + 30)
    with database.transaction() as tx:
        totals = tx.usage_totals(archived, utc_day(T0), utc_day(T0))[utc_day(T0)]["embed"]
        assert (totals.requests, totals.compute_seconds) == (2, 2.5)
        assert tx.count_usage_events(archived) == 2


def test_late_usage_with_no_archive_yet_goes_to_the_new_tenants_creation_time(
    database: Database,
) -> None:
    with database.transaction() as tx:  # recorded while no tenant holds the id
        tx.record_usage([event("orphan", started_at=T0 + 5)])
        tx.create_tenant(tenant(created_at=T0 + 10, updated_at=T0 + 10))
        assert tx.count_usage_events("acme-corp") == 0
        assert tx.count_usage_events(tombstone_id("acme-corp", T0 + 10)) == 1


def test_tombstones_are_no_tenant_id() -> None:
    from tenantkit.config import validate_tenant_id
    from tenantkit.errors import InvalidTenantId

    with pytest.raises(InvalidTenantId):
        validate_tenant_id(tombstone_id("acme-corp", T0))
    assert tombstone_id("a1", 5) < tombstone_id("a1", 1e9)  # the latest sorts last


def test_lock_tenant_reads_the_status(database: Database) -> None:
    with database.transaction() as tx:
        tx.create_tenant(tenant())
        assert tx.lock_tenant("acme-corp") == "active"
        tx.update_tenant("acme-corp", now=T0, status="suspended")
        assert tx.lock_tenant("acme-corp") == "suspended"
        assert tx.lock_tenant("nobody") is None


def test_count_leases_skips_expired_without_deleting(database: Database) -> None:
    with database.transaction() as tx:
        tx.add_lease(Lease("a", "acme-corp", T0, T0 + 10))
        tx.add_lease(Lease("b", "acme-corp", T0, T0 + 100))
        tx.add_lease(Lease("c", "other", T0, T0 + 5))
    with database.transaction() as tx:
        assert tx.count_leases("acme-corp", T0 + 50) == 1
        assert tx.count_leases("acme-corp", T0 + 5) == 2
    with database.transaction() as tx:
        assert tx.remove_lease("a")  # still stored: count_leases deleted nothing
        tx.add_lease(Lease("a", "acme-corp", T0, T0 + 10))
        assert tx.active_leases("acme-corp", T0 + 50) == 1  # deletes the expired one
        assert not tx.remove_lease("a")
        assert tx.active_leases("other", T0) == 1
