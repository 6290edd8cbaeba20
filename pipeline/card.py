"""Data cards: `data_cards/<run>/README.md` (and a copy beside the output), a Hugging Face
dataset card filled from the run's own files: what went in, what came out, how, and how to
check it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from longmix.pipeline import __version__
from longmix.pipeline.config import parse_config
from longmix.pipeline.input_versions import InputVersion, recorded_versions
from longmix.pipeline.mixfile import MIX_FILE
from longmix.pipeline.ownership import CARD_MARK, write_owned_text
from longmix.pipeline.plots import evaluation_png, histogram_png, loss_png
from longmix.pipeline.report import REPORT_FILE
from longmix.pipeline.stats import STATS_FILE, paper_tables
from longmix.pipeline.tables import (
    Table,
    contamination_table,
    duplicates_table,
    long_tokens_table,
    mix_table,
    packing_table,
    share_over_table,
    skipped_table,
)
from longmix.pipeline.trainer.report import SMOKE_FILE, card_lines
from longmix.stages.logic.stats import STAGES
from longmix.stages.logic.storage import StorageOptions

VALIDATION_FILE = "_validation.json"
SMOKE_IMAGE = "smoke_loss.png"
EVALUATION_IMAGE = "smoke_evaluation.png"

# As published on each source's hub page when this was written; check the source itself.
SOURCES = {
    "stack": ("bigcode/the-stack-dedup (v1.2)", "other: The Stack terms of use"),
    "slimpajama": ("cerebras/SlimPajama-627B", "apache-2.0 (components keep theirs)"),
    "fineweb": ("HuggingFaceFW/fineweb, CC-MAIN-2023-50", "odc-by"),
    "fineweb-edu": ("HuggingFaceFW/fineweb-edu", "odc-by"),
    "textbooks": ("princeton-nlp/TextbookChapters", "see the dataset page"),
    "wikipedia": ("allenai/dolma, wiki", "odc-by"),
    "openwebmath": ("open-web-math/open-web-math", "odc-by"),
    "tulu": ("allenai/tulu-v2-sft-mixture", "odc-by"),
    "ultrachat": ("HuggingFaceH4/ultrachat_200k", "mit"),
}
SECTIONS = (
    "Sources",
    "Tokenizer",
    "Output",
    "Length statistics",
    "Skipped records",
    "Duplicates and contamination",
    "Packing waste",
    "Validation",
    "Smoke test",
    "Reproducibility",
    "Configuration",
)


def git_commit() -> str:
    try:
        found = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            check=True,
        )
        return found.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def write_card(output: Path, cards: Path, validation: dict[str, Any] | None = None) -> Path:
    """Render the card of the local output `output` into `cards/<run>/README.md` (images
    beside it) and copy it to `output/README.md` (images in `output/card/`). Validation and
    smoke results saved beside the output are included."""
    report = json.loads((output / REPORT_FILE).read_text())
    if validation is None:
        validation = saved(output / VALIDATION_FILE)
    smoke = saved(output / SMOKE_FILE)
    stats = json.loads((output / STATS_FILE).read_text())
    mix = yaml.safe_load((output / MIX_FILE).read_text())
    config = yaml.safe_load((output / "config.resolved.yaml").read_text())
    folder = cards / report["run"]
    images = {stage: f"{stage}.png" for stage in STAGES if stats["histograms"][stage]}
    drawn = [histogram_png(stats, stage, folder / name) for stage, name in images.items()]
    if smoke:
        drawn.append(loss_png(smoke["history"], folder / SMOKE_IMAGE))
    if smoke and smoke.get("position_loss"):
        drawn.append(
            evaluation_png(smoke["position_loss"], smoke["extension"], folder / EVALUATION_IMAGE)
        )
    (output / "card").mkdir(exist_ok=True)
    for image in drawn:  # drawn once (matplotlib takes ~0.8 s an image), copied beside the output
        shutil.copyfile(image, output / "card" / image.name)
    inputs = recorded_versions(str(output), StorageOptions()) or []
    facts = (report, stats, mix, config, validation, smoke, inputs, output)
    write_owned_text(folder / "README.md", render(*facts, image_prefix=""))
    write_owned_text(output / "README.md", render(*facts, image_prefix="card/"))
    return folder / "README.md"


def refresh_card(output: Path) -> Path:
    """Rewrite an output's card where its run put it."""
    config = parse_config(yaml.safe_load((output / "config.resolved.yaml").read_text()))
    return write_card(output, Path(config.resolve(config.run.cards)))


def saved(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def front_matter(report: dict, mix: dict, config: dict) -> str:
    tokens = sum(d["tokens"] for d in mix["domains"].values())
    described = [described_source(s) for s in config["sources"].values()]
    licenses = sorted({license_name for _, license_name, _ in described})
    languages = sorted({code for _, _, codes in described for code in codes})
    meta = {
        "pretty_name": f"longmix run {report['run']}",
        "license": licenses[0] if len(licenses) == 1 and " " not in licenses[0] else "other",
        "license_details": "; ".join(licenses),
        **({"language": languages} if languages else {}),
        "task_categories": ["text-generation"],
        "tags": ["long-context", "prolong", "longmix", "mosaicml-streaming"],
        "size_categories": [size_category(sum(d["sequences"] for d in mix["domains"].values()))],
        "configs": [{"config_name": name, "data_dir": name} for name in mix["domains"]],
        "longmix": {
            "version": __version__,
            "config_sha256": report["config_sha256"],
            "tokens": tokens,
        },
    }
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def size_category(samples: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if samples < limit:
            return name
    return "n>100K"


def output_sentence(mix: dict[str, Any]) -> str:
    if mix.get("materialized", True):
        return (
            "The mix is materialized: each directory holds its sampled (and repeated) share, "
            "and an epoch reads every stored sample once."
        )
    return (
        "Every packed sequence is stored once; the mix and the token budget are realized when "
        f"streaming reads the directories with mix.yaml's proportions and an epoch of "
        f"{mix.get('epoch_size', 0):,} samples (`repeat`: reads per stored sample)."
    )


def render(
    report: dict,
    stats: dict,
    mix: dict,
    config: dict,
    validation: dict | None,
    smoke: dict | None,
    inputs: list[InputVersion],
    output: Path,
    image_prefix: str,
) -> str:
    views = paper_tables(stats)
    sources = Table(
        "", ["source", "origin", "license", "language", "documents", "MB"], text_columns=4
    )
    for name, source in config["sources"].items():
        origin, license_name, languages = described_source(source)
        documents = report["documents"].get(name, {}).values()
        count = sum(n["documents"] for n in documents)
        size = sum(n["bytes"] for n in documents) / 1e6
        sources.rows.append(
            [name, origin, license_name, ", ".join(languages), f"{count:,}", f"{size:,.1f}"]
        )
    lines = [front_matter(report, mix, config), CARD_MARK, f"# longmix run `{report['run']}`", ""]
    lines += [
        "Packed long-context training data in mosaicml-streaming (MDS) format, made by "
        f"longmix {__version__} following the ProLong recipe. Read it with "
        "`streaming.StreamingDataset` over the `streams` of `mix.yaml`, or pass `dirs` "
        "(`dir@proportion`) to ProLong's trainer.",
        "",
        "## Sources",
        "",
        *sources.markdown(),
        "",
        "## Tokenizer",
        "",
        *[f"- {key}: `{value}`" for key, value in report["tokenizer"].items()],
        *separator_lines(report["tokenizer"]),
        "",
        "## Output",
        "",
        output_sentence(mix),
        "",
        *mix_table(mix["domains"]).markdown(),
        "",
        "## Length statistics",
        "",
    ]
    long = views.get("long_tokens_per_source", {})
    if long:
        table = long_tokens_table(long, stats["long_document_tokens"])
        lines += [*table.markdown(titled=True), ""]
    share = share_over_table({"": views["share_over_after_packing"]})
    lines += [
        *share.markdown(titled=True),
        "",
        *[
            f"![token lengths, {stage}]({image_prefix}{stage}.png)"
            for stage in STAGES
            if stats["histograms"][stage]
        ],
        "",
        "## Skipped records",
        "",
    ]
    skipped = skipped_table(report)
    lines += skipped.markdown() if skipped.rows else ["No record was left out."]
    lines += ["", "## Duplicates and contamination", "", *duplicate_lines(report)]
    lines += ["", "## Packing waste", "", *packing_table(report).markdown()]
    lines += ["", "## Validation", ""]
    if validation is None:
        lines.append("Not run for this card: `longmix card PATH` validates before writing.")
    elif validation["ok"]:
        samples = sum(validation["samples"].values())
        lines.append(f"`longmix validate`: every one of {samples:,} samples valid.")
    else:
        lines.append(f"`longmix validate`: {plural(len(validation['failures']), 'problem')}:")
        lines += [f"- {f['directory']}: {f['rule']}: {f['detail']}" for f in validation["failures"]]
    if validation and validation.get("warnings"):
        lines += ["", "Warnings:", *[f"- {w}" for w in validation["warnings"]]]
    lines += ["", "## Smoke test", ""]
    if smoke:
        lines += [*card_lines(smoke), "", f"![smoke loss]({image_prefix}{SMOKE_IMAGE})"]
        if smoke.get("position_loss"):
            lines.append(f"![held-out loss]({image_prefix}{EVALUATION_IMAGE})")
    else:
        lines.append("Not run: `longmix smoke PATH` records it here.")
    lines += [
        "",
        "## Reproducibility",
        "",
        f"- longmix {__version__}, git commit `{git_commit()}`; seed {config['run']['seed']}",
        f"- config sha256 `{report['config_sha256']}`",
        f"- inputs sha256 `{report.get('inputs_sha256', 'not recorded')}` (role, file, size and "
        "stamp of every input below; a rerun whose inputs differ writes the output again)",
        "- rerunning the same config on the same inputs gives byte-identical shards",
        "",
        *Table(
            "input files as listed when the run started: size, modification time (UTC) and "
            "stamp (modification time in ns, S3 ETag, or sha256 with run.inputs_check: content)",
            ["role", "file", "bytes", "modified", "stamp"],
            [[v.role, v.uri, f"{v.size:,}", v.modified, v.stamp] for v in inputs],
        ).markdown(titled=True),
        "",
        *Table(
            "shards (sha1 from each directory's index.json)",
            ["shard", "samples", "sha1"],
            shard_rows(output, mix),
        ).markdown(titled=True),
    ]
    lines += [
        "",
        "## Configuration",
        "",
        f"Config sha256 `{report['config_sha256']}`; seed {config['run']['seed']}. As run:",
        "",
        "```yaml",
        yaml.safe_dump(config, sort_keys=False).rstrip(),
        "```",
    ]
    return "\n".join(lines) + "\n"


def described_source(source: dict[str, Any]) -> tuple[str, str, list[str]]:
    """(origin, license, languages) of a source as the card states them: what its config
    says, else for a preset the published dataset's, else "not stated"."""
    preset = source.get("preset")
    dataset, license_name = SOURCES.get(preset, (None, None)) if preset else (None, None)
    stated = source.get("language")
    languages = [stated] if isinstance(stated, str) else list(stated or [])
    if not languages and preset:
        languages = ["en"]
    origin = source.get("origin") or dataset or f"own files ({source.get('format')})"
    return origin, source.get("license") or license_name or "not stated", languages


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def separator_lines(tokenizer: dict[str, Any]) -> list[str]:
    if tokenizer.get("bos_id") is None and tokenizer.get("eos_id") is None:
        return ["- **documents are packed with no separator token**: only `indices` mark them"]
    return []


def duplicate_lines(report: dict[str, Any]) -> list[str]:
    found = report.get("duplicates")
    if found is None:
        return ["Not counted: this output predates duplicate counting."]
    lines = [*duplicates_table(found).markdown(titled=True)] if found["sources"] else []
    if not found["sources"]:
        lines.append(f"No exact duplicates (text normalized: {found['normalize']}).")
    if "contamination" in report:
        lines += ["", *contamination_table(report["contamination"]).markdown(titled=True)]
    else:
        lines += ["", "Not checked against evaluation text (`decontaminate.paths` is empty)."]
    return lines


def shard_rows(output: Path, mix: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name in mix["domains"]:
        index = json.loads((output / name / "index.json").read_text())
        for shard in index["shards"]:
            raw = shard.get("zip_data") or shard["raw_data"]
            rows.append(
                [f"{name}/{raw['basename']}", str(shard["samples"]), f"`{raw['hashes']['sha1']}`"]
            )
    return rows
