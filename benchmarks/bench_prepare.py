"""End-to-end `longmix prepare` throughput against the bare tokenizer on the same corpus.

    python benchmarks/bench_prepare.py [--mb 150] [--backend tiktoken|quicktok] [--workdir DIR]

The corpus is real Python source from the installed packages, one Stack repository per
top-level package. The bare figure is the tokenizer library alone on the documents the
pipeline tokenizes (repositories concatenated, taken from an untimed `run.until: documents`
run), all in one batch call with as many threads as cores. The pipeline figure is the whole
`longmix prepare` process (JVM start, read, concatenation, tokenization, packing, writing).
The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import run_measured
from sources import write_stack_corpus

from longmix.stages.logic.tokenizers import tiktoken_encoding


def bare_tokens_per_second(documents: list[str], backend: str, name: str) -> tuple[int, float]:
    """The library alone, all documents in one call on every core: the best case."""
    cores = os.cpu_count() or 1
    if backend == "quicktok":
        import quicktok

        encoding = quicktok.get_encoding(name)
        start = time.perf_counter()
        ids, _ = encoding.encode_batch(documents, cores, False)
        return len(ids), len(ids) / (time.perf_counter() - start)
    encoding = tiktoken_encoding(name, None)
    start = time.perf_counter()
    lists = encoding.encode_ordinary_batch(documents, num_threads=cores)
    seconds = time.perf_counter() - start
    tokens = sum(len(x) for x in lists)
    return tokens, tokens / seconds


def prepare_command(config: dict, path: Path) -> list[str]:
    path.write_text(json.dumps(config))
    return [sys.executable, "-m", "longmix", "prepare", str(path)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=150)
    parser.add_argument("--backend", default="tiktoken", choices=["tiktoken", "quicktok"])
    parser.add_argument("--encoding", default="cl100k_base")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--length", type=int, default=65536, help="sequence length to pack")
    parser.add_argument(
        "--until",
        default="mds",
        choices=["sequences", "mds"],
        help="mds: the whole product (MDS shards, mix.yaml, card); sequences: up to packing",
    )
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="longmix-bench-"))
    text_bytes = write_stack_corpus(
        workdir / "stack",
        args.mb * 1024 * 1024,
        repository=lambda path: f"pypi/{path.split('/')[0]}",
        shards=8,
    )
    config = {
        "run": {
            "name": "bench-prepare",
            "output": str(workdir / "output"),
            "seed": 1,
            "until": args.until,
            "cards": str(workdir / "cards"),
        },
        "spark": {"master": f"local[{cores}]", "conf": {"spark.ui.enabled": False}},
        "sources": {"stack": {"preset": "stack", "path": str(workdir / "stack/data/*/*.parquet")}},
        "tokenizer": {"backend": args.backend, "name": args.encoding},
        "packing": {"sequence_length": args.length},
    }
    checkpoint = {**config, "run": {**config["run"], "until": "documents"}}
    subprocess.run(
        prepare_command(checkpoint, workdir / "documents.yaml"), check=True, stdout=sys.stderr
    )
    start = time.perf_counter()
    run = run_measured(
        prepare_command(config, workdir / "bench.yaml"), stdout=sys.stderr, stderr=sys.stderr
    )
    seconds = time.perf_counter() - start
    if run.code:
        print(f"prepare failed with exit code {run.code}", file=sys.stderr)
        return run.code
    report = json.loads((workdir / "output/_report.json").read_text())
    tokens = sum(n["tokens_in"] for per in report["packing"].values() for n in per.values())
    documents = (
        pq.read_table(workdir / "output/documents", columns=["text"]).column("text").to_pylist()
    )
    bare_tokens, bare_rate = bare_tokens_per_second(documents, args.backend, args.encoding)
    assert bare_tokens == tokens, (bare_tokens, tokens)
    rate = tokens / seconds
    stages = report["stage_seconds"]
    print(f"corpus: {text_bytes / 1e6:.1f} MB of real source, {tokens / 1e6:.1f} M tokens")
    print(f"bare {args.backend} ({cores} threads): {bare_rate / 1e6:.2f} M tokens/s")
    print(
        f"longmix prepare: {seconds:.1f} s, {rate / 1e6:.2f} M tokens/s, "
        f"peak {run.peak / 1e9:.2f} GB (largest process: {run.biggest()})"
    )
    workers = [size for name, size in run.largest.items() if "python" in name]
    print(f"largest Python worker at {args.length}-token packing: {max(workers) / 1e9:.2f} GB")
    print(f"stages (s): {json.dumps(stages)}")
    print(
        f"ratio_vs_bare={rate / bare_rate:.3f} tokens_per_s={rate:.0f} "
        f"backend={args.backend} cores={cores} until={args.until}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
