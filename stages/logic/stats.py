"""Token-length statistics: log2 histograms with exact counts and token sums, and counts at
or above length thresholds, kept in the tasks' tallies (no document ever reaches the driver).

Bin k holds lengths in [2^(k-1), 2^k) (bin 0: empty documents), so a power-of-two threshold
is a bin edge; thresholds are also counted exactly on their own, whatever their value.
Stages: `read` (a record as read; a Stack file's tokens are those that start inside it in its
repository's encoding), `document` (after concatenation) and `packed` (a document as the
model sees it: one `[start, end)` segment of a packed sequence, BOS / EOS included).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from longmix.stages.logic.tally import Tally

STAGES = ("read", "document", "packed")
# The paper's Table 14 thresholds and its Table 3 "long document" threshold (tokens).
TABLE14_THRESHOLDS = (4096, 8192, 16384, 32768)
LONG_DOCUMENT_TOKENS = 65536
DEFAULT_THRESHOLDS = (*TABLE14_THRESHOLDS, LONG_DOCUMENT_TOKENS)


def log2_bins(lengths: np.ndarray) -> np.ndarray:
    """Bin k holds [2^(k-1), 2^k); bin 0 holds 0."""
    lengths = np.asarray(lengths, dtype=np.int64)
    bins = np.zeros(len(lengths), dtype=np.int64)
    positive = lengths > 0
    bins[positive] = np.floor(np.log2(lengths[positive])).astype(np.int64) + 1
    return bins


def count_lengths(
    tally: Tally,
    stage: str,
    source: str,
    domain: str,
    lengths: Iterable[int] | np.ndarray,
    thresholds: Iterable[int],
) -> None:
    """Add token lengths to the histogram of (stage, source, domain) and to the counts of
    documents and tokens at or above each threshold."""
    lengths = np.asarray(list(lengths) if not isinstance(lengths, np.ndarray) else lengths)
    if not len(lengths):
        return
    bins = log2_bins(lengths)
    for value in np.unique(bins):
        chosen = lengths[bins == value]
        key = ("hist", stage, source, domain, str(int(value)))
        tally.add(key, documents=len(chosen), tokens=int(chosen.sum()))
    for threshold in thresholds:
        above = lengths[lengths >= threshold]
        if len(above):
            key = ("over", stage, source, domain, str(threshold))
            tally.add(key, documents=len(above), tokens=int(above.sum()))


def member_token_counts(ids: np.ndarray, byte_lengths: np.ndarray, ends: list[int]) -> np.ndarray:
    """Tokens per member of a concatenated document: those whose first byte lies in the
    member's byte range (`ends`: each member's end offset, the joiner counting with the next).
    BPE tokens cover the bytes exactly, so every token goes to exactly one member."""
    starts = np.concatenate([[0], np.cumsum(byte_lengths[ids])[:-1]]) if len(ids) else ids
    members = np.searchsorted(np.asarray(ends), starts, side="right")
    return np.bincount(members, minlength=len(ends))[: len(ends)]


def segment_lengths(indices: np.ndarray) -> np.ndarray:
    """The lengths of a sequence's `[start, end)` segments, padding included."""
    indices = np.asarray(indices, dtype=np.int64)
    return indices[:, 1] - indices[:, 0]


def document_lengths(
    input_ids: np.ndarray, indices: np.ndarray, mask: np.ndarray | None
) -> np.ndarray:
    """The lengths of a sequence's documents as the model sees them: every segment but
    best-fit padding (untrained, one repeated id)."""
    indices = np.asarray(indices, dtype=np.int64)
    lengths = segment_lengths(indices)
    if mask is None:
        return lengths
    starts = indices[:, 0]
    trained = np.add.reduceat(np.asarray(mask, np.int64), starts) > 0
    varied = (
        np.add.reduceat((input_ids != input_ids[starts].repeat(lengths)).astype(np.int64), starts)
        > 0
    )
    return lengths[trained | varied]
