"""The buckets' partial sequences packed together, per (domain, length)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa

from longmix.stages.logic.counts import count_drops
from longmix.stages.logic.pack import Drops, PackSpec, pack_partials
from longmix.stages.logic.rows import RowBuffer, SequenceSink, sequence_rows
from longmix.stages.logic.schemas import SpecKey
from longmix.stages.logic.stats import DEFAULT_THRESHOLDS
from longmix.stages.logic.tally import Tally


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
