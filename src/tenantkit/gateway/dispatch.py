"""One call of a tenant function through the gateway: check, admit, run, meter.

The order is fixed: authenticate (401/403), tier and scope gating (403),
validate the arguments (413/422), admit in one database transaction (429),
run (500/504), release the lease, record one usage event. Nothing after the
admission touches the database on the request path: the usage event goes to
the meter's buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import Request
from pydantic_core import from_json
from starlette.responses import Response

from tenantkit.db import UsageEvent
from tenantkit.errors import (
    FunctionFailed,
    FunctionNotFound,
    FunctionTimeout,
    LimitExceeded,
    TenantKitError,
    TierNotAllowed,
)
from tenantkit.gateway.deps import (
    RequestContext,
    authenticate_request,
    set_rate_limit_headers,
)
from tenantkit.gateway.encoding import encode_json
from tenantkit.gateway.problems import problem_body, problem_response, public_detail
from tenantkit.limits import Ticket, denial_headers, rate_limit_headers
from tenantkit.workers import Envelope, InvalidArguments, LocalExecutor, TenantFunction
from tenantkit.workers.function import may_hold_non_finite

__all__ = [
    "call_batch",
    "call_function",
    "call_process",
    "unknown_function",
]

logger = logging.getLogger("tenantkit.gateway")

LEASE_GRACE = 60.0


def check_access(rc: RequestContext, function: TenantFunction) -> None:
    """Tier gating and key scopes for one function (403)."""
    allowed = function.options.tiers
    if allowed is not None and rc.tier.name not in allowed:
        tiers = ", ".join(sorted(allowed))
        raise TierNotAllowed(
            f"function {function.name!r} is available on the {tiers} tier(s), "
            f"not on {rc.tier.name!r}"
        )
    rc.require_scope(f"functions:{function.name}")


def parse_json(body: bytes) -> Any:
    """Parse a JSON body, answering 422 when it is not JSON."""
    if not body.strip():
        return None
    try:
        return from_json(body)
    except ValueError:
        raise InvalidArguments(
            "the request body is not valid JSON",
            [{"loc": ["body"], "msg": "Invalid JSON", "type": "json_invalid"}],
        ) from None


def _lookup(rc: RequestContext, name: Any, loc: list[Any]) -> TenantFunction:
    """The function a ``task_type`` names: 422 when it is not a string, 404 when unknown."""
    if not isinstance(name, str):
        raise InvalidArguments(
            "task_type must be a string: the name of a function",
            [{"loc": loc, "msg": "Input should be a valid string", "type": "string_type"}],
        )
    function = rc.services.app.get(name)
    if function is None:
        raise FunctionNotFound(f"no tenant function named {name[:100]!r}")
    return function


def _admit_now(rc: RequestContext, cost: int, ttl: float) -> Ticket:
    """Admit in this (worker) thread; batched with other calls' admissions."""
    return rc.services.admissions.admit(rc.tenant_id, rc.tier, cost, ttl)


def _release_now(rc: RequestContext, ticket: Ticket) -> None:
    rc.services.admissions.release(ticket)


async def _admit(rc: RequestContext, cost: int, timeout: float) -> Ticket:
    """The call's admission, from the event loop (429 when refused)."""
    services = rc.services
    ttl = timeout + LEASE_GRACE
    if services.admissions.running:
        return await services.admissions.admit_async(rc.tenant_id, rc.tier, cost, ttl)
    return await services.db_call(_admit_now, rc, cost, ttl)


async def _release(rc: RequestContext, ticket: Ticket) -> None:
    services = rc.services
    if services.admissions.running:
        services.admissions.release(ticket)  # queued, never waits
    else:
        await services.db_call(_release_now, rc, ticket)


async def _execute(
    rc: RequestContext, function: TenantFunction, arguments: dict[str, Any]
) -> tuple[Envelope, Ticket]:
    """Admit, run and release one call.

    With the local executor and a sync function, the release is queued from
    the worker thread the moment the function returns (even after a timeout
    answered the client), so the lease is held exactly as long as the
    function runs. Elsewhere (async functions, remote executors) it is queued
    when the call ends.
    """
    services = rc.services
    executor = services.executor
    ctx = rc.context()
    ticket = await _admit(rc, 1, function.options.timeout)
    if isinstance(executor, LocalExecutor) and not function.is_async:

        def release() -> None:
            _release_now(rc, ticket)

        return await executor.run(function, arguments, ctx, finish=release), ticket
    try:
        envelope = await executor.run(function, arguments, ctx)
    finally:
        await _release(rc, ticket)
    return envelope, ticket


async def apply_storage_change(rc: RequestContext, envelope: Envelope) -> None:
    """Add what a remote worker wrote to the tenant's storage counters.

    A worker in another process (a Modal container) counts its writes in a
    ledger of its own and reports the net change in the envelope; here it
    reaches the records database. A failure is logged, not answered: the
    call itself succeeded, and ``TenantStorage.recount`` repairs counters.
    """
    change = envelope.storage_change
    if not change or change == (0, 0):
        return
    storage = rc.services.storage_for(rc.tenant_id, rc.tier)
    if storage is None:
        return
    delta_bytes, delta_files = change
    try:
        await rc.services.db_call(storage.apply_change, delta_bytes, delta_files)
    except TenantKitError as exc:
        logger.error(
            "request %s: could not count the worker's storage change %s: %s: %s",
            rc.request_id,
            change,
            type(exc).__name__,
            exc,
        )


async def _meter(
    rc: RequestContext,
    event_id: str,
    function: TenantFunction,
    status: int,
    started_at: float,
    envelope: Envelope,
    bytes_in: int,
    bytes_out: int,
) -> None:
    await rc.services.meter.record(
        UsageEvent(
            request_id=event_id,
            tenant_id=rc.tenant_id,
            function=function.name,
            status=status,
            started_at=started_at,
            ended_at=rc.services.clock(),
            compute_seconds=envelope.compute_seconds,
            gpu_type=envelope.gpu_type,
            gpu_count=envelope.gpu_count,
            gpu_seconds=envelope.gpu_seconds,
            bytes_in=bytes_in,
            bytes_out=bytes_out,
        )
    )


class _CallerProblem(TenantKitError):
    """A 4xx a tenant function raised on purpose, rebuilt from its envelope."""

    def __init__(self, problem: dict[str, Any]) -> None:
        super().__init__(str(problem.get("detail", "")))
        self.problem = problem

    @property
    def status(self) -> int:  # type: ignore[override]
        return int(self.problem.get("status", 400))

    @property
    def code(self) -> str:  # type: ignore[override]
        return str(self.problem.get("code", "invalid-input"))

    @property
    def title(self) -> str:  # type: ignore[override]
        return str(self.problem.get("title", "Invalid input"))

    def problem_extras(self) -> dict[str, Any]:
        extras = self.problem.get("extras")
        return dict(extras) if isinstance(extras, dict) else {}


def _envelope_error(envelope: Envelope, function: TenantFunction) -> TenantKitError:
    if envelope.problem is not None:
        return _CallerProblem(envelope.problem)
    if envelope.timed_out:
        return FunctionTimeout(
            f"function {function.name!r} ran past its {function.options.timeout:g}s timeout"
        )
    return FunctionFailed("the function raised an error")


async def _run_one(
    rc: RequestContext,
    function: TenantFunction,
    arguments: dict[str, Any],
    bytes_in: int,
    render: Callable[[Any, Envelope], bytes],
    instance: str,
) -> Response:
    """Admit, run, release, meter and answer one call."""
    started_at = rc.services.clock()
    envelope, ticket = await _execute(rc, function, arguments)
    await apply_storage_change(rc, envelope)
    headers = rate_limit_headers(ticket.state)
    if envelope.ok:
        body = render(envelope.value, envelope)
        await _meter(rc, rc.event_id, function, 200, started_at, envelope, bytes_in, len(body))
        return Response(body, 200, headers=headers, media_type="application/json")
    error = _envelope_error(envelope, function)
    response = problem_response(error, rc.request_id, instance=instance, headers=headers)
    await _meter(
        rc, rc.event_id, function, error.status, started_at, envelope, bytes_in, len(response.body)
    )
    return response


async def call_function(request: Request, function: TenantFunction) -> Response:
    """``POST /functions/{name}`` and per-function paths: body = the arguments."""
    rc: RequestContext | None = None

    async def run() -> Response:
        nonlocal rc
        rc = await authenticate_request(request)
        check_access(rc, function)
        body = await request.body()
        arguments = function.validate_json(body)
        return await _run_one(rc, function, arguments, len(body), _raw, request.url.path)

    return await _guarded(request, run, lambda: rc)


async def _guarded(
    request: Request, run: Callable[[], Any], current: Callable[[], RequestContext | None]
) -> Response:
    try:
        response: Response = await run()
        return response
    except LimitExceeded as exc:
        request.scope["state"].setdefault("response_headers", {}).update(denial_headers(exc))
        raise
    except TenantKitError:
        rc = current()
        if rc is not None and "response_headers" not in request.scope["state"]:
            with contextlib.suppress(TenantKitError):
                await set_rate_limit_headers(request, rc)
        raise


def _raw(value: Any, envelope: Envelope) -> bytes:
    return encode_json(value)


async def call_process(request: Request) -> Response:
    """``POST /process``: ``{"task_type": name, "data": {...arguments}}`` (the seed's form)."""
    rc: RequestContext | None = None

    async def run() -> Response:
        nonlocal rc
        rc = await authenticate_request(request)
        body = await request.body()
        payload = parse_json(body)
        if not isinstance(payload, dict) or "task_type" not in payload:
            raise InvalidArguments(
                'the body must be {"task_type": <function>, "data": {...}}',
                [{"loc": ["body", "task_type"], "msg": "Field required", "type": "missing"}],
            )
        function = _lookup(rc, payload["task_type"], ["body", "task_type"])
        check_access(rc, function)
        try:
            arguments = function.validate(
                payload.get("data"), check_finite=may_hold_non_finite(body)
            )
        except InvalidArguments as exc:
            for error in exc.errors:
                error["loc"] = ["data", *error["loc"]]
            raise
        request_id = rc.request_id

        def render(value: Any, envelope: Envelope) -> bytes:
            return encode_json(
                {
                    "status": "success",
                    "task_type": function.name,
                    "result": value,
                    "request_id": request_id,
                    "compute_seconds": round(envelope.compute_seconds, 6),
                }
            )

        return await _run_one(rc, function, arguments, len(body), render, request.url.path)

    return await _guarded(request, run, lambda: rc)


async def call_batch(request: Request) -> Response:
    """``POST /batch``: ``{"tasks": [{"task_type", "data"}, ...]}``.

    Every task counts against the rate limit (one admission of cost n); the
    results come back in order, each with its own status, and one failing
    task does not fail the others. Tasks run at most ``max_concurrent`` at a
    time. Each task is metered as its own usage event.
    """
    rc: RequestContext | None = None

    async def run() -> Response:
        nonlocal rc
        rc = await authenticate_request(request)
        services = rc.services
        body = await request.body()
        payload = parse_json(body)
        tasks = payload.get("tasks") if isinstance(payload, dict) else None
        limit = services.settings.max_batch_tasks
        if not isinstance(tasks, list) or not tasks:
            raise InvalidArguments(
                'the body must be {"tasks": [{"task_type": ..., "data": {...}}, ...]}',
                [{"loc": ["body", "tasks"], "msg": "a non-empty list", "type": "list_type"}],
            )
        if len(tasks) > limit:
            raise InvalidArguments(
                f"a batch holds at most {limit} tasks, not {len(tasks)}",
                [{"loc": ["body", "tasks"], "msg": f"at most {limit}", "type": "too_long"}],
            )
        check_finite = may_hold_non_finite(body)
        prepared: list[tuple[TenantFunction, dict[str, Any]] | TenantKitError] = []
        for index, task in enumerate(tasks):
            prepared.append(_prepare_task(rc, index, task, check_finite))
        runnable = [p for p in prepared if not isinstance(p, TenantKitError)]
        longest = max((f.options.timeout for f, _ in runnable), default=1.0)
        ticket = await _admit(rc, len(tasks), longest * len(runnable) + 1)
        per_task_in = len(body) // len(tasks)
        try:
            results = await _run_batch(rc, prepared, [_task_type(t) for t in tasks], per_task_in)
        finally:
            await _release(rc, ticket)
        succeeded = sum(1 for r in results if r["status"] == 200)
        out = encode_json(
            {
                "status": "success" if succeeded == len(results) else "partial",
                "request_id": rc.request_id,
                "succeeded": succeeded,
                "failed": len(results) - succeeded,
                "results": results,
            }
        )
        return Response(
            out, 200, headers=rate_limit_headers(ticket.state), media_type="application/json"
        )

    return await _guarded(request, run, lambda: rc)


def _task_type(task: Any) -> str | None:
    """The ``task_type`` a batch task names, echoed in its result (``None`` unless a string)."""
    name = task.get("task_type") if isinstance(task, dict) else None
    return name if isinstance(name, str) else None


def _prepare_task(
    rc: RequestContext, index: int, task: Any, check_finite: bool
) -> tuple[TenantFunction, dict[str, Any]] | TenantKitError:
    try:
        if not isinstance(task, dict) or "task_type" not in task:
            raise InvalidArguments(
                'each task must be {"task_type": <function>, "data": {...}}',
                [{"loc": ["tasks", index], "msg": "Field required", "type": "missing"}],
            )
        function = _lookup(rc, task["task_type"], ["tasks", index, "task_type"])
        check_access(rc, function)
        return function, function.validate(task.get("data"), check_finite=check_finite)
    except TenantKitError as exc:
        return exc


async def _run_batch(
    rc: RequestContext,
    prepared: Sequence[tuple[TenantFunction, dict[str, Any]] | TenantKitError],
    task_types: Sequence[str | None],
    bytes_in: int,
) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(max(1, rc.tier.max_concurrent))
    ctx = rc.context()

    async def one(
        index: int, item: tuple[TenantFunction, dict[str, Any]] | TenantKitError
    ) -> dict[str, Any]:
        if isinstance(item, TenantKitError):
            return _task_problem(rc, index, item, task_types[index])
        function, arguments = item
        started_at = rc.services.clock()
        async with gate:
            envelope = await rc.services.executor.run(function, arguments, ctx)
        await apply_storage_change(rc, envelope)
        event_id = f"{rc.event_id}.{index}"
        if envelope.ok:
            result: dict[str, Any] = {
                "index": index,
                "task_type": function.name,
                "status": 200,
                "result": envelope.value,
            }
            size = len(encode_json(envelope.value))
            await _meter(rc, event_id, function, 200, started_at, envelope, bytes_in, size)
            return result
        error = _envelope_error(envelope, function)
        result = _task_problem(rc, index, error, function.name)
        await _meter(rc, event_id, function, error.status, started_at, envelope, bytes_in, 0)
        return result

    return list(await asyncio.gather(*(one(i, p) for i, p in enumerate(prepared))))


def _task_problem(
    rc: RequestContext, index: int, error: TenantKitError, name: str | None
) -> dict[str, Any]:
    detail = public_detail(error)
    if error.status == 500:
        detail = "the task failed; quote the request id when reporting it"
    return {
        "index": index,
        "task_type": name,
        "status": error.status,
        "error": problem_body(
            status=error.status,
            code=error.code,
            title=error.title,
            detail=detail,
            request_id=rc.request_id,
            extras=error.problem_extras(),
        ),
    }


async def unknown_function(request: Request, name: str) -> Response:
    """``POST /functions/{name}`` for a name no function has: 404 after authentication."""
    rc: RequestContext | None = None

    async def run() -> Response:
        nonlocal rc
        rc = await authenticate_request(request)
        raise FunctionNotFound(f"no tenant function named {name[:100]!r}")

    return await _guarded(request, run, lambda: rc)
