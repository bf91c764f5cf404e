"""A tenant function's options, checked when the decorator runs.

The GPU string takes the forms Modal's ``gpu=`` accepts: a type (``"T4"``,
``"L4"``, ``"A10G"``, ``"A100"``, ``"A100-40GB"``, ``"A100-80GB"``, ``"L40S"``,
``"H100"``, ``"H100!"``, ``"H200"``, ``"B200"``, ``"B200+"`` or ``"any"``),
optionally followed by ``:N`` for N GPUs (1 to 8), in any letter case.

Example:
    >>> parse_gpu("a100-80gb:2")
    ('A100-80GB', 2)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tenantkit.config import Tier
from tenantkit.errors import ConfigurationError

__all__ = ["GPU_TYPES", "FunctionOptions", "parse_gpu", "validate_options"]

GPU_TYPES: frozenset[str] = frozenset(
    {
        "ANY",
        "T4",
        "L4",
        "A10",
        "A10G",
        "A100",
        "A100-40GB",
        "A100-80GB",
        "L40S",
        "H100",
        "H100!",
        "H200",
        "B200",
        "B200+",
    }
)

MAX_GPU_COUNT = 8
_PATH = re.compile(r"/[A-Za-z0-9._~/-]*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,99}")
_RESERVED_PATHS = ("/health", "/tenant", "/usage", "/rate-limit", "/process", "/batch")
_RESERVED_PREFIXES = ("/functions", "/admin", "/files", "/docs", "/openapi.json", "/redoc")


def parse_gpu(gpu: str) -> tuple[str, int]:
    """Split a Modal GPU string into its type (upper case) and count.

    Raises:
        ConfigurationError: for an unknown type or a count outside 1 to 8.
    """
    if not isinstance(gpu, str) or not gpu.strip():
        raise ConfigurationError(f"invalid gpu {gpu!r}: use a string such as 'A100' or 'H100:2'")
    kind, sep, count_text = gpu.strip().partition(":")
    kind = kind.upper()
    if kind not in GPU_TYPES:
        known = ", ".join(sorted(GPU_TYPES))
        raise ConfigurationError(f"unknown gpu type {gpu!r}: choose one of {known} (or 'T:N')")
    count = 1
    if sep:
        if not count_text.isdigit():
            raise ConfigurationError(f"invalid gpu count in {gpu!r}: use e.g. 'H100:2'")
        count = int(count_text)
        if not 1 <= count <= MAX_GPU_COUNT:
            raise ConfigurationError(f"invalid gpu count in {gpu!r}: between 1 and {MAX_GPU_COUNT}")
    return ("any" if kind == "ANY" else kind), count


@dataclass(frozen=True, slots=True)
class FunctionOptions:
    """What a tenant function asked for in its decorator.

    Attributes:
        gpu: The GPU string as given (``None``: CPU only).
        gpu_type: Normalised GPU type, e.g. ``"A100-80GB"`` (``None``: CPU only).
        gpu_count: GPUs per call (0 without a GPU).
        timeout: Seconds a call may run before it is stopped (504).
        memory: Memory request in MiB, passed to Modal.
        cpu: CPU cores requested, passed to Modal.
        tiers: Tiers allowed to call the function (``None``: every tier).
        path: Own route, e.g. ``"/inference"`` (``None``: only the shared routes).
        retries: Extra attempts after the function raises.
        secrets: Names of Modal Secrets the function needs.
    """

    gpu: str | None = None
    gpu_type: str | None = None
    gpu_count: int = 0
    timeout: float = 300
    memory: int | None = None
    cpu: float | None = None
    tiers: frozenset[str] | None = None
    path: str | None = None
    retries: int = 0
    secrets: tuple[str, ...] = ()


def validate_options(
    *,
    name: str,
    gpu: str | None,
    timeout: float,
    memory: int | None,
    cpu: float | None,
    tiers: Iterable[str] | None,
    path: str | None,
    retries: int,
    secrets: Sequence[str],
    known_tiers: Mapping[str, Tier],
) -> FunctionOptions:
    """Check every option and return them as :class:`FunctionOptions`.

    Raises:
        ConfigurationError: naming the function and the option at fault.
    """

    def fail(message: str) -> ConfigurationError:
        return ConfigurationError(f"tenant function {name!r}: {message}")

    if _NAME.fullmatch(name) is None:
        raise fail("name must be letters, digits, '_' or '-', starting with a letter or '_'")
    gpu_type: str | None = None
    gpu_count = 0
    if gpu is not None:
        try:
            gpu_type, gpu_count = parse_gpu(gpu)
        except ConfigurationError as exc:
            raise fail(str(exc)) from None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise fail(f"timeout must be a positive number of seconds, not {timeout!r}")
    if memory is not None and (
        isinstance(memory, bool) or not isinstance(memory, int) or memory <= 0
    ):
        raise fail(f"memory must be a positive number of MiB, not {memory!r}")
    if cpu is not None and (isinstance(cpu, bool) or not isinstance(cpu, int | float) or cpu <= 0):
        raise fail(f"cpu must be a positive number of cores, not {cpu!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
        raise fail(f"retries must be an integer from 0 to 10, not {retries!r}")
    allowed: frozenset[str] | None = None
    if tiers is not None:
        if isinstance(tiers, str):
            tiers = (tiers,)
        allowed = frozenset(tiers)
        if not allowed:
            raise fail("tiers must name at least one tier (or be omitted for every tier)")
        unknown = sorted(allowed - set(known_tiers))
        if unknown:
            known = ", ".join(sorted(known_tiers))
            raise fail(f"unknown tier {unknown[0]!r}: choose from {known}")
    if path is not None:
        if not isinstance(path, str) or _PATH.fullmatch(path) is None or path == "/":
            raise fail(f"path must look like '/inference', not {path!r}")
        path = path.rstrip("/") or path
        if path in _RESERVED_PATHS or any(
            path == p or path.startswith(p + "/") for p in _RESERVED_PREFIXES
        ):
            raise fail(f"path {path!r} is one of tenantkit's own routes")
    if isinstance(secrets, str):
        secrets = (secrets,)
    return FunctionOptions(
        gpu=gpu,
        gpu_type=gpu_type,
        gpu_count=gpu_count,
        timeout=float(timeout),
        memory=memory,
        cpu=float(cpu) if cpu is not None else None,
        tiers=allowed,
        path=path,
        retries=retries,
        secrets=tuple(secrets),
    )
