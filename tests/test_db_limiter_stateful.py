"""The limiter and leases against a real database, as a Hypothesis state machine.

Random interleavings of acquire, release, clock advance and process death
(a lease never released; a decision that dies before it commits), through two
``Admission`` objects on two separate connections to one database, as two
gateway processes would be. After every step:

- the GCRA bound holds: in any span of ``W`` seconds of admissions, the cost
  admitted is at most ``burst + floor(W / T)``;
- live leases never exceed ``max_concurrent``, and the database counts
  exactly the leases the model says are live;
- every decision matches a small reference GCRA + lease model.

Runs against SQLite and PostgreSQL.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
)

from tenantkit.config import Tier
from tenantkit.db import Database, open_database
from tenantkit.errors import ConcurrencyLimitExceeded, RateLimitExceeded
from tenantkit.limits import Admission, Ticket, limiter_key
from tests.conftest import BACKENDS, POSTGRES_URL
from tests.dbutil import add_tenants, url_of

TENANT = "acme"
MICROS = 1_000_000
TIER = Tier(
    "tiny",
    requests_per_hour=1_800,  # T = 2 s
    burst=3,
    max_concurrent=2,
    compute_seconds_per_day=10**9,
    storage_bytes=1,
    max_files=1,
)
T_US = -(-3600 * MICROS // TIER.requests_per_hour)
LEASE_TTL_US = 7 * MICROS
START_US = 1_767_225_600 * MICROS


class Crash(Exception):
    """A process dying in the middle of a decision."""


class LimiterMachine(RuleBasedStateMachine):
    tickets = Bundle("tickets")

    def __init__(self, backend: str, workdir: Path) -> None:
        super().__init__()
        self.now_us = START_US
        if backend == "sqlite":
            folder = Path(tempfile.mkdtemp(dir=workdir))
            self.db: Database = open_database(f"sqlite:///{folder / 'records.db'}")
        else:
            from tests.pg import fresh_postgres_database

            self.db = fresh_postgres_database(POSTGRES_URL)
        # a second "process": its own connections to the same records
        self.other: Database = open_database(url_of(self.db), migrate=False)
        add_tenants(self.db, TENANT)
        clock = self.clock
        self.gateways = [Admission(self.db, clock=clock), Admission(self.other, clock=clock)]
        self.tat_us: int | None = None  # reference GCRA state
        self.leases: dict[str, int] = {}  # live in the model: lease id -> expiry (us)
        self.admitted: list[tuple[int, int]] = []  # (time us, cost)

    def clock(self) -> float:
        return self.now_us / MICROS

    def teardown(self) -> None:
        self.other.close()
        self.db.close()

    def _expire(self) -> None:
        self.leases = {k: v for k, v in self.leases.items() if v > self.now_us}

    # -- rules --------------------------------------------------------------------

    @rule(target=tickets, gateway=st.integers(0, 1), cost=st.integers(1, 4))
    def acquire(self, gateway: int, cost: int) -> Ticket | object:
        self._expire()
        base = max(self.tat_us or self.now_us, self.now_us)
        rate_ok = base + cost * T_US - self.now_us <= TIER.burst * T_US
        slots_ok = len(self.leases) < TIER.max_concurrent
        try:
            ticket = self.gateways[gateway].admit(
                TENANT, TIER, cost=cost, lease_ttl=LEASE_TTL_US / MICROS
            )
        except RateLimitExceeded:
            assert not rate_ok, "refused by rate, but the reference GCRA admits"
            return consumes_nothing()
        except ConcurrencyLimitExceeded:
            assert rate_ok, "the rate check comes first"
            assert not slots_ok, "refused by concurrency with a free slot"
            return consumes_nothing()
        assert rate_ok, "admitted over the rate"
        assert slots_ok, "admitted over max_concurrent"
        self.tat_us = base + cost * T_US
        self.leases[ticket.lease_id] = self.now_us + LEASE_TTL_US
        self.admitted.append((self.now_us, cost))
        return ticket

    @rule(ticket=consumes(tickets), gateway=st.integers(0, 1))
    def release(self, ticket: Ticket | object, gateway: int) -> None:
        if isinstance(ticket, Ticket):
            self.gateways[gateway].release(ticket)
            self.leases.pop(ticket.lease_id, None)

    @rule(ticket=consumes(tickets))
    def process_dies_holding_a_lease(self, ticket: Ticket | object) -> None:
        """The process that held ``ticket`` is gone: nobody will release it."""

    @rule()
    def process_dies_mid_decision(self) -> None:
        try:
            with self.db.transaction() as tx:
                tx.lock_limiter(limiter_key(TENANT))
                tx.set_limiter(limiter_key(TENANT), 0.0)  # would reset the limiter
                tx.active_leases(TENANT, self.clock())
                tx.remove_lease(next(iter(self.leases), "none"))
                raise Crash
        except Crash:
            pass

    @rule(step_us=st.integers(0, 5 * MICROS))
    def advance_clock(self, step_us: int) -> None:
        self.now_us += step_us

    # -- invariants ----------------------------------------------------------------

    @invariant()
    def gcra_bound_holds(self) -> None:
        times = self.admitted
        for i, (start, _) in enumerate(times):
            total = 0
            for end, cost in times[i:]:
                total += cost
                width_us = end - start
                bound = TIER.burst + width_us * TIER.requests_per_hour // (3600 * MICROS)
                assert total <= bound, f"{total} admitted in {width_us} us (bound {bound})"

    @invariant()
    def leases_match_the_model(self) -> None:
        self._expire()
        assert len(self.leases) <= TIER.max_concurrent
        with self.other.transaction() as tx:
            assert tx.active_leases(TENANT, self.clock()) == len(self.leases)


def consumes_nothing() -> object:
    """The bundle value of a refused acquire (nothing to release)."""
    return object()


@pytest.mark.parametrize("backend", BACKENDS)
def test_limiter_and_leases_state_machine(backend: str, tmp_path: Path) -> None:
    if backend == "postgres":
        from tests.pg import require_postgres

        require_postgres(POSTGRES_URL)
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(
        lambda: LimiterMachine(backend, tmp_path),
        settings=settings(max_examples=40, stateful_step_count=30, deadline=None),
    )
