"""Admission decisions per second, in process, at 10 and at 100,000 tenants.

Run: ``.venv/bin/python bench/bench_admission.py [--rounds 7] [--per-round 1500]``
(under a minute). SQLite always; PostgreSQL too when
``TENANTKIT_BENCH_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``) answers, in a scratch schema
dropped at the end.

Each database is filled so its tables and indexes have their full size: per
tenant, its tenant row, a GCRA state (TAT and interval), one long-lived
lease and a usage total for today. A round times ``per-round`` calls of ``Admission.admit`` for
random tenants (every call is admitted: a decision that writes, the costlier
path), releasing each ticket outside the timing. Rounds alternate between the
10-tenant and the 100,000-tenant database so both see the same machine load.

Prints the median decisions per second per size and the ratio
100,000 / 10 tenants (1.0 means the cost does not grow with the tenant count),
then one JSON line with the numbers.
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
from pathlib import Path
from typing import Any

from tenantkit.config import Tier
from tenantkit.db import Database, open_database
from tenantkit.db.sql import utc_day
from tenantkit.limits import Admission

POSTGRES_URL = os.environ.get(
    "TENANTKIT_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
SIZES = (10, 100_000)
TIER = Tier("bench", 10**9, 10**6, 10**6, 10**12, 1, 1)

SEQ = "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {n})"


def populate(db: Database, tenants: int) -> None:
    """Bulk-load per-tenant limiter state, a lease and today's usage totals."""
    today = utc_day(time.time())
    interval = float(-(-3600 * 1_000_000 // TIER.requests_per_hour))
    statements = [
        "INSERT INTO limiter_state SELECT 'rate:t' || n, 1.0 FROM seq",
        f"INSERT INTO limiter_state SELECT 'rate:t' || n || ':interval', {interval} FROM seq",
        "INSERT INTO leases SELECT 'held-' || n, 't' || n, 0.0, 1e15 FROM seq",
        f"INSERT INTO usage_daily SELECT 't' || n, '{today}', 'f', 1, 0, 1.0, 0.0, 0, 0 FROM seq",
        # Admission checks the tenant row (exists, active)
        "INSERT INTO tenants (id, name, tier, status, created_at, updated_at)"
        " SELECT 't' || n, 't' || n, 'bench', 'active', 0.0, 0.0 FROM seq",
    ]
    with db.transaction() as tx:
        cur = tx._cur  # type: ignore[attr-defined]  # bulk load; not part of the API
        for statement in statements:
            cur.execute(f"{SEQ.format(n=tenants)} {statement}")


def one_round(admission: Admission, tenants: int, calls: int, rng: random.Random) -> float:
    """Admissions per second over ``calls`` admissions for random tenants."""
    names = [f"t{rng.randint(1, tenants)}" for _ in range(calls)]
    elapsed = 0.0
    for name in names:
        start = time.perf_counter()
        ticket = admission.admit(name, TIER)
        elapsed += time.perf_counter() - start
        admission.release(ticket)
    return calls / elapsed


def open_backends(scratch: Path) -> list[tuple[str, dict[int, Database], list[str]]]:
    backends: list[tuple[str, dict[int, Database], list[str]]] = [
        (
            "sqlite",
            {n: open_database(f"sqlite:///{scratch / f'admission-{n}.db'}") for n in SIZES},
            [],
        )
    ]
    try:
        schemas = {n: f"bench_admission_{uuid.uuid4().hex[:10]}" for n in SIZES}
        pg = {n: open_database(f"{POSTGRES_URL}?schema={schemas[n]}") for n in SIZES}
        backends.append(("postgresql", pg, list(schemas.values())))
    except Exception as exc:  # no server, or no driver: SQLite only
        print(f"PostgreSQL skipped: {type(exc).__name__}")
    return backends


def drop_schemas(schemas: list[str]) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--per-round", type=int, default=1500, help="SQLite calls per round")
    parser.add_argument("--pg-per-round", type=int, default=250, help="PostgreSQL calls per round")
    args = parser.parse_args()
    rng = random.Random(42)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        backends = open_backends(Path(scratch))
        try:
            for name, dbs, _ in backends:
                for size, db in dbs.items():
                    populate(db, size)
                rates: dict[int, list[float]] = {n: [] for n in SIZES}
                admissions = {n: Admission(db) for n, db in dbs.items()}
                for n in SIZES:  # warm up caches and connections
                    one_round(admissions[n], n, 100, rng)
                calls = args.per_round if name == "sqlite" else args.pg_per_round
                for _ in range(args.rounds):
                    for n in SIZES:
                        rates[n].append(one_round(admissions[n], n, calls, rng))
                medians = {n: statistics.median(r) for n, r in rates.items()}
                ratio = medians[SIZES[1]] / medians[SIZES[0]]
                results[name] = {
                    **{f"decisions_per_s_{n}": round(m) for n, m in medians.items()},
                    **{f"us_per_decision_{n}": round(1e6 / m, 1) for n, m in medians.items()},
                    "ratio_100000_over_10": round(ratio, 3),
                }
                print(
                    f"{name:>10}: {medians[10]:8.0f}/s at 10 tenants, "
                    f"{medians[100_000]:8.0f}/s at 100,000 tenants "
                    f"({1e6 / medians[SIZES[0]]:.0f} vs {1e6 / medians[SIZES[1]]:.0f} us); "
                    f"ratio {ratio:.3f}"
                )
        finally:
            for _, dbs, schemas in backends:
                for db in dbs.values():
                    db.close()
                if schemas:
                    drop_schemas(schemas)
    print(json.dumps({"bench": "admission", "rounds": args.rounds, **results}))


if __name__ == "__main__":
    main()
