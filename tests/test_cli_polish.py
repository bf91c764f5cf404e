"""What a user acceptance pass found: one-line errors everywhere, whole values
in tables, the README's CLI matching the commands, deleted tenants' usage."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import click
import httpx
import pytest
from click.testing import CliRunner, Result

from tenantkit import AsyncClient, Client
from tenantkit.cli import main
from tenantkit.cli._target import RemoteTarget
from tenantkit.config import DEFAULT_TIERS, get_settings, validate_tenant_id
from tenantkit.db import Database, Tenant, UsageEvent, open_database
from tenantkit.db.sql import tombstone_id
from tenantkit.errors import InvalidTenantId, ServiceUnreachable
from tenantkit.metering.report import archived_usage_reports
from tenantkit.storage import storage_for
from tests.conftest import BACKENDS, POSTGRES_URL

README = Path(__file__).resolve().parent.parent / "README.md"
SECRET = "polish-test-secret-" * 3
DAY_T0 = 1_767_268_800.0  # 2026-01-01 12:00 UTC


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


def one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment: a temp data dir and working directory, SQLite, no URL."""
    for name in list(os.environ):
        if name.startswith("TENANTKIT_") or name in {"JWT_SECRET_KEY", "JWT_ALGORITHM"}:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TENANTKIT_DATA_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("TENANTKIT_SIGNING_KEY", SECRET)
    return tmp_path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- 1: the clients' transport errors ----------------------------------------


def test_client_unreachable_is_one_tenantkit_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, "mt_x", timeout=5) as client, pytest.raises(ServiceUnreachable) as info:
        client.health()
    message = str(info.value)
    assert message.startswith(f"cannot reach {url}/health: connection failed")
    assert "\n" not in message
    assert isinstance(info.value.__cause__, httpx.TransportError)
    assert info.value.request_id is None
    assert info.value.url == f"{url}/health"


def test_async_client_unreachable_is_one_tenantkit_error() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    async def call() -> None:
        async with AsyncClient("https://api.example.com", "mt_x") as client:
            client._http._transport = httpx.MockTransport(timeout)
            await client.call("embed", texts=["a"])

    with pytest.raises(ServiceUnreachable, match=r"^cannot reach https://api\.example\.com/"):
        asyncio.run(call())


def test_remote_target_unreachable_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    target = RemoteTarget(url, "k" * 20)
    try:
        with pytest.raises(ServiceUnreachable, match=f"cannot reach {url}/admin/tenants"):
            target.list_tenants()
    finally:
        target.close()


# -- 2: serve ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("raise RuntimeError('boom')\n", "RuntimeError: boom"),
        ("import not_a_module_tenantkit\n", "ModuleNotFoundError: No module named"),
    ],
)
def test_serve_app_that_fails_to_import_is_one_line(env: Path, source: str, message: str) -> None:
    (env / "broken.py").write_text(source)
    result = run("serve", "broken.py")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert line.startswith("Error: cannot load broken.py: ")
    assert message in line
    assert line.endswith("(run with --debug for the traceback)")


def test_a_bad_setting_in_the_environment_is_one_line(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTKIT_JWT_ALGORITHM", "RS256")
    result = run("tenant", "list")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert line.startswith("Error: invalid settings: TENANTKIT_JWT_ALGORITHM: ")


def test_serve_port_in_use_is_one_line_before_the_banner(env: Path) -> None:
    (env / "app.py").write_text("from tenantkit import TenantApp\napp = TenantApp('t')\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("serve", "app.py", "--port", str(port))
    assert result.exit_code == 1
    assert "Serving" not in result.stdout
    line = one_error_line(result)
    assert f"cannot listen on 127.0.0.1:{port}" in line
    assert "--port" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "'--port'"),
        (["--port", "-1"], "'--port'"),
        (["--log-level", "loud"], "'loud' is not one of"),
    ],
)
def test_serve_option_values_are_checked(env: Path, args: list[str], message: str) -> None:
    result = run("serve", "app.py", *args)
    assert result.exit_code == 2
    assert message in one_error_line(result)


# -- 3: usage errors -------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tenant", "info"], "Missing option '--tenant-id'"),
        (["usage", "show", "--tenant-id", "acme", "--period", "week"], "'week' is not one of"),
        (["key", "rotate", "--tenant-id", "acme", "--grace", "soon"], "not a duration"),
        (["db", "import", "no-such-file.jsonl"], "does not exist"),
        (["tenant", "frobnicate"], "No such command 'frobnicate'"),
        (["tenant", "list", "--bogus"], "No such option '--bogus'"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(env: Path, args: list[str], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 2
    line = one_error_line(result)
    assert message in line
    assert "--help'" in line


def test_help_and_version_still_exit_0(env: Path) -> None:
    assert run("--help").exit_code == 0
    assert run("--version").exit_code == 0
    result = run("tenant")
    assert result.exit_code in (0, 2)
    assert "Usage:" in result.output


def test_delete_without_yes_checks_the_tenant_first(env: Path) -> None:
    result = run("tenant", "delete", "--tenant-id", "nobody-here", input="y\n")
    assert result.exit_code == 1
    assert "[y/N]" not in result.output
    assert one_error_line(result) == "Error: tenant 'nobody-here' not found"


def test_delete_declined_is_aborted_and_keeps_the_tenant(env: Path) -> None:
    assert run("tenant", "create", "--tenant-id", "acme-corp", "--name", "A").exit_code == 0
    result = run("tenant", "delete", "--tenant-id", "acme-corp", input="n\n")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == "Aborted."
    assert run("tenant", "info", "--tenant-id", "acme-corp").exit_code == 0


# -- 4: scopes, db import, the README ------------------------------------------


@pytest.mark.parametrize("scope", ["a b", "admin", "functions:", "functions:9x", "files:exec"])
def test_key_create_rejects_unknown_scopes(env: Path, scope: str) -> None:
    assert run("tenant", "create", "--tenant-id", "acme-corp", "--name", "A").exit_code == 0
    result = run("key", "create", "--tenant-id", "acme-corp", "--scope", scope)
    assert result.exit_code == 2
    line = one_error_line(result)
    assert f"unknown scope {scope!r}" in line
    assert "functions:<function name>" in line


def test_key_create_accepts_every_documented_scope(env: Path) -> None:
    assert run("tenant", "create", "--tenant-id", "acme-corp", "--name", "A").exit_code == 0
    scopes = ["tenant:read", "usage:read", "files:read", "files:write", "functions:embed_v2"]
    args = [a for s in scopes for a in ("--scope", s)]
    result = run("key", "create", "--tenant-id", "acme-corp", *args, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["key"]["scopes"] == scopes


def export_with_a_key(env: Path) -> Path:
    assert run("tenant", "create", "--tenant-id", "acme-corp", "--name", "A").exit_code == 0
    backup = env / "backup.jsonl"
    assert run("db", "export", "-o", str(backup)).exit_code == 0
    return backup


def test_db_import_warns_without_a_signing_key(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backup = export_with_a_key(env)
    monkeypatch.delenv("TENANTKIT_SIGNING_KEY")
    monkeypatch.setenv("TENANTKIT_DATA_DIR", str(env / "restored"))
    result = run("db", "import", str(backup), "--json")
    assert result.exit_code == 0, result.output
    warning = result.stderr.strip().splitlines()
    assert len(warning) == 1
    assert warning[0].startswith("Warning: no signing key in ")
    assert "TENANTKIT_SIGNING_KEY" in warning[0]
    assert json.loads(result.stdout)["rows"] > 0


def test_db_import_is_quiet_with_a_signing_key(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backup = export_with_a_key(env)
    monkeypatch.setenv("TENANTKIT_DATA_DIR", str(env / "restored"))
    result = run("db", "import", str(backup), "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


def readme_section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def readme_cli_lines() -> list[str]:
    section = readme_section("CLI")
    block = section.split("```", 2)[1]
    return [line for line in block.splitlines() if line.startswith("tenantkit ")]


def command_for(words: list[str]) -> click.Command:
    command: click.Command = main
    for word in words:
        if not isinstance(command, click.Group) or word not in command.commands:
            break
        command = command.commands[word]
    return command


def test_readme_cli_lines_name_real_commands_and_options() -> None:
    lines = readme_cli_lines()
    assert len(lines) >= 20
    for line in lines:
        words = line.split("#")[0].split()[1:]
        command = command_for([w for w in words if re.fullmatch(r"[a-z]+", w)])
        assert not isinstance(command, click.Group), line
        known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
        for option in re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", line.split("#")[0]):
            assert option in known, f"{line!r}: {option} is not an option of {command.name}"


def test_readme_documents_what_the_acceptance_pass_asked() -> None:
    cli = " ".join(readme_section("CLI").split())
    for text in [
        "db export -o backup.jsonl",
        "--yes",
        "--grace 0s",
        "every key",
        "no `--json`",
        "`functions:<name>`",
        "`tenant:read`",
        "`usage:read`",
        "`files:read`",
        "`files:write`",
        "full access",
        "TENANTKIT_AUTH_CACHE_TTL",
        "not metered",
        "signing-secret",
        "--deleted",
    ]:
        assert text in cli, text
    assert "`TENANTKIT_AUTH_CACHE_TTL`" in readme_section("Settings")


# -- 5: deleted tenants' usage ---------------------------------------------------


def seed_deleted(db: Database) -> list[str]:
    """acme-corp with usage, deleted twice (re-created in between); another tenant too."""
    archives = []
    for n, deleted_at in enumerate((DAY_T0 + 600, DAY_T0 + 1200)):
        with db.transaction() as tx:
            tx.create_tenant(Tenant("acme-corp", "Acme", "free", "active", DAY_T0, DAY_T0))
            tx.create_tenant(Tenant(f"acme-corp-{n}", "Other", "free", "active", DAY_T0, DAY_T0))
            events = [
                UsageEvent(f"r{n}-{i}", "acme-corp", "embed", 200, DAY_T0 + i, DAY_T0 + i + 1, 1.0)
                for i in range(n + 1)
            ]
            events.append(UsageEvent(f"o{n}", f"acme-corp-{n}", "embed", 200, DAY_T0, DAY_T0))
            tx.record_usage(events)
        with db.transaction() as tx:
            assert tx.delete_tenant("acme-corp", now=deleted_at)
        archives.append(tombstone_id("acme-corp", deleted_at))
    return archives


def test_archived_tenant_ids_and_reports(database: Database) -> None:
    archives = seed_deleted(database)
    with database.transaction(write=False) as tx:
        assert tx.archived_tenant_ids("acme-corp") == archives
        assert tx.archived_tenant_ids("acme") == []
        assert tx.archived_tenant_ids("acme-corp-0") == []
    reports = archived_usage_reports(database, "acme-corp", date="2026-01-01")
    assert [r["tenant_id"] for r in reports] == archives
    assert [r["totals"]["requests"] for r in reports] == [1, 2]
    with pytest.raises(InvalidTenantId):
        archived_usage_reports(database, archives[0])


@pytest.fixture(params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, env: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{env / 'cli.db'}"
        monkeypatch.setenv("TENANTKIT_DATABASE_URL", url)
        yield url
        return
    from tests.pg import drop_schema, new_schema_name, require_postgres

    require_postgres(POSTGRES_URL)
    schema = new_schema_name()
    sep = "&" if "?" in POSTGRES_URL else "?"
    url = f"{POSTGRES_URL}{sep}schema={schema}"
    monkeypatch.setenv("TENANTKIT_DATABASE_URL", url)
    try:
        yield url
    finally:
        drop_schema(POSTGRES_URL, schema)


def test_usage_show_deleted(database_url: str) -> None:
    db = open_database(database_url)
    try:
        archives = seed_deleted(db)
    finally:
        db.close()
    base = ["usage", "show", "--tenant-id", "acme-corp", "--date", "2026-01-01"]
    result = run(*base, "--deleted", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["archived_ids"] == archives
    assert [r["totals"]["requests"] for r in data["reports"]] == [1, 2]
    table = run(*base, "--deleted")
    assert table.exit_code == 0, table.output
    for archive in archives:
        assert archive in table.stdout
    csv_lines = run(*base, "--deleted", "--format", "csv").stdout.splitlines()
    assert csv_lines[0].startswith("tenant_id,scope,")
    assert {line.split(",")[0] for line in csv_lines[1:]} == set(archives)
    assert run(*base).exit_code == 1  # the live tenant is gone
    nothing = run("usage", "show", "--tenant-id", "never-deleted", "--deleted")
    assert nothing.exit_code == 0
    assert "No usage" in nothing.stdout


def test_usage_show_deleted_with_url_is_one_line(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTKIT_ADMIN_KEY", "admin-" + "k" * 30)
    result = run("usage", "show", "--tenant-id", "acme-corp", "--deleted", "--url", "https://x.y")
    assert result.exit_code == 1
    assert "--deleted" in one_error_line(result)


# -- 6: tables never cut values -----------------------------------------------


def test_tables_show_long_values_whole(env: Path) -> None:
    email = "billing.department.of.acme." + "x" * 60 + "@example.com"
    created = run(
        "tenant", "create", "--tenant-id", "acme-corp", "--name", "Acme", "--email", email
    )
    assert created.exit_code == 0
    assert email in run("tenant", "info", "--tenant-id", "acme-corp").stdout
    assert email in run("tenant", "list").stdout

    settings = get_settings()
    db = open_database(settings.resolved_database_url())
    path = "reports/" + "/".join(["quarterly-results-by-region"] * 4) + "/summary.json"
    try:
        storage_for("acme-corp", DEFAULT_TIERS["free"], settings, db).write_text(path, "{}")
        now = time.time()
        with db.transaction() as tx:
            tx.record_usage([UsageEvent("r1", "acme-corp", "embed", 200, now, now + 1, 1.0)])
    finally:
        db.close()
    assert path in run("storage", "ls", "--tenant-id", "acme-corp").stdout
    usage = run("usage", "show", "--tenant-id", "acme-corp").stdout
    hour = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:00:00Z")
    assert hour in usage
    assert "…" not in usage


# -- 7: messages -----------------------------------------------------------------


def test_long_tenant_id_message_is_well_formed() -> None:
    with pytest.raises(InvalidTenantId) as info:
        validate_tenant_id("A" * 100)
    shown = re.search(r"invalid tenant id ('[^']*'):", str(info.value))
    assert shown is not None, str(info.value)
    assert shown.group(1).endswith("...'")
    assert len(shown.group(1)) < 80


def test_storage_unknown_tenant_says_not_found(env: Path) -> None:
    result = run("storage", "ls", "--tenant-id", "nope")
    assert result.exit_code == 1
    assert one_error_line(result) == "Error: tenant 'nope' not found"
