"""Rows to Arrow record batches, bounded by rows and bytes so one batch never holds a corpus."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

MAX_ROWS = 1024
MAX_BYTES = 16 * 1024 * 1024


def batched(
    rows: Iterable[dict[str, Any]],
    schema: pa.Schema,
    size_of=lambda row: 0,
    max_rows: int = MAX_ROWS,
    max_bytes: int = MAX_BYTES,
) -> Iterator[pa.RecordBatch]:
    """Record batches of `schema` from dict rows; `size_of` estimates a row's bytes."""
    pending: list[dict[str, Any]] = []
    pending_bytes = 0
    for row in rows:
        pending.append(row)
        pending_bytes += size_of(row)
        if len(pending) >= max_rows or pending_bytes >= max_bytes:
            yield pa.RecordBatch.from_pylist(pending, schema=schema)
            pending, pending_bytes = [], 0
    if pending:
        yield pa.RecordBatch.from_pylist(pending, schema=schema)


def rows_of(batches: Iterable[pa.RecordBatch], columns: list[str]) -> Iterator[dict[str, Any]]:
    """Rows of the named columns, one batch in memory at a time."""
    for batch in batches:
        values = [batch.column(name).to_pylist() for name in columns]
        for row in zip(*values, strict=True):
            yield dict(zip(columns, row, strict=True))
