"""Inputs read from and MDS written to an S3-API endpoint (moto on loopback; endpoint and
credentials from the standard AWS environment variables only): the samples equal those of the
same job run on local files, and `stats`, `validate` and `smoke` take the s3:// output."""

import json
import os
import subprocess
import sys

import pytest

from longmix.pipeline.mixfile import streaming_args
from longmix.stages.logic.storage import StorageOptions
from tests.conftest import download_tree, prepare_cli
from tests.test_mds import cli_config, fingerprint


def glob_sources(root: str) -> dict:
    """The mixed corpus by glob, so that local and S3 runs name the files alike."""
    return {
        "stack": {"preset": "stack", "path": f"{root}/stack/**/*.parquet"},
        "slimpajama": {"preset": "slimpajama", "path": f"{root}/sp/chunk*/*.jsonl.zst"},
        "ultrachat": {"preset": "ultrachat", "path": f"{root}/uc/*.parquet"},
    }


def longmix(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "longmix", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
    )


@pytest.mark.slow
def test_s3_in_s3_out_matches_local(tmp_path, mixed_corpus, s3_client, s3_endpoint):
    from tests.conftest import upload_tree

    upload_tree(s3_client, mixed_corpus, "corpus", "mixed")
    s3_client.create_bucket(Bucket="out")
    local = cli_config(mixed_corpus, tmp_path / "local")
    local["sources"] = glob_sources(str(mixed_corpus))
    remote = cli_config(mixed_corpus, tmp_path / "remote")
    remote["sources"] = glob_sources("s3://corpus/mixed")
    remote["run"].update(output="s3://out/run", scratch=str(tmp_path / "scratch"))
    env = {"AWS_ENDPOINT_URL": s3_endpoint}
    for config, name in ((local, "local"), (remote, "remote")):
        result = prepare_cli(config, tmp_path, name, env)
        assert result.returncode == 0, result.stderr[-3000:]
    downloaded = download_tree(s3_client, "out", "run", tmp_path / "downloaded")
    assert fingerprint(downloaded) == fingerprint(tmp_path / "local")

    uri = "s3://out/run"
    validated = longmix("validate", uri, "--json", env=env)
    assert validated.returncode == 0, validated.stdout[-2000:] + validated.stderr[-2000:]
    from streaming import StreamingDataset

    args = streaming_args(uri, StorageOptions(s3_endpoint))
    assert all(s.remote.startswith(f"{uri}/") and s.local for s in args["streams"])
    data = StreamingDataset(**args, shuffle=False, batch_size=1)
    assert sum(1 for _ in data) == args["epoch_size"]
    stats = longmix("stats", uri, "--json", env=env)
    assert stats.returncode == 0, stats.stderr[-2000:]
    local_stats = longmix("stats", str(tmp_path / "local"), "--json", env={})
    tables = [json.loads(r.stdout)["tables"] for r in (stats, local_stats)]
    assert [*tables[0].values()] == [*tables[1].values()]
    smoke = longmix("smoke", uri, "--steps", "8", "--json", env=env)
    assert smoke.returncode == 0, smoke.stdout[-2000:] + smoke.stderr[-2000:]
    assert json.loads(smoke.stdout)["ok"]
    saved = s3_client.get_object(Bucket="out", Key="run/_smoke.json")["Body"].read()
    assert json.loads(saved) == json.loads(smoke.stdout)
