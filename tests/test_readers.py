"""Per-record reading without Spark: every published format, and every bad-record case."""

import json
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from longmix.pipeline import corpus
from longmix.stages.logic.read import ReadTask, encode_bin, read_items
from longmix.stages.logic.readers import BadRecordError, Skip, read_file
from longmix.stages.logic.sources import PRESETS
from longmix.stages.logic.storage import StorageOptions, open_input

opener = partial(open_input, options=StorageOptions())


def read(preset: str, path: Path):
    return list(read_file(PRESETS[preset], str(path), path.name, opener))


def skips(items):
    return [(s.reason, s.record) for s in items if isinstance(s, Skip)]


def texts(items):
    return [d.text for d in items if not isinstance(d, Skip)]


def test_slimpajama_maps_set_names_to_domains(tmp_path):
    path = corpus.write_jsonl(
        tmp_path / "example_train_0.jsonl.zst",
        [
            corpus.slimpajama_record("a book", "RedPajamaBook"),
            corpus.slimpajama_record("a paper", "RedPajamaArXiv"),
            corpus.slimpajama_record("a page", "RedPajamaCommonCrawl"),
        ],
    )
    items = read("slimpajama", path)
    docs = [d for d in items if not isinstance(d, Skip)]
    assert [(d.text, d.metadata["domain"]) for d in docs] == [
        ("a book", "book"),
        ("a paper", "arxiv"),
    ]
    assert docs[0].id == "slimpajama/example_train_0.jsonl.zst#1"
    (left_out,) = [s for s in items if isinstance(s, Skip)]
    assert (left_out.reason, left_out.record, left_out.bad) == ("unmapped_domain", 3, False)


def test_chat_sources_keep_messages(tmp_path):
    messages = corpus.chat("hi?", "hello!")
    tulu = corpus.write_jsonl(
        tmp_path / "tulu.jsonl", [{"dataset": "d", "id": "x1", "messages": messages}]
    )
    ultra = corpus.write_parquet(
        tmp_path / "u.parquet",
        [{"prompt": "hi?", "prompt_id": "p1", "messages": messages}],
        corpus.ULTRACHAT_SCHEMA,
    )
    for preset, path in (("tulu", tulu), ("ultrachat", ultra)):
        (doc,) = read(preset, path)
        assert json.loads(doc.text) == messages and doc.metadata["kind"] == "chat"


def test_parquet_sources_read_their_published_columns(tmp_path):
    web = corpus.write_parquet(
        tmp_path / "000_00000.parquet",
        [corpus.fineweb_row("page one", 0, edu=True)],
        corpus.FINEWEB_EDU_SCHEMA,
    )
    (doc,) = read("fineweb-edu", web)
    assert doc.text == "page one" and doc.metadata["source_id"].startswith("<urn:uuid:")
    books = corpus.write_parquet(
        tmp_path / "train-00000-of-00003.parquet",
        [{"subject": "math", "book": "algebra", "chapter": 2, "title": "t", "text": "ch"}],
        corpus.TEXTBOOK_SCHEMA,
    )
    (chapter,) = read("textbooks", books)
    assert (chapter.metadata["group"], chapter.metadata["subgroup"]) == ("math", "algebra")
    assert chapter.metadata["position"] == 2


def test_jsonl_bad_records_are_counted_by_reason(tmp_path):
    path = corpus.write_jsonl(
        tmp_path / "wiki.json.gz",
        [
            corpus.wikipedia_record("good one", 1),
            b'{"id": "2", "text": "unterminated',
            {"id": "3"},
            {"id": "4", "text": None},
            {"id": "5", "text": "   "},
            b'{"id": "6", "text": "caf\xe9 in latin-1"}',
            b"[1, 2]",
            corpus.wikipedia_record("good two", 8),
        ],
    )
    items = read("wikipedia", path)
    assert texts(items) == ["good one", "good two"]
    assert skips(items) == [
        ("invalid_json", 2),
        ("missing_text", 3),
        ("missing_text", 4),
        ("empty_text", 5),
        ("undecodable_bytes", 6),
        ("invalid_json", 7),
    ]


@pytest.mark.parametrize("suffix", [".zst", ".gz"])
def test_truncated_compressed_file_keeps_the_lines_before_the_cut(tmp_path, suffix):
    records = [corpus.slimpajama_record(f"doc {i} " * 200, "RedPajamaBook") for i in range(300)]
    path = corpus.write_jsonl(tmp_path / f"part.jsonl{suffix}", records)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    items = read("slimpajama", path)
    (skip,) = [s for s in items if isinstance(s, Skip)]
    kept = texts(items)
    assert skip.reason == "truncated_compression" and skip.record == len(kept) + 1
    assert 0 < len(kept) < 300 and kept == [r["text"] for r in records[: len(kept)]]


def test_parquet_wrong_schema_undecodable_and_empty(tmp_path):
    wrong = corpus.write_parquet(
        tmp_path / "wrong.parquet", [{"body": "x"}], pa.schema([("body", pa.string())])
    )
    items = read("fineweb", wrong)
    assert skips(items) == [("wrong_schema", None)]
    assert items[0].detail == "missing column(s) text; the file has: body"
    binary = tmp_path / "binary.parquet"
    pq.write_table(
        pa.table({"text": pa.array([b"ok", b"\xff\xfe bad", b"", None], pa.binary())}), binary
    )
    items = read("openwebmath", binary)
    assert texts(items) == ["ok"]
    assert skips(items) == [("undecodable_bytes", 1), ("empty_text", 2), ("missing_text", 3)]
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    assert skips(read("fineweb", empty)) == [("empty_file", None)]
    no_rows = corpus.write_parquet(tmp_path / "none.parquet", [], corpus.FINEWEB_SCHEMA)
    assert skips(read("fineweb", no_rows)) == [("empty_file", None)]
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not a parquet file at all")
    assert skips(read("fineweb", garbage)) == [("unreadable_file", None)]


def read_pieces(path: Path, count: int):
    task = ReadTask("fineweb", str(path), path.name, path.stat().st_size)
    return [
        list(read_file(PRESETS["fineweb"], str(path), path.name, opener, (p.start, p.end)))
        for p in task.pieces(count)
    ]


def test_a_parquet_file_in_pieces_reads_as_the_whole(tmp_path):
    records = [
        {"text": f"document {i} " + "word " * (i % 50) if i % 7 else "", "id": f"d{i}"}
        for i in range(500)
    ]
    path = tmp_path / "big.parquet"
    pq.write_table(pa.Table.from_pylist(records), path, row_group_size=37)
    whole = read("fineweb", path)
    for count in (2, 5, 14, 60):  # fewer and more pieces than the 14 row groups
        pieces = read_pieces(path, count)
        joined = [item for piece in pieces for item in piece]
        assert [(d.id, d.text) for d in joined if not isinstance(d, Skip)] == [
            (d.id, d.text) for d in whole if not isinstance(d, Skip)
        ]
        assert skips(joined) == skips(whole) and len(skips(whole)) == 72  # records numbered alike
        assert sum(1 for piece in pieces if piece) >= min(count, 14) // 2  # truly shared out
    wrong = corpus.write_parquet(
        tmp_path / "wrong.parquet", [{"body": "x"}] * 300, pa.schema([("body", pa.string())])
    )
    pieces = read_pieces(wrong, 3)  # a file-level skip comes once, from the first piece
    assert [skips(p) for p in pieces] == [[("wrong_schema", None)], [], []]
    assert pieces[0][0].records == 300


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.jsonl.zst", "empty.json.gz"])
def test_empty_line_files(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".zst"):
        path.write_bytes(zstandard.ZstdCompressor().compress(b""))
    else:
        corpus.write_jsonl(path, [])
    assert skips(read("wikipedia", path)) == [("empty_file", None)]


def test_strict_mode_stops_with_one_line_naming_file_and_record(tmp_path):
    path = corpus.write_jsonl(
        tmp_path / "wiki.json.gz", [corpus.wikipedia_record("fine", 1), b"{oops"]
    )
    plan = encode_bin([ReadTask("wikipedia", str(path), path.name, path.stat().st_size)])
    specs = {"wikipedia": PRESETS["wikipedia"]}
    with pytest.raises(BadRecordError) as err:
        list(read_items(plan, specs, StorageOptions(), strict=True))
    assert err.value.message.startswith(f"bad record in {path}, line 2: invalid_json")
    assert "\n" not in err.value.message
    unmapped = corpus.write_jsonl(
        tmp_path / "sp.jsonl", [corpus.slimpajama_record("web", "RedPajamaC4")]
    )
    size = unmapped.stat().st_size
    plan = encode_bin([ReadTask("slimpajama", str(unmapped), unmapped.name, size)])
    items = list(read_items(plan, {"slimpajama": PRESETS["slimpajama"]}, StorageOptions(), True))
    assert [s.reason for s in items] == ["unmapped_domain"]
