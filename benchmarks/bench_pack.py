"""Packing speed of longmix against datatools `pack` (the packer ProLong used), same input.

    make peers   # datatools into benchmarks/.peers (kept out of .venv: it pins another boto3)
    python benchmarks/bench_pack.py [--mb 150] [--length 65536] [--workdir DIR]

Both packers read the same tokenized MDS dataset (one sample per document, `input_ids`
uint32, as datatools `tokenize` writes it) and write packed MDS with `input_ids` and
`indices`, with BOS / EOS around each document, on as many worker processes as cores, each
taking a contiguous share of the documents (datatools' split). Each is timed as a whole
process. longmix's side runs its packing logic (`GroupPacker`, concatenation as in the
pipeline); the last line is machine-readable.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sources import write_stack_corpus

from longmix.stages.logic.pack import GroupPacker, PackSpec
from longmix.stages.logic.tokenizers import TokenizerSpec, load_tokenizer

PEERS = Path(__file__).resolve().parent / ".peers"
BOS, EOS = 100257, 100257  # cl100k has one special for both; the choice does not change speed
COLUMNS = {"input_ids": "ndarray:uint32", "indices": "ndarray:uint32", "length": "int"}


def tokenized_input(workdir: Path, mb: int) -> tuple[Path, int]:
    """The corpus's documents (repositories concatenated by `longmix prepare`), tokenized
    into one MDS sample each."""
    from streaming import MDSWriter

    out = workdir / "tokenized"
    if (out / "index.json").exists():
        return out, int((workdir / "tokens.txt").read_text())
    write_stack_corpus(
        workdir / "stack",
        mb * 1024 * 1024,
        repository=lambda path: f"pypi/{path.split('/')[0]}",
        shards=8,
    )
    config = {
        "run": {"name": "bench-pack", "output": str(workdir / "output"), "until": "documents"},
        "sources": {"stack": {"preset": "stack", "path": str(workdir / "stack/data/*/*.parquet")}},
    }
    (workdir / "documents.yaml").write_text(json.dumps(config))
    command = [sys.executable, "-m", "longmix", "prepare", str(workdir / "documents.yaml")]
    subprocess.run(command, check=True, stdout=sys.stderr)
    tokenizer = load_tokenizer(TokenizerSpec("tiktoken", "cl100k_base"))
    texts = pq.read_table(workdir / "output/documents", columns=["text"]).column("text")
    tokens = 0
    with MDSWriter(out=str(out), columns={"input_ids": "ndarray:uint32", "length": "int"}) as w:
        for text in texts.to_pylist():
            ids = tokenizer.encode_one(text)
            w.write({"input_ids": ids, "length": len(ids)})
            tokens += len(ids)
    (workdir / "tokens.txt").write_text(str(tokens))
    return out, tokens


def longmix_worker(job: tuple[str, str, int, int, int, int]) -> int:
    """Pack documents [start, end) of the input into `out`; returns sequences written."""
    from streaming import LocalDataset, MDSWriter

    source, out, start, end, length, worker = job
    data = LocalDataset(source)
    packer = GroupPacker(PackSpec("short", length, bos=BOS, eos=EOS))
    written = 0
    with MDSWriter(out=f"{out}/{worker}", columns=COLUMNS) as writer:
        for index in range(start, end):
            ids = data[index]["input_ids"]
            for sequence in packer.add("text", ids, None, len(ids)):
                indices = sequence.indices.astype(np.uint32)
                writer.write(
                    {"input_ids": sequence.input_ids, "indices": indices, "length": length}
                )
                written += 1
    return written


def longmix_pack(source: Path, out: Path, length: int, workers: int) -> int:
    """Workers over contiguous shares, then one merged index.json, as datatools does."""
    from streaming import LocalDataset
    from streaming.base.util import merge_index

    total = len(LocalDataset(str(source)))
    bounds = np.linspace(0, total, workers + 1).astype(int)
    jobs = [
        (str(source), str(out), int(bounds[k]), int(bounds[k + 1]), length, k)
        for k in range(workers)
    ]
    with Pool(workers) as pool:
        written = sum(pool.map(longmix_worker, jobs))
    merge_index(str(out), keep_local=True)
    return written


# Both packers run in a process that has already imported streaming (3.6 s here, torch
# included): the second figure is the packing work alone, the first the whole process.
RUNNER = """
import sys, time
start = time.perf_counter()
import streaming
ready = time.perf_counter()
sys.argv = {argv!r}
{call}
print(f"{{time.perf_counter() - start}} {{time.perf_counter() - ready}}")
"""


def timed(argv: list[str], call: str, env: dict | None = None) -> tuple[float, float]:
    """(whole-process seconds, seconds after imports) of `call` run with `argv`."""
    code = RUNNER.format(argv=argv, call=call)
    result = subprocess.run(
        [sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True
    )
    whole, work = result.stdout.split()[-2:]
    return float(whole), float(work)


def packed_tokens(folder: Path) -> int:
    from streaming import LocalDataset

    data = LocalDataset(str(folder))
    return sum(len(data[i]["input_ids"]) for i in range(len(data)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=150)
    parser.add_argument("--length", type=int, default=65536)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--longmix-only", nargs=2, metavar=("INPUT", "OUTPUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    if args.longmix_only:
        longmix_pack(Path(args.longmix_only[0]), Path(args.longmix_only[1]), args.length, cores)
        return 0
    if not (PEERS / "datatools").exists():
        print("datatools is not installed: run `make peers` first", file=sys.stderr)
        return 2
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="longmix-bench-pack-"))
    source, tokens = tokenized_input(workdir, args.mb)
    theirs, ours = workdir / "datatools-packed", workdir / "longmix-packed"
    for folder in (theirs, ours):
        subprocess.run(["rm", "-rf", str(folder)], check=True)
    env = {**os.environ, "PYTHONPATH": f"{PEERS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    datatools = ["pack", str(source), str(theirs), "-l", str(args.length), "-w", str(cores)]
    datatools += ["--bos_id", str(BOS), "--eos_id", str(EOS)]
    their = timed(datatools, "from datatools.scripts.pack import main; main()", env)
    longmix = [__file__, "--length", str(args.length), "--longmix-only", str(source), str(ours)]
    bench = Path(__file__).resolve().parent
    our = timed(
        longmix, f"sys.path.insert(0, {str(bench)!r}); import bench_pack; bench_pack.main()"
    )
    theirs_out, ours_out = packed_tokens(theirs), packed_tokens(ours)
    print(f"input: {tokens / 1e6:.1f} M tokens of real code in {source}")
    for name, (whole, work), out in (
        (f"datatools pack -w {cores}", their, theirs_out),
        (f"longmix packing, {cores} workers", our, ours_out),
    ):
        print(
            f"{name}: {tokens / work / 1e6:.2f} M tokens/s packing ({work:.1f} s after imports), "
            f"{tokens / whole / 1e6:.2f} M tokens/s whole process ({whole:.1f} s); "
            f"{out / 1e6:.2f} M tokens out"
        )
    print(
        f"pack_ratio={their[1] / our[1]:.3f} process_ratio={their[0] / our[0]:.3f} "
        f"longmix_tokens_per_s={tokens / our[1]:.0f} "
        f"datatools_tokens_per_s={tokens / their[1]:.0f} cores={cores}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
