"""`mix.yaml`: the output's directories with their proportions, for the ProLong trainer
(`dir@proportion`) and for `streaming.StreamingDataset` (`streams`), and what `validate`
checks the data against."""

from __future__ import annotations

from typing import Any

import yaml

from stages.logic.mix import MixTarget, SpecKey
from stages.logic.storage import StorageOptions, is_s3, join, write_text

MIX_FILE = "mix.yaml"


def mix_section(
    targets: dict[SpecKey, MixTarget], records: dict[tuple[str, int], dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Per directory: what was available, what the mix asked for, what was written."""
    written: dict[str, dict[str, int]] = {}
    for (directory, _), record in records.items():
        numbers = written.setdefault(directory, {"sequences": 0, "tokens": 0})
        numbers["sequences"] += record["samples"]
        numbers["tokens"] += record["tokens"]
    total_tokens = sum(n["tokens"] for n in written.values()) or 1
    total_samples = sum(n["sequences"] for n in written.values()) or 1
    target_tokens = sum(t.target * t.length for t in targets.values()) or 1
    section = {}
    for target in sorted(targets.values(), key=lambda t: t.directory):
        numbers = written.get(target.directory, {"sequences": 0, "tokens": 0})
        section[target.directory] = {
            "domain": target.domain,
            "length": target.length,
            "available_sequences": target.available,
            "sequences": numbers["sequences"],
            "tokens": numbers["tokens"],
            "repeat": round(target.repeat, 6),
            "target_token_fraction": round(target.target * target.length / target_tokens, 6),
            "token_fraction": round(numbers["tokens"] / total_tokens, 6),
            "proportion": round(numbers["sequences"] / total_samples, 6),
        }
    return section


def write_mix_file(
    root: str, section: dict[str, dict[str, Any]], tolerance: float, storage: StorageOptions
) -> None:
    where = "remote" if is_s3(root) else "local"
    document = {
        "dirs": [f"{name}@{numbers['proportion']}" for name, numbers in section.items()],
        "streams": [
            {where: join(root, name), "proportion": numbers["proportion"]}
            for name, numbers in section.items()
        ],
        "tolerance": tolerance,
        "domains": section,
    }
    header = (
        "# Written by longmix. `dirs`: ProLong's trainer (dir@proportion); `streams`:\n"
        "# streaming.Stream(**s). Proportions are shares of samples, so each sample is read\n"
        "# once per epoch; token fractions (target and achieved) are under `domains`.\n"
    )
    write_text(join(root, MIX_FILE), header + yaml.safe_dump(document, sort_keys=False), storage)
