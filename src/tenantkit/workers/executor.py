"""Running tenant functions: the result envelope and the executors.

An executor runs one call and returns an :class:`Envelope`: the value or the
error's type name, whether it timed out, and the compute seconds measured
around the user's function alone (not the gateway's work). Workers never
write records; the gateway meters what the envelope says.

* :class:`LocalExecutor` runs sync functions in a thread pool and async ones
  on the event loop, stopping waiting at the function's ``timeout``.
* ``tenantkit.deploy.ModalExecutor`` runs them in Modal containers, where
  :func:`run_in_envelope` does the measuring.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from tenantkit.errors import TenantKitError
from tenantkit.workers.context import TenantContext
from tenantkit.workers.function import TenantFunction

__all__ = ["Envelope", "Executor", "LocalExecutor", "caller_problem", "run_in_envelope"]

logger = logging.getLogger("tenantkit.workers")


@dataclass(slots=True)
class Envelope:
    """One call's outcome, as the worker measured it.

    Attributes:
        value: The function's return value (``None`` on error).
        error: The exception's type name only, never its message.
        timed_out: Whether the call ran past its timeout.
        compute_seconds: Seconds spent inside the user's function.
        gpu_type: GPU the call ran on (``None`` without one).
        gpu_count: GPUs the call held.
        problem: For a function that raised a tenantkit error meant for the
            caller (a 4xx such as ``ValidationError("...")``): its status, code,
            title and message, shown to the client as is. ``None`` otherwise.
        storage_change: Bytes and files the call added to the tenant's
            storage (negative: removed) that the gateway's counters have not
            seen: a worker in another process (a Modal container) counts its
            writes in a ledger of its own and reports the net change here,
            for the gateway to apply. ``None`` when there is nothing to apply
            (local calls count in the records database directly).
    """

    value: Any = None
    error: str | None = None
    timed_out: bool = False
    compute_seconds: float = 0.0
    gpu_type: str | None = None
    gpu_count: int = 0
    problem: dict[str, Any] | None = None
    storage_change: tuple[int, int] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out

    @property
    def gpu_seconds(self) -> float:
        return self.compute_seconds * self.gpu_count if self.gpu_type else 0.0


@runtime_checkable
class Executor(Protocol):
    """Runs a tenant function call somewhere and reports an :class:`Envelope`."""

    async def run(
        self, function: TenantFunction, arguments: dict[str, Any], ctx: TenantContext
    ) -> Envelope: ...


def run_in_envelope(
    function: TenantFunction,
    arguments: dict[str, Any],
    ctx: TenantContext,
    *,
    gpu_type: str | None = None,
    gpu_count: int = 0,
) -> Envelope:
    """Call ``function`` here and now, with its retries, and measure it.

    Exceptions are logged with the request id and reduced to their type name.

    Args:
        gpu_type: GPU this process runs on (``None`` locally).
        gpu_count: GPUs this process holds.
    """
    attempts = function.options.retries + 1
    compute = 0.0
    error: str | None = None
    for attempt in range(attempts):
        start = time.perf_counter()
        try:
            value = function.invoke(arguments, ctx)
        except Exception as exc:
            compute += time.perf_counter() - start
            problem = caller_problem(exc)
            if problem is not None:
                return Envelope(
                    error=type(exc).__name__,
                    compute_seconds=compute,
                    gpu_type=gpu_type,
                    gpu_count=gpu_count,
                    problem=problem,
                )
            error = type(exc).__name__
            _log_failed_attempt(function, ctx, attempt, attempts)
            continue
        compute += time.perf_counter() - start
        return Envelope(
            value=value, compute_seconds=compute, gpu_type=gpu_type, gpu_count=gpu_count
        )
    return Envelope(error=error, compute_seconds=compute, gpu_type=gpu_type, gpu_count=gpu_count)


def _log_failed_attempt(
    function: TenantFunction, ctx: TenantContext, attempt: int, attempts: int
) -> None:
    """Log the exception being handled as ``function``'s failed ``attempt`` (from 0)."""
    logger.exception(
        "tenant function %r failed (request %s, attempt %d of %d)",
        function.name,
        ctx.request_id,
        attempt + 1,
        attempts,
    )


def _log_timeout(function: TenantFunction, ctx: TenantContext, timeout: float) -> None:
    logger.warning(
        "tenant function %r timed out after %ss (request %s)",
        function.name,
        timeout,
        ctx.request_id,
    )


def caller_problem(exc: BaseException) -> dict[str, Any] | None:
    """A tenantkit 4xx error raised on purpose by a function, as problem members."""
    if isinstance(exc, TenantKitError) and 400 <= exc.status < 500:
        return {
            "status": exc.status,
            "code": exc.code,
            "title": exc.title,
            "detail": str(exc) or exc.title,
            "extras": exc.problem_extras(),
        }
    return None


class _Clock:
    __slots__ = ("started",)

    def __init__(self) -> None:
        self.started: float | None = None


class LocalExecutor:
    """Runs calls in this process: sync functions in a thread pool, async ones
    on the event loop, each stopped waiting for at its ``timeout``.

    A sync call that times out keeps its thread until it returns (Python
    cannot kill a thread), but the client gets its 504 at the timeout.

    Args:
        max_workers: Threads for sync functions (default: 40, as Starlette's
            thread pool for sync routes).
    """

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = max_workers or 40
        self._pool: ThreadPoolExecutor | None = None

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="tenantkit")
        return self._pool

    async def run(
        self,
        function: TenantFunction,
        arguments: dict[str, Any],
        ctx: TenantContext,
        *,
        finish: Callable[[], None] | None = None,
    ) -> Envelope:
        """Run one call.

        Args:
            finish: Called once the function has returned (or raised), in the
                thread that ran it, even after the caller stopped waiting at
                the timeout; the gateway releases the call's lease there.
                For async functions it is called when the call ends.
        """
        timeout = function.options.timeout
        if function.is_async:
            try:
                return await self._run_async(function, arguments, ctx, timeout)
            finally:
                if finish is not None:
                    finish()
        clock = _Clock()

        def call() -> Envelope:
            clock.started = time.perf_counter()
            try:
                return run_in_envelope(function, arguments, ctx)
            finally:
                if finish is not None:
                    finish()

        try:
            submitted = self._executor().submit(call)
        except BaseException:
            if finish is not None:
                finish()
            raise
        future = asyncio.wrap_future(submitted)
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            started = clock.started
            elapsed = 0.0 if started is None else time.perf_counter() - started
            _log_timeout(function, ctx, timeout)
            return Envelope(error="FunctionTimeout", timed_out=True, compute_seconds=elapsed)
        finally:
            # A call still queued for a thread will never run now: finish it here.
            if finish is not None and submitted.cancel():
                finish()

    async def _run_async(
        self,
        function: TenantFunction,
        arguments: dict[str, Any],
        ctx: TenantContext,
        timeout: float,
    ) -> Envelope:
        attempts = function.options.retries + 1
        compute = 0.0
        error: str | None = None
        for attempt in range(attempts):
            start = time.perf_counter()
            try:
                value = await asyncio.wait_for(function.ainvoke(arguments, ctx), timeout)
            except TimeoutError:
                compute += time.perf_counter() - start
                _log_timeout(function, ctx, timeout)
                return Envelope(error="FunctionTimeout", timed_out=True, compute_seconds=compute)
            except Exception as exc:
                compute += time.perf_counter() - start
                problem = caller_problem(exc)
                if problem is not None:
                    return Envelope(
                        error=type(exc).__name__, compute_seconds=compute, problem=problem
                    )
                error = type(exc).__name__
                _log_failed_attempt(function, ctx, attempt, attempts)
                continue
            compute += time.perf_counter() - start
            return Envelope(value=value, compute_seconds=compute)
        return Envelope(error=error, compute_seconds=compute)

    def close(self) -> None:
        """Stop the thread pool (calls still running finish in the background)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
