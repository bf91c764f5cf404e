"""PostgreSQL-only behaviour: outages fail closed with 503 and heal by themselves."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tenantkit.db import Tenant, open_database
from tenantkit.db.postgres import PostgresDatabase
from tenantkit.errors import ConfigurationError, DatabaseUnavailable
from tests.conftest import POSTGRES_URL
from tests.pg import drop_schema, fresh_postgres_database, new_schema_name, require_postgres

pytestmark = pytest.mark.postgres

T0 = 1_767_225_600.0


class TcpProxy:
    """Forwards a loopback port to the PostgreSQL server; ``stop`` cuts every
    connection and refuses new ones, ``start`` serves again on the same port."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            if self._listener is not None:
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


def with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = (netloc[-1].rsplit(":", 1)[0]) or "127.0.0.1"
    new = f"{host}:{port}" if len(netloc) == 1 else f"{netloc[0]}@{host}:{port}"
    return urlunsplit(parts._replace(netloc=new))


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    require_postgres(POSTGRES_URL)
    parts = urlsplit(POSTGRES_URL)
    p = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    p.start()
    try:
        yield p
    finally:
        p.stop()


def until_ok(db: PostgresDatabase, deadline_s: float = 60.0) -> int:
    """Retry a write until the database takes it; returns how many attempts failed."""
    failures = 0
    give_up = time.monotonic() + deadline_s
    while True:
        try:
            with db.transaction() as tx:
                tx.set_limiter("probe", T0)
            return failures
        except DatabaseUnavailable:
            failures += 1
            if time.monotonic() > give_up:
                raise
            time.sleep(0.2)


def test_outage_fails_closed_then_recovers_without_a_restart(proxy: TcpProxy) -> None:
    schema = new_schema_name()
    db = PostgresDatabase(
        with_port(POSTGRES_URL, proxy.port),
        schema=schema,
        connect_timeout=1,
        reconnect_timeout=2,
    )
    try:
        db.migrate()
        with db.transaction() as tx:
            tx.create_tenant(Tenant("acme-corp", "Acme", "free", "active", T0, T0))

        proxy.stop()  # the server "goes away": connections cut, new ones refused
        with pytest.raises(DatabaseUnavailable) as info, db.transaction() as tx:
            tx.get_tenant("acme-corp")
        assert info.value.status == 503
        assert str(info.value) == "the PostgreSQL database is unavailable"  # no driver text
        assert info.value.__cause__ is not None
        assert db.ping() is False
        with pytest.raises(DatabaseUnavailable):
            until_ok(db, deadline_s=0)

        proxy.start()  # the server is back, same object, no restart
        until_ok(db)
        assert db.ping() is True
        with db.transaction() as tx:
            assert tx.get_tenant("acme-corp") is not None
    finally:
        db.close()
        drop_schema(POSTGRES_URL, schema)


def test_connections_terminated_while_idle_are_replaced_unseen() -> None:
    app = f"tk-test-{uuid.uuid4().hex[:8]}"
    db = fresh_postgres_database(POSTGRES_URL, application_name=app, min_size=2, max_size=4)
    try:
        with db.transaction() as tx:
            tx.set_limiter("k", 1.0)
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            # pg_terminate_backend in the select list runs only for the rows kept
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s AND pid <> pg_backend_pid()",
                (app,),
            ).fetchall()
            assert killed
            assert all(row[0] for row in killed)
            for _ in range(100):  # wait until the backends have really exited
                left = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,)
                ).fetchone()
                if left is not None and left[0] == 0:
                    break
                time.sleep(0.05)
        for value in (2.0, 3.0, 4.0):  # every pooled connection was dead; none is used
            with db.transaction() as tx:
                tx.set_limiter("k", value)
        with db.transaction() as tx:
            assert tx.lock_limiter("k") == 4.0
    finally:
        db.close()


def test_nothing_listening_is_unavailable_not_a_crash() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    db = PostgresDatabase(with_port(POSTGRES_URL, dead_port), connect_timeout=1)
    try:
        with pytest.raises(DatabaseUnavailable), db.transaction() as tx:
            tx.count_tenants()
        assert db.ping() is False
    finally:
        db.close()


def test_open_database_picks_postgres_and_honours_schema_in_url() -> None:
    require_postgres(POSTGRES_URL)
    schema = new_schema_name()
    sep = "&" if "?" in POSTGRES_URL else "?"
    db = open_database(f"{POSTGRES_URL}{sep}schema={schema}")
    try:
        assert isinstance(db, PostgresDatabase)
        assert db.backend == "postgres"
        assert db.schema == schema
        with psycopg.connect(POSTGRES_URL) as conn:
            found = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s"
                " AND table_name = 'tenants'",
                (schema,),
            ).fetchone()
        assert found == (1,)
    finally:
        db.close()
        drop_schema(POSTGRES_URL, schema)


@pytest.mark.parametrize("schema", ["Public", "x; DROP TABLE t", "1abc", "a" * 64])
def test_invalid_schema_names_are_refused(schema: str) -> None:
    with pytest.raises(ConfigurationError, match="schema"):
        PostgresDatabase("postgresql://u@h/db", schema=schema)


def test_repr_hides_the_password() -> None:
    db = PostgresDatabase("postgresql://user:hunter2@db.example/records")
    assert "hunter2" not in repr(db)
    db.close()


def test_unknown_url_scheme_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="mysql"):
        open_database("mysql://x/y")


def test_gateway_answers_503_during_an_outage_and_recovers(proxy: TcpProxy) -> None:
    import httpx

    from tenantkit.auth import KeyManager
    from tenantkit.config import get_settings
    from tenantkit.gateway import create_gateway
    from tenantkit.tenants import TenantService
    from tenantkit.testing import running_server
    from tenantkit.workers import TenantApp

    app = TenantApp("outage")

    @app.tenant_function(timeout=10)
    def ping(n: int = 0) -> int:
        return n

    schema = new_schema_name()
    db = PostgresDatabase(
        with_port(POSTGRES_URL, proxy.port), schema=schema, connect_timeout=1, reconnect_timeout=2
    )
    settings = get_settings(signing_key="outage-test-secret-" * 3, usage_flush_interval=0.1)
    try:
        db.migrate()
        _, issued = TenantService(db, KeyManager(db, settings)).create("acme-corp", "Acme", "pro")
        headers = {"Authorization": f"Bearer {issued.api_key}"}
        ok = 0
        with (
            running_server(create_gateway(app, settings, db=db)) as url,
            httpx.Client(base_url=url, timeout=30) as client,
        ):
            assert client.post("/functions/ping", json={"n": 1}, headers=headers).status_code == 200
            ok += 1

            proxy.stop()
            for _ in range(3):
                response = client.post("/functions/ping", json={"n": 2}, headers=headers)
                assert response.status_code == 503
                assert response.headers["content-type"].startswith("application/problem+json")
                text = response.text.lower()
                assert "psycopg" not in text
                assert "connection" not in text
            time.sleep(1)  # the meter's flushes fail meanwhile; it must keep the event

            proxy.start()
            give_up = time.monotonic() + 60
            while client.post("/functions/ping", json={"n": 3}, headers=headers).status_code != 200:
                assert time.monotonic() < give_up, "the gateway did not recover"
                time.sleep(0.2)
            ok += 1
        with db.transaction(write=False) as tx:
            assert tx.count_usage_events("acme-corp") == ok
    finally:
        db.close()
        drop_schema(POSTGRES_URL, schema)
