"""Local backend: one directory per tenant, ``<data_dir>/volumes/<tenant_id>``.

Every path is walked one segment at a time from a descriptor of the tenant's
root (``openat`` with ``O_NOFOLLOW``), so no symbolic link is ever followed,
not even one swapped in between a check and a use: a link anywhere on a path
is refused with :class:`~tenantkit.storage.errors.SymlinkInPath`. This is
stricter than comparing resolved real paths, which leaves a window between
the check and the open.

Writes go to a temporary file in the target's directory, are flushed and
``fsync``-ed, then renamed over the target (``os.replace``) and the directory
is ``fsync``-ed: a reader sees the old content or the new, never a mix, and
a failed write leaves the old content.

Commits of one tenant are serialised by ``flock`` on a lock file in its root
(named with the reserved prefix, so tenants can neither name nor list it)
plus a thread lock, so processes sharing the data dir (``tenantkit serve
--workers N``) agree. Nothing is ever created outside the tenant's root but
the root itself and its parent folders.

Needs a POSIX system (``dir_fd`` support); Linux and macOS qualify.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from tenantkit.errors import ConfigurationError, FileNotFound
from tenantkit.storage.base import FileInfo
from tenantkit.storage.errors import NotAFile, StorageUnavailable, SymlinkInPath
from tenantkit.storage.paths import TEMP_PREFIX

__all__ = ["LocalBackend"]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC
_READ_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | _CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
_SUPPORTED = bool(_NOFOLLOW) and os.open in os.supports_dir_fd and os.stat in os.supports_dir_fd
LOCK_NAME = f"{TEMP_PREFIX}lock"
"""The commit lock file, in the tenant's root under the reserved prefix (never listed)."""


def _split(path: str) -> tuple[list[str], str]:
    parts = path.split("/")
    return parts[:-1], parts[-1]


def _lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _info(path: str, st: os.stat_result) -> FileInfo:
    is_dir = stat.S_ISDIR(st.st_mode)
    return FileInfo(path, 0 if is_dir else st.st_size, st.st_mtime, is_dir)


class _LocalStagedWrite:
    """A temporary file beside the target, renamed over it on commit."""

    def __init__(self, dir_fd: int, name: str, shown: str) -> None:
        self._dir_fd = dir_fd
        self._name = name
        self._shown = shown
        self._temp = f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        fd = os.open(self._temp, _CREATE_FLAGS, 0o600, dir_fd=dir_fd)
        self._file = os.fdopen(fd, "wb")
        self._done = False

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def commit(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            st = _lstat_at(self._dir_fd, self._name)
            if st is not None and stat.S_ISLNK(st.st_mode):
                raise SymlinkInPath(
                    f"{self._shown!r} is a symbolic link; storage never follows links"
                )
            if st is not None and stat.S_ISDIR(st.st_mode):
                raise NotAFile(f"{self._shown!r} is a directory")
            os.replace(self._temp, self._name, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
            self._done = True
            os.fsync(self._dir_fd)
        finally:
            self._finish()

    def abort(self) -> None:
        self._finish()

    def _finish(self) -> None:
        if self._dir_fd < 0:
            return
        self._file.close()
        if not self._done:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._temp, dir_fd=self._dir_fd)
        os.close(self._dir_fd)
        self._dir_fd = -1


class LocalBackend:
    """One tenant's files in a directory on this machine.

    Args:
        root: The tenant's directory; created (mode 0700) on the first write.
    """

    def __init__(self, root: Path) -> None:
        if not _SUPPORTED:  # pragma: no cover - Windows
            raise ConfigurationError(
                "the local storage backend needs a POSIX system (openat, O_NOFOLLOW)"
            )
        self.root = Path(root)
        self._thread_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalBackend({str(self.root)!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["root"])  # type: ignore[misc]

    # -- walking --------------------------------------------------------------

    def _open_root(self, *, create: bool) -> int:
        if create:
            self.root.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                self.root.mkdir(mode=0o700)
        try:
            return os.open(self.root, _DIR_FLAGS)
        except FileNotFoundError:
            raise FileNotFound("no such file") from None
        except OSError as exc:
            raise StorageUnavailable("the tenant's storage root cannot be opened") from exc

    def _refuse(self, dir_fd: int, name: str, shown: str, exc: OSError) -> None:
        st = _lstat_at(dir_fd, name)
        if st is None:
            raise FileNotFound(f"no such file: {shown!r}") from None
        if stat.S_ISLNK(st.st_mode):
            raise SymlinkInPath(
                f"{shown!r} is a symbolic link; storage never follows links"
            ) from None
        if not stat.S_ISDIR(st.st_mode):
            raise NotAFile(f"{shown!r} is a file, not a directory") from None
        raise StorageUnavailable(f"{shown!r} cannot be opened") from exc

    def _open_child_dir(self, dir_fd: int, name: str, shown: str, *, create: bool) -> int:
        for _ in range(2):
            try:
                return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            except FileNotFoundError:
                if not create:
                    raise FileNotFound(f"no such file: {shown!r}") from None
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o700, dir_fd=dir_fd)
            except OSError as exc:
                self._refuse(dir_fd, name, shown, exc)
        raise StorageUnavailable(f"{shown!r} cannot be created")

    def _open_dir(self, segments: list[str], *, create: bool) -> int:
        """A descriptor of the directory ``segments`` below the root, links refused."""
        fd = self._open_root(create=create)
        try:
            for index, segment in enumerate(segments):
                shown = "/".join(segments[: index + 1])
                child = self._open_child_dir(fd, segment, shown, create=create)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_parent(self, path: str) -> tuple[int, str]:
        """A descriptor of the existing directory holding ``path``, and the file's name.

        Raises:
            FileNotFound: the directory is missing, or a file stands in its place.
        """
        parents, name = _split(path)
        try:
            return self._open_dir(parents, create=False), name
        except NotAFile:
            raise FileNotFound(f"no such file: {path!r}") from None

    def _prune(self, segments: list[str]) -> None:
        """Remove now-empty directories on the way up to the root (best effort)."""
        while segments:
            try:
                fd = self._open_dir(segments[:-1], create=False)
            except (FileNotFound, NotAFile, SymlinkInPath, StorageUnavailable):
                return
            try:
                os.rmdir(segments[-1], dir_fd=fd)
            except OSError:
                return
            finally:
                os.close(fd)
            segments = segments[:-1]

    # -- the protocol ---------------------------------------------------------

    def stat(self, path: str) -> FileInfo | None:
        try:
            fd, name = self._open_parent(path)
        except FileNotFound:
            return None
        try:
            st = _lstat_at(fd, name)
        finally:
            os.close(fd)
        if st is None:
            return None
        if stat.S_ISLNK(st.st_mode):
            raise SymlinkInPath(f"{path!r} is a symbolic link; storage never follows links")
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise NotAFile(f"{path!r} is not a regular file")
        return _info(path, st)

    def open_read(self, path: str) -> BinaryIO:
        dir_fd, name = self._open_parent(path)
        try:
            try:
                fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
            except FileNotFoundError:
                raise FileNotFound(f"no such file: {path!r}") from None
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.EMLINK):
                    raise SymlinkInPath(
                        f"{path!r} is a symbolic link; storage never follows links"
                    ) from None
                raise StorageUnavailable(f"{path!r} cannot be read") from exc
        finally:
            os.close(dir_fd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise NotAFile(f"{path!r} is not a file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")

    def stage(self, path: str) -> _LocalStagedWrite:
        parents, name = _split(path)
        dir_fd = self._open_dir(parents, create=True)
        try:
            return _LocalStagedWrite(dir_fd, name, path)
        except BaseException:
            os.close(dir_fd)
            self._prune(parents)
            raise

    def discard_parents(self, path: str) -> None:
        """Remove directories a failed write created, if they are empty."""
        self._prune(_split(path)[0])

    def delete(self, path: str) -> None:
        fd, name = self._open_parent(path)
        try:
            st = _lstat_at(fd, name)
            if st is None:
                raise FileNotFound(f"no such file: {path!r}")
            if stat.S_ISLNK(st.st_mode):
                raise SymlinkInPath(f"{path!r} is a symbolic link; storage never follows links")
            if stat.S_ISDIR(st.st_mode):
                raise NotAFile(f"{path!r} is a directory")
            os.unlink(name, dir_fd=fd)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._prune(_split(path)[0])

    def iter_entries(self, directory: str, *, recursive: bool) -> Iterator[FileInfo]:
        segments = directory.split("/") if directory else []
        try:
            fd = self._open_dir(segments, create=False)
        except (FileNotFound, NotAFile):
            return
        try:
            yield from self._scan(fd, f"{directory}/" if directory else "", recursive)
        finally:
            os.close(fd)

    def _scan(self, fd: int, prefix: str, recursive: bool) -> Iterator[FileInfo]:
        with os.scandir(fd) as entries:
            found = [(e.name, e.stat(follow_symlinks=False)) for e in entries]
        for name, st in found:
            if name.startswith(TEMP_PREFIX) or stat.S_ISLNK(st.st_mode):
                continue
            path = prefix + name
            if stat.S_ISREG(st.st_mode):
                yield _info(path, st)
            elif stat.S_ISDIR(st.st_mode):
                if not recursive:
                    yield _info(path, st)
                    continue
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    continue
                try:
                    yield from self._scan(child, path + "/", recursive)
                finally:
                    os.close(child)

    @contextlib.contextmanager
    def commit_lock(self) -> Iterator[None]:
        with self._thread_lock:
            root = self._open_root(create=True)
            try:
                fd = os.open(
                    LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | _CLOEXEC, 0o600, dir_fd=root
                )
            finally:
                os.close(root)
            try:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)
