"""`tenantkit serve --workers 4` on each backend: limits stay exact under load.

Four server processes share one records database. A concurrent load on one
free-tier tenant (burst 20, 100 requests an hour, 5 concurrent) must see:

- admitted calls never above the GCRA bound ``burst + floor(W / T)``;
- calls running at once never above ``max_concurrent`` (each call writes its
  start and end time; a lease is held from before the start to after the end);
- one usage event per 2xx response once the server has stopped (every
  worker's meter is flushed on shutdown).
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tenantkit.auth import KeyManager
from tenantkit.config import DEFAULT_TIERS, get_settings
from tenantkit.db import Database, open_database
from tenantkit.tenants import TenantService
from tests.conftest import BACKENDS, make_database
from tests.dbutil import url_of

pytestmark = pytest.mark.slow

TENANTKIT = str(Path(sys.executable).parent / "tenantkit")
FREE = DEFAULT_TIERS["free"]
REQUESTS = 80
PARALLEL = 16

APP = """
import os
import time

from tenantkit.workers import TenantApp

app = TenantApp("exactness")


@app.tenant_function(timeout=30)
def work(n: int = 0) -> int:
    started = time.time()
    time.sleep(0.25)
    ended = time.time()
    with open(os.environ["EXACTNESS_TRACE"], "a") as trace:
        trace.write(f"{started} {ended}\\n")
    return n
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(
    folder: Path, env: dict[str, str], workers: int
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(
        [TENANTKIT, "serve", "app.py", "--port", str(port), "--workers", str(workers),
         "--log-level", "warning"],
        cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (folder / "server.log").read_text()
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


async def load(url: str, api_key: str) -> list[int]:
    headers = {"Authorization": f"Bearer {api_key}"}
    limits = httpx.Limits(max_connections=PARALLEL)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as client:

        async def one(i: int) -> int:
            response = await client.post("/functions/work", json={"n": i}, timeout=60)
            return response.status_code

        return list(await asyncio.gather(*(one(i) for i in range(REQUESTS))))


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.parametrize("backend", BACKENDS)
def test_four_workers_keep_limits_exact(backend: str, tmp_path: Path) -> None:
    db: Database = make_database(backend, tmp_path)
    try:
        database_url = url_of(db)
        settings = get_settings(data_dir=tmp_path / ".tenantkit", database_url=database_url)
        records = open_database(database_url, migrate=False)
        try:
            _, issued = TenantService(records, KeyManager(records, settings)).create(
                "free-corp", "Free", "free"
            )
        finally:
            records.close()
        (tmp_path / "app.py").write_text(APP)
        trace = tmp_path / "trace.txt"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTKIT_", "JWT_"))}
        env |= {"TENANTKIT_DATABASE_URL": database_url, "EXACTNESS_TRACE": str(trace)}

        with serve(tmp_path, env, workers=4) as (url, process):
            started = time.monotonic()
            statuses = asyncio.run(load(url, issued.api_key))
            elapsed = time.monotonic() - started
            process.send_signal(signal.SIGTERM)
            assert process.wait(60) in (0, -signal.SIGTERM)

        ok = statuses.count(200)
        assert set(statuses) <= {200, 429}, statuses
        assert 1 <= ok <= FREE.burst + math.floor(FREE.requests_per_hour * elapsed / 3600)
        intervals = [
            (float(a), float(b))
            for a, b in (line.split() for line in trace.read_text().split("\n") if line)
        ]
        assert len(intervals) == ok
        peak = most_at_once(intervals)
        print(f"{backend}: {ok} of {REQUESTS} admitted, at most {peak} at once")
        assert peak <= FREE.max_concurrent
        with db.transaction(write=False) as tx:
            events = tx.usage_events("free-corp", 0, 2e10)
            assert tx.active_leases("free-corp", time.time()) == 0  # all released
        assert len(events) == ok
        assert all(e.status == 200 for e in events)
    finally:
        db.close()
