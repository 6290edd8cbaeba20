"""The smoke model: a randomly initialised transformers Llama, and the four ways it can attend
over a packed sequence.

- `documents`: exact variable-length attention, one causal SDPA call per document (what
  flash-attention's varlen kernels do), registered as a transformers attention function;
  the portable CPU path, with cost proportional to the sum of squared document lengths.
- `flex`: FlexAttention with a document block mask (GPU; forward-only on CPU).
- `dense`: an additive (q, kv) mask through SDPA; exact anywhere, but quadratic memory.
- `full`: causal attention across the whole sequence, the baseline documents should beat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from transformers import AttentionInterface, LlamaConfig, LlamaForCausalLM

from longmix.pipeline.trainer.masking import (
    IGNORE,
    dense_mask,
    document_ids,
    flex_mask_mod,
    position_ids,
)

Attention = Literal["documents", "flex", "dense", "full"]
DOCUMENTS_ATTENTION = "longmix_documents"
IMPLEMENTATIONS: dict[str, str] = {
    "documents": DOCUMENTS_ATTENTION,
    "flex": "flex_attention",
    "dense": "sdpa",
    "full": "sdpa",
}


def documents_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    document_ends: list[int] | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Causal attention inside each document of a (1, heads, L, dim) packed sequence."""
    ends = document_ends or [query.shape[2]]
    outputs, start = [], 0
    for end in ends:
        outputs.append(
            torch.nn.functional.scaled_dot_product_attention(
                query[:, :, start:end],
                key[:, :, start:end],
                value[:, :, start:end],
                is_causal=True,
                scale=scaling,
                enable_gqa=True,
            )
        )
        start = end
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous(), None


AttentionInterface.register(DOCUMENTS_ATTENTION, documents_attention)


@dataclass(frozen=True)
class ModelShape:
    vocab_size: int
    hidden_size: int
    layers: int
    heads: int
    kv_heads: int
    intermediate_size: int
    rope_theta: float
    max_length: int


def build_model(shape: ModelShape, attention: Attention, seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=shape.vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=shape.max_length,
        rope_theta=shape.rope_theta,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM._from_config(config, attn_implementation=IMPLEMENTATIONS[attention])


def attention_inputs(
    indices: np.ndarray, length: int, attention: Attention, device: torch.device
) -> dict[str, Any]:
    """The forward keyword arguments that make `attention` honour document boundaries."""
    if attention == "full":
        return {}
    positions = position_ids(indices, length)[None].to(device)
    if attention == "documents":
        ends = np.asarray(indices, dtype=np.int64)[:, 1].tolist()
        return {"position_ids": positions, "document_ends": ends}
    documents = document_ids(indices, length).to(device)
    if attention == "dense":
        return {"position_ids": positions, "attention_mask": dense_mask(documents).to(device)}
    from torch.nn.attention.flex_attention import create_block_mask

    block_mask = create_block_mask(
        flex_mask_mod(documents), 1, None, length, length, device=str(device)
    )
    return {"position_ids": positions, "attention_mask": block_mask}


def loss_sum(
    model: LlamaForCausalLM,
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    inputs: dict[str, Any],
) -> torch.Tensor:
    """Summed next-token cross-entropy of one packed sequence. The vocabulary projection runs
    chunk by chunk under activation checkpointing: full logits of a 64K sequence over
    Llama-3's 128K ids would take 33 GB in float32."""
    chunk = logit_chunk(model.config.vocab_size, input_ids.device)
    hidden = model.model(input_ids=input_ids[None], **inputs).last_hidden_state[0]
    targets = torch.cat([labels[1:], labels.new_full((1,), IGNORE)])
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, len(targets), chunk):
        total = total + torch.utils.checkpoint.checkpoint(
            chunk_loss,
            model.lm_head,
            hidden[start : start + chunk],
            targets[start : start + chunk],
            use_reentrant=False,
        )
    return total


def logit_chunk(vocab_size: int, device: torch.device) -> int:
    """Tokens per vocabulary-projection chunk: 16 MB of float32 logits on CPU (larger blocks
    go to mmap and back on every call, which cost a third of the CPU time when measured),
    2 GB on a GPU, whose caching allocator keeps them."""
    budget = 2**31 if device.type == "cuda" else 2**24
    return max(64, budget // (4 * vocab_size))


def chunk_loss(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = head(hidden).float()
    return torch.nn.functional.cross_entropy(logits, targets, ignore_index=IGNORE, reduction="sum")
