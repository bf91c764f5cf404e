"""The gateway on loopback: routes, problems, headers, limits, metering, admin API."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenantkit.config import DEFAULT_TIERS, Tier, get_settings
from tenantkit.db import Database
from tenantkit.errors import ValidationError
from tenantkit.gateway import create_gateway
from tenantkit.testing import GatewayHarness, local_gateway, running_server
from tenantkit.workers import TenantApp, TenantContext

PROBLEM = "application/problem+json"
RATE_HEADERS = ("ratelimit-policy", "ratelimit", "x-ratelimit-limit", "x-ratelimit-remaining")

TIERS = {
    **DEFAULT_TIERS,
    "tiny": Tier("tiny", 3600, 3, 1, 1_000, 10**6, 10),
    "metered": Tier("metered", 3600, 50, 5, 0.05, 10**6, 10),
    "bulk": Tier("bulk", 10**6, 10**6, 1000, 10**6, 10**9, 10**6),
}

app = TenantApp("gateway-test", tiers=TIERS)
release = threading.Event()


@app.tenant_function(timeout=5)
def analyze(items: list[float], ctx: TenantContext) -> dict[str, Any]:
    """Mean of the items."""
    return {"mean": sum(items) / len(items), "tenant": ctx.tenant_id, "rid": ctx.request_id}


@app.tenant_function(tiers={"pro", "enterprise"}, path="/inference")
def inference(model_name: str, inputs: list[float]) -> dict[str, Any]:
    return {"model_name": model_name, "n": len(inputs)}


@app.tenant_function
def explode() -> None:
    raise RuntimeError("database password is hunter2")


@app.tenant_function
def refuse() -> None:
    raise ValidationError("items must not be empty")


@app.tenant_function(timeout=0.2)
def stuck() -> None:
    release.wait(5)


@app.tenant_function(timeout=5)
async def wait_async(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@app.tenant_function
def burn(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[GatewayHarness]:
    settings = get_settings(
        data_dir=tmp_path, signing_key="k" * 32, admin_key="a" * 40, max_body_bytes=4096
    )
    with local_gateway(app, tier="free", settings=settings, tenant_id="acme-corp") as harness:
        yield harness
    release.set()
    release.clear()


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == f"https://tenantkit.dev/problems/{code}"
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["title"]
    return body


def has_rate_headers(response: httpx.Response) -> bool:
    return all(name in response.headers for name in RATE_HEADERS)


# -- basics ------------------------------------------------------------------------


def test_health_needs_no_key_and_every_response_has_a_request_id(gw: GatewayHarness) -> None:
    response = gw.client.get("/health", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    missing = gw.client.get("/nope")
    assert_problem(missing, 404, "not-found")


def test_a_well_formed_client_request_id_is_kept(gw: GatewayHarness) -> None:
    kept = gw.client.get("/health", headers={"X-Request-ID": "client-req-0001"})
    assert kept.headers["x-request-id"] == "client-req-0001"
    for bad in ("short", "has spaces in it", "x" * 200, "-leading-dash-0001"):
        replaced = gw.client.get("/health", headers={"X-Request-ID": bad})
        assert replaced.headers["x-request-id"] != bad
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["x-request-id"])


def test_reused_client_request_ids_are_still_metered_once_each(gw: GatewayHarness) -> None:
    for _ in range(2):
        response = gw.client.post(
            "/functions/analyze", json={"items": [1]}, headers={"X-Request-ID": "same-id-0001"}
        )
        assert response.status_code == 200
    events = gw.usage_events()
    assert len(events) == 2
    assert all(e.request_id.startswith("same-id-0001") for e in events)


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer mt_garbage", "Basic abc", "Bearer x.y.z"]
)
def test_bad_keys_get_401(gw: GatewayHarness, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    with httpx.Client(base_url=gw.url) as client:
        response = client.post("/process", json={"task_type": "analyze"}, headers=headers)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert not has_rate_headers(response)


# -- calling functions -------------------------------------------------------------------


def test_process_runs_a_task_like_the_seed(gw: GatewayHarness) -> None:
    response = gw.client.post(
        "/process", json={"task_type": "analyze", "data": {"items": [1, 2, 3, 4, 5]}}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success"
    assert body["task_type"] == "analyze"
    assert body["result"]["mean"] == 3
    assert body["result"]["tenant"] == "acme-corp"
    assert body["request_id"] == response.headers["x-request-id"] == body["result"]["rid"]
    assert has_rate_headers(response)
    assert response.headers["x-ratelimit-limit"] == "100"
    assert response.headers["ratelimit-policy"] == '"default";q=100;w=3600'


def test_functions_route_and_own_path_take_the_arguments_as_body(gw: GatewayHarness) -> None:
    response = gw.client.post("/functions/analyze", json={"items": [2, 4]})
    assert response.status_code == 200
    assert response.json()["mean"] == 3
    pro_key = gw.create_tenant("pro-corp", "pro")
    own = gw.client.post(
        "/inference",
        json={"model_name": "m", "inputs": [1, 2]},
        headers=gw.headers(pro_key),
    )
    assert own.status_code == 200
    assert own.json() == {"model_name": "m", "n": 2}


def test_context_cannot_be_smuggled_in_the_body(gw: GatewayHarness) -> None:
    response = gw.client.post(
        "/functions/analyze", json={"items": [1], "ctx": {"tenant_id": "other"}}
    )
    body = assert_problem(response, 422, "invalid-arguments")
    assert ["ctx"] in [e["loc"] for e in body["errors"]]


def test_unknown_function_is_404_with_rate_headers(gw: GatewayHarness) -> None:
    for response in (
        gw.client.post("/process", json={"task_type": "nope", "data": {}}),
        gw.client.post("/functions/nope", json={}),
    ):
        assert_problem(response, 404, "function-not-found")
        assert has_rate_headers(response)


@pytest.mark.parametrize(
    ("path", "content", "loc"),
    [
        ("/process", b"{not json", ["body"]),
        ("/process", b'{"data": {}}', ["body", "task_type"]),
        ("/process", b'{"task_type": "analyze", "data": {"items": ["x"]}}', ["data", "items", 0]),
        ("/functions/analyze", b'{"items": "nope"}', ["items"]),
        ("/functions/analyze", b"{", None),
        ("/batch", b'{"tasks": []}', ["body", "tasks"]),
    ],
)
def test_invalid_bodies_get_422(
    gw: GatewayHarness, path: str, content: bytes, loc: list[Any] | None
) -> None:
    response = gw.client.post(path, content=content, headers={"Content-Type": "application/json"})
    body = assert_problem(response, 422, "invalid-arguments")
    if loc is not None:
        assert loc in [e["loc"] for e in body["errors"]]
    assert has_rate_headers(response)
    assert gw.usage_events() == []


def test_tier_gating_is_403_until_an_upgrade(gw: GatewayHarness) -> None:
    body = {"model_name": "m", "inputs": [1]}
    response = gw.client.post("/inference", json=body)
    problem = assert_problem(response, 403, "tier-not-allowed")
    assert "pro" in problem["detail"]
    assert has_rate_headers(response)
    gw.services.tenants.change_tier("acme-corp", "pro")
    upgraded = gw.client.post("/inference", json=body)
    assert upgraded.status_code == 200
    assert upgraded.headers["x-ratelimit-limit"] == "1000"


def test_key_scopes_limit_functions(gw: GatewayHarness) -> None:
    issued = gw.services.keys.mint("acme-corp", scopes=["functions:analyze"])
    headers = gw.headers(issued.api_key)
    ok = gw.client.post("/functions/analyze", json={"items": [1]}, headers=headers)
    assert ok.status_code == 200
    refused = gw.client.post("/functions/burn", json={"seconds": 0}, headers=headers)
    assert_problem(refused, 403, "scope-not-allowed")


def test_a_functions_exception_is_a_500_without_its_message(gw: GatewayHarness) -> None:
    response = gw.client.post("/functions/explode", json={})
    assert_problem(response, 500, "function-error")
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    assert has_rate_headers(response)
    [event] = gw.usage_events()
    assert event.status == 500
    assert event.function == "explode"


def test_a_tenantkit_4xx_raised_by_a_function_reaches_the_caller(gw: GatewayHarness) -> None:
    response = gw.client.post("/functions/refuse", json={})
    body = assert_problem(response, 422, "invalid-input")
    assert body["detail"] == "items must not be empty"


def test_timeout_is_504_and_still_metered(gw: GatewayHarness) -> None:
    response = gw.client.post("/process", json={"task_type": "stuck", "data": {}})
    assert_problem(response, 504, "function-timeout")
    assert has_rate_headers(response)
    [event] = gw.usage_events()
    assert event.status == 504
    assert event.compute_seconds >= 0.19


def test_one_usage_event_per_call_with_bytes(gw: GatewayHarness) -> None:
    payload = b'{"items": [1, 2, 3]}'
    response = gw.client.post(
        "/functions/analyze", content=payload, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200
    [event] = gw.usage_events()
    assert event.request_id == response.headers["x-request-id"]
    assert event.tenant_id == "acme-corp"
    assert event.function == "analyze"
    assert event.status == 200
    assert event.bytes_in == len(payload)
    assert event.bytes_out == len(response.content)
    assert 0 <= event.compute_seconds < 1
    assert event.started_at <= event.ended_at
    assert event.gpu_seconds == 0


# -- body limit ------------------------------------------------------------------------


def test_declared_body_over_the_limit_is_413_before_parsing(gw: GatewayHarness) -> None:
    response = gw.client.post(
        "/process", content=b"x" * 5000, headers={"Content-Type": "application/json"}
    )
    body = assert_problem(response, 413, "payload-too-large")
    assert body["max_body_bytes"] == 4096


def test_streamed_body_over_the_limit_is_413(gw: GatewayHarness) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"x" * 1000

    for path in ("/process", "/functions/analyze", "/admin/tenants"):
        response = gw.client.post(path, content=chunks())
        assert_problem(response, 413, "payload-too-large")
    assert gw.usage_events() == []


# -- limits ---------------------------------------------------------------------------------


def test_rate_limit_429_with_retry_after(gw: GatewayHarness) -> None:
    key = gw.create_tenant("tiny-corp", "tiny")
    statuses = []
    for _ in range(4):
        response = gw.client.post(
            "/functions/analyze", json={"items": [1]}, headers=gw.headers(key)
        )
        statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 429]
    body = assert_problem(response, 429, "rate-limited")
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert body["retry_after"] >= 1
    assert len(gw.usage_events("tiny-corp")) == 3


def test_batch_counts_every_task_and_keeps_order(gw: GatewayHarness) -> None:
    tasks = [
        {"task_type": "analyze", "data": {"items": [1, 3]}},
        {"task_type": "explode", "data": {}},
        {"task_type": "missing", "data": {}},
        {"task_type": "analyze", "data": {"items": "bad"}},
        {"task_type": "inference", "data": {"model_name": "m", "inputs": []}},
        {"task_type": "analyze", "data": {"items": [5]}},
    ]
    before = int(gw.client.get("/rate-limit").headers["x-ratelimit-remaining"])
    response = gw.client.post("/batch", json={"tasks": tasks})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["status"] for r in body["results"]] == [200, 500, 404, 422, 403, 200]
    assert [r["index"] for r in body["results"]] == list(range(6))
    assert body["results"][0]["result"]["mean"] == 2
    assert body["results"][5]["result"]["mean"] == 5
    assert "hunter2" not in response.text
    assert body["succeeded"] == 2
    assert int(response.headers["x-ratelimit-remaining"]) == before - len(tasks)
    events = gw.usage_events()
    assert sorted(e.function for e in events) == ["analyze", "analyze", "explode"]
    assert len({e.request_id for e in events}) == 3


def test_batch_size_is_capped(gw: GatewayHarness) -> None:
    tasks = [{"task_type": "refuse"}] * 101
    response = gw.client.post("/batch", json={"tasks": tasks})
    body = assert_problem(response, 422, "invalid-arguments")
    assert "100" in body["detail"]


def test_batch_larger_than_the_burst_is_refused(gw: GatewayHarness) -> None:
    key = gw.create_tenant("tiny-corp", "tiny")
    tasks = [{"task_type": "analyze", "data": {"items": [1]}}] * 4
    response = gw.client.post("/batch", json={"tasks": tasks}, headers=gw.headers(key))
    assert_problem(response, 429, "rate-limited")


def test_daily_compute_quota(gw: GatewayHarness) -> None:
    key = gw.create_tenant("metered-corp", "metered")
    first = gw.client.post("/functions/burn", json={"seconds": 0.1}, headers=gw.headers(key))
    assert first.status_code == 200
    second = gw.client.post("/functions/burn", json={"seconds": 0}, headers=gw.headers(key))
    body = assert_problem(second, 429, "quota-exceeded")
    assert body["limit"] == "compute-seconds-per-day"
    assert int(second.headers["retry-after"]) > 0


def test_concurrency_limit(tmp_path: Path) -> None:
    asyncio.run(concurrency_limit(tmp_path))


async def concurrency_limit(tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path, signing_key="k" * 32)
    gateway = create_gateway(app, settings)
    services = gateway.state.tenantkit
    _, issued = services.tenants.create("tiny-corp", "Tiny", "tiny")
    headers = {"Authorization": f"Bearer {issued.api_key}"}
    async with gateway.router.lifespan_context(gateway):
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            slow = asyncio.create_task(
                client.post("/functions/wait_async", json={"seconds": 0.5}, headers=headers)
            )
            for _ in range(200):
                with services.db.transaction(write=False) as tx:
                    if tx.active_leases("tiny-corp", services.clock()) == 1:
                        break
                await asyncio.sleep(0.01)
            refused = await client.post(
                "/functions/wait_async", json={"seconds": 0}, headers=headers
            )
            assert_problem(refused, 429, "concurrency-limited")
            assert (await slow).status_code == 200
            again = await client.post("/functions/wait_async", json={"seconds": 0}, headers=headers)
            assert again.status_code == 200


# -- tenant routes -------------------------------------------------------------------------


def test_tenant_usage_and_rate_limit_routes(gw: GatewayHarness) -> None:
    tenant = gw.client.get("/tenant")
    assert tenant.status_code == 200
    body = tenant.json()
    assert body["tenant_id"] == "acme-corp"
    assert body["tier"] == "free"
    assert body["limits"]["requests_per_hour"] == 100
    assert "api_key" not in tenant.text
    assert has_rate_headers(tenant)
    gw.client.post("/functions/analyze", json={"items": [1]})
    usage = gw.client.get("/usage")
    assert usage.status_code == 200
    assert usage.json()["totals"]["requests"] == 1
    assert has_rate_headers(usage)
    assert gw.client.get("/usage", params={"period": "month"}).status_code == 200
    assert_problem(gw.client.get("/usage", params={"period": "week"}), 422, "invalid-input")
    limits = gw.client.get("/rate-limit")
    assert limits.status_code == 200
    assert limits.json()["tier"] == "free"
    assert limits.json()["rate"]["remaining"] == 19
    assert has_rate_headers(limits)


def test_openapi_has_a_schema_per_function(gw: GatewayHarness) -> None:
    spec = gw.client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for _name, path in (("analyze", "/functions/analyze"), ("inference", "/inference")):
        operation = spec["paths"][path]["post"]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = schemas[ref.rsplit("/", 1)[1]]
        assert schema["type"] == "object"
        assert "ctx" not in schema["properties"]
    assert set(schemas["AnalyzeInput"]["required"]) == {"items"}
    assert set(schemas["InferenceInput"]["properties"]) == {"model_name", "inputs"}
    assert "/process" in spec["paths"]
    assert "/batch" in spec["paths"]
    assert "bearerAuth" in spec["components"]["securitySchemes"]
    docs = gw.client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


# -- admin API --------------------------------------------------------------------------------


def admin(gw: GatewayHarness) -> dict[str, str]:
    return {"Authorization": "Bearer " + "a" * 40}


def test_admin_api_needs_the_admin_key(gw: GatewayHarness) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, gw.headers(gw.api_key)):
        response = gw.client.get("/admin/tenants", headers=headers)
        assert_problem(response, 401, "unauthorized")


def test_admin_api_without_a_configured_key_refuses_everything(tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path, signing_key="k" * 32, admin_key=None)
    with local_gateway(app, settings=settings) as harness:
        response = harness.client.get("/admin/tenants", headers={"Authorization": "Bearer x"})
        body = assert_problem(response, 401, "unauthorized")
        assert "TENANTKIT_ADMIN_KEY" in body["detail"]


def test_admin_tenant_lifecycle(gw: GatewayHarness) -> None:
    h = admin(gw)
    created = gw.client.post(
        "/admin/tenants",
        json={"tenant_id": "new-co", "name": "New Co", "tier": "free", "email": "a@b.co"},
        headers=h,
    )
    assert created.status_code == 201, created.text
    key = created.json()["api_key"]
    assert created.json()["tenant"]["tenant_id"] == "new-co"
    assert gw.client.get("/tenant", headers=gw.headers(key)).json()["tenant_id"] == "new-co"
    dup = gw.client.post(
        "/admin/tenants", json={"tenant_id": "new-co", "name": "X", "tier": "free"}, headers=h
    )
    assert_problem(dup, 409, "tenant-exists")
    bad = gw.client.post(
        "/admin/tenants", json={"tenant_id": "../x", "name": "X", "tier": "free"}, headers=h
    )
    assert_problem(bad, 422, "invalid-tenant-id")
    listed = gw.client.get("/admin/tenants", params={"limit": 1}, headers=h).json()
    assert len(listed["tenants"]) == 1
    assert listed["next_after"] == listed["tenants"][0]["tenant_id"]

    # suspension: 403 on the next request, resume restores
    patched = gw.client.patch(
        "/admin/tenants/new-co", json={"status": "suspended", "reason": "unpaid"}, headers=h
    )
    assert patched.json()["tenant"]["status"] == "suspended"
    assert_problem(gw.client.get("/tenant", headers=gw.headers(key)), 403, "tenant-suspended")
    gw.client.patch("/admin/tenants/new-co", json={"status": "active"}, headers=h)
    assert gw.client.get("/tenant", headers=gw.headers(key)).status_code == 200

    # an upgrade raises the limits at once, with the same key
    gw.client.patch("/admin/tenants/new-co", json={"tier": "enterprise"}, headers=h)
    response = gw.client.post(
        "/inference", json={"model_name": "m", "inputs": []}, headers=gw.headers(key)
    )
    assert response.status_code == 200
    assert response.headers["x-ratelimit-limit"] == "10000"

    # keys: mint, list, revoke (next request refused), rotate
    minted = gw.client.post("/admin/tenants/new-co/keys", json={"label": "ci"}, headers=h)
    assert minted.status_code == 201
    second = minted.json()["api_key"]
    key_id = minted.json()["key"]["key_id"]
    keys = gw.client.get("/admin/tenants/new-co/keys", headers=h).json()["keys"]
    assert {k["label"] for k in keys} == {"default", "ci"}
    assert "api_key" not in str(keys)
    assert gw.client.get("/tenant", headers=gw.headers(second)).status_code == 200
    revoked = gw.client.post(f"/admin/tenants/new-co/keys/{key_id}/revoke", headers=h)
    assert revoked.json()["key"]["revoked_at"] is not None
    assert_problem(gw.client.get("/tenant", headers=gw.headers(second)), 401, "unauthorized")
    rotated = gw.client.post("/admin/tenants/new-co/keys/rotate", json={}, headers=h)
    assert rotated.status_code == 201
    assert_problem(gw.client.get("/tenant", headers=gw.headers(key)), 401, "unauthorized")
    fresh = rotated.json()["api_key"]
    assert gw.client.get("/tenant", headers=gw.headers(fresh)).status_code == 200

    usage = gw.client.get("/admin/tenants/new-co/usage", headers=h)
    assert usage.status_code == 200
    assert usage.json()["totals"]["requests"] == 1

    assert gw.client.delete("/admin/tenants/new-co", headers=h).status_code == 204
    assert_problem(gw.client.get("/admin/tenants/new-co", headers=h), 404, "tenant-not-found")
    assert_problem(gw.client.get("/tenant", headers=gw.headers(fresh)), 401, "unauthorized")


def test_admin_validation_errors_are_problems(gw: GatewayHarness) -> None:
    response = gw.client.post("/admin/tenants", json={"tenant_id": "x"}, headers=admin(gw))
    body = assert_problem(response, 422, "invalid-input")
    assert {tuple(e["loc"]) for e in body["errors"]} >= {("body", "name"), ("body", "tier")}
    response = gw.client.patch("/admin/tenants/acme-corp", json={"tier": "gold"}, headers=admin(gw))
    assert_problem(response, 422, "unknown-tier")


def test_a_timed_out_call_keeps_its_slot_until_its_thread_ends(gw: GatewayHarness) -> None:
    key = gw.create_tenant("tiny-corp", "tiny")  # max_concurrent 1
    timed_out = gw.client.post("/functions/stuck", json={}, headers=gw.headers(key))
    assert_problem(timed_out, 504, "function-timeout")
    busy = gw.client.post("/functions/analyze", json={"items": [1]}, headers=gw.headers(key))
    assert_problem(busy, 429, "concurrency-limited")
    release.set()
    for _ in range(500):
        with gw.services.db.transaction(write=False) as tx:
            if tx.active_leases("tiny-corp", gw.services.clock()) == 0:
                break
        threading.Event().wait(0.01)
    ok = gw.client.post("/functions/analyze", json={"items": [1]}, headers=gw.headers(key))
    assert ok.status_code == 200


def test_file_uploads_stream_past_the_body_limit(gw: GatewayHarness) -> None:
    data = b"z" * 10_000  # over max_body_bytes (4096); the storage quota governs uploads
    put = gw.client.put("/files/big.bin", content=data)
    assert put.status_code in (200, 201), put.text
    assert "x-request-id" in put.headers
    got = gw.client.get("/files/big.bin")
    assert got.content == data
    assert_problem(gw.client.post("/process", content=data), 413, "payload-too-large")


def test_the_gateway_on_each_backend(database: Database, tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path, signing_key="k" * 32)
    gateway = create_gateway(app, settings, db=database)
    services = gateway.state.tenantkit
    _, issued = services.tenants.create("tiny-corp", "Tiny", "tiny")
    headers = {"Authorization": f"Bearer {issued.api_key}"}
    with running_server(gateway) as url, httpx.Client(base_url=url, headers=headers) as client:
        statuses = [
            client.post("/process", json={"task_type": "analyze", "data": {"items": [i]}})
            for i in range(4)
        ]
        assert [r.status_code for r in statuses] == [200, 200, 200, 429]
        assert client.get("/rate-limit").json()["rate"]["remaining"] == 0
    with database.transaction(write=False) as tx:
        assert tx.count_usage_events("tiny-corp") == 3
        assert tx.active_leases("tiny-corp", services.clock()) == 0


def test_an_unavailable_database_fails_closed_with_503(tmp_path: Path) -> None:
    import sqlite3

    from tenantkit.db.sqlite import SQLiteDatabase

    path = tmp_path / "records.db"
    db = SQLiteDatabase(f"sqlite:///{path}", busy_timeout=0.2)
    db.migrate()
    settings = get_settings(data_dir=tmp_path, signing_key="k" * 32)
    gateway = create_gateway(app, settings, db=db)
    _, issued = gateway.state.tenantkit.tenants.create("acme-corp", "Acme", "free")
    headers = {"Authorization": f"Bearer {issued.api_key}"}
    body = {"task_type": "analyze", "data": {"items": [1]}}
    with running_server(gateway) as url, httpx.Client(base_url=url, headers=headers) as client:
        assert client.post("/process", json=body).status_code == 200
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
            response = client.post("/process", json=body)
            assert_problem(response, 503, "database-unavailable")
            assert "OperationalError" not in response.text
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert client.post("/process", json=body).status_code == 200
    db.close()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
task_types = st.sampled_from(["analyze", "inference", "explode", "refuse", "nope"]) | st.text(
    max_size=5
)


@pytest.fixture(scope="module")
def bulk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHarness]:
    folder = tmp_path_factory.mktemp("bulk")
    settings = get_settings(data_dir=folder, signing_key="k" * 32)
    with local_gateway(app, tier="bulk", settings=settings, tenant_id="bulk-corp") as harness:
        yield harness


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.one_of(
        json_values,
        st.fixed_dictionaries({"task_type": task_types, "data": json_values}),
        st.fixed_dictionaries(
            {"task_type": st.just("analyze"), "data": st.fixed_dictionaries({"items": json_values})}
        ),
    )
)
def test_any_json_body_gets_a_clean_answer_and_metering_matches(
    bulk: GatewayHarness, body: Any
) -> None:
    before = len(bulk.usage_events())
    response = bulk.client.post("/process", json=body)
    assert response.status_code in (200, 403, 404, 422, 500)
    assert "x-request-id" in response.headers
    assert has_rate_headers(response)
    if response.status_code != 200:
        problem = response.json()
        assert response.headers["content-type"] == PROBLEM
        assert problem["request_id"] == response.headers["x-request-id"]
        assert "Traceback" not in response.text
    # executed calls are metered: successes, failures, and 4xx a function raised itself
    executed = response.status_code in (200, 500) or (
        response.json().get("type", "").endswith("/invalid-input")
    )
    assert len(bulk.usage_events()) == before + executed


FORK_IDS = """
import os, sys
from tenantkit.gateway.middleware import new_request_id
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write, "".join(new_request_id() for _ in range(100)).encode())
    os._exit(0)
os.close(write)
os.waitpid(pid, 0)
print(os.read(read, 100_000).decode())
print("".join(new_request_id() for _ in range(100)))
"""


def test_request_ids_are_unique_across_forks() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", FORK_IDS], capture_output=True, text=True, check=True, timeout=60
    )
    child, parent = done.stdout.split()
    theirs = {child[i : i + 32] for i in range(0, len(child), 32)}
    mine = {parent[i : i + 32] for i in range(0, len(parent), 32)}
    assert len(mine) == len(theirs) == 100
    assert not mine & theirs
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in mine | theirs)


def test_usage_costs_follow_the_configured_price_table(tmp_path: Path) -> None:
    from tenantkit.cli._target import LocalTarget

    prices = {"per_request": 0.25, "per_compute_second": 0.0, "currency": "EUR"}
    settings = get_settings(
        data_dir=tmp_path, signing_key="k" * 32, admin_key="a" * 40, prices=prices
    )
    with local_gateway(app, tier="free", settings=settings, tenant_id="acme-corp") as harness:
        for _ in range(3):
            assert harness.client.post("/functions/analyze", json={"items": [1]}).status_code == 200
        report = harness.client.get("/usage").json()
        admin_report = harness.client.get(
            "/admin/tenants/acme-corp/usage", headers={"Authorization": "Bearer " + "a" * 40}
        ).json()
    target = LocalTarget(settings)  # `tenantkit usage show` on this machine
    try:
        cli_report = target.usage("acme-corp")
    finally:
        target.close()
    for seen in (report, admin_report, cli_report):
        assert seen["totals"]["requests"] == 3
        assert seen["cost"]["currency"] == "EUR"
        assert seen["cost"]["requests"] == pytest.approx(0.75)
        assert seen["cost"]["compute"] == 0.0
        assert seen["prices"]["per_request"] == 0.25


def test_a_bad_price_table_fails_when_the_gateway_is_built(tmp_path: Path) -> None:
    from tenantkit.errors import ValidationError
    from tenantkit.gateway import create_gateway

    settings = get_settings(data_dir=tmp_path, signing_key="k" * 32, prices={"per_reqest": 1})
    with pytest.raises(ValidationError, match="per_reqest"):
        create_gateway(app, settings)


def test_the_storage_factory_names_each_tenants_volume_after_the_app(tmp_path: Path) -> None:
    from tenantkit.gateway import create_gateway
    from tenantkit.storage import ModalVolumeBackend, volume_name

    settings = get_settings(data_dir=tmp_path, signing_key="k" * 32, storage_backend="modal")
    api = create_gateway(app, settings)
    services = api.state.tenantkit
    try:
        storage = services.storage_for("acme-corp", app.tiers["free"])  # no network yet
        assert isinstance(storage.backend, ModalVolumeBackend)
        assert storage.backend.name == volume_name(app.name, "acme-corp")
    finally:
        services.db.close()


def test_usage_flushes_the_meter_off_the_event_loop(gw: GatewayHarness) -> None:
    """GET /usage shows calls still buffered, and the flush never runs on the loop's thread."""
    meter = gw.services.meter
    flush = meter.flush
    threads: list[str] = []

    def spy() -> int:
        threads.append(threading.current_thread().name)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise AssertionError("the meter was flushed on the event loop")
        return flush()

    meter.flush = spy  # type: ignore[method-assign]
    try:
        assert gw.client.post("/functions/analyze", json={"items": [1]}).status_code == 200
        usage = gw.client.get("/usage")
    finally:
        meter.flush = flush  # type: ignore[method-assign]
    assert usage.status_code == 200, usage.text
    assert usage.json()["totals"]["requests"] == 1
    assert threads
