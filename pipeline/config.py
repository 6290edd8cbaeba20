"""The job's configuration: YAML files validated on load, with `--set key=value` overrides.

Errors name the file and the dotted key, so a typo in a 200-line config is found at once.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal, get_type_hints

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from longmix.stages.logic.errors import LongmixError
from longmix.stages.logic.pack import DEFAULT_WINDOW_TOKENS
from longmix.stages.logic.redaction import redact, remember, secrets_in
from longmix.stages.logic.sources import FORMATS, PRESETS, SourceSpec
from longmix.stages.logic.stats import LONG_DOCUMENT_TOKENS, TABLE14_THRESHOLDS

# Mappings whose own keys contain dots (Spark settings): `--set spark.conf.spark.x.y=1`.
FREE_FORM = [("spark", "conf")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunConfig(Strict):
    name: str = "longmix"
    output: str = "output"
    workdir: str = "."
    seed: int = 0
    strict: bool = False
    until: Literal["documents", "sequences", "mds"] = Field(
        default="mds", description="the last stage to run"
    )
    cards: str = Field(default="data_cards", description="where data cards go (per run)")
    scratch: str | None = Field(
        default=None,
        description="where intermediate data goes (Spark writes it); default <output>/_work, "
        "or <workdir>/_longmix_work/<name> when the output is on S3",
    )
    inputs_check: Literal["times", "content"] = Field(
        default="times",
        description="how a rewritten input is told: by size and modification time (ETag on "
        "S3), or by a sha256 of its bytes where times cannot be trusted (reads every input "
        "once more at the start)",
    )


class SparkConfig(Strict):
    master: str = "local[*]"
    app_name: str = "longmix"
    log_level: str = "WARN"
    conf: dict[str, str | int | float | bool] = Field(default_factory=dict)
    class_cache: bool = Field(
        default=True,
        description="embedded runs: reuse an archive of the driver JVM's classes (AppCDS) "
        "kept in ~/.cache/longmix (or $LONGMIX_CACHE); saves seconds at every start",
    )


class StorageConfig(Strict):
    s3_endpoint_url: str | None = None
    s3_region: str | None = None


def remappable_fields() -> dict[str, Any]:
    """Every field of a source preset (`SourceSpec`) but its name, as an optional override:
    the presets' dataclass is the one list of what a source can remap."""
    types = get_type_hints(SourceSpec)
    return {f.name: (types[f.name] | None, None) for f in fields(SourceSpec) if f.name != "name"}


class SourceConfig(
    create_model(
        "SourceFields",
        __base__=Strict,
        preset=(str | None, None),
        path=(str | list[str], ...),
        **remappable_fields(),
    )
):
    """One input: a path (files, folders or globs) and either a `preset` from
    `stages.logic.sources.PRESETS` (a published dataset's layout, any field remappable) or,
    for your own data, its `format` with `text_column` / `messages_column`, `id_column` and
    `domain` (default: the source's name). `license`, `origin` and `language` are what the
    data card says of it."""

    license: str | None = Field(default=None, description="the data's license, for the card")
    origin: str | None = Field(
        default=None, description="where the data comes from: a URL or a sentence"
    )
    language: str | list[str] | None = Field(default=None, description="language code(s), e.g. en")

    @field_validator("preset")
    @classmethod
    def known_preset(cls, value: str | None) -> str | None:
        if value is not None and value not in PRESETS:
            raise ValueError(
                f"unknown preset {value!r}; known: {', '.join(sorted(PRESETS))} (for your own "
                f"files leave preset out and give format: one of {', '.join(FORMATS)})"
            )
        return value

    @model_validator(mode="after")
    def preset_or_format(self) -> SourceConfig:
        if self.preset is None and self.format is None:
            raise ValueError(
                f"give format (one of {', '.join(FORMATS)}) for your own files, or a preset "
                f"for a published dataset ({', '.join(sorted(PRESETS))})"
            )
        return self

    def paths(self) -> list[str]:
        return [self.path] if isinstance(self.path, str) else list(self.path)

    def languages(self) -> list[str]:
        if self.language is None:
            return []
        return [self.language] if isinstance(self.language, str) else list(self.language)


class ConcatConfig(Strict):
    max_document_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    partitions: int | None = Field(default=None, gt=0, description="default: 2 x cores")


class TokenizerConfig(Strict):
    backend: Literal["tiktoken", "transformers", "quicktok"] = "tiktoken"
    name: str = "llama3"
    pattern: str | None = None
    bos: str | None = "default"
    eos: str | None = "default"
    threads: int = Field(default=0, ge=0, description="0: twice the task's cores")
    split_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=0,
        description="documents larger than this are encoded in parts on several threads, "
        "cut where the tokenizer's pre-tokenization splits anyway (0: never)",
    )


class DomainPacking(Strict):
    mode: Literal["long", "short", "sft"] = "short"
    method: Literal["concat", "bfd"] = Field(
        default="concat", description="short data: concatenate, or best-fit-decreasing"
    )
    lengths: dict[int, float] | None = None
    min_length: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def best_fit_is_for_short_data(self) -> DomainPacking:
        if self.method == "bfd" and self.mode != "short":
            raise ValueError(f"method bfd packs short data; this domain's mode is {self.mode}")
        return self

    @field_validator("lengths")
    @classmethod
    def fractions_sum_to_one(cls, value: dict[int, float] | None) -> dict[int, float] | None:
        if value is not None and (not value or abs(sum(value.values()) - 1) > 1e-6):
            raise ValueError("length fractions must sum to 1")
        return value


class PackingConfig(Strict):
    sequence_length: int = Field(default=65536, gt=0)
    buckets: int | None = Field(
        default=None,
        gt=0,
        description=(
            "packing units; null: grows with the input, 2 x sqrt(MB), at least 64 (the direct "
            "pass: a bin of files per 16 MB, at most that many)"
        ),
    )
    domains: dict[str, DomainPacking] = Field(default_factory=dict)
    partitions: int | None = Field(
        default=None, gt=0, description="tasks of the shuffled pass; null: one per 2 MB of input"
    )
    bfd_window_tokens: int = Field(
        default=DEFAULT_WINDOW_TOKENS, gt=0, description="tokens placed together by bfd"
    )

    def for_domain(self, domain: str) -> DomainPacking:
        return self.domains.get(domain, DomainPacking())

    def lengths(self, domain: str) -> dict[int, float]:
        return self.for_domain(domain).lengths or {self.sequence_length: 1.0}


class MixConfig(Strict):
    """Token fractions per domain (or per domain and length) and an optional token budget."""

    tokens: int | None = Field(default=None, gt=0, description="null: keep everything")
    domains: dict[str, float | dict[int, float]] = Field(default_factory=dict)
    shortfall: Literal["repeat", "fail"] = "repeat"
    tolerance: float = Field(default=0.01, ge=0, description="validate: |achieved - target|")
    materialize: bool = Field(
        default=False,
        description="false: every sequence stored once, the mix realized by streaming from "
        "mix.yaml's proportions and epoch_size (as ProLong's trainer reads it); true: the "
        "sampled, repeated mix written out (a second pass over the shards)",
    )

    @model_validator(mode="after")
    def fractions_sum_to_one(self) -> MixConfig:
        if self.tokens is not None and not self.domains:
            raise ValueError("a token budget needs mix.domains fractions")
        total = sum(sum(f.values()) if isinstance(f, dict) else f for f in self.domains.values())
        if self.domains and abs(total - 1) > 1e-3:
            raise ValueError(f"mix.domains fractions sum to {total:.4f}, not 1")
        return self

    def fractions(self) -> dict[tuple[str, int | None], float]:
        """(domain, length or None for every length of the domain) -> token fraction."""
        out: dict[tuple[str, int | None], float] = {}
        for domain, value in self.domains.items():
            if isinstance(value, dict):
                out.update({(domain, length): f for length, f in value.items()})
            else:
                out[(domain, None)] = value
        return out


class MdsConfig(Strict):
    """The MDS shards: what the ProLong trainer reads."""

    indices_dtype: Literal["uint32", "int64"] = Field(
        default="uint32", description="uint32 as released; int64 for NumPy >= 2 readers"
    )
    compression: Literal["zstd"] | None = None
    shard_size: int = Field(default=64 * 1024 * 1024, gt=0)
    partitions: int | None = Field(default=None, gt=0, description="default: 2 x cores")


class StatsConfig(Strict):
    """Length statistics: the paper's Table 3 threshold and Table 14 thresholds (tokens)."""

    long_document_tokens: int = Field(default=LONG_DOCUMENT_TOKENS, gt=0)
    thresholds: list[int] = Field(default_factory=lambda: list(TABLE14_THRESHOLDS))

    def all_thresholds(self) -> tuple[int, ...]:
        return tuple(sorted({*self.thresholds, self.long_document_tokens}))


class SmokeModelConfig(Strict):
    """A Llama-architecture model, randomly initialised; the default is tiny enough for CPU."""

    hidden_size: int = Field(default=64, gt=0)
    layers: int = Field(default=2, gt=0)
    heads: int = Field(default=4, gt=0)
    kv_heads: int = Field(default=2, gt=0)
    intermediate_size: int = Field(default=128, gt=0)
    rope_theta: float | None = Field(
        default=None, gt=0, description="null: 8e6 up to 64K tokens, 1.28e8 beyond (RECIPE)"
    )
    vocab: Literal["auto", "observed", "tokenizer"] = Field(
        default="auto",
        description="observed: only the ids the run reads (CPU); tokenizer: its full size (GPU)",
    )


class SmokeEvalConfig(Strict):
    """What the smoke model is asked after training, on data it did not train on."""

    enabled: bool = Field(default=True, description="loss by position and past the length")
    samples: int = Field(default=2, gt=0, description="held-out samples per directory")
    documents: int = Field(default=1, gt=0, description="held-out long documents at 4L")
    neighbor_window: int | None = Field(
        default=None, gt=0, description="Self-Extend w_n; null: a quarter of the length"
    )
    group_size: int | None = Field(
        default=None, gt=0, description="Self-Extend G; null: the smallest that reaches 4L"
    )


class SmokeConfig(Strict):
    """`longmix smoke`: a short document-masked training run over the output's mix."""

    steps: int = Field(default=16, gt=1)
    devices: int = Field(default=2, gt=0, description="simulated data-parallel devices")
    accumulation: int = Field(default=2, gt=0, description="micro-batches per device per step")
    reorder: bool = Field(default=True, description="sort micro-batches by attention cost")
    lr: float = Field(default=2e-3, gt=0)
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)
    warmup: float = Field(default=0.1, ge=0, lt=1, description="share of steps")
    weight_decay: float = Field(default=0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = Field(default=1.0, gt=0)
    attention: Literal["auto", "documents", "flex", "dense", "full"] = Field(
        default="auto", description="auto: flex on CUDA, documents on CPU"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto", description="auto: bfloat16 on CUDA, float32 on CPU"
    )
    seed: int = 0
    tolerance: float | None = Field(
        default=None, ge=0, description="domain share tolerance; null: mix.yaml's"
    )
    min_loss_drop: float = Field(
        default=0.01, ge=0, lt=1, description="last quarter's loss below the first's by this share"
    )
    model: SmokeModelConfig = Field(default_factory=SmokeModelConfig)
    eval: SmokeEvalConfig = Field(default_factory=SmokeEvalConfig)


class DedupConfig(Strict):
    """Exact duplicates are counted on every run; `mode: exact` also removes them (the
    recipe does not). `dedup: exact` is short for `dedup: {mode: exact}`."""

    mode: Literal["count", "exact"] = Field(
        default="count", description="count: report copies; exact: also drop them before packing"
    )
    normalize: Literal["strip", "whitespace", "datatrove"] = Field(
        default="strip",
        description="what counts as the same text: surrounding whitespace stripped; every "
        "whitespace run as one space; or datatrove's normalization (case, numbers, "
        "punctuation, diacritics; several times slower)",
    )
    priority: list[str] = Field(
        default_factory=list,
        description="sources whose copy is kept first, in this order; the rest after, by name",
    )

    @model_validator(mode="before")
    @classmethod
    def shorthand(cls, value: Any) -> Any:
        return {"mode": value} if isinstance(value, str) else value


class DecontaminationConfig(Strict):
    """Documents sharing a word n-gram with evaluation text: counted, or also dropped."""

    paths: list[str] = Field(
        default_factory=list,
        description="evaluation files or globs (JSONL, parquet, else plain text), local or s3://",
    )
    field: str = Field(default="text", description="the JSONL key or parquet column to read")
    ngram: int = Field(default=13, ge=1, description="words per n-gram, after normalization")
    remove: bool = False


class FaultsConfig(Strict):
    """For tests only: faults injected into a run to exercise retries and resume (see
    `stages.logic.faults.Faults`). Never part of the config digest."""

    fail_once: str | None = None
    hold_after_commit: str | None = None
    hold_before_read: str | None = None


class Config(Strict):
    run: RunConfig = Field(default_factory=RunConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    sources: dict[str, SourceConfig]
    concat: ConcatConfig = Field(default_factory=ConcatConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    packing: PackingConfig = Field(default_factory=PackingConfig)
    mix: MixConfig = Field(default_factory=MixConfig)
    mds: MdsConfig = Field(default_factory=MdsConfig)
    stats: StatsConfig = Field(default_factory=StatsConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    decontaminate: DecontaminationConfig = Field(default_factory=DecontaminationConfig)
    smoke: SmokeConfig = Field(default_factory=SmokeConfig)
    faults: FaultsConfig = Field(default_factory=FaultsConfig)
    read_target_bytes: int = Field(default=128 * 1024 * 1024, gt=0)

    @model_validator(mode="after")
    def shards_hold_a_sample(self) -> Config:
        """streaming's MDSWriter closes the current shard before a sample that does not fit,
        so a shard smaller than one sample leaves empty shards that readers divide by."""
        longest = max(
            [self.packing.sequence_length]
            + [n for d in self.packing.domains.values() for n in (d.lengths or {})]
        )
        index_bytes = 4 if self.mds.indices_dtype == "uint32" else 8
        largest = longest * (4 + 1 + 2 * index_bytes)  # ids, mask, one document per token
        if self.mds.shard_size < largest:
            raise ValueError(
                f"mds.shard_size {self.mds.shard_size} cannot hold a {longest}-token sample "
                f"(up to {largest} bytes)"
            )
        return self

    @model_validator(mode="after")
    def priority_names_sources(self) -> Config:
        unknown = sorted(set(self.dedup.priority) - set(self.sources))
        if unknown:
            raise ValueError(f"dedup.priority names {', '.join(unknown)}, which are not sources")
        return self

    def resolve(self, path: str) -> str:
        """A config path made absolute against `run.workdir` (URIs are left as they are)."""
        if "://" in path or Path(path).is_absolute():
            return path
        return str((Path(self.run.workdir) / path).resolve())

    @property
    def output(self) -> str:
        return self.resolve(self.run.output)

    @property
    def scratch(self) -> str:
        """Intermediate data, written by Spark (which cannot write s3:// here, see README)."""
        if self.run.scratch:
            return self.resolve(self.run.scratch)
        if self.output.startswith("s3://"):
            return self.resolve(f"_longmix_work/{self.run.name}")
        return f"{self.output.rstrip('/')}/_work"

    def redacted(self) -> dict[str, Any]:
        """The resolved config as saved beside outputs, with anything secret-looking masked
        (and no `faults` section unless a test injected some)."""
        data = self.model_dump(mode="json")
        if not any(data["faults"].values()):
            del data["faults"]
        return redact(data)

    def digest(self, leave_out: tuple[str, ...] = ()) -> str:
        """sha256 of what the data depends on (the smoke test's settings and injected faults
        never matter); `leave_out` names further sections that do not."""
        ignored = ("smoke", "faults", *leave_out)
        data = {k: v for k, v in self.redacted().items() if k not in ignored}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def packing_digest(self) -> str:
        """What the packed sequences depend on: not the mix, the shards or Spark's settings."""
        return self.digest(leave_out=("mix", "mds", "spark"))

    def shards_digest(self) -> str:
        """What the shards of every packed sequence depend on: not the mix, which mix.yaml
        alone carries unless it is materialized, nor Spark's settings."""
        return self.digest(leave_out=("mix", "spark"))


def apply_override(data: dict[str, Any], assignment: str, relative_to: Path | None = None) -> None:
    """Apply one `a.b.c=value` override; the value is parsed as YAML (`3`, `true`, `[1, 2]`).
    With `relative_to`, a relative path given for a path key is made absolute against it."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise LongmixError(f"--set expects key=value, got {assignment!r}")
    parts = key.strip().split(".")
    for mapping in FREE_FORM:
        if tuple(parts[: len(mapping)]) == mapping and len(parts) > len(mapping):
            parts = [*mapping, ".".join(parts[len(mapping) :])]
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise LongmixError(f"--set {key}: {part!r} is not a mapping")
        node = child
    value = yaml.safe_load(raw) if raw.strip() else ""
    if relative_to is not None and PATH_KEYS.fullmatch(".".join(parts)):
        value = absolute(value, relative_to)
    node[parts[-1]] = value


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise LongmixError(f"cannot read config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise LongmixError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    return config_from_data(data, overrides, path.resolve().parent, origin=str(path))


def config_from_data(
    data: Any, overrides: list[str] | None, folder: Path, origin: str = "<config>"
) -> Config:
    """A config from its parsed YAML: relative paths in it resolve against `folder` (the
    config file's), those given in `overrides` against the current folder."""
    if not isinstance(data, dict):
        raise LongmixError(f"{origin}: the top level must be a mapping")
    data = copy.deepcopy(data)
    run = data.setdefault("run", {})
    if isinstance(run, dict):
        run["workdir"] = absolute(run.get("workdir", "."), folder)
    for assignment in overrides or []:
        apply_override(data, assignment, relative_to=Path.cwd())
    return parse_config(data, origin=origin)


# Keys whose values are paths: given with --set, relative ones resolve against the current
# folder (as a shell user means them), not the config file's.
PATH_KEYS = re.compile(
    r"run\.(output|scratch|cards|workdir)|sources\.[^.]+\.path|decontaminate\.paths"
)


def absolute(value: Any, folder: Path) -> Any:
    """A path (or list of paths) made absolute against `folder`; URIs as they are."""
    if isinstance(value, list):
        return [absolute(v, folder) for v in value]
    if not isinstance(value, str) or "://" in value or Path(value).is_absolute():
        return value
    return str(folder / value)


def parse_config(data: dict[str, Any], origin: str = "<config>") -> Config:
    remember(secrets_in(data))
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise LongmixError(f"{origin}: invalid config: {problems(exc)}") from None


def smoke_config(section: dict[str, Any] | None, overrides: list[str], origin: str) -> SmokeConfig:
    """A run's `smoke` section with `--set smoke.key=value` overrides applied."""
    data = {"smoke": dict(section or {})}
    for assignment in overrides:
        if not assignment.startswith("smoke."):
            raise LongmixError(f"--set {assignment}: `longmix smoke` takes only smoke.* keys")
        apply_override(data, assignment)
    try:
        return SmokeConfig.model_validate(data["smoke"])
    except ValidationError as exc:
        raise LongmixError(f"{origin}: invalid smoke settings: {problems(exc, 'smoke')}") from None


def problems(exc: ValidationError, section: str | None = None) -> str:
    """Every validation error as `dotted.key: message`; an unknown key with the known key
    it most resembles."""
    return "; ".join(
        f"{'.'.join(str(p) for p in ([section] if section else []) + list(err['loc']))}"
        f"{'' if err['loc'] or section else '(top level)'}: {err['msg']}{suggestion(err)}"
        for err in exc.errors()
    )


def suggestion(error: dict[str, Any]) -> str:
    if error["type"] != "extra_forbidden" or not error["loc"]:
        return ""
    known = {name for model in Strict.__subclasses__() for name in model.model_fields}
    close = difflib.get_close_matches(str(error["loc"][-1]), sorted(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""
