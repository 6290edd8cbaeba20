"""Length histograms and the smoke run's loss curve as PNG images (matplotlib, no display
needed)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

FIGURE_SIZE = (8, 4.5)
DPI = 100
# 10 colours, then the same colours dashed, dotted, dash-dotted: 40 series told apart.
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D")


def load_in_background() -> None:
    """matplotlib imported on a thread (about 0.4 s), e.g. while Spark runs a job, so that a
    card's plots later do not wait for it."""

    def load() -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # the import is the work

    threading.Thread(target=load, name="longmix-load-matplotlib", daemon=True).start()


def series_style(index: int) -> dict[str, Any]:
    """Colour, line style and marker of the `index`-th series of a plot: no two alike."""
    turn = index // 10 % len(LINE_STYLES)
    return {"color": f"C{index % 10}", "linestyle": LINE_STYLES[turn], "marker": MARKERS[turn]}


def legend_outside(axes: Any, fontsize: int = 7) -> None:
    """The legend to the right of the data, never over it."""
    axes.legend(fontsize=fontsize, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def histogram_png(stats: dict[str, Any], stage: str, path: Path) -> Path:
    """Share of tokens per log2 length bin, one line per source/domain, for one stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=FIGURE_SIZE, dpi=DPI)
    for index, (name, histogram) in enumerate(sorted(stats["histograms"][stage].items())):
        total = sum(b["tokens"] for b in histogram.values()) or 1
        edges = sorted(int(k) for k in histogram)
        axes.plot(
            [2 ** max(k - 1, 0) for k in edges],
            [histogram[str(k)]["tokens"] / total for k in edges],
            label=name,
            **series_style(index),
        )
    axes.set_xscale("log", base=2)
    axes.set_xlabel("document length (tokens, log2 bins: [2^(k-1), 2^k))")
    axes.set_ylabel("share of tokens")
    axes.set_title(f"token lengths: {stage}")
    legend_outside(axes)
    return saved(figure, path)


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
    return saved(figure, path)


def evaluation_png(
    position_loss: dict[str, list[list[float]]], extension: dict[str, Any], path: Path
) -> Path:
    """Held-out loss against position inside documents, per directory; and against the
    evaluation length, plain RoPE and Self-Extend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_position, by_length) = plt.subplots(1, 2, figsize=FIGURE_SIZE, dpi=DPI)
    for index, (directory, bins) in enumerate(sorted(position_loss.items())):
        by_position.plot(
            [b[1] for b in bins], [b[3] for b in bins], label=directory, **series_style(index)
        )
    by_position.set_xscale("log", base=2)
    by_position.set_xlabel("position in document (bin end, tokens)")
    by_position.set_ylabel("held-out loss")
    by_position.set_title("loss by position")
    by_position.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    methods = (("rope", "RoPE"), ("self_extend", "Self-Extend"))
    for index, (method, label) in enumerate(methods):
        points = [
            (n, v)
            for n, v in zip(extension["lengths"], extension[method], strict=False)
            if v is not None
        ]
        by_length.plot(
            [n for n, _ in points], [v for _, v in points], label=label, **series_style(index)
        )
    by_length.set_xscale("log", base=2)
    by_length.set_xlabel("evaluation length (tokens)")
    by_length.set_title("beyond the trained length")
    by_length.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    return saved(figure, path)


def saved(figure: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
