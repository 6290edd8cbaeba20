"""One repository of >= 200 MB of real source text, concatenated with max_document_bytes = 32 MB:
how many parts, and the peak memory of the whole run (driver JVM, executors, Python workers).

    python benchmarks/bench_concat_memory.py [--workdir DIR] [--mb 210]

The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import json
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import run_measured

from pipeline import corpus

REPO = "bench/monorepo"
LIMIT_BYTES = 3 * 1024**3


def source_files(total_bytes: int):
    """Real .py files from the installed packages until `total_bytes` of text."""
    root = Path(sysconfig.get_paths()["purelib"])
    seen = 0
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            continue
        yield path.relative_to(root).as_posix(), text
        seen += len(text.encode("utf-8"))
        if seen >= total_bytes:
            return


def write_repository(folder: Path, total_bytes: int, shards: int = 16) -> int:
    """The repository's files dealt round-robin over `shards` parquet files, streaming."""
    writers = [
        pq.ParquetWriter(
            folder / f"data/python/train-{k:05d}-of-{shards:05d}.parquet", corpus.STACK_SCHEMA
        )
        for k in range(shards)
        if (folder / "data/python").mkdir(parents=True, exist_ok=True) is None
    ]
    written, batch, batches = 0, [], 0
    for path, text in source_files(total_bytes):
        batch.append(corpus.stack_row(REPO, path, text))
        written += len(text.encode("utf-8"))
        if len(batch) == 200:
            writers[batches % shards].write_table(pa.Table.from_pylist(batch, corpus.STACK_SCHEMA))
            batch, batches = [], batches + 1
    if batch:
        writers[batches % shards].write_table(pa.Table.from_pylist(batch, corpus.STACK_SCHEMA))
    for writer in writers:
        writer.close()
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--mb", type=int, default=210, help="repository size in MB of text")
    parser.add_argument("--max-document-mb", type=int, default=32)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="longmix-bench-"))
    text_bytes = write_repository(workdir / "stack", args.mb * 1024 * 1024)
    config = workdir / "bench.yaml"
    config.write_text(
        json.dumps(
            {
                "run": {
                    "name": "bench-concat",
                    "output": str(workdir / "output"),
                    "until": "documents",
                },
                "spark": {"master": "local[2]", "conf": {"spark.ui.enabled": False}},
                "sources": {
                    "stack": {"preset": "stack", "path": str(workdir / "stack/data/*/*.parquet")}
                },
                "concat": {"max_document_bytes": args.max_document_mb * 1024 * 1024},
            }
        )
    )
    start = time.perf_counter()
    code, peak = run_measured(
        [sys.executable, "-m", "pipeline.cli", "prepare", str(config)],
        stdout=sys.stderr,
    )
    seconds = time.perf_counter() - start
    if code != 0:
        print(f"prepare failed with exit code {code}", file=sys.stderr)
        return code
    report = json.loads((workdir / "output/_report.json").read_text())
    parts = report["documents"]["stack"]["thestackv1_concat_by_repo"]
    print(f"repository text: {text_bytes / 1e6:.1f} MB in one repository")
    print(
        f"documents: {parts['documents']} parts, largest {parts['max_document_bytes'] / 1e6:.1f} MB"
    )
    print(f"wall time: {seconds:.1f} s; peak memory of all processes: {peak / 1e9:.2f} GB")
    print(
        f"text_mb={text_bytes / 1e6:.1f} parts={parts['documents']} "
        f"max_part_mb={parts['max_document_bytes'] / 1e6:.1f} peak_rss_gb={peak / 1e9:.2f} "
        f"under_limit={peak < LIMIT_BYTES} seconds={seconds:.1f}"
    )
    return 0 if peak < LIMIT_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
