"""Security properties of the gateway over HTTP: admin routes, errors, request
ids, files (traversal, links, isolation, quotas, content types), deletion,
and keys kept out of logs.

Requests go through the real gateway in process (``httpx.ASGITransport``),
or, where a client library would clean the request up first, as raw ASGI
messages shaped the way uvicorn shapes them (the path percent-decoded once).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from click.testing import CliRunner
from starlette.routing import Route

from tenantkit.cli import main
from tenantkit.config import Settings, Tier, get_settings
from tenantkit.gateway import create_gateway
from tenantkit.gateway.files import router as files_router
from tenantkit.storage import local_root
from tenantkit.workers import TenantApp, TenantContext

pytestmark = pytest.mark.anyio

ADMIN = "adm-" + secrets.token_urlsafe(32)
ROOMY = Tier("roomy", 100_000, 10_000, 100, 36_000, storage_bytes=10_000_000, max_files=1000)
TINY = Tier("tiny", 100_000, 10_000, 100, 36_000, storage_bytes=1000, max_files=3)
GENERIC = "the request failed; quote the request id when reporting it"
PROBLEM_KEYS = {"type", "title", "status", "detail", "instance", "request_id"}


def make_app() -> TenantApp:
    app = TenantApp("security-test", tiers={"roomy": ROOMY, "tiny": TINY})

    @app.tenant_function
    def explode(ctx: TenantContext) -> None:
        raise RuntimeError(f"secret internals at /srv/db password=hunter2 tenant={ctx.tenant_id}")

    @app.tenant_function
    def echo(text: str) -> str:
        return text

    return app


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Gateway:
    api: Any
    services: Any
    settings: Settings
    client: httpx.AsyncClient
    keys: dict[str, str]

    def auth(self, tenant: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant]}"}


@asynccontextmanager
async def gateway_for(tmp_path: Path, **extra: Any) -> AsyncIterator[Gateway]:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "signing_key": secrets.token_urlsafe(32),
        "admin_key": ADMIN,
        "max_body_bytes": 64 * 1024,
    }
    settings = get_settings(**{**values, **extra})
    api = create_gateway(make_app(), settings)
    services = api.state.tenantkit
    async with api.router.lifespan_context(api):
        keys = {}
        for tenant, tier in (("tenant-a", "roomy"), ("tenant-b", "roomy"), ("tiny-co", "tiny")):
            _, issued = services.tenants.create(tenant, tenant, tier, actor="test")
            keys[tenant] = issued.api_key
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
            yield Gateway(api, services, settings, client, keys)


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with gateway_for(tmp_path) as gateway:
        yield gateway


async def raw(
    api: Any,
    method: str,
    raw_path: bytes,
    headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
    body: bytes = b"",
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request as uvicorn hands it over: ``path`` is ``raw_path`` decoded once."""
    path_part, _, query = raw_path.partition(b"?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(path_part.decode("ascii")),
        "raw_path": path_part,
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"gw.test"), *headers, (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1234),
        "server": ("gw.test", 80),
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    status = 0
    out_headers: dict[bytes, bytes] = {}
    chunks: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            out_headers.update({k.lower(): v for k, v in message.get("headers", [])})
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await api(scope, receive, send)
    return status, out_headers, b"".join(chunks)


def bearer(key: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {key}".encode())]


# -- admin API ---------------------------------------------------------------------------------


def all_routes(routes: Any, prefix: str = "") -> list[tuple[str, str]]:
    """``(method, path)`` of every route, routers included through ``include_router``."""
    found = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:  # FastAPI >= 0.165 keeps included routers as nodes
            found += all_routes(inner.routes, prefix + route.include_context.prefix)
        elif isinstance(route, Route):
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    found.append((method, prefix + route.path))
    return found


def admin_routes(api: Any) -> list[tuple[str, str]]:
    found = [(m, p) for m, p in all_routes(api.routes) if p.startswith("/admin")]
    documented = {
        (method.upper(), path)
        for path, operations in api.openapi()["paths"].items()
        if path.startswith("/admin")
        for method in operations
    }
    assert documented <= set(found)
    return found


def fill(path: str) -> str:
    return path.replace("{tenant_id}", "tenant-a").replace("{key_id}", "key_0000000000000000")


async def test_every_admin_route_needs_the_admin_key(gw: Gateway) -> None:
    routes = admin_routes(gw.api)
    assert len(routes) >= 10  # the whole admin API was enumerated
    wrong = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer " + ADMIN[:-1]},
        {"Authorization": "Bearer " + ADMIN + "x"},
        {"Authorization": "Basic " + ADMIN},
        {"Authorization": ADMIN},
        {"Authorization": "Bearer " + "x" * 100_000},
        gw.auth("tenant-a"),  # a tenant key is not an admin key
    ]
    for method, path in routes:
        for headers in wrong:
            response = await gw.client.request(method, fill(path), headers=headers, json={})
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert set(response.json()) <= PROBLEM_KEYS
    # and nothing changed: tenant-a and its key still stand
    assert (await gw.client.get("/tenant", headers=gw.auth("tenant-a"))).status_code == 200


async def test_every_admin_route_refuses_when_no_admin_key_is_configured(tmp_path: Path) -> None:
    async with gateway_for(tmp_path, admin_key=None) as gw:
        for method, path in admin_routes(gw.api):
            response = await gw.client.request(
                method, fill(path), headers={"Authorization": "Bearer "}, json={}
            )
            assert response.status_code == 401, (method, path)


async def test_admin_routes_show_key_material_only_once_on_create_and_rotate(gw: Gateway) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    c = gw.client
    created = await c.post(
        "/admin/tenants",
        headers=admin,
        json={"tenant_id": "new-co", "name": "New", "tier": "roomy"},
    )
    minted = await c.post("/admin/tenants/new-co/keys", headers=admin, json={"label": "ci"})
    rotated = await c.post("/admin/tenants/new-co/keys/rotate", headers=admin, json={"grace": 60})
    issued = [created.json()["api_key"], minted.json()["api_key"], rotated.json()["api_key"]]
    issued += list(gw.keys.values())
    key_id = minted.json()["key"]["key_id"]
    others = [
        await c.get("/admin/tenants", headers=admin),
        await c.get("/admin/tenants/new-co", headers=admin),
        await c.get("/admin/tenants/new-co/keys", headers=admin),
        await c.get("/admin/tenants/tenant-a/keys", headers=admin),
        await c.get("/admin/tenants/new-co/usage", headers=admin),
        await c.patch("/admin/tenants/new-co", headers=admin, json={"tier": "tiny"}),
        await c.post(f"/admin/tenants/new-co/keys/{key_id}/revoke", headers=admin),
        await c.get("/openapi.json"),
    ]
    for response in others:
        assert response.status_code == 200, response.text
        assert "api_key" not in response.json()
        for key in issued:
            signature = key.rsplit(".", 1)[1]
            assert signature not in response.text
            assert key[3:].split(".")[1] not in response.text
    for response in (created, minted, rotated):
        assert response.status_code == 201
        signature = response.json()["api_key"].rsplit(".", 1)[1]
        assert response.text.count(signature) == 1  # the key, once; the hint shows 4 chars
    deleted = await c.delete("/admin/tenants/new-co", headers=admin)
    assert deleted.status_code == 204
    assert deleted.content == b""


# -- keys over HTTP ----------------------------------------------------------------------------


async def test_huge_or_odd_authorization_headers_get_401(gw: Gateway) -> None:
    key = gw.keys["tenant-a"]
    for value in (
        "Bearer " + "A" * 1_000_000,
        "Bearer " + key + "A" * 10_000,
        "Bearer " + key[3:],
        "Bearer " + key.upper(),
        "Bearer " + key[:-1],
        "Bearer  " + key + " x",
        "Token " + key,
        "Bearer " + ADMIN,  # the admin key is not a tenant key
        "Bearer mt_" + ADMIN,
    ):
        response = await gw.client.get("/tenant", headers={"Authorization": value})
        assert response.status_code == 401, value[:40]
        assert "A" * 100 not in response.text  # the header is never echoed
    assert (await gw.client.get("/tenant", headers=gw.auth("tenant-a"))).status_code == 200


# -- errors ------------------------------------------------------------------------------------


async def test_a_failing_function_answers_only_the_generic_problem(gw: Gateway) -> None:
    for url, body in (
        ("/functions/explode", {}),
        ("/process", {"task_type": "explode", "data": {}}),
    ):
        response = await gw.client.post(url, headers=gw.auth("tenant-a"), json=body)
        assert response.status_code == 500
        problem = response.json()
        assert set(problem) <= PROBLEM_KEYS
        assert problem["detail"] == GENERIC
        assert problem["request_id"] == response.headers["x-request-id"]
        for leak in ("hunter2", "/srv/db", "RuntimeError", "Traceback", 'File "', "line "):
            assert leak not in response.text


async def test_batch_task_failures_carry_no_internals(gw: Gateway) -> None:
    response = await gw.client.post(
        "/batch",
        headers=gw.auth("tenant-a"),
        json={
            "tasks": [
                {"task_type": "explode", "data": {}},
                {"task_type": "echo", "data": {"text": "ok"}},
            ]
        },
    )
    for leak in ("hunter2", "/srv/db", "RuntimeError", "Traceback"):
        assert leak not in response.text


async def test_a_database_failure_answers_503_without_internals(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db_dir = tmp_path / "records"
    db_dir.mkdir()
    async with gateway_for(tmp_path, database_url=f"sqlite:///{db_dir / 'tk.db'}") as gw:
        gw.services.db.close()
        db_dir.rename(tmp_path / "moved")
        db_dir.write_text("not a directory")  # the database cannot be opened again
        gw.services.keys.invalidate()
        with caplog.at_level(logging.ERROR, logger="tenantkit.gateway"):
            response = await gw.client.get("/tenant", headers=gw.auth("tenant-a"))
        assert response.status_code == 503, response.text
        problem = response.json()
        assert set(problem) <= PROBLEM_KEYS
        assert problem["request_id"] == response.headers["x-request-id"]
        assert problem["detail"] == "the records database is unavailable; retry later"
        for leak in (str(tmp_path), "tk.db", "sqlite", "SQLite", "Traceback"):
            assert leak not in response.text
        # The operator gets the real message, under the request id the client quotes.
        logged = [r.getMessage() for r in caplog.records if r.name == "tenantkit.gateway"]
        assert any(problem["request_id"] in m and "tk.db" in m for m in logged), logged


@pytest.mark.parametrize(
    "sent",
    [
        b"abc\r\nSet-Cookie: stolen=1",
        b"abcdefgh\nX-Injected: 1",
        b"abcdefgh\x00zz",
        b"a" * 129,
        b"short",
        b"<script>alert(1)</script>",
        "r\u00e9quest-id-1234".encode(),
        b"../../etc/passwd",
        b"",
    ],
)
async def test_a_bad_client_request_id_is_replaced(gw: Gateway, sent: bytes) -> None:
    status, headers, body = await raw(gw.api, "GET", b"/health", [(b"x-request-id", sent)])
    assert status == 200
    rid = headers[b"x-request-id"]
    assert re.fullmatch(rb"[0-9a-f]{32}", rid), rid
    assert sent not in body or sent == b""
    status, headers, body = await raw(
        gw.api, "GET", b"/tenant", [(b"x-request-id", sent), (b"authorization", b"Bearer x")]
    )
    assert status == 401
    assert re.fullmatch(rb"[0-9a-f]{32}", headers[b"x-request-id"])
    assert b"\r" not in body
    assert b"Set-Cookie" not in body


async def test_a_good_client_request_id_is_kept_within_its_bound(gw: Gateway) -> None:
    for rid in ("req-12345678", "a" * 128, "trace:abc.def_ghi-1"):
        response = await gw.client.get("/health", headers={"X-Request-ID": rid})
        assert response.headers["x-request-id"] == rid


# -- files -------------------------------------------------------------------------------------


async def seed_files(gw: Gateway) -> None:
    put_b = await gw.client.put(
        "/files/secret.txt", headers=gw.auth("tenant-b"), content=b"B-SECRET"
    )
    assert put_b.status_code == 201
    put_a = await gw.client.put("/files/mine/a.txt", headers=gw.auth("tenant-a"), content=b"A")
    assert put_a.status_code == 201


def files_outside(gw: Gateway, tenant: str) -> dict[str, bytes]:
    """Every file under the data dir that is not in ``tenant``'s own root."""
    data = gw.settings.data_dir
    own = local_root(gw.settings, tenant)
    return {
        str(p.relative_to(data)): p.read_bytes()
        for p in sorted(data.rglob("*"))
        if p.is_file() and not p.is_symlink() and own not in p.parents and "volumes" in p.parts
    }


TRAVERSALS = [
    b"/files/..%2Ftenant-b%2Fsecret.txt",
    b"/files/%2e%2e/tenant-b/secret.txt",
    b"/files/%2E%2E%2Ftenant-b%2Fsecret.txt",
    b"/files/mine/%2e%2e/%2e%2e/tenant-b/secret.txt",
    b"/files/mine/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    b"/files/%2Fetc%2Fpasswd",
    b"/files/%2F%2Fetc/passwd",
    b"/files/..%5Ctenant-b%5Csecret.txt",
    b"/files/mine%5C..%5C..%5Ctenant-b%5Csecret.txt",
    b"/files/secret.txt%00.png",
    b"/files/%00",
    b"/files/%EF%BC%8E%EF%BC%8E/tenant-b/secret.txt",  # fullwidth dots
    b"/files/%E2%80%A4%E2%80%A4/tenant-b/secret.txt",  # one-dot leaders
    b"/files/..%EF%BC%8Ftenant-b%EF%BC%8Fsecret.txt",  # fullwidth solidus
    b"/files/..%E2%88%95tenant-b%E2%88%95secret.txt",  # division slash
    b"/files/..%C0%AFtenant-b%C0%AFsecret.txt",  # overlong UTF-8 '/'
    b"/files/%2e%2e%2f%2e%2e%2fdata%2ftenantkit.db",
    b"/files/.tk-partial-lock",
    b"/files/mine/%0d%0aSet-Cookie:x",
    b"/files/%E2%80%AE.txt",  # right-to-left override
]


@pytest.mark.parametrize("raw_path", TRAVERSALS)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_traversal_through_the_http_routes_never_leaves_the_tenant(
    gw: Gateway, raw_path: bytes, method: str
) -> None:
    await seed_files(gw)
    before = files_outside(gw, "tenant-a")
    status, _headers, body = await raw(
        gw.api,
        method,
        raw_path,
        bearer(gw.keys["tenant-a"]),
        b"OVERWRITE" if method == "PUT" else b"",
    )
    # A PUT may only ever create a literal (odd) name inside the tenant's own root.
    assert status in ((400, 404, 201) if method == "PUT" else (400, 404)), (status, body)
    assert b"B-SECRET" not in body
    assert files_outside(gw, "tenant-a") == before
    if status == 201:
        stored = local_root(gw.settings, "tenant-a") / json.loads(body)["file"]["path"]
        assert stored.read_bytes() == b"OVERWRITE"
    assert b"/" + str(gw.settings.data_dir).encode().lstrip(b"/") not in body  # no server paths


@pytest.mark.parametrize(
    "raw_path",
    [b"/files/%252e%252e/tenant-b/secret.txt", b"/files/%252e%252e%252ftenant-b%252fsecret.txt"],
)
async def test_double_encoding_is_a_literal_name_inside_the_tenant(
    gw: Gateway, raw_path: bytes
) -> None:
    await seed_files(gw)
    before = files_outside(gw, "tenant-a")
    status, _, body = await raw(gw.api, "GET", raw_path, bearer(gw.keys["tenant-a"]))
    assert status in (400, 404)
    assert b"B-SECRET" not in body
    status, _, body = await raw(gw.api, "PUT", raw_path, bearer(gw.keys["tenant-a"]), b"x")
    assert status in (201, 400), body
    assert files_outside(gw, "tenant-a") == before
    if status == 201:
        assert (local_root(gw.settings, "tenant-a") / "%2e%2e").exists() or any(
            "%2e%2e" in p.name for p in local_root(gw.settings, "tenant-a").iterdir()
        )


async def test_links_planted_in_a_tenant_root_are_never_followed(gw: Gateway) -> None:
    await seed_files(gw)
    root_a = local_root(gw.settings, "tenant-a")
    root_b = local_root(gw.settings, "tenant-b")
    os.symlink(root_b, root_a / "to-b")
    os.symlink(root_b / "secret.txt", root_a / "mine" / "b-secret.txt")
    os.symlink("/etc", root_a / "etc")
    a = gw.auth("tenant-a")
    for path in ("/files/to-b/secret.txt", "/files/mine/b-secret.txt", "/files/etc/passwd"):
        got = await gw.client.get(path, headers=a)
        assert got.status_code in (400, 404), path
        assert b"B-SECRET" not in got.content
        assert b"root:" not in got.content
        put = await gw.client.put(path, headers=a, content=b"OVERWRITE")
        assert put.status_code in (400, 404, 409), (path, put.text)
        deleted = await gw.client.delete(path, headers=a)
        assert deleted.status_code in (400, 404, 409), path
    assert (root_b / "secret.txt").read_bytes() == b"B-SECRET"
    listing = await gw.client.get("/files", headers=a)
    assert [f["path"] for f in listing.json()["files"]] == ["mine/a.txt"]
    flat = await gw.client.get("/files", params={"recursive": "false"}, headers=a)
    assert {f["path"] for f in flat.json()["files"]} == {"mine"}


async def test_a_link_swapped_in_after_the_check_is_not_followed(gw: Gateway) -> None:
    """The race a path check then open would lose: the directory becomes a link
    between two requests (and could between check and use): the walk refuses it."""
    await seed_files(gw)
    root_a = local_root(gw.settings, "tenant-a")
    root_b = local_root(gw.settings, "tenant-b")
    a = gw.auth("tenant-a")
    assert (await gw.client.get("/files/mine/a.txt", headers=a)).status_code == 200
    (root_a / "mine" / "a.txt").unlink()
    (root_a / "mine").rmdir()
    os.symlink(root_b, root_a / "mine")
    for method in ("GET", "PUT", "DELETE"):
        response = await gw.client.request(
            method, "/files/mine/secret.txt", headers=a, content=b"x"
        )
        assert response.status_code in (400, 404), (method, response.text)
        assert b"B-SECRET" not in response.content
    assert (root_b / "secret.txt").read_bytes() == b"B-SECRET"


def file_routes() -> list[tuple[str, str]]:
    return all_routes(files_router.routes)


async def test_no_file_route_reaches_another_tenant(gw: Gateway) -> None:
    await seed_files(gw)
    routes = file_routes()
    assert {m for m, _ in routes} == {"GET", "PUT", "DELETE"}
    a = gw.auth("tenant-a")
    for method, path in routes:
        url = path.replace("{path:path}", "secret.txt").replace("{path}", "secret.txt")
        if method == "PUT":
            continue  # below: a PUT makes tenant-a's own file
        response = await gw.client.request(method, url, headers=a)
        assert b"B-SECRET" not in response.content
        if url == "/files":
            assert [f["path"] for f in response.json()["files"]] == ["mine/a.txt"]
            assert response.json()["usage"]["files"] == 1
        else:
            assert response.status_code == 404
    put = await gw.client.put("/files/secret.txt", headers=a, content=b"A's own")
    assert put.status_code == 201
    b = gw.auth("tenant-b")
    assert (await gw.client.get("/files/secret.txt", headers=b)).content == b"B-SECRET"
    assert (await gw.client.get("/files/secret.txt", headers=a)).content == b"A's own"
    assert [f["path"] for f in (await gw.client.get("/files", headers=b)).json()["files"]] == [
        "secret.txt"
    ]
    for prefix in ("../tenant-b/", "..", "/", "%2e%2e/"):
        listing = await gw.client.get("/files", params={"prefix": prefix}, headers=a)
        assert b"B-SECRET" not in listing.content
        if listing.status_code == 200:
            assert all(not f["path"].startswith("..") for f in listing.json()["files"])
    # without a key, nothing at all
    for method, path in routes:
        url = path.replace("{path:path}", "secret.txt")
        assert (await gw.client.request(method, url)).status_code == 401


@pytest.mark.parametrize("declared", [True, False])
async def test_concurrent_uploads_cannot_exceed_the_quota(gw: Gateway, declared: bool) -> None:
    tiny = gw.auth("tiny-co")  # 1000 bytes, 3 files

    async def chunked(data: bytes) -> AsyncIterator[bytes]:
        for i in range(0, len(data), 50):
            await asyncio.sleep(0)
            yield data[i : i + 50]

    async def upload(n: int) -> int:
        data = bytes([65 + n]) * 400
        content: Any = data if declared else chunked(data)
        response = await gw.client.put(f"/files/f{n}.bin", headers=tiny, content=content)
        return response.status_code

    statuses = await asyncio.gather(*(upload(n) for n in range(10)))
    assert statuses.count(201) <= 2, statuses
    assert set(statuses) <= {201, 413, 429}, statuses
    root = local_root(gw.settings, "tiny-co")
    stored = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".tk-partial")]
    assert sum(p.stat().st_size for p in stored) <= 1000
    assert len(stored) <= 3
    usage = (await gw.client.get("/files", headers=tiny)).json()["usage"]
    assert usage["bytes"] == sum(p.stat().st_size for p in stored)


@pytest.mark.parametrize(
    "name",
    ["page.html", "page.htm", "image.svg", "feed.xml", "app.js", "page.xhtml", "noext", "x.xsl"],
)
async def test_downloads_cannot_act_as_pages(gw: Gateway, name: str) -> None:
    a = gw.auth("tenant-a")
    payload = b"<html><script>fetch('/admin/tenants')</script></html>"
    assert (await gw.client.put(f"/files/{name}", headers=a, content=payload)).status_code == 201
    got = await gw.client.get(f"/files/{name}", headers=a)
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-disposition"].startswith("attachment;")
    assert "sandbox" in got.headers["content-security-policy"]


async def test_harmless_types_keep_their_type_and_the_protections(gw: Gateway) -> None:
    a = gw.auth("tenant-a")
    await gw.client.put("/files/data.json", headers=a, content=b"{}")
    got = await gw.client.get("/files/data.json", headers=a)
    assert got.headers["content-type"].startswith("application/json")
    assert got.headers["content-security-policy"] == "default-src 'none'; sandbox"


# -- deletion and re-creation over the admin API ----------------------------------------------


async def test_admin_delete_then_create_starts_with_nothing_of_the_old_tenant(gw: Gateway) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    a = gw.auth("tenant-a")
    old_key = gw.keys["tenant-a"]
    await seed_files(gw)
    assert (
        await gw.client.post("/functions/echo", headers=a, json={"text": "x"})
    ).status_code == 200
    assert (await gw.client.delete("/admin/tenants/tenant-a", headers=admin)).status_code == 204
    assert not local_root(gw.settings, "tenant-a").exists()
    assert (await gw.client.get("/files", headers=a)).status_code == 401
    created = await gw.client.post(
        "/admin/tenants",
        headers=admin,
        json={"tenant_id": "tenant-a", "name": "Someone else", "tier": "roomy"},
    )
    assert created.status_code == 201
    fresh = {"Authorization": f"Bearer {created.json()['api_key']}"}
    listing = await gw.client.get("/files", headers=fresh)
    assert listing.json()["files"] == []
    assert listing.json()["usage"]["bytes"] == 0
    assert (await gw.client.get("/files/mine/a.txt", headers=fresh)).status_code == 404
    assert (
        await gw.client.get("/tenant", headers={"Authorization": f"Bearer {old_key}"})
    ).status_code == 401
    limits = (await gw.client.get("/rate-limit", headers=fresh)).json()
    assert "hunter2" not in str(limits)


# -- keys never logged -------------------------------------------------------------------------


def key_parts(key: str) -> list[str]:
    token = key[3:]
    _header, payload, signature = token.split(".")
    return [key, token, payload, signature]


async def test_gateway_logs_never_hold_key_material(
    gw: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    c = gw.client
    created = await c.post(
        "/admin/tenants", headers=admin, json={"tenant_id": "log-co", "name": "L", "tier": "roomy"}
    )
    key = created.json()["api_key"]
    auth = {"Authorization": f"Bearer {key}"}
    await c.post("/functions/echo", headers=auth, json={"text": "hi"})
    await c.post("/functions/explode", headers=auth, json={})
    await c.post("/functions/echo", headers={"Authorization": f"Bearer {key}x"}, json={})
    await c.post("/functions/echo", headers={"Authorization": f"Bearer {key[:-2]}"}, json={})
    await c.get("/admin/tenants", headers={"Authorization": f"Bearer {ADMIN}x"})
    await c.put("/files/x.txt", headers=auth, content=b"x")
    rotated = await c.post("/admin/tenants/log-co/keys/rotate", headers=admin, json={})
    await c.delete("/admin/tenants/log-co", headers=admin)
    await c.get("/tenant", headers=auth)
    gw.services.meter.flush()
    text = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert "explode" in text or caplog.records  # the failing call was logged
    for secret in [*key_parts(key), *key_parts(rotated.json()["api_key"]), ADMIN]:
        assert secret not in text


def test_cli_never_logs_or_prints_keys_to_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in list(os.environ):
        if name.startswith("TENANTKIT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TENANTKIT_DATA_DIR", str(tmp_path / "state"))
    caplog.set_level(logging.DEBUG)
    runner = CliRunner()

    def run(*args: str) -> Any:
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result

    created = run(
        "tenant", "create", "--tenant-id", "cli-co", "--name", "C", "--tier", "pro", "--json"
    )
    import json as _json

    keys = [_json.loads(created.stdout)["api_key"]]
    minted = run("key", "create", "--tenant-id", "cli-co", "--json")
    keys.append(_json.loads(minted.stdout)["api_key"])
    rotated = run("key", "rotate", "--tenant-id", "cli-co", "--json")
    keys.append(_json.loads(rotated.stdout)["api_key"])
    listed = run("key", "list", "--tenant-id", "cli-co", "--json")
    info = run("tenant", "info", "--tenant-id", "cli-co", "--json")
    run("tenant", "delete", "--tenant-id", "cli-co", "--yes", "--json")
    secret_file = (tmp_path / "state" / "signing-secret").read_text().strip()
    for key in keys:
        for part in key_parts(key):
            assert part not in caplog.text
            assert part not in listed.stdout
            assert part not in info.stdout
    for result in (created, minted, rotated):
        assert all(part not in result.stderr for key in keys for part in key_parts(key))
        assert secret_file not in result.output
    assert secret_file not in caplog.text


def test_no_logging_call_formats_a_key_or_secret() -> None:
    """Grep: no log or print call in the package is handed a key, token or secret."""
    import tenantkit

    root = Path(tenantkit.__file__).parent
    call = re.compile(r"\b(logger|logging|log)\.(debug|info|warning|error|exception|critical)\(")
    sensitive = re.compile(r"api_key|token|secret|signing_key|admin_key|authorization", re.I)
    offenders = []
    for path in root.rglob("*.py"):
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if call.search(line):
                statement = " ".join(lines[number : number + 4])
                args = statement.split("(", 1)[1].split(")")[0]
                if sensitive.search(args):
                    offenders.append(f"{path.relative_to(root)}:{number + 1}: {line.strip()}")
    assert offenders == []


async def test_a_recreated_tenant_sees_none_of_the_old_tenants_usage(gw: Gateway) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    for _ in range(3):
        ok = await gw.client.post(
            "/functions/echo", headers=gw.auth("tenant-a"), json={"text": "x"}
        )
        assert ok.status_code == 200
    gw.services.meter.flush()
    assert (await gw.client.delete("/admin/tenants/tenant-a", headers=admin)).status_code == 204
    created = await gw.client.post(
        "/admin/tenants",
        headers=admin,
        json={"tenant_id": "tenant-a", "name": "Someone else", "tier": "roomy"},
    )
    fresh = {"Authorization": f"Bearer {created.json()['api_key']}"}
    usage = (await gw.client.get("/usage", headers=fresh)).json()
    limits = (await gw.client.get("/rate-limit", headers=fresh)).json()
    assert usage["totals"]["requests"] == 0
    assert "echo" not in usage.get("by_function", {})
    assert limits["compute_seconds_per_day"]["used"] == 0


async def test_out_of_range_numbers_in_admin_bodies_are_422_not_500(gw: Gateway) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"}
    for url, body in (
        ("/admin/tenants/tenant-a/keys", b'{"expires_in": 1e400}'),
        ("/admin/tenants/tenant-a/keys/rotate", b'{"grace": 1e400}'),
        ("/admin/tenants/tenant-a/keys", b'{"scopes": [' + b'"s",' * 40 + b'"s"]}'),
    ):
        response = await gw.client.post(url, headers=admin, content=body)
        assert response.status_code == 422, (url, response.text)
    assert (await gw.client.get("/tenant", headers=gw.auth("tenant-a"))).status_code == 200


async def test_a_non_ascii_content_length_is_refused_not_a_crash(gw: Gateway) -> None:
    """``"²".isdigit()`` is true but ``int("²")`` fails: only ASCII digits count."""
    path = b"/files/odd.bin"
    scope_headers = [*bearer(gw.keys["tenant-a"]), (b"content-length", b"\xb2")]
    status, _, body = await raw(gw.api, "PUT", path, scope_headers)
    assert status == 422, body
    assert not (local_root(gw.settings, "tenant-a") / "odd.bin").exists()


async def test_tenant_usage_and_rate_limit_routes_need_their_scopes(gw: Gateway) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}

    async def key(*scopes: str) -> dict[str, str]:
        minted = await gw.client.post(
            "/admin/tenants/tenant-a/keys", headers=admin, json={"scopes": list(scopes)}
        )
        assert minted.status_code == 201, minted.text
        return {"Authorization": f"Bearer {minted.json()['api_key']}"}

    async def statuses(headers: dict[str, str]) -> dict[str, int]:
        return {
            route: (await gw.client.get(route, headers=headers)).status_code
            for route in ("/tenant", "/usage", "/rate-limit")
        }

    everything = {"/tenant": 200, "/usage": 200, "/rate-limit": 200}
    assert await statuses(await key()) == everything  # no scopes: unrestricted
    assert await statuses(await key("tenant:read", "usage:*")) == everything
    assert await statuses(await key("functions:echo")) == {
        "/tenant": 403,
        "/usage": 403,
        "/rate-limit": 403,
    }
    assert await statuses(await key("tenant:read")) == {
        "/tenant": 200,
        "/usage": 403,
        "/rate-limit": 403,
    }
    assert await statuses(await key("usage:read", "functions:*")) == {
        "/tenant": 403,
        "/usage": 200,
        "/rate-limit": 200,
    }
    refused = await gw.client.get("/tenant", headers=await key("usage:read"))
    assert refused.json()["type"].endswith("/scope-not-allowed")
    assert "tenant:read" in refused.json()["detail"]
    assert "email" not in refused.text


async def test_admin_create_and_delete_do_their_file_work_off_the_event_loop(
    gw: Gateway,
) -> None:
    import threading

    admin = {"Authorization": f"Bearer {ADMIN}"}
    loop_thread = threading.get_ident()
    seen: list[tuple[str, bool]] = []
    remove = gw.services.tenants.remove_files
    assert remove is not None

    def recording_remove(tenant_id: str, *, leftovers: bool = False) -> object:
        seen.append((tenant_id, threading.get_ident() == loop_thread))
        return remove(tenant_id, leftovers=leftovers)

    gw.services.tenants.remove_files = recording_remove
    created = await gw.client.post(
        "/admin/tenants",
        headers=admin,
        json={"tenant_id": "fresh-co", "name": "Fresh", "tier": "roomy"},
    )
    assert created.status_code == 201, created.text
    assert (await gw.client.delete("/admin/tenants/fresh-co", headers=admin)).status_code == 204
    assert seen, "the tenant service removed no files"
    assert all(tenant == "fresh-co" and not on_loop for tenant, on_loop in seen), seen


async def test_a_scoped_key_is_held_to_its_scopes_on_every_route(gw: Gateway) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    minted = await gw.client.post(
        "/admin/tenants/tenant-a/keys", headers=admin, json={"scopes": ["functions:echo"]}
    )
    scoped = {"Authorization": f"Bearer {minted.json()['api_key']}"}
    c = gw.client
    assert (await c.post("/functions/echo", headers=scoped, json={"text": "x"})).status_code == 200
    assert (await c.post("/functions/explode", headers=scoped, json={})).status_code == 403
    process = {"task_type": "explode", "data": {}}
    assert (await c.post("/process", headers=scoped, json=process)).status_code == 403
    batch = await c.post("/batch", headers=scoped, json={"tasks": [process]})
    assert [r["status"] for r in batch.json()["results"]] == [403]
    assert (await c.get("/files", headers=scoped)).status_code == 403
    assert (await c.put("/files/x.txt", headers=scoped, content=b"x")).status_code == 403
    assert (await c.delete("/files/x.txt", headers=scoped)).status_code == 403
