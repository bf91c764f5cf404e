"""SQLite backend: the default, one file shared by every local process.

The file runs in WAL mode with a busy timeout, so several ``tenantkit serve``
workers and the CLI can use it at once. Write transactions start with
``BEGIN IMMEDIATE``: they take the write lock up front, so a read-modify-write
(a rate-limit decision, a lease count) can never interleave with another.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tenantkit.db.sql import Cursor, SQLDatabase
from tenantkit.errors import DatabaseError, DatabaseUnavailable

__all__ = ["SQLiteDatabase"]


class SQLiteDatabase(SQLDatabase):
    """Records in one SQLite file.

    Args:
        url: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or
            ``sqlite:///:memory:`` (one connection, for tests).
        busy_timeout: Seconds a writer waits for the lock before failing.
    """

    backend = "sqlite"

    def __init__(self, url: str, *, busy_timeout: float = 30.0) -> None:
        self.url = url
        path = url.removeprefix("sqlite:///")
        self._memory = path == ":memory:"
        self.path = Path(path)
        if not self._memory:
            _make_private_dir(self.path.parent)
            _create_private(self.path)
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._shared: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._all: list[sqlite3.Connection] = []
        self._pid = os.getpid()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            ":memory:" if self._memory else str(self.path),
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        if not self._memory:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        with self._lock:
            self._all.append(conn)
        return conn

    def _connection(self) -> sqlite3.Connection:
        if self._pid != os.getpid():
            # A forked child must not use its parent's connections: start afresh.
            self._pid = os.getpid()
            self._local = threading.local()
            self._shared = None
            self._all = []
        if self._memory:
            with self._lock:
                if self._shared is None:
                    self._shared = self._connect()
                return self._shared
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    @contextmanager
    def _cursor(self, *, write: bool) -> Iterator[Cursor]:
        try:
            conn = self._connection()
        except sqlite3.Error as exc:
            raise DatabaseUnavailable(f"cannot open the SQLite database at {self.path}") from exc
        guard = self._lock if self._memory else _NO_LOCK
        with guard:
            cur = conn.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.OperationalError as exc:
                raise DatabaseUnavailable("the SQLite database is locked or unreadable") from exc
            try:
                yield cur
            except sqlite3.Error as exc:
                _rollback(conn)
                raise wrap_sqlite_errors(exc) from exc
            except BaseException:
                _rollback(conn)
                raise
            else:
                try:
                    cur.execute("COMMIT")
                except sqlite3.Error as exc:
                    _rollback(conn)
                    raise DatabaseUnavailable("could not commit to the SQLite database") from exc
            finally:
                cur.close()

    def ping(self) -> bool:
        try:
            self._connection().execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
            self._shared = None
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"SQLiteDatabase({self.url!r})"


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_LOCK = _NoLock()


def _make_private_dir(folder: Path) -> None:
    """Create the database's folder (the data dir) readable by its owner only.

    Missing parents above it get the default mode; a folder that already
    exists keeps its mode.
    """
    if folder.is_dir():
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.mkdir(mode=0o700, exist_ok=True)


def _create_private(path: Path) -> None:
    """Create the database file readable by its owner only (it holds tenants' emails).

    SQLite gives the ``-wal`` and ``-shm`` files it creates the same mode. An
    existing file keeps its mode.
    """
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # unopenable: the first transaction reports it as DatabaseUnavailable
    os.close(fd)


def _rollback(conn: sqlite3.Connection) -> None:
    with suppress(sqlite3.Error):
        conn.rollback()


# Primary result codes meaning "cannot reach the data now", not "bad request":
# SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN.
_UNAVAILABLE_CODES = frozenset({5, 6, 10, 13, 14})


def wrap_sqlite_errors(exc: sqlite3.Error) -> DatabaseError:
    """A driver error as tenantkit's error (the caller chains the driver's as the cause)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _UNAVAILABLE_CODES:
        return DatabaseUnavailable("the SQLite database is unavailable")
    return DatabaseError("the SQLite database refused the operation")
