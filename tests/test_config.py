from pathlib import Path

import pytest

from longmix.pipeline.config import load_config
from longmix.pipeline.specs import source_specs
from longmix.stages.logic.errors import LongmixError

MINIMAL = """
run: {name: t, output: out, seed: 3}
sources:
  web: {preset: fineweb, path: data/*.parquet}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_loads_and_resolves_relative_paths(tmp_path):
    config = load_config(write(tmp_path, MINIMAL), [f"run.workdir={tmp_path}"])
    assert config.output == str(tmp_path / "out")
    assert config.resolve("s3://b/x") == "s3://b/x"
    assert source_specs(config)["web"].domain == "fineweb-2023-50"


def test_set_overrides_parse_yaml_values(tmp_path):
    config = load_config(
        write(tmp_path, MINIMAL),
        ["run.seed=11", "run.strict=true", "sources.web.domain=web", "concat.max_document_bytes=9"],
    )
    assert (config.run.seed, config.run.strict) == (11, True)
    assert source_specs(config)["web"].domain == "web"
    assert config.concat.max_document_bytes == 9


def test_error_names_file_and_key(tmp_path):
    path = write(tmp_path, MINIMAL.replace("seed: 3", "seed: many"))
    with pytest.raises(LongmixError) as err:
        load_config(path)
    assert str(path) in str(err.value) and "run.seed" in str(err.value)


def test_unknown_key_and_preset_are_named(tmp_path):
    path = write(tmp_path, MINIMAL + "  other: {preset: nosuch, path: x}\ncolour: red\n")
    with pytest.raises(LongmixError) as err:
        load_config(path)
    message = str(err.value)
    assert "sources.other.preset" in message and "nosuch" in message and "colour" in message


def test_bad_override_is_reported(tmp_path):
    with pytest.raises(LongmixError, match="key=value"):
        load_config(write(tmp_path, MINIMAL), ["run.seed"])


def test_secrets_are_redacted_in_the_saved_config(tmp_path):
    config = load_config(
        write(tmp_path, MINIMAL),
        ["spark.conf.spark.hadoop.fs.s3a.secret.key=hunter2", "spark.conf.spark.executor.cores=2"],
    )
    saved = config.redacted()
    assert "hunter2" not in str(saved)
    assert saved["spark"]["conf"]["spark.executor.cores"] == 2


def test_bundled_presets_validate_and_say_what_the_release_did():
    from longmix.pipeline.presets import BUNDLED

    configs = {p.stem: load_config(p) for p in BUNDLED.glob("*.yaml")}
    assert {"demo", "prolong-64k", "prolong-512k", "sft-ultrachat-64k"} <= set(configs)
    long64 = configs["prolong-64k"].packing
    assert long64.sequence_length == 65536
    assert {d for d, p in long64.domains.items() if p.mode == "long"} == {
        "thestackv1_concat_by_repo",
        "book",
        "textbooks",
    }
    long512 = configs["prolong-512k"].packing
    assert long512.lengths("thestackv1_concat_by_repo") == {524288: 0.5, 65536: 0.5}
    assert round(long512.lengths("book")[524288], 3) == round(5 / 30, 3)
    assert long512.lengths("fineweb-edu") == {524288: 1.0}
    assert configs["sft-ultrachat-64k"].packing.for_domain("ultrachat").mode == "sft"
    mix64, mix512 = configs["prolong-64k"].mix, configs["prolong-512k"].mix
    assert mix64.tokens == mix512.tokens == 20_000_000_000
    assert mix64.fractions()[("thestackv1_concat_by_repo", None)] == 0.30
    assert mix512.fractions()[("book", 524288)] == 0.05
    assert mix512.fractions()[("book", 65536)] == 0.25


def test_best_fit_is_refused_outside_short_data(tmp_path):
    text = MINIMAL + "packing: {domains: {chat: {mode: sft, method: bfd}}}\n"
    with pytest.raises(LongmixError, match=r"packing\.domains\.chat: .*bfd packs short data"):
        load_config(write(tmp_path, text))


def test_credential_words_not_token_budgets():
    from longmix.stages.logic.redaction import is_secret_key

    for key in ("fs.azure.account.key.acct.blob.core.windows.net", "hf_token", "secretAccessKey"):
        assert is_secret_key(key), key
    for key in ("tokens", "bfd_window_tokens", "tokenizer", "long_document_tokens", "keep"):
        assert not is_secret_key(key), key


def test_every_config_value_under_a_credential_key_is_masked(tmp_path):
    config = load_config(
        write(tmp_path, MINIMAL),
        [
            "storage.s3_endpoint_url=http://KEYID:SECRET99@host:9000",
            "spark.conf.spark.myapp.hf_token=hf_abcdef",
        ],
    )
    saved = str(config.redacted())
    assert "SECRET99" not in saved and "hf_abcdef" not in saved
    assert "http://REDACTED@host:9000" in saved


def test_packing_buckets_grow_with_the_input_unless_set():
    from longmix.pipeline.config import parse_config
    from longmix.pipeline.specs import packing_buckets, pass_tasks

    grown = parse_config({"run": {"output": "out"}, "sources": {}})
    assert packing_buckets(grown, 0) == packing_buckets(grown, 10**9) == 64
    assert packing_buckets(grown, 10**12) == 2000  # 1 TB: buckets of 500 MB
    assert pass_tasks(grown, 11 * 10**6, 64, cores=2) == 6
    assert pass_tasks(grown, 44 * 10**6, 64, cores=2) == 22  # 4x the input, more than 2x tasks
    assert pass_tasks(grown, 10**6, 64, cores=16) == 32  # two per core at least
    assert pass_tasks(grown, 10**12, 2000, cores=512) == 2000  # one per bucket at most
    fixed = parse_config({"run": {"output": "out"}, "sources": {}, "packing": {"buckets": 64}})
    assert packing_buckets(fixed, 10**12) == 64


def test_a_misspelt_key_is_named_with_the_key_it_resembles():
    from longmix.pipeline.config import parse_config

    source = {"format": "jsonl", "path": "docs.jsonl", "text_colum": "body"}
    with pytest.raises(LongmixError) as raised:
        parse_config({"run": {"output": "out"}, "sources": {"docs": source}, "tokenzier": {}})
    message = str(raised.value)
    assert (
        "sources.docs.text_colum: Extra inputs are not permitted (did you mean text_column?)"
        in message
    )
    assert "tokenzier: Extra inputs are not permitted (did you mean tokenizer?)" in message
    with pytest.raises(LongmixError) as raised:
        parse_config({"run": {"output": "out"}, "sources": {}, "packing": {"zzz": 1}})
    assert str(raised.value).endswith("packing.zzz: Extra inputs are not permitted")
