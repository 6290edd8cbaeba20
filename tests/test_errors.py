"""Every failure is one line, and what the config reveals fails within seconds, before Spark
starts (issue 12's reproductions 5 to 7); secrets planted in every shape reach no file or log."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longmix.pipeline import corpus
from longmix.pipeline.driver import prepare
from longmix.pipeline.ownership import MARKER
from tests.conftest import make_config, prepare_cli
from tests.test_ownership import fineweb_corpus, one_error_line, one_source


def longmix(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "longmix", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def refused_quickly(config: dict, folder: Path, name: str) -> str:
    """The run's one error line, checked to come before any Spark work (no output)."""
    started = time.monotonic()
    result = prepare_cli(config, folder, name)
    assert result.returncode == 2, result.stderr[-3000:]
    assert time.monotonic() - started < 60
    assert not (Path(config["run"]["output"]) / "_work").exists()
    return one_error_line(result)


@pytest.fixture(scope="module")
def chats(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("chats")
    rows = [
        {"prompt": "q", "prompt_id": str(i), "messages": corpus.chat(f"question {i}", "answer")}
        for i in range(10)
    ]
    corpus.write_parquet(root / "uc/train_sft-0.parquet", rows, corpus.ULTRACHAT_SCHEMA)
    return root


def test_chats_with_a_tokenizer_without_chat_tokens(tmp_path, chats):
    config = one_source(tmp_path, tmp_path / "out")
    config["sources"] = {"uc": {"preset": "ultrachat", "path": str(chats / "uc/*.parquet")}}
    config["tokenizer"] = {"backend": "tiktoken", "name": "cl100k_base"}
    line = refused_quickly(config, tmp_path, "chat")
    assert "cannot render chat sources" in line and "uc" in line


def test_a_mix_domain_no_source_produces(tmp_path):
    root = fineweb_corpus(tmp_path / "corpus", files=1)
    config = one_source(root, tmp_path / "out", mix={"domains": {"nosuch": 1.0}})
    assert "mix.domains names nosuch, which no source produces" in refused_quickly(
        config, tmp_path, "mix"
    )


def test_an_unknown_transformers_model_fails_fast_offline(tmp_path):
    root = fineweb_corpus(tmp_path / "corpus", files=1)
    config = one_source(root, tmp_path / "out")
    config["tokenizer"] = {"backend": "transformers", "name": "nosuch-org/nosuch-model"}
    assert "cannot load transformers tokenizer 'nosuch-org/nosuch-model'" in refused_quickly(
        config, tmp_path, "model"
    )


@pytest.mark.parametrize("command", ["validate", "card", "stats", "smoke"])
def test_commands_on_a_folder_that_is_not_an_output(tmp_path, command):
    for folder in (tmp_path / "empty", tmp_path / "other"):
        folder.mkdir()
    (tmp_path / "other/notes.txt").write_text("x")
    for folder in (tmp_path / "empty", tmp_path / "other"):
        result = longmix(command, str(folder))
        assert result.returncode != 0
        assert str(folder) in one_error_line(result)
    assert (tmp_path / "other/notes.txt").read_text() == "x"


def test_stats_on_a_bogus_shard(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    shard = {"raw_data": {"basename": "shard.00000.mds", "bytes": 64}, "samples": 3}
    shard |= {"column_names": ["input_ids"], "column_encodings": ["ndarray:uint32"]}
    shard |= {"column_sizes": [None], "format": "mds", "version": 2, "compression": None}
    shard |= {"hashes": [], "size_limit": 1 << 20, "zip_data": None}
    (folder / "index.json").write_text(json.dumps({"shards": [shard], "version": 2}))
    (folder / "shard.00000.mds").write_bytes(b"\x01" * 64)
    result = longmix("stats", str(folder))
    assert result.returncode != 0
    assert "shard.00000.mds" in one_error_line(result)


def test_a_folder_in_the_way_of_a_task_fails_naming_it(tmp_path):
    root = fineweb_corpus(tmp_path / "corpus")
    output = tmp_path / "out"
    output.mkdir()
    (output / MARKER).write_text("{}")  # a longmix output, with a stranger's folder in it
    stranger = output / "fineweb-edu/b00000-a0"
    stranger.mkdir(parents=True)
    (stranger / "keep.txt").write_text("mine")
    result = prepare_cli(one_source(root, output), tmp_path, "stranger")
    assert result.returncode == 2
    assert f"{stranger} exists and longmix did not write it" in one_error_line(result)
    assert (stranger / "keep.txt").read_text() == "mine"


def test_a_spark_parquet_dataset_matched_by_a_glob_is_read(tmp_path, spark):
    dataset = tmp_path / "data/x.parquet"
    rows = [corpus.fineweb_row(f"page {i} " * 30, i) for i in range(25)]
    corpus.write_parquet(dataset / "part-00000.parquet", rows[:10], corpus.FINEWEB_SCHEMA)
    corpus.write_parquet(dataset / "part-00001.parquet", rows[10:], corpus.FINEWEB_SCHEMA)
    (dataset / "_SUCCESS").write_bytes(b"")
    (dataset / ".part-00000.parquet.crc").write_bytes(b"crc")
    source = {"s": {"preset": "fineweb", "path": str(tmp_path / "data/*.parquet")}}
    report = prepare(make_config(source, tmp_path / "out", run={"until": "documents"})).data
    assert report["sources"]["s"]["skipped"] == {}
    assert sum(d["documents"] for d in report["sources"]["s"]["domains"].values()) == 25


def test_a_parquet_file_without_its_text_column_counts_every_row(tmp_path, spark):
    rows = [{"body": f"row {i}"} for i in range(25)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "000_00000.parquet")
    good = tmp_path / "001_00000.parquet"
    corpus.write_parquet(good, [corpus.fineweb_row("a page " * 30, 0)], corpus.FINEWEB_SCHEMA)
    source = {"s": {"preset": "fineweb", "path": str(tmp_path / "*.parquet")}}
    report = prepare(make_config(source, tmp_path / "out", run={"until": "documents"})).data
    assert report["sources"]["s"]["skipped"]["wrong_schema"]["count"] == 25


def test_card_and_smoke_refuse_an_invalid_output(tmp_path, reference):
    output = tmp_path / "out"
    shutil.copytree(reference, output, ignore=shutil.ignore_patterns("_work"))
    shard = sorted(output.glob("*/*/shard.*.mds"))[0]
    data = shard.read_bytes()
    shard.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    card = longmix("card", str(output), "--cards", str(tmp_path / "cards"))
    assert card.returncode == 1, card.stderr[-2000:]
    assert "corrupted_shard" in (output / "README.md").read_text()
    smoke = longmix("smoke", str(output), "--steps", "2")
    assert smoke.returncode == 2
    assert "fails validation" in one_error_line(smoke)


PLANTED = {
    "storage.s3_endpoint_url": "http://KEYID4242:SECRETinURL9@host:9000",
    "spark.conf.spark.hadoop.fs.azure.account.key.acct.blob.core.windows.net": "AzUrEkEy+42/x==",
    "spark.conf.spark.myapp.hf_token": "hf_plantedInConfig77",
}
SECRET_VALUES = ["KEYID4242", "SECRETinURL9", "AzUrEkEy+42/x==", "hf_plantedInConfig77"]
ENV_SECRET = "hf_fromTheEnvironment55"


def test_no_planted_secret_reaches_a_file_or_a_log(tmp_path):
    root = fineweb_corpus(tmp_path / "corpus", files=1)
    output = tmp_path / "out"
    config = one_source(root, output)
    config["spark"]["app_name"] = f"app-{ENV_SECRET}"  # an environment secret in a value
    path = tmp_path / "secret.yaml"
    path.write_text(json.dumps(config))
    overrides = [f"--set={key}={value}" for key, value in PLANTED.items()]
    env = {"HF_TOKEN": ENV_SECRET}
    runs = [
        longmix("prepare", str(path), *overrides, env=env),
        longmix("validate", str(output), env=env),
        longmix("card", str(output), "--cards", str(tmp_path / "cards"), env=env),
        longmix("stats", str(output), env=env),
        longmix("validate", f"http://KEYID4242:SECRETinURL9@host/{ENV_SECRET}", env=env),
    ]
    assert [r.returncode for r in runs] == [0, 0, 0, 0, 2], runs[0].stderr[-3000:]
    texts = [r.stdout + r.stderr for r in runs]
    logs = Path(tempfile.gettempdir()) / "longmix-logs"
    files = [*output.rglob("*"), *(tmp_path / "cards").rglob("*"), *logs.glob("*.log")]
    texts += [p.read_text(errors="replace") for p in files if p.is_file()]
    for secret in [*SECRET_VALUES, ENV_SECRET]:
        assert not [t for t in texts if secret in t], secret
    saved = (output / "config.resolved.yaml").read_text()
    assert "http://REDACTED@host:9000" in saved and "app-REDACTED" in saved


def test_a_saved_traceback_is_scrubbed(monkeypatch):
    from longmix.pipeline.cli import save_traceback

    monkeypatch.setenv("HF_TOKEN", ENV_SECRET)
    try:
        raise ValueError(f"boom at http://KEYID4242:SECRETinURL9@host with {ENV_SECRET}")
    except ValueError:
        text = Path(save_traceback()).read_text()
    assert "boom at http://REDACTED@host with REDACTED" in text
    assert not [s for s in (*SECRET_VALUES, ENV_SECRET) if s in text]
