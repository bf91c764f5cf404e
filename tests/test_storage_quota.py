"""Storage quotas: refused before anything is written, exact under racing writers."""

from __future__ import annotations

import multiprocessing
import pickle
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenantkit.config import Tier
from tenantkit.db import Database, open_database
from tenantkit.db.sql import utc_day
from tenantkit.errors import QuotaExceeded
from tenantkit.storage import (
    DatabaseLedger,
    FileTooLarge,
    LocalBackend,
    MemoryLedger,
    StorageQuotaExceeded,
    TenantStorage,
    scan_usage,
)

NOW = 1_800_000_000.0
TINY = Tier("tiny", 100, 10, 5, 100, storage_bytes=1000, max_files=5)
ROOMY_FILES = Tier("roomy", 100, 10, 5, 100, storage_bytes=1000, max_files=1000)


def make(db: Database, base: Path, tier: Tier = TINY, tenant_id: str = "acme") -> TenantStorage:
    return TenantStorage(
        tenant_id,
        tier,
        LocalBackend(base / "volumes" / tenant_id),
        DatabaseLedger(db, tenant_id, clock=lambda: NOW),
    )


def counters(db: Database, tenant_id: str = "acme") -> tuple[int, int]:
    with db.transaction(write=False) as tx:
        usage = tx.storage_usage(tenant_id)
    return usage.bytes, usage.files


def test_over_the_byte_quota_is_refused_before_writing(database: Database, tmp_path: Path) -> None:
    storage = make(database, tmp_path)
    storage.write_bytes("a.bin", b"a" * 600)
    with pytest.raises(StorageQuotaExceeded) as info:
        storage.write_bytes("b.bin", b"b" * 500)
    error = info.value
    assert isinstance(error, QuotaExceeded)
    assert error.status == 429
    assert error.limit == "storage-bytes"
    assert error.retry_after is None
    assert error.problem_extras() == {"limit": "storage-bytes"}
    assert "tiny" in str(error)
    assert not storage.exists("b.bin")
    assert sorted(p.name for p in (tmp_path / "volumes" / "acme").iterdir()) == [
        ".tk-partial-lock",  # the commit lock
        "a.bin",
    ]
    assert storage.usage() == (600, 1) == counters(database)
    storage.write_bytes("b.bin", b"b" * 400)
    assert storage.usage() == (1000, 2)


def test_a_file_larger_than_the_quota_is_413(database: Database, tmp_path: Path) -> None:
    storage = make(database, tmp_path)
    with pytest.raises(FileTooLarge) as info:
        storage.write_bytes("huge.bin", b"x" * 1001)
    assert info.value.status == 413
    assert info.value.limit == "storage-bytes"
    with pytest.raises(FileTooLarge):
        storage.open_write("huge.bin", size=5000)
    assert storage.usage() == (0, 0)
    assert not storage.exists("huge.bin")


def test_streaming_write_stops_at_the_quota(database: Database, tmp_path: Path) -> None:
    storage = make(database, tmp_path)
    storage.write_bytes("keep.bin", b"k" * 300)
    storage.write_bytes("stream.bin", b"old")
    writer = storage.open_write("stream.bin")
    written = 0
    while written < 10_000:
        try:
            writer.write(b"s" * 100)
        except StorageQuotaExceeded:
            break
        written += 100
    assert written == 700  # 300 + 700 = 1000; the credit of the 3 old bytes covers the rest
    assert storage.read_bytes("stream.bin") == b"old"
    assert storage.usage() == (303, 2) == counters(database)


def test_the_file_count_quota(database: Database, tmp_path: Path) -> None:
    storage = make(database, tmp_path)
    for n in range(5):
        storage.write_text(f"f{n}", "x")
    with pytest.raises(StorageQuotaExceeded) as info:
        storage.write_text("f5", "x")
    assert info.value.limit == "storage-files"
    assert not storage.exists("f5")
    storage.write_text("f0", "overwrite at the cap is fine")
    storage.delete("f1")
    storage.write_text("f5", "room again")
    assert storage.usage() == (len("overwrite at the cap is fine") + 3 + len("room again"), 5)


def test_overwrites_account_for_the_replaced_file(database: Database, tmp_path: Path) -> None:
    storage = make(database, tmp_path)
    storage.write_bytes("f", b"x" * 800)
    storage.write_bytes("f", b"y" * 900)  # needs only 100 more
    assert storage.usage() == (900, 1)
    storage.write_bytes("f", b"z" * 100)
    assert storage.usage() == (100, 1)
    storage.write_bytes("g", b"g" * 900)
    with pytest.raises(StorageQuotaExceeded):
        storage.write_bytes("f", b"w" * 101)
    assert storage.read_bytes("f") == b"z" * 100
    storage.delete("g")
    assert storage.usage() == (100, 1) == counters(database) == scan_usage(storage.backend)


def test_gauges_follow_the_counters(database: Database, tmp_path: Path) -> None:
    storage = make(database, tmp_path)
    storage.write_bytes("a", b"a" * 10)
    storage.write_bytes("b", b"b" * 20)
    storage.delete("a")
    day = utc_day(NOW)
    with database.transaction(write=False) as tx:
        gauges = tx.gauges("acme", day, day)
    assert gauges == {"storage_bytes": 20.0, "storage_files": 1.0}


def test_recount_repairs_drift(database: Database, tmp_path: Path) -> None:
    storage = make(database, tmp_path)
    storage.write_bytes("a", b"a" * 10)
    (tmp_path / "volumes" / "acme" / "outside-tenantkit").write_bytes(b"z" * 5)
    assert storage.usage() == (10, 1)
    assert storage.recount() == (15, 2)
    assert counters(database) == (15, 2)


def test_tenants_have_their_own_quota(database: Database, tmp_path: Path) -> None:
    a = make(database, tmp_path, tenant_id="tenant-a")
    b = make(database, tmp_path, tenant_id="tenant-b")
    a.write_bytes("f", b"a" * 1000)
    b.write_bytes("f", b"b" * 1000)
    assert a.usage() == b.usage() == (1000, 1)


# -- racing writers -------------------------------------------------------------


def _attempt(storage: TenantStorage, path: str, data: bytes, chunked: bool) -> bool:
    try:
        if chunked:
            storage.write_stream(path, [data[i : i + 10] for i in range(0, len(data), 10)])
        else:
            storage.write_bytes(path, data)
    except StorageQuotaExceeded:
        return False
    return True


@pytest.mark.parametrize("chunked", [False, True], ids=["sized", "chunked"])
def test_threads_never_pass_the_byte_quota(
    database: Database, tmp_path: Path, chunked: bool
) -> None:
    storage = make(database, tmp_path, ROOMY_FILES)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(lambda n: _attempt(storage, f"f{n}", b"x" * 100, chunked), range(32))
        )
    stored = scan_usage(storage.backend)
    assert stored[0] <= 1000
    assert stored == (100 * sum(results), sum(results)) == storage.usage() == counters(database)
    if not chunked:
        assert sum(results) == 10


def test_threads_never_pass_the_file_quota(database: Database, tmp_path: Path) -> None:
    storage = make(database, tmp_path)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda n: _attempt(storage, f"f{n}", b"x", False), range(24)))
    assert sum(results) == 5
    assert scan_usage(storage.backend) == (5, 5) == counters(database)


def test_threads_overwriting_one_path_keep_counters_exact(
    database: Database, tmp_path: Path
) -> None:
    storage = make(database, tmp_path, ROOMY_FILES)
    barrier = threading.Barrier(6)

    def overwrite(n: int) -> None:
        barrier.wait()
        for round_ in range(5):
            size = 20 + 37 * ((n + round_) % 5)
            storage.write_bytes("same.bin", bytes([n]) * size)
            if round_ == 2 and n % 2:
                storage.delete("same.bin", missing_ok=True)

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(overwrite, range(6)))
    assert scan_usage(storage.backend) == storage.usage() == counters(database)


def _process_writer(url: str, base: str, worker: int) -> int:
    db = open_database(url)
    try:
        storage = make(db, Path(base), ROOMY_FILES)
        return sum(_attempt(storage, f"w{worker}-{n}", b"p" * 100, False) for n in range(6))
    finally:
        db.close()


def test_processes_never_pass_the_quota(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'records.db'}"
    open_database(url).close()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=4, mp_context=context) as pool:
        futures = [pool.submit(_process_writer, url, str(tmp_path), w) for w in range(4)]
        succeeded = sum(f.result() for f in futures)
    assert succeeded == 10
    db = open_database(url)
    try:
        assert scan_usage(LocalBackend(tmp_path / "volumes" / "acme")) == (1000, 10)
        assert counters(db) == (1000, 10)
    finally:
        db.close()


# -- any sequence of operations keeps the books straight ----------------------------

operations = st.lists(
    st.tuples(
        st.sampled_from(["write", "stream", "fail", "delete"]),
        st.sampled_from(["a", "b", "d/c", "d/e/f"]),
        st.integers(min_value=0, max_value=450),
    ),
    max_size=25,
)


def _failing(size: int) -> Iterator[bytes]:
    yield b"x" * size
    raise RuntimeError("broken stream")


@pytest.fixture(scope="module")
def shared_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    db = open_database(f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'records.db'}")
    yield db
    db.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations, in_memory=st.booleans())
def test_counters_always_match_what_is_stored(
    shared_db: Database, tmp_path_factory: pytest.TempPathFactory, ops: list, in_memory: bool
) -> None:
    tenant_id = f"t-{uuid.uuid4().hex[:12]}"
    backend = LocalBackend(tmp_path_factory.mktemp("ops") / tenant_id)
    tier = Tier("t", 100, 10, 5, 100, storage_bytes=1000, max_files=3)
    ledger = (
        MemoryLedger(tenant_id, lambda: scan_usage(backend))
        if in_memory
        else DatabaseLedger(shared_db, tenant_id)
    )
    storage = TenantStorage(tenant_id, tier, backend, ledger)
    for kind, path, size in ops:
        before = scan_usage(backend)
        try:
            if kind == "write":
                storage.write_bytes(path, b"w" * size)
            elif kind == "stream":
                storage.write_stream(path, [b"s"] * size)
            elif kind == "fail":
                storage.write_stream(path, _failing(size))
            else:
                storage.delete(path, missing_ok=True)
        except (StorageQuotaExceeded, RuntimeError):
            assert scan_usage(backend) == before
        stored = scan_usage(backend)
        assert storage.usage() == stored
        assert stored[0] <= tier.storage_bytes
        assert stored[1] <= tier.max_files


def test_a_pickled_copy_enforces_the_quota_from_the_files(
    sqlite_database: Database, tmp_path: Path
) -> None:
    storage = make(sqlite_database, tmp_path)
    storage.write_bytes("a", b"a" * 900)
    copy = pickle.loads(pickle.dumps(storage))
    assert isinstance(copy.ledger, MemoryLedger)
    assert copy.usage() == (900, 1)
    with pytest.raises(StorageQuotaExceeded):
        copy.write_bytes("b", b"b" * 101)
    copy.write_bytes("b", b"b" * 100)
    assert storage.recount() == (1000, 2)


def test_a_remote_copy_reports_its_change_for_the_gateway(
    sqlite_database: Database, tmp_path: Path
) -> None:
    gateway_side = make(sqlite_database, tmp_path)
    gateway_side.write_bytes("kept", b"k" * 100)
    assert gateway_side.unshared_change() == (0, 0)
    worker_side = pickle.loads(pickle.dumps(gateway_side))
    worker_side.write_bytes("new", b"n" * 50)
    worker_side.write_bytes("kept", b"k" * 10)
    with pytest.raises(StorageQuotaExceeded):
        worker_side.write_bytes("huge", b"h" * 950)
    change = worker_side.unshared_change()
    assert change == (50 - 90, 1)
    gateway_side.apply_change(*change)
    assert gateway_side.usage() == scan_usage(gateway_side.backend) == (60, 2)
