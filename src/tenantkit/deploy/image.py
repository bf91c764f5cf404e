"""What goes into the container image: tenantkit's dependencies, pinned to
the versions installed here, the app's requirements, and the sources.

Pinning to this interpreter's versions means the containers run what
``tenantkit serve`` ran locally. ``modal`` itself is left out: Modal adds its
client to every image.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "IGNORED_SOURCE_PATTERNS",
    "default_python_version",
    "missing_requirements",
    "tenantkit_packages",
]

_REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?P<extras>\[[^\]]*\])?\s*(?P<spec>[^;]*)"
    r"(?:;\s*(?P<marker>.*))?$"
)
_EXTRA_MARKER = re.compile(r"""^extra\s*==\s*["'](?P<extra>[^"']+)["']$""")

#: Never uploaded with the app's folder: VCS data, virtualenvs, caches, local
#: state (``.tenantkit``: records, generated signing key, tenants' files) and
#: files that commonly hold local secrets (``.env*``, ``.envrc``, ``.netrc``,
#: a project-local ``.modal.toml``).
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
    "**/.envrc",
    "**/.netrc",
    "**/.modal.toml",
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


def _imported_top_level(file: Path) -> set[str]:
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def missing_requirements(
    file: Path, source_dir: Path, requirements: Iterable[str], packages: Iterable[str]
) -> list[tuple[str, str]]:
    """Third-party imports of ``file`` that no requirement installs.

    Looks at the import statements of the app's file (functions' bodies
    included), keeps those served by an installed distribution that is in
    neither ``requirements`` nor ``packages`` (tenantkit's own), and skips the
    standard library and modules found in ``source_dir``.

    Returns:
        ``(module, distribution)`` pairs, sorted.
    """
    declared: set[str] = set()
    for requirement in (*requirements, *packages):
        match = _REQUIREMENT.match(requirement)
        if match is not None:
            declared.add(_normalise(match["name"]))
    distributions = importlib.metadata.packages_distributions()
    missing: list[tuple[str, str]] = []
    for module in sorted(_imported_top_level(file)):
        if module in sys.stdlib_module_names or module in ("tenantkit", "modal", "__future__"):
            continue
        if (source_dir / f"{module}.py").exists() or (source_dir / module).is_dir():
            continue
        owners = distributions.get(module, [])
        if owners and not any(_normalise(owner) in declared for owner in owners):
            missing.append((module, owners[0]))
    return missing
