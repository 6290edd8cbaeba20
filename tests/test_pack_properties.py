"""Property-based tests of the packing logic (no Spark): every token accounted for, indices
cover each sequence exactly, every segment is a slice of its source document, SFT masks sit
exactly on the trained spans."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stages.logic.pack import Drops, PackSpec, pack_documents, pack_partials

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
)


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
    assert tokens_in + drops.added_specials == tokens_out + sum(drops.tokens.values())
    if spec.mode != "long":
        assert drops.tokens["final_partial"] < spec.length
    for sequence in sequences:
        check_indices(sequence, spec.length)
        for start, end in sequence.indices:
            segment = sequence.input_ids[start:end]
            body = segment[segment >= BASE]
            if not len(body):  # a cut right after BOS or right before EOS
                assert len(segment) == 1 and int(segment[0]) in (BOS, EOS)
                continue
            k = int(body[0]) // BASE - 1
            assert contains(wrapped(k, lengths_of(buckets)[k], spec), segment)
        if spec.mode == "long":
            assert len(sequence.indices) == 1


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
