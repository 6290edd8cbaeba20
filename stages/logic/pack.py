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

import bisect
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import pyarrow as pa

from stages.logic.stats import DEFAULT_THRESHOLDS, count_lengths
from stages.logic.tally import Tally

Mode = Literal["long", "short", "sft"]
Method = Literal["concat", "bfd"]
DEFAULT_WINDOW_TOKENS = 16 * 1024 * 1024

# Token ids travel as int32: Spark has no unsigned types and every vocabulary fits in 31
# bits; the MDS writer stores them as uint32. A task's counts travel as one `tally` row.
SEQUENCE_SCHEMA = pa.schema(
    [
        ("row_type", pa.large_string()),  # sequence | partial | tally | commit
        ("domain", pa.large_string()),
        ("seq_len", pa.int32()),
        ("bucket", pa.int32()),
        ("seq_no", pa.int64()),
        ("input_ids", pa.list_(pa.int32())),
        ("indices", pa.list_(pa.int32())),  # flattened (n, 2) [start, end) pairs
        ("mask", pa.list_(pa.int8())),
        ("tally", pa.large_string()),
        ("record", pa.large_string()),  # an MDS unit's commit record, JSON
    ]
)


@dataclass(frozen=True)
class PackSpec:
    mode: Mode
    length: int
    min_length: int = 0
    bos: int | None = None
    eos: int | None = None
    method: Method = "concat"  # short data: concatenate in order, or best-fit-decreasing
    window_tokens: int = DEFAULT_WINDOW_TOKENS  # bfd: tokens placed together

    @property
    def pad(self) -> int:
        return self.eos if self.eos is not None else 0


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
    padding: int = 0
    # Documents split across sequences, under each method (one is what happened, the other
    # what would have: the report shows both so the choice can be judged on the data).
    truncated: Counter = field(default_factory=Counter)

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


class BestFit:
    """Best-fit-decreasing packing ("Fewer Truncations Improve Language Modeling", Ding et
    al. 2024) over windows of about `spec.window_tokens`: documents longer than L are cut
    into L-token chunks, the pieces of a window are placed largest first into the sequence
    with the least room that still fits them, and each sequence's free room is padded (mask
    0 on padding). No document that fits in L is ever cut."""

    def __init__(self, spec: PackSpec, drops: Drops):
        self.spec = spec
        self.drops = drops
        self.pieces: list[Piece] = []
        self.held = 0

    def add(self, piece: Piece) -> Iterator[Sequence]:
        length = self.spec.length
        for start in range(0, len(piece.ids), length):
            window = slice(start, start + length)
            ids = piece.ids[window]
            mask = np.ones(len(ids), np.int8) if piece.mask is None else piece.mask[window]
            self.pieces.append(Piece(ids, mask))
        self.held += len(piece.ids)
        if self.held >= self.spec.window_tokens:
            yield from self.close()

    def close(self) -> Iterator[Sequence]:
        """Every piece held, placed and padded."""
        length = self.spec.length
        for members in best_fit_decreasing([len(p.ids) for p in self.pieces], length):
            parts = [self.pieces[i] for i in members]
            room = length - sum(len(p.ids) for p in parts)
            if room:
                parts.append(
                    Piece(np.full(room, self.spec.pad, np.uint32), np.zeros(room, np.int8))
                )
                self.drops.padding += room
            yield assemble(parts, with_mask=True)
        self.pieces, self.held = [], 0


def best_fit_decreasing(sizes: list[int], capacity: int) -> list[list[int]]:
    """Item indices per bin, bins in order of opening. Ties keep input order, so the result
    depends only on the sizes and their order."""
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, bin) sorted: the best fit is a bisect away
    for item in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        at = bisect.bisect_left(free, (sizes[item], -1))
        if at == len(free):
            bins.append([item])
            room, index = capacity - sizes[item], len(bins) - 1
        else:
            room, index = free.pop(at)
            bins[index].append(item)
            room -= sizes[item]
        if room:
            bisect.insort(free, (room, index))
    return bins


class GroupPacker:
    """Packs one ordered stream of documents (a bucket of one domain and length)."""

    def __init__(self, spec: PackSpec, drops: Drops | None = None):
        self.spec = spec
        self.drops = drops if drops is not None else Drops()
        self.filler: Concatenator | BestFit | None = None
        if spec.mode != "long":
            fits = spec.mode == "short" and spec.method == "bfd"
            self.filler = BestFit(spec, self.drops) if fits else Concatenator(spec, self.drops)
        self.position = 0  # where the stream would stand if concatenated

    def add(
        self, kind: str, ids: np.ndarray, mask: np.ndarray | None, raw: int
    ) -> Iterator[Sequence]:
        if self.filler is None and raw < self.spec.min_length:
            self.drops.add("below_min_length", raw, 1)
            return
        piece = wrap(ids, mask, self.spec, kind)
        self.drops.added_specials += len(piece.ids) - len(ids)
        if self.filler is None:
            yield from chunk_long(piece, self.spec, self.drops)
            return
        self.count_truncation(len(piece.ids))
        yield from self.filler.add(piece)

    def count_truncation(self, size: int) -> None:
        length = self.spec.length
        self.drops.truncated["concat"] += self.position + size > length
        self.drops.truncated["bfd"] += size > length
        self.position = (self.position + size) % length

    def close(self) -> Iterator[Sequence]:
        """Sequences still held at the end of the stream (best-fit windows)."""
        if isinstance(self.filler, BestFit):
            yield from self.filler.close()

    def partial(self) -> Sequence | None:
        """The partial sequence left at the end of the stream (concatenation only)."""
        return self.filler.partial() if isinstance(self.filler, Concatenator) else None


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


class SequenceSink(Protocol):
    """Where full sequences go instead of rows (`mds.UnitSink`: MDS units)."""

    def write(self, key: SpecKey, bucket: int, sequence: Sequence) -> None: ...

    def commit(self) -> list[dict]: ...


class RowBuffer:
    """Collects SEQUENCE_SCHEMA rows and emits bounded record batches; counts the sequences
    it emits into `tally`. With a sink, full sequences go to the sink, and `commit` rows
    carry what it committed."""

    def __init__(
        self,
        tally: Tally,
        thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS,
        sink: SequenceSink | None = None,
    ) -> None:
        self.rows: list[dict] = []
        self.tokens = 0
        self.tally = tally
        self.thresholds = thresholds
        self.sink = sink

    def add(
        self, row_type: str, key: SpecKey, bucket: int, seq_no: int, seq: Sequence
    ) -> Iterator[pa.RecordBatch]:
        if row_type == "sequence" and self.sink is not None:
            self.sink.write(key, bucket, seq)
        else:
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
        if row_type == "sequence":
            self.tally.add(
                packing_key(key),
                sequences=1,
                tokens_out=len(seq.input_ids),
                segments=len(seq.indices),
            )
            lengths = document_lengths(seq.input_ids, seq.indices, seq.mask)
            count_lengths(self.tally, "packed", "", key[0], lengths, self.thresholds)
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
                pa.nulls(len(rows), pa.large_string()),
            ],
            schema=SEQUENCE_SCHEMA,
        )

    def commit(self) -> Iterator[pa.RecordBatch]:
        """The sink's units committed, one `commit` row each."""
        if self.sink is None:
            return
        rows = [{"row_type": "commit", "record": json.dumps(r)} for r in self.sink.commit()]
        if rows:
            yield pa.RecordBatch.from_pylist(rows, schema=SEQUENCE_SCHEMA)

    def pending(self) -> Iterator[pa.RecordBatch]:
        if self.rows:
            yield self.flush()

    def close(self) -> Iterator[pa.RecordBatch]:
        """The rows still held, the sink's last units, then the tally row."""
        yield from self.pending()
        yield from self.commit()
        row = {"row_type": "tally", "tally": self.tally.to_json()}
        yield pa.RecordBatch.from_pylist([row], schema=SEQUENCE_SCHEMA)


def document_lengths(
    input_ids: np.ndarray, indices: np.ndarray, mask: np.ndarray | None
) -> np.ndarray:
    """The lengths of a sequence's documents as the model sees them: every segment but
    best-fit padding (untrained, one repeated id)."""
    indices = np.asarray(indices, dtype=np.int64)
    lengths = indices[:, 1] - indices[:, 0]
    if mask is None:
        return lengths
    starts = indices[:, 0]
    trained = np.add.reduceat(np.asarray(mask, np.int64), starts) > 0
    varied = (
        np.add.reduceat((input_ids != input_ids[starts].repeat(lengths)).astype(np.int64), starts)
        > 0
    )
    return lengths[trained | varied]


def packing_key(key: SpecKey) -> tuple[str, str, str]:
    return ("packing", key[0], str(key[1]))


def count_drops(tally: Tally, key: SpecKey, drops: Drops) -> None:
    """A packer's drops and added special tokens into the report's packing numbers."""
    truncated = {f"truncated_{method}": count for method, count in drops.truncated.items()}
    tally.add(
        packing_key(key),
        special_tokens_added=drops.added_specials,
        padding_tokens=drops.padding,
        **truncated,
    )
    for reason, tokens in drops.tokens.items():
        tally.add(
            ("dropped", key[0], str(key[1]), reason),
            tokens=tokens,
            documents=drops.documents[reason],
        )


def list_values(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    return column.values.to_numpy(zero_copy_only=False), column.offsets.to_numpy()


def batch_sequences(batch: pa.RecordBatch) -> Iterator[Sequence]:
    """The rows of a SEQUENCE_SCHEMA-like batch as Sequences (views into the batch)."""
    ids, id_offsets = list_values(batch.column("input_ids"))
    idx, idx_offsets = list_values(batch.column("indices"))
    masks = batch.column("mask")
    mask_values, mask_offsets = list_values(masks)
    mask_null = masks.is_null().to_numpy(zero_copy_only=False)
    for i in range(batch.num_rows):
        yield Sequence(
            ids[id_offsets[i] : id_offsets[i + 1]].view(np.uint32),
            idx[idx_offsets[i] : idx_offsets[i + 1]].reshape(-1, 2).astype(np.int64),
            None if mask_null[i] else mask_values[mask_offsets[i] : mask_offsets[i + 1]],
        )


def sequence_rows(batches: Iterable[pa.RecordBatch]) -> Iterator[tuple[SpecKey, Sequence]]:
    for batch in batches:
        keys = zip(
            batch.column("domain").to_pylist(), batch.column("seq_len").to_pylist(), strict=True
        )
        yield from zip(keys, batch_sequences(batch), strict=True)


def leftover_partition(
    batches: Iterable[pa.RecordBatch],
    specs: dict[SpecKey, PackSpec],
    bucket: int,
    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS,
    sink: SequenceSink | None = None,
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body over `partial` rows sorted by (domain, seq_len, bucket): they are
    packed together per (domain, length) into sequences numbered after every bucket."""
    out = RowBuffer(Tally(), thresholds, sink)
    rows = list(sequence_rows(batches))
    for key in sorted({k for k, _ in rows}):
        partials = (seq for k, seq in rows if k == key)
        drops = Drops()
        for seq_no, sequence in enumerate(pack_partials(partials, specs[key], drops)):
            yield from out.add("sequence", key, bucket, seq_no, sequence)
        count_drops(out.tally, key, drops)
    yield from out.close()
