"""SQLite-only behaviour: a locked or unreadable file fails closed with 503."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tenantkit.db import open_database
from tenantkit.db.sqlite import SQLiteDatabase
from tenantkit.errors import DatabaseError, DatabaseUnavailable


def test_a_writer_blocked_past_the_busy_timeout_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    open_database(f"sqlite:///{path}").close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    db = SQLiteDatabase(f"sqlite:///{path}", busy_timeout=0.05)
    try:
        with pytest.raises(DatabaseUnavailable) as info, db.transaction() as tx:
            tx.set_limiter("k", 1.0)
        assert info.value.status == 503
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        holder.execute("ROLLBACK")
        with db.transaction() as tx:  # recovers as soon as the lock is gone
            tx.set_limiter("k", 1.0)
    finally:
        holder.close()
        db.close()


def test_driver_errors_inside_a_transaction_are_wrapped(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'records.db'}")
    try:
        with pytest.raises(DatabaseError) as info, db.transaction() as tx:
            tx._cur.execute("SELECT * FROM no_such_table")  # type: ignore[attr-defined]
        assert not isinstance(info.value, DatabaseUnavailable)
        assert "no_such_table" not in str(info.value)
        assert isinstance(info.value.__cause__, sqlite3.Error)
    finally:
        db.close()


def test_an_unopenable_file_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "records.db").mkdir()  # a folder where the file should be
    db = SQLiteDatabase(f"sqlite:///{tmp_path / 'records.db'}")
    try:
        with pytest.raises(DatabaseUnavailable), db.transaction() as tx:
            tx.count_tenants()
        assert db.ping() is False
    finally:
        db.close()


def test_memory_database_is_shared_by_threads() -> None:
    import threading

    db = open_database("sqlite:///:memory:")
    try:

        def write(i: int) -> None:
            with db.transaction() as tx:
                tx.set_limiter(f"k{i}", float(i))

        threads = [threading.Thread(target=write, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with db.transaction() as tx:
            assert [tx.lock_limiter(f"k{i}") for i in range(5)] == [0.0, 1.0, 2.0, 3.0, 4.0]
    finally:
        db.close()


def test_the_database_files_are_private(tmp_path: Path) -> None:
    import stat

    path = tmp_path / "records.db"
    db = open_database(f"sqlite:///{path}")
    try:
        with db.transaction() as tx:
            tx.set_limiter("k", 1.0)
        files = [path, path.with_name("records.db-wal"), path.with_name("records.db-shm")]
        for file in files:
            assert file.exists(), file
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    finally:
        db.close()


def test_the_data_folder_it_creates_is_private(tmp_path: Path) -> None:
    import os
    import stat

    old = os.umask(0o022)  # the usual umask: a plain mkdir would give 0755
    try:
        data_dir = tmp_path / "project" / ".tenantkit"
        db = open_database(f"sqlite:///{data_dir / 'tenantkit.db'}")
        db.close()
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE((tmp_path / "project").stat().st_mode) == 0o755  # parents: default

        shared = tmp_path / "shared"  # a folder that already exists keeps its mode
        shared.mkdir(mode=0o755)
        open_database(f"sqlite:///{shared / 'records.db'}").close()
        assert stat.S_IMODE(shared.stat().st_mode) == 0o755
    finally:
        os.umask(old)
