"""Admission: may this tenant's call run now?

One decision is one write transaction on the records database, so it is exact
across threads and processes sharing that database (SQLite takes its write
lock at ``BEGIN IMMEDIATE``; PostgreSQL takes a transaction-scoped advisory
lock on the tenant's limiter key, which works before the limiter row exists).
Inside it, in this order:

0. **tenant**: the tenant row must still exist and be active (a primary-key
   lookup that also holds the row against a concurrent deletion on
   PostgreSQL), so a call whose key was verified just before its tenant was
   deleted or suspended writes no limiter state or lease afterwards;
1. **rate** (GCRA, see :mod:`tenantkit.limits.gcra`): the tier's
   ``requests_per_hour`` with bursts of ``burst``; a batch of ``n`` costs ``n``;
2. **daily compute quota**: compute seconds recorded for the tenant on the
   current UTC day, plus those still buffered by the usage meter, must be
   under the tier's ``compute_seconds_per_day``;
3. **concurrency**: fewer than ``max_concurrent`` unexpired leases.

Only when all three pass is anything written: the new TAT and a lease that
expires ``lease_ttl`` seconds later (so a crashed process never holds a slot
for longer than that). A refused request consumes nothing. Every step is a
keyed lookup, so the cost of a decision does not grow with the number of
tenants.

The rate bound of :mod:`tenantkit.limits.gcra` holds while a tenant's tier
stays the same. When the tier changes, what the tenant has used carries over
in requests: 20 used of free's burst of 20 leaves 80 of pro's 100 at once.

Example:
    >>> from tenantkit.config import Tier
    >>> from tenantkit.db import open_database
    >>> from tenantkit.db import Tenant
    >>> db = open_database("sqlite:///:memory:")
    >>> with db.transaction() as tx:
    ...     tx.create_tenant(Tenant("acme", "Acme", "tiny", "active", 0.0, 0.0))
    >>> tier = Tier("tiny", requests_per_hour=60, burst=2, max_concurrent=5,
    ...             compute_seconds_per_day=10, storage_bytes=1, max_files=1)
    >>> admission = Admission(db, clock=lambda: 1_000.0)
    >>> ticket = admission.admit("acme", tier)
    >>> ticket.state.remaining
    1
    >>> admission.release(ticket)
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from tenantkit.config import Tier
from tenantkit.db import Database, Lease, Transaction
from tenantkit.db.sql import utc_day
from tenantkit.errors import (
    AuthenticationError,
    ConcurrencyLimitExceeded,
    DatabaseUnavailable,
    LimitExceeded,
    QuotaExceeded,
    RateLimitExceeded,
    TenantKitError,
    TenantSuspended,
)
from tenantkit.limits.gcra import GCRA, MICROS, Decision, to_micros
from tenantkit.limits.headers import attach_state
from tenantkit.limits.state import RateLimitState, Ticket

__all__ = [
    "CONCURRENCY_RETRY_AFTER",
    "Admission",
    "AdmissionRequest",
    "interval_key",
    "limiter_key",
    "seconds_to_utc_midnight",
]

logger = logging.getLogger("tenantkit.limits")

WINDOW = 3600

AdmissionRequest = tuple[str, Tier, int, float]
"""``(tenant_id, tier, cost, lease_ttl)``: one call for :meth:`Admission.admit_many`."""
CONCURRENCY_RETRY_AFTER = 1.0
"""``Retry-After`` hint (seconds) when a tenant is at its concurrency limit."""


def limiter_key(tenant_id: str) -> str:
    """The records-database key holding a tenant's GCRA state (its TAT, in seconds)."""
    return f"rate:{tenant_id}"


def interval_key(tenant_id: str) -> str:
    """The key holding the emission interval (microseconds) the TAT was built with."""
    return f"rate:{tenant_id}:interval"


def _load_tat(tx: Transaction, tenant_id: str, gcra: GCRA, now_us: int) -> tuple[int | None, bool]:
    """The tenant's TAT in ``gcra``'s terms, and whether the stored interval differs.

    When the tier changed since the TAT was stored, the backlog is carried over
    in *requests*, not seconds: a tenant that used 20 of free's burst of 20 and
    upgrades to pro (burst 100) has 80 left at once.
    """
    stored = tx.lock_limiter(limiter_key(tenant_id))
    if stored is None:
        return None, True
    tat = to_micros(stored)
    old_interval = tx.lock_limiter(interval_key(tenant_id))
    if old_interval is None or round(old_interval) == gcra.interval_us:
        return tat, old_interval is None
    backlog = max(0, tat - now_us)
    rescaled = -(-backlog * gcra.interval_us // max(1, round(old_interval)))
    return now_us + rescaled, True


def _check_request(cost: int, lease_ttl: float) -> None:
    if cost < 1:
        raise ValueError("cost must be at least 1")
    if lease_ttl <= 0:
        raise ValueError("lease_ttl must be positive")


def seconds_to_utc_midnight(now: float) -> float:
    """Seconds from ``now`` until the next UTC day starts."""
    today = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today + timedelta(days=1)).timestamp() - now


def _state(
    tier: Tier, gcra: GCRA, decision: Decision, now_us: int, *, refused: bool
) -> RateLimitState:
    retry = decision.retry_after_us
    return RateLimitState(
        limit=tier.requests_per_hour,
        remaining=decision.remaining,
        reset_after=decision.reset_after_us / MICROS,
        window=WINDOW,
        burst=tier.burst,
        retry_after=None if not refused or retry is None else retry / MICROS,
        next_after=gcra.wait_us(decision.tat_us, now_us) / MICROS,
    )


class Admission:
    """Rate limits, the daily compute quota and concurrency leases, decided together.

    Args:
        db: The records database (shared by every gateway process).
        clock: UNIX time in seconds; injected in tests.
        fail_open: When the database is unavailable, admit anyway (with a
            ``degraded`` state) instead of raising ``DatabaseUnavailable``.
            Off by default: tenantkit fails closed. Other errors always raise.
        pending_compute: Compute seconds a tenant has used that are not in
            the database yet (``UsageMeter.pending_compute``), counted
            against the daily quota.
    """

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], float] = time.time,
        fail_open: bool = False,
        pending_compute: Callable[[str], float] | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._fail_open = fail_open
        self._pending_compute = pending_compute

    def admit(self, tenant_id: str, tier: Tier, *, cost: int = 1, lease_ttl: float = 600) -> Ticket:
        """Admit one call (or a batch of ``cost`` calls) now, or refuse it.

        Args:
            tenant_id: The caller's tenant.
            tier: The tenant's tier as of now (an upgrade applies at once).
            cost: Units of rate limit the call consumes (a batch's task count).
            lease_ttl: Seconds after which the concurrency lease lapses even
                if it is never released; make it longer than the call's timeout.

        Returns:
            A ticket holding the lease; pass it to :meth:`release`.

        Raises:
            RateLimitExceeded: over the rate (``retry_after`` says when the
                same call would pass; ``None`` if ``cost`` exceeds the burst).
            QuotaExceeded: the day's compute seconds are used up
                (``limit="compute-seconds-per-day"``, retry at UTC midnight).
            ConcurrencyLimitExceeded: ``max_concurrent`` calls already in flight.
            AuthenticationError: the tenant no longer exists (deleted since
                its key was verified).
            TenantSuspended: the tenant was suspended since.
            DatabaseUnavailable: the database cannot be reached (unless ``fail_open``).
        """
        _check_request(cost, lease_ttl)
        now = self._clock()
        try:
            with self._db.transaction() as tx:
                return self._decide(tx, tenant_id, tier, cost, lease_ttl, now)
        except DatabaseUnavailable:
            if not self._fail_open:
                raise
            logger.warning("records database unavailable: admitting %s unchecked", tenant_id)
            return Ticket(tenant_id, "", self._nominal(tier), cost)

    def admit_many(
        self,
        requests: Sequence[AdmissionRequest],
        *,
        release: Sequence[Ticket] = (),
    ) -> list[Ticket | TenantKitError]:
        """Decide several calls, and release finished ones, in ONE transaction.

        Each request is decided exactly as :meth:`admit` would, in order per
        tenant (requests of different tenants are independent); a refusal
        (a ``LimitExceeded``, or ``AuthenticationError`` / ``TenantSuspended``
        for a tenant deleted or suspended since its key was verified) is
        returned in its slot instead of raised, and consumes nothing. The
        ``release`` leases are removed after the decisions, so a slot freed
        in the same batch serves the next batch. Locks are taken in tenant-id
        order, so concurrent batches never deadlock on each other.

        Args:
            requests: ``(tenant_id, tier, cost, lease_ttl)`` for each call.
            release: Tickets whose calls have finished.

        Returns:
            For each request, in the order given, its ticket or its refusal.

        Raises:
            DatabaseUnavailable: as :meth:`admit` (with ``fail_open`` every
                request is admitted unchecked, and releases are left to expire).
        """
        for _, _, cost, lease_ttl in requests:
            _check_request(cost, lease_ttl)
        now = self._clock()
        order = sorted(range(len(requests)), key=lambda i: requests[i][0])
        results: list[Ticket | TenantKitError | None] = [None] * len(requests)
        try:
            with self._db.transaction() as tx:
                for i in order:
                    tenant_id, tier, cost, lease_ttl = requests[i]
                    try:
                        results[i] = self._decide(tx, tenant_id, tier, cost, lease_ttl, now)
                    except (LimitExceeded, AuthenticationError, TenantSuspended) as refusal:
                        results[i] = refusal
                for lease_id in sorted({t.lease_id for t in release if t.lease_id}):
                    tx.remove_lease(lease_id)
        except DatabaseUnavailable:
            if not self._fail_open:
                raise
            logger.warning(
                "records database unavailable: admitting %d calls unchecked", len(requests)
            )
            return [Ticket(t, "", self._nominal(tier), cost) for t, tier, cost, _ in requests]
        return [r for r in results if r is not None]

    def release_many(self, tickets: Sequence[Ticket]) -> None:
        """Release several tickets in one transaction (see :meth:`release`)."""
        lease_ids = sorted({t.lease_id for t in tickets if t.lease_id})
        if not lease_ids:
            return
        try:
            with self._db.transaction() as tx:
                for lease_id in lease_ids:
                    tx.remove_lease(lease_id)
        except DatabaseUnavailable:
            logger.warning("records database unavailable: %d leases left to expire", len(lease_ids))

    def _decide(
        self, tx: Transaction, tenant_id: str, tier: Tier, cost: int, lease_ttl: float, now: float
    ) -> Ticket:
        gcra = GCRA.per_hour(tier.requests_per_hour, burst=tier.burst)
        now_us = to_micros(now)
        tat, interval_changed = _load_tat(tx, tenant_id, gcra, now_us)
        # After the rate lock: admissions of one tenant already queue there, so
        # on PostgreSQL only one at a time holds the tenant row.
        status = tx.lock_tenant(tenant_id)
        if status is None:
            raise AuthenticationError("API key revoked or unknown")  # tenant deleted
        if status != "active":
            raise TenantSuspended(f"tenant {tenant_id!r} is suspended")
        decision = gcra.decide(tat, now_us, cost)
        if not decision.allowed:
            state = _state(tier, gcra, decision, now_us, refused=True)
            if state.retry_after is None:
                message = f"a call costing {cost} can never fit a burst of {tier.burst}"
            else:
                message = f"rate limit of {tier.requests_per_hour} requests per hour exceeded"
            raise attach_state(
                RateLimitExceeded(message, retry_after=state.retry_after, limit="requests"), state
            )
        unchanged = _current_state(tier, gcra, tat, now_us)

        used = tx.compute_seconds_on(tenant_id, utc_day(now))
        if self._pending_compute is not None:
            used += self._pending_compute(tenant_id)
        if used >= tier.compute_seconds_per_day:
            wait = seconds_to_utc_midnight(now)
            raise attach_state(
                QuotaExceeded(
                    f"daily compute quota of {tier.compute_seconds_per_day:g} seconds used up",
                    retry_after=wait,
                    limit="compute-seconds-per-day",
                ),
                replace(unchanged, retry_after=wait),
            )

        if tx.active_leases(tenant_id, now) >= tier.max_concurrent:
            raise attach_state(
                ConcurrencyLimitExceeded(
                    f"at most {tier.max_concurrent} concurrent calls allowed",
                    retry_after=CONCURRENCY_RETRY_AFTER,
                    limit="concurrency",
                ),
                replace(unchanged, retry_after=CONCURRENCY_RETRY_AFTER),
            )

        tx.set_limiter(limiter_key(tenant_id), decision.tat_us / MICROS)
        if interval_changed:
            tx.set_limiter(interval_key(tenant_id), float(gcra.interval_us))
        lease = Lease(secrets.token_hex(16), tenant_id, now, now + lease_ttl)
        tx.add_lease(lease)
        return Ticket(
            tenant_id, lease.id, _state(tier, gcra, decision, now_us, refused=False), cost
        )

    def release(self, ticket: Ticket) -> None:
        """Give the ticket's concurrency slot back (idempotent).

        If the database is unavailable the lease is left to expire on its own.
        """
        if not ticket.lease_id:
            return
        try:
            with self._db.transaction() as tx:
                tx.remove_lease(ticket.lease_id)
        except DatabaseUnavailable:
            logger.warning("records database unavailable: lease %s left to expire", ticket.lease_id)

    def peek(self, tenant_id: str, tier: Tier) -> RateLimitState:
        """The tenant's rate limit now, without consuming anything."""
        now_us = to_micros(self._clock())
        gcra = GCRA.per_hour(tier.requests_per_hour, burst=tier.burst)
        with self._db.transaction(write=False) as tx:  # a snapshot: never waits for writers
            tat, _ = _load_tat(tx, tenant_id, gcra, now_us)
        return _current_state(tier, gcra, tat, now_us)

    def status(self, tenant_id: str, tier: Tier) -> dict[str, Any]:
        """Every limit and what is left of it, JSON-ready (for ``GET /rate-limit``)."""
        now = self._clock()
        rate = self.peek(tenant_id, tier)
        with self._db.transaction(write=False) as tx:  # a snapshot: no write lock
            used = tx.compute_seconds_on(tenant_id, utc_day(now))
            in_flight = tx.count_leases(tenant_id, now)
        if self._pending_compute is not None:
            used += self._pending_compute(tenant_id)
        return {
            "tier": tier.name,
            "rate": rate.as_dict(),
            "compute_seconds_per_day": {
                "limit": tier.compute_seconds_per_day,
                "used": round(used, 6),
                "remaining": round(max(0.0, tier.compute_seconds_per_day - used), 6),
                "reset_after": round(seconds_to_utc_midnight(now), 3),
            },
            "concurrency": {"limit": tier.max_concurrent, "in_flight": in_flight},
        }

    @staticmethod
    def _nominal(tier: Tier) -> RateLimitState:
        return RateLimitState(
            limit=tier.requests_per_hour,
            remaining=tier.burst,
            reset_after=0.0,
            window=WINDOW,
            burst=tier.burst,
            degraded=True,
        )


def _current_state(tier: Tier, gcra: GCRA, tat_us: int | None, now_us: int) -> RateLimitState:
    backlog = 0 if tat_us is None else max(0, tat_us - now_us)
    return RateLimitState(
        limit=tier.requests_per_hour,
        remaining=gcra.remaining(tat_us, now_us),
        reset_after=backlog / MICROS,
        window=WINDOW,
        burst=tier.burst,
        next_after=gcra.wait_us(tat_us, now_us) / MICROS,
    )
