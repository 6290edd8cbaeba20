"""`longmix stats PATH`: the paper's length tables and histograms of a longmix output (its
`_stats.json`) or of any MDS dataset (read sample by sample), optionally beside another."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pipeline.errors import LongmixError
from pipeline.plots import histogram_png
from pipeline.stats import STATS_FILE, long_tokens_table, mds_stats, share_over_table
from pipeline.validate import download
from stages.logic.storage import StorageOptions, is_s3

TABLE14 = (4096, 8192, 16384, 32768)
LONG = 65536


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
        thresholds = tuple(saved["thresholds"]) if saved else TABLE14
        return mds_stats(root, thresholds, saved["long_document_tokens"] if saved else LONG)
    raise LongmixError(f"{path}: neither a longmix output ({STATS_FILE}) nor an MDS dataset")


def source_stats(config_path: str, overrides: list[str], master: str | None) -> dict[str, Any]:
    """Statistics of raw sources: the config's read, concatenation, tokenization and packing
    run through Spark into a temporary folder, nothing else written."""
    from pipeline.config import load_config
    from pipeline.main import prepare

    with tempfile.TemporaryDirectory(prefix="longmix-stats-") as scratch:
        settings = [*overrides, f"run.output={scratch}", "run.until=sequences"]
        prepare(load_config(config_path, settings), master)
        return json.loads((Path(scratch) / STATS_FILE).read_text())


def name_of(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1] or path


def tables(stats: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"share_over_after_packing": share_over_table(stats, stats["thresholds"])}
    if stats["histograms"]["document"]:
        long = stats["long_document_tokens"]
        out["long_tokens_per_source"] = long_tokens_table(stats, long)
    return out


def long_tokens_view(rows: dict[str, dict[str, int]], name: str, long: int) -> Table:
    table = Table(title=f"{name}: tokens in documents of at least {long:,} tokens (paper Table 3)")
    for column in ("source/domain", "long tokens", "long documents", "share of tokens"):
        table.add_column(column, justify="left" if column == "source/domain" else "right")
    for name, n in sorted(rows.items()):
        share = n["tokens"] / n["all_tokens"] if n["all_tokens"] else 0
        table.add_row(name, f"{n['tokens']:,}", f"{n['documents']:,}", f"{share:.1%}")
    return table


def share_over_view(named: dict[str, dict[str, dict[str, float]]]) -> Table:
    """Table 14 for one dataset, or side by side for two."""
    table = Table(title="% of documents of at least N tokens after packing (paper Table 14)")
    table.add_column("domain")
    thresholds = sorted({t for rows in named.values() for r in rows.values() for t in r}, key=int)
    for name in named:
        for t in thresholds:
            suffix = f" ({name})" if len(named) > 1 else ""
            table.add_column(f"{int(t) // 1024}K{suffix}", justify="right")
    domains = sorted({d for rows in named.values() for d in rows})
    for domain in domains:
        cells = [
            f"{rows[domain][t]:.1f}" if domain in rows else "-"
            for rows in named.values()
            for t in thresholds
        ]
        table.add_row(domain, *cells)
    return table


def run_stats(
    path: str | None,
    compare: str | None,
    plots: str | None,
    as_json: bool,
    from_shards: bool = False,
    config: str | None = None,
    overrides: list[str] | None = None,
    master: str | None = None,
) -> int:
    console = Console(stderr=not as_json)
    if (path is None) == (config is None):
        raise LongmixError("give an output or dataset PATH, or --config CONFIG for raw sources")
    if config:
        named = {Path(config).stem: source_stats(config, overrides or [], master)}
    else:
        with console.status(f"reading {path}"):
            named = {name_of(path): load_stats(path, from_shards)}
    if compare:
        named[name_of(compare)] = load_stats(compare, from_shards)
    views = {name: tables(stats) for name, stats in named.items()}
    if plots:
        for name, stats in named.items():
            for stage, histograms in stats["histograms"].items():
                if histograms:
                    histogram_png(stats, stage, Path(plots) / f"{name}-{stage}.png")
    if as_json:
        print(json.dumps({"tables": views, "stats": named}, indent=1, sort_keys=True))
        return 0
    for name, view in views.items():
        if "long_tokens_per_source" in view:
            long = named[name]["long_document_tokens"]
            console.print(long_tokens_view(view["long_tokens_per_source"], name, long))
    console.print(share_over_view({n: v["share_over_after_packing"] for n, v in views.items()}))
    if plots:
        console.print(f"histograms written to {plots}")
    return 0
