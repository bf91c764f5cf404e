"""Storage accounting: the counters quotas are checked against.

A ledger holds one tenant's stored bytes and files *plus what writes in
flight have reserved*. A write reserves before it writes a byte and gives
back what it did not use; a refused reservation changes nothing. Because
each reservation is one atomic check-and-add, writers racing each other can
never pass the quota together.

- :class:`DatabaseLedger` keeps the counters in the records database
  (``Transaction.adjust_storage``), exact across threads, processes and
  gateway containers, and records the ``storage_bytes`` and
  ``storage_files`` gauges for usage reports.
- :class:`MemoryLedger` keeps them in this process, seeded by scanning the
  backend. It is used without a database, and inside Modal containers
  (workers never write records): quotas then hold per process, so writers
  in several containers at once can together pass the quota by what they
  have in flight. The gateway's counters catch up with
  ``TenantStorage.recount()``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from tenantkit.db.base import Database, StorageUsage

__all__ = ["DatabaseLedger", "Ledger", "MemoryLedger"]


class Ledger(Protocol):
    """One tenant's storage counters, reserved and released atomically."""

    tenant_id: str

    def adjust(
        self,
        delta_bytes: int,
        delta_files: int,
        *,
        max_bytes: int | None = None,
        max_files: int | None = None,
    ) -> StorageUsage | None:
        """Add to the counters unless a positive delta would pass its maximum.

        Returns the new counters, or ``None`` (changing nothing) when refused.
        """

    def current(self) -> StorageUsage:
        """The counters now."""

    def reset(self, usage: StorageUsage) -> None:
        """Overwrite the counters (after a recount)."""


def _utc_day(ts: float) -> str:
    from tenantkit.db.sql import utc_day

    return utc_day(ts)


class DatabaseLedger:
    """Counters in the records database, plus the storage gauges.

    Args:
        db: The records database.
        tenant_id: Whose counters.
        clock: UNIX time source, for the gauge's day.
    """

    def __init__(
        self, db: Database, tenant_id: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.tenant_id = tenant_id
        self.clock = clock

    def adjust(
        self,
        delta_bytes: int,
        delta_files: int,
        *,
        max_bytes: int | None = None,
        max_files: int | None = None,
    ) -> StorageUsage | None:
        with self.db.transaction() as tx:
            usage = tx.adjust_storage(
                self.tenant_id,
                delta_bytes,
                delta_files,
                max_bytes=max_bytes,
                max_files=max_files,
            )
            if usage is not None and (delta_bytes or delta_files):
                self._gauges(tx, usage)
            return usage

    def current(self) -> StorageUsage:
        with self.db.transaction(write=False) as tx:
            return tx.storage_usage(self.tenant_id)

    def reset(self, usage: StorageUsage) -> None:
        with self.db.transaction() as tx:
            tx.set_storage_usage(usage)
            self._gauges(tx, usage)

    def _gauges(self, tx: Any, usage: StorageUsage) -> None:
        day = _utc_day(self.clock())
        tx.set_gauge(self.tenant_id, day, "storage_bytes", float(usage.bytes))
        tx.set_gauge(self.tenant_id, day, "storage_files", float(usage.files))


class MemoryLedger:
    """Counters in this process, seeded lazily by ``seed()`` (a backend scan).

    Pickles without its counters: a copy re-seeds where it lands.
    """

    def __init__(self, tenant_id: str, seed: Callable[[], tuple[int, int]]) -> None:
        self.tenant_id = tenant_id
        self._seed = seed
        self._lock = threading.Lock()
        self._usage: StorageUsage | None = None
        self._net = (0, 0)

    def __getstate__(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "seed": self._seed}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["tenant_id"], state["seed"])  # type: ignore[misc]

    def _loaded(self) -> StorageUsage:
        if self._usage is None:
            size, files = self._seed()
            self._usage = StorageUsage(self.tenant_id, size, files)
        return self._usage

    def adjust(
        self,
        delta_bytes: int,
        delta_files: int,
        *,
        max_bytes: int | None = None,
        max_files: int | None = None,
    ) -> StorageUsage | None:
        with self._lock:
            usage = self._loaded()
            size, files = usage.bytes + delta_bytes, usage.files + delta_files
            if max_bytes is not None and delta_bytes > 0 and size > max_bytes:
                return None
            if max_files is not None and delta_files > 0 and files > max_files:
                return None
            self._usage = StorageUsage(self.tenant_id, size, files)
            self._net = (self._net[0] + delta_bytes, self._net[1] + delta_files)
            return self._usage

    def net_change(self) -> tuple[int, int]:
        """Bytes and files added (negative: removed) through this ledger since
        it was created or unpickled, reservations in flight included."""
        with self._lock:
            return self._net

    def current(self) -> StorageUsage:
        with self._lock:
            return self._loaded()

    def reset(self, usage: StorageUsage) -> None:
        with self._lock:
            self._usage = usage
