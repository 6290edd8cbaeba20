"""Packing token streams into exact-length training sequences with document `indices`.

Long data: each document of at least `min_length` tokens is cut into chunks of exactly L,
one document per sequence; the tail is dropped. Short data: documents are concatenated in
the given (seeded) order and the truncated part of the last one starts the next sequence.
SFT: the same, but the truncated part is discarded. Every document is wrapped in BOS / EOS
as configured. Work runs per bucket (a fixed, seeded share of the documents), so what a
sequence holds does not depend on Spark's partitioning; each bucket's last, partial sequence
is handed on and packed with the others (`pack_leftovers`), so a whole run loses at most one
partial sequence per (domain, length).

Every token is accounted for: input tokens + added special tokens = output tokens + drops.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa

Mode = Literal["long", "short", "sft"]

SEQUENCE_SCHEMA = pa.schema(
    [
        ("row_type", pa.large_string()),  # sequence | partial | drop | added
        ("domain", pa.large_string()),
        ("seq_len", pa.int32()),
        ("bucket", pa.int32()),
        ("seq_no", pa.int64()),
        ("input_ids", pa.list_(pa.int32())),
        ("indices", pa.list_(pa.int32())),  # flattened (n, 2) [start, end) pairs
        ("mask", pa.list_(pa.int8())),
        ("drop_reason", pa.large_string()),
        ("drop_tokens", pa.int64()),
        ("drop_documents", pa.int64()),
    ]
)
PACK_INPUT_COLUMNS = ["domain", "seq_len", "bucket", "kind", "input_ids", "mask", "length"]


@dataclass(frozen=True)
class PackSpec:
    mode: Mode
    length: int
    min_length: int = 0
    bos: int | None = None
    eos: int | None = None


@dataclass
class Sequence:
    input_ids: np.ndarray
    indices: np.ndarray
    mask: np.ndarray | None = None


@dataclass
class Piece:
    """A document, or what is left of one, on its way into sequences."""

    ids: np.ndarray
    mask: np.ndarray | None = None


@dataclass
class Drops:
    """Tokens (and documents) left out, by reason, and special tokens added."""

    tokens: Counter = field(default_factory=Counter)
    documents: Counter = field(default_factory=Counter)
    added_specials: int = 0

    def add(self, reason: str, tokens: int, documents: int = 0) -> None:
        self.tokens[reason] += tokens
        self.documents[reason] += documents


def wrap(ids: np.ndarray, mask: np.ndarray | None, spec: PackSpec, kind: str) -> Piece:
    """A tokenized document with BOS / EOS around it (chats carry their own rendering)."""
    if kind == "chat":  # rendered with its own specials; the mask matters only for SFT
        return Piece(ids.astype(np.uint32, copy=False), mask if spec.mode == "sft" else None)
    head = [spec.bos] if spec.bos is not None else []
    tail = [spec.eos] if spec.eos is not None else []
    out = np.concatenate(
        [np.array(head, np.uint32), ids.astype(np.uint32), np.array(tail, np.uint32)]
    )
    return Piece(out, np.ones(len(out), np.int8) if spec.mode == "sft" else None)


class Concatenator:
    """Fills sequences of exactly `spec.length` from pieces in order."""

    def __init__(self, spec: PackSpec, drops: Drops):
        self.spec = spec
        self.drops = drops
        self.parts: list[Piece] = []
        self.filled = 0

    def add(self, piece: Piece) -> Iterator[Sequence]:
        length = self.spec.length
        while len(piece.ids):
            take = min(length - self.filled, len(piece.ids))
            head = Piece(piece.ids[:take], None if piece.mask is None else piece.mask[:take])
            rest = Piece(piece.ids[take:], None if piece.mask is None else piece.mask[take:])
            self.parts.append(head)
            self.filled += take
            if self.filled == length:
                yield self.flush()
            if len(rest.ids) and self.spec.mode == "sft":
                self.drops.add("sft_truncated", len(rest.ids))
                return
            piece = rest

    def flush(self) -> Sequence:
        sequence = assemble(self.parts, self.spec.mode == "sft")
        self.parts, self.filled = [], 0
        return sequence

    def partial(self) -> Sequence | None:
        return assemble(self.parts, self.spec.mode == "sft") if self.parts else None


def assemble(parts: list[Piece], with_mask: bool) -> Sequence:
    ends = np.cumsum([len(p.ids) for p in parts])
    starts = np.concatenate([[0], ends[:-1]])
    mask = None
    if with_mask or any(p.mask is not None for p in parts):
        mask = np.concatenate(
            [p.mask if p.mask is not None else np.ones(len(p.ids), np.int8) for p in parts]
        )
    return Sequence(
        np.concatenate([p.ids for p in parts]),
        np.stack([starts, ends], axis=1).astype(np.int64),
        mask,
    )


def chunk_long(piece: Piece, spec: PackSpec, drops: Drops) -> Iterator[Sequence]:
    """Consecutive chunks of exactly L tokens of one long document; the tail is dropped."""
    length = spec.length
    count = len(piece.ids) // length
    for k in range(count):
        window = slice(k * length, (k + 1) * length)
        mask = None if piece.mask is None else piece.mask[window]
        yield Sequence(piece.ids[window], np.array([[0, length]], np.int64), mask)
    if len(piece.ids) - count * length:
        drops.add("long_tail", len(piece.ids) - count * length)


def pieces_of(sequence: Sequence) -> Iterator[Piece]:
    for start, end in sequence.indices:
        yield Piece(
            sequence.input_ids[start:end],
            None if sequence.mask is None else sequence.mask[start:end],
        )


class GroupPacker:
    """Packs one ordered stream of documents (a bucket of one domain and length)."""

    def __init__(self, spec: PackSpec, drops: Drops):
        self.spec = spec
        self.drops = drops
        self.concatenator = None if spec.mode == "long" else Concatenator(spec, drops)

    def add(
        self, kind: str, ids: np.ndarray, mask: np.ndarray | None, raw: int
    ) -> Iterator[Sequence]:
        if self.concatenator is None and raw < self.spec.min_length:
            self.drops.add("below_min_length", raw, 1)
            return
        piece = wrap(ids, mask, self.spec, kind)
        self.drops.added_specials += len(piece.ids) - len(ids)
        if self.concatenator is None:
            yield from chunk_long(piece, self.spec, self.drops)
        else:
            yield from self.concatenator.add(piece)

    def partial(self) -> Sequence | None:
        """The partial sequence left at the end of the stream (None in long mode)."""
        return None if self.concatenator is None else self.concatenator.partial()


def pack_documents(
    documents: Iterable[tuple[str, np.ndarray, np.ndarray | None, int]],
    spec: PackSpec,
    drops: Drops,
) -> tuple[list[Sequence], Sequence | None]:
    """All full sequences of one ordered stream of (kind, ids, mask, raw length), and the
    partial sequence left at its end."""
    packer = GroupPacker(spec, drops)
    sequences = [seq for document in documents for seq in packer.add(*document)]
    return sequences, packer.partial()


def pack_partials(partials: Iterable[Sequence], spec: PackSpec, drops: Drops) -> Iterator[Sequence]:
    """Pack the buckets' partial sequences together; the last partial one is dropped."""
    packer = Concatenator(spec, drops)
    for partial in partials:
        for piece in pieces_of(partial):
            yield from packer.add(piece)
    final = packer.partial()
    if final is not None:
        drops.add("final_partial", len(final.input_ids), len(final.indices))


SpecKey = tuple[str, int]
BATCH_TOKENS = 4 * 1024 * 1024


def list_column(arrays: list[np.ndarray | None], dtype: pa.DataType) -> pa.Array:
    """A list column from numpy arrays (None: a null list), without Python int lists."""
    lengths = np.array([0 if a is None else len(a) for a in arrays], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    present = [a for a in arrays if a is not None]
    values = np.concatenate(present) if present else np.array([], dtype.to_pandas_dtype())
    mask = pa.array([a is None for a in arrays]) if len(present) < len(arrays) else None
    return pa.ListArray.from_arrays(
        pa.array(offsets, pa.int32()), pa.array(values.astype(dtype.to_pandas_dtype())), mask=mask
    )


class RowBuffer:
    """Collects SEQUENCE_SCHEMA rows and emits bounded record batches."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.tokens = 0

    def add(
        self, row_type: str, key: SpecKey, bucket: int, seq_no: int, seq: Sequence
    ) -> Iterator[pa.RecordBatch]:
        self.rows.append(
            {
                "row_type": row_type,
                "domain": key[0],
                "seq_len": key[1],
                "bucket": bucket,
                "seq_no": seq_no,
                "sequence": seq,
            }
        )
        self.tokens += len(seq.input_ids)
        if self.tokens >= BATCH_TOKENS:
            yield self.flush()

    def flush(self) -> pa.RecordBatch:
        rows, self.rows, self.tokens = self.rows, [], 0
        sequences = [r["sequence"] for r in rows]
        return pa.RecordBatch.from_arrays(
            [
                pa.array([r["row_type"] for r in rows], pa.large_string()),
                pa.array([r["domain"] for r in rows], pa.large_string()),
                pa.array([r["seq_len"] for r in rows], pa.int32()),
                pa.array([r["bucket"] for r in rows], pa.int32()),
                pa.array([r["seq_no"] for r in rows], pa.int64()),
                list_column([s.input_ids.view(np.int32) for s in sequences], pa.int32()),
                list_column([s.indices.reshape(-1) for s in sequences], pa.int32()),
                list_column([s.mask for s in sequences], pa.int8()),
                pa.nulls(len(rows), pa.large_string()),
                pa.nulls(len(rows), pa.int64()),
                pa.nulls(len(rows), pa.int64()),
            ],
            schema=SEQUENCE_SCHEMA,
        )

    def pending(self) -> Iterator[pa.RecordBatch]:
        if self.rows:
            yield self.flush()


def drop_rows(drops: dict[SpecKey, Drops]) -> Iterator[pa.RecordBatch]:
    """`drop` rows by reason, and an `added` row with the special tokens added."""
    rows = []
    for (domain, seq_len), found in sorted(drops.items()):
        base = {"domain": domain, "seq_len": seq_len}
        rows += [
            {
                **base,
                "row_type": "drop",
                "drop_reason": reason,
                "drop_tokens": tokens,
                "drop_documents": found.documents[reason],
            }
            for reason, tokens in sorted(found.tokens.items())
        ]
        if found.added_specials:
            rows.append(
                {
                    **base,
                    "row_type": "added",
                    "drop_reason": "special_tokens",
                    "drop_tokens": found.added_specials,
                    "drop_documents": 0,
                }
            )
    if rows:
        yield pa.RecordBatch.from_pylist(rows, schema=SEQUENCE_SCHEMA)


def list_values(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    return column.values.to_numpy(zero_copy_only=False), column.offsets.to_numpy()


def document_rows(batches: Iterable[pa.RecordBatch]) -> Iterator[tuple]:
    """(key, bucket, kind, ids, mask, length) per row, ids as numpy views into the batch."""
    for batch in batches:
        ids, id_offsets = list_values(batch.column("input_ids"))
        masks = batch.column("mask")
        mask_values, mask_offsets = list_values(masks)
        mask_null = masks.is_null().to_numpy(zero_copy_only=False)
        columns = [
            batch.column(c).to_pylist() for c in ("domain", "seq_len", "bucket", "kind", "length")
        ]
        for i, (domain, seq_len, bucket, kind, length) in enumerate(zip(*columns, strict=True)):
            row_ids = ids[id_offsets[i] : id_offsets[i + 1]].view(np.uint32)
            mask = None if mask_null[i] else mask_values[mask_offsets[i] : mask_offsets[i + 1]]
            yield (domain, seq_len), bucket, kind, row_ids, mask, length


def pack_partition(
    batches: Iterable[pa.RecordBatch], specs: dict[SpecKey, PackSpec]
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body over rows sorted by (domain, seq_len, bucket, seeded order): full
    sequences, one `partial` row per bucket, and the partition's drops."""
    drops: dict[SpecKey, Drops] = {}
    out = RowBuffer()
    current: tuple[SpecKey, int] | None = None
    packer: GroupPacker | None = None
    seq_no = 0
    for key, bucket, kind, ids, mask, length in document_rows(batches):
        if (key, bucket) != current:
            if packer is not None and (partial := packer.partial()) is not None:
                yield from out.add("partial", current[0], current[1], seq_no, partial)
            current, seq_no = (key, bucket), 0
            packer = GroupPacker(specs[key], drops.setdefault(key, Drops()))
        for sequence in packer.add(kind, ids, mask, length):
            yield from out.add("sequence", key, bucket, seq_no, sequence)
            seq_no += 1
    if packer is not None and (partial := packer.partial()) is not None:
        yield from out.add("partial", current[0], current[1], seq_no, partial)
    yield from out.pending()
    yield from drop_rows(drops)


def sequence_rows(batches: Iterable[pa.RecordBatch]) -> Iterator[tuple[SpecKey, Sequence]]:
    for batch in batches:
        ids, id_offsets = list_values(batch.column("input_ids"))
        idx, idx_offsets = list_values(batch.column("indices"))
        masks = batch.column("mask")
        mask_values, mask_offsets = list_values(masks)
        mask_null = masks.is_null().to_numpy(zero_copy_only=False)
        keys = zip(
            batch.column("domain").to_pylist(), batch.column("seq_len").to_pylist(), strict=True
        )
        for i, key in enumerate(keys):
            yield (
                key,
                Sequence(
                    ids[id_offsets[i] : id_offsets[i + 1]].view(np.uint32),
                    idx[idx_offsets[i] : idx_offsets[i + 1]].reshape(-1, 2).astype(np.int64),
                    None if mask_null[i] else mask_values[mask_offsets[i] : mask_offsets[i + 1]],
                ),
            )


def leftover_partition(
    batches: Iterable[pa.RecordBatch], specs: dict[SpecKey, PackSpec], bucket: int
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body over `partial` rows sorted by (domain, seq_len, bucket): they are
    packed together per (domain, length) into sequences numbered after every bucket."""
    drops: dict[SpecKey, Drops] = {}
    out = RowBuffer()
    rows = list(sequence_rows(batches))
    for key in sorted({k for k, _ in rows}):
        partials = (seq for k, seq in rows if k == key)
        found = drops.setdefault(key, Drops())
        for seq_no, sequence in enumerate(pack_partials(partials, specs[key], found)):
            yield from out.add("sequence", key, bucket, seq_no, sequence)
    yield from out.pending()
    yield from drop_rows(drops)
