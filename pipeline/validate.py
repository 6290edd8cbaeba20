"""`longmix validate PATH`: every sample of every directory of a longmix output, read with
mosaicml-streaming's shard readers and checked against the contract the ProLong trainer
relies on (docs/OUTPUT.md) and against the run's own `mix.yaml` and report.

Rules: `missing_index`, `missing_shard`, `corrupted_shard` (sha1 from index.json),
`unreadable_sample`, `length` (input_ids length = `length` = the directory's length),
`indices` (an (n, 2) cover of [0, L) in order), `vocabulary` (ids below the tokenizer's size),
`mask` (same shape as input_ids, 0/1), `domain` (the directory's domain), `sample_count`
(index.json and mix.yaml agree with what was read), `shard_listed_twice` and
`unit_written_twice` (the writing made a second copy of a shard or unit) and `proportion`
(the token fractions that mix.yaml's sample proportions give, with the lengths read, within
its tolerance of the targets). Warnings, not failures: a sample more often than its directory
may hold it (once, or its repeat factor in a materialized mix), which copies of the same text
in the data make; and inputs that changed since the output was written.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from longmix.pipeline.input_versions import recorded_versions, stale_versions
from longmix.pipeline.mixfile import MIX_FILE
from longmix.pipeline.report import REPORT_FILE
from longmix.pipeline.shards import download, shard_reader
from longmix.stages.logic.errors import LongmixError
from longmix.stages.logic.storage import StorageOptions, exists, is_s3, join


@dataclass(frozen=True)
class Failure:
    directory: str
    shard: str | None
    sample: int | None
    rule: str
    detail: str


@dataclass
class Summary:
    """Per directory: samples and tokens read."""

    samples: Counter = field(default_factory=Counter)
    tokens: Counter = field(default_factory=Counter)


@dataclass
class Validation:
    failures: list[Failure]
    samples: dict[str, int]
    tokens: dict[str, int]
    # Inputs whose files no longer match what the output was made from: not a failure
    # (inputs may be gone or updated on purpose), but the output is not what they would give.
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> str:
        return json.dumps(
            {
                "ok": self.ok,
                "samples": self.samples,
                "tokens": self.tokens,
                "failures": [asdict(f) for f in self.failures],
                "warnings": self.warnings,
            },
            indent=2,
        )


def require_output(path: str, storage: StorageOptions) -> None:
    """One clear line for a path that is not a longmix output, before anything is read."""
    missing = [name for name in (MIX_FILE, REPORT_FILE) if not exists(join(path, name), storage)]
    if missing:
        raise LongmixError(
            f"{path} is not a finished longmix output (no {' or '.join(missing)}); give the "
            "run.output folder of a longmix prepare run"
        )


def validate(path: str, storage: StorageOptions) -> Validation:
    """Validate a local output folder, or an S3 one (downloaded to a temporary folder)."""
    require_output(path, storage)
    if is_s3(path):
        with tempfile.TemporaryDirectory(prefix="longmix-validate-") as local:
            download(path, Path(local), storage)
            result = validate_local(Path(local))
    else:
        result = validate_local(Path(path))
    result.warnings += input_warnings(path, storage)
    return result


def input_warnings(path: str, storage: StorageOptions) -> list[str]:
    """The recorded inputs that changed or went since the output was written."""
    recorded = recorded_versions(path, storage)
    if not recorded:
        return []
    try:
        changed = stale_versions(recorded, storage)
    except Exception as exc:  # an input store out of reach: say so, validation goes on
        return [f"inputs not checked: {type(exc).__name__}: {str(exc).splitlines()[0]}"]
    return [f"input changed since the output was written: {line}" for line in changed]


def validate_local(root: Path) -> Validation:
    mix = yaml.safe_load((root / MIX_FILE).read_text())
    report = json.loads((root / REPORT_FILE).read_text())
    vocab = report["tokenizer"]["vocab_size"]
    failures: list[Failure] = []
    warnings: list[str] = []
    summary = Summary()
    for directory, expected in mix["domains"].items():
        hashes: Counter = Counter()
        failures += check_directory(root / directory, expected, vocab, summary, hashes)
        if summary.samples[directory] != expected["sequences"]:
            failures.append(
                Failure(
                    directory,
                    None,
                    None,
                    "sample_count",
                    f"read {summary.samples[directory]} samples, mix.yaml says "
                    f"{expected['sequences']}",
                )
            )
        allowed = max(1, math.ceil(expected["repeat"])) if mix.get("materialized", True) else 1
        warnings += repeated_content(directory, hashes, allowed)
    failures += check_proportions(mix, summary)
    return Validation(failures, dict(summary.samples), dict(summary.tokens), warnings)


def repeated_content(directory: str, hashes: Counter, allowed: int) -> list[str]:
    """Samples more often than the directory may hold them: copies of the same text in the
    data (a data fact, a warning), not copies the writing made (`unit_written_twice`)."""
    over = {digest: count for digest, count in hashes.items() if count > allowed}
    if not over:
        return []
    digest, count = max(over.items(), key=lambda kv: kv[1])
    return [
        f"{directory}: {len(over)} distinct samples appear more often than repeat allows "
        f"({allowed}); the most, sha1 {digest[:12]}, {count} times: the data holds copies of "
        "the same text (`dedup: exact` removes them)"
    ]


def units_listed(directory: str, shards: list[dict]) -> Iterator[Failure]:
    """Each unit's shards come from one attempt folder, each shard listed once: the writing
    never made two copies of a unit."""
    names = [shard["raw_data"]["basename"] for shard in shards]
    for name in sorted({n for n in names if names.count(n) > 1}):
        yield Failure(directory, name, None, "shard_listed_twice", "index.json lists it twice")
    folders: dict[str, set[str]] = {}
    for name in names:
        folder = name.split("/")[0]
        folders.setdefault(folder.split("-a")[0], set()).add(folder)
    for unit, found in sorted(folders.items()):
        if len(found) > 1:
            detail = f"unit {unit} has shards from attempts {', '.join(sorted(found))}"
            yield Failure(directory, None, None, "unit_written_twice", detail)


def check_directory(
    folder: Path, expected: dict[str, Any], vocab: int, summary: Summary, hashes: Counter
) -> Iterator[Failure]:

    directory = folder.name
    index_file = folder / "index.json"
    if not index_file.exists():
        yield Failure(directory, None, None, "missing_index", f"{index_file} does not exist")
        return
    shards = json.loads(index_file.read_text())["shards"]
    yield from units_listed(directory, shards)
    declared = sum(shard["samples"] for shard in shards)
    with tempfile.TemporaryDirectory(prefix="longmix-shard-") as scratch:
        for shard in shards:
            name = shard["raw_data"]["basename"]
            reader, problem = shard_reader(folder, shard, Path(scratch))
            if problem:
                yield Failure(directory, name, None, *problem)
                continue
            for index in range(shard["samples"]):
                try:
                    sample = reader.get_item(index)
                except Exception as exc:  # a damaged sample: report it, keep checking
                    yield Failure(directory, name, index, "unreadable_sample", repr(exc)[:200])
                    continue
                summary.samples[directory] += 1
                summary.tokens[directory] += len(sample["input_ids"])
                hashes[hashlib.sha1(np.asarray(sample["input_ids"]).tobytes()).hexdigest()] += 1
                for rule, detail in sample_problems(sample, expected, vocab):
                    yield Failure(directory, name, index, rule, detail)
    if declared != summary.samples[directory]:
        yield Failure(
            directory,
            None,
            None,
            "sample_count",
            f"index.json declares {declared} samples, {summary.samples[directory]} were read",
        )


def sample_problems(
    sample: dict[str, Any], expected: dict[str, Any], vocab: int
) -> Iterator[tuple[str, str]]:
    ids = np.asarray(sample["input_ids"])
    length = expected["length"]
    if len(ids) != length or sample["length"] != length:
        yield "length", f"{len(ids)} tokens, `length` {sample['length']}, directory {length}"
    if len(ids) and int(ids.max()) >= vocab:
        yield "vocabulary", f"id {int(ids.max())} >= vocabulary size {vocab}"
    problem = indices_problem(np.asarray(sample["indices"]), len(ids))
    if problem:
        yield "indices", problem
    if "mask" in sample:
        mask = np.asarray(sample["mask"])
        if mask.shape != ids.shape or not np.isin(mask, (0, 1)).all():
            yield "mask", f"mask shape {mask.shape} (values {np.unique(mask)[:4]}) for {ids.shape}"
    if sample["domain"] != expected["domain"]:
        yield "domain", f"{sample['domain']!r}, directory holds {expected['domain']!r}"


def indices_problem(indices: np.ndarray, length: int) -> str | None:
    if indices.ndim != 2 or indices.shape[1] != 2 or not len(indices):
        return f"shape {indices.shape}, expected (n, 2)"
    starts, ends = indices[:, 0].astype(np.int64), indices[:, 1].astype(np.int64)
    if starts[0] != 0 or ends[-1] != length:
        return f"covers [{starts[0]}, {ends[-1]}), not [0, {length})"
    if not (np.all(starts < ends) and np.all(starts[1:] == ends[:-1])):
        gap = int(np.flatnonzero(starts[1:] != ends[:-1])[0]) if len(starts) > 1 else 0
        return f"segments not contiguous and non-empty near segment {gap}"
    return None


def check_proportions(mix: dict[str, Any], summary: Summary) -> Iterator[Failure]:
    """An epoch draws samples by mix.yaml's proportions: a directory's token fraction is its
    proportion times its mean sample length (as read), over the sum of those."""
    weights = {
        directory: expected["proportion"] * summary.tokens[directory] / summary.samples[directory]
        if summary.samples[directory]
        else 0.0
        for directory, expected in mix["domains"].items()
    }
    total = sum(weights.values()) or 1
    tolerance = mix.get("tolerance", 0.01)
    for directory, expected in mix["domains"].items():
        achieved = weights[directory] / total
        target = expected["target_token_fraction"]
        if abs(achieved - target) > tolerance:
            yield Failure(
                directory,
                None,
                None,
                "proportion",
                f"token fraction {achieved:.4f}, target {target:.4f} (tolerance {tolerance})",
            )
