"""The gateway's admission queue: batched decisions stay exact, releases never lose a slot."""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenantkit.config import Tier
from tenantkit.db import Database, Tenant
from tenantkit.errors import ConcurrencyLimitExceeded, LimitExceeded, RateLimitExceeded
from tenantkit.gateway.admission_queue import AdmissionQueue
from tenantkit.limits import Admission

ONE_SLOT = Tier("one-slot", 3600, 1000, 1, 10**6, 10**6, 10)


def with_tenant(db: Database, tenant_id: str = "acme-corp") -> Database:
    """``db`` holding an active tenant ``tenant_id`` (admission checks the row)."""
    now = time.time()
    with db.transaction() as tx:
        tx.create_tenant(Tenant(tenant_id, tenant_id, "free", "active", now, now))
    return db


def leases(db: Database, tenant_id: str) -> int:
    with db.transaction(write=False) as tx:
        return tx.active_leases(tenant_id, time.time())


def test_a_release_queued_before_an_admission_frees_the_slot(database: Database) -> None:
    queue = AdmissionQueue(Admission(with_tenant(database)))
    queue.start()
    try:
        for _ in range(50):
            ticket = queue.admit("acme-corp", ONE_SLOT, 1, 60)
            queue.release(ticket)  # queued; the next admission must still get the slot
        assert leases(database, "acme-corp") <= 1
    finally:
        queue.close()
    assert leases(database, "acme-corp") == 0  # close applied the last release


def test_the_slot_is_refused_while_held(database: Database) -> None:
    queue = AdmissionQueue(Admission(with_tenant(database)))
    queue.start()
    try:
        held = queue.admit("acme-corp", ONE_SLOT, 1, 60)
        with pytest.raises(ConcurrencyLimitExceeded):
            queue.admit("acme-corp", ONE_SLOT, 1, 60)
        queue.release(held)
        queue.release(queue.admit("acme-corp", ONE_SLOT, 1, 60))
    finally:
        queue.close()


def test_without_the_thread_calls_go_straight_through(sqlite_database: Database) -> None:
    queue = AdmissionQueue(Admission(with_tenant(sqlite_database)))
    ticket = queue.admit("acme-corp", ONE_SLOT, 1, 60)
    assert leases(sqlite_database, "acme-corp") == 1
    queue.release(ticket)
    assert leases(sqlite_database, "acme-corp") == 0


@settings(max_examples=15, deadline=None)
@given(
    burst=st.integers(1, 12),
    max_concurrent=st.integers(1, 6),
    callers=st.integers(1, 12),
    calls=st.integers(1, 40),
)
def test_concurrent_callers_never_pass_the_bounds(
    tmp_path_factory: pytest.TempPathFactory,
    burst: int,
    max_concurrent: int,
    callers: int,
    calls: int,
) -> None:
    from tenantkit.db import open_database

    folder = tmp_path_factory.mktemp("queue")
    db = with_tenant(open_database(f"sqlite:///{folder / 'records.db'}"))
    tier = Tier("t", 1, burst, max_concurrent, 10**6, 10**6, 10)  # ~no refill in the test
    queue = AdmissionQueue(Admission(db))
    queue.start()
    in_flight = 0
    most = 0
    admitted = 0
    lock = threading.Lock()
    refusals: list[LimitExceeded] = []

    def call(_: int) -> None:
        nonlocal in_flight, most, admitted
        try:
            ticket = queue.admit("acme-corp", tier, 1, 60)
        except LimitExceeded as refusal:
            refusals.append(refusal)
            return
        with lock:
            admitted += 1
            in_flight += 1
            most = max(most, in_flight)
        time.sleep(0.001)
        with lock:
            in_flight -= 1
        queue.release(ticket)

    try:
        with ThreadPoolExecutor(callers) as pool:
            list(pool.map(call, range(calls)))
    finally:
        queue.close()
        db.close()
    assert all(isinstance(r, RateLimitExceeded | ConcurrencyLimitExceeded) for r in refusals)
    assert admitted + len(refusals) == calls
    assert admitted <= burst
    assert most <= max_concurrent
    assert admitted >= 1


def test_a_cancelled_waiter_does_not_stop_the_queue(sqlite_database: Database) -> None:
    import asyncio

    roomy = Tier("roomy", 3600, 1000, 100, 10**6, 10**6, 10)
    queue = AdmissionQueue(Admission(with_tenant(sqlite_database)))
    queue.start()

    async def cancel_some() -> None:
        for _ in range(20):
            task = asyncio.ensure_future(queue.admit_async("acme-corp", roomy, 1, 60))
            await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                queue.release(await task)

    try:
        asyncio.run(cancel_some())
        ticket = queue.admit("acme-corp", roomy, 1, 60)  # the thread is still serving
        queue.release(ticket)
    finally:
        queue.close()
    # every admission whose waiter had gone was released by the queue itself
    assert leases(sqlite_database, "acme-corp") == 0
