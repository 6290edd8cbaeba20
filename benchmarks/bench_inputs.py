"""What knowing a run's inputs costs, against the run itself, in one run of this script:
listing every input with its stamp and reading each source's first records (the work
`prepare` now does before anything is written), with and without `run.inputs_check:
content`; and chats laid out with their special tokens and mask against the bare tokenizer.

    python benchmarks/bench_inputs.py [--mb 20] [--files 20] [--chats 2000]

Prints one line per measurement and the ratios last.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from longmix.pipeline.config import load_config
from longmix.pipeline.input_versions import current_versions
from longmix.pipeline.inputs import check_first_files, discover
from longmix.stages.logic.chats import render_chat
from longmix.stages.logic.tokenizers import TokenizerSpec, load_tokenizer

WORDS = [
    "the",
    "of",
    "a",
    "data",
    "model",
    "long",
    "context",
    "training",
    "token",
    "document",
    "packing",
    "sequence",
]


def write_corpus(folder: Path, megabytes: int, files: int) -> None:
    rng = random.Random(0)
    per_file = megabytes * 1024 * 1024 // files
    for k in range(files):
        with open(folder / f"part-{k:03d}.jsonl", "w") as out:
            written = 0
            while written < per_file:
                text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(200, 800)))
                line = json.dumps({"text": text}) + "\n"
                out.write(line)
                written += len(line)


def best_of(repeats: int, work) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=20)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--chats", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-inputs-") as scratch:
        root = Path(scratch)
        (root / "data").mkdir()
        write_corpus(root / "data", args.mb, args.files)
        settings = {
            "run": {"name": "bench", "output": "out"},
            "sources": {"docs": {"path": "data/*.jsonl", "format": "jsonl"}},
            "packing": {"sequence_length": 4096},
        }
        (root / "run.yaml").write_text(yaml.safe_dump(settings))
        config = load_config(root / "run.yaml")
        content = load_config(root / "run.yaml", ["run.inputs_check=content"])

        def before_work(config=config) -> None:
            tasks = discover(config)
            current_versions(config, tasks)
            check_first_files(config, tasks)

        listing = best_of(5, before_work)
        hashing = best_of(3, lambda: before_work(content))
        start = time.perf_counter()
        command = [sys.executable, "-m", "longmix", "prepare", str(root / "run.yaml")]
        subprocess.run(command, check=True, capture_output=True)
        run = time.perf_counter() - start
    print(f"inputs={args.files} files, {args.mb} MB: prepare (new process)={run:.2f} s")
    print(f"listing + stamps + first records={listing * 1000:.1f} ms")
    print(f"the same with inputs_check: content={hashing * 1000:.1f} ms")

    tokenizer = load_tokenizer(TokenizerSpec("tiktoken", "llama3"))
    rng = random.Random(1)
    chats = [
        [
            {"role": "user", "content": " ".join(rng.choice(WORDS) for _ in range(80))},
            {"role": "assistant", "content": " ".join(rng.choice(WORDS) for _ in range(300))},
        ]
        for _ in range(args.chats)
    ]
    render_chat(chats[0], tokenizer)  # the byte-length table, built once per tokenizer
    layout = best_of(3, lambda: [render_chat(chat, tokenizer) for chat in chats])
    texts = [" ".join(m["content"] for m in chat) for chat in chats]
    bare = best_of(3, lambda: [tokenizer.encode_one(text) for text in texts])
    print(f"chats={args.chats}: layout and mask={layout:.3f} s, bare encode={bare:.3f} s")
    print(
        f"ratios: before_work/prepare={listing / run:.4f} "
        f"content_check/prepare={hashing / run:.4f} chat_layout/bare_encode={layout / bare:.2f}"
    )


if __name__ == "__main__":
    main()
