"""``TenantStorage``: one tenant's files, with path rules and quotas applied.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from tenantkit.config import DEFAULT_TIERS
    >>> from tenantkit.storage import LocalBackend, TenantStorage
    >>> root = Path(tempfile.mkdtemp()) / "acme"
    >>> storage = TenantStorage("acme", DEFAULT_TIERS["free"], LocalBackend(root))
    >>> storage.write_json("results/run-1.json", {"status": "processed"})  # doctest: +ELLIPSIS
    FileInfo(path='results/run-1.json', size=23, ...)
    >>> storage.read_json("results/run-1.json")
    {'status': 'processed'}
    >>> [f.path for f in storage.list("results/")]
    ['results/run-1.json']
    >>> storage.usage()
    StorageTotals(bytes=23, files=1)
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, BinaryIO, NamedTuple

from tenantkit.config import Tier
from tenantkit.db.base import StorageUsage
from tenantkit.errors import FileNotFound
from tenantkit.storage.base import FileInfo, StagedWrite, StorageBackend
from tenantkit.storage.errors import (
    FileTooLarge,
    NotAFile,
    StorageQuotaExceeded,
    StorageUnavailable,
)
from tenantkit.storage.paths import normalize_path
from tenantkit.storage.quota import Ledger, MemoryLedger

__all__ = ["StorageTotals", "StorageWriter", "TenantStorage", "scan_usage"]

CHUNK_SIZE = 1024 * 1024


class StorageTotals(NamedTuple):
    """What :meth:`TenantStorage.usage` returns: ``(bytes, files)``."""

    bytes: int
    files: int


def scan_usage(backend: StorageBackend) -> tuple[int, int]:
    """Count a backend's bytes and files by walking all of it."""
    size = files = 0
    for entry in backend.iter_entries("", recursive=True):
        size += entry.size
        files += 1
    return size, files


def _b(n: int) -> str:
    return f"{n:,} bytes"


class StorageWriter(io.RawIOBase):
    """A file being written through :meth:`TenantStorage.open_write`.

    Use it as a context manager: leaving the block normally commits (the file
    appears whole, atomically); leaving it with an exception, or calling
    :meth:`abort`, throws everything away and keeps any old content. Every
    :meth:`write` reserves its bytes against the quota first, so a write that
    would pass the quota raises before the bytes are stored. A dropped
    writer that was never closed is aborted, never committed.

    Accounting: the ledger holds what is stored plus what writes in flight
    have reserved. A new file reserves one file up front. Bytes up to the
    size of the file being replaced are not reserved again (an overwrite
    needs room only for growth); everything beyond is. On commit, under the
    backend's commit lock, the reservation is settled against the file
    actually replaced at that moment: the difference is released, or reserved
    if a concurrent change made it necessary, in which case the commit can
    still be refused and nothing becomes visible.
    """

    def __init__(self, storage: TenantStorage, path: str, *, size: int | None = None) -> None:
        super().__init__()
        self._storage = storage
        self.path = path
        self.info: FileInfo | None = None
        self._written = 0
        self._reserved_bytes = 0
        self._reserved_file = 0
        self._staged: StagedWrite | None = None
        existing = storage.backend.stat(path)
        if existing is not None and existing.is_dir:
            raise NotAFile(f"{path!r} is a directory")
        self._credit = existing.size if existing is not None else 0
        if size is not None:
            storage._check_size(size, path=path)
        new_file = 1 if existing is None else 0
        up_front = max(0, size - self._credit) if size is not None else 0
        try:
            if new_file or up_front:
                storage._reserve(up_front, new_file, path=path)  # one atomic step
                self._reserved_file, self._reserved_bytes = new_file, up_front
            self._staged = storage.backend.stage(path)
        except BaseException:
            self._release_reservations()
            raise

    # io.RawIOBase plumbing
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        """Reserve room for ``data`` against the quota, then store it."""
        if self._staged is None:
            raise ValueError("write to a closed StorageWriter")
        chunk = bytes(data)
        total = self._written + len(chunk)
        need = total - self._credit - self._reserved_bytes
        with self._aborting_on_failure("writing"):
            if need > 0:
                self._storage._check_size(total, path=self.path)
                self._storage._reserve(need, 0, path=self.path)
                self._reserved_bytes += need
            self._staged.write(chunk)
        self._written = total
        return len(chunk)

    def close(self) -> None:
        """Commit the file (once); the old content is replaced atomically."""
        if self._staged is not None:
            self._commit()
        super().close()

    def abort(self) -> None:
        """Throw the staged content away and give back what was reserved."""
        staged, self._staged = self._staged, None
        if staged is not None:
            try:
                staged.abort()
            finally:
                self._release_reservations()
                self._storage._discard_parents(self.path)
        super().close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __del__(self) -> None:
        # A writer dropped without close() never commits half a file.
        if getattr(self, "_staged", None) is not None:
            self.abort()

    @contextlib.contextmanager
    def _aborting_on_failure(self, doing: str) -> Iterator[None]:
        """Abort the write if the block raises; an ``OSError`` becomes
        :class:`StorageUnavailable` (``doing``: "writing", "saving")."""
        try:
            yield
        except OSError as exc:
            self.abort()
            raise StorageUnavailable(f"storage failed while {doing} {self.path!r}") from exc
        except BaseException:
            self.abort()
            raise

    def _release_reservations(self) -> None:
        if self._reserved_bytes or self._reserved_file:
            self._storage.ledger.adjust(-self._reserved_bytes, -self._reserved_file)
        self._reserved_bytes = self._reserved_file = 0

    def _commit(self) -> None:
        staged = self._staged
        assert staged is not None
        storage = self._storage
        with storage.backend.commit_lock():
            with self._aborting_on_failure("saving"):
                old = storage.backend.stat(self.path)
                if old is not None and old.is_dir:
                    raise NotAFile(f"{self.path!r} is a directory")
                old_size = old.size if old is not None else 0
                # What the counters must still gain (or lose) once this file
                # replaces what is there now, beyond what is already reserved.
                bytes_due = self._written - old_size - self._reserved_bytes
                files_due = (0 if old is not None else 1) - self._reserved_file
                if bytes_due > 0 or files_due > 0:
                    storage._reserve(max(bytes_due, 0), max(files_due, 0), path=self.path)
                    self._reserved_bytes += max(bytes_due, 0)
                    self._reserved_file += max(files_due, 0)
                staged.commit()
            self._staged = None
            self._reserved_bytes = self._reserved_file = 0
            if bytes_due < 0 or files_due < 0:
                storage.ledger.adjust(min(bytes_due, 0), min(files_due, 0))
            self.info = storage.backend.stat(self.path)


class TenantStorage:
    """One tenant's files: every path checked, every byte within the tier's quota.

    Build one with :func:`tenantkit.storage.storage_for`; tenant functions get
    theirs as ``ctx.storage``. Paths are relative POSIX paths inside the
    tenant's root (see :func:`~tenantkit.storage.paths.normalize_path`);
    nothing outside that root can be named.

    Instances pickle: a copy sent to another process (a Modal container)
    keeps its backend and tier, and accounts in a :class:`MemoryLedger` there,
    since workers never write records.

    Args:
        tenant_id: Whose files.
        tier: The tenant's tier; ``storage_bytes`` and ``max_files`` are the quotas.
        backend: Where the files live.
        ledger: The quota counters; default: a :class:`MemoryLedger`.
    """

    def __init__(
        self,
        tenant_id: str,
        tier: Tier,
        backend: StorageBackend,
        ledger: Ledger | None = None,
    ) -> None:
        self.tenant_id = tenant_id
        self.tier = tier
        self.backend = backend
        self.ledger: Ledger = ledger or MemoryLedger(
            tenant_id, functools.partial(scan_usage, backend)
        )

    def __repr__(self) -> str:
        return f"TenantStorage({self.tenant_id!r}, tier={self.tier.name!r}, {self.backend!r})"

    def __getstate__(self) -> dict[str, Any]:
        ledger = self.ledger
        if not isinstance(ledger, MemoryLedger):
            ledger = MemoryLedger(self.tenant_id, functools.partial(scan_usage, self.backend))
        return {
            "tenant_id": self.tenant_id,
            "tier": self.tier,
            "backend": self.backend,
            "ledger": ledger,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # -- quotas ---------------------------------------------------------------

    def _check_size(self, file_size: int, *, path: str) -> None:
        tier = self.tier
        if file_size > tier.storage_bytes:
            raise FileTooLarge(
                f"{path!r} would be {_b(file_size)}, more than the {tier.name} tier's "
                f"whole storage quota of {_b(tier.storage_bytes)}",
                limit="storage-bytes",
            )

    def _reserve(self, delta_bytes: int, delta_files: int, *, path: str) -> None:
        tier = self.tier
        usage = self.ledger.adjust(
            delta_bytes,
            delta_files,
            max_bytes=tier.storage_bytes,
            max_files=tier.max_files,
        )
        if usage is not None:
            return
        now = self.ledger.current()
        if delta_files > 0 and now.files + delta_files > tier.max_files:
            raise StorageQuotaExceeded(
                f"storage file quota exceeded: the {tier.name} tier allows "
                f"{tier.max_files:,} files and {now.files:,} are stored or being written",
                limit="storage-files",
            )
        raise StorageQuotaExceeded(
            f"storage quota exceeded: writing {path!r} needs {_b(delta_bytes)} more, "
            f"{_b(max(0, tier.storage_bytes - now.bytes))} of the {tier.name} tier's "
            f"{_b(tier.storage_bytes)} are free",
            limit="storage-bytes",
        )

    def _discard_parents(self, path: str) -> None:
        discard = getattr(self.backend, "discard_parents", None)
        if discard is not None:
            discard(path)

    def remaining(self) -> StorageTotals:
        """Bytes and files the tenant may still add (never negative)."""
        now = self.ledger.current()
        return StorageTotals(
            max(0, self.tier.storage_bytes - now.bytes), max(0, self.tier.max_files - now.files)
        )

    def usage(self) -> StorageTotals:
        """Bytes and files stored, plus what writes in flight have reserved."""
        now = self.ledger.current()
        return StorageTotals(now.bytes, now.files)

    def unshared_change(self) -> StorageTotals:
        """What this copy changed that the records database has not seen.

        A copy working on a :class:`MemoryLedger` (inside a Modal container,
        or without a database) returns the bytes and files it added
        (negative: removed) since it was created or unpickled; the gateway
        applies that to its own counters with :meth:`apply_change`. A copy on
        the database returns ``(0, 0)``.
        """
        ledger = self.ledger
        if isinstance(ledger, MemoryLedger):
            return StorageTotals(*ledger.net_change())
        return StorageTotals(0, 0)

    def apply_change(self, delta_bytes: int, delta_files: int) -> StorageTotals:
        """Add a change made elsewhere (another copy's :meth:`unshared_change`)
        to the counters, without a quota check: the files already exist."""
        usage = self.ledger.adjust(delta_bytes, delta_files)
        assert usage is not None
        return StorageTotals(usage.bytes, usage.files)

    def recount(self) -> StorageTotals:
        """Walk the backend, count what is stored, and set the counters to it.

        Run it when no write is in flight (it overwrites reservations), e.g.
        after files changed outside tenantkit or counters drifted.
        """
        size, files = scan_usage(self.backend)
        self.ledger.reset(StorageUsage(self.tenant_id, size, files))
        return StorageTotals(size, files)

    # -- reading --------------------------------------------------------------

    def open_read(self, path: str) -> BinaryIO:
        """A binary stream of a file, for files larger than memory.

        Raises:
            FileNotFound: nothing is stored at ``path``.
            NotAFile: ``path`` is a directory.
            InvalidPath: ``path`` breaks a path rule.
        """
        return self.backend.open_read(normalize_path(path))

    def iter_bytes(self, path: str, *, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """A file's content in chunks of at most ``chunk_size`` bytes."""
        with self.open_read(path) as stream:
            while chunk := stream.read(chunk_size):
                yield chunk

    def read_bytes(self, path: str) -> bytes:
        """A file's whole content."""
        with self.open_read(path) as stream:
            return stream.read()

    def read_text(self, path: str, *, encoding: str = "utf-8") -> str:
        """A file's content, decoded."""
        return self.read_bytes(path).decode(encoding)

    def read_json(self, path: str) -> Any:
        """A file's content, parsed as JSON."""
        return json.loads(self.read_bytes(path))

    def exists(self, path: str) -> bool:
        """Whether a file or directory is stored at ``path``."""
        return self.backend.stat(normalize_path(path)) is not None

    def stat(self, path: str) -> FileInfo:
        """Size, modification time and kind of the entry at ``path``.

        Raises:
            FileNotFound: nothing is stored at ``path``.
        """
        normal = normalize_path(path)
        info = self.backend.stat(normal)
        if info is None:
            raise FileNotFound(f"no such file: {normal!r}")
        return info

    def list(self, prefix: str = "", *, recursive: bool = True) -> list[FileInfo]:
        """Entries whose path starts with ``prefix``, sorted by path.

        ``prefix`` is a path prefix, as in object stores: ``"reports/"``
        lists the directory, ``"reports/2024"`` also matches
        ``"reports/2024-01.json"``. Recursive listings return files at any
        depth; flat ones return files and directories one level down.
        """
        normal = normalize_path(prefix, directory=True)
        if not prefix or prefix.endswith("/"):
            directory, stem = normal, ""
        else:
            directory, _, stem = normal.rpartition("/")
        start = f"{directory}/{stem}" if directory else stem
        entries = (
            entry
            for entry in self.backend.iter_entries(directory, recursive=recursive)
            if entry.path.startswith(start)
        )
        return sorted(entries, key=lambda entry: entry.path)

    # -- writing --------------------------------------------------------------

    def open_write(self, path: str, *, size: int | None = None) -> StorageWriter:
        """A writer for a file larger than memory; commit by closing it.

        Args:
            path: Where to write.
            size: Expected size, if known: it is reserved up front, so a write
                that cannot fit is refused before any byte is sent.

        Raises:
            StorageQuotaExceeded: the file count is used up, or ``size`` does not fit.
            FileTooLarge: ``size`` is larger than the tier's whole quota.
        """
        return StorageWriter(self, normalize_path(path), size=size)

    def write_stream(
        self, path: str, chunks: Iterable[bytes] | BinaryIO, *, size: int | None = None
    ) -> FileInfo:
        """Write a file from chunks or a binary stream, atomically."""
        iterator: Iterable[bytes]
        if hasattr(chunks, "read"):
            stream = chunks
            iterator = iter(lambda: stream.read(CHUNK_SIZE), b"")
        else:
            iterator = chunks
        with self.open_write(path, size=size) as writer:
            for chunk in iterator:
                writer.write(chunk)
        assert writer.info is not None
        return writer.info

    def write_bytes(self, path: str, data: bytes) -> FileInfo:
        """Write a file atomically; a reader sees the old content or all the new."""
        data = bytes(data)
        return self.write_stream(path, [data], size=len(data))

    def write_text(self, path: str, text: str, *, encoding: str = "utf-8") -> FileInfo:
        """Write text, encoded."""
        return self.write_bytes(path, text.encode(encoding))

    def write_json(self, path: str, data: Any, *, indent: int | None = None) -> FileInfo:
        """Write ``data`` as JSON (UTF-8)."""
        return self.write_bytes(path, json.dumps(data, indent=indent).encode())

    def delete(self, path: str, *, missing_ok: bool = False) -> None:
        """Delete a file and give its bytes back to the quota.

        Raises:
            FileNotFound: nothing is stored at ``path`` (unless ``missing_ok``).
            NotAFile: ``path`` is a directory.
        """
        normal = normalize_path(path)
        with self.backend.commit_lock():
            info = self.backend.stat(normal)
            if info is None:
                if missing_ok:
                    return
                raise FileNotFound(f"no such file: {normal!r}")
            if info.is_dir:
                raise NotAFile(f"{normal!r} is a directory")
            self.backend.delete(normal)
            self.ledger.adjust(-info.size, -1)

    def delete_all(self) -> StorageTotals:
        """Delete every file of the tenant (when the tenant itself is deleted).

        Returns the bytes and files removed. Links and entries tenantkit did
        not write are left alone; the counters are reset to what remains.
        """
        removed_bytes = removed_files = 0
        for entry in self.list():
            try:
                self.delete(entry.path)
            except FileNotFound:
                continue
            removed_bytes += entry.size
            removed_files += 1
        self.recount()
        return StorageTotals(removed_bytes, removed_files)

    # -- the seed's volume manager ----------------------------------------------

    def write_file(self, path: str, data: Any) -> FileInfo:
        """Write ``bytes`` as is, ``str`` as UTF-8, anything else as JSON.

        The seed's ``create_volume_manager(tenant_id).write_file(name, data)``.
        """
        if isinstance(data, bytes | bytearray | memoryview):
            return self.write_bytes(path, bytes(data))
        if isinstance(data, str):
            return self.write_text(path, data)
        return self.write_json(path, data)

    def read_file(self, path: str) -> bytes:
        """The seed's ``read_file``: a file's bytes."""
        return self.read_bytes(path)
