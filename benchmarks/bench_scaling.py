"""The whole product at two input sizes: marginal tokens/s (slope) and fixed seconds per run
(intercept), beside the bare tokenizer and datatools (ProLong's packer) on the same
documents and cores.

    make peers   # datatools into benchmarks/.peers
    python benchmarks/bench_scaling.py [--mb 150] [--repeats 3] [--workdir DIR] [--layout L]

Corpora: real Python source of the installed packages in the Stack layout, S = `--mb` MB of
text and 4S (renamed copies of repositories where the machine holds too little source).
`--layout stack` (default) has longmix read the Stack files and concatenate them (the pass
shuffles); `--layout jsonl` has it read the concatenated repositories from JSON Lines files,
the documents datatools reads (your own data's shape: the pass reads and packs each bin of
files in one task, no shuffle).
Every timed run is a new process: `longmix prepare` to MDS with tiktoken (Llama-3, the
tokenizer datatools uses) and with quicktok (cl100k); datatools `tokenize` + `pack` (64K,
BOS/EOS, as many workers as cores) on the documents longmix concatenates (repositories,
taken from an untimed `run.until: documents` run); and the bare tokenizer in one call on
the same documents. Runs are interleaved and repeated; medians are used (single runs here
vary by 20%). The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_prepare import bare_tokens_per_second, prepare_command
from memory import run_measured
from sources import write_stack_corpus

PEERS = Path(__file__).resolve().parent / ".peers"
LENGTH = 65536
LONGMIX = {"tiktoken": ("tiktoken", "llama3"), "quicktok": ("quicktok", "cl100k_base")}
LLAMA3_BOS, LLAMA3_EOS = 128000, 128001
JSONL_FILES = 32  # the jsonl layout's files, repositories dealt round-robin


@dataclass
class Runs:
    """Timed runs of one configuration at one size."""

    seconds: list[float] = field(default_factory=list)
    tokens: int = 0
    stages: list[dict[str, float]] = field(default_factory=list)
    tasks: int = 0  # of the packing pass (`_report.json`'s `pass`)
    peak: int = 0
    worker: int = 0

    def median(self) -> float:
        return statistics.median(self.seconds)


def corpus(workdir: Path, name: str, mb: int) -> Path:
    folder = workdir / name
    if not (folder / "stack/data").exists():
        write_stack_corpus(
            folder / "stack",
            mb * 1024 * 1024,
            repository=lambda path: f"pypi/{path.split('/')[0]}",
            shards=8,
        )
    return folder


def config(
    folder: Path, backend: str, name: str, output: Path, until: str = "mds", layout: str = "stack"
) -> dict:
    cores = os.cpu_count() or 1
    stack = {"preset": "stack", "path": str(folder / "stack/data/*/*.parquet")}
    own = {
        "format": "jsonl",
        "path": str(folder / "documents-jsonl/*.jsonl"),
        "domain": "thestackv1_concat_by_repo",
    }
    return {
        "run": {
            "name": "bench-scaling",
            "output": str(output),
            "seed": 1,
            "until": until,
            "cards": str(output.parent / f"{output.name}-cards"),
            "scratch": str(output.parent / f"{output.name}-scratch"),
        },
        "spark": {"master": f"local[{cores}]", "conf": {"spark.ui.enabled": False}},
        "sources": {"stack": stack} if layout == "stack" else {"repositories": own},
        "tokenizer": {"backend": backend, "name": name},
        "packing": {"sequence_length": LENGTH},
    }


def documents(folder: Path) -> tuple[list[Path], Path]:
    """The concatenated repositories as parquet, and as JSON Lines: one file for datatools,
    whose parquet loader cannot be pickled to its workers, and JSONL_FILES files for the
    jsonl layout (untimed)."""
    out = folder / "documents"
    lines = folder / "documents.jsonl"
    if not lines.exists():
        checkpoint = config(folder, "tiktoken", "llama3", out, until="documents")
        subprocess.run(prepare_command(checkpoint, folder / "documents.json"), check=True)
        shards = folder / "documents-jsonl"
        shards.mkdir(exist_ok=True)
        with ExitStack() as files, open(lines, "w") as stream:
            names = [shards / f"part-{i:03d}.jsonl" for i in range(JSONL_FILES)]
            streams = [files.enter_context(open(name, "w")) for name in names]
            count = 0
            for path in sorted((out / "documents").glob("*.parquet")):
                for batch in pq.ParquetFile(path).iter_batches(columns=["text"], batch_size=8):
                    for text in batch.column(0).to_pylist():
                        line = json.dumps({"text": text}) + "\n"
                        stream.write(line)
                        streams[count % JSONL_FILES].write(line)
                        count += 1
    return sorted((out / "documents").glob("*.parquet")), lines


def run_longmix(folder: Path, backend: str, runs: Runs, attempt: int, layout: str) -> None:
    output = folder / f"out-{backend}-{attempt}"
    subprocess.run(["rm", "-rf", str(output), f"{output}-scratch", f"{output}-cards"], check=True)
    backend_name, name = LONGMIX[backend]
    settings = config(folder, backend_name, name, output, layout=layout)
    command = prepare_command(settings, folder / "run.json")
    start = time.perf_counter()
    measured = run_measured(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    runs.seconds.append(time.perf_counter() - start)
    if measured.code:
        raise SystemExit(f"longmix prepare failed ({measured.code}) on {folder}")
    report = json.loads((output / "_report.json").read_text())
    runs.tokens = sum(n["tokens_in"] for per in report["packing"].values() for n in per.values())
    runs.stages.append(report["stage_seconds"])
    runs.tasks = report["pass"]["tasks"]
    runs.peak = max(runs.peak, measured.peak)
    workers = [size for proc, size in measured.largest.items() if "python" in proc]
    runs.worker = max([runs.worker, *workers])
    subprocess.run(["rm", "-rf", str(output), f"{output}-scratch"], check=True)


def datatools_model() -> None:
    """datatools' Llama-3 tokenizer reads a tiktoken BPE file it does not ship: written from
    the same offline vocabulary longmix's tiktoken backend uses."""
    from longmix.stages.logic.tokenizers import llama3_encoding

    path = PEERS / "datatools/scripts/tokenizers/llama3_tokenizer.model"
    if path.exists():
        return
    encoding = llama3_encoding()
    lines = [
        f"{base64.b64encode(token).decode()} {rank}"
        for token, rank in sorted(encoding._mergeable_ranks.items(), key=lambda kv: kv[1])
    ]
    path.write_text("\n".join(lines) + "\n")


def run_datatools(folder: Path, lines: Path, runs: Runs, attempt: int) -> None:
    """datatools tokenize + pack, each a new process, timed together."""
    cores = str(os.cpu_count() or 1)
    tokenized, packed = folder / f"dt-tokenized-{attempt}", folder / f"dt-packed-{attempt}"
    subprocess.run(["rm", "-rf", str(tokenized), str(packed)], check=True)
    env = {**os.environ, "PYTHONPATH": f"{PEERS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    steps = [
        ["tokenize", str(lines), str(tokenized), "-T", "llama3", "-w", cores],
        [
            "pack",
            str(tokenized),
            str(packed),
            "-l",
            str(LENGTH),
            "-w",
            cores,
            "--bos_id",
            str(LLAMA3_BOS),
            "--eos_id",
            str(LLAMA3_EOS),
        ],
    ]
    start = time.perf_counter()
    for argv in steps:
        script = (
            f"import sys; sys.argv = {argv!r}; from datatools.scripts.{argv[0]} import main; main()"
        )
        subprocess.run([sys.executable, "-c", script], check=True, env=env, capture_output=True)
    runs.seconds.append(time.perf_counter() - start)
    subprocess.run(["rm", "-rf", str(tokenized), str(packed)], check=True)


def fit(small: Runs, large: Runs) -> tuple[float, float]:
    """(marginal tokens/s, fixed seconds) through the two sizes' medians."""
    slope = (large.tokens - small.tokens) / (large.median() - small.median())
    return slope, small.median() - small.tokens / slope


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=150, help="size S in MB of text (4S too)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--layout", choices=["stack", "jsonl"], default="stack")
    args = parser.parse_args()
    if not (PEERS / "datatools").exists():
        print("datatools is not installed: run `make peers` first", file=sys.stderr)
        return 2
    datatools_model()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="longmix-bench-scaling-"))
    sizes = {"S": corpus(workdir, "S", args.mb), "4S": corpus(workdir, "4S", 4 * args.mb)}
    files = {size: documents(folder) for size, folder in sizes.items()}
    runs = {(name, size): Runs() for name in [*LONGMIX, "datatools"] for size in sizes}
    for attempt in range(args.repeats):
        for size, folder in sizes.items():
            for backend in LONGMIX:
                run_longmix(folder, backend, runs[(backend, size)], attempt, args.layout)
            run_datatools(folder, files[size][1], runs[("datatools", size)], attempt)
            runs[("datatools", size)].tokens = runs[("tiktoken", size)].tokens
    cores = os.cpu_count() or 1
    bare = {}
    for backend, (library, name) in LONGMIX.items():
        texts = pq.read_table(files["4S"][0], columns=["text"]).column("text").to_pylist()
        tokens, rate = bare_tokens_per_second(texts, library, name)
        assert tokens == runs[(backend, "4S")].tokens, (backend, tokens)
        bare[backend] = rate
    print(
        f"cores: {cores}; sizes: "
        + ", ".join(
            f"{size} {runs[('tiktoken', size)].tokens / 1e6:.1f} M tokens (llama3)"
            for size in sizes
        )
    )
    fits = {}
    for name in [*LONGMIX, "datatools"]:
        small, large = runs[(name, "S")], runs[(name, "4S")]
        fits[name] = fit(small, large)
        slope, intercept = fits[name]
        line = (
            f"{name:9s} S {small.median():6.1f} s  4S {large.median():6.1f} s  "
            f"slope {slope / 1e6:5.2f} M tokens/s  intercept {intercept:5.1f} s"
        )
        if name in LONGMIX:
            stages = {
                k: round(statistics.median(s[k] for s in large.stages), 1) for k in large.stages[0]
            }
            line += (
                f"  bare {bare[name] / 1e6:.2f} M tokens/s  peak {large.peak / 1e9:.2f} GB"
                f"  largest worker {large.worker / 1e9:.2f} GB  4S stages {json.dumps(stages)}"
            )
        print(line)
    vs = {
        size: runs[("datatools", size)].median() / runs[("tiktoken", size)].median()
        for size in sizes
    }
    print(
        f"marginal_ratio_vs_bare={fits['tiktoken'][0] / bare['tiktoken']:.3f} "
        f"quicktok_marginal_tokens_per_s={fits['quicktok'][0]:.0f} "
        f"quicktok_marginal_ratio_vs_bare={fits['quicktok'][0] / bare['quicktok']:.3f} "
        f"fixed_s={max(fits[name][1] for name in LONGMIX):.1f} "
        f"vs_datatools={vs['S']:.3f} vs_datatools_4S={vs['4S']:.3f} cores={cores} "
        f"pass_tasks_S={runs[('tiktoken', 'S')].tasks} "
        f"pass_tasks_4S={runs[('tiktoken', '4S')].tasks} layout={args.layout}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
