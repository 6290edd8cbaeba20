"""The packing pass on a cluster, on paper from measured tasks: one `longmix prepare` of a
large input (>= 2 GB of Stack repositories) with Spark's event log, every task's measured
run time per stage, and the makespan of those tasks on 8, 64 and 512 simulated cores by list
scheduling (longest first onto the least loaded core). For 1 TB of input files on 512 cores
each stage's tasks are built from measured costs (the shortest task as the fixed part, the
rest per byte): the read stage as 1 TB / `read_target_bytes` even bins; the pass as
`packing_buckets(1 TB)` buckets whose text is repositories drawn from the measured corpus's
repository sizes and hashed into them (a repository is never split across buckets: its size
is what makes tasks uneven); the leftovers (one task per (domain, length), or the driver's
time for them where they fit the driver) scaled to the partial sequences of that many buckets.

    python benchmarks/bench_cluster.py [--mb 2048] [--workdir DIR] [--reuse]

Its last line: `efficiency_512_at_1tb=... hours_512_at_1tb=... tasks_per_gb=...`.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_prepare import prepare_command
from bench_scaling import LENGTH, corpus

from longmix.pipeline.driver import LEFTOVERS_JOB, PASS_JOB
from longmix.pipeline.specs import packing_buckets

TB = 10**12
READ_TARGET_BYTES = 128 * 1024 * 1024  # the config's default `read_target_bytes`


def run(folder: Path, workdir: Path, events: Path, output: Path) -> float:
    """`longmix prepare` of the corpus with Spark's event log: its seconds."""
    subprocess.run(["rm", "-rf", str(events)], check=True)
    events.mkdir()
    subprocess.run(["rm", "-rf", str(output), f"{output}-scratch"], check=True)
    cores = os.cpu_count() or 1
    config = {
        "run": {
            "name": "bench-cluster",
            "output": str(output),
            "seed": 1,
            "cards": str(workdir / "cards"),
            "scratch": str(workdir / "out-scratch"),
        },
        "spark": {
            "master": f"local[{cores}]",
            "conf": {
                "spark.ui.enabled": False,
                "spark.eventLog.enabled": True,
                "spark.eventLog.dir": events.as_uri(),
                "spark.eventLog.compress": False,
            },
        },
        "sources": {"stack": {"preset": "stack", "path": str(folder / "stack/data/*/*.parquet")}},
        "tokenizer": {"backend": "tiktoken", "name": "llama3"},
        "packing": {"sequence_length": LENGTH},
    }
    start = time.perf_counter()
    result = subprocess.run(prepare_command(config, workdir / "run.json"), capture_output=True)
    seconds = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(result.stderr.decode()[-3000:])
    return seconds


def makespan(durations: list[float], cores: int) -> float:
    """List scheduling, longest task first onto the least loaded core."""
    loads = [0.0] * min(cores, max(1, len(durations)))
    for duration in sorted(durations, reverse=True):
        heapq.heapreplace(loads, loads[0] + duration)
    return max(loads)


def stage_tasks(events: Path) -> dict[str, list[float]]:
    """Run seconds of every task of the pass's read and pack stages and of the leftovers,
    from the event log (jobs known by their description)."""
    jobs: dict[int, str] = {}
    stage_job: dict[int, int] = {}
    durations: dict[int, list[float]] = {}
    files = sorted(events.glob("events_*")) if events.is_dir() else [events]  # rolling logs
    for line in (row for f in files for row in f.read_text().splitlines()):
        event = json.loads(line)
        kind = event["Event"]
        if kind == "SparkListenerJobStart":
            description = (event.get("Properties") or {}).get("spark.job.description", "")
            jobs[event["Job ID"]] = description
            for stage in event["Stage IDs"]:
                stage_job[stage] = event["Job ID"]
        elif (
            kind == "SparkListenerTaskEnd"
            and event.get("Task End Reason", {}).get("Reason") == "Success"
        ):
            info = event["Task Info"]
            seconds = (info["Finish Time"] - info["Launch Time"]) / 1000
            durations.setdefault(event["Stage ID"], []).append(seconds)
    by_name: dict[str, list[float]] = {}
    pass_stages = sorted(s for s in durations if jobs.get(stage_job.get(s)) == PASS_JOB)
    if len(pass_stages) >= 2:
        by_name["read"] = durations[pass_stages[0]]
        by_name["pack"] = durations[pass_stages[-1]]
    left = [s for s in durations if jobs.get(stage_job.get(s)) == LEFTOVERS_JOB]
    by_name["leftovers"] = [d for s in left for d in durations[s]]
    return by_name


def scaled(durations: list[float], tasks: int, total: float) -> list[float]:
    """`tasks` durations summing to `total`, with the measured spread around the mean."""
    mean = statistics.fmean(durations)
    shape = [d / mean for d in durations] or [1.0]
    values = [shape[k % len(shape)] for k in range(tasks)]
    factor = total / sum(values)
    return [v * factor for v in values]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=2048, help="input size in MB (>= 2048)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--reuse", action="store_true", help="the workdir's last run, not a new one"
    )
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="longmix-bench-cluster-"))
    folder = corpus(workdir, f"{args.mb}mb", args.mb)
    input_bytes = sum(p.stat().st_size for p in (folder / "stack").rglob("*.parquet"))
    events, output = workdir / "events", workdir / "out"
    seconds = float("nan") if args.reuse else run(folder, workdir, events, output)
    report = json.loads((output / "_report.json").read_text())
    (log,) = [p for p in events.iterdir() if not p.name.endswith(".inprogress")]
    tasks = stage_tasks(log)
    if not tasks["leftovers"]:  # packed on the driver (they fit): its time as one task
        tasks["leftovers"] = [report["stage_seconds"]["pack_leftovers"]]
    measured_bytes = report["input"]["bytes"]
    print(
        f"input {input_bytes / 1e9:.2f} GB, {report['input']['files']} files, "
        f"pass {report['pass']}, whole run {seconds:.1f} s on {os.cpu_count()} cores"
    )
    for name, durations in tasks.items():
        quantiles = (
            statistics.quantiles(durations, n=10, method="inclusive")
            if len(durations) > 1
            else durations
        )
        print(
            f"stage {name}: {len(durations)} tasks, {sum(durations):.1f} task-s, "
            f"min {min(durations):.2f} p10 {quantiles[0]:.2f} median "
            f"{statistics.median(durations):.2f} p90 {quantiles[-1]:.2f} max {max(durations):.2f} s"
        )
        for simulated in (8, 64, 512):
            print(f"  makespan on {simulated} cores: {makespan(durations, simulated):.1f} s")
    texts = repository_bytes(folder)
    text_per_file_byte = sum(texts) / measured_bytes
    buckets_1tb = packing_buckets_for(TB)
    pack = linear_cost(tasks["pack"], sum(texts))
    read = linear_cost(tasks["read"], measured_bytes)
    bins = -(-TB // READ_TARGET_BYTES)
    durations = {
        "read": [read[0] + read[1] * TB / bins] * bins,
        "pack": [
            pack[0] + pack[1] * b for b in bucket_bytes(texts, TB * text_per_file_byte, buckets_1tb)
        ],
        # At 1 TB the partials no longer fit the driver: one Spark task per (domain, length).
        "leftovers": [d * buckets_1tb / report["pass"]["buckets"] for d in tasks["leftovers"]],
    }
    work = {name: sum(d) for name, d in durations.items()}
    spans = {name: makespan(d, 512) for name, d in durations.items()}
    for name, d in durations.items():
        print(
            f"1 TB, stage {name}: {len(d)} tasks, {work[name] / 3600:.1f} task-hours, "
            f"largest {max(d):.0f} s, makespan on 512 cores {spans[name] / 3600:.2f} h"
        )
    total_work = sum(work.values())
    total_span = sum(spans.values())
    print(
        f"efficiency_512_at_1tb={total_work / (512 * total_span):.3f} "
        f"hours_512_at_1tb={total_span / 3600:.2f} "
        f"tasks_per_gb={sum(len(d) for d in durations.values()) / (TB / 1e9):.2f}"
    )
    return 0


def repository_bytes(folder: Path) -> list[int]:
    """Text bytes of each repository of the measured corpus (what a bucket is made of)."""
    sizes: dict[str, int] = {}
    for path in sorted((folder / "stack").rglob("*.parquet")):
        table = pq.read_table(path, columns=["max_stars_repo_name", "size"])
        for name, size in zip(*(c.to_pylist() for c in table.columns), strict=True):
            sizes[name] = sizes.get(name, 0) + size
    return sorted(sizes.values())


def linear_cost(durations: list[float], total_bytes: int) -> tuple[float, float]:
    """(seconds per task, seconds per byte): the shortest task as the fixed part, the rest
    spread over the bytes the stage handled."""
    fixed = min(durations)
    return fixed, max(0.0, sum(durations) - fixed * len(durations)) / total_bytes


def bucket_bytes(repositories: list[int], total: float, buckets: int) -> list[float]:
    """Text bytes of each bucket when `total` bytes of repositories drawn from the measured
    sizes are hashed into `buckets` (a seeded draw)."""
    rng = np.random.default_rng(0)
    sizes = np.asarray(repositories, dtype=np.float64)
    count = int(total / sizes.mean())
    drawn = rng.choice(sizes, size=count)
    return np.bincount(
        rng.integers(0, buckets, size=count), weights=drawn, minlength=buckets
    ).tolist()


def packing_buckets_for(input_bytes: int) -> int:
    from longmix.pipeline.config import parse_config

    config = parse_config({"run": {"output": "x"}, "sources": {}})
    return packing_buckets(config, input_bytes)


if __name__ == "__main__":
    sys.exit(main())
