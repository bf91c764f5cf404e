"""Retention: pruning old usage events never changes the daily totals."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenantkit.db import Database, UsageEvent
from tenantkit.db.maintenance import DAY_SECONDS, prune_usage
from tenantkit.db.sql import utc_day
from tenantkit.errors import ValidationError

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
SPAN_DAYS = 6

Totals = dict[str, dict[str, dict[str, dict[str, object]]]]

# Multiples of 1/8 add up exactly in binary floating point, whatever the order,
# so sums computed here must equal the database's exactly.
eighths = st.integers(min_value=0, max_value=800).map(lambda n: n / 8)

event_specs = st.fixed_dictionaries(
    {
        "request": st.integers(min_value=0, max_value=60),  # collisions: idempotency
        "tenant": st.sampled_from(["t1", "t2", "t3"]),
        "function": st.sampled_from(["embed", "chat"]),
        "status": st.sampled_from([200, 201, 400, 429, 500]),
        "started_at": st.floats(min_value=T0, max_value=T0 + SPAN_DAYS * DAY_SECONDS),
        "compute_seconds": eighths,
        "gpu_seconds": eighths,
        "bytes_in": st.integers(min_value=0, max_value=2**40),
        "bytes_out": st.integers(min_value=0, max_value=2**40),
    }
)


def totals_from(events: list[UsageEvent]) -> Totals:
    """Expected ``{tenant: {day: {function: totals}}}`` computed from the events."""
    sums: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0, 0, 0.0, 0.0, 0, 0])
    for e in events:
        s = sums[(e.tenant_id, utc_day(e.started_at), e.function)]
        s[0] += 1
        s[1] += 0 if e.ok else 1
        s[2] += e.compute_seconds
        s[3] += e.gpu_seconds
        s[4] += e.bytes_in
        s[5] += e.bytes_out
    result: Totals = {}
    names = ("requests", "errors", "compute_seconds", "gpu_seconds", "bytes_in", "bytes_out")
    for (tenant, day, function), values in sums.items():
        result.setdefault(tenant, {}).setdefault(day, {})[function] = dict(
            zip(names, values, strict=True)
        )
    return result


def totals_in(db: Database, tenants: list[str]) -> Totals:
    result = {}
    with db.transaction(write=False) as tx:
        for tenant in tenants:
            days = tx.usage_totals(tenant, "2025-12-31", "2026-01-31")
            if days:
                result[tenant] = {
                    day: {fn: t.as_dict() for fn, t in fns.items()} for day, fns in days.items()
                }
    return result


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    batches=st.lists(st.lists(event_specs, max_size=25), min_size=1, max_size=4),
    retention_days=st.floats(min_value=0.01, max_value=SPAN_DAYS + 1),
    now_offset_days=st.floats(min_value=0, max_value=SPAN_DAYS + 2),
    batch_size=st.integers(min_value=1, max_value=50),
)
def test_pruning_keeps_totals_equal(
    database: Database,
    batches: list[list[dict[str, Any]]],
    retention_days: float,
    now_offset_days: float,
    batch_size: int,
) -> None:
    # Examples share the database: each one gets its own tenants and request ids.
    run = uuid.uuid4().hex[:8]
    first_seen: dict[str, UsageEvent] = {}
    for batch in batches:
        events = [
            UsageEvent(
                request_id=f"{run}-{spec['request']}",
                tenant_id=f"{run}-{spec['tenant']}",
                function=str(spec["function"]),
                status=int(spec["status"]),
                started_at=float(spec["started_at"]),
                ended_at=float(spec["started_at"]) + 1,
                compute_seconds=float(spec["compute_seconds"]),
                gpu_seconds=float(spec["gpu_seconds"]),
                bytes_in=int(spec["bytes_in"]),
                bytes_out=int(spec["bytes_out"]),
            )
            for spec in batch
        ]
        with database.transaction() as tx:
            new = tx.record_usage(events)
        fresh = {}
        for e in events:
            if e.request_id not in first_seen and e.request_id not in fresh:
                fresh[e.request_id] = e
        assert new == len(fresh)
        first_seen.update(fresh)

    tenants = [f"{run}-{t}" for t in ("t1", "t2", "t3")]
    kept = list(first_seen.values())
    before = totals_in(database, tenants)
    assert before == totals_from(kept)

    now = T0 + now_offset_days * DAY_SECONDS
    cutoff = now - retention_days * DAY_SECONDS
    with database.transaction(write=False) as tx:
        others_before = tx.count_usage_events() - len(kept)
    result = prune_usage(
        database, retention_days=retention_days, batch_size=batch_size, clock=lambda: now
    )
    assert result.cutoff == cutoff

    assert totals_in(database, tenants) == before
    survivors = sorted(e.request_id for e in kept if e.started_at >= cutoff)
    with database.transaction(write=False) as tx:
        left = sorted(
            e.request_id
            for tenant in tenants
            for e in tx.usage_events(tenant, 0, T0 + 10 * SPAN_DAYS * DAY_SECONDS)
        )
        remaining_total = tx.count_usage_events()
    assert left == survivors
    # earlier examples' events (all older than this cutoff, or not) are pruned too
    assert result.deleted == len(kept) - len(survivors) + others_before - (
        remaining_total - len(survivors)
    )


@pytest.mark.parametrize("days", [0, -1, float("nan")])
def test_retention_must_be_positive(database: Database, days: float) -> None:
    with pytest.raises(ValidationError, match="positive"):
        prune_usage(database, retention_days=days)
