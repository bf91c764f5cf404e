"""Modal backend: one Modal Volume per tenant, used through the Volume API.

Each tenant's files live in their own Volume, named by :func:`volume_name`
from the app name and the tenant id, and created on first use with
``modal.Volume.from_name(name, create_if_missing=True)``. The backend calls
only these Volume methods (modal 1.6), so no per-tenant mount is needed and
the gateway and every worker container reach the same files:

- ``listdir(path, recursive=...)`` -> ``list[FileEntry]`` (stat and list)
- ``read_file(path)`` -> iterator of ``bytes`` (reads, streamed)
- ``batch_upload(force=True)`` -> context manager whose ``put_file(fileobj,
  remote_path)`` uploads; the file appears when the batch closes, whole
- ``remove_file(path)`` (delete)

Writes are staged in a local temporary file and uploaded in one batch, so a
reader sees the old file or the new one. Commits of one tenant are
serialised within a process only; two containers overwriting the same path
at once is last-writer-wins (as with any Volume), and may leave the quota
counters off by that file until ``TenantStorage.recount()``.

``modal`` is imported only when a Volume is first used.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Protocol

from tenantkit.config import validate_tenant_id
from tenantkit.errors import ConfigurationError, FileNotFound
from tenantkit.storage.base import FileInfo
from tenantkit.storage.errors import NotAFile, StorageUnavailable, SymlinkInPath

__all__ = ["ModalVolumeBackend", "VolumeLike", "volume_name"]

MAX_VOLUME_NAME = 64
_FILE, _DIRECTORY, _SYMLINK = 1, 2, 3  # modal.volume.FileEntryType values
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def volume_name(app_name: str, tenant_id: str) -> str:
    """The Volume holding a tenant's files: ``<app>.<tenant>``, within Modal's rules.

    Modal names hold at most 64 characters from ``[A-Za-z0-9._-]``. An app
    name made of letters, digits, ``-`` and ``_`` is used as is; any other
    is spelled with ``-`` for each run of other characters plus ``-`` and 6
    hex digits of its SHA-256, so two apps never share a spelling. ``.``
    appears only as the separator, so two (app, tenant) pairs never share a
    name. A name over 64 characters is cut and ends in ``-`` plus 12 hex
    digits of the whole name's SHA-256, which keeps it unique.

    Example:
        >>> volume_name("multi-tenant-saas", "acme-corp")
        'multi-tenant-saas.acme-corp'
    """
    validate_tenant_id(tenant_id)
    app = _UNSAFE.sub("-", app_name)
    if app != app_name or not app:
        app = f"{app.strip('-') or 'app'}-{hashlib.sha256(app_name.encode()).hexdigest()[:6]}"
    full = f"{app}.{tenant_id}"
    if len(full) <= MAX_VOLUME_NAME:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:12]
    return f"{full[: MAX_VOLUME_NAME - len(digest) - 1]}-{digest}"


class VolumeLike(Protocol):
    """The part of ``modal.Volume`` the backend uses (see the module docstring)."""

    def listdir(self, path: str, *, recursive: bool = False) -> list[Any]: ...

    def read_file(self, path: str) -> Iterator[bytes]: ...

    def batch_upload(self, force: bool = False) -> contextlib.AbstractContextManager[Any]: ...

    def remove_file(self, path: str, recursive: bool = False) -> None: ...


def _modal_volume(name: str) -> VolumeLike:
    try:
        import modal
    except ImportError as exc:  # pragma: no cover - modal is a dependency
        raise ConfigurationError("the Modal storage backend needs the modal package") from exc
    volume: VolumeLike = modal.Volume.from_name(name, create_if_missing=True)
    return volume


def _is_not_found(exc: BaseException) -> bool:
    if isinstance(exc, FileNotFoundError):
        return True
    try:
        from modal.exception import NotFoundError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, NotFoundError)


class _ChunkReader(io.RawIOBase):
    """A binary stream over an iterator of chunks."""

    def __init__(self, chunks: Iterator[bytes], first: bytes) -> None:
        super().__init__()
        self._chunks = chunks
        self._buffer = first

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        view = memoryview(target).cast("B")
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(view), len(self._buffer))
        view[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


class _VolumeStagedWrite:
    """A local temporary file, uploaded in one batch on commit."""

    def __init__(self, backend: ModalVolumeBackend, path: str) -> None:
        self._backend = backend
        self._path = path
        self._file: BinaryIO | None = tempfile.TemporaryFile()  # noqa: SIM115

    def write(self, data: bytes) -> None:
        assert self._file is not None
        self._file.write(data)

    def commit(self) -> None:
        assert self._file is not None
        try:
            self._file.flush()
            self._file.seek(0)
            with self._backend.volume.batch_upload(force=True) as batch:
                batch.put_file(self._file, self._path)
        except (FileNotFound, NotAFile, StorageUnavailable):
            raise
        except Exception as exc:
            raise StorageUnavailable(f"uploading {self._path!r} failed") from exc
        finally:
            self.abort()

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class ModalVolumeBackend:
    """One tenant's files in a Modal Volume.

    Args:
        name: The Volume's name (see :func:`volume_name`).
        volume_factory: Returns the Volume handle for a name; default
            ``modal.Volume.from_name(name, create_if_missing=True)``.
    """

    def __init__(
        self, name: str, *, volume_factory: Callable[[str], VolumeLike] = _modal_volume
    ) -> None:
        self.name = name
        self.volume_factory = volume_factory
        self._volume: VolumeLike | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ModalVolumeBackend({self.name!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "volume_factory": self.volume_factory}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["name"], volume_factory=state["volume_factory"])  # type: ignore[misc]

    @property
    def volume(self) -> VolumeLike:
        """The Volume handle, looked up (and created if missing) on first use."""
        if self._volume is None:
            self._volume = self.volume_factory(self.name)
        return self._volume

    def _listdir(self, path: str, *, recursive: bool) -> list[Any]:
        try:
            return self.volume.listdir(path or "/", recursive=recursive)
        except Exception as exc:
            if _is_not_found(exc):
                return []
            raise StorageUnavailable(f"listing {path or '/'!r} failed") from exc

    def stat(self, path: str) -> FileInfo | None:
        entries = self._listdir(path, recursive=False)
        for entry in entries:
            if entry.path.strip("/") != path:
                continue
            if int(entry.type) == _SYMLINK:
                raise SymlinkInPath(f"{path!r} is a symbolic link; storage never follows links")
            if int(entry.type) == _FILE:
                return FileInfo(path, int(entry.size), float(entry.mtime))
            if int(entry.type) == _DIRECTORY:
                return FileInfo(path, 0, float(entry.mtime), is_dir=True)
            raise NotAFile(f"{path!r} is not a regular file")
        if entries:
            return FileInfo(path, 0, max(float(e.mtime) for e in entries), is_dir=True)
        return None

    def open_read(self, path: str) -> BinaryIO:
        try:
            chunks = iter(self.volume.read_file(path))
            first = next(chunks, b"")
        except Exception as exc:
            if _is_not_found(exc):
                raise FileNotFound(f"no such file: {path!r}") from None
            raise StorageUnavailable(f"reading {path!r} failed") from exc
        return io.BufferedReader(_ChunkReader(chunks, first))

    def stage(self, path: str) -> _VolumeStagedWrite:
        return _VolumeStagedWrite(self, path)

    def delete(self, path: str) -> None:
        try:
            self.volume.remove_file(path)
        except Exception as exc:
            if _is_not_found(exc):
                raise FileNotFound(f"no such file: {path!r}") from None
            raise StorageUnavailable(f"deleting {path!r} failed") from exc

    def iter_entries(self, directory: str, *, recursive: bool) -> Iterator[FileInfo]:
        for entry in self._listdir(directory, recursive=recursive):
            path = entry.path.strip("/")
            kind = int(entry.type)
            if path == directory or path.rpartition("/")[2].startswith(".tk-partial-"):
                continue
            if kind == _FILE:
                yield FileInfo(path, int(entry.size), float(entry.mtime))
            elif kind == _DIRECTORY and not recursive:
                yield FileInfo(path, 0, float(entry.mtime), is_dir=True)

    @contextlib.contextmanager
    def commit_lock(self) -> Iterator[None]:
        with self._lock:
            yield
