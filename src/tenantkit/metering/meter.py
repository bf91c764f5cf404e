"""Buffered, idempotent usage recording that never drops an event.

The gateway records one :class:`~tenantkit.db.UsageEvent` per call. Writing
it to the database inside the request would put a transaction on every
call's critical path, so :class:`UsageMeter` keeps events in memory and a
background *flush thread* writes them with ``record_usage`` (idempotent by
request id), at most ``flush_chunk`` events per transaction so that no flush
holds the database's write lock for long, when:

* ``flush_interval`` seconds have passed,
* the buffer holds ``buffer_size`` events,
* the meter stops (``await meter.stop()`` / ``meter.close()``), and at
  interpreter exit while it is running.

Guarantees:

* **Nothing is dropped.** A full buffer applies back-pressure: ``record``
  waits (``await``, without blocking the event loop) and ``record_sync``
  blocks until a flush makes room.
* **Database outages are ridden out.** A failed flush puts the events it had
  not stored back at the front of the buffer and the thread retries with exponential backoff
  (up to ``max_backoff`` seconds); while the process lives, nothing is lost.
* **One event per request id.** A request id already buffered is ignored;
  one already stored is ignored by the database.
* ``pending_compute(tenant_id)`` is the compute seconds buffered but not yet
  committed, for the daily quota check (:class:`tenantkit.limits.Admission`).

Sync and async use: the flush thread serves both. In ``asyncio`` code use
``await meter.start()`` / ``await meter.record(e)`` / ``await meter.stop()``
(or ``async with meter:``); elsewhere ``meter.open()`` /
``meter.record_sync(e)`` / ``meter.close()`` (or ``with meter:``). Without a
running flush thread, a full buffer is flushed in the recording thread.

Example:
    >>> from tenantkit.db import UsageEvent, open_database
    >>> db = open_database("sqlite:///:memory:")
    >>> with UsageMeter(db, flush_interval=60) as meter:
    ...     meter.record_sync(UsageEvent("req-1", "acme", "embed", 200, 0.0, 1.5, 1.5))
    ...     meter.pending_compute("acme")
    1.5
    >>> with db.transaction() as tx:
    ...     tx.count_usage_events("acme")
    1
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
import time
from types import TracebackType
from typing import Any

from tenantkit.db import Database, UsageEvent
from tenantkit.errors import DatabaseUnavailable

__all__ = ["UsageMeter"]

logger = logging.getLogger("tenantkit.metering")


class UsageMeter:
    """Buffers usage events and writes them in batches off the request path.

    Args:
        db: The records database.
        flush_interval: Seconds between background flushes.
        buffer_size: Events buffered before ``record`` waits for a flush
            (also triggers a flush as soon as it is reached).
        max_backoff: Longest wait, in seconds, between retries while the
            database is unavailable.
        flush_chunk: Most events written in one transaction; a flush of more
            commits them in several, releasing the write lock in between.
    """

    def __init__(
        self,
        db: Database,
        *,
        flush_interval: float = 0.5,
        buffer_size: int = 10_000,
        max_backoff: float = 5.0,
        flush_chunk: int = 256,
    ) -> None:
        if flush_interval <= 0:
            raise ValueError("flush_interval must be positive")
        if buffer_size < 1:
            raise ValueError("buffer_size must be at least 1")
        if flush_chunk < 1:
            raise ValueError("flush_chunk must be at least 1")
        self.db = db
        self._interval = flush_interval
        self._size = buffer_size
        self._max_backoff = max_backoff
        self._chunk = flush_chunk
        self._cond = threading.Condition()
        self._flush_lock = threading.Lock()
        self._buffer: list[UsageEvent] = []
        self._ids: set[str] = set()  # request ids buffered or being flushed
        self._pending: dict[str, tuple[int, float]] = {}  # tenant -> (events, compute s)
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._recorded = 0
        self._stored = 0
        self._failed_flushes = 0

    # -- lifecycle ------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the flush thread is running."""
        return self._thread is not None

    def open(self) -> None:
        """Start the flush thread (idempotent)."""
        with self._cond:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name="tenantkit-usage-flush", daemon=True
            )
            self._thread.start()
        atexit.register(self._at_exit)

    def close(self, *, timeout: float = 30.0) -> None:
        """Stop the flush thread and store every buffered event.

        Retries while the database is unavailable, for up to ``timeout`` seconds.

        Raises:
            DatabaseUnavailable: events could not be stored in time; they stay
                buffered (call ``close`` or ``flush`` again).
        """
        with self._cond:
            thread, self._thread = self._thread, None
            self._stopping = True
            self._cond.notify_all()
        if thread is not None:
            thread.join()
            atexit.unregister(self._at_exit)
        self._wake_async_waiters()
        deadline = time.monotonic() + timeout
        delay = 0.05
        while self.buffered:
            try:
                self.flush()
            except Exception as exc:
                if time.monotonic() + delay > deadline:
                    raise DatabaseUnavailable(
                        f"{self.buffered} usage events could not be stored; they are still buffered"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, self._max_backoff)

    async def start(self) -> None:
        """Start the flush thread."""
        self.open()

    async def stop(self, *, timeout: float = 30.0) -> None:
        """Stop the flush thread and store every buffered event (see :meth:`close`)."""
        await asyncio.to_thread(self.close, timeout=timeout)

    def __enter__(self) -> UsageMeter:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> UsageMeter:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- recording ------------------------------------------------------------

    def _try_add(self, event: UsageEvent) -> bool:
        """Buffer ``event`` if there is room (or it is a duplicate). Holds the lock."""
        if event.request_id in self._ids:
            return True
        if len(self._buffer) >= self._size:
            self._cond.notify_all()  # wake the flush thread
            return False
        self._buffer.append(event)
        self._ids.add(event.request_id)
        count, seconds = self._pending.get(event.tenant_id, (0, 0.0))
        self._pending[event.tenant_id] = (count + 1, seconds + event.compute_seconds)
        self._recorded += 1
        if len(self._buffer) >= self._size:
            self._cond.notify_all()
        return True

    async def record(self, event: UsageEvent) -> None:
        """Buffer ``event``; when the buffer is full, wait for a flush (never drops)."""
        while True:
            future: asyncio.Future[None] | None = None
            with self._cond:
                if self._try_add(event):
                    return
                if self._thread is not None:
                    loop = asyncio.get_running_loop()
                    future = loop.create_future()
                    self._waiters.append((loop, future))
            if future is not None:
                await future
            else:
                await asyncio.to_thread(self.flush)

    def record_sync(self, event: UsageEvent) -> None:
        """Buffer ``event`` from synchronous code; blocks while the buffer is full."""
        while True:
            with self._cond:
                if self._try_add(event):
                    return
                if self._thread is not None:
                    self._cond.wait()
                    continue
            self.flush()

    # -- flushing -------------------------------------------------------------

    def flush(self) -> int:
        """Write every buffered event now; return how many were new to the database.

        Events are written ``flush_chunk`` at a time, one transaction each, so
        the database's write lock is released between chunks (on SQLite,
        admissions would otherwise queue behind one long transaction). Room
        freed by each committed chunk is handed to waiting writers at once.

        On failure the events not yet stored go back to the front of the
        buffer and the error propagates.
        """
        new = 0
        with self._flush_lock:
            with self._cond:
                batch, self._buffer = self._buffer, []
            for start in range(0, len(batch), self._chunk):
                chunk = batch[start : start + self._chunk]
                try:
                    with self.db.transaction() as tx:
                        stored = tx.record_usage(chunk)
                except BaseException:
                    with self._cond:
                        self._buffer[:0] = batch[start:]
                        self._failed_flushes += 1
                        self._cond.notify_all()
                    raise
                self._forget(chunk, stored)
                new += stored
                self._wake_async_waiters()
        return new

    def _forget(self, chunk: list[UsageEvent], stored: int) -> None:
        """Drop a committed chunk from the pending counters and wake writers."""
        with self._cond:
            for event in chunk:
                self._ids.discard(event.request_id)
                count, seconds = self._pending[event.tenant_id]
                if count == 1:
                    del self._pending[event.tenant_id]
                else:
                    self._pending[event.tenant_id] = (count - 1, seconds - event.compute_seconds)
            self._stored += stored
            self._cond.notify_all()

    def _wake_async_waiters(self) -> None:
        with self._cond:
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(_resolve, future)

    def _run(self) -> None:
        delay = 0.0  # > 0 while backing off after a failed flush
        while True:
            if self._wait_for_work(backing_off=delay > 0, timeout=delay or self._interval):
                return
            try:
                self.flush()
            except Exception:
                delay = min(max(delay * 2, 0.05), self._max_backoff)
                logger.warning(
                    "could not store usage events; %d kept in memory, retrying in %.2fs",
                    self.buffered,
                    delay,
                    exc_info=True,
                )
            else:
                delay = 0.0

    def _wait_for_work(self, *, backing_off: bool, timeout: float) -> bool:
        """Sleep until the next flush is due; return whether the meter is stopping.

        A full buffer cuts the sleep short, except while backing off after a
        failed flush (the database is unavailable: no point retrying at once).
        """
        with self._cond:
            self._cond.wait_for(
                lambda: self._stopping or (not backing_off and len(self._buffer) >= self._size),
                timeout=timeout,
            )
            return self._stopping

    def _at_exit(self) -> None:
        try:
            self.close(timeout=5.0)
        except Exception:
            logger.exception("usage events lost at exit")

    # -- introspection --------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Events waiting to be stored."""
        with self._cond:
            return len(self._buffer)

    def pending_compute(self, tenant_id: str) -> float:
        """Compute seconds of ``tenant_id``'s events not yet committed to the database."""
        with self._cond:
            return max(0.0, self._pending.get(tenant_id, (0, 0.0))[1])

    def stats(self) -> dict[str, Any]:
        """Counters: events ``recorded`` (distinct request ids accepted), ``stored``
        (new to the database), ``buffered``, ``failed_flushes``."""
        with self._cond:
            return {
                "recorded": self._recorded,
                "stored": self._stored,
                "buffered": len(self._buffer),
                "failed_flushes": self._failed_flushes,
            }


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
