"""Concatenation of grouped records into documents, streaming over rows sorted by group.

The rows of a partition arrive sorted by (source, group, member order); a document part is
closed as soon as adding the next member would pass `max_bytes`, so memory stays bounded by
one part however large the repository or subject is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from stages.logic.batches import batched, rows_of
from stages.logic.documents import DOCUMENT_SCHEMA, row_bytes
from stages.logic.sources import SourceSpec

INPUT_COLUMNS = ["source", "domain", "kind", "group", "member", "text", "bytes"]


@dataclass
class Part:
    source: str
    group: str
    domain: str
    kind: str
    index: int
    pieces: list[str] = field(default_factory=list)
    size: int = 0
    members: int = 0

    def document(self) -> dict[str, Any]:
        return {
            "id": f"{self.source}/{self.group}#{self.index}",
            "source": self.source,
            "domain": self.domain,
            "kind": self.kind,
            "text": "".join(self.pieces),
            "bytes": self.size,
            "group": self.group,
            "part": self.index,
            "members": self.members,
        }


def concatenate_rows(
    rows: Iterable[dict[str, Any]], specs: dict[str, SourceSpec], max_bytes: int
) -> Iterator[dict[str, Any]]:
    """Documents from rows sorted by (source, group, order); a group over `max_bytes` becomes
    consecutive parts split between members (a single member larger than that stays whole)."""
    part: Part | None = None
    for row in rows:
        spec = specs[row["source"]]
        header = spec.header.format(member=row["member"] or "")
        size = row["bytes"] + len(header.encode("utf-8"))
        joiner_size = len(spec.joiner.encode("utf-8"))
        same_group = part is not None and (part.source, part.group) == (row["source"], row["group"])
        if part is not None and (not same_group or part.size + joiner_size + size > max_bytes):
            yield part.document()
            index = part.index + 1 if same_group else 0
            part = None
        else:
            index = 0
        if part is None:
            part = Part(row["source"], row["group"], row["domain"], row["kind"], index)
        elif part.members:
            part.pieces.append(spec.joiner)
            part.size += joiner_size
        part.pieces += [header, row["text"]] if header else [row["text"]]
        part.size += size
        part.members += 1
    if part is not None:
        yield part.document()


def concat_partition(
    batches: Iterable[pa.RecordBatch], specs: dict[str, SourceSpec], max_bytes: int
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body over one sorted partition."""
    documents = concatenate_rows(rows_of(batches, INPUT_COLUMNS), specs, max_bytes)
    yield from batched(documents, DOCUMENT_SCHEMA, size_of=row_bytes)
