"""Writers for the published source layouts of docs/FORMATS.md (used by the demo and tests),
so that what longmix reads in a demo is exactly what it reads from a real download."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

REPO_FIELDS = [
    ("repo_path", pa.string()),
    ("repo_name", pa.string()),
    ("repo_head_hexsha", pa.string()),
    ("repo_licenses", pa.list_(pa.string())),
    ("count", pa.int64()),
]


def repo_columns(kind: str) -> list[pa.Field]:
    return [pa.field(f"max_{kind}_{name}", dtype) for name, dtype in REPO_FIELDS]


STACK_SCHEMA = pa.schema(
    [
        ("hexsha", pa.string()),
        ("size", pa.int64()),
        ("ext", pa.string()),
        ("lang", pa.string()),
        *repo_columns("stars"),
        *repo_columns("issues"),
        *repo_columns("forks"),
        ("content", pa.string()),
        ("avg_line_length", pa.float64()),
        ("max_line_length", pa.int64()),
        ("alphanum_fraction", pa.float64()),
    ]
)

FINEWEB_SCHEMA = pa.schema(
    [
        ("text", pa.string()),
        ("id", pa.string()),
        ("dump", pa.string()),
        ("url", pa.string()),
        ("date", pa.string()),
        ("file_path", pa.string()),
        ("language", pa.string()),
        ("language_score", pa.float64()),
        ("token_count", pa.int64()),
    ]
)
FINEWEB_EDU_SCHEMA = FINEWEB_SCHEMA.append(pa.field("score", pa.float64())).append(
    pa.field("int_score", pa.int64())
)
TEXTBOOK_SCHEMA = pa.schema(
    [
        ("subject", pa.string()),
        ("book", pa.string()),
        ("chapter", pa.int64()),
        ("title", pa.string()),
        ("text", pa.string()),
    ]
)
OPENWEBMATH_SCHEMA = pa.schema(
    [("url", pa.string()), ("text", pa.string()), ("date", pa.string()), ("metadata", pa.string())]
)
MESSAGES = pa.list_(pa.struct([("content", pa.string()), ("role", pa.string())]))
ULTRACHAT_SCHEMA = pa.schema(
    [("prompt", pa.string()), ("prompt_id", pa.string()), ("messages", MESSAGES)]
)


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def stack_row(repo: str, path: str, content: str, licenses: list[str] | None = None) -> dict:
    lines = content.splitlines() or [""]
    row: dict[str, Any] = {
        "hexsha": sha1(content),
        "size": len(content.encode("utf-8")),
        "ext": path.rsplit(".", 1)[-1] if "." in path else "",
        "lang": "Python",
        "content": content,
        "avg_line_length": sum(map(len, lines)) / len(lines),
        "max_line_length": max(map(len, lines)),
        "alphanum_fraction": sum(c.isalnum() for c in content) / max(1, len(content)),
    }
    for kind in ("stars", "issues", "forks"):
        row[f"max_{kind}_repo_path"] = path
        row[f"max_{kind}_repo_name"] = repo
        row[f"max_{kind}_repo_head_hexsha"] = sha1(repo)
        row[f"max_{kind}_repo_licenses"] = licenses or ["MIT"]
        row[f"max_{kind}_count"] = None
    return row


def write_parquet(path: Path, rows: list[dict], schema: pa.Schema) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def write_stack(
    root: Path, files: Iterable[tuple[str, str, str]], shards: int, seed: int = 0
) -> list[Path]:
    """`data/python/train-0000K-of-0000N.parquet` with rows shuffled, so every repository's
    files are spread over many parquet files as in the real dataset."""
    rows = [stack_row(repo, path, content) for repo, path, content in files]
    random.Random(seed).shuffle(rows)
    return [
        write_parquet(
            root / "data" / "python" / f"train-{k:05d}-of-{shards:05d}.parquet",
            rows[k::shards],
            STACK_SCHEMA,
        )
        for k in range(shards)
    ]


def jsonl_bytes(records: Iterable[dict | bytes]) -> bytes:
    return b"".join(
        (r if isinstance(r, bytes) else json.dumps(r, ensure_ascii=False).encode("utf-8")) + b"\n"
        for r in records
    )


def write_jsonl(path: Path, records: Iterable[dict | bytes]) -> Path:
    """JSON lines, compressed by the file's suffix (.zst, .gz or none); raw `bytes` items are
    written as they are, which is how tests plant malformed lines."""
    data = jsonl_bytes(records)
    if path.suffix == ".zst":
        data = zstandard.ZstdCompressor(level=3).compress(data)
    elif path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def slimpajama_record(text: str, set_name: str) -> dict:
    return {"text": text, "meta": {"redpajama_set_name": set_name}}


def fineweb_row(text: str, index: int, edu: bool = False) -> dict:
    row = {
        "text": text,
        "id": f"<urn:uuid:{sha1(text)[:32]}>",
        "dump": "CC-MAIN-2023-50",
        "url": f"https://example.org/page/{index}",
        "date": "2023-12-01T00:00:00Z",
        "file_path": "s3://commoncrawl/crawl-data/CC-MAIN-2023-50/segments/0/warc/0.warc.gz",
        "language": "en",
        "language_score": 0.9,
        "token_count": len(text.split()),
    }
    if edu:
        row |= {"score": 3.2, "int_score": 3}
    return row


def wikipedia_record(text: str, index: int) -> dict:
    return {
        "id": str(index),
        "text": text,
        "source": "wikipedia",
        "added": "2023-03-01T00:00:00.000Z",
        "created": "2001-01-15T00:00:00.000Z",
        "metadata": {"title": text.split("\n", 1)[0][:80]},
    }


def chat(question: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
