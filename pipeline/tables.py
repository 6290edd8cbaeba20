"""Every table longmix shows, built once and rendered for the terminal (rich) or for the data
card (Markdown): what a run did, the paper's length tables, the mix, a validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.table import Table as RichTable


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    text_columns: int = 1  # the first columns hold names (left-aligned), the rest numbers

    def rich(self) -> RichTable:
        """The table for a console; a number is never cut: its column is as wide as its
        widest cell, and names wrap instead."""
        table = RichTable(title=self.title)
        for k, column in enumerate(self.columns):
            if k < self.text_columns:  # names fold, but never below 12 columns
                widest = max((len(row[k]) for row in self.rows), default=len(column))
                table.add_column(column, justify="left", overflow="fold", min_width=min(12, widest))
                continue
            widest = max((len(row[k]) for row in self.rows), default=0)
            table.add_column(column, justify="right", no_wrap=True, min_width=widest)
        for row in self.rows:
            table.add_row(*row)
        return table

    def markdown(self, titled: bool = False) -> list[str]:
        """The table's lines; `titled`: after its title as a sentence."""
        title = [f"{self.title[:1].upper()}{self.title[1:]}:", ""] if titled else []
        return [
            *title,
            "| " + " | ".join(self.columns) + " |",
            "|" + "---|" * len(self.columns),
            *["| " + " | ".join(row) + " |" for row in self.rows],
        ]


def documents_table(report: dict[str, Any]) -> Table:
    table = Table(
        f"longmix run {report['run']!r}: documents",
        ["source", "domain", "documents", "MB", "split groups"],
        text_columns=2,
    )
    for source, domains in report["documents"].items():
        for domain, n in domains.items():
            table.rows.append(
                [
                    source,
                    domain,
                    f"{n['documents']:,}",
                    f"{n['bytes'] / 1e6:,.1f}",
                    f"{n['split_groups']:,}",
                ]
            )
    return table


def skipped_table(report: dict[str, Any]) -> Table:
    table = Table(
        "records left out (details in _report.json)",
        ["source", "reason", "records", "files", "counts as bad input"],
        text_columns=2,
    )
    for source, info in report["sources"].items():
        for reason, entry in info["skipped"].items():
            bad = "yes" if entry["counts_as_bad"] else "no"
            table.rows.append(
                [source, reason, f"{entry['count']:,}", str(len(entry["files"])), bad]
            )
    return table


def duplicates_table(section: dict[str, Any]) -> Table:
    """Per source: copies of an earlier document (removed or only counted), of one in the same
    source, in the same group (a file repeated inside a repository), of other sources; and
    whole groups (repositories) that copy another."""
    verb = "removed" if section["removed"] else "counted, kept"
    table = Table(
        f"exact duplicates ({verb}; text normalized: {section['normalize']})",
        [
            "source",
            "copies",
            "of the same source",
            "in the same group",
            "of other sources",
            "tokens",
            "copied groups",
        ],
    )
    for source, n in sorted(section["sources"].items()):
        others = section["pairs"].get(source, {})
        of_others = ", ".join(f"{o} {p['documents']:,}" for o, p in sorted(others.items()))
        tokens = f"{n['tokens']:,}" if "tokens" in n else "not tokenized"
        groups = section["groups"].get(source, {}).get("groups", 0)
        table.rows.append(
            [
                source,
                f"{n['documents']:,}",
                f"{n['within_source']:,}",
                f"{n['within_group']:,}",
                of_others or "0",
                tokens,
                f"{groups:,}",
            ]
        )
    return table


def contamination_table(section: dict[str, Any]) -> Table:
    """Per source and evaluation file: documents sharing an n-gram with it."""
    evaluation = section["evaluation"]
    verb = "removed" if section["removed"] else "counted, kept"
    table = Table(
        f"documents sharing a {evaluation['ngram_words']}-word n-gram with evaluation text "
        f"({verb}; {evaluation['ngrams']:,} evaluation n-grams)",
        ["source", "evaluation file", "documents", "MB"],
        text_columns=2,
    )
    for source, n in sorted(section["sources"].items()):
        for name, found in sorted(n["files"].items()):
            row = [source, name, f"{found['documents']:,}", f"{found['bytes'] / 1e6:,.2f}"]
            table.rows.append(row)
    return table


def packing_table(report: dict[str, Any]) -> Table:
    """Per domain and length: what went in, what came out, and every token not trained on."""
    table = Table(
        f"packed sequences ({report['tokenizer']['name']} tokens)",
        [
            "domain",
            "length",
            "docs",
            "tokens in",
            "sequences",
            "dropped",
            "padding",
            "split docs: concat / bfd",
            "accounted",
        ],
    )
    for domain, lengths in sorted(report["packing"].items()):
        for length, n in sorted(lengths.items()):
            table.rows.append(
                [
                    domain,
                    length,
                    f"{n['documents_in']:,}",
                    f"{n['tokens_in']:,}",
                    f"{n['sequences']:,}",
                    dropped(n),
                    f"{n['padding_tokens']:,}",
                    truncation(n),
                    "yes" if n["tokens_accounted"] else "NO",
                ]
            )
    return table


def dropped(numbers: dict[str, Any]) -> str:
    """Dropped tokens by reason."""
    return ", ".join(f"{r} {d['tokens']:,}" for r, d in numbers["dropped"].items()) or "0"


def truncation(numbers: dict[str, Any]) -> str:
    rates = numbers.get("truncation_rate")
    return f"{rates['concat']:.1%} / {rates['bfd']:.1%}" if rates else "-"


def mix_table(directories: dict[str, Any]) -> Table:
    """mix.yaml's directories (its `domains`): what each stores and what an epoch reads."""
    table = Table(
        "MDS output (mix.yaml)",
        [
            "directory",
            "stored sequences",
            "tokens",
            "proportion",
            "samples an epoch",
            "token fraction: target / an epoch",
            "repeat",
        ],
    )
    for name, n in directories.items():
        table.rows.append(
            [
                name,
                f"{n['sequences']:,}",
                f"{n['tokens']:,}",
                f"{n['proportion']:.4f}",
                f"{n.get('epoch_samples', n['sequences']):,}",
                f"{n['target_token_fraction']:.4f} / {n['token_fraction']:.4f}",
                f"{n['repeat']:.2f}",
            ]
        )
    return table


def long_tokens_table(rows: dict[str, dict[str, int]], long: int) -> Table:
    """Paper Table 3."""
    table = Table(
        f"tokens in documents of at least {long:,} tokens (paper Table 3)",
        ["source/domain", "long tokens", "long documents", "all tokens", "share of tokens"],
    )
    for name, n in sorted(rows.items()):
        share = n["tokens"] / n["all_tokens"] if n["all_tokens"] else 0
        table.rows.append(
            [
                name,
                f"{n['tokens']:,}",
                f"{n['documents']:,}",
                f"{n['all_tokens']:,}",
                f"{share:.1%}",
            ]
        )
    return table


def share_over_table(named: dict[str, dict[str, dict[str, float]]]) -> Table:
    """Paper Table 14 for one dataset, or side by side for several."""
    thresholds = sorted({t for rows in named.values() for r in rows.values() for t in r}, key=int)
    suffix = {name: f" ({name})" if len(named) > 1 else "" for name in named}
    table = Table(
        "% of documents of at least N tokens after packing (paper Table 14)",
        ["domain", *[f"{int(t) // 1024}K{suffix[n]}" for n in named for t in thresholds]],
    )
    for domain in sorted({d for rows in named.values() for d in rows}):
        cells = [
            f"{rows[domain][t]:.1f}" if domain in rows else "-"
            for rows in named.values()
            for t in thresholds
        ]
        table.rows.append([domain, *cells])
    return table


def validation_table(path: str, samples: dict[str, int], tokens: dict[str, int]) -> Table:
    table = Table(f"{path}: every sample valid", ["directory", "samples", "tokens"])
    for directory in sorted(samples):
        table.rows.append([directory, f"{samples[directory]:,}", f"{tokens[directory]:,}"])
    return table
