"""One repository of >= 200 MB of real source text, concatenated with max_document_bytes = 32 MB:
how many parts, and the peak memory of the whole run (driver JVM, executors, Python workers).

    python benchmarks/bench_concat_memory.py [--workdir DIR] [--mb 210] [--until sequences]

The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import run_measured
from sources import write_stack_corpus

REPO = "bench/monorepo"
LIMIT_BYTES = 3 * 1024**3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--mb", type=int, default=210, help="repository size in MB of text")
    parser.add_argument("--max-document-mb", type=int, default=32)
    parser.add_argument(
        "--until",
        default="documents",
        choices=["documents", "sequences"],
        help="sequences: the whole pipeline (tokenizing 32 MB parts, 64K packing) on the repo",
    )
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="longmix-bench-"))
    text_bytes = write_stack_corpus(
        workdir / "stack", args.mb * 1024 * 1024, repository=lambda _: REPO, shards=16
    )
    config = workdir / "bench.yaml"
    config.write_text(
        json.dumps(
            {
                "run": {
                    "name": "bench-concat",
                    "output": str(workdir / "output"),
                    "until": args.until,
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
    run = run_measured(
        [sys.executable, "-m", "longmix", "prepare", str(config)],
        stdout=sys.stderr,
    )
    seconds = time.perf_counter() - start
    if run.code != 0:
        print(f"prepare failed with exit code {run.code}", file=sys.stderr)
        return run.code
    report = json.loads((workdir / "output/_report.json").read_text())
    parts = report["documents"]["stack"]["thestackv1_concat_by_repo"]
    print(f"repository text: {text_bytes / 1e6:.1f} MB in one repository")
    print(
        f"documents: {parts['documents']} parts, largest {parts['max_document_bytes'] / 1e6:.1f} MB"
    )
    print(
        f"wall time: {seconds:.1f} s; peak memory of all processes: {run.peak / 1e9:.2f} GB "
        f"(largest process: {run.biggest()})"
    )
    print(
        f"text_mb={text_bytes / 1e6:.1f} parts={parts['documents']} "
        f"max_part_mb={parts['max_document_bytes'] / 1e6:.1f} peak_rss_gb={run.peak / 1e9:.2f} "
        f"under_limit={run.peak < LIMIT_BYTES} seconds={seconds:.1f}"
    )
    return 0 if run.peak < LIMIT_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
