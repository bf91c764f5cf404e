"""Usage reports and cost estimates, per tenant, per day or month.

Totals come from the daily aggregates the database keeps as events are
recorded (``usage_daily``), so they survive the pruning of old raw events.
The hourly breakdown of a day and the GPU seconds by GPU type come from the
raw events (kept ``usage_retention_days``).

Example:
    >>> from tenantkit.db import UsageEvent, open_database
    >>> db = open_database("sqlite:///:memory:")
    >>> with db.transaction() as tx:
    ...     tx.record_usage([UsageEvent("r1", "acme", "embed", 200, 3600.0, 3602.0, 2.0)])
    1
    >>> report = usage_report(db, "acme", period="day", date="1970-01-01")
    >>> report["totals"]["requests"], report["hourly"][1]["compute_seconds"]
    (1, 2.0)
    >>> report["cost"]["compute"]
    2.62e-05
"""

from __future__ import annotations

import calendar
import csv
import io
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from tenantkit.config import validate_tenant_id
from tenantkit.db import Database, UsageTotals
from tenantkit.errors import ValidationError

__all__ = [
    "DEFAULT_GPU_PRICES",
    "PERIODS",
    "STORAGE_BYTES_GAUGE",
    "STORAGE_FILES_GAUGE",
    "PriceTable",
    "archived_usage_reports",
    "report_csv",
    "report_rows",
    "reports_csv",
    "usage_report",
]

PERIODS = ("day", "month")
STORAGE_BYTES_GAUGE = "storage_bytes"
"""Gauge name (``tx.set_gauge``) holding a tenant's stored bytes on a day."""
STORAGE_FILES_GAUGE = "storage_files"
"""Gauge name holding a tenant's stored file count on a day."""

GB = 1_000_000_000

DEFAULT_GPU_PRICES: Mapping[str, float] = MappingProxyType(
    {
        "T4": 0.000164,
        "L4": 0.000222,
        "A10G": 0.000306,
        "L40S": 0.000542,
        "A100": 0.000583,
        "A100-40GB": 0.000583,
        "A100-80GB": 0.000694,
        "H100": 0.001097,
        "H200": 0.001261,
        "B200": 0.001736,
    }
)
"""USD per GPU-second by GPU type: roughly Modal's published on-demand prices
when this was written. They are an estimate's defaults; set your own."""

_TOTAL_FIELDS = ("requests", "errors", "compute_seconds", "gpu_seconds", "bytes_in", "bytes_out")


@dataclass(frozen=True, slots=True)
class PriceTable:
    """What usage costs, in ``currency``. Every price is configurable.

    Attributes:
        per_request: Price of one call (default 0).
        per_compute_second: Price of one second of compute measured around the
            tenant's function (default 0.0000131, about one CPU core-second on Modal).
        per_gpu_second: Price of one GPU-second by GPU type (case-insensitive);
            defaults to :data:`DEFAULT_GPU_PRICES`.
        default_gpu_second: Price of a GPU-second of a type not in the table,
            or whose type is no longer known (default: the H100 price).
        per_gb_month: Price of storing 10^9 bytes for a month (default 0.10).
        currency: ISO 4217 code (default ``"USD"``).
    """

    per_request: float = 0.0
    per_compute_second: float = 0.0000131
    per_gpu_second: Mapping[str, float] = field(default_factory=lambda: DEFAULT_GPU_PRICES)
    default_gpu_second: float = 0.001097
    per_gb_month: float = 0.10
    currency: str = "USD"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> PriceTable:
        """A price table from JSON-like data; omitted prices keep their defaults.

        ``per_gpu_second`` entries are added to (and override) the default GPU prices.

        Raises:
            ValidationError: an unknown key or a price that is not a non-negative number.

        Example:
            >>> PriceTable.from_mapping({"per_request": 0.001, "per_gpu_second": {"A100": 0.0007}}
            ...                         ).gpu_price("a100")
            0.0007
        """
        known = {"per_request", "per_compute_second", "per_gpu_second", "default_gpu_second",
                 "per_gb_month", "currency"}  # fmt: skip
        unknown = set(data) - known
        if unknown:
            raise ValidationError(f"unknown price table keys: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key == "currency":
                values[key] = str(value)
            elif key == "per_gpu_second":
                if not isinstance(value, Mapping):
                    raise ValidationError("per_gpu_second must map GPU types to prices")
                given = {str(k): _price(k, v) for k, v in value.items()}
                overridden = {k.upper() for k in given}
                kept = {k: v for k, v in DEFAULT_GPU_PRICES.items() if k.upper() not in overridden}
                values[key] = {**kept, **given}
            else:
                values[key] = _price(key, value)
        return cls(**values)

    def gpu_price(self, gpu_type: str | None) -> float:
        """Price of one GPU-second of ``gpu_type``."""
        if gpu_type:
            wanted = gpu_type.upper()
            for name, price in self.per_gpu_second.items():
                if name.upper() == wanted:
                    return price
        return self.default_gpu_second

    def as_dict(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "per_request": self.per_request,
            "per_compute_second": self.per_compute_second,
            "per_gpu_second": dict(sorted(self.per_gpu_second.items())),
            "default_gpu_second": self.default_gpu_second,
            "per_gb_month": self.per_gb_month,
        }


def _price(name: object, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValidationError(f"price {name!s} must be a non-negative number, not {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class _Period:
    kind: str
    label: str
    first_day: str
    last_day: str
    start: datetime
    end: datetime  # exclusive


def _parse_period(period: str, date: str | None, now: float) -> _Period:
    if period not in PERIODS:
        raise ValidationError(f"unknown period {period!r}: use 'day' or 'month'")
    if date is None:
        anchor = datetime.fromtimestamp(now, UTC)
    else:
        formats = ("%Y-%m-%d",) if period == "day" else ("%Y-%m", "%Y-%m-%d")
        for fmt in formats:
            try:
                anchor = datetime.strptime(date, fmt).replace(tzinfo=UTC)
                break
            except ValueError:
                continue
        else:
            wanted = "YYYY-MM-DD" if period == "day" else "YYYY-MM or YYYY-MM-DD"
            raise ValidationError(f"invalid date {date!r}: use {wanted}")
    if period == "day":
        start = anchor.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(days=1)
        label = start.strftime("%Y-%m-%d")
    else:
        start = anchor.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        days = calendar.monthrange(start.year, start.month)[1]
        end = start + timedelta(days=days)
        label = start.strftime("%Y-%m")
    last = end - timedelta(days=1)
    return _Period(period, label, start.strftime("%Y-%m-%d"), last.strftime("%Y-%m-%d"), start, end)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _plain(totals: UsageTotals) -> dict[str, Any]:
    data = totals.as_dict()
    data.pop("by_function", None)
    return data


def usage_report(
    db: Database,
    tenant_id: str,
    *,
    period: str = "day",
    date: str | None = None,
    prices: PriceTable | None = None,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """A tenant's usage over one UTC day or month, with a cost estimate.

    Args:
        db: The records database.
        tenant_id: Whose usage.
        period: ``"day"`` or ``"month"``.
        date: ``YYYY-MM-DD`` (a day, or any day of a month) or ``YYYY-MM``
            (a month); default: the current UTC day or month.
        prices: Price table for the estimate (default :class:`PriceTable()`).
        clock: UNIX time, for the default date.

    Returns:
        JSON-ready: ``tenant_id``, ``period``, ``date``, ``start``/``end``
        (ISO, end exclusive), ``totals``, ``by_function``, ``hourly`` (24
        entries, for a day) or ``daily`` (one per day, for a month),
        ``gpu_seconds_by_type``, ``storage``, ``cost`` and ``prices``.

    Raises:
        ValidationError: an unknown period or a malformed date.
    """
    prices = prices or PriceTable()
    now = clock()
    span = _parse_period(period, date, now)
    totals = UsageTotals()
    by_function: dict[str, UsageTotals] = {}
    by_day: dict[str, UsageTotals] = {}
    by_hour = [UsageTotals() for _ in range(24)]
    gpu_by_type: dict[str, float] = {}
    with db.transaction(write=False) as tx:
        daily = tx.usage_totals(tenant_id, span.first_day, span.last_day)
        gauges = tx.gauges(tenant_id, span.first_day, span.last_day)
        current = tx.storage_usage(tenant_id)
        day_start = span.start
        while day_start < span.end:
            day_end = day_start + timedelta(days=1)
            for event in tx.usage_events(tenant_id, day_start.timestamp(), day_end.timestamp()):
                if event.gpu_seconds:
                    kind = event.gpu_type or "unknown"
                    gpu_by_type[kind] = gpu_by_type.get(kind, 0.0) + event.gpu_seconds
                if span.kind == "day":
                    hour = datetime.fromtimestamp(event.started_at, UTC).hour
                    by_hour[hour].add(UsageTotals.from_event(event))
            day_start = day_end

    for day, functions in daily.items():
        day_totals = by_day.setdefault(day, UsageTotals())
        for function, t in functions.items():
            totals.add(t)
            day_totals.add(t)
            by_function.setdefault(function, UsageTotals()).add(t)

    unattributed = totals.gpu_seconds - sum(gpu_by_type.values())
    if unattributed > 1e-9:  # raw events pruned: the type is no longer known
        gpu_by_type["unknown"] = gpu_by_type.get("unknown", 0.0) + unattributed

    storage = _storage(gauges, current.bytes, current.files, span, now)
    days_in_month = calendar.monthrange(span.start.year, span.start.month)[1]
    month_fraction = 1.0 if span.kind == "month" else 1.0 / days_in_month
    cost = {
        "currency": prices.currency,
        "requests": totals.requests * prices.per_request,
        "compute": totals.compute_seconds * prices.per_compute_second,
        "gpu": sum(s * prices.gpu_price(k) for k, s in gpu_by_type.items()),
        "storage": storage["bytes"] / GB * prices.per_gb_month * month_fraction,
    }
    cost["total"] = cost["requests"] + cost["compute"] + cost["gpu"] + cost["storage"]
    report: dict[str, Any] = {
        "tenant_id": tenant_id,
        "period": span.kind,
        "date": span.label,
        "start": _iso(span.start),
        "end": _iso(span.end),
        "totals": _plain(totals),
        "by_function": {name: _plain(t) for name, t in sorted(by_function.items())},
        "gpu_seconds_by_type": {k: round(v, 6) for k, v in sorted(gpu_by_type.items())},
        "storage": storage,
        "cost": {k: v if isinstance(v, str) else round(v, 9) for k, v in cost.items()},
        "prices": prices.as_dict(),
    }
    if span.kind == "day":
        report["hourly"] = [
            {"hour": _iso(span.start + timedelta(hours=h)), **_plain(t)}
            for h, t in enumerate(by_hour)
        ]
    else:
        report["daily"] = [
            {"day": day, **_plain(by_day.get(day, UsageTotals()))}
            for day in (
                (span.start + timedelta(days=d)).strftime("%Y-%m-%d") for d in range(days_in_month)
            )
        ]
    return report


def archived_usage_reports(
    db: Database,
    tenant_id: str,
    *,
    period: str = "day",
    date: str | None = None,
    prices: PriceTable | None = None,
    clock: Callable[[], float] = time.time,
) -> list[dict[str, Any]]:
    """The usage of a deleted tenant: one :func:`usage_report` per archive.

    Deleting a tenant keeps its usage under ``<id>~deleted-<UNIX seconds>``
    (one archive per deletion, should the id be created and deleted again);
    each report's ``tenant_id`` is that archived id.

    Args:
        db: The records database.
        tenant_id: The tenant id as it was before deletion.
        period: ``"day"`` or ``"month"``.
        date: As for :func:`usage_report`.
        prices: Price table for the estimates.
        clock: UNIX time, for the default date.

    Returns:
        The reports, oldest deletion first; empty when the id was never deleted
        with usage recorded.

    Raises:
        InvalidTenantId: ``tenant_id`` is not a tenant id.
        ValidationError: an unknown period or a malformed date.
    """
    validate_tenant_id(tenant_id)
    with db.transaction(write=False) as tx:
        archived = tx.archived_tenant_ids(tenant_id)
    return [
        usage_report(db, archive, period=period, date=date, prices=prices, clock=clock)
        for archive in archived
    ]


def _storage(
    gauges: Mapping[str, float], current_bytes: int, current_files: int, span: _Period, now: float
) -> dict[str, Any]:
    if STORAGE_BYTES_GAUGE in gauges:
        return {
            "bytes": int(gauges[STORAGE_BYTES_GAUGE]),
            "files": int(gauges.get(STORAGE_FILES_GAUGE, 0)),
            "source": "gauge",
        }
    if span.start.timestamp() <= now < span.end.timestamp():
        return {"bytes": current_bytes, "files": current_files, "source": "current"}
    return {"bytes": 0, "files": 0, "source": "none"}


ROW_COLUMNS = ("scope", "key", *_TOTAL_FIELDS)


def report_rows(report: Mapping[str, Any]) -> list[list[Any]]:
    """The report as flat rows (columns :data:`ROW_COLUMNS`): the total, one row
    per function, then one per hour (day reports) or day (month reports)."""
    rows: list[list[Any]] = [["total", report["date"], *_values(report["totals"])]]
    for name, totals in report["by_function"].items():
        rows.append(["function", name, *_values(totals)])
    for entry in report.get("hourly", ()):
        rows.append(["hour", entry["hour"], *_values(entry)])
    for entry in report.get("daily", ()):
        rows.append(["day", entry["day"], *_values(entry)])
    return rows


def _values(totals: Mapping[str, Any]) -> Iterable[Any]:
    return (totals[name] for name in _TOTAL_FIELDS)


def report_csv(report: Mapping[str, Any]) -> str:
    """The report's rows as CSV with a header line."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(ROW_COLUMNS)
    writer.writerows(report_rows(report))
    return buffer.getvalue()


def reports_csv(reports: Iterable[Mapping[str, Any]]) -> str:
    """Several reports' rows as one CSV, each row led by its report's ``tenant_id``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("tenant_id", *ROW_COLUMNS))
    for report in reports:
        writer.writerows([report["tenant_id"], *row] for row in report_rows(report))
    return buffer.getvalue()


def money(amount: float) -> str:
    """An amount for people: cents, or more digits below a cent."""
    if amount == 0 or abs(amount) >= 0.01:
        return f"{amount:,.2f}"
    digits = max(2, -math.floor(math.log10(abs(amount))) + 2)
    return f"{amount:.{digits}f}"
