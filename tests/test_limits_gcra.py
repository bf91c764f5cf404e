"""GCRA: the exact bound, as a property over random arrival sequences."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenantkit.config import Tier
from tenantkit.db import Database
from tenantkit.errors import RateLimitExceeded
from tenantkit.limits import GCRA, Admission
from tenantkit.limits.gcra import HOUR_US, MICROS
from tests.dbutil import add_tenants

BASE_US = 1_764_800_000 * MICROS  # a realistic UNIX time, in microseconds

rates = st.integers(min_value=1, max_value=100_000)
bursts = st.integers(min_value=1, max_value=50)
# arrivals: (gap since the previous arrival in microseconds, cost)
arrivals = st.lists(
    st.tuples(
        st.one_of(
            st.just(0),
            st.integers(min_value=0, max_value=10 * MICROS),
            st.integers(min_value=0, max_value=2 * HOUR_US),
        ),
        st.integers(min_value=1, max_value=8),
    ),
    min_size=1,
    max_size=120,
)


def bound(burst: int, requests_per_hour: int, window_us: int) -> int:
    """``burst + floor(W / T)`` with the nominal ``T = 3600 s / requests_per_hour``, exactly."""
    interval_us = Fraction(HOUR_US, requests_per_hour)
    return burst + int(Fraction(window_us) // interval_us)


def assert_within_bound(
    admitted: Sequence[tuple[int, int]], burst: int, requests_per_hour: int
) -> None:
    """Every interval between two admissions holds at most the bound's cost.

    The worst interval of any length starts and ends at admissions, so checking
    those pairs checks every interval ``[t, t + W]``.
    """
    prefix = [0, *itertools.accumulate(cost for _, cost in admitted)]
    for i in range(len(admitted)):
        for j in range(i, len(admitted)):
            total = prefix[j + 1] - prefix[i]
            window = admitted[j][0] - admitted[i][0]
            assert total <= bound(burst, requests_per_hour, window), (i, j, total, window)


@settings(max_examples=400, deadline=None)
@given(rate=rates, burst=bursts, sequence=arrivals)
def test_admitted_never_exceeds_the_bound(
    rate: int, burst: int, sequence: list[tuple[int, int]]
) -> None:
    gcra = GCRA.per_hour(rate, burst=burst)
    tat: int | None = None
    now = BASE_US
    admitted: list[tuple[int, int]] = []
    for gap, cost in sequence:
        now += gap
        decision = gcra.decide(tat, now, cost)
        if decision.allowed:
            tat = decision.tat_us
            admitted.append((now, cost))
        else:
            # refused: nothing changes, and waiting retry_after is enough
            assert decision.tat_us == (now if tat is None else max(tat, now))
            if cost > burst:
                assert decision.retry_after_us is None
            else:
                assert decision.retry_after_us is not None
                assert decision.retry_after_us > 0
                later = gcra.decide(tat, now + decision.retry_after_us, cost)
                assert later.allowed
                assert not gcra.decide(tat, now + decision.retry_after_us - 1, cost).allowed
    assert_within_bound(admitted, burst, rate)


@given(rate=rates, burst=bursts)
def test_a_full_burst_is_admitted_from_idle_and_no_more(rate: int, burst: int) -> None:
    gcra = GCRA.per_hour(rate, burst=burst)
    tat = None
    for expected_remaining in range(burst - 1, -1, -1):
        decision = gcra.decide(tat, BASE_US, 1)
        assert decision.allowed
        assert decision.remaining == expected_remaining
        tat = decision.tat_us
    refused = gcra.decide(tat, BASE_US, 1)
    assert not refused.allowed
    assert refused.retry_after_us == gcra.interval_us


def test_interval_rounds_up_to_a_whole_microsecond() -> None:
    assert GCRA.per_hour(100, burst=1).interval_us == 36 * MICROS
    assert GCRA.per_hour(7, burst=1).interval_us == 514_285_715  # 514.2857142... s


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (1, 0)])
def test_invalid_rates_are_refused(rate: int, burst: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        GCRA.per_hour(rate, burst=burst)


class FakeClock:
    """An injected clock: microseconds since ``BASE_US``, read as UNIX seconds."""

    def __init__(self) -> None:
        self.us = BASE_US

    def __call__(self) -> float:
        return self.us / MICROS


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rate=st.integers(min_value=1, max_value=10_000),
    burst=st.integers(min_value=1, max_value=12),
    sequence=arrivals,
)
def test_admission_keeps_the_bound_through_the_database(
    database: Database, rate: int, burst: int, sequence: list[tuple[int, int]]
) -> None:
    tier = Tier("t", rate, burst, 10_000, 1e12, 1, 1)
    clock = FakeClock()
    admission = Admission(database, clock=clock)
    tenant_id = f"t-{uuid.uuid4()}"  # a fresh tenant per example: the database persists
    add_tenants(database, tenant_id)
    admitted: list[tuple[int, int]] = []
    for gap, cost in sequence:
        clock.us += gap
        try:
            ticket = admission.admit(tenant_id, tier, cost=cost)
        except RateLimitExceeded:
            continue
        admission.release(ticket)
        admitted.append((clock.us, cost))
    assert_within_bound(admitted, burst, rate)


@settings(max_examples=300, deadline=None)
@given(rate=rates, burst=bursts, sequence=arrivals)
def test_wait_is_positive_exactly_when_nothing_remains_and_matches_the_refusal(
    rate: int, burst: int, sequence: Sequence[tuple[int, int]]
) -> None:
    gcra = GCRA.per_hour(rate, burst=burst)
    tat: int | None = None
    now = BASE_US
    for gap, cost in sequence:
        now += gap
        decision = gcra.decide(tat, now, cost)
        if decision.allowed:
            tat = decision.tat_us
        wait = gcra.wait_us(tat, now)
        assert (wait > 0) == (gcra.remaining(tat, now) == 0)
        single = gcra.decide(tat, now, 1)
        if wait > 0:
            assert not single.allowed
            assert single.retry_after_us == wait
            assert gcra.decide(tat, now + wait, 1).allowed
        else:
            assert single.allowed
