"""Self-Extend: equal to plain attention where it must be, the paper's relative positions, no
attention across documents; loss by position counts every evaluated token once."""

import numpy as np
import pytest
import torch

from longmix.pipeline.trainer.data import Sample, Vocabulary
from longmix.pipeline.trainer.evaluate import (
    chained_documents,
    fingerprint,
    position_bins,
    position_loss,
)
from longmix.pipeline.trainer.extension import (
    SELF_EXTEND_ATTENTION,
    SelfExtend,
    additive,
    partial_attention,
    relative_positions,
)
from longmix.pipeline.trainer.masking import IGNORE, labels
from longmix.pipeline.trainer.model import ModelShape, attention_inputs, build_model

INDICES = np.array([[0, 37], [37, 128]], np.int64)


@pytest.fixture(scope="module")
def model():
    shape = ModelShape(97, 32, 2, 4, 2, 64, 1e4, 512)
    return build_model(shape, "documents", seed=0).eval()


def logits(model, ids: torch.Tensor, extend: SelfExtend | None) -> torch.Tensor:
    inputs = attention_inputs(INDICES, len(ids), "documents", torch.device("cpu"))
    previous = model.config._attn_implementation
    if extend is not None:
        model.set_attn_implementation(SELF_EXTEND_ATTENTION)
        inputs["self_extend"] = extend
    try:
        with torch.no_grad():
            return model(input_ids=ids[None], **inputs).logits[0]
    finally:
        model.set_attn_implementation(previous)


def test_group_one_or_a_window_past_the_sequence_is_plain_attention(model):
    ids = torch.randint(0, 97, (128,), generator=torch.Generator().manual_seed(1))
    plain = logits(model, ids, None)
    for extend in (SelfExtend(group=1, window=8), SelfExtend(group=4, window=128)):
        torch.testing.assert_close(logits(model, ids, extend), plain, atol=1e-5, rtol=0)


def test_grouping_changes_attention_past_the_window(model):
    ids = torch.randint(0, 97, (128,), generator=torch.Generator().manual_seed(2))
    grouped = logits(model, ids, SelfExtend(group=4, window=8))
    assert not torch.allclose(grouped, logits(model, ids, None), atol=1e-3)


def test_relative_positions_are_the_papers_figure_3():
    """Sequence 10, pretrained length 7, w_n 4, G 2: no relative position reaches 7."""
    extend = SelfExtend(group=2, window=4)
    expected = [
        [0],
        [1, 0],
        [2, 1, 0],
        [3, 2, 1, 0],
        [4, 3, 2, 1, 0],
        [4, 4, 3, 2, 1, 0],
        [5, 5, 4, 3, 2, 1, 0],
        [5, 5, 4, 4, 3, 2, 1, 0],
        [6, 6, 5, 5, 4, 3, 2, 1, 0],
        [6, 6, 5, 5, 4, 4, 3, 2, 1, 0],
    ]
    matrix = relative_positions(10, extend)
    assert [matrix[i, : i + 1].tolist() for i in range(10)] == expected
    assert extend.max_length(7) == 10
    assert int(matrix.tril().max()) == 6


@pytest.mark.parametrize("extend", [None, SelfExtend(group=3, window=8)])
def test_no_query_attends_across_the_document_boundary(model, extend):
    ids = torch.randint(0, 97, (128,), generator=torch.Generator().manual_seed(3))
    changed = ids.clone()
    changed[:37] = (changed[:37] + 1) % 97  # only the first document differs
    first, second = logits(model, ids, extend), logits(model, changed, extend)
    torch.testing.assert_close(first[37:], second[37:], atol=1e-5, rtol=0)
    assert not torch.allclose(first[:37], second[:37])


def test_position_bins_count_every_evaluated_token_once(model):
    rng = np.random.default_rng(0)
    layouts = [np.array([[0, 300]]), np.array([[0, 100], [100, 300]])]
    samples = [
        Sample("a", "a", rng.integers(0, 97, 300).astype(np.uint32), indices, None)
        for indices in layouts
    ]
    bins = position_loss(model, samples, Vocabulary(None, 97), "documents", torch.device("cpu"))
    targets = sum(
        int((labels(torch.from_numpy(s.input_ids.astype(np.int64)), s.indices) != IGNORE).sum())
        for s in samples
    )
    assert [row[:2] for row in bins["a"]] == [[0, 256], [256, 300]]
    assert sum(row[2] for row in bins["a"]) == targets == 299 + 99 + 199
    assert bins["a"][1][2] == 44  # positions 256..299 exist only in the single document
    assert all(np.isfinite(row[3]) for row in bins["a"])
    assert position_bins(5000) == [(0, 256), (256, 1024), (1024, 4096), (4096, 5000)]


def test_long_documents_are_rebuilt_from_consecutive_chunks_not_trained_on():
    bos = 1

    def chunk(first: int) -> Sample:
        ids = np.full(8, 5, np.uint32)
        ids[0] = first
        return Sample("d", "d", ids + 0, np.array([[0, 8]]), None)

    trained = chunk(7)
    trained.input_ids[1] = 9
    stream = [chunk(bos), chunk(2), chunk(3), chunk(bos), trained, chunk(4), chunk(bos), chunk(2)]
    found = chained_documents(iter(stream), bos, {fingerprint(trained.input_ids)}, (8, 24), 5)
    assert [len(d) for d in found] == [24, 8, 16]


def test_the_flash_and_explicit_partial_attentions_agree_rows_without_keys_included():
    """The explicit path is what a GPU runs; both report -inf where a query has no key."""
    generator = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(1, 4, 24, 16, generator=generator) for _ in range(3))
    allowed = torch.ones(24, 24, dtype=torch.bool).tril(-3)  # rows 0-2 have no key
    flash = partial_attention(q, k, v, 0.25, additive(allowed), flash=True)
    explicit = partial_attention(q, k, v, 0.25, additive(allowed), flash=False)
    assert torch.isinf(flash[1][..., :3]).all() and torch.isinf(explicit[1][..., :3]).all()
    torch.testing.assert_close(flash[1][..., 3:], explicit[1][..., 3:], atol=1e-5, rtol=0)
    torch.testing.assert_close(flash[0][..., 3:, :], explicit[0][..., 3:, :], atol=1e-5, rtol=0)
