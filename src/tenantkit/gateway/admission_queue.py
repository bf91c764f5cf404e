"""Group commit for admissions: many calls' admissions and releases, one transaction.

Each call needs one admission (a read-modify-write of the tenant's limiter
and leases) and, when it ends, one lease release. Done once per call on the
request path, each in its own write transaction, that is most of the
gateway's cost. Here one thread per process takes every admission and
release from a queue and hands whatever has queued up to
:meth:`Admission.admit_many <tenantkit.limits.Admission.admit_many>`, which
decides them, and removes the finished leases, in a single transaction:

* decisions stay exact: ``admit_many`` decides each request as ``admit``
  would, in order, and other processes are held off by the database's locks;
* releases never wait: a finished call queues its ticket and returns;
* ``admit_many`` removes a batch's released leases after its decisions, so
  a concurrency refusal of a tenant that had a lease released in the same
  batch is decided again in the next batch (which sees the slot free):
  a client that got its answer and calls again is never refused for the
  slot its previous call held.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING

from tenantkit.config import Tier
from tenantkit.errors import ConcurrencyLimitExceeded, DatabaseUnavailable, TenantKitError

if TYPE_CHECKING:
    from tenantkit.limits import Admission, AdmissionRequest, Ticket

__all__ = ["AdmissionQueue"]

logger = logging.getLogger("tenantkit.gateway")


class AdmissionQueue:
    """Admits and releases calls through one thread, a batch per transaction.

    Before :meth:`start` (and after :meth:`close`) every call goes straight
    to ``admission`` in the caller's thread.

    Args:
        admission: The admission rules.
    """

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self._cond = threading.Condition()
        self._admits: list[tuple[AdmissionRequest, Future[Ticket]]] = []
        self._releases: list[Ticket] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.batches = 0
        self.decisions = 0

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        with self._cond:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name="tenantkit-admission", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        """Decide what is queued, release what is queued, and stop the thread."""
        with self._cond:
            thread = self._thread
            self._stopping = True
            self._cond.notify_all()
        if thread is not None:
            thread.join()
        with self._cond:
            self._thread = None

    # -- the calls ---------------------------------------------------------------

    def _enqueue(self, request: AdmissionRequest) -> Future[Ticket] | None:
        future: Future[Ticket] = Future()
        with self._cond:
            if self._thread is None or self._stopping:
                return None
            self._admits.append((request, future))
            self._cond.notify()
        return future

    def admit(self, tenant_id: str, tier: Tier, cost: int, lease_ttl: float) -> Ticket:
        """Admit one call, blocking this (worker) thread until it is decided.

        Raises:
            LimitExceeded: refused; AuthenticationError / TenantSuspended: the tenant was
                deleted or suspended since its key was verified; DatabaseUnavailable:
                as ``Admission.admit``.
        """
        future = self._enqueue((tenant_id, tier, cost, lease_ttl))
        if future is None:
            return self.admission.admit(tenant_id, tier, cost=cost, lease_ttl=lease_ttl)
        return future.result()

    async def admit_async(self, tenant_id: str, tier: Tier, cost: int, lease_ttl: float) -> Ticket:
        """Admit one call from the event loop."""
        future = self._enqueue((tenant_id, tier, cost, lease_ttl))
        if future is None:
            return self.admission.admit(tenant_id, tier, cost=cost, lease_ttl=lease_ttl)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            # the caller has gone; a ticket decided anyway goes straight back
            future.add_done_callback(self._release_orphan)
            raise

    def _release_orphan(self, future: Future[Ticket]) -> None:
        if not future.cancelled() and future.exception() is None:
            self.release(future.result())

    def release(self, ticket: Ticket) -> None:
        """Give the ticket's lease back: queued, applied with the next batch."""
        if not ticket.lease_id:
            return
        with self._cond:
            if self._thread is not None and not self._stopping:
                self._releases.append(ticket)
                self._cond.notify()
                return
        self.admission.release(ticket)

    # -- the thread -----------------------------------------------------------------

    def _run(self) -> None:
        retry: list[tuple[AdmissionRequest, Future[Ticket]]] = []
        while True:
            with self._cond:
                while not (self._admits or self._releases or retry or self._stopping):
                    self._cond.wait()
                if self._stopping and not (self._admits or self._releases or retry):
                    return
                admits = retry + self._admits
                releases = self._releases
                self._admits, self._releases = [], []
            try:
                retry = self._apply(admits, releases)
            except Exception:  # never let the thread die: every waiter would hang
                logger.exception("admission batch failed")
                for _, future in admits:
                    _settle(future, None, DatabaseUnavailable("admission failed"))
                retry = []

    def _apply(
        self,
        admits: list[tuple[AdmissionRequest, Future[Ticket]]],
        releases: list[Ticket],
    ) -> list[tuple[AdmissionRequest, Future[Ticket]]]:
        """One transaction; returns the admissions to decide again next batch."""
        if not admits:
            try:
                self.admission.release_many(releases)
            except Exception:
                logger.exception("could not release %d leases; they will expire", len(releases))
            return []
        try:
            results = self.admission.admit_many([r for r, _ in admits], release=releases)
        except Exception as exc:
            for _, future in admits:
                _settle(future, None, exc)
            return []
        self.batches += 1
        self.decisions += len(admits)
        freed = {t.tenant_id for t in releases}
        retry: list[tuple[AdmissionRequest, Future[Ticket]]] = []
        for (request, future), result in zip(admits, results, strict=True):
            if isinstance(result, ConcurrencyLimitExceeded) and request[0] in freed:
                retry.append((request, future))
            elif isinstance(result, TenantKitError):  # a limit, or the tenant gone since
                _settle(future, None, result)
            elif not _settle(future, result, None):
                self.release(result)  # its caller has gone: give the slot back
        return retry


def _settle(future: Future[Ticket], result: Ticket | None, error: BaseException | None) -> bool:
    """Resolve ``future``; ``False`` when its waiter has cancelled it."""
    if not future.set_running_or_notify_cancel():
        return False
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]
    return True
