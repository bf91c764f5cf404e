"""PostgreSQL backend: one set of records shared by many gateway processes.

Installed with ``pip install 'tenantkit[postgres]'`` (psycopg 3 and
psycopg_pool); this module is imported only when a ``postgresql://`` URL is
opened. Write transactions run at READ COMMITTED on a pooled connection;
read transactions (``write=False``) at REPEATABLE READ, so, as on SQLite, a
read transaction sees one snapshot (an export is consistent across tables).
Read-modify-write steps (a rate-limit decision, a lease count) take a
transaction-scoped advisory lock on their key first, so writers on the same
key queue up while writers on other keys never wait for each other.

When the server is down, calls fail fast with
:class:`~tenantkit.errors.DatabaseUnavailable` (HTTP 503) after
``connect_timeout`` seconds; the pool keeps trying to reconnect in the
background, and the next call after the server returns succeeds without a
restart. Connections the server dropped while idle are noticed and replaced
before they are handed out.
"""

from __future__ import annotations

import os
import re
import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import IsolationLevel
from psycopg_pool import ConnectionPool, PoolTimeout

from tenantkit.db.sql import Cursor, SQLDatabase, SQLTransaction
from tenantkit.errors import ConfigurationError, DatabaseError, DatabaseUnavailable

__all__ = ["PostgresDatabase", "PostgresTransaction"]

_WRITE_ISOLATION = IsolationLevel.READ_COMMITTED
_READ_ISOLATION = IsolationLevel.REPEATABLE_READ
_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# SQLSTATE classes meaning "the server cannot serve us now; retry later":
# 08 connection exception, 53 insufficient resources, 57P operator intervention
# (shutdown, terminated backend), 40 transaction rollback (deadlock, serialization).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P", "40")


class PostgresTransaction(SQLTransaction):
    """``Transaction`` on PostgreSQL: ``%s`` markers and advisory locks.

    Args:
        cursor: A psycopg cursor inside a transaction.
        placeholder: ``%s``.
        lock_namespace: Prefix for advisory lock keys, so deployments in
            different schemas of one database never wait for each other.
    """

    # Holds the tenant row against a concurrent DELETE (not against a status
    # UPDATE) until the transaction ends; delete_tenant deletes the row first.
    _key_share = " FOR KEY SHARE"

    def __init__(self, cursor: Cursor, placeholder: str = "%s", lock_namespace: str = "") -> None:
        super().__init__(cursor, placeholder)
        self._lock_namespace = lock_namespace

    def _lock(self, key: str) -> None:
        self._exec(
            "SELECT pg_advisory_xact_lock(hashtextextended(?, 0))",
            (f"{self._lock_namespace}{key}",),
        )

    def active_leases(self, tenant_id: str, now: float) -> int:
        # One round trip for the delete and the count: the count reads the
        # snapshot from before the delete, so it skips expired leases itself.
        self._lock(f"leases:{tenant_id}")
        row = self._exec(
            "WITH expired AS (DELETE FROM leases WHERE tenant_id = ? AND expires_at <= ?)"
            " SELECT COUNT(*) FROM leases WHERE tenant_id = ? AND expires_at > ?",
            (tenant_id, now, tenant_id, now),
        ).fetchone()
        return int(row[0])


class PostgresDatabase(SQLDatabase):
    """Records in a PostgreSQL database, through a connection pool.

    Args:
        url: ``postgresql://user:password@host:port/dbname``; libpq query
            parameters pass through, and ``?schema=NAME`` selects a schema.
        schema: Schema holding tenantkit's tables (created by ``migrate``);
            several deployments, or tests, can share one database this way.
            Overrides ``?schema=`` in the URL. Default: the server's
            ``search_path`` (usually ``public``).
        min_size: Connections kept open.
        max_size: Most connections open at once (per process).
        connect_timeout: Seconds a call waits for a connection before it
            fails with ``DatabaseUnavailable``.
        reconnect_timeout: Seconds the pool keeps retrying one failed
            connection in the background before leaving it to the next call.
        application_name: Shown in ``pg_stat_activity``.

    Raises:
        ConfigurationError: for an invalid schema name.
    """

    backend = "postgres"
    placeholder = "%s"

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 5.0,
        reconnect_timeout: float = 10.0,
        application_name: str = "tenantkit",
    ) -> None:
        conninfo, url_schema = _split_schema(url)
        schema = schema or url_schema
        if schema is not None and _SCHEMA.fullmatch(schema) is None:
            raise ConfigurationError(
                f"invalid PostgreSQL schema name {schema!r}: use lowercase letters, digits, '_'"
            )
        self.url = url
        self.schema = schema
        self._conninfo = conninfo
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._reconnect_timeout = reconnect_timeout
        self._application_name = application_name
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._pid = os.getpid()
        self._guard = threading.Lock()
        self._closed = False
        self._lock_namespace = f"{schema}:" if schema else ""

    def _transaction(self, cur: Cursor) -> SQLTransaction:
        return PostgresTransaction(cur, self.placeholder, self._lock_namespace)

    # -- connections ----------------------------------------------------------

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.isolation_level = IsolationLevel.READ_COMMITTED
        conn.autocommit = False

    def _get_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        if self._pid != os.getpid():
            # A forked child must not share its parent's sockets: start afresh.
            self._pid = os.getpid()
            self._pool = None
            self._guard = threading.Lock()
        pool = self._pool
        if pool is not None:
            return pool
        with self._guard:
            if self._closed:
                raise DatabaseUnavailable("the PostgreSQL database has been closed")
            if self._pool is None:
                kwargs: dict[str, Any] = {
                    "connect_timeout": max(1, round(self._connect_timeout)),
                    "application_name": self._application_name,
                }
                if self.schema:
                    kwargs["options"] = f"-c search_path={self.schema}"
                self._pool = ConnectionPool(
                    self._conninfo,
                    kwargs=kwargs,
                    min_size=self._min_size,
                    max_size=self._max_size,
                    timeout=self._connect_timeout,
                    reconnect_timeout=self._reconnect_timeout,
                    configure=self._configure,
                    open=False,
                    name="tenantkit",
                )
                self._pool.open(wait=False)
            return self._pool

    def _checkout(self, pool: ConnectionPool[psycopg.Connection[Any]]) -> psycopg.Connection[Any]:
        """A live connection from the pool, passing over any the server dropped."""
        try:
            for _ in range(self._max_size):
                conn = pool.getconn()
                if _alive(conn):
                    return conn
                conn.close()
                pool.putconn(conn)  # the pool replaces it in the background
            return pool.getconn()
        except PoolTimeout as exc:
            raise DatabaseUnavailable("the PostgreSQL database is unavailable") from exc

    @contextmanager
    def _cursor(self, *, write: bool) -> Iterator[Cursor]:
        pool = self._get_pool()
        conn = self._checkout(pool)
        try:
            conn.isolation_level = _WRITE_ISOLATION if write else _READ_ISOLATION
            with conn.cursor() as cur:
                yield cur
                conn.commit()
        except psycopg.Error as exc:
            _rollback(conn)
            raise _wrap(exc, conn) from exc
        except BaseException:
            _rollback(conn)
            raise
        finally:
            pool.putconn(conn)

    # -- migrations -----------------------------------------------------------

    def _prepare_schema(self, cur: Cursor) -> None:
        if self.schema:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")

    def _has_migrations_table(self, cur: Cursor) -> bool:
        cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        return bool(cur.fetchone()[0])

    def _render_ddl(self, statement: str) -> str:
        # Compare text byte by byte, as SQLite does, whatever the database's
        # locale: ids sort and paginate identically on both backends.
        return re.sub(r"\bTEXT\b", 'TEXT COLLATE "C"', statement)

    # -- the rest of the protocol ---------------------------------------------

    def ping(self) -> bool:
        try:
            with self._cursor(write=False) as cur:
                cur.execute("SELECT 1")
                cur.fetchone()
        except DatabaseError:
            return False
        return True

    def close(self) -> None:
        with self._guard:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None and self._pid == os.getpid():
            pool.close(timeout=5.0)

    def __repr__(self) -> str:
        return f"PostgresDatabase({_redact(self.url)!r}, schema={self.schema!r})"


def _split_schema(url: str) -> tuple[str, str | None]:
    """``url`` without its ``schema`` query parameter, and that parameter."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _alive(conn: psycopg.Connection[Any]) -> bool:
    """Whether a pooled connection still works, without a round trip when idle.

    An idle connection has nothing to read; if its socket is readable the
    server sent something (usually a termination notice and EOF), and only
    then is a round trip paid to find out.
    """
    if conn.closed or conn.broken:
        return False
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
        if readable:
            ConnectionPool.check_connection(conn)
    except (psycopg.Error, OSError, ValueError):
        return False
    return True


def _rollback(conn: psycopg.Connection[Any]) -> None:
    with suppress(psycopg.Error):
        conn.rollback()


def _wrap(exc: psycopg.Error, conn: psycopg.Connection[Any]) -> DatabaseError:
    """A driver error as tenantkit's error; the driver's text stays in the cause."""
    state = exc.sqlstate or ""
    if (
        conn.broken
        or conn.closed
        or isinstance(exc, psycopg.InterfaceError)
        or state.startswith(_UNAVAILABLE_SQLSTATES)
        or (isinstance(exc, psycopg.OperationalError) and not state)
    ):
        return DatabaseUnavailable("the PostgreSQL database is unavailable")
    return DatabaseError("the PostgreSQL database refused the operation")
