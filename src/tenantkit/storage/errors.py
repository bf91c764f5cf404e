"""Errors raised by tenant storage, one class for each way a call is refused.

They extend the tree in :mod:`tenantkit.errors`::

    StorageError                      400
    ├── InvalidPath                   400
    │   ├── EmptyPath
    │   ├── AbsolutePath
    │   ├── PathEscapesRoot           (``..`` climbing above the tenant's root)
    │   ├── ControlCharacter          (NUL, other control and format characters)
    │   ├── BackslashInPath
    │   ├── LookalikeCharacter        (U+2024 ONE DOT LEADER, U+FF0F FULLWIDTH SOLIDUS, ...)
    │   ├── EmptySegment              (``a//b``)
    │   ├── NameTooLong               (a segment over 255 UTF-8 bytes)
    │   ├── PathTooLong               (a path over 1024 UTF-8 bytes)
    │   ├── ReservedName              (names tenantkit keeps for its own temporary files)
    │   └── SymlinkInPath             (a symbolic link anywhere on the path)
    ├── NotAFile                      409 (a directory where a file was named, or a
    │                                      file where a directory is needed)
    └── StorageUnavailable            503 (the backend failed; the cause is chained)
    FileNotFound                      404 (from tenantkit.errors)
    QuotaExceeded                     429 (from tenantkit.errors)
    └── StorageQuotaExceeded          429, ``limit`` = "storage-bytes" | "storage-files"
        └── FileTooLarge              413 (one file larger than the whole quota)

A quota refusal is 429 because the caller can succeed after deleting files;
it carries no ``retry_after`` since waiting alone does not help. A single
body larger than the tier's whole quota can never succeed, hence 413.
"""

from __future__ import annotations

from tenantkit.errors import InvalidPath, QuotaExceeded, StorageError

__all__ = [
    "AbsolutePath",
    "BackslashInPath",
    "ControlCharacter",
    "EmptyPath",
    "EmptySegment",
    "FileTooLarge",
    "LookalikeCharacter",
    "NameTooLong",
    "NotAFile",
    "PathEscapesRoot",
    "PathTooLong",
    "ReservedName",
    "StorageQuotaExceeded",
    "StorageUnavailable",
    "SymlinkInPath",
]


class EmptyPath(InvalidPath):
    """No path was given where a file path is needed."""

    code = "empty-path"


class AbsolutePath(InvalidPath):
    """The path starts with ``/``; storage paths are relative to the tenant's root."""

    code = "absolute-path"


class PathEscapesRoot(InvalidPath):
    """``..`` segments climb above the tenant's root."""

    code = "path-escapes-root"


class ControlCharacter(InvalidPath):
    """The path holds NUL or another control, format or separator character."""

    code = "control-character"


class BackslashInPath(InvalidPath):
    """The path holds ``\\``; only ``/`` separates segments."""

    code = "backslash-in-path"


class LookalikeCharacter(InvalidPath):
    """The path holds a character that normalises to ``.``, ``/`` or ``\\``."""

    code = "lookalike-character"


class EmptySegment(InvalidPath):
    """The path holds ``//`` (or ends with ``/`` where a file is named)."""

    code = "empty-segment"


class NameTooLong(InvalidPath):
    """A segment is longer than 255 bytes in UTF-8."""

    code = "name-too-long"


class PathTooLong(InvalidPath):
    """The path is longer than 1024 bytes in UTF-8."""

    code = "path-too-long"


class ReservedName(InvalidPath):
    """A segment uses the prefix tenantkit keeps for files being written."""

    code = "reserved-name"


class SymlinkInPath(InvalidPath):
    """A segment of the path is a symbolic link; storage never follows links."""

    code = "symlink-in-path"


class NotAFile(StorageError):
    """A directory stands where a file was named, or a file where a directory is needed."""

    status = 409
    code = "not-a-file"
    title = "Not a file"


class StorageUnavailable(StorageError):
    """The storage backend failed; the driver's error is chained, never shown."""

    status = 503
    code = "storage-unavailable"
    title = "Storage unavailable"


class StorageQuotaExceeded(QuotaExceeded):
    """A write would pass the tier's storage bytes or file count.

    ``limit`` names the quota: ``"storage-bytes"`` or ``"storage-files"``.
    """

    code = "storage-quota-exceeded"
    title = "Storage quota exceeded"


class FileTooLarge(StorageQuotaExceeded):
    """One file is larger than the tier's whole storage quota."""

    status = 413
    code = "file-too-large"
    title = "File too large"
