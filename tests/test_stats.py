"""Length statistics, the paper's tables and data cards, against values computed here
independently: documents of known token lengths, samples read back with streaming."""

import json
import subprocess
import sys
from datetime import UTC, datetime

import numpy as np
import pytest
import yaml
from PIL import Image

from longmix.pipeline import corpus
from longmix.pipeline.card import SECTIONS
from longmix.pipeline.demo import descriptions
from longmix.pipeline.driver import prepare
from longmix.pipeline.plots import DPI, FIGURE_SIZE
from longmix.pipeline.stats import long_tokens_table, share_over_table
from longmix.stages.logic.stats import log2_bins, member_token_counts
from longmix.stages.logic.tokenizers import TokenizerSpec, load_tokenizer
from tests.conftest import make_config
from tests.test_mds import read_mix

LONG, THRESHOLDS = 300, [32, 64, 128]
STATS = {"long_document_tokens": LONG, "thresholds": THRESHOLDS}
NAME = "web/fineweb-2023-50"


def expected_histogram(lengths) -> dict[str, dict[str, int]]:
    lengths = np.asarray(lengths)
    bins = log2_bins(lengths)
    return {
        str(b): {"documents": int((bins == b).sum()), "tokens": int(lengths[bins == b].sum())}
        for b in np.unique(bins)
    }


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """FineWeb-layout documents of many lengths, and their token counts by the tokenizer."""
    root = tmp_path_factory.mktemp("web")
    prose = descriptions()
    texts = [" ".join(prose[k : k + 1 + k % 7]) for k in range(80)]
    rows = [corpus.fineweb_row(text, k) for k, text in enumerate(texts)]
    corpus.write_parquet(
        root / "data/CC-MAIN-2023-50/000_00000.parquet", rows, corpus.FINEWEB_SCHEMA
    )
    encoding = load_tokenizer(TokenizerSpec("tiktoken", "llama3")).encoding
    return root, [len(encoding.encode_ordinary(t)) for t in texts]


@pytest.fixture(scope="module")
def run(web, tmp_path_factory, spark):
    root, _ = web
    out = tmp_path_factory.mktemp("stats-run")
    config = make_config(
        {"web": {"preset": "fineweb", "path": str(root / "data/*/*.parquet")}},
        out / "output",
        run={"cards": str(out / "cards")},
        packing={"sequence_length": 256, "buckets": 3},
        stats=STATS,
    )
    report = prepare(config).data
    return out, json.loads((out / "output/_stats.json").read_text()), report


def test_histograms_and_table3_equal_the_known_lengths(web, run):
    _, lengths = web
    _, stats, _ = run
    assert stats["histograms"]["document"][NAME] == expected_histogram(lengths)
    assert stats["histograms"]["read"][NAME] == expected_histogram(lengths)
    table3 = long_tokens_table(stats, LONG)[NAME]
    long = [n for n in lengths if n >= LONG]
    assert table3 == {"tokens": sum(long), "documents": len(long), "all_tokens": sum(lengths)}
    for threshold in THRESHOLDS:
        over = stats["over"]["document"][NAME][str(threshold)]
        assert over["documents"] == sum(n >= threshold for n in lengths)


def test_packed_histogram_and_table14_equal_the_segments_read_back(run):
    out, stats, _ = run
    segments = [
        int(end - start)
        for samples in read_mix(out / "output").values()
        for sample in samples
        for start, end in sample["indices"].astype(np.int64)
    ]
    assert stats["histograms"]["packed"]["fineweb-2023-50"] == expected_histogram(segments)
    table14 = share_over_table(stats, THRESHOLDS)["fineweb-2023-50"]
    assert table14 == {
        str(t): round(100 * sum(n >= t for n in segments) / len(segments), 2) for t in THRESHOLDS
    }


def test_stats_cli_reads_the_same_numbers_from_the_shards(run):
    out, stats, _ = run
    command = [sys.executable, "-m", "longmix", "stats", str(out / "output"), "--json"]
    saved = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    shards = subprocess.run(
        [*command, "--from-shards", "--plots", str(out / "plots")],
        capture_output=True,
        text=True,
        check=True,
    )
    from_shards = json.loads(shards.stdout)
    assert from_shards["stats"]["output"]["histograms"]["packed"] == stats["histograms"]["packed"]
    assert (
        from_shards["tables"]["output"]["share_over_after_packing"]
        == saved["tables"]["output"]["share_over_after_packing"]
    )
    image = Image.open(out / "plots/output-packed.png")
    assert image.format == "PNG"
    assert image.size == (int(FIGURE_SIZE[0] * DPI), int(FIGURE_SIZE[1] * DPI))
    tables = subprocess.run(command[:-1], capture_output=True, text=True, check=True).stdout
    assert "paper Table 3" in tables and "paper Table 14" in tables  # results on stdout
    assert "…" not in tables  # a file gets the tables whole, no number cut


def test_stats_of_raw_sources_run_through_spark(web, tmp_path):
    root, lengths = web
    config = {
        "run": {"name": "raw"},
        "spark": {"master": "local[2]", "conf": {"spark.ui.enabled": False}},
        "sources": {"web": {"preset": "fineweb", "path": str(root / "data/*/*.parquet")}},
        "packing": {"sequence_length": 256},
        "stats": STATS,
    }
    (tmp_path / "raw.yaml").write_text(yaml.safe_dump(config))
    command = [
        sys.executable,
        "-m",
        "longmix",
        "stats",
        "--config",
        str(tmp_path / "raw.yaml"),
    ]
    result = subprocess.run([*command, "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    stats = json.loads(result.stdout)["stats"]["raw"]
    assert stats["histograms"]["document"][NAME] == expected_histogram(lengths)


def test_the_data_card_is_filled_from_the_run(web, run):
    out, _, report = run
    card = (out / "cards/test/README.md").read_text()
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["longmix"]["config_sha256"] == report["config_sha256"]
    assert [c["config_name"] for c in meta["configs"]] == ["fineweb-2023-50"]
    headers = [line[3:] for line in body.splitlines() if line.startswith("## ")]
    assert headers == list(SECTIONS)
    sections = body.split("\n## ")[1:]
    assert all(len(section.strip().splitlines()) > 1 for section in sections)
    assert report["tokenizer"]["vocab_sha256"] in body
    for image in ("read.png", "document.png", "packed.png"):
        assert f"]({image})" in body and (out / "cards/test" / image).exists()
        assert (out / "output/card" / image).exists()
    assert "(card/packed.png)" in (out / "output/README.md").read_text()
    shard = json.loads((out / "output/fineweb-2023-50/index.json").read_text())["shards"][0]
    assert shard["raw_data"]["hashes"]["sha1"] in body
    inputs = sorted((web[0] / "data").glob("*/*.parquet"))
    assert inputs
    for path in inputs:  # each input by size, mtime and stamp, as listed at the run's start
        found = path.stat()
        modified = datetime.fromtimestamp(found.st_mtime, UTC).isoformat(timespec="seconds")
        row = f"| {path} | {found.st_size:,} | {modified} | {found.st_mtime_ns} |"
        assert row in body


def test_member_tokens_are_attributed_by_byte_offsets():
    tokenizer = load_tokenizer(TokenizerSpec("tiktoken", "llama3"))
    files = ["def a():\n    return 1\n", "x = 'héllo'\n", "# comment\n" * 3]
    text = "".join(files)
    ids = tokenizer.encode_one(text)
    ends = list(np.cumsum([len(f.encode()) for f in files]))
    counts = member_token_counts(ids, tokenizer.byte_lengths(), ends)
    assert counts.sum() == len(ids)
    # Files ending in a newline start a fresh token here, so each file's tokens are its own.
    assert counts.tolist() == [len(tokenizer.encode_one(f)) for f in files]
