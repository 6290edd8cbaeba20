"""What duplicate counting and decontamination cost in a whole `prepare`, at two input sizes.

    python benchmarks/bench_dedup.py [--mb 30] [--repeats 2] [--workdir DIR] [--base COMMIT]

Every timed run is a new process, `longmix prepare` to MDS with tiktoken (Llama-3) on the
benchmark corpus (real Python source in the Stack layout, S = `--mb` MB and 4S), in four
variants run interleaved: `before` (the commit before duplicate counting existed, `--base`,
by default the parent of the commit that added `stages/dedup.py`), `count` (today's default:
every run counts exact duplicates), `exact` (`dedup: exact`, copies removed) and
`decontaminate` (counting plus `decontaminate.paths`: an evaluation file of about a million
13-word n-grams, Python source the corpus does not hold). Medians per variant and size; the
slope and intercept through the two sizes; the extra time against `before`; the
decontamination cost per million evaluation n-grams. The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scaling import config, corpus
from sources import package_sources

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("before", "count", "exact", "decontaminate")
EVAL_WORDS = 1_000_000


def base_commit() -> str:
    added = subprocess.run(
        ["git", "log", "--diff-filter=A", "--format=%H", "--", "stages/dedup.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return f"{added[-1]}^" if added else "HEAD"


def checkout(commit: str, folder: Path) -> Path:
    """The code of `commit`, unpacked (no worktree left registered in the repository)."""
    if not (folder / "pipeline").exists():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", commit], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def evaluation_file(path: Path, skip_bytes: int) -> Path:
    """About EVAL_WORDS words of Python source from past the largest corpus's text."""
    if not path.exists():
        words, lines = 0, []
        for _, text in package_sources(skip_bytes + 64 * 1024 * 1024):
            skip_bytes -= len(text.encode("utf-8"))
            if skip_bytes > 0:
                continue
            lines.append(json.dumps({"text": text}))
            words += len(text.split())
            if words >= EVAL_WORDS:
                break
        path.write_text("\n".join(lines) + "\n")
    return path


def variant_config(folder: Path, variant: str, output: Path, evaluation: Path) -> dict:
    data = config(folder, "tiktoken", "llama3", output)
    if variant == "exact":
        data["dedup"] = "exact"
    if variant == "decontaminate":
        data["decontaminate"] = {"paths": [str(evaluation)]}
    return data


def run(folder: Path, variant: str, evaluation: Path, base: Path) -> tuple[float, dict]:
    output = folder / f"out-{variant}"
    subprocess.run(["rm", "-rf", str(output), f"{output}-scratch", f"{output}-cards"], check=True)
    spec = folder / f"{variant}.json"
    spec.write_text(json.dumps(variant_config(folder, variant, output, evaluation)))
    code = base if variant == "before" else ROOT
    env = {**os.environ, "PYTHONPATH": str(code)}
    command = [sys.executable, "-m", "longmix", "prepare", str(spec)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=code, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{variant} failed on {folder}: {done.stderr[-2000:]}")
    report = json.loads((output / "_report.json").read_text())
    subprocess.run(["rm", "-rf", str(output), f"{output}-scratch"], check=True)
    return seconds, report


def tokens_in(report: dict) -> int:
    return sum(n["tokens_in"] for per in report["packing"].values() for n in per.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=30, help="size S in MB of text (4S too)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--base", default=None, help="the commit timed as `before`")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    args = parser.parse_args()
    variants = [v for v in VARIANTS if v in {"before", "count", *args.variants}]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="longmix-bench-dedup-"))
    base = checkout(args.base or base_commit(), workdir / "base")
    sizes = {"S": corpus(workdir, "S", args.mb), "4S": corpus(workdir, "4S", 4 * args.mb)}
    evaluation = evaluation_file(workdir / "evaluation.jsonl", 4 * args.mb * 1024 * 1024)
    seconds = {(v, s): [] for v in variants for s in sizes}
    reports: dict[tuple[str, str], dict] = {}
    for _ in range(args.repeats):
        for size, folder in sizes.items():
            for variant in variants:
                elapsed, reports[(variant, size)] = run(folder, variant, evaluation, base)
                seconds[(variant, size)].append(elapsed)
    median = {key: statistics.median(values) for key, values in seconds.items()}
    tokens = {size: tokens_in(reports[("before", size)]) for size in sizes}
    sized = ", ".join(f"{size} {count / 1e6:.1f} M tokens" for size, count in tokens.items())
    print(f"cores {os.cpu_count()}; {sized}")
    for variant in variants:
        small, large = median[(variant, "S")], median[(variant, "4S")]
        slope = (tokens["4S"] - tokens["S"]) / (large - small)
        extra = [median[(variant, s)] / median[("before", s)] - 1 for s in sizes]
        stages = reports[(variant, "4S")]["stage_seconds"]
        print(
            f"{variant:13s} S {small:6.1f} s  4S {large:6.1f} s  slope {slope / 1e6:5.2f} M "
            f"tokens/s  intercept {small - tokens['S'] / slope:5.1f} s  extra vs before "
            f"{extra[0]:+.1%} / {extra[1]:+.1%}  4S stages {json.dumps(stages)}"
        )
    extra = {v: max(median[(v, s)] / median[("before", s)] - 1 for s in sizes) for v in variants}
    line = " ".join(f"{v}_extra={extra[v]:.3f}" for v in variants if v != "before")
    if "decontaminate" in variants:
        ngrams = reports[("decontaminate", "S")]["contamination"]["evaluation"]["ngrams"]
        cost = median[("decontaminate", "4S")] - median[("count", "4S")]
        print(f"decontamination against {ngrams:,} n-grams: +{cost:.1f} s at 4S")
        line += f" decontaminate_s_per_million_ngrams_4S={cost / (ngrams / 1e6):.1f}"
    print(f"{line} cores={os.cpu_count()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
