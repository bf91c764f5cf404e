"""Path safety: the one place a tenant's path is checked and normalised.

Every storage call passes its path through :func:`normalize_path` before a
backend sees it. A path that comes out is relative, ``/``-separated, in
Unicode NFC, with no ``.``, ``..`` or empty segment, so a backend can join
it under the tenant's root without further checks. (The local backend still
refuses symbolic links itself, since links live on disk, not in the string.)

Example:
    >>> normalize_path("reports/./2024/../summary.json")
    'reports/summary.json'
    >>> normalize_path("../other-tenant/secret")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tenantkit.storage.errors.PathEscapesRoot: path '../other-tenant/secret' climbs above ...
"""

from __future__ import annotations

import unicodedata

from tenantkit.storage.errors import (
    AbsolutePath,
    BackslashInPath,
    ControlCharacter,
    EmptyPath,
    EmptySegment,
    LookalikeCharacter,
    NameTooLong,
    PathEscapesRoot,
    PathTooLong,
    ReservedName,
)

__all__ = ["MAX_NAME_BYTES", "MAX_PATH_BYTES", "TEMP_PREFIX", "normalize_path"]

MAX_NAME_BYTES = 255
"""Longest segment, in UTF-8 bytes (``NAME_MAX`` on Linux and macOS)."""

MAX_PATH_BYTES = 1024
"""Longest path, in UTF-8 bytes, leaving room under ``PATH_MAX`` for the root."""

TEMP_PREFIX = ".tk-partial-"
"""Names starting with this are files being written; tenants cannot name them."""

# Unicode categories refused anywhere in a path: controls (NUL, newline, ESC, ...),
# format characters (bidi overrides, zero-width joiners), surrogates, private use,
# unassigned, and line/paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_SEPARATOR_LOOKALIKES = frozenset("./\\")
# Slashes that NFKC leaves alone but that read as "/" or "\\" to people.
_SLASH_CONFUSABLES = frozenset("\u2044\u2215\u2216\u29f5\u29f8\u29f9")


def _shown(path: str) -> str:
    text = repr(path)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_character(path: str, char: str) -> None:
    if char == "\\":
        raise BackslashInPath(f"path {_shown(path)} holds a backslash; separate segments with '/'")
    if unicodedata.category(char) in _REFUSED_CATEGORIES:
        raise ControlCharacter(
            f"path {_shown(path)} holds the control or format character U+{ord(char):04X}"
        )
    if not char.isascii():
        folded = unicodedata.normalize("NFKC", char)
        if _SEPARATOR_LOOKALIKES.intersection(folded) or char in _SLASH_CONFUSABLES:
            raise LookalikeCharacter(
                f"path {_shown(path)} holds U+{ord(char):04X}, which reads as "
                f"{folded!r}; use plain '.' and '/'"
            )


def normalize_path(path: str, *, directory: bool = False) -> str:
    """Check a tenant's path and return its one normal form.

    The rules, in order: the path is a ``str``; it holds no control, format
    or separator characters, no backslash and no character that normalises
    (NFKC) to ``.``, ``/`` or ``\\`` or otherwise reads as a slash; it is in
    NFC; it is relative; it has no empty segment; ``.`` segments drop out and
    ``..`` removes the segment before it but never climbs above the root; no
    segment starts with :data:`TEMP_PREFIX`; segments fit in
    :data:`MAX_NAME_BYTES` and the whole in :data:`MAX_PATH_BYTES`.

    Args:
        path: The path as the tenant wrote it.
        directory: Normalise a directory or listing prefix instead of a file
            path: ``""`` (the root) and one trailing ``/`` are allowed.

    Returns:
        The normal form, e.g. ``"a/b.txt"``; ``""`` only for the root with
        ``directory=True``.

    Raises:
        InvalidPath: one subclass per rule (see :mod:`tenantkit.storage.errors`).
    """
    if not isinstance(path, str):
        raise EmptyPath(f"a storage path must be a string, not {type(path).__name__}")
    for char in path:
        _check_character(path, char)
    text = unicodedata.normalize("NFC", path)
    if text.startswith("/"):
        raise AbsolutePath(f"path {_shown(path)} is absolute; give it relative to your root")
    if directory and text.endswith("/"):
        text = text[:-1]
    if not text:
        if directory:
            return ""
        raise EmptyPath("a file path is needed")
    parts: list[str] = []
    for segment in text.split("/"):
        if segment == "":
            raise EmptySegment(f"path {_shown(path)} has an empty segment ('//' or a trailing '/')")
        if segment == ".":
            continue
        if segment == "..":
            if not parts:
                raise PathEscapesRoot(f"path {_shown(path)} climbs above the tenant's root")
            parts.pop()
            continue
        if segment.startswith(TEMP_PREFIX):
            raise ReservedName(f"names starting with {TEMP_PREFIX!r} are reserved")
        if len(segment.encode()) > MAX_NAME_BYTES:
            raise NameTooLong(
                f"a segment of path {_shown(path)} is over {MAX_NAME_BYTES} bytes in UTF-8"
            )
        parts.append(segment)
    normal = "/".join(parts)
    if len(normal.encode()) > MAX_PATH_BYTES:
        raise PathTooLong(f"path {_shown(path)} is over {MAX_PATH_BYTES} bytes in UTF-8")
    if not normal and not directory:
        raise EmptyPath(f"path {_shown(path)} names the root, not a file")
    return normal
