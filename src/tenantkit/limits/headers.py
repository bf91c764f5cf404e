"""Rate-limit response headers.

Renders a :class:`~tenantkit.limits.RateLimitState` as the IETF
``RateLimit-Policy`` and ``RateLimit`` fields (draft-ietf-httpapi-ratelimit-headers-11,
both Structured Field Lists whose items are the policy name as a String with
parameters), the older ``X-RateLimit-*`` trio, and ``Retry-After`` when the
request was refused.

Example:
    >>> from tenantkit.limits.state import RateLimitState
    >>> state = RateLimitState(limit=100, remaining=19, reset_after=35.2, burst=20)
    >>> for name, value in rate_limit_headers(state).items():
    ...     print(f"{name}: {value}")
    RateLimit-Policy: "default";q=100;w=3600
    RateLimit: "default";r=19;t=36
    X-RateLimit-Limit: 100
    X-RateLimit-Remaining: 19
    X-RateLimit-Reset: 36
"""

from __future__ import annotations

import math

from tenantkit.errors import LimitExceeded
from tenantkit.limits.state import RateLimitState

__all__ = ["POLICY_NAME", "denial_headers", "rate_limit_headers", "retry_after_seconds"]

POLICY_NAME = "default"
"""The policy name the headers advertise (one policy per tenant: its tier's rate)."""

_STATE_ATTRIBUTE = "rate_limit_state"


def retry_after_seconds(seconds: float) -> int:
    """Seconds for ``Retry-After``: a non-negative integer, rounded up."""
    return max(0, math.ceil(seconds))


def rate_limit_headers(state: RateLimitState) -> dict[str, str]:
    """Headers describing ``state``.

    * ``RateLimit-Policy: "default";q=<requests per window>;w=<window seconds>``
    * ``RateLimit: "default";r=<remaining>;t=<seconds>``: while requests are
      left, ``t`` is the seconds until the full burst is back; when ``r`` is
      0, the seconds until the next request will be admitted (what a 429
      at that moment says in ``Retry-After``)
    * ``X-RateLimit-Limit``, ``X-RateLimit-Remaining``, ``X-RateLimit-Reset``
      (the same seconds as ``t``, not a timestamp)
    * ``Retry-After`` (integer seconds, rounded up) when ``state.retry_after`` is set.
    """
    reset = retry_after_seconds(state.next_after if state.exhausted else state.reset_after)
    headers = {
        "RateLimit-Policy": f'"{POLICY_NAME}";q={state.limit};w={state.window}',
        "RateLimit": f'"{POLICY_NAME}";r={state.remaining};t={reset}',
        "X-RateLimit-Limit": str(state.limit),
        "X-RateLimit-Remaining": str(state.remaining),
        "X-RateLimit-Reset": str(reset),
    }
    if state.retry_after is not None:
        headers["Retry-After"] = str(retry_after_seconds(state.retry_after))
    return headers


def attach_state(error: LimitExceeded, state: RateLimitState) -> LimitExceeded:
    """Remember the limiter state a refusal was decided with (for its headers)."""
    setattr(error, _STATE_ATTRIBUTE, state)
    return error


def denial_headers(error: LimitExceeded) -> dict[str, str]:
    """Headers for a 429 answer to ``error``.

    Refusals raised by :meth:`Admission.admit` carry the tenant's rate-limit
    state, so the answer has the full set; any other ``LimitExceeded`` gets
    ``Retry-After`` alone (when it knows one).
    """
    state = getattr(error, _STATE_ATTRIBUTE, None)
    if isinstance(state, RateLimitState):
        return rate_limit_headers(state)
    if error.retry_after is not None:
        return {"Retry-After": str(retry_after_seconds(error.retry_after))}
    return {}
