"""longmix's own MDS writer writes what streaming's MDSWriter and merge_index write, byte for
byte, for every column encoding and compression longmix emits; StreamingDataset reads it."""

import json
from pathlib import Path

import numpy as np
import pytest

from longmix.stages.logic.mds_format import ShardWriter, merged_index, raw_shard, shard_samples

COLUMNS = {
    "input_ids": "ndarray:uint32",
    "indices": "ndarray:uint32",
    "domain": "str",
    "length": "int32",
    "mask": "ndarray:uint8",
}


def samples(count: int, seed: int = 0, int64_indices: bool = False) -> list[dict]:
    """Lengths across the uint8 / uint16 / uint32 shape-size boundaries, non-ASCII domains."""
    rng = np.random.default_rng(seed)
    lengths = [1, 255, 256, 65535, 65536, 70_000, 3, 1000]
    out = []
    for k in range(count):
        n = lengths[k % len(lengths)]
        cuts = np.sort(rng.choice(np.arange(1, n), size=min(n - 1, 3), replace=False))
        bounds = np.concatenate([[0], cuts, [n]])
        out.append(
            {
                "input_ids": rng.integers(0, 2**32 - 1, size=n, dtype=np.uint32),
                "indices": np.stack([bounds[:-1], bounds[1:]], axis=1).astype(
                    np.int64 if int64_indices else np.uint32
                ),
                "domain": ["web", "código", "书"][k % 3],
                "length": n,
                "mask": rng.integers(0, 2, size=n, dtype=np.uint8),
            }
        )
    return out


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def write_both(tmp_path: Path, columns: dict, compression, size_limit: int, written: list[dict]):
    from streaming import MDSWriter

    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    writer = ShardWriter(str(ours), columns, compression, size_limit)
    with MDSWriter(
        out=str(theirs),
        columns=columns,
        compression=compression,
        hashes=["sha1"],
        size_limit=size_limit,
    ) as reference:
        for sample in written:
            writer.write({k: sample[k] for k in columns})
            reference.write({k: sample[k] for k in columns})
    shards = writer.finish()
    return ours, theirs, shards


@pytest.mark.parametrize("compression", [None, "zstd", "zstd:7"])
@pytest.mark.parametrize("size_limit", [1 << 26, 300_000, 1000])
def test_shards_and_index_are_byte_identical_to_mdswriter(tmp_path, compression, size_limit):
    """1000 bytes is smaller than most samples: MDSWriter then writes an empty shard before
    each, and so must we."""
    ours, theirs, shards = write_both(tmp_path, COLUMNS, compression, size_limit, samples(17))
    assert files(ours) == files(theirs)
    assert len(files(ours)) > (2 if size_limit < 1 << 26 else 1)
    assert shards == json.loads((theirs / "index.json").read_text())["shards"]


def test_columns_without_mask_and_int64_indices_are_byte_identical(tmp_path):
    columns = {k: v for k, v in COLUMNS.items() if k != "mask"} | {"indices": "ndarray:int64"}
    written = samples(9, seed=3, int64_indices=True)
    ours, theirs, _ = write_both(tmp_path, columns, "zstd", 400_000, written)
    assert files(ours) == files(theirs)


def test_merged_index_is_merge_index_and_streams(tmp_path):
    from streaming import StreamingDataset
    from streaming.base.util import merge_index

    written = samples(12, seed=5)
    units = []
    for k, part in enumerate([written[:5], written[5:6], written[6:]]):
        writer = ShardWriter(str(tmp_path / "ours" / f"b{k}"), COLUMNS, "zstd", 200_000)
        for sample in part:
            writer.write(sample)
        units.append((f"b{k}", writer.finish()))
    (tmp_path / "ours" / "index.json").write_text(merged_index(units))
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    merge_index([str(tmp_path / "ours" / f"b{k}" / "index.json") for k in range(3)], str(theirs))
    assert (tmp_path / "ours" / "index.json").read_bytes() == (theirs / "index.json").read_bytes()

    data = StreamingDataset(local=str(tmp_path / "ours"), shuffle=False, batch_size=1)
    assert len(data) == len(written)
    for k, sample in enumerate(written):
        got = data[k]
        assert got["domain"] == sample["domain"] and got["length"] == sample["length"]
        for column in ("input_ids", "indices", "mask"):
            assert np.array_equal(got[column], sample[column])


@pytest.mark.parametrize(
    ("value", "encoding"),
    [(np.zeros(0, np.uint32), "ndarray:uint32"), (np.zeros(3, np.int64), "ndarray:uint32")],
)
def test_arrays_mdswriter_refuses_are_refused(tmp_path, value, encoding):
    writer = ShardWriter(str(tmp_path), {"x": encoding}, None, 1 << 20)
    with pytest.raises(ValueError):
        writer.write({"x": value})


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_shards_read_back_give_what_mdswriter_was_given(tmp_path, compression):
    """The materialized mix reads shards with `shard_samples`: every sample of MDSWriter's
    own shards comes back equal, in order, across shard boundaries."""
    written = samples(12, seed=3)
    write_both(tmp_path, COLUMNS, compression, 300_000, written)
    folder = tmp_path / "theirs"
    read = []
    for shard in json.loads((folder / "index.json").read_text())["shards"]:
        name = (shard["zip_data"] or shard["raw_data"])["basename"]
        read += shard_samples(raw_shard((folder / name).read_bytes(), shard), shard)
    assert len(read) == len(written)
    for got, want in zip(read, written, strict=True):
        assert got.keys() == want.keys()
        for name, value in want.items():
            if isinstance(value, np.ndarray):
                assert got[name].dtype == value.dtype and np.array_equal(got[name], value)
            else:
                assert got[name] == value
