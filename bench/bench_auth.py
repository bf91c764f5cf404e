"""API key verification cost: tenantkit's cached path against a bare PyJWT decode.

Run: ``.venv/bin/python bench/bench_auth.py`` (about a minute).

For 10 and for 100,000 tenants (one key each, every key verified once so the
cache holds them all) it times, in the same run and interleaved round by round:

* ``verify``  - ``KeyManager.verify`` on the cached path (what the gateway pays
  per request once a key has been seen),
* ``decode``  - ``jwt.decode`` of the same token with the same secret (HS256),
  the least any JWT-checking gateway pays,
* ``revalidate`` - ``KeyManager.verify`` of a key seen before whose cache
  entry is older than ``auth_cache_ttl`` (two record reads, no signature check),
* ``first``   - ``KeyManager.verify`` of a key not seen before (signature,
  claims and two record reads from SQLite).

The key manager runs on a hand-driven clock, so cache entries age only when
the benchmark says so.

It prints the medians in microseconds and ``verify / decode`` as a ratio.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jwt

from tenantkit.auth import KeyManager
from tenantkit.config import get_settings
from tenantkit.db import Tenant, open_database

SECRET = "bench-secret-" * 4


def per_call(fn: Callable[[str], object], tokens: Sequence[str]) -> float:
    """Mean seconds per call over ``tokens``."""
    start = time.perf_counter()
    for token in tokens:
        fn(token)
    return (time.perf_counter() - start) / len(tokens)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def build(n: int, workdir: Path, clock: Clock) -> tuple[KeyManager, list[str]]:
    settings = get_settings(data_dir=workdir, signing_key=SECRET, auth_cache_ttl=1.0)
    db = open_database(f"sqlite:///{workdir / 'bench.db'}")
    keys = KeyManager(db, settings, clock=clock, cache_size=max(250_000, 2 * n))
    api_keys: list[str] = []
    now = time.time()
    with db.transaction() as tx:
        for i in range(n):
            tenant_id = f"tenant-{i:06d}"
            tx.create_tenant(Tenant(tenant_id, "Bench", "pro", "active", now, now))
            api_keys.append(keys.mint_in(tx, tenant_id, actor="bench").api_key)
    return keys, api_keys


def bench(n: int, rounds: int, sample_size: int, rng: random.Random) -> dict[str, float]:
    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        built = time.perf_counter()
        keys, api_keys = build(n, Path(tmp), clock)
        built = time.perf_counter() - built

        fresh = rng.sample(api_keys, min(len(api_keys), sample_size))
        first = [per_call(keys.verify, [token]) for token in fresh]  # the slow path, once each
        for token in api_keys:  # every key in the cache
            keys.verify(token)
        keys.flush_last_used()

        def bare(token: str) -> object:
            return jwt.decode(token[3:], SECRET, algorithms=["HS256"])

        verify_times: list[float] = []
        decode_times: list[float] = []
        revalidate_times: list[float] = []
        for _ in range(rounds):
            clock.now += 1.5  # every cache entry is now older than auth_cache_ttl
            seen = rng.sample(api_keys, min(len(api_keys), sample_size))
            revalidate_times.append(per_call(keys.verify, seen))
            sample = [rng.choice(seen) for _ in range(sample_size)]
            verify_times.append(per_call(keys.verify, sample))
            decode_times.append(per_call(bare, sample))
        keys.close()
        keys.db.close()
    verify = statistics.median(verify_times)
    decode = statistics.median(decode_times)
    return {
        "tenants": n,
        "verify_us": verify * 1e6,
        "decode_us": decode * 1e6,
        "ratio": verify / decode,
        "revalidate_us": statistics.median(revalidate_times) * 1e6,
        "first_us": statistics.median(first) * 1e6,
        "setup_s": built,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, nargs="+", default=[10, 100_000])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--sample", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    results = [bench(n, args.rounds, args.sample, rng) for n in args.tenants]
    print(
        f"{'tenants':>8}  {'verify (cached)':>16}  {'bare decode':>12}  {'ratio':>6}"
        f"  {'revalidate':>11}  {'first verify':>13}  {'setup':>7}"
    )
    for r in results:
        print(
            f"{r['tenants']:>8,.0f}  {r['verify_us']:>13.2f} us  {r['decode_us']:>9.2f} us"
            f"  {r['ratio']:>6.3f}  {r['revalidate_us']:>8.1f} us  {r['first_us']:>10.1f} us"
            f"  {r['setup_s']:>6.1f}s"
        )
    if len(results) > 1:
        low, high = results[0], results[-1]
        print(
            f"cached verify at {high['tenants']:,.0f} vs {low['tenants']:,.0f} tenants: "
            f"{high['verify_us'] / low['verify_us']:.2f}x"
        )


if __name__ == "__main__":
    main()
