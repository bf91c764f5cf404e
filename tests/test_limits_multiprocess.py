"""Several processes admitting for one tenant on one database never pass the bound."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest

from tenantkit.config import Tier
from tenantkit.db import Database, open_database
from tenantkit.errors import RateLimitExceeded
from tenantkit.limits import Admission
from tests.dbutil import add_tenants, url_of

# One request an hour with a burst of 7: over a test that lasts seconds, the
# bound burst + floor(W / T) is exactly the burst, whatever the real clock says.
TINY = Tier("tiny", requests_per_hour=1, burst=7, max_concurrent=1_000,
            compute_seconds_per_day=1e9, storage_bytes=1, max_files=1)  # fmt: skip
PROCESSES = 4
ATTEMPTS = 25


def hammer(url: str, start: Any, results: Any) -> None:
    """Child process: wait for the others, then try ATTEMPTS admissions."""
    db = open_database(url, migrate=False)
    admission = Admission(db)
    admitted = 0
    start.wait()
    for _ in range(ATTEMPTS):
        try:
            ticket = admission.admit("free-tenant", TINY)
        except RateLimitExceeded:
            continue
        admitted += 1
        admission.release(ticket)
    db.close()
    results.put(admitted)


@pytest.mark.slow
def test_processes_never_admit_beyond_the_burst(database: Database) -> None:
    add_tenants(database, "free-tenant")
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    workers = [
        ctx.Process(target=hammer, args=(url_of(database), start, results))
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    counts = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert sum(counts) == TINY.burst  # never above the bound, and the burst is all used
    with database.transaction() as tx:
        assert tx.active_leases("free-tenant", 0.0) == 0  # every lease released
