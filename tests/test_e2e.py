"""End to end: ``tenantkit serve`` in a subprocess, the seed's quick start, many workers."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tenantkit.auth import KeyManager
from tenantkit.config import get_settings
from tenantkit.db import open_database
from tenantkit.tenants import TenantService

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TENANTKIT = str(Path(sys.executable).parent / "tenantkit")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTKIT_", "JWT_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Server:
    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.output}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server did not start:\n{self.output}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(10)
        self.reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code


@contextmanager
def serve(folder: Path, app_ref: str, *args: str) -> Iterator[Server]:
    port = free_port()
    process = subprocess.Popen(
        [TENANTKIT, "serve", app_ref, "--port", str(port), "--log-level", "warning", *args],
        cwd=folder,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = Server(process, f"http://127.0.0.1:{port}")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def usage_events(folder: Path, tenant_id: str) -> int:
    db = open_database(f"sqlite:///{folder / '.tenantkit' / 'tenantkit.db'}")
    try:
        with db.transaction(write=False) as tx:
            return tx.count_usage_events(tenant_id)
    finally:
        db.close()


def test_the_seeds_quick_start_locally(tmp_path: Path) -> None:
    """Steps 5-7 of the seed's guide, with `tenantkit` in place of `modal run`."""
    app_file = str(ROOT / "examples" / "quickstart" / "app.py")
    with serve(tmp_path, app_file) as server:
        # a fresh folder: the URL, the docs and the first command to run
        assert server.url in server.output
        assert f"{server.url}/docs" in server.output
        assert "tenantkit tenant create --tenant-id" in server.output

        created = subprocess.run(
            [TENANTKIT, "tenant", "create", "--tenant-id", "acme-corp", "--name",
             "Acme Corporation", "--tier", "pro", "--email", "admin@acme.com", "--json"],
            cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        api_key = json.loads(created.stdout)["api_key"]
        assert api_key.startswith("mt_")

        health = httpx.get(server.url + "/health")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        response = httpx.post(
            server.url + "/process",
            headers={"Authorization": f"Bearer {api_key}"},
            json={"task_type": "analyze", "data": {"items": [1, 2, 3, 4, 5]}},
        )
        assert response.status_code == 200, response.text
        assert response.json()["result"]["mean"] == 3
        assert "x-ratelimit-remaining" in response.headers

        example = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "example_usage.py")],
            env={**clean_env(), "API_URL": server.url, "API_KEY": api_key},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert example.returncode == 0, example.stdout + example.stderr
        for endpoint in ("/health", "/tenant", "/process", "/batch", "/inference", "/usage"):
            assert endpoint in example.stdout
        assert "setosa" in example.stdout
        assert server.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM
    # 1 + 3 /process, 3 batch tasks, 1 /functions, 1 /inference: all metered by the stop
    assert usage_events(tmp_path, "acme-corp") == 9


HAMMER_APP = """
from tenantkit.workers import TenantApp

app = TenantApp("hammer")


@app.tenant_function(timeout=10)
def ping(n: int = 0) -> int:
    return n
"""


async def hammer(url: str, api_key: str, requests: int) -> list[int]:
    headers = {"Authorization": f"Bearer {api_key}"}
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as client:

        async def one(i: int) -> int:
            response = await client.post("/functions/ping", json={"n": i}, timeout=60)
            return response.status_code

        return list(await asyncio.gather(*(one(i) for i in range(requests))))


def test_several_workers_share_one_tenants_limits(tmp_path: Path) -> None:
    (tmp_path / "hammer_app.py").write_text(HAMMER_APP)
    settings = get_settings(data_dir=tmp_path / ".tenantkit")
    db = open_database(settings.resolved_database_url())
    try:
        keys = KeyManager(db, settings)
        _, issued = TenantService(db, keys).create("free-corp", "Free", "free")
    finally:
        db.close()
    with serve(tmp_path, "hammer_app.py", "--workers", "3") as server:
        started = time.monotonic()
        statuses = asyncio.run(hammer(server.url, issued.api_key, 120))
        elapsed = time.monotonic() - started
        assert server.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM
    ok = statuses.count(200)
    assert set(statuses) <= {200, 429}
    # free tier: burst 20, 100 per hour; GCRA admits at most burst + rate * T
    assert 1 <= ok <= 20 + math.floor(100 * elapsed / 3600)
    assert statuses.count(429) == 120 - ok
    # a clean stop flushed every worker's meter: one event per 2xx
    assert usage_events(tmp_path, "free-corp") == ok


def test_serve_reports_a_missing_app_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty.py").write_text("x = 1\n")
    done = subprocess.run(
        [TENANTKIT, "serve", "empty.py"], cwd=tmp_path, env=clean_env(),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "defines no TenantApp" in done.stderr
    assert "Traceback" not in done.stderr
