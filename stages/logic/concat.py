"""Concatenation of grouped records into documents, streaming over rows sorted by group.

The rows of a partition arrive sorted by (source, group, member order); a document part is
closed as soon as adding the next member would pass `max_bytes`, so memory stays bounded by
one part however large the repository or subject is. Text stays UTF-8 bytes throughout: a
Python str of a 32 MB part with one emoji in it would take 128 MB.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from longmix.stages.logic.batches import batched, rows_of
from longmix.stages.logic.schemas import DOCUMENT_SCHEMA, row_bytes
from longmix.stages.logic.sources import SourceSpec

INPUT_COLUMNS = ["id", "source", "domain", "kind", "group", "member", "text", "hash"]
MemberRecord = tuple[str, bytes | None, int]  # a member's record id, text hash and bytes


@dataclass
class Part:
    source: str
    group: str
    domain: str
    kind: str
    index: int
    bucket: int | None = None
    pieces: list[bytes] = field(default_factory=list)
    size: int = 0
    members: int = 0
    ends: list[int] = field(default_factory=list)  # each member's end offset in the text
    records: list[MemberRecord] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return {
            "id": f"{self.source}/{self.group}#{self.index}",
            "source": self.source,
            "domain": self.domain,
            "kind": self.kind,
            "text": b"".join(self.pieces),
            "bytes": self.size,
            "group": self.group,
            "part": self.index,
            "members": self.members,
            "member_ends": self.ends,
            "member_records": self.records,
            "bucket": self.bucket,
        }


def member_record(row: dict[str, Any]) -> MemberRecord:
    return row["id"], row.get("hash"), len(row["text"])


def single(row: dict[str, Any]) -> dict[str, Any]:
    """An ungrouped record is a document as it is."""
    return {
        **{key: row[key] for key in ("id", "source", "domain", "kind", "text", "group")},
        "bytes": len(row["text"]),
        "part": 0,
        "members": 1,
        "member_ends": [len(row["text"])],
        "member_records": [member_record(row)],
        "bucket": row.get("bucket"),
    }


def concatenate_rows(
    rows: Iterable[dict[str, Any]], specs: dict[str, SourceSpec], max_bytes: int
) -> Iterator[dict[str, Any]]:
    """Documents from rows (text as UTF-8 bytes) sorted by (source, group, order); a group
    over `max_bytes` becomes consecutive parts split between members (a single member larger
    than that stays whole). Rows without a group pass through as documents."""
    part: Part | None = None
    for row in rows:
        if row["group"] is None:
            if part is not None:
                yield part.document()
                part = None
            yield single(row)
            continue
        spec = specs[row["source"]]
        header = spec.header.format(member=row["member"] or "").encode("utf-8")
        joiner = spec.joiner.encode("utf-8")
        size = len(row["text"]) + len(header)
        if part is None or (part.source, part.group) != (row["source"], row["group"]):
            if part is not None:
                yield part.document()
            part = Part(
                row["source"], row["group"], row["domain"], row["kind"], 0, row.get("bucket")
            )
        elif part.size + len(joiner) + size > max_bytes:
            yield part.document()
            part = Part(
                part.source, part.group, part.domain, part.kind, part.index + 1, part.bucket
            )
        if part.members:
            part.pieces.append(joiner)
            part.size += len(joiner)
        part.pieces += [header, row["text"]] if header else [row["text"]]
        part.size += size
        part.members += 1
        part.ends.append(part.size)
        part.records.append(member_record(row))
    if part is not None:
        yield part.document()


def as_binary(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        index = batch.schema.get_field_index("text")
        yield batch.set_column(index, "text", batch.column(index).cast(pa.large_binary()))


def concat_partition(
    batches: Iterable[pa.RecordBatch], specs: dict[str, SourceSpec], max_bytes: int
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body over one sorted partition."""
    documents = concatenate_rows(rows_of(as_binary(batches), INPUT_COLUMNS), specs, max_bytes)
    yield from batched(documents, DOCUMENT_SCHEMA, size_of=row_bytes)
