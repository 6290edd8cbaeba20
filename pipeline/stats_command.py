"""`longmix stats PATH`: the paper's length tables and histograms of a longmix output (its
`_stats.json`) or of any MDS dataset (read sample by sample), optionally beside another."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pipeline.errors import LongmixError
from pipeline.plots import histogram_png
from pipeline.stats import STATS_FILE, long_tokens_table, mds_stats, share_over_table
from stages.logic.stats import DEFAULT_THRESHOLDS

TABLE14 = [4096, 8192, 16384, 32768]
LONG = 65536


def load_stats(path: str) -> dict[str, Any]:
    root = Path(path)
    if (root / STATS_FILE).exists():
        return json.loads((root / STATS_FILE).read_text())
    if (root / "index.json").exists() or list(root.glob("*/index.json")):
        return mds_stats(root, DEFAULT_THRESHOLDS)
    raise LongmixError(f"{path}: neither a longmix output ({STATS_FILE}) nor an MDS dataset")


def tables(stats: dict[str, Any]) -> dict[str, Any]:
    thresholds = [t for t in TABLE14 if t in stats["thresholds"]]
    out: dict[str, Any] = {"share_over_after_packing": share_over_table(stats, thresholds)}
    if stats["histograms"]["document"]:
        out["long_tokens_per_source"] = long_tokens_table(stats, LONG)
    return out


def long_tokens_view(rows: dict[str, dict[str, int]], name: str) -> Table:
    table = Table(title=f"{name}: tokens in documents of at least {LONG:,} tokens (paper Table 3)")
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


def run_stats(path: str, compare: str | None, plots: str | None, as_json: bool) -> int:
    console = Console(stderr=not as_json)
    with console.status(f"reading {path}"):
        named = {Path(path).name or path: load_stats(path)}
        if compare:
            named[Path(compare).name or compare] = load_stats(compare)
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
            console.print(long_tokens_view(view["long_tokens_per_source"], name))
    console.print(share_over_view({n: v["share_over_after_packing"] for n, v in views.items()}))
    if plots:
        console.print(f"histograms written to {plots}")
    return 0
