"""Gateway overhead: a trivial tenant function through tenantkit vs a bare FastAPI route.

Both servers run the same sync function under the same uvicorn settings (one
process, loopback), each in its own subprocess; the load comes from a third
process: a small asyncio HTTP/1.1 keep-alive client (much cheaper per request
than httpx, so the servers, not the load generator, are what is measured).
Rounds alternate bare / tenantkit; the report gives each round and the
medians, and the ratio of median requests per second (target >= 0.85)::

    python bench/bench_gateway.py [--duration 5] [--concurrency 32] [--rounds 3]

The tenant's tier is unlimited, so every request is admitted: the measurement
covers the key check, the admission transaction, the lease release, the
executor hop and the usage meter, not refusals.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

BODY = b'{"n": 1}'


def echo(n: int = 0) -> dict[str, int]:
    """The function under test: as cheap as a function can be."""
    return {"n": n}


# -- servers --------------------------------------------------------------------------


class EchoInput(BaseModel):
    n: int = 0


def bare_app() -> Any:
    from fastapi import FastAPI

    api = FastAPI()

    @api.post("/echo")
    def echo_route(body: EchoInput) -> dict[str, int]:
        return echo(body.n)

    return api


def tenantkit_app() -> Any:
    from tenantkit.config import Tier, get_settings
    from tenantkit.gateway import create_gateway
    from tenantkit.workers import TenantApp

    big = 10**9
    app = TenantApp("bench", tiers={"bench": Tier("bench", big, big, big, big, big, big)})
    app.tenant_function(name="echo", timeout=30)(echo)
    return create_gateway(app, get_settings())


def serve(kind: str, port: int) -> None:
    import uvicorn

    api = bare_app() if kind == "bare" else tenantkit_app()
    uvicorn.run(api, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- load -----------------------------------------------------------------------------


async def _worker(
    host: str, port: int, request: bytes, until: float, latencies: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                errors.append(status)
    finally:
        writer.close()


async def _load(
    port: int, path: str, api_key: str | None, duration: float, warmup: float, concurrency: int
) -> dict[str, Any]:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(BODY)}",
    ]
    if api_key:
        lines.append(f"Authorization: Bearer {api_key}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + BODY
    scratch: list[float] = []
    errors: list[int] = []
    end = time.perf_counter() + warmup
    await asyncio.gather(
        *(_worker("127.0.0.1", port, request, end, scratch, errors) for _ in range(concurrency))
    )
    latencies: list[float] = []
    errors.clear()
    started = time.perf_counter()
    end = started + duration
    await asyncio.gather(
        *(_worker("127.0.0.1", port, request, end, latencies, errors) for _ in range(concurrency))
    )
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "requests": len(latencies),
        "errors": len(errors),
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }


def load(args: argparse.Namespace) -> None:
    result = asyncio.run(
        _load(args.port, args.path, args.key, args.duration, args.warmup, args.concurrency)
    )
    print(json.dumps(result))


# -- orchestration --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not start")


def measure(
    kind: str, env: dict[str, str], key: str | None, args: argparse.Namespace
) -> dict[str, Any]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--port", str(port)], env=env
    )
    try:
        wait_ready(port)
        path = "/echo" if kind == "bare" else "/functions/echo"
        command = [
            sys.executable, __file__, "--load", "--port", str(port), "--path", path,
            "--duration", str(args.duration), "--warmup", str(args.warmup),
            "--concurrency", str(args.concurrency),
        ]  # fmt: skip
        if key:
            command += ["--key", key]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result
    finally:
        server.terminate()
        server.wait(60)


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="tenantkit-bench-") as folder:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTKIT_")}
        env["TENANTKIT_DATA_DIR"] = folder
        env["TENANTKIT_SIGNING_KEY"] = secrets.token_urlsafe(32)
        os.environ.update(env)

        from tenantkit.auth import KeyManager
        from tenantkit.config import Tier, get_settings
        from tenantkit.db import open_database
        from tenantkit.tenants import TenantService

        settings = get_settings()
        db = open_database(settings.resolved_database_url())
        big = 10**9
        tiers = {"bench": Tier("bench", big, big, big, big, big, big)}
        _, issued = TenantService(db, KeyManager(db, settings), tiers=tiers).create(
            "bench-tenant", "Bench", "bench"
        )
        db.close()

        rounds: dict[str, list[dict[str, Any]]] = {"bare": [], "tenantkit": []}
        for number in range(args.rounds):
            for kind in ("bare", "tenantkit"):
                key = issued.api_key if kind == "tenantkit" else None
                result = measure(kind, env, key, args)
                rounds[kind].append(result)
                print(
                    f"round {number + 1} {kind:>9}: {result['rps']:8.0f} req/s  "
                    f"p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms  "
                    f"errors {result['errors']}",
                    flush=True,
                )
        summary: dict[str, Any] = {}
        for kind, results in rounds.items():
            summary[kind] = {
                name: statistics.median(r[name] for r in results)
                for name in ("rps", "p50_ms", "p99_ms")
            }
            summary[kind]["errors"] = sum(r["errors"] for r in results)
        ratio = summary["tenantkit"]["rps"] / summary["bare"]["rps"]
        summary["ratio"] = ratio
        summary["settings"] = {
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "rounds": args.rounds,
            "cpus": os.cpu_count(),
        }
        print(
            f"median  bare {summary['bare']['rps']:.0f} req/s "
            f"(p50 {summary['bare']['p50_ms']:.2f} ms, p99 {summary['bare']['p99_ms']:.2f} ms); "
            f"tenantkit {summary['tenantkit']['rps']:.0f} req/s "
            f"(p50 {summary['tenantkit']['p50_ms']:.2f} ms, "
            f"p99 {summary['tenantkit']['p99_ms']:.2f} ms); ratio {ratio:.3f} (target >= 0.85)"
        )
        if args.json:
            Path(args.json).write_text(json.dumps(summary, indent=2))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per round")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up per round")
    parser.add_argument("--concurrency", type=int, default=32, help="connections")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--json", help="also write the summary to this file")
    parser.add_argument("--serve", choices=["bare", "tenantkit"], help=argparse.SUPPRESS)
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    if arguments.serve:
        serve(arguments.serve, arguments.port)
    elif arguments.load:
        load(arguments)
    else:
        main(arguments)
