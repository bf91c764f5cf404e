"""Usage reports: sums equal the events (Hypothesis), breakdowns, costs, the CLI."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenantkit.cli import main
from tenantkit.db import Database, StorageUsage, UsageEvent, open_database
from tenantkit.db.sql import utc_day
from tenantkit.errors import ValidationError
from tenantkit.metering import PriceTable, UsageMeter, report_csv, usage_report
from tenantkit.metering.report import money

DAY = datetime(2026, 12, 4, tzinfo=UTC).timestamp()
MONTH_START = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
MONTH_END = datetime(2027, 1, 1, tzinfo=UTC).timestamp()

FIELDS = ("requests", "errors", "compute_seconds", "gpu_seconds", "bytes_in", "bytes_out")


@st.composite
def usage_events(draw: st.DrawFn, tenant: str) -> list[UsageEvent]:
    count = draw(st.integers(min_value=0, max_value=40))
    seconds = st.floats(min_value=0, max_value=1e4)
    events = []
    for n in range(count):
        started = draw(st.floats(min_value=MONTH_START - 86_400, max_value=MONTH_END + 86_400))
        gpu_type = draw(st.sampled_from([None, "A100", "h100", "T4"]))
        events.append(
            UsageEvent(
                request_id=f"{tenant}-{draw(st.integers(min_value=0, max_value=count))}-{n % 3}",
                tenant_id=draw(st.sampled_from([tenant, tenant, "other-tenant"])),
                function=draw(st.sampled_from(["embed", "analyze", "transform"])),
                status=draw(st.sampled_from([200, 200, 201, 422, 500, 504])),
                started_at=started,
                ended_at=started + 1,
                compute_seconds=draw(seconds),
                gpu_type=gpu_type,
                gpu_count=0 if gpu_type is None else 1,
                gpu_seconds=0.0
                if gpu_type is None
                else draw(st.floats(min_value=0, max_value=1e4)),
                bytes_in=draw(st.integers(min_value=0, max_value=10**9)),
                bytes_out=draw(st.integers(min_value=0, max_value=10**9)),
            )
        )
    return events


def expected_totals(events: list[UsageEvent], tenant: str, start: float, end: float) -> dict:
    first: dict[str, UsageEvent] = {}
    for e in events:  # the first event with a request id wins; repeats are ignored
        first.setdefault(e.request_id, e)
    totals: dict[str, float] = defaultdict(float)
    by_function: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for e in first.values():
        if e.tenant_id != tenant or not start <= e.started_at < end:
            continue
        for target in (totals, by_function[e.function]):
            target["requests"] += 1
            target["errors"] += 0 if e.ok else 1
            target["compute_seconds"] += e.compute_seconds
            target["gpu_seconds"] += e.gpu_seconds
            target["bytes_in"] += e.bytes_in
            target["bytes_out"] += e.bytes_out
    return {"totals": totals, "by_function": by_function}


def assert_totals_match(actual: dict, expected: dict) -> None:
    for name in FIELDS:
        assert actual[name] == pytest.approx(expected.get(name, 0), rel=1e-9, abs=1e-5), name


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_report_sums_equal_the_events(database: Database, data: st.DataObject) -> None:
    tenant = f"t-{uuid.uuid4()}"  # a fresh tenant per example: the database persists
    events = data.draw(usage_events(tenant))
    meter = UsageMeter(database, flush_interval=60, buffer_size=7)
    for e in events:
        meter.record_sync(e)
    meter.close()

    month = usage_report(database, tenant, period="month", date="2026-12")
    want = expected_totals(events, tenant, MONTH_START, MONTH_END)
    assert_totals_match(month["totals"], want["totals"])
    assert set(month["by_function"]) == set(want["by_function"])
    for name, totals in want["by_function"].items():
        assert_totals_match(month["by_function"][name], totals)
    assert len(month["daily"]) == 31
    for name in FIELDS:
        assert sum(d[name] for d in month["daily"]) == pytest.approx(
            month["totals"][name], rel=1e-9, abs=1e-4
        )
    assert sum(month["gpu_seconds_by_type"].values()) == pytest.approx(
        month["totals"]["gpu_seconds"], rel=1e-9, abs=1e-4
    )

    day = usage_report(database, tenant, period="day", date="2026-12-04")
    want_day = expected_totals(events, tenant, DAY, DAY + 86_400)
    assert_totals_match(day["totals"], want_day["totals"])
    assert len(day["hourly"]) == 24
    for name in FIELDS:  # the hourly breakdown (from raw events) adds up to the day
        assert sum(h[name] for h in day["hourly"]) == pytest.approx(
            day["totals"][name], rel=1e-9, abs=1e-4
        )


def test_hourly_breakdown_and_costs(database: Database) -> None:
    events = [
        UsageEvent("a", "acme", "embed", 200, DAY + 3600 * 9 + 5, DAY + 3600 * 9 + 7, 2.0,
                   "A100", 1, 2.0, 100, 200),
        UsageEvent("b", "acme", "embed", 500, DAY + 3600 * 9 + 50, DAY + 3600 * 9 + 51, 1.0),
        UsageEvent("c", "acme", "analyze", 200, DAY + 3600 * 23 + 1, DAY + 3600 * 23 + 2, 4.0,
                   "H100", 2, 8.0),
        UsageEvent("d", "acme", "analyze", 200, DAY + 86_400, DAY + 86_401, 100.0),  # next day
    ]  # fmt: skip
    with database.transaction() as tx:
        tx.record_usage(events)
        tx.set_gauge("acme", "2026-12-04", "storage_bytes", 3 * 10**9)
        tx.set_gauge("acme", "2026-12-04", "storage_files", 12)
    prices = PriceTable(
        per_request=0.01,
        per_compute_second=0.001,
        per_gpu_second={"a100": 0.5, "H100": 1.0},
        default_gpu_second=9.0,
        per_gb_month=3.1,
    )
    report = usage_report(database, "acme", period="day", date="2026-12-04", prices=prices)
    assert report["totals"] == {
        "requests": 3,
        "errors": 1,
        "compute_seconds": 7.0,
        "gpu_seconds": 10.0,
        "bytes_in": 100,
        "bytes_out": 200,
    }
    assert report["by_function"]["embed"]["errors"] == 1
    assert report["hourly"][9]["requests"] == 2
    assert report["hourly"][9]["hour"] == "2026-12-04T09:00:00Z"
    assert report["hourly"][23]["gpu_seconds"] == 8.0
    assert report["gpu_seconds_by_type"] == {"A100": 2.0, "H100": 8.0}
    assert report["storage"] == {"bytes": 3 * 10**9, "files": 12, "source": "gauge"}
    cost = report["cost"]
    assert cost["requests"] == pytest.approx(0.03)
    assert cost["compute"] == pytest.approx(0.007)
    assert cost["gpu"] == pytest.approx(2 * 0.5 + 8 * 1.0)
    assert cost["storage"] == pytest.approx(3 * 3.1 / 31)  # one day of December
    assert cost["total"] == pytest.approx(0.03 + 0.007 + 9.0 + 0.3)
    json.dumps(report)  # JSON-ready

    month = usage_report(database, "acme", period="month", date="2026-12-17", prices=prices)
    assert month["date"] == "2026-12"
    assert month["totals"]["requests"] == 4
    assert month["daily"][4] == {"day": "2026-12-05", "requests": 1, "errors": 0,
                                 "compute_seconds": 100.0, "gpu_seconds": 0.0,
                                 "bytes_in": 0, "bytes_out": 0}  # fmt: skip
    assert month["cost"]["storage"] == pytest.approx(3 * 3.1)


def test_gpu_seconds_whose_events_were_pruned_are_priced_at_the_default(
    database: Database,
) -> None:
    with database.transaction() as tx:
        tx.record_usage([UsageEvent("a", "acme", "f", 200, DAY, DAY + 1, 1.0, "T4", 1, 4.0)])
        tx.prune_usage_events(DAY + 10)
    prices = PriceTable(default_gpu_second=2.0)
    report = usage_report(database, "acme", period="day", date="2026-12-04", prices=prices)
    assert report["gpu_seconds_by_type"] == {"unknown": 4.0}
    assert report["cost"]["gpu"] == 8.0
    assert report["hourly"][0]["requests"] == 0  # the raw events are gone
    assert report["totals"]["requests"] == 1  # the daily totals are not


def test_default_date_is_today_and_current_storage_is_used(database: Database) -> None:
    with database.transaction() as tx:
        tx.set_storage_usage(StorageUsage("acme", 500, 2))
    report = usage_report(database, "acme", clock=lambda: DAY + 3600)
    assert report["date"] == "2026-12-04"
    assert report["storage"] == {"bytes": 500, "files": 2, "source": "current"}
    past = usage_report(database, "acme", period="month", date="2026-11", clock=lambda: DAY)
    assert past["storage"]["source"] == "none"
    assert len(past["daily"]) == 30


@pytest.mark.parametrize(
    ("period", "date"),
    [("week", None), ("day", "2026-12"), ("day", "04/12/2026"), ("month", "2026-13")],
)
def test_invalid_period_or_date(database: Database, period: str, date: str | None) -> None:
    with pytest.raises(ValidationError):
        usage_report(database, "acme", period=period, date=date)


def test_default_prices_are_documented() -> None:
    prices = PriceTable()
    assert prices.gpu_price("a100") == prices.per_gpu_second["A100"]
    assert prices.gpu_price("no-such-gpu") == prices.default_gpu_second
    assert prices.gpu_price(None) == prices.default_gpu_second
    assert set(prices.as_dict()) >= {"per_request", "per_compute_second", "per_gb_month"}


def test_money() -> None:
    assert money(0) == "0.00"
    assert money(12.345) == "12.35"
    assert money(0.000262) == "0.000262"
    assert not math.isnan(float(money(0.5)))


def test_csv_has_one_row_per_total_function_and_hour(database: Database) -> None:
    with database.transaction() as tx:
        tx.record_usage([UsageEvent("a", "acme", "embed", 200, DAY + 7200, DAY + 7201, 1.0)])
    text = report_csv(usage_report(database, "acme", date="2026-12-04"))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 1 + 1 + 24
    assert rows[0]["scope"] == "total"
    assert rows[1] == {"scope": "function", "key": "embed", "requests": "1", "errors": "0",
                       "compute_seconds": "1.0", "gpu_seconds": "0.0", "bytes_in": "0",
                       "bytes_out": "0"}  # fmt: skip
    assert rows[2 + 2]["requests"] == "1"


@pytest.fixture
def local_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("TENANTKIT_URL", "TENANTKIT_DATABASE_URL", "TENANTKIT_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TENANTKIT_SIGNING_KEY", "x" * 40)
    runner = CliRunner()
    result = runner.invoke(
        main, ["tenant", "create", "--tenant-id", "acme", "--name", "Acme", "--json"]
    )
    assert result.exit_code == 0, result.output
    db = open_database(f"sqlite:///{tmp_path / '.tenantkit' / 'tenantkit.db'}")
    started = time.time()  # after the tenant's creation: earlier usage is another tenant's
    with db.transaction() as tx:
        tx.record_usage([UsageEvent("a", "acme", "embed", 200, started, started + 1, 1.5)])
    db.close()
    monkeypatch.setenv("TEST_USAGE_DAY", utc_day(started))
    return tmp_path


@pytest.mark.usefixtures("local_project")
def test_cli_usage_show_formats() -> None:
    runner = CliRunner()
    day = os.environ["TEST_USAGE_DAY"]
    base = ["usage", "show", "--tenant-id", "acme", "--date", day]
    as_json = runner.invoke(main, [*base, "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output)["totals"]["compute_seconds"] == 1.5
    same = runner.invoke(main, [*base, "--format", "json"])
    assert json.loads(same.output) == json.loads(as_json.output)

    as_csv = runner.invoke(main, [*base, "--format", "csv"])
    assert as_csv.exit_code == 0
    assert as_csv.output.splitlines()[0].startswith("scope,key,requests")

    table = runner.invoke(main, base)
    assert table.exit_code == 0
    assert "embed" in table.output
    assert "Estimated cost" in table.output

    month = runner.invoke(main, [*base[:-2], "--period", "month", "--date", day[:7], "--json"])
    assert json.loads(month.output)["totals"]["requests"] == 1


@pytest.mark.usefixtures("local_project")
def test_cli_usage_show_errors_are_one_line() -> None:
    runner = CliRunner()
    missing = runner.invoke(main, ["usage", "show", "--tenant-id", "nobody"])
    assert missing.exit_code == 1
    assert "Traceback" not in missing.output
    bad_date = runner.invoke(main, ["usage", "show", "--tenant-id", "acme", "--date", "yesterday"])
    assert bad_date.exit_code == 1
    assert "invalid date" in bad_date.output


def test_price_table_from_mapping() -> None:
    prices = PriceTable.from_mapping(
        {"per_request": 0.002, "per_gpu_second": {"a100": 0.9, "MI300X": 0.8}, "currency": "EUR"}
    )
    assert prices.per_request == 0.002
    assert prices.gpu_price("A100") == 0.9  # overrides the default, whatever the case
    assert prices.gpu_price("mi300x") == 0.8
    assert prices.gpu_price("T4") == PriceTable().gpu_price("T4")  # other defaults kept
    assert prices.currency == "EUR"
    for bad in ({"per_requests": 1}, {"per_request": -1}, {"per_request": "1"},
                {"per_gpu_second": [1]}, {"per_gb_month": True}):  # fmt: skip
        with pytest.raises(ValidationError):
            PriceTable.from_mapping(bad)
