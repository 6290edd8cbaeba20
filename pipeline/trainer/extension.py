"""Self-Extend ("LLM Maybe LongLM: Self-Extend LLM Context Window Without Tuning", Jin et al.
2024): attention past the trained length without training.

A query attends to keys within the neighbour window `w_n` with its normal relative
positions; to keys farther away with grouped positions: query position i // G + (w_n -
w_n // G), key position j // G. Both scores are computed and merged before the softmax, so
no relative position exceeds what training saw when the length is at most
(L - w_n) x G + w_n.

Transformers applies RoPE before it calls the attention function, so the grouped queries
and keys are the rotated ones rotated once more by the difference of positions (RoPE
rotations add). The merge before the softmax is computed exactly as a merge of partial
attentions by their log-sum-exp: per block of queries, the neighbours with normal positions
and the far keys with grouped ones, each through PyTorch's CPU flash kernel (explicit float32
scores on other devices), within each document (no attention across document boundaries).
Memory grows with the block and the length, not the length squared. A FlexAttention version
for the GPU is not built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.models.llama.modeling_llama import rotate_half

SELF_EXTEND_ATTENTION = "longmix_self_extend"
QUERY_BLOCK = 1024
SCORE_BUDGET = 2**28  # explicit scores (not on CPU) a block may hold: 1 GB of float32


@dataclass(frozen=True)
class SelfExtend:
    group: int  # G
    window: int  # w_n

    def max_length(self, trained: int) -> int:
        """The longest sequence whose relative positions all stay below `trained`."""
        return (trained - self.window) * self.group + self.window

    @classmethod
    def for_lengths(cls, trained: int, target: int, window: int | None, group: int | None):
        """The paper's defaults scaled to the smoke length: w_n = L / 4, and the smallest G
        that makes `target` fit."""
        window = window if window is not None else max(1, trained // 4)
        if group is None:
            group = max(1, -(-(target - window) // max(1, trained - window)))
        return cls(group, window)


def relative_positions(length: int, extend: SelfExtend) -> torch.Tensor:
    """(query, key) relative positions under Self-Extend (the paper's Figure 3)."""
    i = torch.arange(length)[:, None]
    j = torch.arange(length)[None, :]
    shift = extend.window - extend.window // extend.group
    grouped = i // extend.group - j // extend.group + shift
    return torch.where(i - j < extend.window, i - j, grouped)


def inverse_frequencies(module: torch.nn.Module) -> torch.Tensor:
    config = module.config
    dim = module.head_dim
    exponents = torch.arange(0, dim, 2, dtype=torch.float32) / dim
    return 1.0 / (config.rope_theta**exponents)


def rotate(x: torch.Tensor, offsets: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """RoPE-rotated (..., n, dim) vectors rotated further by `offsets` (n,) positions."""
    freqs = offsets[:, None].to(torch.float32) * inverse[None, :].to(x.device)
    angles = torch.cat((freqs, freqs), dim=-1)
    return x * angles.cos().to(x.dtype) + rotate_half(x) * angles.sin().to(x.dtype)


def self_extend_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    document_ends: list[int] | None = None,
    self_extend: SelfExtend | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Self-Extend attention inside each document of a (1, heads, L, dim) packed sequence
    whose positions restart at every document."""
    extend = self_extend or SelfExtend(1, query.shape[2])
    inverse = inverse_frequencies(module)
    repeat = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(repeat, dim=1), value.repeat_interleave(repeat, dim=1)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    outputs, start = [], 0
    for end in document_ends or [query.shape[2]]:
        q, k, v = (t[:, :, start:end].float() for t in (query, key, value))
        positions = torch.arange(end - start, device=query.device)
        shift = extend.window - extend.window // extend.group
        grouped = (
            rotate(q, positions // extend.group + shift - positions, inverse),
            rotate(k, positions // extend.group - positions, inverse),
        )
        block = query_block(query.device, query.shape[1], end - start)
        for first in range(0, end - start, block):
            last = min(end - start, first + block)
            parts = block_parts(first, last, extend.window)
            merged = merge(
                [
                    partial_attention(
                        (grouped[0] if far else q)[:, :, first:last],
                        (grouped[1] if far else k)[:, :, keys],
                        v[:, :, keys],
                        scale,
                        mask,
                    )
                    for far, keys, mask in parts
                ]
            )
            outputs.append(merged.to(query.dtype))
        start = end
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous(), None


def query_block(device: torch.device, heads: int, keys: int) -> int:
    """Queries per block: 1,024 on CPU, whose flash kernel holds no scores; elsewhere as many
    as keep the block's explicit scores within SCORE_BUDGET."""
    if device.type == "cpu":
        return QUERY_BLOCK
    return max(16, min(QUERY_BLOCK, SCORE_BUDGET // (heads * keys)))


def block_parts(
    first: int, last: int, window: int
) -> list[tuple[bool, slice, torch.Tensor | None]]:
    """The keys queries [first, last) attend to, in up to three parts: (grouped?, keys, an
    additive mask or None). Neighbours (0 <= i - j < w) with normal positions; keys no query
    of the block has within its window, all grouped and unmasked; the rest grouped where
    i - j >= w."""
    rows = torch.arange(first, last)[:, None]
    near = slice(max(0, first - window + 1), last)
    distance = rows - torch.arange(near.start, near.stop)[None, :]
    parts = [(False, near, additive((distance >= 0) & (distance < window)))]
    if near.start > 0:
        parts.append((True, slice(0, near.start), None))
    if last - window > near.start:
        edge = slice(near.start, last - window)
        distance = rows - torch.arange(edge.start, edge.stop)[None, :]
        parts.append((True, edge, additive(distance >= window)))
    return parts


def additive(allowed: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros(allowed.shape, dtype=torch.float32)
    return mask.masked_fill(~allowed, float("-inf"))[None, None]


def partial_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    mask: torch.Tensor | None,
    flash: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention over a subset of the keys, with its log-sum-exp (so that parts merge
    exactly): PyTorch's CPU flash kernel, or explicit scores on other devices."""
    mask = None if mask is None else mask.to(q.device)
    if q.device.type == "cpu" if flash is None else flash:
        output, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, attn_mask=mask, scale=scale
        )
    else:
        scores = (q @ k.transpose(-1, -2)) * scale + (0 if mask is None else mask)
        lse = scores.logsumexp(dim=-1)
        output = (scores - lse[..., None]).exp() @ v
    if mask is not None:  # the kernel reports 0, not -inf, for a query without keys
        lse = lse.masked_fill(~torch.isfinite(mask).any(dim=-1), float("-inf"))
    return output, lse


def merge(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """One softmax over the union of the parts' keys, from each part's output and
    log-sum-exp (a part where a query has no allowed key weighs nothing for it)."""
    total = torch.logsumexp(torch.stack([lse for _, lse in parts]), dim=0)
    out = torch.zeros_like(parts[0][0])
    for output, lse in parts:
        weight = torch.exp(lse - total)[..., None]
        out = out + torch.where(weight > 0, output, 0.0) * weight
    return out


AttentionInterface.register(SELF_EXTEND_ATTENTION, self_extend_attention)
