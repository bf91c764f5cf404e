"""Group commit for admissions: many calls' admissions and releases, one transaction.

Each call needs one admission (a read-modify-write of the tenant's limiter
and leases) and, when it ends, one lease release. On SQLite every write
transaction serialises on the database's one write lock and pays its own
``BEGIN IMMEDIATE`` / ``COMMIT``; done once per call on the request path,
that is most of the gateway's cost. Here one thread takes every admission and
release of this process from a queue and applies whatever has queued up, in
order, inside a single transaction:

* decisions stay exact: they run one after another in the transaction, each
  seeing the writes of those before it, and other processes are held off by
  the same write lock as before;
* a release queued before an admission is applied before it (first in, first
  out), so a client that got its answer and calls again is never refused
  for a slot its previous call held;
* a refusal (429) writes nothing, so it never spoils the batch; any other
  error, or a failed ``BEGIN``/``COMMIT``, rolls the batch back and replays
  each operation in its own transaction, where the usual rules (fail closed
  with 503, or ``rate_limit_fail_open``) apply.

Only SQLite is batched; with PostgreSQL (row-level advisory locks, network
round trips) each operation runs directly in the calling thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from tenantkit.config import Tier
from tenantkit.db import Database, Transaction
from tenantkit.errors import LimitExceeded

if TYPE_CHECKING:
    from tenantkit.limits import Admission, Ticket

__all__ = ["AdmissionQueue", "GroupCommitDatabase"]

logger = logging.getLogger("tenantkit.gateway")


class GroupCommitDatabase:
    """A :class:`~tenantkit.db.Database` whose write transactions join the
    group transaction open in the current thread, if there is one."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.url = db.url
        self.backend = db.backend
        self._local = threading.local()

    @contextmanager
    def group(self) -> Iterator[Transaction]:
        """Open the group transaction for this thread."""
        with self.db.transaction() as tx:
            self._local.tx = tx
            try:
                yield tx
            finally:
                self._local.tx = None

    def transaction(self, *, write: bool = True) -> AbstractContextManager[Transaction]:
        tx: Transaction | None = getattr(self._local, "tx", None)
        if tx is not None and write:
            return _joined(tx)
        return self.db.transaction(write=write)

    def migrate(self) -> int:
        return self.db.migrate()

    def schema_version(self) -> int:
        return self.db.schema_version()

    def ping(self) -> bool:
        return self.db.ping()

    def close(self) -> None:
        self.db.close()


@contextmanager
def _joined(tx: Transaction) -> Iterator[Transaction]:
    yield tx  # commit and rollback belong to the group


class _Op:
    __slots__ = ("args", "fn", "future")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], future: Future[Any] | None):
        self.fn = fn
        self.args = args
        self.future = future


class AdmissionQueue:
    """Admits and releases calls through one thread, a batch per transaction.

    Args:
        admission: The admission rules; built on ``group_db`` for batching.
        group_db: The database ``admission`` uses; ``None`` disables batching
            (each call then runs directly in the caller's thread).
    """

    def __init__(self, admission: Admission, group_db: GroupCommitDatabase | None) -> None:
        self.admission = admission
        self.group_db = group_db
        self._cond = threading.Condition()
        self._queue: list[_Op] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.batches = 0
        self.operations = 0

    @property
    def batching(self) -> bool:
        return self.group_db is not None and self._thread is not None

    def start(self) -> None:
        if self.group_db is None:
            return
        with self._cond:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name="tenantkit-admission", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        """Apply what is queued and stop the thread."""
        with self._cond:
            thread, self._thread = self._thread, None
            self._stopping = True
            self._cond.notify_all()
        if thread is not None:
            thread.join()
        with self._cond:
            leftover, self._queue = self._queue, []
        self._apply_each(leftover)

    # -- the calls ---------------------------------------------------------------

    def _submit(self, fn: Callable[..., Any], args: tuple[Any, ...], wait: bool) -> Future[Any]:
        future: Future[Any] = Future()
        with self._cond:
            running = self._thread is not None
            if running:
                self._queue.append(_Op(fn, args, future if wait else None))
                self._cond.notify()
        if not running:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)
        elif not wait:
            future.set_result(None)
        return future

    def admit(self, tenant_id: str, tier: Tier, cost: int, lease_ttl: float) -> Ticket:
        """Admit one call, blocking this (worker) thread until it is decided."""
        if not self.batching:
            return self.admission.admit(tenant_id, tier, cost=cost, lease_ttl=lease_ttl)
        ticket: Ticket = self._submit(
            self._admit, (tenant_id, tier, cost, lease_ttl), True
        ).result()
        return ticket

    async def admit_async(self, tenant_id: str, tier: Tier, cost: int, lease_ttl: float) -> Ticket:
        """Admit one call from the event loop."""
        if not self.batching:
            return self.admission.admit(tenant_id, tier, cost=cost, lease_ttl=lease_ttl)
        future = self._submit(self._admit, (tenant_id, tier, cost, lease_ttl), True)
        ticket: Ticket = await asyncio.wrap_future(future)
        return ticket

    def release(self, ticket: Ticket) -> None:
        """Give the ticket's lease back (queued; applied before any later admission)."""
        if not ticket.lease_id:
            return
        if not self.batching:
            self.admission.release(ticket)
            return
        self._submit(self.admission.release, (ticket,), False)

    def _admit(self, tenant_id: str, tier: Tier, cost: int, lease_ttl: float) -> Ticket:
        return self.admission.admit(tenant_id, tier, cost=cost, lease_ttl=lease_ttl)

    # -- the thread -----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return
                batch, self._queue = self._queue, []
            self._apply(batch)

    def _apply(self, batch: list[_Op]) -> None:
        assert self.group_db is not None
        outcomes: list[tuple[bool, Any]] = []
        try:
            with self.group_db.group():
                for op in batch:
                    try:
                        outcomes.append((True, op.fn(*op.args)))
                    except LimitExceeded as exc:  # a refusal writes nothing
                        outcomes.append((False, exc))
        except Exception:
            logger.warning("group admission failed; replaying %d operations one by one", len(batch))
            self._apply_each(batch)
            return
        self.batches += 1
        self.operations += len(batch)
        for op, (ok, value) in zip(batch, outcomes, strict=True):
            if op.future is None:
                continue
            if ok:
                op.future.set_result(value)
            else:
                op.future.set_exception(value)

    def _apply_each(self, batch: list[_Op]) -> None:
        for op in batch:
            try:
                value = op.fn(*op.args)
            except BaseException as exc:
                if op.future is not None:
                    op.future.set_exception(exc)
                else:
                    logger.warning("could not release a lease; it will expire: %r", exc)
            else:
                if op.future is not None:
                    op.future.set_result(value)
