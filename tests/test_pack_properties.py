"""Property-based tests of the packing logic (no Spark): every token accounted for, indices
cover each sequence exactly, every segment is a slice of its source document, SFT masks sit
exactly on the trained spans."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from longmix.stages.logic.pack import (
    Drops,
    GroupPacker,
    PackSpec,
    best_fit_decreasing,
    pack_partials,
)

BOS, EOS = 1, 2
BASE = 1_000_000


def document(k: int, length: int) -> np.ndarray:
    """Doc k's tokens are k * BASE + position: any slice names its document and offset."""
    return ((k + 1) * BASE + np.arange(length)).astype(np.uint32)


def wrapped(k, length, spec):
    head = [BOS] if spec.bos is not None else []
    tail = [EOS] if spec.eos is not None else []
    return np.concatenate(
        [np.array(head, np.uint32), document(k, length), np.array(tail, np.uint32)]
    )


buckets_strategy = st.lists(
    st.lists(st.integers(1, 300), min_size=0, max_size=12), min_size=1, max_size=4
)
spec_strategy = st.builds(
    PackSpec,
    mode=st.sampled_from(["long", "short", "sft"]),
    length=st.integers(4, 96),
    min_length=st.integers(0, 120),
    bos=st.sampled_from([BOS, None]),
    eos=st.sampled_from([EOS, None]),
    method=st.sampled_from(["concat", "bfd"]),
    window_tokens=st.integers(1, 400),
)


def pack_documents(documents, spec, drops):
    """One bucket, as the sequences pass packs it: its sequences and its partial one."""
    packer = GroupPacker(spec, drops)
    sequences = [seq for document in documents for seq in packer.add(*document)]
    return sequences + list(packer.close()), packer.partial()


def run(buckets, spec, masks=None):
    """Pack several buckets, then their partial sequences, as the Spark stage does."""
    drops = Drops()
    sequences, partials, k = [], [], 0
    for lengths in buckets:
        docs = []
        for length in lengths:
            mask = None if masks is None else masks(k, length)
            docs.append(("chat" if mask is not None else "text", document(k, length), mask, length))
            k += 1
        full, partial = pack_documents(docs, spec, drops)
        sequences += full
        if partial is not None:
            partials.append(partial)
    sequences += list(pack_partials(partials, spec, drops)) if spec.mode != "long" else []
    return sequences, drops


def check_indices(sequence, length):
    assert len(sequence.input_ids) == length
    starts, ends = sequence.indices[:, 0], sequence.indices[:, 1]
    assert starts[0] == 0 and ends[-1] == length
    assert np.all(starts < ends) and np.all(starts[1:] == ends[:-1])


@settings(max_examples=300, deadline=None)
@given(buckets=buckets_strategy, spec=spec_strategy)
def test_tokens_accounted_indices_and_segments(buckets, spec):
    sequences, drops = run(buckets, spec)
    tokens_in = sum(sum(b) for b in buckets)
    tokens_out = sum(len(s.input_ids) for s in sequences)
    added = drops.added_specials + drops.padding
    assert tokens_in + added == tokens_out + sum(drops.tokens.values())
    if spec.mode != "long":
        assert drops.tokens["final_partial"] < spec.length
    for sequence in sequences:
        check_indices(sequence, spec.length)
        for start, end in sequence.indices:
            segment = sequence.input_ids[start:end]
            if sequence.mask is not None and not sequence.mask[start:end].any():
                assert uses_best_fit(spec) and np.all(segment == spec.pad)  # padding
                continue
            body = segment[segment >= BASE]
            if not len(body):  # a cut right after BOS or right before EOS
                assert len(segment) == 1 and int(segment[0]) in (BOS, EOS)
                continue
            k = int(body[0]) // BASE - 1
            assert contains(wrapped(k, lengths_of(buckets)[k], spec), segment)
        if spec.mode == "long":
            assert len(sequence.indices) == 1


def uses_best_fit(spec: PackSpec) -> bool:
    return spec.mode == "short" and spec.method == "bfd"


def lengths_of(buckets):
    return [n for bucket in buckets for n in bucket]


def contains(haystack: np.ndarray, needle: np.ndarray) -> bool:
    for offset in np.flatnonzero(haystack == needle[0]):
        if np.array_equal(haystack[offset : offset + len(needle)], needle):
            return True
    return False


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.integers(1, 300), max_size=30), length=st.integers(8, 64))
def test_short_data_carries_the_cut_document_into_the_next_sequence(lengths, length):
    spec = PackSpec("short", length, bos=BOS, eos=EOS)
    sequences, drops = run([lengths], spec)
    stream = np.concatenate([s.input_ids for s in sequences] + [np.array([], np.uint32)])
    documents = np.concatenate(
        [wrapped(k, n, spec) for k, n in enumerate(lengths)] + [np.array([], np.uint32)]
    )
    # Nothing is skipped or reordered: the sequences are the documents' stream, cut every L
    # tokens, and only the last partial sequence is lost.
    assert np.array_equal(stream, documents[: len(stream)])
    assert drops.tokens["final_partial"] == len(documents) - len(stream) < length


@settings(max_examples=200, deadline=None)
@given(buckets=buckets_strategy, length=st.integers(8, 64), data=st.data())
def test_sft_masks_sit_exactly_on_trained_spans(buckets, length, data):
    spec = PackSpec("sft", length)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    masks: dict[int, np.ndarray] = {}

    def mask_for(k, n):
        masks[k] = (rng.random(n) < 0.5).astype(np.int8)
        return masks[k]

    sequences, drops = run(buckets, spec, masks=mask_for)
    for sequence in sequences:
        check_indices(sequence, length)
        for start, end in sequence.indices:
            segment = sequence.input_ids[start:end]
            k, offset = int(segment[0]) // BASE - 1, int(segment[0]) % BASE
            assert np.array_equal(
                segment, document(k, len(masks[k]))[offset : offset + len(segment)]
            )
            assert np.array_equal(
                sequence.mask[start:end], masks[k][offset : offset + len(segment)]
            )
        assert drops.added_specials == 0


def containers(sequences, partials=()):
    """Document k -> indices of the sequences (then partials) holding a piece of it."""
    found: dict[int, set[int]] = {}
    for n, sequence in enumerate([*sequences, *partials]):
        for start, end in sequence.indices:
            segment = sequence.input_ids[start:end]
            body = segment[segment >= BASE]
            if len(body):
                found.setdefault(int(body[0]) // BASE - 1, set()).add(n)
    return found


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 150), min_size=1, max_size=40),
    length=st.integers(8, 64),
    window=st.integers(1, 2000),
    method=st.sampled_from(["concat", "bfd"]),
)
def test_truncation_counts_match_what_each_method_splits(lengths, length, window, method):
    # Without BOS / EOS every piece of a document carries its identity (a lone EOS would not).
    spec = PackSpec("short", length, method=method, window_tokens=window)
    drops = Drops()
    docs = [("text", document(k, n), None, n) for k, n in enumerate(lengths)]
    sequences, partial = pack_documents(docs, spec, drops)
    split = {
        k
        for k, where in containers(sequences, [partial] if partial else []).items()
        if len(where) > 1
    }
    assert drops.truncated["bfd"] == sum(n > length for n in lengths)
    if method == "bfd":
        # Best fit never cuts a document that fits: it lies whole in one sequence.
        assert split == {k for k, n in enumerate(lengths) if n > length}
        assert partial is None
    else:
        assert drops.truncated["concat"] == len(split)


@settings(max_examples=300, deadline=None)
@given(sizes=st.lists(st.integers(1, 64), max_size=60), capacity=st.integers(64, 128))
def test_best_fit_decreasing_places_every_item_once_within_capacity(sizes, capacity):
    bins = best_fit_decreasing(sizes, capacity)
    assert sorted(i for b in bins for i in b) == list(range(len(sizes)))
    assert all(sum(sizes[i] for i in b) <= capacity for b in bins)
    # No two bins could be merged: best fit leaves at most one bin half empty or less.
    assert sum(sum(sizes[i] for i in b) <= capacity / 2 for b in bins) <= 1
