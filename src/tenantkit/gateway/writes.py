"""One writer at a time per process, on a Python lock, for SQLite.

SQLite admits one write transaction at a time. When two threads of one
process collide (the admission thread and the usage meter's flush thread),
the loser waits in SQLite's busy handler, which sleeps in steps of 1, 2, 5,
10... ms: under load, that is a stall of every admission behind it. The
gateway hands its components this wrapper instead, so they take turns on a
lock that wakes the next writer as soon as the last commits. Other
processes still meet in SQLite's own lock, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from tenantkit.db import Database, Transaction

__all__ = ["SerializedWrites"]


class SerializedWrites:
    """A :class:`~tenantkit.db.Database` whose write transactions hold a process lock."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.url = db.url
        self.backend = db.backend
        self._lock = threading.RLock()

    def transaction(self, *, write: bool = True) -> AbstractContextManager[Transaction]:
        if not write:
            return self.db.transaction(write=False)
        return self._write()

    @contextmanager
    def _write(self) -> Iterator[Transaction]:
        with self._lock, self.db.transaction() as tx:
            yield tx

    def migrate(self) -> int:
        with self._lock:
            return self.db.migrate()

    def schema_version(self) -> int:
        return self.db.schema_version()

    def ping(self) -> bool:
        return self.db.ping()

    def close(self) -> None:
        self.db.close()

    def __repr__(self) -> str:
        return f"SerializedWrites({self.db!r})"
