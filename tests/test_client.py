"""``tenantkit.client``: typed errors and retries, against a real server on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tenantkit.client import AsyncClient, Client, error_from_response
from tenantkit.config import DEFAULT_TIERS, Tier, get_settings
from tenantkit.errors import (
    AuthenticationError,
    FunctionFailed,
    FunctionNotFound,
    FunctionTimeout,
    NotFound,
    PayloadTooLarge,
    RateLimitExceeded,
    TierNotAllowed,
)
from tenantkit.testing import GatewayHarness, local_gateway
from tenantkit.workers import InvalidArguments, TenantApp

app = TenantApp(
    "client-test", tiers={**DEFAULT_TIERS, "tiny": Tier("tiny", 3600, 2, 5, 1000, 10**6, 10)}
)


@app.tenant_function
def echo(value: Any = None) -> Any:
    return value


@app.tenant_function(tiers={"pro"})
def premium() -> str:
    return "gold"


@app.tenant_function
def explode() -> None:
    raise RuntimeError("internal")


@app.tenant_function(timeout=0.1)
def slow() -> None:
    time.sleep(1)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHarness]:
    folder: Path = tmp_path_factory.mktemp("client")
    settings = get_settings(data_dir=folder, signing_key="c" * 32, max_body_bytes=2048)
    with local_gateway(app, settings=settings, tier="free") as harness:
        yield harness


def test_every_endpoint(gw: GatewayHarness) -> None:
    with Client(gw.url, gw.api_key) as client:
        assert client.health()["status"] == "ok"
        assert client.tenant()["tenant_id"] == gw.tenant_id
        assert client.process("echo", {"value": [1, 2]})["result"] == [1, 2]
        assert client.call("echo", value={"a": 1}) == {"a": 1}
        assert client.post("/functions/echo", {"value": 3}) == 3
        batch = client.batch([{"task_type": "echo", "data": {"value": i}} for i in range(3)])
        assert [r["result"] for r in batch["results"]] == [0, 1, 2]
        assert client.rate_limit()["tier"] == "free"
        assert client.usage()["tenant_id"] == gw.tenant_id
        assert client.usage(period="month")["period"] == "month"


@pytest.mark.parametrize(
    ("action", "error"),
    [
        (lambda c: c.call("nope"), FunctionNotFound),
        (lambda c: c.call("premium"), TierNotAllowed),
        (lambda c: c.call("explode"), FunctionFailed),
        (lambda c: c.call("slow"), FunctionTimeout),
        (lambda c: c.call("echo", value="x" * 5000), PayloadTooLarge),
        (lambda c: c.process("echo", {"nope": 1}), InvalidArguments),
        (lambda c: c.request("GET", "/nowhere"), NotFound),
    ],
)
def test_errors_are_typed(gw: GatewayHarness, action: Any, error: type[Exception]) -> None:
    with Client(gw.url, gw.api_key) as client, pytest.raises(error) as info:
        action(client)
    assert info.value.status_code >= 400  # type: ignore[attr-defined]
    assert len(info.value.request_id) == 32  # type: ignore[attr-defined]
    assert "internal" not in str(info.value)


def test_invalid_arguments_carry_the_field_errors(gw: GatewayHarness) -> None:
    with Client(gw.url, gw.api_key) as client, pytest.raises(InvalidArguments) as info:
        client.process("echo", {"nope": 1})
    assert ["data", "nope"] in [e["loc"] for e in info.value.errors]


def test_bad_key_is_an_authentication_error(gw: GatewayHarness) -> None:
    with Client(gw.url, "mt_nope") as client, pytest.raises(AuthenticationError):
        client.tenant()
    with Client(gw.url) as client, pytest.raises(AuthenticationError):
        client.tenant()


def test_rate_limit_error_carries_retry_after_and_retries_honour_it(gw: GatewayHarness) -> None:
    key = gw.create_tenant("tiny-client", "tiny")
    with Client(gw.url, key) as client:
        client.call("echo")
        client.call("echo")
        with pytest.raises(RateLimitExceeded) as info:
            client.call("echo")
        assert info.value.retry_after is not None
        assert 0 < info.value.retry_after <= 2
        assert info.value.limit == "requests"
    with (
        Client(gw.url, key, retries=3, max_retry_wait=0.001) as impatient,
        pytest.raises(RateLimitExceeded),  # waiting longer than allowed: give up
    ):
        impatient.call("echo")
    with Client(gw.url, key, retries=3, max_retry_wait=5) as patient:
        started = time.monotonic()
        assert patient.call("echo", value=7) == 7
        assert time.monotonic() - started >= 0.5


def test_async_client(gw: GatewayHarness) -> None:
    async def main() -> None:
        async with AsyncClient(gw.url, gw.api_key) as client:
            assert (await client.health())["status"] == "ok"
            assert (await client.tenant())["tenant_id"] == gw.tenant_id
            assert (await client.process("echo", {"value": 1}))["result"] == 1
            assert await client.call("echo", value=2) == 2
            assert await client.post("/functions/echo", {"value": 3}) == 3
            assert len((await client.batch([{"task_type": "echo"}]))["results"]) == 1
            assert (await client.rate_limit())["tier"] == "free"
            assert (await client.usage())["tenant_id"] == gw.tenant_id
            with pytest.raises(TierNotAllowed):
                await client.call("premium")

    asyncio.run(main())


def test_error_from_a_response_without_a_problem_falls_back_on_the_status() -> None:
    request = httpx.Request("GET", "http://x/")
    error = error_from_response(httpx.Response(429, headers={"Retry-After": "7"}, request=request))
    assert isinstance(error, RateLimitExceeded)
    assert error.retry_after == 7
    error = error_from_response(httpx.Response(401, text="nope", request=request))
    assert isinstance(error, AuthenticationError)


@pytest.mark.parametrize(
    "url",
    [
        "http://api.example.com",
        "http://10.0.0.5:8000",
        "http://localhost.example.com",
        "http://127.0.0.1.example.com",
        "ftp://api.example.com",
        "https://user:secret@api.example.com",
        "api.example.com",
    ],
)
def test_the_key_is_never_sent_in_clear_to_another_machine(url: str) -> None:
    from tenantkit.cli._target import RemoteTarget
    from tenantkit.errors import ConfigurationError

    with pytest.raises(ConfigurationError) as sync_refusal:
        Client(url, "mt_secret")
    with pytest.raises(ConfigurationError) as async_refusal:
        AsyncClient(url, "mt_secret")
    with pytest.raises(ConfigurationError) as cli_refusal:
        RemoteTarget(url, "adm_secret")  # the CLI's remote target: the same rule
    assert str(sync_refusal.value) == str(async_refusal.value)
    assert str(cli_refusal.value) == str(sync_refusal.value).replace("the API key", "the admin key")
    assert "mt_secret" not in str(sync_refusal.value)


def test_https_and_this_machine_are_accepted_and_allow_insecure_opts_in() -> None:
    from tenantkit.errors import ConfigurationError

    for url in ("https://acme--saas.modal.run", "http://127.0.0.1:8000", "http://[::1]:8000"):
        Client(url, "mt_x").close()
        asyncio.run(AsyncClient(url, "mt_x").aclose())
    Client("http://api.example.com", "mt_x", allow_insecure=True).close()
    asyncio.run(AsyncClient("http://api.example.com", "mt_x", allow_insecure=True).aclose())
    with pytest.raises(ConfigurationError):  # only plain http is relaxed, nothing else
        Client("https://u:p@api.example.com", "mt_x", allow_insecure=True)
    with pytest.raises(ConfigurationError):
        Client("ftp://api.example.com", "mt_x", allow_insecure=True)


def test_an_in_process_transport_needs_no_https() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"status": "ok"})

    with Client("http://testserver", "mt_x", transport=httpx.MockTransport(handler)) as client:
        assert client.health() == {"status": "ok"}
    assert seen == ["http://testserver/health"]
