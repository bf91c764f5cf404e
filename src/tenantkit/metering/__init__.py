"""Usage metering: one idempotent event per call, buffered off the request path,
aggregated per tenant per hour, day and month, priced for billing estimates.

::

    meter = UsageMeter(db, flush_interval=settings.usage_flush_interval,
                       buffer_size=settings.usage_buffer_size)
    await meter.start()
    await meter.record(UsageEvent(request_id, tenant_id, "embed", 200, t0, t1, compute_s))
    await meter.stop()                       # stores everything still buffered

    usage_report(db, "acme-corp", period="month")   # JSON-ready dict with costs
"""

from __future__ import annotations

from tenantkit.metering.meter import UsageMeter
from tenantkit.metering.report import (
    DEFAULT_GPU_PRICES,
    PERIODS,
    STORAGE_BYTES_GAUGE,
    STORAGE_FILES_GAUGE,
    PriceTable,
    report_csv,
    report_rows,
    usage_report,
)

__all__ = [
    "DEFAULT_GPU_PRICES",
    "PERIODS",
    "STORAGE_BYTES_GAUGE",
    "STORAGE_FILES_GAUGE",
    "PriceTable",
    "UsageMeter",
    "report_csv",
    "report_rows",
    "usage_report",
]
