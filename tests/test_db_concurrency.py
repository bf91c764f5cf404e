"""Concurrent writers never lose an update nor pass a limit, on both backends.

Threads share one ``Database``; processes each open their own, as
``tenantkit serve --workers N`` and several gateway containers do.
"""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from collections.abc import Callable

from tenantkit.db import Database, Lease, UsageEvent, open_database
from tests.dbutil import url_of

COUNTER = "counter:shared"
MAX_CONCURRENT = 3
T0 = 1_767_225_600.0


def increment(db: Database, times: int) -> None:
    """Read-modify-write the same limiter value ``times`` times."""
    for _ in range(times):
        with db.transaction() as tx:
            value = tx.lock_limiter(COUNTER) or 0.0
            tx.set_limiter(COUNTER, value + 1)


def lease_cycle(db: Database, tenant_id: str, times: int) -> list[int]:
    """Try to take a lease ``times`` times; returns the counts seen at admission.

    A lease is held across the next attempt, so the tenant stays at its limit.
    """
    seen: list[int] = []
    held: str | None = None
    for _ in range(times):
        lease_id = uuid.uuid4().hex
        with db.transaction() as tx:
            active = tx.active_leases(tenant_id, T0)
            seen.append(active)
            admitted = active < MAX_CONCURRENT
            if admitted:
                tx.add_lease(Lease(lease_id, tenant_id, T0, T0 + 3600))
        if held is not None:
            with db.transaction() as tx:
                tx.remove_lease(held)
        held = lease_id if admitted else None
    if held is not None:
        with db.transaction() as tx:
            tx.remove_lease(held)
    return seen


def lease_rounds(db: Database, tenant_id: str, start: threading.Barrier, rounds: int) -> list[bool]:
    """In each round every thread tries at once; leases are given back only after
    everyone has tried. Returns whether this thread was admitted, per round."""
    admitted: list[bool] = []
    for _ in range(rounds):
        start.wait()
        lease_id = uuid.uuid4().hex
        with db.transaction() as tx:
            ok = tx.active_leases(tenant_id, T0) < MAX_CONCURRENT
            if ok:
                tx.add_lease(Lease(lease_id, tenant_id, T0, T0 + 3600))
        admitted.append(ok)
        start.wait()
        if ok:
            with db.transaction() as tx:
                tx.remove_lease(lease_id)
    return admitted


def record_overlapping(db: Database, worker: int, times: int) -> int:
    """Record batches that overlap other workers' request ids; returns how many were new."""
    new = 0
    for i in range(times):
        ids = request_ids(worker, i)
        events = [UsageEvent(r, "acme", "embed", 200, T0, T0 + 1, 1.0) for r in ids]
        with db.transaction() as tx:
            new += tx.record_usage(events)
    return new


def request_ids(worker: int, i: int) -> list[str]:
    return [f"req-{(2 * i + worker + k) % 40}" for k in range(5)]


def distinct_requests(workers: int, times: int) -> int:
    return len({r for w in range(workers) for i in range(times) for r in request_ids(w, i)})


def run_threads(n: int, target: Callable[[int], object]) -> list[object]:
    results: list[object] = [None] * n
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            results[i] = target(i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


# -- in worker processes -----------------------------------------------------------


def process_worker(url: str, job: str, worker: int, times: int) -> object:
    db = open_database(url, migrate=False)
    try:
        if job == "increment":
            increment(db, times)
            return None
        if job == "leases":
            return lease_cycle(db, "acme", times)
        return record_overlapping(db, worker, times)
    finally:
        db.close()


def run_processes(db: Database, job: str, n: int, times: int) -> list[object]:
    context = multiprocessing.get_context("spawn")
    with context.Pool(n) as pool:
        return pool.starmap(process_worker, [(url_of(db), job, i, times) for i in range(n)])


# -- tests ----------------------------------------------------------------------------


def test_limiter_updates_are_never_lost_across_threads(database: Database) -> None:
    run_threads(8, lambda _: increment(database, 25))
    with database.transaction() as tx:
        assert tx.lock_limiter(COUNTER) == 200


def test_leases_never_exceed_the_limit_across_threads(database: Database) -> None:
    threads, rounds = 8, 15
    barrier = threading.Barrier(threads)
    results = run_threads(threads, lambda _: lease_rounds(database, "acme", barrier, rounds))
    per_round = [sum(r[i] for r in results) for i in range(rounds)]  # type: ignore[index]
    # all eight try while none gives back: exactly the limit gets in, every round
    assert per_round == [MAX_CONCURRENT] * rounds
    with database.transaction() as tx:
        assert tx.active_leases("acme", T0) == 0


def test_leases_never_exceed_the_limit_with_free_running_threads(database: Database) -> None:
    seen = run_threads(8, lambda _: lease_cycle(database, "acme", 25))
    counts = [c for worker in seen for c in worker]  # type: ignore[attr-defined]
    assert all(c <= MAX_CONCURRENT for c in counts)
    with database.transaction() as tx:
        assert tx.active_leases("acme", T0) == 0


def test_overlapping_usage_batches_count_each_request_once(database: Database) -> None:
    new = run_threads(6, lambda i: record_overlapping(database, i, 20))
    with database.transaction() as tx:
        assert sum(new) == tx.count_usage_events() == distinct_requests(6, 20) == 40  # type: ignore[arg-type]
        totals = tx.usage_totals("acme", "2026-01-01", "2026-01-01")
    assert totals["2026-01-01"]["embed"].requests == 40


def test_writers_in_several_processes_stay_exact(database: Database) -> None:
    run_processes(database, "increment", 3, 30)
    seen = run_processes(database, "leases", 3, 30)
    new = run_processes(database, "usage", 3, 15)
    counts = [c for worker in seen for c in worker]  # type: ignore[attr-defined]
    assert all(c <= MAX_CONCURRENT for c in counts)
    with database.transaction() as tx:
        assert tx.lock_limiter(COUNTER) == 90
        assert tx.active_leases("acme", T0) == 0
        assert sum(new) == tx.count_usage_events() == distinct_requests(3, 15)  # type: ignore[arg-type]
