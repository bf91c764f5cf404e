"""UsageMeter: buffered, idempotent, back-pressure instead of drops, survives outages."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tenantkit.db import Database, Transaction, UsageEvent
from tenantkit.db.sqlite import SQLiteDatabase
from tenantkit.errors import DatabaseUnavailable
from tenantkit.metering import UsageMeter


def event(n: int, tenant: str = "acme", compute: float = 1.0) -> UsageEvent:
    return UsageEvent(f"req-{tenant}-{n}", tenant, "embed", 200, 1000.0 + n, 1001.0 + n, compute)


def stored(db: Database, tenant: str | None = None) -> int:
    with db.transaction(write=False) as tx:
        return tx.count_usage_events(tenant)


class SwitchableDatabase:
    """A real database whose server can be switched off: transactions then fail
    to start, as they do when the server is unreachable."""

    def __init__(self, inner: Database) -> None:
        self.inner = inner
        self.url = inner.url
        self.backend = inner.backend
        self.down = threading.Event()
        self.attempts = 0

    def transaction(self, *, write: bool = True) -> AbstractContextManager[Transaction]:
        self.attempts += 1
        if self.down.is_set():
            raise DatabaseUnavailable("the database is unavailable")
        return self.inner.transaction(write=write)


def test_stop_flushes_everything_and_counts_match(database: Database) -> None:
    async def main() -> dict[str, int]:
        meter = UsageMeter(database, flush_interval=60, buffer_size=10_000)
        await meter.start()
        for n in range(500):
            await meter.record(event(n, tenant="acme" if n % 2 else "globex"))
        assert stored(database) == 0  # nothing written on the request path
        await meter.stop()
        return meter.stats()

    stats = asyncio.run(main())
    assert stored(database) == 500
    assert stored(database, "acme") == 250
    assert stats == {"recorded": 500, "stored": 500, "buffered": 0, "failed_flushes": 0}


def test_recording_is_idempotent_by_request_id(database: Database) -> None:
    meter = UsageMeter(database, flush_interval=60)
    meter.record_sync(event(1, compute=2.0))
    meter.record_sync(event(1, compute=2.0))  # buffered twice
    assert meter.pending_compute("acme") == 2.0
    assert meter.flush() == 1
    meter.record_sync(event(1, compute=2.0))  # already stored
    assert meter.flush() == 0
    assert stored(database) == 1
    with database.transaction(write=False) as tx:
        assert tx.compute_seconds_on("acme", "1970-01-01") == 2.0


def test_a_full_buffer_waits_instead_of_dropping(database: Database) -> None:
    async def main() -> int:
        meter = UsageMeter(database, flush_interval=60, buffer_size=3)
        await meter.start()
        await asyncio.gather(*(meter.record(event(n)) for n in range(200)))
        assert meter.buffered <= 3
        await meter.stop()
        return int(meter.stats()["recorded"])

    assert asyncio.run(main()) == 200
    assert stored(database) == 200


def test_sync_recording_from_many_threads_with_a_tiny_buffer(database: Database) -> None:
    meter = UsageMeter(database, flush_interval=60, buffer_size=2)

    def work(offset: int) -> None:
        for n in range(50):
            meter.record_sync(event(offset + n))

    with meter:
        threads = [threading.Thread(target=work, args=(k * 1000,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert stored(database) == 200


def test_a_full_buffer_without_the_flush_thread_flushes_inline(database: Database) -> None:
    meter = UsageMeter(database, flush_interval=60, buffer_size=5)
    for n in range(12):
        meter.record_sync(event(n))
    assert stored(database) == 10
    assert meter.buffered == 2
    meter.close()
    assert stored(database) == 12


def test_flushes_on_the_interval(database: Database) -> None:
    meter = UsageMeter(database, flush_interval=0.01)
    with meter:
        meter.record_sync(event(1))
        with meter._cond:  # wait (no timing threshold) until the thread has flushed
            assert meter._cond.wait_for(lambda: meter._stored == 1, timeout=60)
        assert stored(database) == 1


def test_pending_compute_until_stored(database: Database) -> None:
    meter = UsageMeter(database, flush_interval=60)
    meter.record_sync(event(1, compute=1.5))
    meter.record_sync(event(2, compute=2.5))
    meter.record_sync(event(3, tenant="globex", compute=7.0))
    assert meter.pending_compute("acme") == 4.0
    assert meter.pending_compute("globex") == 7.0
    assert meter.pending_compute("initech") == 0.0
    meter.flush()
    assert meter.pending_compute("acme") == 0.0


def test_database_outage_keeps_events_and_retries(database: Database) -> None:
    db = SwitchableDatabase(database)
    db.down.set()
    meter = UsageMeter(db, flush_interval=0.01, buffer_size=1_000, max_backoff=0.02)  # type: ignore[arg-type]
    meter.open()
    for n in range(20):
        meter.record_sync(event(n, compute=0.5))
    with meter._cond:  # the thread has tried, and failed, at least twice
        assert meter._cond.wait_for(lambda: meter._failed_flushes >= 2, timeout=60)
    assert meter.buffered == 20
    assert meter.pending_compute("acme") == 10.0
    db.down.clear()
    meter.close()
    assert stored(database) == 20
    assert meter.stats()["buffered"] == 0


@pytest.mark.parametrize(("chunk", "count"), [(256, 257), (256, 1000), (10, 30), (1, 3)])
def test_a_large_flush_commits_in_chunks_and_loses_nothing(
    database: Database, chunk: int, count: int
) -> None:
    db = SwitchableDatabase(database)
    meter = UsageMeter(db, flush_interval=60, flush_chunk=chunk)  # type: ignore[arg-type]
    for n in range(count):
        meter.record_sync(event(n, tenant="acme" if n % 2 else "globex"))
    assert meter.flush() == count
    assert db.attempts == math.ceil(count / chunk)  # one transaction per chunk
    assert stored(database) == count
    assert stored(database, "acme") == count // 2
    assert meter.stats() == {"recorded": count, "stored": count, "buffered": 0, "failed_flushes": 0}
    assert meter.pending_compute("acme") == meter.pending_compute("globex") == 0.0


def test_a_failed_chunk_keeps_what_was_not_stored(database: Database) -> None:
    class FailsThirdTransaction(SwitchableDatabase):
        def transaction(self, *, write: bool = True) -> AbstractContextManager[Transaction]:
            if self.attempts == 2:
                self.down.set()
            return super().transaction(write=write)

    db = FailsThirdTransaction(database)
    meter = UsageMeter(db, flush_interval=60, flush_chunk=10)  # type: ignore[arg-type]
    for n in range(45):
        meter.record_sync(event(n, compute=0.5))
    meter.record_sync(event(0))  # a duplicate of one in the first chunk: ignored
    with pytest.raises(DatabaseUnavailable):
        meter.flush()
    assert stored(database) == 20  # two chunks committed
    assert meter.buffered == 25  # the rest is back in the buffer, in order
    assert [e.request_id for e in meter._buffer] == [event(n).request_id for n in range(20, 45)]
    assert meter.pending_compute("acme") == 12.5
    db.down.clear()
    assert meter.flush() == 25
    assert stored(database) == 45
    assert meter.stats() == {"recorded": 45, "stored": 45, "buffered": 0, "failed_flushes": 1}


def test_a_chunk_frees_room_for_waiting_writers(database: Database) -> None:
    async def main() -> None:
        meter = UsageMeter(database, flush_interval=60, buffer_size=8, flush_chunk=3)
        await meter.start()
        await asyncio.gather(*(meter.record(event(n)) for n in range(100)))
        await meter.stop()
        assert meter.stats()["stored"] == 100

    asyncio.run(main())
    assert stored(database) == 100


def test_flush_chunk_must_be_positive(database: Database) -> None:
    with pytest.raises(ValueError, match="flush_chunk"):
        UsageMeter(database, flush_chunk=0)


def test_close_gives_up_loudly_and_keeps_the_events(database: Database) -> None:
    db = SwitchableDatabase(database)
    meter = UsageMeter(db, flush_interval=60)  # type: ignore[arg-type]
    meter.record_sync(event(1))
    db.down.set()
    with pytest.raises(DatabaseUnavailable, match="1 usage events"):
        meter.close(timeout=0)
    assert meter.buffered == 1
    db.down.clear()
    meter.close()
    assert stored(database) == 1


def test_back_pressure_holds_while_the_database_is_down(database: Database) -> None:
    db = SwitchableDatabase(database)
    db.down.set()

    async def main() -> None:
        meter = UsageMeter(db, flush_interval=0.01, buffer_size=4, max_backoff=0.02)  # type: ignore[arg-type]
        await meter.start()
        for n in range(4):
            await meter.record(event(n))
        blocked = asyncio.ensure_future(meter.record(event(99)))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not blocked.done()  # waiting for room, not dropped
        assert meter.buffered == 4
        db.down.clear()
        await blocked
        await meter.stop()

    asyncio.run(main())
    assert stored(database) == 5


def test_real_sqlite_lock_outage(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    db = SQLiteDatabase(f"sqlite:///{path}", busy_timeout=0.01)
    db.migrate()
    meter = UsageMeter(db, flush_interval=60)
    meter.record_sync(event(1))
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    with pytest.raises(DatabaseUnavailable):
        meter.flush()
    assert meter.buffered == 1
    blocker.execute("ROLLBACK")
    blocker.close()
    assert meter.flush() == 1
    db.close()


@pytest.fixture
def _no_thread_leak() -> Iterator[None]:
    before = {t.name for t in threading.enumerate()}
    yield
    after = {t.name for t in threading.enumerate()}
    assert "tenantkit-usage-flush" not in after - before


@pytest.mark.usefixtures("_no_thread_leak")
def test_context_managers_stop_the_thread(database: Database) -> None:
    async def main() -> None:
        async with UsageMeter(database) as meter:
            assert meter.running
            await meter.record(event(1))
        assert not meter.running

    asyncio.run(main())
    assert stored(database) == 1
