"""Tenant functions and where they run: the decorator, the context, executors.

This package never imports gateway code; the gateway builds on it.
"""

from __future__ import annotations

from tenantkit.workers.context import TenantContext
from tenantkit.workers.discovery import load_app, split_ref
from tenantkit.workers.executor import Envelope, Executor, LocalExecutor, run_in_envelope
from tenantkit.workers.function import (
    InvalidArguments,
    TenantApp,
    TenantFunction,
    current_app,
    function_record,
    tenant_function,
)
from tenantkit.workers.options import GPU_TYPES, FunctionOptions, parse_gpu

__all__ = [
    "GPU_TYPES",
    "Envelope",
    "Executor",
    "FunctionOptions",
    "InvalidArguments",
    "LocalExecutor",
    "TenantApp",
    "TenantContext",
    "TenantFunction",
    "current_app",
    "function_record",
    "load_app",
    "parse_gpu",
    "run_in_envelope",
    "split_ref",
    "tenant_function",
]
