"""The record layouts that travel between stages, as Arrow schemas (Spark's are derived)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa
from datatrove.data import Document

from longmix.stages.logic.readers import Skip

SpecKey = tuple[str, int]

# What every stage says of a document.
DOCUMENT_FIELDS = [
    ("id", pa.large_string()),
    ("source", pa.large_string()),
    ("domain", pa.large_string()),
    ("kind", pa.large_string()),
    ("text", pa.large_string()),
    ("bytes", pa.int64()),
]

# What the read stage emits: a document, or a skipped record (text null, skip_reason set), so
# that one pass both feeds the next stage and counts what was left out.
READ_SCHEMA = pa.schema(
    [
        *DOCUMENT_FIELDS,
        ("file", pa.large_string()),
        ("record", pa.int64()),
        ("source_id", pa.large_string()),
        ("group", pa.large_string()),
        ("subgroup", pa.large_string()),
        ("member", pa.large_string()),
        ("position", pa.int64()),
        ("skip_reason", pa.large_string()),
        ("skip_detail", pa.large_string()),
        ("skip_bad", pa.bool_()),
        ("skip_records", pa.int64()),
        ("hash", pa.binary()),  # of the normalized text (`fingerprints.text_hash`)
        ("contaminated", pa.list_(pa.large_string())),  # evaluation files it overlaps
    ]
)

# A document as later stages see it: concatenated groups are one row per part.
DOCUMENT_SCHEMA = pa.schema(
    [
        *DOCUMENT_FIELDS,
        ("group", pa.large_string()),
        ("part", pa.int32()),
        ("members", pa.int64()),
    ]
)


def read_row(item: Document | Skip) -> dict[str, Any]:
    if isinstance(item, Skip):
        return {
            "id": None,
            "source": item.source,
            "domain": None,
            "kind": None,
            "text": None,
            "bytes": 0,
            "file": item.file,
            "record": item.record,
            "skip_reason": item.reason,
            "skip_detail": item.detail,
            "skip_bad": item.bad,
            "skip_records": item.records,
        }
    meta = item.metadata
    return {
        "id": item.id,
        "text": item.text,
        "bytes": len(item.text.encode("utf-8")),
        **{key: meta[key] for key in READ_SCHEMA.names if key in meta},
    }


def row_bytes(row: dict[str, Any]) -> int:
    return row.get("bytes") or 0


def read_rows(
    items: Iterable[Document | Skip], mark: Callable[[dict[str, Any]], dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """READ_SCHEMA rows; `mark` sets a document's fingerprints (`Fingerprints.mark`)."""
    for item in items:
        row = read_row(item)
        yield row if isinstance(item, Skip) else mark(row)


# Token ids travel as int32: Spark has no unsigned types and every vocabulary fits in 31
# bits; the MDS writer stores them as uint32. A task's counts travel as one `tally` row.
SEQUENCE_SCHEMA = pa.schema(
    [
        ("row_type", pa.large_string()),  # sequence | partial | tally | commit | hash
        ("domain", pa.large_string()),
        ("seq_len", pa.int32()),
        ("bucket", pa.int32()),
        ("seq_no", pa.int64()),
        ("input_ids", pa.list_(pa.int32())),
        ("indices", pa.list_(pa.int32())),  # flattened (n, 2) [start, end) pairs
        ("mask", pa.list_(pa.int8())),
        ("tally", pa.large_string()),
        ("record", pa.large_string()),  # an MDS unit's commit record, JSON
        # A `hash` row: one read record that went into packing (duplicate counting).
        ("source", pa.large_string()),
        ("id", pa.large_string()),
        ("group", pa.large_string()),
        ("hash", pa.binary()),
        ("bytes", pa.int64()),
        ("tokens", pa.int64()),
    ]
)
