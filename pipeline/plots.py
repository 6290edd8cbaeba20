"""Length histograms and the smoke run's loss curve as PNG images (matplotlib, no display
needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

FIGURE_SIZE = (8, 4.5)
DPI = 100


def histogram_png(stats: dict[str, Any], stage: str, path: Path) -> Path:
    """Share of tokens per log2 length bin, one line per source/domain, for one stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=FIGURE_SIZE, dpi=DPI)
    for name, histogram in sorted(stats["histograms"][stage].items()):
        total = sum(b["tokens"] for b in histogram.values()) or 1
        edges = sorted(int(k) for k in histogram)
        axes.plot(
            [2 ** max(k - 1, 0) for k in edges],
            [histogram[str(k)]["tokens"] / total for k in edges],
            marker="o",
            label=name,
        )
    axes.set_xscale("log", base=2)
    axes.set_xlabel("document length (tokens, log2 bins: [2^(k-1), 2^k))")
    axes.set_ylabel("share of tokens")
    axes.set_title(f"token lengths: {stage}")
    axes.legend(fontsize=7, loc="best")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def loss_png(history: list[dict[str, Any]], path: Path) -> Path:
    """The smoke run's loss per optimizer step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=FIGURE_SIZE, dpi=DPI)
    steps = range(1, len(history) + 1)
    axes.plot(steps, [r["loss"] for r in history], marker="o")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("token-averaged loss")
    axes.set_title("longmix smoke: training loss")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
