"""Smoke-trainer throughput with document masking against full causal attention, on the same
samples of a longmix output (same seed, same model), on CPU or a GPU.

    python benchmarks/bench_smoke.py OUTPUT [--attention documents full] [--steps 8]
        [--set smoke.model.hidden_size=512 ...]

Prints one line per attention path and, last, `masking_speedup=` (tokens/s of the first path
over the last) with the attention FLOPs ratio the packing allows.
"""

from __future__ import annotations

import argparse

from longmix.pipeline.config import smoke_config
from longmix.pipeline.trainer.train import smoke
from longmix.stages.logic.storage import StorageOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a longmix output (local or s3://)")
    parser.add_argument("--attention", nargs="+", default=["documents", "full"])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    speeds = {}
    for attention in args.attention:
        overrides = [*args.overrides, f"smoke.steps={args.steps}", f"smoke.attention={attention}"]
        settings = smoke_config(None, overrides, "bench_smoke")
        report = smoke(args.path, settings, StorageOptions(), progress=False).data
        speeds[attention] = report["tokens_per_second"]
        runtime = report["runtime"]
        print(
            f"attention={attention} tokens_per_s={speeds[attention]:.0f} "
            f"device={runtime['device']!r} dtype={runtime['dtype']} "
            f"model={runtime['layers']}x{runtime['hidden_size']} vocab={runtime['vocab_size']} "
            f"tokens={report['tokens']} loss_last={report['loss']['last']:.4f}"
        )
    first, last = args.attention[0], args.attention[-1]
    print(
        f"masking_speedup={speeds[first] / speeds[last]:.3f} ({first} over {last}) "
        f"attention_flops_ratio={report['attention']['ratio']:.3f}"
    )


if __name__ == "__main__":
    main()
