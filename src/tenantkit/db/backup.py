"""Back up and restore every record as JSON Lines, across backends.

An export is one header line, then one line per row::

    {"format": "tenantkit-export", "version": 1, "schema_version": 1, "exported_at": ...}
    {"table": "tenants", "row": {"id": "acme-corp", "name": "Acme Corporation", ...}}
    {"table": "usage_events", "row": {"request_id": "...", ...}}

It is read in one read transaction, so it is a consistent snapshot. Import
runs in one write transaction (all or nothing) and inserts or replaces rows by
primary key, so importing the same file twice changes nothing the second
time. An export from SQLite imports into PostgreSQL and back unchanged::

    with open("backup.jsonl", "w") as f:
        export_records(sqlite_db, f)
    with open("backup.jsonl") as f:
        import_records(postgres_db, f)

Import restores into an empty database, or the one the export came from:
rows with the same key are replaced by the exported ones (daily usage totals
included, so they stay equal to what the export held).
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from tenantkit.db.base import TABLES, Database
from tenantkit.errors import ValidationError

__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "BackupSummary", "export_records", "import_records"]

EXPORT_FORMAT = "tenantkit-export"
EXPORT_VERSION = 1


@dataclass(frozen=True, slots=True)
class BackupSummary:
    """What an export wrote or an import applied.

    Attributes:
        rows: Rows in all.
        tables: Rows per table.
        schema_version: Schema version of the exported database.
    """

    rows: int
    schema_version: int
    tables: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "schema_version": self.schema_version, "tables": self.tables}


def export_records(
    db: Database, out: TextIO, *, clock: Callable[[], float] = time.time
) -> BackupSummary:
    """Write every record of ``db`` to ``out`` as JSON Lines.

    Args:
        db: The database to read (in one consistent read transaction).
        out: A text stream, e.g. an open file or ``sys.stdout``.
        clock: Source of the ``exported_at`` time in the header.

    Returns:
        How many rows were written, per table.
    """
    version = db.schema_version()
    header = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "schema_version": version,
        "exported_at": clock(),
        "source": db.backend,
    }
    counts: Counter[str] = Counter()
    out.write(_dumps(header))
    with db.transaction(write=False) as tx:
        for table, row in tx.export_rows():
            out.write(_dumps({"table": table, "row": row}))
            counts[table] += 1
    out.flush()
    return BackupSummary(sum(counts.values()), version, dict(counts))


def import_records(db: Database, lines: Iterable[str]) -> BackupSummary:
    """Insert or replace every row of an export in ``db``, in one transaction.

    Args:
        db: The database to restore into (migrated to at least the export's
            schema version).
        lines: The export's lines, e.g. an open file.

    Returns:
        How many rows were applied, per table.

    Raises:
        ValidationError: if the input is not a tenantkit export (naming the
            line), or comes from a newer schema than ``db`` has. Nothing is
            changed then.
    """
    numbered = enumerate(lines, start=1)
    header = _header(next(numbered, None))
    version = db.schema_version()
    exported = header.get("schema_version")
    if not isinstance(exported, int) or exported > version:
        raise ValidationError(
            f"the export has schema version {exported!r} but this database has {version}:"
            " upgrade tenantkit and run `tenantkit db migrate` first"
        )
    counts: Counter[str] = Counter()

    def rows() -> Iterator[tuple[str, dict[str, Any]]]:
        for number, line in numbered:
            if not line.strip():
                continue
            table, row = _row(number, line)
            counts[table] += 1
            yield table, row

    with db.transaction() as tx:
        try:
            tx.import_rows(rows())
        except ValueError as exc:
            raise ValidationError(f"invalid export: {exc}") from exc
    return BackupSummary(sum(counts.values()), exported, dict(counts))


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n"


def _header(first: tuple[int, str] | None) -> dict[str, Any]:
    if first is None:
        raise ValidationError("invalid export: the input is empty")
    try:
        header = json.loads(first[1])
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
        raise ValidationError("invalid export: line 1 is not a tenantkit export header")
    if header.get("version") != EXPORT_VERSION:
        raise ValidationError(
            f"invalid export: format version {header.get('version')!r} is not supported"
            f" (expected {EXPORT_VERSION})"
        )
    return header


def _row(number: int, line: str) -> tuple[str, dict[str, Any]]:
    try:
        item = json.loads(line, parse_constant=_refuse_constant)
    except ValueError:
        raise ValidationError(f"invalid export: line {number} is not JSON") from None
    if not isinstance(item, dict):
        raise ValidationError(f"invalid export: line {number} is not a row object")
    table, row = item.get("table"), item.get("row")
    if not isinstance(table, str) or table not in TABLES or not isinstance(row, dict):
        raise ValidationError(f"invalid export: line {number} names no known table and row")
    for value in row.values():
        if not isinstance(value, str | int | float | type(None)) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            raise ValidationError(f"invalid export: line {number} holds a non-scalar value")
    return table, row


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")
