"""``/files`` over HTTP against the real gateway: scoping, streaming, quotas."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tenantkit.config import Settings, Tier, get_settings
from tenantkit.gateway import create_gateway
from tenantkit.storage import normalize_path
from tenantkit.workers import TenantApp, TenantContext, load_app
from tests.test_storage import paths as PATHS

pytestmark = pytest.mark.anyio

TINY = Tier("tiny", 10_000, 1_000, 50, 3_600, storage_bytes=1000, max_files=3)
ROOMY = Tier("roomy", 10_000, 1_000, 50, 3_600, storage_bytes=50_000_000, max_files=1_000)


def make_app() -> TenantApp:
    app = TenantApp("files-test", tiers={"roomy": ROOMY, "tiny": TINY})

    @app.tenant_function
    def remember(note: str, ctx: TenantContext) -> dict[str, str]:
        assert ctx.storage is not None
        ctx.storage.write_json(f"notes/{ctx.request_id}.json", {"note": note})
        return {"saved": f"notes/{ctx.request_id}.json"}

    return app


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Harness:
    """The real gateway, called in process through ``httpx.ASGITransport``."""

    services: Any
    client: httpx.AsyncClient
    gateway: Any
    api_key: str

    def create_tenant(self, tenant_id: str, tier: str) -> str:
        _, issued = self.services.tenants.create(tenant_id, tenant_id, tier, actor="test")
        return str(issued.api_key)

    @staticmethod
    def headers(api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"}


@asynccontextmanager
async def running(
    app: TenantApp, settings: Settings, tenant_id: str, tier: str
) -> AsyncIterator[Harness]:
    gateway = create_gateway(app, settings)
    services = gateway.state.tenantkit
    async with gateway.router.lifespan_context(gateway):
        _, issued = services.tenants.create(tenant_id, tenant_id, tier, actor="test")
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://tenantkit.test",
            headers=Harness.headers(issued.api_key),
        ) as client:
            yield Harness(services, client, gateway, issued.api_key)


def settings_for(tmp_path: Path, **extra: Any) -> Settings:
    return get_settings(data_dir=tmp_path / "data", signing_key=secrets.token_urlsafe(32), **extra)


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Harness]:
    settings = settings_for(tmp_path, max_body_bytes=64 * 1024 * 1024)
    async with running(make_app(), settings, "tenant-a", "roomy") as harness:
        yield harness


def snapshot(base: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(base)): p.read_bytes()
        for p in sorted(base.rglob("*"))
        if p.is_file() and not p.is_symlink() and "volumes" in p.parts
    }


async def test_round_trip(gw: Harness) -> None:
    client = gw.client
    created = await client.put("/files/reports/2024.json", content=b'{"ok": true}')
    assert created.status_code == 201, created.text
    assert created.json()["file"] == {
        "path": "reports/2024.json",
        "size": 12,
        "modified": created.json()["file"]["modified"],
        "type": "file",
    }
    replaced = await client.put("/files/reports/2024.json", content=b'{"ok": false}')
    assert replaced.status_code == 200
    got = await client.get("/files/reports/2024.json")
    assert got.status_code == 200
    assert got.content == b'{"ok": false}'
    assert got.headers["content-type"].startswith("application/json")
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-length"] == "13"
    assert "attachment" in got.headers["content-disposition"]
    listing = (await client.get("/files", params={"prefix": "reports/"})).json()
    assert [f["path"] for f in listing["files"]] == ["reports/2024.json"]
    assert listing["usage"]["bytes"] == 13
    assert listing["usage"]["files"] == 1
    assert listing["usage"]["max_bytes"] == ROOMY.storage_bytes
    flat = (await client.get("/files", params={"recursive": "false"})).json()["files"]
    assert [(f["path"], f["type"]) for f in flat] == [("reports", "directory")]
    assert (await client.delete("/files/reports/2024.json")).status_code == 204
    missing = await client.get("/files/reports/2024.json")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["request_id"] == missing.headers["x-request-id"]
    assert (await client.delete("/files/reports/2024.json")).status_code == 404


async def test_streamed_upload_and_download(gw: Harness) -> None:
    digest = hashlib.sha256()
    chunk = os.urandom(256 * 1024)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(12):
            digest.update(chunk)
            yield chunk

    response = await gw.client.put("/files/big.bin", content=body())
    assert response.status_code == 201, response.text
    assert response.json()["file"]["size"] == 12 * len(chunk)
    downloaded = hashlib.sha256()
    async with gw.client.stream("GET", "/files/big.bin") as stream:
        assert stream.headers["content-length"] == str(12 * len(chunk))
        async for part in stream.aiter_bytes():
            downloaded.update(part)
    assert downloaded.digest() == digest.digest()


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("/files/%2e%2e/%2e%2e/escaped.txt", "path-escapes-root"),
        ("/files/a/%2E%2E/%2E%2E/escaped.txt", "path-escapes-root"),
        ("/files/%2e%2e%2ftenant-b%2fx", "path-escapes-root"),
        ("/files/a%5Cb", "backslash-in-path"),
        ("/files/a%00b", "control-character"),
        ("/files/%E2%80%A4%E2%80%A4/x", "lookalike-character"),
        ("/files/a%EF%BC%8Fb", "lookalike-character"),
        ("/files/a//b", "empty-segment"),
        ("/files/.tk-partial-1", "reserved-name"),
        ("/files/" + "x" * 256, "name-too-long"),
    ],
)
async def test_unsafe_paths_are_400(gw: Harness, tmp_path: Path, url: str, code: str) -> None:
    before = snapshot(tmp_path)
    for method in ("PUT", "GET", "DELETE"):
        response = await gw.client.request(method, url, content=b"x" if method == "PUT" else None)
        assert response.status_code == 400, (method, response.text)
        assert response.json()["type"].endswith("/" + code)
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "data" / "escaped.txt").exists()


async def test_cross_tenant_matrix(gw: Harness, tmp_path: Path) -> None:
    a = gw.client
    b_key = gw.create_tenant("tenant-b", "roomy")
    b = gw.headers(b_key)
    assert (await a.put("/files/private/secret.txt", content=b"a's secret")).status_code == 201
    a_root = tmp_path / "data" / "volumes" / "tenant-a"
    assert (a_root / "private" / "secret.txt").read_bytes() == b"a's secret"

    # read, by the same name and by every way around it
    names = [
        "/files/private/secret.txt",
        "/files/%2e%2e/tenant-a/private/secret.txt",
        "/files/..%2Ftenant-a%2Fprivate%2Fsecret.txt",
        "/files/%2Fprivate%2Fsecret.txt",
        f"/files/{a_root}/private/secret.txt",
        "/files/%E2%80%A4%E2%80%A4/tenant-a/private/secret.txt",
    ]
    for name in names:
        response = await a.get(name, headers=b)
        assert response.status_code in (400, 404), (name, response.status_code)
        assert b"a's secret" not in response.content
        assert (await a.delete(name, headers=b)).status_code in (400, 404)
    # list
    for prefix in ("", "private/", "../tenant-a/", "/"):
        response = await a.get("/files", params={"prefix": prefix}, headers=b)
        assert response.status_code in (200, 400)
        if response.status_code == 200:
            assert response.json()["files"] == []
    # overwrite: B's write lands in B's own root
    assert (await a.put("/files/private/secret.txt", content=b"b's", headers=b)).status_code == 201
    assert (await a.get("/files/private/secret.txt", headers=b)).content == b"b's"
    assert (await a.get("/files/private/secret.txt")).content == b"a's secret"
    # delete: B deletes its own, A's stays
    assert (await a.delete("/files/private/secret.txt", headers=b)).status_code == 204
    assert (await a.get("/files/private/secret.txt")).content == b"a's secret"
    assert [f["path"] for f in (await a.get("/files")).json()["files"]] == ["private/secret.txt"]
    assert (await a.get("/files", headers=b)).json()["files"] == []


async def test_library_and_http_see_the_same_files(gw: Harness) -> None:
    storage = gw.services.storage_for("tenant-a", ROOMY)
    storage.write_text("from-library.txt", "hello")
    assert (await gw.client.get("/files/from-library.txt")).text == "hello"
    await gw.client.put("/files/from-http.txt", content=b"world")
    assert storage.read_text("from-http.txt") == "world"
    other = gw.services.storage_for("tenant-b", ROOMY)
    assert not other.exists("from-http.txt")


async def test_quota_over_http(tmp_path: Path) -> None:
    async with running(make_app(), settings_for(tmp_path), "small", "tiny") as gw:
        client = gw.client
        too_big = await client.put("/files/huge.bin", content=b"x" * 1001)
        assert too_big.status_code == 413
        assert too_big.json()["type"].endswith("/file-too-large")
        assert too_big.json()["limit"] == "storage-bytes"
        assert (await client.put("/files/a.bin", content=b"a" * 600)).status_code == 201
        over = await client.put("/files/b.bin", content=b"b" * 500)
        assert over.status_code == 429
        assert over.json()["type"].endswith("/storage-quota-exceeded")
        assert over.json()["limit"] == "storage-bytes"
        assert "retry-after" not in over.headers
        assert (await client.get("/files/b.bin")).status_code == 404

        async def chunked() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"c" * 100

        await client.put("/files/c.bin", content=b"old")
        streamed = await client.put("/files/c.bin", content=chunked())
        assert streamed.status_code == 429
        assert (await client.get("/files/c.bin")).content == b"old"
        await client.put("/files/d.bin", content=b"d")
        files = await client.put("/files/e.bin", content=b"e")
        assert files.status_code == 429
        assert files.json()["limit"] == "storage-files"
        usage = (await client.get("/files")).json()["usage"]
        assert usage == {"bytes": 604, "files": 3, "max_bytes": 1000, "max_files": 3}


async def test_scopes(gw: Harness) -> None:
    await gw.client.put("/files/a.txt", content=b"a")
    reader = gw.services.keys.mint("tenant-a", scopes=["files:read"]).api_key
    headers = gw.headers(reader)
    assert (await gw.client.get("/files/a.txt", headers=headers)).status_code == 200
    assert (await gw.client.put("/files/a.txt", content=b"x", headers=headers)).status_code == 403
    assert (await gw.client.delete("/files/a.txt", headers=headers)).status_code == 403
    unauthenticated = httpx.Headers({"Authorization": "Bearer nope"})
    assert (await gw.client.get("/files", headers=unauthenticated)).status_code == 401


async def test_a_function_writes_and_the_tenant_reads_it_back(gw: Harness) -> None:
    response = await gw.client.post("/functions/remember", json={"note": "hi"})
    assert response.status_code == 200, response.text
    saved = response.json()["saved"]
    assert (await gw.client.get(f"/files/{saved}")).json() == {"note": "hi"}
    other = gw.headers(gw.create_tenant("tenant-b", "roomy"))
    assert (await gw.client.get(f"/files/{saved}", headers=other)).status_code == 404


async def test_quickstart_example_result_is_readable_over_http(tmp_path: Path) -> None:
    app = load_app(str(Path(__file__).parents[1] / "examples" / "quickstart" / "app.py"))
    async with running(app, settings_for(tmp_path), "acme-corp", "pro") as gw:
        request_ids = []
        for items in ([1, 2, 3], [10, 20]):
            response = await gw.client.post(
                "/process", json={"task_type": "analyze", "data": {"items": items}}
            )
            assert response.status_code == 200, response.text
            request_ids.append(response.json()["request_id"])
        listed = (await gw.client.get("/files")).json()["files"]
        expected = sorted(f"results/{rid}.json" for rid in request_ids)
        assert [f["path"] for f in listed] == expected, "one result file per call"
        for rid, mean in zip(request_ids, (2, 15), strict=True):
            stored = await gw.client.get(f"/files/results/{rid}.json")
            assert stored.status_code == 200
            assert stored.json()["mean"] == mean


async def test_an_upload_cut_off_midway_keeps_the_old_file(gw: Harness, tmp_path: Path) -> None:
    assert (await gw.client.put("/files/doc.txt", content=b"old")).status_code == 201
    before = (await gw.client.get("/files")).json()["usage"]
    messages = [{"type": "http.request", "body": b"n" * 5000, "more_body": True}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": "/files/doc.txt",
        "raw_path": b"/files/doc.txt",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"tenantkit.test"),
            (b"authorization", f"Bearer {gw.api_key}".encode()),
            (b"transfer-encoding", b"chunked"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("tenantkit.test", 80),
    }
    await gw.gateway(scope, receive, send)
    assert sent[0]["status"] == 400  # nobody reads it: the client is gone
    assert (await gw.client.get("/files/doc.txt")).content == b"old"
    assert (await gw.client.get("/files")).json()["usage"] == before
    root = tmp_path / "data" / "volumes" / "tenant-a"
    assert sorted(p.name for p in root.iterdir()) == [".tk-partial-lock", "doc.txt"]


@pytest.mark.slow
def test_a_large_upload_streams_through_a_real_server(tmp_path: Path) -> None:
    import threading
    import time
    import tracemalloc

    import uvicorn

    size, chunk = 40 * 1024 * 1024, 1024 * 1024
    settings = settings_for(tmp_path, max_body_bytes=1 << 30)
    gateway = create_gateway(make_app(), settings)
    _, issued = gateway.state.tenantkit.tenants.create("tenant-a", "A", "roomy", actor="test")
    config = uvicorn.Config(
        gateway, host="127.0.0.1", port=0, log_level="warning", ws="none", http="h11"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    port = server.servers[0].sockets[0].getsockname()[1]
    sent = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for n in range(size // chunk):
            part = hashlib.sha256(n.to_bytes(4, "big")).digest() * (chunk // 32)
            sent.update(part)
            yield part

    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {issued.api_key}"},
            timeout=120,
        ) as client:
            tracemalloc.start()
            try:
                response = client.put("/files/big/blob.bin", content=body())
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert response.status_code == 201, response.text
            assert response.json()["file"]["size"] == size
            assert peak < size // 4, f"the body was held in memory: peak {peak:,} bytes"
            received = hashlib.sha256()
            with client.stream("GET", "/files/big/blob.bin") as download:
                assert download.headers["content-length"] == str(size)
                for part in download.iter_bytes():
                    received.update(part)
            assert received.digest() == sent.digest()
    finally:
        server.should_exit = True
        thread.join(timeout=30)


async def test_usage_shows_the_storage_gauge(gw: Harness) -> None:
    await gw.client.put("/files/a.bin", content=b"a" * 120)
    await gw.client.put("/files/b.bin", content=b"b" * 30)
    await gw.client.delete("/files/a.bin")
    usage = (await gw.client.get("/usage")).json()
    assert usage["storage"]["bytes"] == 30
    assert usage["storage"]["files"] == 1
    assert usage["storage"]["source"] == "gauge"


# -- any path over a real server stays in the caller's root ---------------------------


@dataclass
class LiveServer:
    base_url: str
    key_a: str
    key_b: str
    data_dir: Path


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    import threading
    import time

    import uvicorn

    data = tmp_path_factory.mktemp("live")
    settings = settings_for(data)
    gateway = create_gateway(make_app(), settings)
    tenants = gateway.state.tenantkit.tenants
    _, a = tenants.create("tenant-a", "A", "roomy", actor="test")
    _, b = tenants.create("tenant-b", "B", "roomy", actor="test")
    outside = data / "data" / "outside"
    outside.mkdir(parents=True)
    (outside / "secret.txt").write_text("outside")
    b_files = gateway.state.tenantkit.storage_for("tenant-b", ROOMY)
    b_files.write_text("b.txt", "tenant b's")
    a_root = data / "data" / "volumes" / "tenant-a"
    a_root.mkdir(parents=True)
    (a_root / "link").symlink_to(outside)
    (a_root / "up").symlink_to("..")
    server = uvicorn.Server(
        uvicorn.Config(
            gateway, host="127.0.0.1", port=0, log_level="warning", ws="none", http="h11"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", a.api_key, b.api_key, data / "data")
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _outside_a(data_dir: Path) -> dict[str, bytes]:
    a_root = data_dir / "volumes" / "tenant-a"
    found: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(data_dir, followlinks=False):
        if Path(dirpath) == a_root:
            dirnames[:] = []
            continue
        for name in filenames:
            full = Path(dirpath) / name
            if full.suffix in (".db", ".db-wal", ".db-shm") or full.name.startswith("signing"):
                continue
            found[str(full.relative_to(data_dir))] = full.read_bytes()
    return found


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=PATHS, data=st.binary(max_size=16))
@example(path="../tenant-b/b.txt", data=b"x")
@example(path="link/secret.txt", data=b"x")
@example(path="up/tenant-b/b.txt", data=b"x")
@example(path="%2e%2e/tenant-b/b.txt", data=b"x")
@example(path="\u2024\u2024/tenant-b/b.txt", data=b"x")
@example(path="0\n", data=b"x")  # Starlette's route "$" matches before a final newline
def test_no_http_request_leaves_the_callers_root(
    live_server: LiveServer, path: str, data: bytes
) -> None:
    try:
        encoded = quote(path, safe="")
    except UnicodeEncodeError:
        return
    before = _outside_a(live_server.data_dir)
    with httpx.Client(
        base_url=live_server.base_url,
        headers={"Authorization": f"Bearer {live_server.key_a}"},
        timeout=30,
    ) as client:
        for method in ("PUT", "GET", "DELETE"):
            response = client.request(
                method, f"/files/{encoded}", content=data if method == "PUT" else None
            )
            assert response.status_code in (200, 201, 204, 400, 404, 405, 409), (
                method,
                path,
                response.status_code,
                response.text,
            )
            assert b"tenant b's" not in response.content
            assert (
                b"outside" not in response.content or method != "GET" or response.status_code >= 400
            )
            if method == "PUT" and response.is_success:
                stored = response.json()["file"]["path"]
                assert stored == normalize_path(path)
        listing = client.get("/files", params={"prefix": path})
        assert listing.status_code in (200, 400)
    assert _outside_a(live_server.data_dir) == before


async def test_openapi_documents_the_file_routes(gw: Harness) -> None:
    schema = (await gw.client.get("/openapi.json")).json()
    routes = schema["paths"]
    assert set(routes["/files/{path}"]) == {"get", "put", "delete"}
    assert "application/octet-stream" in routes["/files/{path}"]["put"]["requestBody"]["content"]
    assert "prefix" in {p["name"] for p in routes["/files"]["get"]["parameters"]}
