"""`tenantkit deploy ...` commands."""

from __future__ import annotations
