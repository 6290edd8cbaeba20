"""Document masking: a packed sequence through a Llama model gives each document the logits and
loss it gets alone; without the mask it does not; SFT masks and first tokens carry no loss;
the FlexAttention mask equals the dense one; the trainer's attention paths agree."""

import numpy as np
import pytest
import torch
from torch.nn.attention.flex_attention import create_block_mask, create_mask
from transformers import LlamaConfig, LlamaForCausalLM

from longmix.pipeline.trainer.balance import attended_pairs
from longmix.pipeline.trainer.masking import (
    IGNORE,
    allowed,
    dense_mask,
    document_ids,
    flex_mask_mod,
    labels,
    position_ids,
)
from longmix.pipeline.trainer.model import ModelShape, attention_inputs, build_model, loss_sum

LENGTHS = (5, 9, 1, 7, 10)
INDICES = np.array(
    [[sum(LENGTHS[:k]), sum(LENGTHS[: k + 1])] for k in range(len(LENGTHS))], np.uint32
)
LENGTH = sum(LENGTHS)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rope_theta=8e6,
    )
    return LlamaForCausalLM._from_config(config, attn_implementation="sdpa").eval()


def packed_run(model, ids, masked=True):
    documents = document_ids(INDICES, LENGTH)
    kwargs = {
        "attention_mask": dense_mask(documents),
        "position_ids": position_ids(INDICES, LENGTH)[None],
    }
    with torch.no_grad():
        return model(
            input_ids=ids[None], labels=labels(ids, INDICES)[None], **(kwargs if masked else {})
        )


def separate_runs(model, ids):
    logits, losses, count = [], 0.0, 0
    with torch.no_grad():
        for start, end in INDICES.astype(np.int64):
            document = ids[start:end]
            out = model(input_ids=document[None])
            logits.append(out.logits[0])
            if len(document) > 1:  # the first token is never a target
                loss = torch.nn.functional.cross_entropy(
                    out.logits[0, :-1], document[1:], reduction="sum"
                )
                losses, count = losses + loss, count + len(document) - 1
    return torch.cat(logits), losses / count


def test_packed_documents_match_documents_run_alone(model):
    ids = torch.randint(0, 97, (LENGTH,))
    packed = packed_run(model, ids)
    logits, loss = separate_runs(model, ids)
    assert torch.allclose(packed.logits[0], logits, atol=1e-5)
    assert abs(packed.loss.item() - loss.item()) < 1e-5  # token-averaged over the step


def test_without_the_mask_the_documents_see_each_other(model):
    ids = torch.randint(0, 97, (LENGTH,))
    unmasked = packed_run(model, ids, masked=False)
    logits, loss = separate_runs(model, ids)
    assert not torch.allclose(unmasked.logits[0], logits, atol=1e-5)
    assert abs(unmasked.loss.item() - loss.item()) > 1e-4


def test_labels_skip_first_tokens_and_untrained_sft_tokens():
    ids = torch.arange(LENGTH)
    mask = np.ones(LENGTH, np.uint8)
    mask[6:10] = 0
    out = labels(ids, INDICES, mask)
    starts = INDICES[:, 0].astype(np.int64)
    assert (out[starts] == IGNORE).all()
    assert (out[6:10] == IGNORE).all()
    trained = [i for i in range(LENGTH) if i not in set(starts) and not 6 <= i < 10]
    assert out[trained].tolist() == trained
    assert position_ids(INDICES, LENGTH)[starts].tolist() == [0] * len(LENGTHS)


def test_flex_attention_mask_equals_the_dense_mask():
    documents = document_ids(INDICES, LENGTH)
    mask_mod = flex_mask_mod(documents)
    dense = create_mask(mask_mod, 1, 1, LENGTH, LENGTH, device="cpu")
    assert torch.equal(dense[0, 0], allowed(documents))
    assert attended_pairs(INDICES) == int(allowed(documents).sum())
    assert attended_pairs(INDICES) < LENGTH * (LENGTH + 1) // 2


def test_flex_block_mask_skips_blocks_across_documents():
    """Four 64-token documents in 64-token blocks: only the 4 diagonal blocks are computed,
    against 10 for causal attention over the whole sequence."""
    indices = np.array([[0, 64], [64, 128], [128, 192], [192, 256]])
    mask_mod = flex_mask_mod(document_ids(indices, 256))
    block = create_block_mask(mask_mod, 1, 1, 256, 256, device="cpu", BLOCK_SIZE=64)
    computed = block.kv_num_blocks.sum() + block.full_kv_num_blocks.sum()
    assert int(computed) == 4


@pytest.mark.parametrize("attention", ["documents", "flex"])
def test_trainer_attention_paths_match_the_dense_mask(attention):
    """The per-document SDPA path (CPU training) and FlexAttention (GPU training; forward only
    on CPU, compiled by inductor) give the dense-mask logits, and the chunked loss equals
    transformers' own token-averaged loss."""
    shape = ModelShape(97, 32, 2, 4, 2, 64, 8e6, 64)
    ids = torch.randint(0, 97, (LENGTH,))
    targets = labels(ids, INDICES)
    cpu = torch.device("cpu")
    reference = build_model(shape, "dense", 0).eval()
    model = build_model(shape, attention, 0).eval()
    model.load_state_dict(reference.state_dict())
    with torch.no_grad():
        dense = reference(
            input_ids=ids[None],
            labels=targets[None],
            **attention_inputs(INDICES, LENGTH, "dense", cpu),
        )
        inputs = attention_inputs(INDICES, LENGTH, attention, cpu)
        logits = model(input_ids=ids[None], **inputs).logits
        total = loss_sum(model, ids, targets, inputs)
    assert torch.allclose(logits, dense.logits, atol=1e-5)
    trained = int((targets[1:] != IGNORE).sum())
    assert abs(total.item() / trained - dense.loss.item()) < 1e-5
