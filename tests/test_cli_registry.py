"""The tenant and key commands: through click's runner, as a real subprocess, and
against a real gateway's admin API with ``--url``."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st

from tenantkit.auth import KeyManager
from tenantkit.auth.signing import GENERATED_KEY_FILES
from tenantkit.cli import main
from tenantkit.cli._target import LocalTarget, RemoteTarget, open_target
from tenantkit.cli.key import SAVE_NOTICE, parse_duration
from tenantkit.config import get_settings
from tenantkit.db import open_database
from tenantkit.errors import (
    AuthenticationError,
    ConfigurationError,
    KeyNotFound,
    TenantAlreadyExists,
    TenantNotFound,
    TenantSuspended,
    UnknownTier,
)

SECRET = "cli-test-secret-" * 3
TENANTKIT = Path(sys.executable).parent / "tenantkit"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A clean environment: a temp data dir and working directory, no remote target."""
    for name in list(os.environ):
        if name.startswith("TENANTKIT_") or name in {"JWT_SECRET_KEY", "JWT_ALGORITHM"}:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    data_dir = tmp_path / "state"
    monkeypatch.setenv("TENANTKIT_DATA_DIR", str(data_dir))
    monkeypatch.setenv("TENANTKIT_SIGNING_KEY", SECRET)
    return {"TENANTKIT_DATA_DIR": str(data_dir), "TENANTKIT_SIGNING_KEY": SECRET}


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def run_json(*args: str) -> Any:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def verify(api_key: str) -> str:
    """Which tenant a key verifies as, against the CLI's database."""
    settings = get_settings()
    db = open_database(settings.resolved_database_url())
    try:
        return KeyManager(db, settings).verify(api_key).tenant_id
    finally:
        db.close()


# -- click runner ---------------------------------------------------------------


def test_tenant_create_prints_the_key_once(env: dict[str, str]) -> None:
    result = run(
        "tenant", "create", "--tenant-id", "acme-corp", "--name", "Acme Corporation",
        "--tier", "pro", "--email", "admin@acme.com",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    [key_line] = [line for line in lines if line.startswith("API key: ")]
    api_key = key_line.removeprefix("API key: ")
    assert api_key.startswith("mt_")
    assert "save it, it is not shown again" in result.stdout.lower()
    assert SAVE_NOTICE in result.stdout
    assert "acme-corp" in result.stdout
    assert verify(api_key) == "acme-corp"
    # never shown again
    for args in (("tenant", "info"), ("key", "list")):
        shown = run(*args, "--tenant-id", "acme-corp")
        assert shown.exit_code == 0
        assert api_key not in shown.output
        assert api_key[-20:] not in shown.output


def test_json_lifecycle(env: dict[str, str]) -> None:
    created = run_json(
        "tenant", "create", "--tenant-id", "acme-corp", "--name", "Acme", "--tier", "pro"
    )
    assert set(created) == {"tenant", "api_key", "key"}
    assert created["tenant"]["tenant_id"] == "acme-corp"
    assert created["tenant"]["tier"] == "pro"
    assert created["key"]["tenant_id"] == "acme-corp"
    api_key = created["api_key"]
    assert verify(api_key) == "acme-corp"

    run_json("tenant", "create", "--tenant-id", "beta-co", "--name", "Beta")
    listed = run_json("tenant", "list")
    assert [t["tenant_id"] for t in listed["tenants"]] == ["acme-corp", "beta-co"]
    assert listed["next_after"] is None
    page = run_json("tenant", "list", "--limit", "1")
    assert [t["tenant_id"] for t in page["tenants"]] == ["acme-corp"]
    assert page["next_after"] == "acme-corp"
    page = run_json("tenant", "list", "--limit", "1", "--after", "acme-corp")
    assert [t["tenant_id"] for t in page["tenants"]] == ["beta-co"]

    info = run_json("tenant", "info", "--tenant-id", "acme-corp")
    assert info["tenant"]["name"] == "Acme"
    assert [k["key_id"] for k in info["keys"]] == [created["key"]["key_id"]]

    upgraded = run_json("tenant", "upgrade", "--tenant-id", "acme-corp", "--tier", "enterprise")
    assert upgraded["tenant"]["tier"] == "enterprise"

    suspended = run_json("tenant", "suspend", "--tenant-id", "acme-corp", "--reason", "unpaid")
    assert suspended["tenant"]["status"] == "suspended"
    assert suspended["tenant"]["suspended_reason"] == "unpaid"
    with pytest.raises(TenantSuspended):
        verify(api_key)
    resumed = run_json("tenant", "resume", "--tenant-id", "acme-corp")
    assert resumed["tenant"]["status"] == "active"
    assert verify(api_key) == "acme-corp"

    deleted = run_json("tenant", "delete", "--tenant-id", "acme-corp", "--yes")
    assert deleted == {"deleted": True, "tenant_id": "acme-corp"}
    with pytest.raises(AuthenticationError):
        verify(api_key)


def test_key_commands(env: dict[str, str]) -> None:
    first = run_json("tenant", "create", "--tenant-id", "acme-corp", "--name", "Acme")
    extra = run_json(
        "key", "create", "--tenant-id", "acme-corp", "--label", "ci",
        "--scope", "files:read", "--scope", "functions:embed", "--expires-in", "7d",
    )  # fmt: skip
    assert extra["key"]["label"] == "ci"
    assert extra["key"]["scopes"] == ["files:read", "functions:embed"]
    assert extra["key"]["expires_at"] - extra["key"]["created_at"] == pytest.approx(7 * 86400, 1)
    assert verify(extra["api_key"]) == "acme-corp"

    listed = run_json("key", "list", "--tenant-id", "acme-corp")
    assert [k["key_id"] for k in listed["keys"]] == [
        first["key"]["key_id"],
        extra["key"]["key_id"],
    ]
    assert all("api_key" not in k for k in listed["keys"])

    revoked = run_json(
        "key", "revoke", "--tenant-id", "acme-corp", "--key-id", extra["key"]["key_id"]
    )
    assert revoked["key"]["revoked_at"] is not None
    with pytest.raises(AuthenticationError):
        verify(extra["api_key"])

    rotated = run_json(
        "key", "rotate", "--tenant-id", "acme-corp", "--key-id", first["key"]["key_id"],
        "--grace", "24h",
    )  # fmt: skip
    assert rotated["grace"] == 86400
    assert verify(first["api_key"]) == "acme-corp"  # inside the grace period
    assert verify(rotated["api_key"]) == "acme-corp"
    old = next(
        k for k in run_json("key", "list", "--tenant-id", "acme-corp")["keys"]
        if k["key_id"] == first["key"]["key_id"]
    )  # fmt: skip
    assert old["revoked_at"] == pytest.approx(rotated["key"]["created_at"] + 86400, abs=1)

    at_once = run_json("key", "rotate", "--tenant-id", "acme-corp")
    with pytest.raises(AuthenticationError):
        verify(rotated["api_key"])
    assert verify(at_once["api_key"]) == "acme-corp"


def test_human_output(env: dict[str, str]) -> None:
    created = run_json("tenant", "create", "--tenant-id", "acme-corp", "--name", "[red]Acme")
    key_id = created["key"]["key_id"]
    listed = run("tenant", "list")
    assert "acme-corp" in listed.stdout
    assert "[red]Acme" in listed.stdout  # markup in names is shown, not interpreted
    keys = run("key", "list", "--tenant-id", "acme-corp")
    assert key_id in keys.stdout  # ids people copy are never cut
    assert "active" in keys.stdout
    assert (
        "is now on the enterprise tier"
        in run("tenant", "upgrade", "--tenant-id", "acme-corp", "--tier", "enterprise").stdout
    )
    assert "suspended" in run("tenant", "suspend", "--tenant-id", "acme-corp").stdout
    assert "active" in run("tenant", "resume", "--tenant-id", "acme-corp").stdout
    rotated = run("key", "rotate", "--tenant-id", "acme-corp", "--grace", "15m")
    assert "in 900s" in rotated.stdout
    assert SAVE_NOTICE in rotated.stdout
    assert (
        "Revoked key" in run("key", "revoke", "--tenant-id", "acme-corp", "--key-id", key_id).stdout
    )
    refused = CliRunner().invoke(
        main, ["tenant", "delete", "--tenant-id", "acme-corp"], input="n\n"
    )
    assert refused.exit_code == 1
    assert run_json("tenant", "info", "--tenant-id", "acme-corp")["tenant"]["tenant_id"]
    confirmed = CliRunner().invoke(
        main, ["tenant", "delete", "--tenant-id", "acme-corp"], input="y\n"
    )
    assert confirmed.exit_code == 0
    assert "Deleted tenant acme-corp" in confirmed.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("tenant", "create", "--tenant-id", "acme-corp", "--name", "A", "--tier", "gold"),
         "unknown tier 'gold'"),
        (("tenant", "create", "--tenant-id", "Acme_Corp", "--name", "A"), "invalid tenant id"),
        (("tenant", "create", "--tenant-id", "exists-co", "--name", "A"), "already exists"),
        (("tenant", "info", "--tenant-id", "nobody-here"), "not found"),
        (("tenant", "upgrade", "--tenant-id", "nobody-here", "--tier", "pro"), "not found"),
        (("tenant", "suspend", "--tenant-id", "nobody-here"), "not found"),
        (("tenant", "resume", "--tenant-id", "nobody-here"), "not found"),
        (("tenant", "delete", "--tenant-id", "nobody-here", "--yes"), "not found"),
        (("key", "list", "--tenant-id", "nobody-here"), "not found"),
        (("key", "create", "--tenant-id", "nobody-here"), "not found"),
        (("key", "revoke", "--tenant-id", "exists-co", "--key-id", "key_nope"), "not found"),
        (("key", "rotate", "--tenant-id", "exists-co", "--key-id", "key_nope"), "not found"),
        (("tenant", "list", "--limit", "0"), "limit"),
    ],
)  # fmt: skip
def test_errors_are_one_line_and_exit_1(
    env: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    run_json("tenant", "create", "--tenant-id", "exists-co", "--name", "Exists")
    for extra in ((), ("--json",)):
        result = run(*args, *extra)
        assert result.exit_code == 1, result.output
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1
        assert result.stderr.startswith("Error: ")
        assert message in result.stderr
        assert "Traceback" not in result.output


def test_debug_reraises(env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["--debug", "tenant", "info", "--tenant-id", "nobody-here"])
    assert isinstance(result.exception, TenantNotFound)


def test_bad_duration_is_a_usage_error(env: dict[str, str]) -> None:
    result = run("key", "rotate", "--tenant-id", "acme-corp", "--grace", "soon")
    assert result.exit_code == 2
    assert "not a duration" in result.stderr


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("24h", 86400), ("7d", 604800), ("1w", 604800),
     ("90", 90), ("0", 0), ("1h30m", 5400), ("1.5h", 5400), (" 2M ", 120)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "-5s", "5x", "5 s s", "1h30", "3d!", "∞"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@given(
    st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from("smhdw")), min_size=1, max_size=4)
)
def test_parse_duration_sums_its_parts(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{unit}" for n, unit in parts)
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    assert parse_duration(text) == sum(n * units[u] for n, u in parts)


# -- target selection -----------------------------------------------------------------


def test_target_is_local_by_default_and_remote_with_a_url(env: dict[str, str]) -> None:
    target = open_target()
    try:
        assert isinstance(target, LocalTarget)
    finally:
        target.close()
    with pytest.raises(ConfigurationError, match="TENANTKIT_ADMIN_KEY"):
        open_target("http://127.0.0.1:9")
    remote = open_target("http://127.0.0.1:9", settings=get_settings(admin_key="k" * 20))
    try:
        assert isinstance(remote, RemoteTarget)
    finally:
        remote.close()


def test_url_without_admin_key_is_one_line(env: dict[str, str]) -> None:
    result = run("tenant", "list", "--url", "http://127.0.0.1:9")
    assert result.exit_code == 1
    assert "TENANTKIT_ADMIN_KEY" in result.stderr


def test_unreachable_url_is_one_line(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTKIT_ADMIN_KEY", "k" * 20)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run("tenant", "list", "--url", f"http://127.0.0.1:{port}")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot reach")
    monkeypatch.setenv("TENANTKIT_URL", f"http://127.0.0.1:{port}")
    assert run("tenant", "list").stderr.startswith("Error: cannot reach")


# -- a real gateway, over HTTP ---------------------------------------------------------


@pytest.fixture
def gateway_url(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    import uvicorn

    from tenantkit.gateway import create_gateway
    from tenantkit.workers import TenantApp

    settings = get_settings(
        data_dir=tmp_path / "server", signing_key=SECRET, admin_key="admin-" + "k" * 30
    )
    api = create_gateway(TenantApp("cli-remote-test"), settings)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(
        api, host="127.0.0.1", port=port, log_level="warning", ws="none", http="h11",
        lifespan="on",
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "gateway did not start"
        assert time.monotonic() < deadline, "gateway did not start in time"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_remote_target_through_the_cli(
    gateway_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TENANTKIT_ADMIN_KEY", "admin-" + "k" * 30)
    url = ("--url", gateway_url)
    created = run_json(
        "tenant", "create", "--tenant-id", "acme-corp", "--name", "Acme", "--tier", "pro",
        "--email", "admin@acme.com", *url,
    )  # fmt: skip
    assert created["tenant"]["tenant_id"] == "acme-corp"
    assert created["api_key"].startswith("mt_")
    assert run_json("tenant", "list", *url)["tenants"][0]["tenant_id"] == "acme-corp"
    assert (
        run_json("tenant", "info", "--tenant-id", "acme-corp", *url)["keys"][0]["key_id"]
        == (created["key"]["key_id"])
    )
    assert run_json("tenant", "upgrade", "--tenant-id", "acme-corp", "--tier", "enterprise",
                    *url)["tenant"]["tier"] == "enterprise"  # fmt: skip
    assert run_json("tenant", "suspend", "--tenant-id", "acme-corp", "--reason", "x",
                    *url)["tenant"]["status"] == "suspended"  # fmt: skip
    assert run_json("tenant", "resume", "--tenant-id", "acme-corp", *url)["tenant"]["status"] == (
        "active"
    )
    extra = run_json("key", "create", "--tenant-id", "acme-corp", "--label", "ci", *url)
    assert extra["key"]["label"] == "ci"
    revoked = run_json(
        "key", "revoke", "--tenant-id", "acme-corp", "--key-id", extra["key"]["key_id"], *url
    )
    assert revoked["key"]["revoked_at"] is not None
    rotated = run_json("key", "rotate", "--tenant-id", "acme-corp", "--grace", "1h", *url)
    assert rotated["api_key"].startswith("mt_")
    assert len(run_json("key", "list", "--tenant-id", "acme-corp", *url)["keys"]) == 3

    # the local database was never touched: the records live on the server
    assert not (tmp_path / "state" / "tenantkit.db").exists()

    # errors come back as the same one-line errors
    for args, message in (
        (("tenant", "info", "--tenant-id", "nobody-here"), "not found"),
        (("tenant", "create", "--tenant-id", "acme-corp", "--name", "A"), "already exists"),
        (("tenant", "upgrade", "--tenant-id", "acme-corp", "--tier", "gold"), "gold"),
    ):
        result = run(*args, *url)
        assert result.exit_code == 1, result.output
        assert message in result.stderr
        assert result.stderr.count("\n") == 1

    deleted = run_json("tenant", "delete", "--tenant-id", "acme-corp", "--yes", *url)
    assert deleted["deleted"] is True

    monkeypatch.setenv("TENANTKIT_ADMIN_KEY", "wrong-" + "k" * 30)
    result = run("tenant", "list", *url)
    assert result.exit_code == 1
    assert "admin key" in result.stderr


def test_remote_target_maps_problems_to_errors(gateway_url: str) -> None:
    target = RemoteTarget(gateway_url, "admin-" + "k" * 30)
    try:
        target.create_tenant("acme-corp", "Acme", "pro")
        with pytest.raises(TenantAlreadyExists):
            target.create_tenant("acme-corp", "Acme", "pro")
        with pytest.raises(TenantNotFound):
            target.get_tenant("nobody-here")
        with pytest.raises(UnknownTier):
            target.change_tier("acme-corp", "gold")
        with pytest.raises(KeyNotFound):
            target.revoke_key("acme-corp", "key_nope")
    finally:
        target.close()


# -- a real subprocess -------------------------------------------------------------------


def test_real_subprocess_on_a_temp_data_dir(tmp_path: Path) -> None:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TENANTKIT_") and k not in {"JWT_SECRET_KEY", "JWT_ALGORITHM"}
    }
    cmd = [str(TENANTKIT), "tenant", "create", "--tenant-id", "acme-corp", "--name", "Acme"]
    done = subprocess.run(
        [*cmd, "--tier", "pro", "--json"],
        cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    secret_file = tmp_path / ".tenantkit" / GENERATED_KEY_FILES["HS256"]
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert "generated a local HS256 signing key" in done.stderr
    assert (tmp_path / ".tenantkit" / "tenantkit.db").exists()

    settings = get_settings(data_dir=tmp_path / ".tenantkit")
    db = open_database(settings.resolved_database_url())
    try:
        assert KeyManager(db, settings).verify(created["api_key"]).tenant_id == "acme-corp"
    finally:
        db.close()

    again = subprocess.run(
        [str(TENANTKIT), "tenant", "info", "--tenant-id", "nobody-here"],
        cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert again.returncode == 1
    assert again.stderr == "Error: tenant 'nobody-here' not found\n"  # said once: no notice now
    assert "Traceback" not in again.stderr
