"""Document masking for packed sequences, as ProLong trains on them: no token attends across
a document boundary, positions restart at each document, the first token of a document is
never predicted (label -100), and for SFT data only tokens with `mask` 1 are trained on.

Two attention paths from the same document ids: a dense additive mask that any attention
implementation takes (the portable, exact CPU path), and a FlexAttention `mask_mod` for a
block mask (GPU, where blocks fully outside a document are skipped).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

IGNORE = -100


def document_ids(indices: np.ndarray, length: int) -> torch.Tensor:
    """The document each token belongs to, from `[start, end)` pairs covering [0, length)."""
    indices = np.asarray(indices, dtype=np.int64)
    out = torch.empty(length, dtype=torch.long)
    for number, (start, end) in enumerate(indices):
        out[start:end] = number
    return out


def position_ids(indices: np.ndarray, length: int) -> torch.Tensor:
    """Positions restarting at 0 at every document."""
    indices = np.asarray(indices, dtype=np.int64)
    starts = torch.as_tensor(indices[:, 0])
    return torch.arange(length) - starts[document_ids(indices, length)]


def labels(
    input_ids: torch.Tensor, indices: np.ndarray, mask: np.ndarray | None = None
) -> torch.Tensor:
    """Targets for a causal LM that shifts labels itself: -100 on each document's first token
    (never predicted from the previous document) and, with an SFT `mask`, on untrained
    tokens."""
    out = input_ids.clone().long()
    out[torch.as_tensor(np.asarray(indices, dtype=np.int64)[:, 0])] = IGNORE
    if mask is not None:
        out[torch.from_numpy(np.asarray(mask) == 0)] = IGNORE
    return out


def allowed(documents: torch.Tensor) -> torch.Tensor:
    """(q, kv) boolean: same document and not in the future."""
    positions = torch.arange(len(documents))
    same = documents[:, None] == documents[None, :]
    return same & (positions[None, :] <= positions[:, None])


def dense_mask(documents: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The additive (1, 1, q, kv) mask eager and SDPA attention take: 0 where allowed."""
    out = torch.zeros(1, 1, len(documents), len(documents), dtype=dtype)
    out[0, 0][~allowed(documents)] = torch.finfo(dtype).min
    return out


def flex_mask_mod(documents: torch.Tensor) -> Callable:
    """FlexAttention mask_mod of the same rule, for `create_block_mask`."""

    def mask_mod(batch, head, q, kv):
        return (documents[q] == documents[kv]) & (kv <= q)

    return mask_mod
