"""Admission: rate, batch cost, quota, concurrency leases, fail open, headers."""

from __future__ import annotations

import contextlib
import re
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenantkit.config import DEFAULT_TIERS, Tier
from tenantkit.db import Database, UsageEvent
from tenantkit.db.sql import utc_day
from tenantkit.errors import (
    AuthenticationError,
    ConcurrencyLimitExceeded,
    DatabaseUnavailable,
    QuotaExceeded,
    RateLimitExceeded,
    TenantSuspended,
)
from tenantkit.limits import (
    Admission,
    RateLimitState,
    Ticket,
    denial_headers,
    limiter_key,
    rate_limit_headers,
    seconds_to_utc_midnight,
)
from tests.dbutil import add_tenants

NOON = datetime(2026, 12, 4, 12, 0, tzinfo=UTC).timestamp()
FREE = DEFAULT_TIERS["free"]  # 100/hour, burst 20, 5 concurrent, 3600 s/day
PRO = DEFAULT_TIERS["pro"]  # 1000/hour, burst 100
ROOMY = Tier("roomy", 100, 20, 1_000, 3_600, 1, 1)  # free's rate, no concurrency pressure


class Clock:
    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def admission(database: Database, clock: Clock) -> Admission:
    add_tenants(database, "acme", "globex")
    return Admission(database, clock=clock)


def admit_until_refused(admission: Admission, tier: Tier, tenant: str = "acme") -> int:
    count = 0
    while True:
        try:
            admission.release(admission.admit(tenant, tier))
        except RateLimitExceeded:
            return count
        count += 1
        assert count <= 10_000


def test_burst_then_sustained_rate(admission: Admission, clock: Clock) -> None:
    assert admit_until_refused(admission, ROOMY) == 20
    clock.now += 35.999
    assert admit_until_refused(admission, ROOMY) == 0
    clock.now += 0.001  # one emission interval (36 s) after the burst
    assert admit_until_refused(admission, ROOMY) == 1
    clock.now += 36 * 5
    assert admit_until_refused(admission, ROOMY) == 5


def test_refusal_reports_retry_after_and_headers(admission: Admission, clock: Clock) -> None:
    admit_until_refused(admission, ROOMY)
    clock.now += 10
    with pytest.raises(RateLimitExceeded) as caught:
        admission.admit("acme", ROOMY)
    assert caught.value.retry_after == pytest.approx(26.0)
    assert caught.value.limit == "requests"
    headers = denial_headers(caught.value)
    assert headers["Retry-After"] == "26"
    # r=0: t says when the next request fits, as Retry-After does (not the full reset, 710)
    assert headers["RateLimit"] == '"default";r=0;t=26'
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Reset"] == "26"
    status = admission.status("acme", ROOMY)["rate"]
    assert (status["remaining"], status["retry_after"], status["reset_after"]) == (0, 26.0, 710.0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    burst=st.integers(1, 8),
    per_hour=st.sampled_from([1, 7, 100, 3600, 10_000]),
    steps=st.lists(
        st.tuples(st.integers(1, 3), st.floats(0, 900, allow_nan=False)), min_size=1, max_size=25
    ),
)
def test_rate_limit_status_agrees_with_the_next_refusal(
    burst: int, per_hour: int, steps: list[tuple[int, float]]
) -> None:
    """/rate-limit's answer at any moment is what the next call at that moment meets.

    remaining > 0: the next call is admitted and retry_after is None; remaining
    0: it is refused with exactly the retry_after shown, the headers' t equals
    its Retry-After, and a call at that moment plus retry_after is admitted.
    """
    from tenantkit.db import open_database

    db = open_database("sqlite:///:memory:")
    try:
        add_tenants(db, "acme")
        clock = Clock()
        admission = Admission(db, clock=clock)
        tier = Tier("t", per_hour, burst, 1_000, 10**6, 1, 1)
        for cost, pause in steps:
            clock.now += pause
            with contextlib.suppress(RateLimitExceeded):
                admission.release(admission.admit("acme", tier, cost=cost))
            rate = admission.status("acme", tier)["rate"]
            shown = rate_limit_headers(admission.peek("acme", tier))
            if rate["remaining"] > 0:
                assert rate["retry_after"] is None
                continue
            assert rate["retry_after"] is not None
            assert rate["retry_after"] > 0
            with pytest.raises(RateLimitExceeded) as caught:
                admission.admit("acme", tier)
            assert caught.value.retry_after is not None
            assert rate["retry_after"] == round(caught.value.retry_after, 3)
            refused = denial_headers(caught.value)
            assert (
                shown["RateLimit"]
                == refused["RateLimit"]
                == (f'"default";r=0;t={refused["Retry-After"]}')
            )
            assert shown["X-RateLimit-Reset"] == refused["Retry-After"]
            waited, wait = clock.now, caught.value.retry_after
            if wait > 0.001:  # not a millisecond earlier...
                clock.now = waited + wait - 0.001
                with pytest.raises(RateLimitExceeded):
                    admission.admit("acme", tier)
            clock.now = waited + wait + 1e-6  # ...but then (within the clock's microsecond)
            admission.release(admission.admit("acme", tier))
    finally:
        db.close()


def test_batch_costs_its_size(admission: Admission) -> None:
    ticket = admission.admit("acme", ROOMY, cost=15)
    assert ticket.state.remaining == 5
    with pytest.raises(RateLimitExceeded):
        admission.admit("acme", ROOMY, cost=6)
    assert admission.admit("acme", ROOMY, cost=5).state.remaining == 0


def test_a_batch_larger_than_the_burst_can_never_pass(admission: Admission) -> None:
    with pytest.raises(RateLimitExceeded, match="never") as caught:
        admission.admit("acme", ROOMY, cost=21)
    assert caught.value.retry_after is None
    assert admission.peek("acme", ROOMY).remaining == 20


def test_cost_must_be_positive(admission: Admission) -> None:
    with pytest.raises(ValueError, match="cost"):
        admission.admit("acme", ROOMY, cost=0)


def test_refused_requests_do_not_consume(admission: Admission, clock: Clock) -> None:
    assert admit_until_refused(admission, ROOMY) == 20
    for _ in range(50):  # hammering while refused must not push the next slot back
        clock.now += 0.5
        with pytest.raises(RateLimitExceeded):
            admission.admit("acme", ROOMY)
    clock.now = NOON + 36
    assert admit_until_refused(admission, ROOMY) == 1


def test_refused_by_quota_or_concurrency_does_not_consume_rate(
    database: Database, admission: Admission, clock: Clock
) -> None:
    tight = Tier("tight", 100, 20, 1, 10, 1, 1)
    held = admission.admit("acme", tight)
    for _ in range(30):
        with pytest.raises(ConcurrencyLimitExceeded):
            admission.admit("acme", tight)
    admission.release(held)
    with database.transaction() as tx:
        tx.record_usage([UsageEvent("r1", "acme", "f", 200, clock.now - 5, clock.now, 10.0)])
    for _ in range(30):
        with pytest.raises(QuotaExceeded):
            admission.admit("acme", tight)
    assert admission.peek("acme", tight).remaining == 19


def test_tier_upgrade_raises_the_limit_at_once(admission: Admission) -> None:
    assert admit_until_refused(admission, FREE) == 20
    ticket = admission.admit("acme", PRO)  # same tenant, same instant, new tier
    assert ticket.state.limit == 1000
    assert ticket.state.burst == 100
    assert ticket.state.remaining == 79  # 100 burst - 20 used - this one


def test_tenants_are_limited_independently(admission: Admission) -> None:
    assert admit_until_refused(admission, ROOMY, "acme") == 20
    assert admit_until_refused(admission, ROOMY, "globex") == 20


def test_concurrency_leases(admission: Admission, clock: Clock) -> None:
    tier = Tier("c", 10_000, 1_000, 3, 1e9, 1, 1)
    tickets = [admission.admit("acme", tier) for _ in range(3)]
    with pytest.raises(ConcurrencyLimitExceeded) as caught:
        admission.admit("acme", tier)
    assert caught.value.limit == "concurrency"
    assert caught.value.retry_after is not None
    assert "Retry-After" in denial_headers(caught.value)

    admission.release(tickets[0])
    admission.release(tickets[0])  # idempotent
    tickets[0] = admission.admit("acme", tier)
    with pytest.raises(ConcurrencyLimitExceeded):
        admission.admit("acme", tier)
    assert admission.status("acme", tier)["concurrency"] == {"limit": 3, "in_flight": 3}


def test_an_expired_lease_frees_its_slot(admission: Admission, clock: Clock) -> None:
    tier = Tier("c", 10_000, 1_000, 2, 1e9, 1, 1)
    admission.admit("acme", tier, lease_ttl=30)  # never released: its process "crashed"
    admission.admit("acme", tier, lease_ttl=600)
    with pytest.raises(ConcurrencyLimitExceeded):
        admission.admit("acme", tier)
    clock.now += 29.9
    with pytest.raises(ConcurrencyLimitExceeded):
        admission.admit("acme", tier)
    clock.now += 0.1
    admission.admit("acme", tier)
    with pytest.raises(ConcurrencyLimitExceeded):
        admission.admit("acme", tier)


def test_daily_compute_quota(database: Database, admission: Admission, clock: Clock) -> None:
    tier = Tier("q", 10_000, 1_000, 100, 60, 1, 1)
    with database.transaction() as tx:
        tx.record_usage([UsageEvent("r1", "acme", "f", 200, clock.now - 60, clock.now, 59.5)])
    admission.admit("acme", tier)  # 59.5 < 60
    with database.transaction() as tx:
        tx.record_usage([UsageEvent("r2", "acme", "f", 200, clock.now - 1, clock.now, 0.5)])
    with pytest.raises(QuotaExceeded) as caught:
        admission.admit("acme", tier)
    assert caught.value.limit == "compute-seconds-per-day"
    assert caught.value.retry_after == pytest.approx(12 * 3600)  # noon -> midnight UTC
    assert denial_headers(caught.value)["Retry-After"] == "43200"
    assert admission.status("acme", tier)["compute_seconds_per_day"]["remaining"] == 0

    clock.now = datetime(2026, 12, 5, 0, 0, tzinfo=UTC).timestamp()  # a new UTC day
    admission.admit("acme", tier)


def test_quota_counts_compute_not_yet_stored(database: Database, clock: Clock) -> None:
    tier = Tier("q", 10_000, 1_000, 100, 60, 1, 1)
    buffered = {"acme": 60.0}
    add_tenants(database, "acme", "globex")
    admission = Admission(database, clock=clock, pending_compute=lambda t: buffered.get(t, 0.0))
    with pytest.raises(QuotaExceeded):
        admission.admit("acme", tier)
    admission.admit("globex", tier)


def test_seconds_to_utc_midnight() -> None:
    assert seconds_to_utc_midnight(NOON) == 12 * 3600
    midnight = datetime(2026, 12, 5, tzinfo=UTC).timestamp()
    assert seconds_to_utc_midnight(midnight) == 24 * 3600
    assert seconds_to_utc_midnight(midnight - 0.25) == 0.25
    assert utc_day(midnight - 0.25) == "2026-12-04"


def test_peek_does_not_consume(admission: Admission) -> None:
    for _ in range(5):
        assert admission.peek("acme", ROOMY).remaining == 20
    admission.admit("acme", ROOMY)
    state = admission.peek("acme", ROOMY)
    assert (state.remaining, state.reset_after, state.retry_after) == (19, 36.0, None)


def test_deleting_a_tenant_clears_its_limiter(database: Database, admission: Admission) -> None:
    admit_until_refused(admission, ROOMY)
    with database.transaction() as tx:
        assert tx.lock_limiter(limiter_key("acme")) is not None
        tx.delete_tenant("acme")
        assert tx.lock_limiter(limiter_key("acme")) is None
    assert admission.peek("acme", ROOMY).remaining == 20


class UnavailableDatabase:
    """A records database whose server is down: every transaction fails to start."""

    url = "sqlite:///unreachable"
    backend = "sqlite"

    def transaction(self, *, write: bool = True) -> object:
        raise DatabaseUnavailable("the database is unavailable")


def test_fails_closed_by_default() -> None:
    admission = Admission(UnavailableDatabase())  # type: ignore[arg-type]
    with pytest.raises(DatabaseUnavailable):
        admission.admit("acme", FREE)


def test_fail_open_admits_when_the_database_is_down() -> None:
    admission = Admission(UnavailableDatabase(), fail_open=True)  # type: ignore[arg-type]
    ticket = admission.admit("acme", FREE)
    assert ticket.state.degraded
    assert ticket.lease_id == ""
    admission.release(ticket)  # nothing to release


def test_fail_open_does_not_hide_other_errors(database: Database) -> None:
    def broken(_: str) -> float:
        raise RuntimeError("bug")

    add_tenants(database, "acme", "globex")
    admission = Admission(database, fail_open=True, pending_compute=broken)
    with pytest.raises(RuntimeError, match="bug"):
        admission.admit("acme", FREE)


SF_ITEM = re.compile(r'^"[a-z]+"(;[a-z]+=\d+)+$')


def test_headers_follow_the_draft() -> None:
    state = RateLimitState(limit=100, remaining=7, reset_after=300.2, burst=20)
    headers = rate_limit_headers(state)
    assert headers == {
        "RateLimit-Policy": '"default";q=100;w=3600',
        "RateLimit": '"default";r=7;t=301',
        "X-RateLimit-Limit": "100",
        "X-RateLimit-Remaining": "7",
        "X-RateLimit-Reset": "301",
    }
    assert SF_ITEM.match(headers["RateLimit-Policy"])
    assert SF_ITEM.match(headers["RateLimit"])
    refused = RateLimitState(limit=100, remaining=0, reset_after=720, burst=20, retry_after=0.01)
    assert rate_limit_headers(refused)["Retry-After"] == "1"


def test_ticket_state_matches_what_peek_reports(admission: Admission, clock: Clock) -> None:
    ticket = admission.admit("acme", ROOMY, cost=3)
    assert ticket.state == admission.peek("acme", ROOMY)
    assert rate_limit_headers(ticket.state)["RateLimit"] == '"default";r=17;t=108'


def test_tier_downgrade_carries_what_was_used_over(admission: Admission) -> None:
    for _ in range(10):
        admission.release(admission.admit("acme", PRO))
    assert admit_until_refused(admission, FREE) == 10  # 10 of free's 20 used already


def test_tier_downgrade_below_what_was_used(admission: Admission) -> None:
    for _ in range(50):
        admission.release(admission.admit("acme", PRO))
    # 50 requests owed at free's 36 s each: a free request fits after 31 intervals
    with pytest.raises(RateLimitExceeded) as caught:
        admission.admit("acme", FREE)
    assert caught.value.retry_after == pytest.approx(31 * 36)


def test_a_quota_refusal_reports_the_unconsumed_rate(
    database: Database, admission: Admission, clock: Clock
) -> None:
    tier = Tier("q", 100, 20, 100, 1, 1, 1)
    admission.admit("acme", tier)
    with database.transaction() as tx:
        tx.record_usage([UsageEvent("r1", "acme", "f", 200, clock.now, clock.now, 5.0)])
    with pytest.raises(QuotaExceeded) as caught:
        admission.admit("acme", tier)
    headers = denial_headers(caught.value)
    assert headers["X-RateLimit-Remaining"] == "19"
    assert headers["Retry-After"] == "43200"


def test_admit_many_decides_like_admit_in_one_transaction(
    admission: Admission, clock: Clock
) -> None:
    tier = Tier("m", 100, 3, 2, 1e9, 1, 1)
    held = admission.admit("globex", tier)
    results = admission.admit_many(
        [
            ("acme", tier, 1, 60),
            ("globex", tier, 1, 60),
            ("acme", tier, 1, 60),
            ("acme", tier, 2, 60),  # only 1 left of acme's burst of 3: refused, consumes nothing
            ("globex", tier, 1, 60),  # globex: 2 leases in flight already
            ("acme", tier, 1, 60),  # acme: 2 leases in flight
        ],
        release=[held],
    )
    kinds = [type(r).__name__ for r in results]
    assert kinds == [
        "Ticket",
        "Ticket",
        "Ticket",
        "RateLimitExceeded",
        "ConcurrencyLimitExceeded",
        "ConcurrencyLimitExceeded",
    ]
    assert admission.peek("acme", tier).remaining == 1
    assert admission.peek("globex", tier).remaining == 1  # 3 - held - one admitted
    tickets = [r for r in results if not isinstance(r, Exception)]
    admission.release_many([*tickets, held])
    assert admission.status("acme", tier)["concurrency"]["in_flight"] == 0
    assert admission.status("globex", tier)["concurrency"]["in_flight"] == 0


def test_admit_many_fail_open() -> None:
    admission = Admission(UnavailableDatabase(), fail_open=True)  # type: ignore[arg-type]
    results = admission.admit_many([("acme", FREE, 1, 60), ("globex", FREE, 2, 60)])
    assert [r.state.degraded for r in results if not isinstance(r, Exception)] == [True, True]
    with pytest.raises(DatabaseUnavailable):
        Admission(UnavailableDatabase()).admit_many([("acme", FREE, 1, 60)])  # type: ignore[arg-type]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    max_concurrent=st.integers(min_value=1, max_value=4),
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("admit"), st.floats(min_value=1, max_value=100)),
            st.tuples(st.just("release"), st.integers(min_value=0, max_value=10)),
            st.tuples(st.just("wait"), st.floats(min_value=0, max_value=60)),
        ),
        max_size=40,
    ),
)
def test_leases_are_exact(
    database: Database, max_concurrent: int, ops: list[tuple[str, float]]
) -> None:
    """Admitted iff fewer than max_concurrent unexpired, unreleased leases are held."""
    tier = Tier("c", 10**6, 10**6, max_concurrent, 1e12, 1, 1)
    clock = Clock()
    admission = Admission(database, clock=clock)
    tenant = f"t-{uuid.uuid4()}"
    add_tenants(database, tenant)
    held: list[tuple[Ticket, float]] = []  # (ticket, expires_at)
    for op, value in ops:
        live = [(t, exp) for t, exp in held if exp > clock.now]
        if op == "admit":
            try:
                ticket = admission.admit(tenant, tier, lease_ttl=value)
            except ConcurrencyLimitExceeded:
                assert len(live) == max_concurrent
            else:
                assert len(live) < max_concurrent
                held.append((ticket, clock.now + value))
        elif op == "release" and held:
            ticket, _ = held.pop(int(value) % len(held))
            admission.release(ticket)
        else:
            clock.now += value


def stored_state(database: Database, tenant_id: str) -> tuple[float | None, int]:
    with database.transaction() as tx:
        return tx.lock_limiter(limiter_key(tenant_id)), tx.count_leases(tenant_id, 0.0)


def test_a_deleted_or_suspended_tenant_is_refused_and_nothing_is_written(
    database: Database, admission: Admission, clock: Clock
) -> None:
    with database.transaction() as tx:
        tx.delete_tenant("acme", now=clock.now)
    with pytest.raises(AuthenticationError):
        admission.admit("acme", ROOMY)
    assert stored_state(database, "acme") == (None, 0)

    with database.transaction() as tx:
        tx.update_tenant("globex", now=clock.now, status="suspended")
    with pytest.raises(TenantSuspended):
        admission.admit("globex", ROOMY)
    assert stored_state(database, "globex") == (None, 0)


def test_admit_many_returns_tenant_refusals_in_place(
    database: Database, admission: Admission, clock: Clock
) -> None:
    add_tenants(database, "initech")
    with database.transaction() as tx:
        tx.delete_tenant("acme", now=clock.now)
        tx.update_tenant("globex", now=clock.now, status="suspended")
    results = admission.admit_many(
        [("acme", ROOMY, 1, 60), ("initech", ROOMY, 1, 60), ("globex", ROOMY, 1, 60)]
    )
    assert isinstance(results[0], AuthenticationError)
    assert isinstance(results[1], Ticket)
    assert isinstance(results[2], TenantSuspended)
    assert stored_state(database, "acme") == (None, 0)
    assert stored_state(database, "globex") == (None, 0)
    assert stored_state(database, "initech")[1] == 1


def test_an_admission_holding_the_tenant_orders_a_deletion_after_it(
    database: Database, clock: Clock
) -> None:
    """Whichever commits first, a deleted tenant keeps no limiter row and no lease."""
    import threading

    from tenantkit.db import Lease

    add_tenants(database, "acme")
    deleted = threading.Event()

    def delete() -> None:
        with database.transaction() as tx:
            tx.delete_tenant("acme", now=clock.now)
        deleted.set()

    with database.transaction() as tx:  # an admission's transaction, mid-way
        assert tx.lock_tenant("acme") == "active"
        deleter = threading.Thread(target=delete)
        deleter.start()
        assert not deleted.wait(0.3)  # the deletion waits for this admission
        tx.set_limiter(limiter_key("acme"), clock.now)
        tx.add_lease(Lease("late", "acme", clock.now, clock.now + 60))
    deleter.join(timeout=30)
    assert deleted.is_set()
    assert stored_state(database, "acme") == (None, 0)
    with pytest.raises(AuthenticationError):
        Admission(database, clock=clock).admit("acme", ROOMY)
    assert stored_state(database, "acme") == (None, 0)
