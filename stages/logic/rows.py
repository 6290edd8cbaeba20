"""Packed sequences as Arrow rows (SEQUENCE_SCHEMA) and back, in bounded batches."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from longmix.stages.logic.counts import packing_key
from longmix.stages.logic.pack import Sequence
from longmix.stages.logic.schemas import SEQUENCE_SCHEMA, SpecKey
from longmix.stages.logic.stats import DEFAULT_THRESHOLDS, count_lengths, document_lengths
from longmix.stages.logic.tally import Tally

BATCH_TOKENS = 4 * 1024 * 1024
BATCH_RECORDS = 8192


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
    it emits into `tally` (none: sequences read back, counted when they were packed). With a
    sink, full sequences go to the sink, and `commit` rows carry what it committed."""

    def __init__(
        self,
        tally: Tally | None,
        thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS,
        sink: SequenceSink | None = None,
    ) -> None:
        self.rows: list[dict] = []
        self.records: list[dict] = []
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
        if row_type == "sequence" and self.tally is not None:
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
                *[pa.nulls(len(rows), f.type) for f in SEQUENCE_SCHEMA][8:],
            ],
            schema=SEQUENCE_SCHEMA,
        )

    def add_records(self, document: dict[str, Any], tokens: list[int]) -> Iterator[pa.RecordBatch]:
        """`hash` rows for a packed document's records, with the tokens each contributed."""
        members = zip(document["member_records"], tokens, strict=True)
        self.records += [
            {
                "row_type": "hash",
                "source": document["source"],
                "id": record_id,
                "group": document["group"],
                "hash": digest,
                "bytes": size,
                "tokens": int(count),
            }
            for (record_id, digest, size), count in members
        ]
        if len(self.records) >= BATCH_RECORDS:
            yield self.flush_records()

    def flush_records(self) -> pa.RecordBatch:
        rows, self.records = self.records, []
        return pa.RecordBatch.from_pylist(rows, schema=SEQUENCE_SCHEMA)

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
        if self.records:
            yield self.flush_records()

    def close(self) -> Iterator[pa.RecordBatch]:
        """The rows still held, the sink's last units, then the tally row."""
        yield from self.pending()
        yield from self.commit()
        if self.tally is not None:
            row = {"row_type": "tally", "tally": self.tally.to_json()}
            yield pa.RecordBatch.from_pylist([row], schema=SEQUENCE_SCHEMA)


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
