"""Admission transactions per second: PostgreSQL against SQLite, same run.

Run: ``.venv/bin/python bench/bench_db.py`` (under a minute and a half;
PostgreSQL from ``TENANTKIT_BENCH_POSTGRES_URL``, default
``postgresql://postgres@127.0.0.1:5432/test``, in a scratch schema dropped at
the end).

For 10 and for 100,000 tenants (each with limiter state and a lease already
stored, so tables and indexes have their full size) it times, interleaved
round by round so both backends see the same machine load:

* ``txn``   - one write transaction doing what an admission decision does to
  the records: ``lock_limiter`` + ``set_limiter`` + ``active_leases`` +
  ``add_lease`` + ``remove_lease``, for a random tenant;
* ``admit`` - ``Admission.admit`` then ``Admission.release`` (two
  transactions: GCRA, daily compute quota, concurrency lease), for a random
  tenant.

SQLite's cost still grows somewhat with tenants (its B-trees are a level or
two deeper at 100,000 rows); PostgreSQL's is dominated by round trips (about
ten per decision), so its absolute numbers depend mostly on loopback latency
and how busy the CPUs are: compare the ratios within one run.

It prints the median microseconds per operation and operations per second
for each, the PostgreSQL/SQLite throughput ratio, and the 100,000/10 tenants
ratio per backend (1.0 means the cost does not grow with tenants).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tenantkit.config import Tier
from tenantkit.db import Database, Lease, open_database
from tenantkit.limits import GCRA, Admission

POSTGRES_URL = os.environ.get(
    "TENANTKIT_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
TIER = Tier("bench", 10**9, 10**6, 10**6, 10**12, 1, 1)
FAR = 1e15

POPULATE = (
    "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {n})"
    " INSERT INTO {table} SELECT {columns} FROM seq"
)


def populate(db: Database, tenants: int) -> None:
    """Limiter state (as ``Admission`` keeps it) and one long-lived lease for
    ``tenants`` tenants, in bulk, so every case measures steady state."""
    interval = float(GCRA.per_hour(TIER.requests_per_hour, burst=TIER.burst).interval_us)
    with db.transaction() as tx:
        cur = tx._cur  # type: ignore[attr-defined]  # bulk load; not part of the API
        cur.execute(POPULATE.format(n=tenants, table="limiter_state", columns="'rate:t' || n, 1.0"))
        cur.execute(
            POPULATE.format(
                n=tenants,
                table="limiter_state",
                columns=f"'rate:t' || n || ':interval', {interval}",
            )
        )
        cur.execute(
            POPULATE.format(
                n=tenants, table="leases", columns=f"'seed-' || n, 't' || n, 0.0, {FAR}"
            )
        )
        cur.execute(  # tenant rows: Admission checks the tenant exists and is active
            POPULATE.format(
                n=tenants,
                table="tenants",
                columns="'t' || n, 't' || n, 'bench', 'active', NULL, NULL, 0.0, 0.0",
            )
        )


def txn(db: Database, tenants: int, rng: random.Random) -> Callable[[], None]:
    def run() -> None:
        tenant = f"t{rng.randint(1, tenants)}"
        key = f"rate:{tenant}"
        now = time.time()
        lease = uuid.uuid4().hex
        with db.transaction() as tx:
            value = tx.lock_limiter(key) or 0.0
            tx.set_limiter(key, max(value, now))
            tx.active_leases(tenant, now)
            tx.add_lease(Lease(lease, tenant, now, now + 600))
            tx.remove_lease(lease)

    return run


def admit(db: Database, tenants: int, rng: random.Random) -> Callable[[], None]:
    admission = Admission(db)

    def run() -> None:
        ticket = admission.admit(f"t{rng.randint(1, tenants)}", TIER)
        admission.release(ticket)

    return run


def per_op_us(op: Callable[[], None], count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        op()
    return (time.perf_counter() - start) / count * 1e6


def open_backend(backend: str, tenants: int, workdir: Path) -> tuple[Database, Callable[[], None]]:
    if backend == "sqlite":
        db = open_database(f"sqlite:///{workdir / f'bench-{tenants}.db'}")
        return db, db.close
    from tenantkit.db.postgres import PostgresDatabase

    schema = f"tk_bench_{uuid.uuid4().hex[:12]}"
    pg = PostgresDatabase(POSTGRES_URL, schema=schema)
    pg.migrate()

    def cleanup() -> None:
        pg.close()
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    return pg, cleanup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--ops", type=int, default=200, help="operations per round and case")
    parser.add_argument("--tenants", type=int, nargs="+", default=[10, 100_000])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    rng = random.Random(7)
    cases: dict[tuple[str, str, int], Callable[[], None]] = {}
    cleanups: list[Callable[[], None]] = []
    samples: dict[tuple[str, str, int], list[float]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for backend in ("sqlite", "postgres"):
                for tenants in args.tenants:
                    db, cleanup = open_backend(backend, tenants, Path(tmp))
                    cleanups.append(cleanup)
                    populate(db, tenants)
                    for name, factory in (("txn", txn), ("admit", admit)):
                        op = factory(db, tenants, rng)
                        for _ in range(20):  # warm up: connections, prepared statements
                            op()
                        cases[(name, backend, tenants)] = op
                        samples[(name, backend, tenants)] = []
            setup_s = time.perf_counter() - started
            for _ in range(args.rounds):
                order = list(cases)
                rng.shuffle(order)
                for case in order:
                    samples[case].append(per_op_us(cases[case], args.ops))
        finally:
            for cleanup in cleanups:
                cleanup()

    medians = {case: statistics.median(values) for case, values in samples.items()}
    report: dict[str, Any] = {"setup_seconds": round(setup_s, 1), "cases": [], "ratios": []}
    for (name, backend, tenants), us in sorted(medians.items()):
        report["cases"].append(
            {
                "op": name,
                "backend": backend,
                "tenants": tenants,
                "median_us": round(us, 1),
                "per_second": round(1e6 / us),
            }
        )
    for name in ("txn", "admit"):
        for tenants in args.tenants:
            pg, lite = medians[(name, "postgres", tenants)], medians[(name, "sqlite", tenants)]
            report["ratios"].append(
                {"op": name, "tenants": tenants, "postgres_over_sqlite_throughput": lite / pg}
            )
        if len(args.tenants) == 2:
            small, large = args.tenants
            for backend in ("sqlite", "postgres"):
                report["ratios"].append(
                    {
                        "op": name,
                        "backend": backend,
                        f"cost_{large}_over_{small}_tenants": medians[(name, backend, large)]
                        / medians[(name, backend, small)],
                    }
                )
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{'op':6} {'backend':9} {'tenants':>8} {'median us':>10} {'per second':>11}")
    for row in report["cases"]:
        print(
            f"{row['op']:6} {row['backend']:9} {row['tenants']:>8} {row['median_us']:>10.1f}"
            f" {row['per_second']:>11}"
        )
    for ratio in report["ratios"]:
        label = ", ".join(f"{k}={v}" for k, v in ratio.items() if not isinstance(v, float))
        value = next(v for v in ratio.values() if isinstance(v, float))
        metric = next(k for k, v in ratio.items() if isinstance(v, float))
        print(f"{label}: {metric} = {value:.2f}")
    print(f"setup {report['setup_seconds']} s, total {report['total_seconds']} s")


if __name__ == "__main__":
    main()
