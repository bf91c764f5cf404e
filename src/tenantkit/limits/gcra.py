"""The generic cell rate algorithm (GCRA), in exact integer microseconds.

A tier allows ``requests_per_hour`` sustained with bursts of up to ``burst``
back to back. GCRA keeps one number per tenant, the *theoretical arrival
time* (TAT): when the tenant's allowance would be fully spent if it kept
calling at the sustained rate. With the emission interval ``T = 3600 s /
requests_per_hour`` and the burst tolerance ``tau = (burst - 1) * T``, a
request of cost ``n`` arriving at ``now`` is admitted when::

    max(TAT, now) + n * T - now <= tau + T        # = burst * T

and then ``TAT := max(TAT, now) + n * T``. A denied request changes nothing.

Times are read from the clock and rounded to whole microseconds, and ``T`` is
rounded *up* to a whole microsecond, so every comparison is exact integer
arithmetic (no floating-point drift, however long the TAT has been running).

Bound (the property the tests check with Hypothesis):
    For any interval ``[t, t + W]`` of clock readings, the total cost admitted
    at times inside it is at most ``burst + floor(W / T)``.

Proof:
    Let the admissions inside the interval happen at ``s_1 <= ... <= s_k`` with
    costs ``n_1 ... n_k`` summing to ``N``. Each admission sets
    ``TAT_i = max(TAT_{i-1}, s_i) + n_i * T``, so ``TAT_k >= s_1 + N * T``.
    The last one was admitted, so ``TAT_k - s_k <= burst * T``. Hence
    ``s_1 + N * T <= s_k + burst * T <= s_1 + W + burst * T`` and
    ``N <= burst + W / T``; ``N`` is an integer, so ``N <= burst + floor(W / T)``.
    Rounding ``T`` up only makes ``W / T`` smaller, so the bound holds for the
    nominal ``T = 3600 / requests_per_hour`` too.

Example:
    >>> rate = GCRA.per_hour(100, burst=20)
    >>> d = rate.decide(None, now_us=0, cost=20)
    >>> d.allowed, d.remaining
    (True, 0)
    >>> rate.decide(d.tat_us, now_us=0, cost=1).retry_after_us / MICROS
    36.0
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GCRA", "MICROS", "Decision", "to_micros"]

MICROS = 1_000_000
"""Microseconds per second: the limiter's unit of time."""

HOUR_US = 3600 * MICROS


def to_micros(seconds: float) -> int:
    """A time in seconds as whole microseconds (rounded to the nearest)."""
    return round(seconds * MICROS)


@dataclass(frozen=True, slots=True)
class Decision:
    """What GCRA says about one request.

    Attributes:
        allowed: Whether the request is admitted.
        tat_us: The TAT to store if admitted (unchanged when denied).
        remaining: Requests of cost 1 that would be admitted right after this.
        reset_after_us: Microseconds until the full burst is available again.
        retry_after_us: When denied, microseconds until the same request would
            be admitted; ``None`` when it never can be (cost above the burst)
            or when it was admitted.
    """

    allowed: bool
    tat_us: int
    remaining: int
    reset_after_us: int
    retry_after_us: int | None


@dataclass(frozen=True, slots=True)
class GCRA:
    """One rate: an emission interval and a burst.

    Args:
        interval_us: Emission interval ``T`` in microseconds (at least 1).
        burst: Requests admitted back to back from idle (at least 1).
    """

    interval_us: int
    burst: int

    def __post_init__(self) -> None:
        if self.interval_us < 1 or self.burst < 1:
            raise ValueError("GCRA needs a positive interval and burst")

    @classmethod
    def per_hour(cls, requests_per_hour: int, *, burst: int) -> GCRA:
        """The GCRA for ``requests_per_hour`` sustained with ``burst``.

        ``T`` is rounded up to a whole microsecond (never faster than asked).
        """
        if requests_per_hour < 1:
            raise ValueError("requests_per_hour must be positive")
        return cls(-(-HOUR_US // requests_per_hour), burst)

    @property
    def tolerance_us(self) -> int:
        """Burst tolerance ``tau = (burst - 1) * T``."""
        return (self.burst - 1) * self.interval_us

    def wait_us(self, tat_us: int | None, now_us: int) -> int:
        """Microseconds until a request of cost 1 would be admitted (0: it would be now).

        Positive exactly when :meth:`remaining` is 0, and then equal to the
        ``retry_after_us`` a refused cost-1 request gets at ``now_us``.
        """
        backlog = 0 if tat_us is None else max(0, tat_us - now_us)
        return max(0, backlog - self.tolerance_us)

    def remaining(self, tat_us: int | None, now_us: int) -> int:
        """Requests of cost 1 that would be admitted at ``now_us``, back to back."""
        backlog = 0 if tat_us is None else max(0, tat_us - now_us)
        return max(0, (self.burst * self.interval_us - backlog) // self.interval_us)

    def decide(self, tat_us: int | None, now_us: int, cost: int = 1) -> Decision:
        """Decide a request of ``cost`` at ``now_us`` against the stored TAT.

        Args:
            tat_us: The stored TAT, or ``None`` for a limiter never used.
            now_us: The current time in microseconds.
            cost: Units the request consumes (a batch of ``n`` costs ``n``).
        """
        if cost < 1:
            raise ValueError("cost must be at least 1")
        start = now_us if tat_us is None else max(tat_us, now_us)
        new_tat = start + cost * self.interval_us
        allow_at = new_tat - self.burst * self.interval_us
        if cost <= self.burst and now_us >= allow_at:
            return Decision(
                allowed=True,
                tat_us=new_tat,
                remaining=self.remaining(new_tat, now_us),
                reset_after_us=new_tat - now_us,
                retry_after_us=None,
            )
        return Decision(
            allowed=False,
            tat_us=start,
            remaining=self.remaining(start, now_us),
            reset_after_us=start - now_us,
            retry_after_us=allow_at - now_us if cost <= self.burst else None,
        )
