"""`tenantkit db ...` through click's runner, and once as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tenantkit.cli import main
from tenantkit.db import Tenant, UsageEvent, open_database
from tenantkit.db.sql import MIGRATIONS
from tests.conftest import BACKENDS, POSTGRES_URL

T0 = 1_767_225_600.0
DAY = 86_400.0


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cli.db'}"
        return
    from tests.pg import drop_schema, new_schema_name, require_postgres

    require_postgres(POSTGRES_URL)
    schema = new_schema_name()
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}schema={schema}"
    drop_schema(POSTGRES_URL, schema)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def seed(url: str, now: float) -> None:
    db = open_database(url)
    try:
        with db.transaction() as tx:
            tx.create_tenant(Tenant("acme-corp", "Acme", "free", "active", T0, T0))
            tx.record_usage(
                [
                    UsageEvent(f"r{i}", "acme-corp", "embed", 200, now - i * DAY, now - i * DAY)
                    for i in range(10)
                ]
            )
    finally:
        db.close()


def test_migrate(url: str) -> None:
    code, stdout, _ = run("db", "migrate", "--database-url", url, "--json")
    assert code == 0
    assert json.loads(stdout)["schema_version"] == len(MIGRATIONS)
    code, stdout, _ = run("db", "migrate", "--database-url", url)
    assert code == 0
    assert "up to date" in stdout


def test_export_import_round_trip(url: str, tmp_path: Path) -> None:
    seed(url, T0)
    backup = tmp_path / "backup.jsonl"
    code, stdout, _ = run("db", "export", "--database-url", url, "-o", str(backup), "--json")
    assert code == 0
    summary = json.loads(stdout)
    assert summary["tables"] == {"tenants": 1, "usage_events": 10, "usage_daily": 10}

    other = f"sqlite:///{tmp_path / 'restored.db'}"
    for _ in range(2):  # idempotent
        code, stdout, _ = run("db", "import", str(backup), "--database-url", other, "--json")
        assert code == 0
        assert json.loads(stdout)["rows"] == 21
    code, stdout, stderr = run("db", "export", "--database-url", other)
    assert code == 0
    assert stdout.splitlines()[1:] == backup.read_text().splitlines()[1:]
    assert "Exported 21 rows" in stderr


def test_prune(url: str) -> None:
    import time

    seed(url, time.time())
    code, stdout, _ = run("db", "prune", "--days", "3.5", "--database-url", url, "--json")
    assert code == 0
    assert json.loads(stdout)["deleted"] == 6  # ages 4..9 days
    code, stdout, _ = run("db", "prune", "--days", "3.5", "--database-url", url)
    assert code == 0
    assert "Pruned 0 usage events" in stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["db", "migrate", "--database-url", "mysql://x/y"], "unsupported database URL"),
        (["db", "import", "BAD", "--database-url", "DB"], "invalid export: line 1"),
        (["db", "prune", "--days", "0", "--database-url", "DB"], "0"),
    ],
)
def test_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("hello\n")
    args = [
        str(bad) if a == "BAD" else f"sqlite:///{tmp_path / 'x.db'}" if a == "DB" else a
        for a in args
    ]
    code, stdout, stderr = run(*args)
    assert code != 0
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1 or "Usage:" in stderr
    assert "Traceback" not in stderr + stdout


@pytest.mark.slow
def test_export_pipes_into_import_as_real_processes(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'a.db'}"
    target = f"sqlite:///{tmp_path / 'b.db'}"
    seed(source, T0)
    cli = [sys.executable, "-c", "from tenantkit.cli import main; main()"]
    exported = subprocess.run(
        [*cli, "db", "export", "--database-url", source],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    imported = subprocess.run(
        [*cli, "db", "import", "-", "--database-url", target, "--json"],
        input=exported.stdout,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(imported.stdout)["rows"] == 21
    broken = subprocess.run(
        [*cli, "db", "import", "-", "--database-url", target],
        input="garbage",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert broken.returncode == 1
    assert broken.stderr.strip() == "Error: invalid export: line 1 is not a tenantkit export header"
