"""The smoke run's report and verdict: printed, saved as JSON beside the output
(`_smoke.json`) and rendered into the data card."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console

from longmix.pipeline.config import SmokeConfig
from longmix.pipeline.tables import Table
from longmix.pipeline.trainer.balance import Balance, attended_pairs
from longmix.pipeline.trainer.data import Output, Sample

SMOKE_FILE = "_smoke.json"


@dataclass(frozen=True)
class StepRecord:
    loss: float
    tokens: int
    trained_tokens: int
    seconds: float
    lr: float


@dataclass(frozen=True)
class SmokeReport:
    data: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.data["ok"]

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2)


def build_report(
    output: Output,
    settings: SmokeConfig,
    runtime: dict[str, Any],
    samples: list[Sample],
    records: list[StepRecord],
    balanced: Balance,
    evaluation: dict[str, Any] | None = None,
) -> SmokeReport:
    tolerance = output.mix["tolerance"] if settings.tolerance is None else settings.tolerance
    losses = [r.loss for r in records]
    data = {
        "path": output.path,
        "runtime": runtime,
        "steps": settings.steps,
        "devices": settings.devices,
        "accumulation": settings.accumulation,
        "samples": len(samples),
        "tokens": sum(s.length for s in samples),
        "trained_tokens": sum(r.trained_tokens for r in records),
        "history": [asdict(r) for r in records],
        "loss": loss_summary(losses, settings.min_loss_drop),
        "tokens_per_second": throughput(records),
        "domains": domain_shares(output, samples, tolerance),
        "tolerance": tolerance,
        "attention": attention_flops(samples, runtime["hidden_size"], runtime["layers"]),
        "balance": {**asdict(balanced), "speedup": balanced.speedup},
        **(evaluation or {}),
    }
    data["problems"] = problems(data)
    data["ok"] = not data["problems"]
    return SmokeReport(data)


def loss_summary(losses: list[float], min_drop: float) -> dict[str, Any]:
    """Mean loss over the first and the last quarter of the steps; it decreased when the last
    is below the first by at least `min_drop` of it (step-to-step noise is not learning)."""
    quarter = max(1, len(losses) // 4)
    first = sum(losses[:quarter]) / quarter
    last = sum(losses[-quarter:]) / quarter
    return {
        "first": first,
        "last": last,
        "steps_averaged": quarter,
        "finite": all(math.isfinite(x) for x in losses),
        "min_drop": min_drop,
        "decreased": last < first * (1 - min_drop),
    }


def throughput(records: list[StepRecord]) -> float:
    """Tokens per second, leaving out the first step (compilation and allocator warm-up)."""
    timed = records[1:] or records
    return sum(r.tokens for r in timed) / max(1e-9, sum(r.seconds for r in timed))


def domain_shares(output: Output, samples: list[Sample], tolerance: float) -> list[dict]:
    """Each domain's share of the tokens the run trained on, against its token fraction in
    mix.yaml. streaming gives every directory floor or ceil of its proportion of the epoch,
    so a share can miss by up to one sample per directory: the allowance is the tolerance
    plus that granularity."""
    tokens: Counter = Counter()
    for sample in samples:
        tokens[sample.domain] += sample.length
    total = sum(tokens.values()) or 1
    expected: dict[str, float] = defaultdict(float)
    granularity: dict[str, int] = defaultdict(int)
    for numbers in output.directories.values():
        if numbers["sequences"]:
            expected[numbers["domain"]] += numbers["token_fraction"]
            granularity[numbers["domain"]] += numbers["length"]
    rows = []
    for domain in sorted(expected):
        share = tokens[domain] / total
        allowed = tolerance + granularity[domain] / total
        rows.append(
            {
                "domain": domain,
                "tokens": tokens[domain],
                "share": share,
                "expected": expected[domain],
                "allowed": allowed,
                "ok": abs(share - expected[domain]) <= allowed,
            }
        )
    return rows


def attention_flops(samples: list[Sample], hidden: int, layers: int) -> dict[str, float]:
    """Attention score and value FLOPs (forward and backward, 12 x hidden per query-key pair
    per layer) with document masking and with causal attention over whole sequences."""
    masked = sum(attended_pairs(s.indices) for s in samples)
    full = sum(s.length * (s.length + 1) // 2 for s in samples)
    per_pair = 12 * hidden * layers
    return {
        "pairs_masked": masked,
        "pairs_full": full,
        "flops_masked": masked * per_pair,
        "flops_full": full * per_pair,
        "ratio": masked / full if full else 1.0,
    }


def problems(data: dict[str, Any]) -> list[str]:
    out = []
    loss = data["loss"]
    if not loss["finite"]:
        bad = next(i for i, r in enumerate(data["history"], 1) if not math.isfinite(r["loss"]))
        out.append(f"loss is not finite (first at step {bad})")
    elif not loss["decreased"]:
        out.append(
            f"loss did not decrease by {loss['min_drop']:.0%}: {loss['first']:.4f} over the "
            f"first {loss['steps_averaged']} steps, {loss['last']:.4f} over the last"
        )
    for row in data["domains"]:
        if not row["ok"]:
            out.append(
                f"{row['domain']}: {row['share']:.4f} of trained tokens, mix.yaml says "
                f"{row['expected']:.4f} (allowed +-{row['allowed']:.4f})"
            )
    return out


def print_report(data: dict[str, Any], console: Console) -> None:
    runtime = data["runtime"]
    console.print(
        f"smoke: {data['steps']} steps x {data['devices']} devices x {data['accumulation']} "
        f"micro-batches, {data['samples']} samples, {data['tokens']:,} tokens; "
        f"{runtime['device']}, attention {runtime['attention']}, {runtime['dtype']}, "
        f"Llama {runtime['layers']}x{runtime['hidden_size']} "
        f"({runtime['parameters']:,} parameters, vocab {runtime['vocab_size']:,} "
        f"{runtime['vocab']}), rope theta {runtime['rope_theta']:g}",
        soft_wrap=True,
    )
    losses = " ".join(f"{r['loss']:.3f}" for r in data["history"])
    console.print(f"loss per step: {losses}", soft_wrap=True)
    console.print(f"tokens/s: {data['tokens_per_second']:,.0f}")
    console.print(domains_table(data).rich())
    for line in headline(data):
        console.print(line, soft_wrap=True)
    if "position_loss" in data:
        console.print(position_table(data).rich())
        console.print(extension_table(data).rich())
    verdict = "[green]PASS[/]" if data["ok"] else "[red]FAIL[/]: " + "; ".join(data["problems"])
    console.print(f"verdict: {verdict}", soft_wrap=True)


def headline(data: dict[str, Any]) -> list[str]:
    attention, balanced = data["attention"], data["balance"]
    return [
        f"attention FLOPs with document masking: {attention['flops_masked']:.3g} against "
        f"{attention['flops_full']:.3g} for full causal attention "
        f"({attention['ratio']:.1%})",
        f"load balance over {balanced['devices']} simulated devices (slowest / mean attention "
        f"cost): {balanced['imbalance_without']:.3f} in stream order, "
        f"{balanced['imbalance_with']:.3f} with minibatch reordering "
        f"({balanced['speedup']:.3f}x)",
    ]


def card_lines(data: dict[str, Any]) -> list[str]:
    """The data card's smoke-test section (markdown)."""
    runtime, loss = data["runtime"], data["loss"]
    verdict = "passed" if data["ok"] else "FAILED: " + "; ".join(data["problems"])
    lines = [
        f"`longmix smoke` {verdict}. {data['steps']} steps of {data['devices']} x "
        f"{data['accumulation']} micro-batches ({data['tokens']:,} tokens) on "
        f"{runtime['device']} with `{runtime['attention']}` attention, a "
        f"{runtime['layers']}-layer Llama of width {runtime['hidden_size']}: loss "
        f"{loss['first']:.3f} -> {loss['last']:.3f} (first and last {loss['steps_averaged']} "
        f"steps), {data['tokens_per_second']:,.0f} tokens/s.",
        "",
        *[f"- {line}" for line in headline(data)],
        "",
        *domains_table(data).markdown(),
    ]
    if "position_loss" in data:
        held = data["held_out"]
        lines += [
            "",
            f"Held-out evaluation ({held['samples']} samples, {held['documents']} long "
            f"documents; {held['rule']}):",
            "",
            *position_table(data).markdown(titled=True),
            "",
            *extension_table(data).markdown(titled=True),
        ]
    return lines


def domains_table(data: dict[str, Any]) -> Table:
    table = Table(
        "trained tokens per domain",
        ["domain", "trained tokens", "share", "mix.yaml", "allowed", ""],
    )
    for row in data["domains"]:
        table.rows.append(
            [
                row["domain"],
                f"{row['tokens']:,}",
                f"{row['share']:.4f}",
                f"{row['expected']:.4f}",
                f"+-{row['allowed']:.4f}",
                "ok" if row["ok"] else "off",
            ]
        )
    return table


def position_table(data: dict[str, Any]) -> Table:
    table = Table(
        "held-out loss by position inside documents",
        ["directory", "positions", "tokens", "loss"],
        text_columns=2,
    )
    for directory, bins in data["position_loss"].items():
        for start, end, tokens, loss in bins:
            table.rows.append([directory, f"{start:,}-{end:,}", f"{tokens:,}", f"{loss:.3f}"])
    return table


def extension_table(data: dict[str, Any]) -> Table:
    ext = data["extension"]
    table = Table(
        f"held-out loss past the trained length {ext['lengths'][0]:,} ({ext['documents']} "
        f"documents; Self-Extend G {ext['group_size']}, w_n {ext['neighbor_window']:,}, "
        f"up to {ext['max_length']:,} tokens)",
        ["tokens", "RoPE", "Self-Extend"],
    )
    for length, rope, extended in zip(ext["lengths"], ext["rope"], ext["self_extend"], strict=True):
        table.rows.append([f"{length:,}", loss_cell(rope), loss_cell(extended)])
    return table


def loss_cell(loss: float | None) -> str:
    return "no document this long" if loss is None else f"{loss:.3f}"
