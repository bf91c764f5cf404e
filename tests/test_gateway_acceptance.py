"""Findings of the user acceptance pass, each pinned over HTTP.

* non-finite numbers: refused in request bodies (422) on every call route;
  written as ``null`` in responses, so every body is strict JSON;
* ``/rate-limit`` at ``remaining: 0`` says when the next call fits, as the
  429 that call would get does;
* ``/batch`` echoes each task's ``task_type``, failed tasks included;
* a ``task_type`` that is not a string is 422, not 404;
* the docstrings say what the code does (the upload body limit, how fast
  other processes see a revocation).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest

from tenantkit.config import DEFAULT_TIERS, Tier, get_settings
from tenantkit.gateway import create_gateway
from tenantkit.gateway.encoding import encode_json
from tenantkit.testing import GatewayHarness, local_gateway, running_server
from tenantkit.workers import TenantApp, load_app

ROOT = Path(__file__).resolve().parents[1]
PROBLEM = "application/problem+json"
JSON = {"Content-Type": "application/json"}

app = TenantApp("acceptance", tiers={**DEFAULT_TIERS, "one": Tier("one", 3600, 3, 5, 10**6, 1, 1)})


class Reading(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(ser_json_inf_nan="constants")
    value: float


@app.tenant_function
def mean(items: list[float]) -> dict[str, Any]:
    return {"mean": sum(items) / len(items)}


@app.tenant_function(path="/echo-any")
def echo_any(payload: Any = None) -> dict[str, Any]:
    return {"payload": payload}


@app.tenant_function
def non_finite(kind: str = "nan") -> Any:
    value = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[kind]
    return {"x": value, "nested": [1.5, value, {"y": value}], "text": "NaN stays a string"}


@app.tenant_function
def reading() -> Reading:
    return Reading(value=math.nan)


def strict_loads(text: str) -> Any:
    """``json.loads`` that refuses NaN and Infinity, as every other JSON parser does."""

    def refuse(token: str) -> Any:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHarness]:
    folder = tmp_path_factory.mktemp("acceptance")
    settings = get_settings(data_dir=folder, signing_key="k" * 32)
    with local_gateway(app, tier="enterprise", settings=settings, tenant_id="acme") as harness:
        yield harness


def assert_non_finite_refused(response: httpx.Response, *loc: Any) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = strict_loads(response.text)
    errors = problem["errors"]
    assert {"loc": list(loc), "msg": errors[0]["msg"], "type": "finite_number"} in errors


# -- 1. non-finite numbers in ------------------------------------------------------

NON_FINITE_LITERALS = ["NaN", "Infinity", "-Infinity", "1e400", "-1E+400", "1" + "0" * 400 + ".5"]


@pytest.mark.parametrize("literal", NON_FINITE_LITERALS)
def test_functions_route_refuses_non_finite_numbers(gw: GatewayHarness, literal: str) -> None:
    body = f'{{"items": [{literal}, 1]}}'
    assert_non_finite_refused(
        gw.client.post("/functions/mean", content=body, headers=JSON), "items", 0
    )


@pytest.mark.parametrize("literal", NON_FINITE_LITERALS)
def test_untyped_parameters_and_own_paths_refuse_them_too(gw: GatewayHarness, literal: str) -> None:
    body = f'{{"payload": {{"a": [1, {{"b": {literal}}}]}}}}'
    for path in ("/functions/echo_any", "/echo-any"):
        response = gw.client.post(path, content=body, headers=JSON)
        assert_non_finite_refused(response, "payload", "a", 1, "b")


@pytest.mark.parametrize("literal", NON_FINITE_LITERALS)
def test_process_refuses_non_finite_numbers(gw: GatewayHarness, literal: str) -> None:
    for name, data in (
        ("mean", f'{{"items": [{literal}, 1]}}'),
        ("echo_any", f'{{"payload": {literal}}}'),
    ):
        body = f'{{"task_type": "{name}", "data": {data}}}'
        response = gw.client.post("/process", content=body, headers=JSON)
        loc = ("data", "items", 0) if name == "mean" else ("data", "payload")
        assert_non_finite_refused(response, *loc)


def test_batch_refuses_only_the_task_holding_one(gw: GatewayHarness) -> None:
    body = (
        '{"tasks": ['
        '{"task_type": "mean", "data": {"items": [1, 3]}},'
        '{"task_type": "mean", "data": {"items": [NaN, 1]}},'
        '{"task_type": "echo_any", "data": {"payload": 1e400}}]}'
    )
    response = gw.client.post("/batch", content=body, headers=JSON)
    assert response.status_code == 200, response.text
    results = strict_loads(response.text)["results"]
    assert [r["status"] for r in results] == [200, 422, 422]
    assert results[0]["result"] == {"mean": 2.0}
    assert results[1]["error"]["errors"][0]["loc"] == ["items", 0]
    assert results[2]["error"]["errors"][0]["loc"] == ["payload"]
    assert all(e["type"] == "finite_number" for r in results[1:] for e in r["error"]["errors"])


def test_strings_and_finite_numbers_that_look_suspicious_pass(gw: GatewayHarness) -> None:
    payload = '{"payload": ["NaN", "Infinity", 1e-400, 0e999, 1.5e+300, 1e99, "1e400"]}'
    response = gw.client.post("/functions/echo_any", content=payload, headers=JSON)
    assert response.status_code == 200, response.text
    assert strict_loads(response.text)["payload"] == [
        "NaN", "Infinity", 0.0, 0.0, 1.5e300, 1e99, "1e400",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHarness]:
    example = load_app(str(ROOT / "examples" / "quickstart" / "app.py"))
    settings = get_settings(data_dir=tmp_path_factory.mktemp("quickstart"), signing_key="q" * 32)
    with local_gateway(example, tier="pro", settings=settings, tenant_id="acme-corp") as harness:
        yield harness


@pytest.mark.parametrize("literal", ["NaN", "1e400"])
@pytest.mark.parametrize(
    ("task", "data", "loc"),
    [
        ("analyze", '{"items": [%s, 1]}', ["data", "items", 0]),
        ("transform", '{"items": [%s, 1]}', ["data", "items", 0]),
        ("transform", '{"items": [1], "factor": %s}', ["data", "factor"]),
        ("aggregate", '{"records": [{"g": "a", "value": %s}], "group_by": "g"}',
         ["data", "records", 0, "value"]),
    ],
)  # fmt: skip
def test_the_quickstart_tasks_answer_422_not_500_or_bad_json(
    quickstart: GatewayHarness, literal: str, task: str, data: str, loc: list[Any]
) -> None:
    body = f'{{"task_type": "{task}", "data": {data % literal}}}'
    response = quickstart.client.post("/process", content=body, headers=JSON)
    assert_non_finite_refused(response, *loc)


# -- 1. non-finite numbers out -----------------------------------------------------


@pytest.mark.parametrize("kind", ["nan", "inf", "-inf"])
def test_non_finite_return_values_are_written_as_null(gw: GatewayHarness, kind: str) -> None:
    expected = {"x": None, "nested": [1.5, None, {"y": None}], "text": "NaN stays a string"}
    response = gw.client.post("/functions/non_finite", json={"kind": kind})
    assert response.status_code == 200
    assert strict_loads(response.text) == expected
    process = gw.client.post("/process", json={"task_type": "non_finite", "data": {"kind": kind}})
    assert strict_loads(process.text)["result"] == expected
    batch = gw.client.post("/batch", json={"tasks": [{"task_type": "non_finite", "data": {}}]})
    assert strict_loads(batch.text)["results"][0]["result"]["x"] is None


def test_a_model_asking_for_nan_constants_still_gets_strict_json(gw: GatewayHarness) -> None:
    response = gw.client.post("/functions/reading", json={})
    assert response.status_code == 200
    assert strict_loads(response.text) == {"value": None}


def test_encode_json_is_strict() -> None:
    numpy = pytest.importorskip("numpy")
    value = {"a": numpy.array([numpy.nan, 1.0]), "b": numpy.float64("inf"), "c": (math.nan,)}
    assert encode_json(value) == b'{"a":[null,1.0],"b":null,"c":[null]}'


# -- 2. /rate-limit at remaining 0 -------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_route_says_when_the_next_call_fits(tmp_path: Path) -> None:
    clock = Clock()
    settings = get_settings(data_dir=tmp_path, signing_key="r" * 32)
    gateway = create_gateway(app, settings, clock=clock)
    _, issued = gateway.state.tenantkit.tenants.create("acme", "Acme", "one")  # 3600/h, burst 3
    headers = {"Authorization": f"Bearer {issued.api_key}"}
    with running_server(gateway) as url, httpx.Client(base_url=url, headers=headers) as client:
        for _ in range(3):
            assert client.post("/functions/mean", json={"items": [1]}).status_code == 200
        clock.now += 0.25
        shown = client.get("/rate-limit")
        rate = shown.json()["rate"]
        assert rate["remaining"] == 0
        assert rate["retry_after"] == pytest.approx(0.75)
        assert shown.headers["RateLimit"] == '"default";r=0;t=1'
        refused = client.post("/functions/mean", json={"items": [1]})
        assert refused.status_code == 429
        assert refused.json()["retry_after"] == math.ceil(rate["retry_after"])
        assert refused.headers["Retry-After"] == "1"
        assert refused.headers["RateLimit"] == shown.headers["RateLimit"]
        assert refused.headers["X-RateLimit-Reset"] == shown.headers["X-RateLimit-Reset"] == "1"
        clock.now += 0.75
        rate = client.get("/rate-limit").json()["rate"]
        assert (rate["remaining"], rate["retry_after"]) == (1, None)
        assert client.post("/functions/mean", json={"items": [1]}).status_code == 200


# -- 3. and 4. task_type -----------------------------------------------------------


def test_batch_results_echo_every_requested_task_type(gw: GatewayHarness) -> None:
    tasks: list[Any] = [
        {"task_type": "mean", "data": {"items": [2]}},
        {"task_type": "mean", "data": {"items": "not a list"}},
        {"task_type": "missing", "data": {}},
        {"task_type": "mean", "data": {"items": []}},  # the function raises
        {"task_type": 5, "data": {}},
        {"data": {}},
        "not a task",
    ]
    response = gw.client.post("/batch", json={"tasks": tasks})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["task_type"] for r in results] == [
        "mean",
        "mean",
        "missing",
        "mean",
        None,
        None,
        None,
    ]
    assert [r["status"] for r in results] == [200, 422, 404, 500, 422, 422, 422]
    assert results[4]["error"]["errors"] == [
        {"loc": ["tasks", 4, "task_type"], "msg": "Input should be a valid string",
         "type": "string_type"}
    ]  # fmt: skip


@pytest.mark.parametrize("task_type", [5, 1.5, None, True, ["mean"], {"name": "mean"}])
def test_a_task_type_that_is_not_a_string_is_422(gw: GatewayHarness, task_type: Any) -> None:
    response = gw.client.post("/process", json={"task_type": task_type, "data": {}})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["errors"] == [
        {"loc": ["body", "task_type"], "msg": "Input should be a valid string",
         "type": "string_type"}
    ]  # fmt: skip
    assert "no tenant function" not in response.text


# -- 5. and 6. what the docstrings promise ------------------------------------------


def test_gateway_docstring_states_the_upload_exemption() -> None:
    import tenantkit.gateway.app as gateway_app

    doc = " ".join((gateway_app.__doc__ or "").split())
    assert "``PUT /files/...`` is exempt from ``max_body_bytes``" in doc
    assert "storage quota" in doc
    assert "strict JSON" in doc
    assert "``null``" in doc


def test_key_cache_docstrings_do_not_promise_cross_process_invalidation() -> None:
    import tenantkit.auth.keys as keys

    texts = [keys.__doc__ or "", keys.KeyManager.invalidate.__doc__ or ""]
    texts.append(keys.KeyManager.revoke.__doc__ or "")
    flat = [" ".join(t.split()) for t in texts]
    assert "at once, in every key manager on the same database." not in flat[0]
    assert "at once in every key manager on the same database *in the same process*" in flat[0]
    assert "Other processes" in flat[0]
    assert all("auth_cache_ttl" in t for t in flat), flat
