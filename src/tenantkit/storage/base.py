"""The protocol every storage backend speaks, and the records it returns.

A backend holds one tenant's files and knows nothing about tenants, quotas
or path rules: :class:`~tenantkit.storage.TenantStorage` checks every path
with :func:`~tenantkit.storage.paths.normalize_path` and accounts every byte
before a backend is called. Paths a backend receives are therefore always
normal, relative and ``/``-separated (``""`` is the root, for listing only).

Backends: :class:`~tenantkit.storage.local.LocalBackend` (a directory) and
:class:`~tenantkit.storage.modal_volume.ModalVolumeBackend` (a Modal Volume).
Both must pickle: they travel to Modal containers inside ``TenantContext``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

__all__ = ["FileInfo", "StagedWrite", "StorageBackend"]


@dataclass(frozen=True, slots=True)
class FileInfo:
    """One entry in a tenant's storage.

    Attributes:
        path: Normal relative path, e.g. ``"reports/2024.json"``.
        size: Size in bytes (0 for a directory).
        modified: Last modification, UNIX seconds.
        is_dir: Whether the entry is a directory.
    """

    path: str
    size: int
    modified: float
    is_dir: bool = False

    def public(self) -> dict[str, Any]:
        """The entry as JSON-ready data (what ``GET /files`` lists)."""
        return {
            "path": self.path,
            "size": self.size,
            "modified": self.modified,
            "type": "directory" if self.is_dir else "file",
        }


class StagedWrite(Protocol):
    """A file being written: invisible to readers until :meth:`commit`."""

    def write(self, data: bytes) -> None:
        """Append bytes to the staged content."""

    def commit(self) -> None:
        """Replace the target with the staged content, atomically and durably."""

    def abort(self) -> None:
        """Throw the staged content away; the target keeps its old content."""


class StorageBackend(Protocol):
    """Where one tenant's files live. Every method takes a normal path."""

    def stat(self, path: str) -> FileInfo | None:
        """The entry at ``path`` (file or directory), or ``None`` when absent."""

    def open_read(self, path: str) -> BinaryIO:
        """A binary stream of the file. Raises ``FileNotFound`` or ``NotAFile``."""

    def stage(self, path: str) -> StagedWrite:
        """Start writing ``path``; nothing is visible until the write commits."""

    def delete(self, path: str) -> None:
        """Delete the file. Raises ``FileNotFound`` or ``NotAFile``."""

    def iter_entries(self, directory: str, *, recursive: bool) -> Iterator[FileInfo]:
        """Entries under ``directory`` (``""``: the root), in no set order.

        Recursive listings yield files only; flat ones yield files and
        directories directly inside. A missing directory yields nothing.
        """

    def commit_lock(self) -> AbstractContextManager[None]:
        """Serialise the commit step of writes and deletes of this tenant."""
