"""What each stage adds to the run's tally: the report's numbers, counted in the tasks."""

from __future__ import annotations

from typing import Any

from longmix.stages.logic.pack import Drops
from longmix.stages.logic.schemas import SpecKey
from longmix.stages.logic.tally import Tally

READ_TALLY_COLUMNS = [
    "source",
    "domain",
    "bytes",
    "file",
    "record",
    "skip_reason",
    "skip_detail",
    "skip_bad",
    "skip_records",
    "contaminated",
]
ANY_FILE = "*"  # a contaminated document counted once, whichever files it overlaps
DOCUMENT_TALLY_COLUMNS = ["source", "domain", "bytes", "group", "part", "members"]


def count_record(tally: Tally, row: dict[str, Any]) -> None:
    """A READ_SCHEMA row into the report's read numbers: kept by domain, skipped by reason,
    and documents sharing n-grams with evaluation files (kept or not) by source and file."""
    for name in row["contaminated"] or ():
        tally.add(("contaminated", row["source"], name), documents=1, bytes=row["bytes"])
    if row["contaminated"]:
        tally.add(("contaminated", row["source"], ANY_FILE), documents=1, bytes=row["bytes"])
    if row["skip_reason"] is None:
        tally.add(("read", row["source"], row["domain"]), documents=1, bytes=row["bytes"])
        return
    key = ("skipped", row["source"], row["skip_reason"], row["file"])
    tally.add(key, count=row["skip_records"] or 1)
    tally.maximum(key, "max_bad", int(row["skip_bad"]))
    tally.first(key, row["record"], row["skip_detail"])


def count_document(tally: Tally, document: dict[str, Any]) -> None:
    key = ("documents", document["source"], document["domain"])
    grouped = document["group"] is not None
    tally.add(
        key,
        documents=1,
        bytes=document["bytes"],
        members=document["members"],
        groups=int(grouped and document["part"] == 0),
        split_groups=int(grouped and document["part"] == 1),
    )
    tally.maximum(key, "max_document_bytes", document["bytes"])


def packing_key(key: SpecKey) -> tuple[str, str, str]:
    return ("packing", key[0], str(key[1]))


def count_drops(tally: Tally, key: SpecKey, drops: Drops) -> None:
    """A packer's drops and added special tokens into the report's packing numbers."""
    truncated = {f"truncated_{method}": count for method, count in drops.truncated.items()}
    tally.add(
        packing_key(key),
        special_tokens_added=drops.added_specials,
        padding_tokens=drops.padding,
        **truncated,
    )
    for reason, tokens in drops.tokens.items():
        tally.add(
            ("dropped", key[0], str(key[1]), reason),
            tokens=tokens,
            documents=drops.documents[reason],
        )
