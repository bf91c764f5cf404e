"""Retention: keep the usage event table from growing without bound.

Every recorded event is added to its tenant's daily totals (``usage_daily``)
in the same transaction that inserts it (``Transaction.record_usage``), so
pruning old events loses no billing data: usage reports for any day read the
daily totals, and they are the same before and after a prune::

    result = prune_usage(db, retention_days=90)
    print(result.deleted, "events older than", result.cutoff, "pruned")

What is lost with an event is its detail (request id, exact times) and its
idempotency: an event recorded again after its request id was pruned counts
again, so keep the retention well above how long a usage event can wait to be
recorded (seconds, normally).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenantkit.db.base import Database
from tenantkit.errors import ValidationError

__all__ = ["PruneResult", "prune_usage"]

DAY_SECONDS = 86_400.0


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What ``prune_usage`` did.

    Attributes:
        cutoff: Events that started before this UNIX time were pruned.
        deleted: How many events were deleted.
        retention_days: The retention used.
    """

    cutoff: float
    deleted: int
    retention_days: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff,
            "deleted": self.deleted,
            "retention_days": self.retention_days,
        }


def prune_usage(
    db: Database,
    *,
    retention_days: float,
    batch_size: int = 10_000,
    clock: Callable[[], float] = time.time,
) -> PruneResult:
    """Delete usage events older than ``retention_days``; daily totals stay.

    Deletes in transactions of at most ``batch_size`` events, so the gateway
    keeps recording usage while a large backlog is pruned.

    Args:
        db: The records database.
        retention_days: Age in days of the oldest event kept (e.g.
            ``Settings.usage_retention_days``).
        batch_size: Most events deleted per transaction.
        clock: Source of "now".

    Raises:
        ValidationError: for a retention that is not positive.
    """
    if not retention_days > 0:
        raise ValidationError(f"retention must be a positive number of days, not {retention_days}")
    if batch_size < 1:
        raise ValidationError(f"batch size must be at least 1, not {batch_size}")
    cutoff = clock() - retention_days * DAY_SECONDS
    deleted = 0
    while True:
        with db.transaction() as tx:
            n = tx.prune_usage_events(cutoff, limit=batch_size)
        deleted += n
        if n < batch_size:
            return PruneResult(cutoff, deleted, retention_days)
