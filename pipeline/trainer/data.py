"""What the smoke run reads: one streaming epoch over the output's directories with the
proportions of its `mix.yaml`, exactly as the ProLong trainer builds it (epoch size = steps x
devices x micro-batches, so streaming allots every directory its share of the run)."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from longmix.pipeline.mixfile import MIX_FILE
from longmix.pipeline.report import REPORT_FILE
from longmix.stages.logic.errors import LongmixError
from longmix.stages.logic.stats import segment_lengths
from longmix.stages.logic.storage import (
    StorageOptions,
    exists,
    is_s3,
    join,
    point_streaming_at,
    read_text,
)


@dataclass(frozen=True)
class Sample:
    """One packed sequence as the trainer sees it."""

    directory: str
    domain: str
    input_ids: np.ndarray
    indices: np.ndarray
    mask: np.ndarray | None

    @property
    def length(self) -> int:
        return len(self.input_ids)

    @property
    def squared_lengths(self) -> int:
        """ProLong's reordering key: the sum of squared document lengths."""
        return int((segment_lengths(self.indices) ** 2).sum())


@dataclass(frozen=True)
class Output:
    """A longmix output: where it is, its mix and the tokenizer it was made with."""

    path: str
    mix: dict[str, Any]
    tokenizer: dict[str, Any]

    @property
    def directories(self) -> dict[str, dict[str, Any]]:
        return self.mix["domains"]

    def directory_of(self, domain: str, length: int) -> str:
        for name, numbers in self.directories.items():
            if numbers["domain"] == domain and numbers["length"] == length:
                return name
        raise LongmixError(
            f"{self.path}: a sample of domain {domain!r} and length {length} belongs to no "
            f"directory of {MIX_FILE}"
        )


def open_output(path: str, storage: StorageOptions) -> Output:
    for name in (MIX_FILE, REPORT_FILE):
        if not exists(join(path, name), storage):
            raise LongmixError(f"{path}: no {name}; is this the output of `longmix prepare`?")
    mix = yaml.safe_load(read_text(join(path, MIX_FILE), storage))
    report = json.loads(read_text(join(path, REPORT_FILE), storage))
    return Output(path, mix, report["tokenizer"])


def read_epoch(
    output: Output, samples: int, seed: int, storage: StorageOptions, cache: Path
) -> list[Sample]:
    """`samples` samples from a seeded, shuffled streaming epoch of that size."""
    from streaming import Stream, StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    point_streaming_at(storage)
    clean_stale_shared_memory()
    streams = [
        stream_of(output.path, name, numbers["proportion"], cache)
        for name, numbers in output.directories.items()
        if numbers["sequences"] > 0
    ]
    try:
        dataset = StreamingDataset(
            streams=[Stream(**s) for s in streams],
            epoch_size=samples,
            shuffle=True,
            shuffle_seed=seed,
            batch_size=1,
        )
        return [to_sample(output, item) for item in dataset]
    except LongmixError:
        raise
    except Exception as exc:
        raise LongmixError(unreadable(output.path, exc)) from None


def stream_of(root: str, directory: str, proportion: float, cache: Path) -> dict[str, Any]:
    if is_s3(root):
        return {
            "remote": join(root, directory),
            "local": str(cache / directory),
            "proportion": proportion,
        }
    return {"local": str(Path(root) / directory), "proportion": proportion}


def to_sample(output: Output, item: dict[str, Any]) -> Sample:
    ids = np.asarray(item["input_ids"])
    directory = output.directory_of(str(item["domain"]), len(ids))
    mask = item.get("mask")
    return Sample(
        directory,
        str(item["domain"]),
        ids,
        np.asarray(item["indices"]).reshape(-1, 2),
        None if mask is None else np.asarray(mask),
    )


def unreadable(path: str, exc: Exception) -> str:
    """Name the shard streaming could not read, when the output is local."""
    from longmix.pipeline.shards import shard_problem

    detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    if not is_s3(path):
        root = Path(path)
        with tempfile.TemporaryDirectory(prefix="longmix-smoke-") as scratch:
            for index in sorted(root.glob("*/index.json")):
                for shard in json.loads(index.read_text())["shards"]:
                    problem = shard_problem(index.parent, shard, Path(scratch))
                    if problem:
                        return f"a shard cannot be read: {problem[1]} ({problem[0]})"
    return f"{path}: reading the shards failed: {detail}; `longmix validate {path}` says where"


@dataclass(frozen=True)
class Vocabulary:
    """Token ids mapped onto the model's embedding rows. `observed` keeps only the ids the
    run reads: a 128K-row softmax is most of a tiny model's CPU time, and validate already
    checks every id against the tokenizer."""

    ids: np.ndarray | None
    size: int

    @classmethod
    def of(
        cls, samples: list[Sample], kind: str, tokenizer_size: int, extra: list[np.ndarray] = ()
    ) -> Vocabulary:
        arrays = [s.input_ids for s in samples] + [a for a in extra if len(a)]
        highest = max(int(a.max()) for a in arrays)
        if highest >= tokenizer_size:
            raise LongmixError(
                f"token id {highest} is outside the tokenizer's {tokenizer_size} ids"
            )
        if kind == "tokenizer":
            return cls(None, tokenizer_size)
        ids = np.unique(np.concatenate(arrays))
        return cls(ids, len(ids))

    def encode(self, input_ids: np.ndarray) -> np.ndarray:
        if self.ids is None:
            return input_ids.astype(np.int64)
        return np.searchsorted(self.ids, input_ids).astype(np.int64)
