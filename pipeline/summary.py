"""The run report's sections, built from the tasks' merged Tally."""

from __future__ import annotations

from typing import Any

from longmix.stages.logic.counts import ANY_FILE
from longmix.stages.logic.tally import Tally

PACKING_FIELDS = (
    "documents_in",
    "tokens_in",
    "special_tokens_added",
    "padding_tokens",
    "sequences",
    "tokens_out",
    "segments",
)


def sources_section(tally: Tally) -> dict[str, Any]:
    """Per source: documents and bytes by domain; skipped records by reason and file."""
    sources: dict[str, Any] = {}

    def entry(source: str) -> dict[str, Any]:
        return sources.setdefault(source, {"domains": {}, "skipped": {}})

    for (source, domain), numbers in tally.where("read").items():
        entry(source)["domains"][domain] = numbers
    for (source, reason, file), numbers in tally.where("skipped").items():
        found = entry(source)["skipped"].setdefault(
            reason, {"count": 0, "counts_as_bad": bool(numbers["max_bad"]), "files": {}}
        )
        found["count"] += numbers["count"]
        found["files"][file] = {
            "count": numbers["count"],
            "first_record": numbers["first_record"],
            "example": numbers["example"],
        }
    return sources


def documents_section(tally: Tally) -> dict[str, Any]:
    """Per source and domain: documents, bytes, groups and groups split into parts."""
    out: dict[str, Any] = {}
    for (source, domain), numbers in tally.where("documents").items():
        out.setdefault(source, {})[domain] = numbers
    return out


def packing_section(tally: Tally) -> dict[str, Any]:
    """Per domain and length: documents and tokens in, sequences and tokens out, special and
    padding tokens added, drops by reason, whether every token is accounted for, and the
    share of documents split across sequences by concatenation and by best-fit-decreasing."""
    out: dict[str, Any] = {}
    for (domain, length), numbers in tally.where("packing").items():
        section = {name: numbers.get(name, 0) for name in PACKING_FIELDS}
        documents = max(1, section["documents_in"])
        if "truncated_concat" in numbers:
            section["truncation_rate"] = {
                method: round(numbers[f"truncated_{method}"] / documents, 6)
                for method in ("concat", "bfd")
            }
        out.setdefault(domain, {})[length] = {**section, "dropped": {}}
    for (domain, length, reason), numbers in tally.where("dropped").items():
        section = out.setdefault(domain, {}).setdefault(
            length, {**dict.fromkeys(PACKING_FIELDS, 0), "dropped": {}}
        )
        section["dropped"][reason] = numbers
    for lengths in out.values():
        for n in lengths.values():
            dropped = sum(d["tokens"] for d in n["dropped"].values())
            added = n["special_tokens_added"] + n["padding_tokens"]
            n["tokens_accounted"] = n["tokens_in"] + added == n["tokens_out"] + dropped
    return out


def duplicates_section(
    copies: list[dict[str, Any]], groups: list[dict[str, Any]], removed: bool
) -> dict[str, Any]:
    """Copies per source (within it, across sources, within one group), per pair of sources
    (copy's source -> the original's), and whole groups that copy another. Tokens are those
    the copies were tokenized to; removed copies never are, so they carry none."""
    sources: dict[str, Any] = {}
    pairs: dict[str, Any] = {}
    for row in copies:
        entry = sources.setdefault(
            row["source"], {"within_source": 0, "across_sources": 0, "within_group": 0}
        )
        add_counts(entry, row)
        within = row["source"] == row["original_source"]
        entry["within_source" if within else "across_sources"] += row["documents"]
        entry["within_group"] += row["documents"] if row["same_group"] else 0
        if not within:
            add_counts(
                pairs.setdefault(row["source"], {}).setdefault(row["original_source"], {}), row
            )
    whole: dict[str, Any] = {}
    for row in groups:
        entry = whole.setdefault(row["source"], {"groups": 0})
        entry["groups"] += row["groups"]
        add_counts(entry, row)
    return {"removed": removed, "sources": sources, "pairs": pairs, "groups": whole}


def add_counts(entry: dict[str, Any], row: dict[str, Any]) -> None:
    for name in ("documents", "bytes", "tokens"):
        if row[name] is not None:
            entry[name] = entry.get(name, 0) + row[name]


def contamination_section(tally: Tally, index: dict[str, Any], removed: bool) -> dict[str, Any]:
    """Documents sharing an n-gram with evaluation text, per source and evaluation file."""
    sources: dict[str, Any] = {}
    for (source, name), numbers in tally.where("contaminated").items():
        entry = sources.setdefault(source, {"documents": 0, "bytes": 0, "files": {}})
        if name == ANY_FILE:
            entry.update(numbers)
        else:
            entry["files"][name] = numbers
    return {"removed": removed, "evaluation": index, "sources": sources}
