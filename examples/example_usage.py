"""Call every endpoint of the quickstart app (the seed's Step 7).

::

    export API_URL=http://127.0.0.1:8000
    export API_KEY=mt_...            # printed by `tenantkit tenant create`
    python examples/example_usage.py
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from tenantkit import Client, TenantKitError
from tenantkit.errors import TierNotAllowed


def show(title: str, data: Any) -> None:
    print(f"\n== {title}")
    print(json.dumps(data, indent=2, sort_keys=True, default=str)[:1500])


def main(url: str, api_key: str) -> int:
    with Client(url, api_key, retries=2, max_retry_wait=10) as client:
        show("GET /health", client.health())
        spec = client.request("GET", "/openapi.json")
        show("GET /openapi.json (paths)", sorted(spec["paths"]))
        show("GET /tenant", client.tenant())
        show(
            "POST /process analyze",
            client.process("analyze", {"items": [1, 2, 3, 4, 5]}),
        )
        show(
            "POST /process transform",
            client.process("transform", {"items": [3, 1, 2], "operation": "normalize"}),
        )
        show(
            "POST /process aggregate",
            client.process(
                "aggregate",
                {
                    "records": [
                        {"region": "eu", "value": 10},
                        {"region": "us", "value": 7},
                        {"region": "eu", "value": 5},
                    ],
                    "group_by": "region",
                },
            ),
        )
        show(
            "POST /batch",
            client.batch(
                [
                    {"task_type": "score_text", "data": {"text": "great service, love it"}},
                    {"task_type": "score_text", "data": {"text": "slow and broken"}},
                    {"task_type": "analyze", "data": {"items": [2, 4, 6]}},
                ]
            ),
        )
        show("POST /functions/score_text", client.call("score_text", text="nice and fast"))
        try:
            show(
                "POST /inference",
                client.post(
                    "/inference",
                    {"model_name": "iris", "inputs": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]},
                ),
            )
        except TierNotAllowed as exc:  # only when the app restricts it to some tiers
            print(f"\n== POST /inference refused: {exc}")
        show("GET /rate-limit", client.rate_limit())
        show("GET /usage", client.usage())
        show("GET /usage?period=month", client.usage(period="month"))
    return 0


if __name__ == "__main__":
    api_url = os.environ.get("API_URL", "http://127.0.0.1:8000")
    key = os.environ.get("API_KEY")
    if not key:
        sys.exit("set API_KEY to a tenant's key (see `tenantkit tenant create --help`)")
    try:
        sys.exit(main(api_url, key))
    except TenantKitError as error:
        request_id = getattr(error, "request_id", None)
        sys.exit(f"error: {error}" + (f" (request {request_id})" if request_id else ""))
