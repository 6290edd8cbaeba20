"""Source presets: how each published corpus maps onto longmix documents.

A preset names the file format, the columns that hold text (or chat messages), the id, the
domain and, for sources whose documents are concatenations (Stack repositories, textbooks),
the keys to group by. Every field can be remapped per source in the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, get_args

# jsonl: one JSON object a line (also .json.gz / .jsonl.zst); parquet; arrow: Arrow IPC files,
# as Hugging Face `datasets.save_to_disk` writes them; text: one document per file.
Format = Literal["jsonl", "parquet", "arrow", "text"]
FORMATS: tuple[str, ...] = get_args(Format)


@dataclass(frozen=True)
class SourceSpec:
    """How to turn the records of one source into documents."""

    name: str
    domain: str
    format: Format
    text_column: str | None = "text"
    messages_column: str | None = None
    id_column: str | None = None
    # Concatenation keys: one output document per `group`; inside it, `subgroup`s (books) in
    # seeded random order, members ordered by `position` when given, else seeded random.
    group_column: str | None = None
    subgroup_column: str | None = None
    member_column: str | None = None
    position_column: str | None = None
    # A per-record domain (SlimPajama's set name), mapped to longmix domains; unmapped
    # records are left out and counted.
    domain_column: str | None = None
    domain_map: dict[str, str] = field(default_factory=dict)
    header: str = ""
    joiner: str = "\n"

    @property
    def kind(self) -> str:
        return "chat" if self.messages_column else "text"

    @property
    def domains(self) -> tuple[str, ...]:
        """Every domain this source's documents can have."""
        if self.domain_column:
            return tuple(sorted(set(self.domain_map.values())))
        return (self.domain,)

    @property
    def concatenated(self) -> bool:
        return self.group_column is not None

    def with_overrides(self, **overrides: object) -> SourceSpec:
        return replace(self, **overrides)

    @classmethod
    def generic(cls, name: str, format: Format, **fields: object) -> SourceSpec:
        """A source of the user's own files: its domain is its name unless given."""
        return cls(
            name=name, domain=str(fields.pop("domain", None) or name), format=format, **fields
        )

    def required_columns(self) -> list[str]:
        """Top-level columns a file must have to be read as this source."""
        names = [
            self.messages_column if self.kind == "chat" else self.text_column,
            self.group_column,
            self.subgroup_column,
            self.member_column,
            self.position_column,
            self.domain_column,
        ]
        return [n.split(".")[0] for n in names if n]

    def optional_columns(self) -> list[str]:
        return [self.id_column] if self.id_column else []


SLIMPAJAMA_DOMAINS = {
    "RedPajamaBook": "book",
    "RedPajamaArXiv": "arxiv",
    "RedPajamaStackExchange": "stackexchange",
}

PRESETS: dict[str, SourceSpec] = {
    spec.name: spec
    for spec in [
        SourceSpec(
            name="stack",
            format="parquet",
            domain="thestackv1_concat_by_repo",
            text_column="content",
            id_column="hexsha",
            group_column="max_stars_repo_name",
            member_column="max_stars_repo_path",
            header="{member}\n",
            joiner="\n",
        ),
        SourceSpec(
            name="slimpajama",
            format="jsonl",
            domain="slimpajama",
            domain_column="meta.redpajama_set_name",
            domain_map=SLIMPAJAMA_DOMAINS,
        ),
        SourceSpec(name="fineweb", format="parquet", domain="fineweb-2023-50", id_column="id"),
        SourceSpec(name="fineweb-edu", format="parquet", domain="fineweb-edu", id_column="id"),
        SourceSpec(
            name="textbooks",
            format="parquet",
            domain="textbooks",
            group_column="subject",
            subgroup_column="book",
            position_column="chapter",
            joiner="\n\n",
        ),
        SourceSpec(name="wikipedia", format="jsonl", domain="dolmawiki", id_column="id"),
        SourceSpec(name="openwebmath", format="parquet", domain="openwebmath", id_column="url"),
        SourceSpec(
            name="tulu",
            format="jsonl",
            domain="tuluv2",
            text_column=None,
            messages_column="messages",
            id_column="id",
        ),
        SourceSpec(
            name="ultrachat",
            format="parquet",
            domain="ultrachat",
            text_column=None,
            messages_column="messages",
            id_column="prompt_id",
        ),
    ]
}
