"""Per-tenant limits: rate (GCRA), daily compute quota, concurrency leases, headers.

Everything is decided by :class:`Admission` in one records-database
transaction per call, so limits are exact across processes::

    admission = Admission(db, pending_compute=meter.pending_compute)
    ticket = admission.admit(tenant_id, tier)         # or raises a LimitExceeded
    try:
        ...                                           # run the call
    finally:
        admission.release(ticket)
    response.headers.update(rate_limit_headers(ticket.state))

This package knows nothing about HTTP frameworks; it renders header values
as plain strings.
"""

from __future__ import annotations

from tenantkit.limits.admission import (
    CONCURRENCY_RETRY_AFTER,
    Admission,
    AdmissionRequest,
    interval_key,
    limiter_key,
    seconds_to_utc_midnight,
)
from tenantkit.limits.gcra import GCRA, Decision
from tenantkit.limits.headers import denial_headers, rate_limit_headers, retry_after_seconds
from tenantkit.limits.state import RateLimitState, Ticket

__all__ = [
    "CONCURRENCY_RETRY_AFTER",
    "GCRA",
    "Admission",
    "AdmissionRequest",
    "Decision",
    "RateLimitState",
    "Ticket",
    "denial_headers",
    "interval_key",
    "limiter_key",
    "rate_limit_headers",
    "retry_after_seconds",
    "seconds_to_utc_midnight",
]
