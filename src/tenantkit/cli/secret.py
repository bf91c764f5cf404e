"""`tenantkit secret ...` commands."""

from __future__ import annotations
