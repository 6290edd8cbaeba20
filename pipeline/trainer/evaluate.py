"""What the smoke model says about the long-context question, on data it did not train on:

1. loss by position: token-averaged loss binned by the predicted token's position inside its
   document, per directory. Long data with real long-range structure keeps the loss falling
   at late positions; packed short data never reaches them.
2. beyond the trained length: the same held-out long documents evaluated at the trained
   length L, at 2L and at 4L, with plain RoPE and with Self-Extend (`extension.py`).

Held out: samples read from the end of each directory (and documents rebuilt from consecutive
single-document chunks of long-data directories) none of whose samples the run trained on.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice, pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch

from longmix.pipeline.config import SmokeEvalConfig
from longmix.pipeline.shards import download, shard_reader
from longmix.pipeline.trainer.data import Output, Sample, Vocabulary
from longmix.pipeline.trainer.extension import SELF_EXTEND_ATTENTION, SelfExtend
from longmix.pipeline.trainer.masking import IGNORE, labels
from longmix.pipeline.trainer.model import IMPLEMENTATIONS, attention_inputs, logit_chunk
from longmix.stages.logic.errors import LongmixError
from longmix.stages.logic.storage import StorageOptions, is_s3, join

POSITION_EDGES = (0, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
FACTORS = (1, 2, 4)  # evaluation lengths, in trained lengths


def fingerprint(ids: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(ids, dtype=np.uint32).tobytes()).hexdigest()


@dataclass(frozen=True)
class HeldOut:
    """Samples per directory and long documents, none of which the run trained on."""

    samples: list[Sample]
    documents: list[np.ndarray]

    def ids(self) -> list[np.ndarray]:
        return [s.input_ids for s in self.samples] + self.documents


def directory_samples(root: Path, directory: str, reverse: bool) -> Iterator[Sample]:
    """A directory's samples in shard order (or reversed), read with streaming's readers."""
    folder = root / directory
    shards = json.loads((folder / "index.json").read_text())["shards"]
    with tempfile.TemporaryDirectory(prefix="longmix-eval-") as scratch:
        for shard in reversed(shards) if reverse else shards:
            reader, problem = shard_reader(folder, shard, Path(scratch))
            if problem:
                raise LongmixError(f"{directory}: {problem[0]}: {problem[1]}")
            order = range(shard["samples"])
            for k in reversed(order) if reverse else order:
                item = reader.get_item(k)
                mask = item.get("mask")
                yield Sample(
                    directory,
                    str(item["domain"]),
                    np.asarray(item["input_ids"]),
                    np.asarray(item["indices"]).reshape(-1, 2).astype(np.int64),
                    None if mask is None else np.asarray(mask),
                )


def local_root(output: Output, storage: StorageOptions, cache: Path) -> Path:
    if not is_s3(output.path):
        return Path(output.path)
    for name in output.directories:
        download(join(output.path, name), cache / name, storage)
    return cache


def held_out(
    output: Output,
    trained: list[Sample],
    settings: SmokeEvalConfig,
    length: int,
    storage: StorageOptions,
    cache: Path,
) -> HeldOut:
    """`settings.samples` samples from the end of every directory, and long documents of L
    to 4L tokens (until `settings.documents` reach 4L), none of whose samples the run
    trained on; nothing when the evaluation is off."""
    if not settings.enabled:
        return HeldOut([], [])
    seen = {fingerprint(s.input_ids) for s in trained}
    root = local_root(output, storage, cache)
    samples, long = [], []
    for name, numbers in output.directories.items():
        fresh = (s for s in directory_samples(root, name, reverse=True) if not_in(s, seen))
        samples += list(islice(fresh, settings.samples)) if numbers["sequences"] else []
    bos = output.tokenizer.get("bos_id")
    lengths = (length, FACTORS[-1] * length)
    for name, numbers in output.directories.items() if bos is not None else []:
        full = sum(len(d) >= lengths[1] for d in long)
        if full >= settings.documents:
            break
        if numbers["sequences"]:
            chunks = directory_samples(root, name, reverse=False)
            long += chained_documents(chunks, bos, seen, lengths, settings.documents - full)
    return HeldOut(samples, evaluated(long, length, settings.documents))


def evaluated(documents: list[np.ndarray], length: int, count: int) -> list[np.ndarray]:
    """The documents `extension` reads: the first `count` long enough for each length (the
    others would only widen the observed vocabulary, and slow training with it)."""
    chosen: list[int] = []
    for factor in FACTORS:
        fitting = [k for k, d in enumerate(documents) if len(d) >= factor * length][:count]
        chosen += [k for k in fitting if k not in chosen]
    return [documents[k] for k in sorted(chosen)]


def not_in(sample: Sample, seen: set[str]) -> bool:
    return fingerprint(sample.input_ids) not in seen


def chained_documents(
    samples: Iterator[Sample], bos: int, seen: set[str], lengths: tuple[int, int], wanted: int
) -> list[np.ndarray]:
    """Long documents rebuilt from consecutive chunks: a long-data sample is one chunk of one
    document (a single segment, no mask), and only a document's first chunk starts with BOS.
    A chunk the run trained on ends the document there."""
    found: list[np.ndarray] = []
    chain: list[np.ndarray] = []

    def close() -> None:
        tokens = np.concatenate(chain)[: lengths[1]] if chain else np.array([])
        if len(tokens) >= lengths[0]:
            found.append(tokens)
        chain.clear()

    for sample in samples:
        chunk = len(sample.indices) == 1 and sample.mask is None and not_in(sample, seen)
        if not chunk or int(sample.input_ids[0]) == bos:
            close()
        if chunk and (chain or int(sample.input_ids[0]) == bos):
            chain.append(sample.input_ids)
        if sum(len(c) for c in chain) >= lengths[1]:
            close()
            if sum(len(d) >= lengths[1] for d in found) >= wanted:
                return found
    close()
    return found


def evaluate(
    model: torch.nn.Module,
    held: HeldOut,
    trained: int,
    settings: SmokeEvalConfig,
    vocabulary: Vocabulary,
    attention: str,
    device: torch.device,
) -> dict[str, Any]:
    """Both diagnostics, and what they were computed on."""
    model.eval()
    extend = SelfExtend.for_lengths(
        trained, FACTORS[-1] * trained, settings.neighbor_window, settings.group_size
    )
    return {
        "held_out": {
            "samples": len(held.samples),
            "documents": len(held.documents),
            "rule": "read from the end of each directory (long documents: consecutive chunks "
            "from the start), leaving out every sample the run trained on",
        },
        "position_loss": position_loss(model, held.samples, vocabulary, attention, device),
        "extension": extension(
            model,
            held.documents,
            trained,
            extend,
            vocabulary,
            attention,
            device,
            settings.documents,
        ),
    }


def position_bins(length: int) -> list[tuple[int, int]]:
    edges = [e for e in POSITION_EDGES if e < length] + [length]
    return list(pairwise(edges))


@torch.no_grad()
def token_losses(
    model: torch.nn.Module, ids: torch.Tensor, targets: torch.Tensor, inputs: dict[str, Any]
) -> torch.Tensor:
    """Loss of predicting each token from the ones before it, at the predicted token's index
    (NaN where a token is not a target), the vocabulary projection chunk by chunk."""
    hidden = model.model(input_ids=ids[None], **inputs).last_hidden_state[0]
    shifted = torch.cat([targets[1:], targets.new_full((1,), IGNORE)])
    chunk = logit_chunk(model.config.vocab_size, ids.device)
    parts = [
        torch.nn.functional.cross_entropy(
            model.lm_head(hidden[k : k + chunk]).float(),
            shifted[k : k + chunk],
            ignore_index=IGNORE,
            reduction="none",
        )
        for k in range(0, len(shifted), chunk)
    ]
    losses = torch.cat(parts)
    losses[shifted == IGNORE] = math.nan
    return torch.cat([losses.new_full((1,), math.nan), losses[:-1]])


def document_positions(indices: np.ndarray, length: int) -> np.ndarray:
    starts = np.repeat(indices[:, 0], indices[:, 1] - indices[:, 0])
    return np.arange(length) - starts


def position_loss(
    model: torch.nn.Module,
    samples: list[Sample],
    vocabulary: Vocabulary,
    attention: str,
    device: torch.device,
) -> dict[str, list[list[float]]]:
    """Per directory: [bin start, bin end, tokens, mean loss] over the predicted tokens."""
    sums: dict[str, dict[tuple[int, int], list[float]]] = {}
    for sample in samples:
        ids = torch.from_numpy(vocabulary.encode(sample.input_ids)).to(device)
        targets = labels(ids, sample.indices, sample.mask)
        inputs = attention_inputs(sample.indices, sample.length, attention, device)
        losses = token_losses(model, ids, targets, inputs).cpu().numpy()
        positions = document_positions(sample.indices, sample.length)
        bins = sums.setdefault(sample.directory, {})
        for start, end in position_bins(sample.length):
            chosen = losses[(positions >= start) & (positions < end)]
            chosen = chosen[~np.isnan(chosen)]
            entry = bins.setdefault((start, end), [0, 0.0])
            entry[0] += len(chosen)
            entry[1] += float(chosen.sum())
    return {
        directory: [
            [start, end, count, total / count]
            for (start, end), (count, total) in sorted(bins.items())
            if count
        ]
        for directory, bins in sorted(sums.items())
    }


def extension(
    model: torch.nn.Module,
    documents: list[np.ndarray],
    trained: int,
    extend: SelfExtend,
    vocabulary: Vocabulary,
    attention: str,
    device: torch.device,
    count: int,
) -> dict[str, Any]:
    """Mean loss over the held-out long documents cut to L, 2L and 4L: plain RoPE (the
    run's own attention path) and Self-Extend; null where no document is that long."""
    lengths = [trained * f for f in FACTORS]
    result: dict[str, Any] = {
        "lengths": lengths,
        "rope": [],
        "self_extend": [],
        "group_size": extend.group,
        "neighbor_window": extend.window,
        "max_length": extend.max_length(trained),
        "documents": len(documents),
    }
    for length in lengths:
        usable = [d[:length] for d in documents if len(d) >= length][:count]
        result["rope"].append(mean_loss(model, usable, vocabulary, attention, device, None))
        result["self_extend"].append(
            mean_loss(model, usable, vocabulary, attention, device, extend)
        )
    return result


def mean_loss(
    model: torch.nn.Module,
    documents: list[np.ndarray],
    vocabulary: Vocabulary,
    attention: str,
    device: torch.device,
    extend: SelfExtend | None,
) -> float | None:
    if not documents:
        return None
    implementation = SELF_EXTEND_ATTENTION if extend else IMPLEMENTATIONS[attention]
    previous = model.config._attn_implementation
    model.set_attn_implementation(implementation)
    try:
        total, count = 0.0, 0
        for document in documents:
            indices = np.array([[0, len(document)]], np.int64)
            ids = torch.from_numpy(vocabulary.encode(document)).to(device)
            inputs = attention_inputs(
                indices, len(document), "documents" if extend else attention, device
            )
            if extend:
                inputs["self_extend"] = extend
            losses = token_losses(model, ids, labels(ids, indices), inputs)
            valid = losses[~torch.isnan(losses)]
            total, count = total + float(valid.sum()), count + len(valid)
        return total / count if count else None
    finally:
        model.set_attn_implementation(previous)
