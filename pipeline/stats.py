"""Length statistics (`_stats.json`), the paper's tables computed from them, and the same
statistics recomputed from any MDS dataset for `longmix stats`."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from longmix.pipeline.shards import download, shard_reader
from longmix.stages.logic.errors import LongmixError
from longmix.stages.logic.stats import (
    LONG_DOCUMENT_TOKENS,
    STAGES,
    TABLE14_THRESHOLDS,
    count_lengths,
    document_lengths,
)
from longmix.stages.logic.storage import StorageOptions, is_s3
from longmix.stages.logic.tally import Tally

STATS_FILE = "_stats.json"


def stats_section(tally: Tally, thresholds: tuple[int, ...], long: int) -> dict[str, Any]:
    """Histograms and threshold counts per stage and `source/domain` (`domain` after
    packing), as saved in `_stats.json`."""
    histograms: dict[str, dict] = {stage: {} for stage in STAGES}
    over: dict[str, dict] = {stage: {} for stage in STAGES}
    for (stage, source, domain, edge), numbers in tally.where("hist").items():
        histograms[stage].setdefault(label(source, domain), {})[edge] = numbers
    for (stage, source, domain, threshold), numbers in tally.where("over").items():
        over[stage].setdefault(label(source, domain), {})[threshold] = numbers
    return {
        "thresholds": [t for t in thresholds if t != long],
        "long_document_tokens": long,
        "histograms": histograms,
        "over": over,
    }


def label(source: str, domain: str) -> str:
    return f"{source}/{domain}" if source else domain


def totals(histogram: dict[str, dict[str, int]]) -> dict[str, int]:
    return {
        "documents": sum(b["documents"] for b in histogram.values()),
        "tokens": sum(b["tokens"] for b in histogram.values()),
    }


def long_tokens_table(stats: dict[str, Any], threshold: int) -> dict[str, dict[str, int]]:
    """Paper Table 3: tokens (and documents) in documents of at least `threshold` tokens, per
    source and domain, counted on documents after concatenation."""
    rows = {}
    for name, histogram in stats["histograms"]["document"].items():
        above = stats["over"]["document"].get(name, {}).get(str(threshold), {})
        rows[name] = {
            "tokens": above.get("tokens", 0),
            "documents": above.get("documents", 0),
            "all_tokens": totals(histogram)["tokens"],
        }
    return rows


def share_over_table(stats: dict[str, Any], thresholds: list[int]) -> dict[str, dict[str, float]]:
    """Paper Table 14: percentage of documents of at least each threshold, per domain, as the
    model sees them after packing and truncation."""
    rows = {}
    for domain, histogram in stats["histograms"]["packed"].items():
        documents = totals(histogram)["documents"] or 1
        above = stats["over"]["packed"].get(domain, {})
        rows[domain] = {
            str(t): round(100 * above.get(str(t), {}).get("documents", 0) / documents, 2)
            for t in thresholds
        }
    return rows


def mds_stats(root: Path, thresholds: tuple[int, ...], long: int) -> dict[str, Any]:
    """The `packed` statistics of an MDS dataset (a directory with index.json, or a folder of
    them), read sample by sample with streaming's shard readers."""
    tally = Tally()
    indexes = [root / "index.json"] if (root / "index.json").exists() else []
    indexes = indexes or sorted(root.glob("*/index.json"))
    for index in indexes:
        for shard in json.loads(index.read_text())["shards"]:
            name = f"{index.parent.name}/{shard.get('raw_data', {}).get('basename')}"
            try:
                count_shard(tally, index.parent, shard, (*thresholds, long))
            except LongmixError:
                raise
            except Exception as exc:  # a damaged shard: name it, no traceback
                raise LongmixError(
                    f"{name}: unreadable shard ({type(exc).__name__}: {exc})"
                ) from None
    return stats_section(tally, (*thresholds, long), long)


def count_shard(tally: Tally, folder: Path, shard: dict, thresholds: tuple[int, ...]) -> None:
    with tempfile.TemporaryDirectory(prefix="longmix-shard-") as scratch:
        reader, problem = shard_reader(folder, shard, Path(scratch))
        if problem:
            raise LongmixError(f"{folder.name}: {problem[0]}: {problem[1]}")
        for k in range(shard["samples"]):
            sample = reader.get_item(k)
            ids = np.asarray(sample["input_ids"])
            lengths = document_lengths(ids, sample["indices"], sample.get("mask"))
            count_lengths(tally, "packed", "", sample["domain"], lengths, thresholds)


def load_stats(
    path: str, from_shards: bool = False, storage: StorageOptions | None = None
) -> dict[str, Any]:
    """A longmix output's `_stats.json`, or the statistics of an MDS dataset's samples; an
    S3 path is downloaded to a temporary folder first."""
    if is_s3(path):
        with tempfile.TemporaryDirectory(prefix="longmix-stats-") as local:
            download(path, Path(local), storage or StorageOptions())
            return load_stats(local, from_shards)
    root = Path(path)
    saved = json.loads((root / STATS_FILE).read_text()) if (root / STATS_FILE).exists() else None
    if saved and not from_shards:
        return saved
    if (root / "index.json").exists() or list(root.glob("*/index.json")):
        thresholds = tuple(saved["thresholds"]) if saved else TABLE14_THRESHOLDS
        long = saved["long_document_tokens"] if saved else LONG_DOCUMENT_TOKENS
        return mds_stats(root, thresholds, long)
    raise LongmixError(f"{path}: neither a longmix output ({STATS_FILE}) nor an MDS dataset")


def paper_tables(stats: dict[str, Any]) -> dict[str, Any]:
    """Table 14 (after packing) and, where documents were counted, Table 3."""
    out: dict[str, Any] = {"share_over_after_packing": share_over_table(stats, stats["thresholds"])}
    if stats["histograms"]["document"]:
        long = stats["long_document_tokens"]
        out["long_tokens_per_source"] = long_tokens_table(stats, long)
    return out
