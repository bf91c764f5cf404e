"""``ModalExecutor``: the gateway's executor on Modal.

It calls each tenant function's Modal Function with ``fn.remote.aio(...)``
and returns the worker's :class:`~tenantkit.workers.Envelope` (measured in
the worker's container). The gateway meters from that envelope; workers
never write records.

A failure Modal reports instead of an envelope (the container ran past its
timeout, crashed, or could not be reached) becomes an envelope too, so the
gateway answers and meters every call the same way: a timeout is charged
the function's whole timeout (the container ran that long), other failures
nothing.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tenantkit.deploy.runtime import jsonable

if TYPE_CHECKING:
    import modal

    from tenantkit.workers import Envelope, TenantContext, TenantFunction

__all__ = ["ModalExecutor"]

logger = logging.getLogger("tenantkit.deploy")


class ModalExecutor:
    """Runs calls on the deployed app's worker Functions.

    Args:
        app_name: The deployed Modal App holding the workers.
        environment_name: Its Modal environment (``None``: the default).
        functions: Tenant function name -> Modal Function. Names not given
            are looked up with ``modal.Function.from_name`` on first use.
        local: Call ``fn.local(...)`` in a thread instead of
            ``fn.remote.aio(...)``: the worker code runs in this process,
            with no network (for checking a built app offline). The worker
            gets a pickled copy of the context, as a container does, so its
            storage counts writes in a ledger of its own and reports them in
            ``envelope.storage_change``.

    Example:
        >>> ModalExecutor("multi-tenant-saas")
        ModalExecutor('multi-tenant-saas', remote)
    """

    def __init__(
        self,
        app_name: str,
        *,
        environment_name: str | None = None,
        functions: Mapping[str, modal.Function[..., Any, Any]] | None = None,
        local: bool = False,
    ) -> None:
        self.app_name = app_name
        self.environment_name = environment_name
        self.local = local
        self._functions: dict[str, modal.Function[..., Any, Any]] = dict(functions or {})

    def __repr__(self) -> str:
        return f"ModalExecutor({self.app_name!r}, {'local' if self.local else 'remote'})"

    def function(self, name: str) -> modal.Function[..., Any, Any]:
        """The Modal Function running tenant function ``name``."""
        found = self._functions.get(name)
        if found is None:
            import modal

            found = modal.Function.from_name(
                self.app_name, name, environment_name=self.environment_name
            )
            self._functions[name] = found
        return found

    async def run(
        self, function: TenantFunction, arguments: dict[str, Any], ctx: TenantContext
    ) -> Envelope:
        """Run one call on the function's Modal Function and return its envelope."""
        from tenantkit.workers import Envelope

        options = function.options
        payload = jsonable(arguments)
        try:
            fn = self.function(function.name)
            if self.local:
                # What a container receives (our own object, pickled here).
                shipped = pickle.loads(pickle.dumps(ctx))  # noqa: S301
                result = await asyncio.to_thread(fn.local, payload, shipped)
            else:
                result = await fn.remote.aio(payload, ctx)
        except Exception as exc:
            timed_out = _is_timeout(exc)
            if timed_out:
                logger.warning(
                    "tenant function %r timed out on Modal after %ss (request %s)",
                    function.name,
                    options.timeout,
                    ctx.request_id,
                )
            else:
                logger.exception(
                    "tenant function %r failed on Modal (request %s)",
                    function.name,
                    ctx.request_id,
                )
            return Envelope(
                error="FunctionTimeout" if timed_out else type(exc).__name__,
                timed_out=timed_out,
                compute_seconds=options.timeout if timed_out else 0.0,
                gpu_type=options.gpu_type,
                gpu_count=options.gpu_count,
            )
        if not isinstance(result, Envelope):
            logger.error(
                "worker for %r returned %s instead of an envelope (request %s)",
                function.name,
                type(result).__name__,
                ctx.request_id,
            )
            return Envelope(error="InvalidWorkerResult")
        return result


def _is_timeout(exc: BaseException) -> bool:
    from modal.exception import FunctionTimeoutError

    return isinstance(exc, FunctionTimeoutError)
