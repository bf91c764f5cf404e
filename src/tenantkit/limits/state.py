"""What a tenant's rate limit looks like at one moment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["RateLimitState", "Ticket"]


@dataclass(frozen=True, slots=True)
class RateLimitState:
    """A tenant's rate limit as of one decision.

    Attributes:
        limit: Sustained requests per ``window`` (the tier's requests per hour).
        remaining: Requests that would be admitted now, back to back.
        reset_after: Seconds until the full burst is available again.
        window: Seconds the ``limit`` is counted over (3600).
        burst: Requests admitted back to back from idle.
        retry_after: Seconds until a refused request can succeed; ``None``
            when the request was admitted (or waiting cannot help).
        degraded: The database was unavailable and the limiter failed open:
            nothing was checked and the numbers are nominal.
        next_after: Seconds until a request of cost 1 would be admitted;
            positive exactly when ``remaining`` is 0 (0 otherwise).
    """

    limit: int
    remaining: int
    reset_after: float
    window: int = 3600
    burst: int = 1
    retry_after: float | None = None
    degraded: bool = False
    next_after: float = 0.0

    @property
    def exhausted(self) -> bool:
        """Nothing is left now, and the state knows when the next request fits."""
        return self.remaining == 0 and self.next_after > 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``GET /rate-limit`` shows).

        ``retry_after`` is the refusal's own when there was one; otherwise,
        when ``remaining`` is 0, the seconds until the next request (cost 1)
        will be admitted, the same figure a 429 at this moment would carry;
        ``None`` while requests are left.
        """
        retry = self.retry_after
        if retry is None and self.exhausted:
            retry = self.next_after
        return {
            "limit": self.limit,
            "remaining": self.remaining,
            "reset_after": round(self.reset_after, 3),
            "window": self.window,
            "burst": self.burst,
            "retry_after": None if retry is None else round(retry, 3),
            "degraded": self.degraded,
        }


@dataclass(frozen=True, slots=True)
class Ticket:
    """An admitted call: hand it back to :meth:`Admission.release` when done.

    Attributes:
        tenant_id: The tenant admitted.
        lease_id: The concurrency lease held (``""`` when the limiter failed open).
        state: The rate limit right after this admission, for the headers.
        cost: Units the admission consumed.
    """

    tenant_id: str
    lease_id: str
    state: RateLimitState
    cost: int = 1
