"""Bad records through the real pipeline: counted by reason and file by default; in strict
mode the CLI stops with one line naming the file and the record, and no traceback."""

import json

import pyarrow as pa
import pytest

from longmix.pipeline import corpus
from longmix.pipeline.driver import prepare
from tests.conftest import TEST_SPARK_CONF, make_config, prepare_cli


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    good = corpus.slimpajama_record("a fine book " * 20, "RedPajamaBook")
    corpus.write_jsonl(
        root / "sp/chunk1/example_train_0.jsonl.zst",
        [
            good,
            b'{"text": "cut',
            {"meta": {"redpajama_set_name": "RedPajamaBook"}},
            {"text": None, "meta": {"redpajama_set_name": "RedPajamaBook"}},
            corpus.slimpajama_record("", "RedPajamaBook"),
            b'{"text": "\xff\xfe", "meta": {"redpajama_set_name": "RedPajamaBook"}}',
            corpus.slimpajama_record("web text", "RedPajamaC4"),
        ],
    )
    books = [
        corpus.slimpajama_record(
            " ".join(corpus.sha1(f"{i}/{k}") for k in range(20)), "RedPajamaBook"
        )
        for i in range(400)
    ]
    truncated = corpus.write_jsonl(root / "sp/chunk2/example_train_1.jsonl.zst", books)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    corpus.write_parquet(
        root / "web/000_00000.parquet",
        [corpus.fineweb_row("a web page", 0)],
        corpus.FINEWEB_SCHEMA,
    )
    corpus.write_parquet(
        root / "web/001_00000.parquet", [{"body": "x"}], pa.schema([("body", pa.string())])
    )
    (root / "wiki").mkdir()
    (root / "wiki/empty.json.gz").write_bytes(b"")
    corpus.write_jsonl(root / "wiki/wiki-1.json.gz", [corpus.wikipedia_record("an article", 1)])
    return root


def sources(root):
    return {
        "slimpajama": {"preset": "slimpajama", "path": str(root / "sp/chunk*/*.jsonl.zst")},
        "fineweb": {"preset": "fineweb", "path": str(root / "web/*.parquet")},
        "wikipedia": {"preset": "wikipedia", "path": str(root / "wiki/*.json.gz")},
    }


def test_every_reason_is_counted_with_its_file(tmp_path, bad_corpus, spark):
    report = prepare(make_config(sources(bad_corpus), tmp_path / "out")).data
    saved = json.loads((tmp_path / "out/_report.json").read_text())
    assert saved["sources"] == report["sources"]
    chunk1 = str(bad_corpus / "sp/chunk1/example_train_0.jsonl.zst")
    skipped = report["sources"]["slimpajama"]["skipped"]
    expected = {
        "invalid_json": (1, 2),
        "missing_text": (2, 3),
        "empty_text": (1, 5),
        "undecodable_bytes": (1, 6),
        "unmapped_domain": (1, 7),
    }
    for reason, (count, first) in expected.items():
        assert skipped[reason]["files"][chunk1]["count"] == count, reason
        assert skipped[reason]["files"][chunk1]["first_record"] == first, reason
    assert skipped["unmapped_domain"]["counts_as_bad"] is False
    assert skipped["truncated_compression"]["count"] == 1
    fineweb = report["sources"]["fineweb"]["skipped"]
    assert list(fineweb["wrong_schema"]["files"]) == [str(bad_corpus / "web/001_00000.parquet")]
    wiki = report["sources"]["wikipedia"]["skipped"]
    assert list(wiki["empty_file"]["files"]) == [str(bad_corpus / "wiki/empty.json.gz")]
    kept = report["sources"]["slimpajama"]["domains"]["book"]["documents"]
    assert 1 < kept < 401
    assert report["documents"]["wikipedia"]["dolmawiki"]["documents"] == 1


def test_strict_mode_cli_prints_one_line(tmp_path, bad_corpus):
    config = {
        "run": {"name": "strict", "output": str(tmp_path / "out"), "strict": True},
        "spark": {"master": "local[1]", "conf": TEST_SPARK_CONF},
        "sources": {"wikipedia": sources(bad_corpus)["wikipedia"]},
    }
    result = prepare_cli(config, tmp_path, "strict")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if "longmix: error:" in line]
    assert errors == [
        f"longmix: error: bad record in {bad_corpus / 'wiki/empty.json.gz'}: empty_file"
    ]
