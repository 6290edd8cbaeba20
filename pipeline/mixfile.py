"""`mix.yaml`: the output's directories with their proportions, for the ProLong trainer
(`dir@proportion`) and for `streaming.StreamingDataset` (`streams`), and what `validate`
checks the data against."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import yaml

from longmix.stages.logic.mix import MixTarget, SpecKey
from longmix.stages.logic.storage import (
    StorageOptions,
    is_s3,
    join,
    point_streaming_at,
    read_text,
    write_text,
)

MIX_FILE = "mix.yaml"


def mix_section(
    targets: dict[SpecKey, MixTarget],
    records: dict[tuple[str, int], dict[str, Any]],
    materialized: bool,
) -> dict[str, dict[str, Any]]:
    """Per directory: what was available, what the mix asks for, what was written, and the
    proportion of samples that gives the mix. Stored once, a directory's proportion is its
    share of the target sequences, so that streaming's epoch realizes the budget; stored
    as sampled, every sample is read once per epoch."""
    written: dict[str, dict[str, int]] = {}
    for (directory, _), record in records.items():
        numbers = written.setdefault(directory, {"sequences": 0, "tokens": 0})
        numbers["sequences"] += record["samples"]
        numbers["tokens"] += record["tokens"]
    wanted = {
        t.directory: written.get(t.directory, {}).get("sequences", 0) if materialized else t.target
        for t in targets.values()
    }
    total_samples = sum(wanted.values()) or 1
    total_tokens = sum(wanted[t.directory] * t.length for t in targets.values()) or 1
    target_tokens = sum(t.target * t.length for t in targets.values()) or 1
    section = {}
    for target in sorted(targets.values(), key=lambda t: t.directory):
        numbers = written.get(target.directory, {"sequences": 0, "tokens": 0})
        section[target.directory] = {
            "domain": target.domain,
            "length": target.length,
            "available_sequences": target.available,
            "sequences": numbers["sequences"],
            "tokens": numbers["tokens"],
            "repeat": round(target.repeat, 6),
            "target_token_fraction": round(target.target * target.length / target_tokens, 6),
            "token_fraction": round(wanted[target.directory] * target.length / total_tokens, 6),
            "proportion": round(wanted[target.directory] / total_samples, 6),
            "epoch_samples": wanted[target.directory],
        }
    return section


def write_mix_file(
    root: str,
    section: dict[str, dict[str, Any]],
    tolerance: float,
    materialized: bool,
    storage: StorageOptions,
) -> None:
    document = {
        "dirs": [f"{name}@{numbers['proportion']}" for name, numbers in section.items()],
        "streams": [
            {"local": name, "proportion": numbers["proportion"]}
            for name, numbers in section.items()
        ],
        "epoch_size": sum(numbers["epoch_samples"] for numbers in section.values()),
        "materialized": materialized,
        "tolerance": tolerance,
        "domains": section,
    }
    header = (
        "# Written by longmix. `dirs`: ProLong's trainer (dir@proportion); `streams`:\n"
        "# streaming.Stream(**s) with paths relative to this file's folder (nothing here names\n"
        "# where the output was written, so it can be moved), with\n"
        "# StreamingDataset(epoch_size=epoch_size); longmix.streaming_args(OUTPUT)\n"
        "# gives them resolved from wherever the output is now. Proportions\n"
        "# are shares of samples: an epoch of `epoch_size` samples gives each directory its\n"
        "# `epoch_samples` (its `repeat` times what it stores, unless `materialized`, where\n"
        "# every stored sample is read once). Token fractions are under `domains`.\n"
    )
    write_text(join(root, MIX_FILE), header + yaml.safe_dump(document, sort_keys=False), storage)


def streaming_args(output: str, storage: StorageOptions | None = None, cache: str | None = None):
    """`{"streams": [Stream, ...], "epoch_size": N}` for `StreamingDataset(**args,
    batch_size=...)`, resolved from wherever the output is now: a local output's directories
    as `local`; an S3 output's as `remote`, each with a `local` cache folder of its own under
    `cache` (default: a new temporary folder), so that readers in several processes never
    share one. Imports mosaicml-streaming (the `train` extra)."""
    from streaming import Stream

    storage = storage or StorageOptions()
    mix = yaml.safe_load(read_text(join(output, MIX_FILE), storage))
    if is_s3(output):
        point_streaming_at(storage)
        cache = cache or tempfile.mkdtemp(prefix="longmix-streams-")
    streams = []
    for stream in mix["streams"]:
        name = stream["local"]
        if is_s3(output):
            place = {"remote": join(output, name), "local": os.path.join(cache, name)}
        else:
            place = {"local": os.path.join(os.path.abspath(output), name)}
        streams.append(Stream(**place, proportion=stream["proportion"]))
    return {"streams": streams, "epoch_size": mix["epoch_size"]}
