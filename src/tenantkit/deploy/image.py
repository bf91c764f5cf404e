"""What goes into the container image: tenantkit's dependencies, pinned to
the versions installed here, the app's requirements, and the sources.

Pinning to this interpreter's versions means the containers run what
``tenantkit serve`` ran locally. ``modal`` itself is left out: Modal adds its
client to every image.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys

__all__ = ["IGNORED_SOURCE_PATTERNS", "default_python_version", "tenantkit_packages"]

_REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?P<extras>\[[^\]]*\])?\s*(?P<spec>[^;]*)"
    r"(?:;\s*(?P<marker>.*))?$"
)
_EXTRA_MARKER = re.compile(r"""^extra\s*==\s*["'](?P<extra>[^"']+)["']$""")

#: Never uploaded with the app's folder: VCS data, virtualenvs, caches, local
#: state (``.tenantkit``) and ``.env`` files, which hold local secrets.
IGNORED_SOURCE_PATTERNS: tuple[str, ...] = (
    "**/.git",
    "**/.hg",
    "**/.venv",
    "**/venv",
    "**/__pycache__",
    "**/*.pyc",
    "**/.tenantkit",
    "**/.env",
    "**/.env.*",
    "**/.mypy_cache",
    "**/.pytest_cache",
    "**/.ruff_cache",
    "**/.hypothesis",
    "**/node_modules",
)

_LEFT_OUT = frozenset({"modal"})


def default_python_version() -> str:
    """This interpreter's ``major.minor``, e.g. ``"3.11"``."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def tenantkit_packages(extras: tuple[str, ...] = ()) -> tuple[str, ...]:
    """tenantkit's runtime requirements as pip arguments, pinned where installed.

    Args:
        extras: tenantkit extras to include too, e.g. ``("postgres",)``.

    Example:
        >>> any(p.startswith("fastapi==") for p in tenantkit_packages())
        True
    """
    try:
        declared = importlib.metadata.requires("tenantkit") or []
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - always installed
        declared = []
    packages: dict[str, str] = {}
    for requirement in declared:
        match = _REQUIREMENT.match(requirement)
        if match is None:  # pragma: no cover - metadata is well formed
            continue
        marker = (match["marker"] or "").strip()
        if marker:
            extra = _EXTRA_MARKER.match(marker)
            if extra is None or extra["extra"] not in extras:
                continue
        name = _normalise(match["name"])
        if name in _LEFT_OUT:
            continue
        extras_part = (match["extras"] or "").replace(" ", "")
        try:
            pinned = f"{name}{extras_part}=={importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            pinned = f"{name}{extras_part}{(match['spec'] or '').replace(' ', '')}"
        packages[name] = pinned
    return tuple(packages[name] for name in sorted(packages))
