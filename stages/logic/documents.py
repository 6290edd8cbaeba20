"""The record layouts that travel between stages, as Arrow schemas (Spark's are derived)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
from datatrove.data import Document

from stages.logic.readers import Skip
from stages.logic.tally import Tally

# What the read stage emits: a document, or a skipped record (text null, skip_reason set), so
# that one pass both feeds the next stage and counts what was left out.
READ_SCHEMA = pa.schema(
    [
        ("id", pa.large_string()),
        ("source", pa.large_string()),
        ("domain", pa.large_string()),
        ("kind", pa.large_string()),
        ("text", pa.large_string()),
        ("bytes", pa.int64()),
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
    ]
)

# A document as later stages see it: concatenated groups are one row per part.
DOCUMENT_SCHEMA = pa.schema(
    [
        ("id", pa.large_string()),
        ("source", pa.large_string()),
        ("domain", pa.large_string()),
        ("kind", pa.large_string()),
        ("text", pa.large_string()),
        ("bytes", pa.int64()),
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


def read_rows(items: Iterable[Document | Skip]) -> Iterator[dict[str, Any]]:
    return (read_row(item) for item in items)


READ_TALLY_COLUMNS = [
    "source",
    "domain",
    "bytes",
    "file",
    "record",
    "skip_reason",
    "skip_detail",
    "skip_bad",
    "skip_records",
]
DOCUMENT_TALLY_COLUMNS = ["source", "domain", "bytes", "group", "part", "members"]


def count_record(tally: Tally, row: dict[str, Any]) -> None:
    """A READ_SCHEMA row into the report's read numbers: kept by domain, skipped by reason."""
    if row["skip_reason"] is None:
        tally.add(("read", row["source"], row["domain"]), documents=1, bytes=row["bytes"])
        return
    key = ("skipped", row["source"], row["skip_reason"], row["file"])
    tally.add(key, count=row["skip_records"] or 1)
    tally.maximum(key, "max_bad", int(row["skip_bad"]))
    tally.first(key, row["record"], row["skip_detail"])


def count_document(tally: Tally, document: dict[str, Any]) -> None:
    key = ("documents", document["source"], document["domain"])
    grouped = document["group"] is not None
    tally.add(
        key,
        documents=1,
        bytes=document["bytes"],
        members=document["members"],
        groups=int(grouped and document["part"] == 0),
        split_groups=int(grouped and document["part"] == 1),
    )
    tally.maximum(key, "max_document_bytes", document["bytes"])
