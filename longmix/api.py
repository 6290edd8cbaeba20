"""longmix as a library: what the `longmix` command does, for notebooks and scripts.

    import longmix
    result = longmix.prepare("my-run.yaml", overrides=["run.output=out"], spark=spark)
    dataset = StreamingDataset(**longmix.streaming_args(result.output), batch_size=8)

Heavy modules (Spark, torch, streaming) are imported by the function that needs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from longmix.pipeline.config import Config
    from longmix.pipeline.validate import Validation
    from longmix.stages.logic.tokenizers import Tokenizer


@dataclass(frozen=True)
class Prepared:
    """A finished `prepare`: where its output is and its report (`_report.json`)."""

    output: str
    report: dict[str, Any]

    @property
    def outputs(self) -> dict[str, str]:
        """Each output's kind (`documents`, `sequences`, `mds`) and where it is."""
        return self.report.get("outputs", {})

    @property
    def already_complete(self) -> bool:
        """True when an earlier run had finished with this config and these inputs."""
        return bool(self.report.get("already_complete"))


def prepare(
    config: str | Path | dict[str, Any] | Config,
    *,
    overrides: list[str] | None = None,
    spark: Any = None,
) -> Prepared:
    """Run the pipeline, as `longmix prepare` does. `config`: a YAML file (its relative paths
    against its folder), a dict (relative paths against the current folder) or a parsed
    config; `overrides`: `key=value` strings as `--set` takes. With `spark`, that session
    runs the stages and is left running; its workers must import longmix (refused in one
    line otherwise). Errors are `LongmixError`s with the one-line message the CLI prints."""
    from longmix.pipeline.config import Config, config_from_data, load_config
    from longmix.pipeline.driver import prepare as run

    if isinstance(config, Config):
        config = config_from_data(config.model_dump(mode="json"), overrides, Path.cwd())
    elif isinstance(config, dict):
        config = config_from_data(config, overrides, Path.cwd(), origin="<dict config>")
    else:
        config = load_config(config, overrides)
    report = run(config, session=spark)
    return Prepared(config.output, report.data)


def validate(path: str, *, s3_endpoint_url: str | None = None) -> Validation:
    """Every sample of an output checked (`longmix validate`): `.ok`, `.failures`,
    `.warnings`, `.samples`, `.tokens`. Needs the `train` extra."""
    from longmix.pipeline.validate import validate as check
    from longmix.stages.logic.storage import StorageOptions

    return check(str(path), StorageOptions(s3_endpoint_url))


def stats(path: str, *, from_shards: bool = False) -> dict[str, Any]:
    """An output's (or MDS dataset's) length statistics and the paper's tables, as
    `longmix stats --json` prints them: `{"tables": ..., "stats": ...}`."""
    from longmix.pipeline.stats import load_stats, paper_tables

    found = load_stats(str(path), from_shards)
    return {"tables": paper_tables(found), "stats": found}


def streaming_args(
    path: str, *, cache: str | None = None, s3_endpoint_url: str | None = None
) -> dict[str, Any]:
    """`{"streams": [...], "epoch_size": N}` for `StreamingDataset(**args, batch_size=...)`,
    from wherever the output is now (a local folder, or `s3://`, read through a `local`
    cache folder per stream under `cache`). Needs the `train` extra."""
    from longmix.pipeline.mixfile import streaming_args as resolve
    from longmix.stages.logic.storage import StorageOptions

    return resolve(str(path), StorageOptions(s3_endpoint_url), cache)


def tokenizer(path: str, *, s3_endpoint_url: str | None = None) -> Tokenizer:
    """The tokenizer an output was written with: `.encode_one(text)` (ids),
    `.decode(ids)` (text)."""
    from longmix.pipeline.report import output_tokenizer
    from longmix.stages.logic.storage import StorageOptions

    return output_tokenizer(str(path), StorageOptions(s3_endpoint_url))
