"""Everything in longmix that needs a GPU, checked in one run of a few minutes on one H100
(or, with `--dry-run`, the same checks on CPU at tiny sizes, as CI runs them).

    bash benchmarks/gpu_check.sh [--dry-run] [--output OUTPUT] [--results FILE]

One line per check (`check=NAME ok|FAIL|measured|skipped key=value ...`), then the rows for
`benchmarks/RESULTS.md` (also written to `--results`). The checks:
- `flex_equals_documents`: FlexAttention with the document block mask (the GPU training path)
  gives the hidden states of the per-document SDPA path, on one packed sequence of length L.
- `throughput_<attention>`: training steps (forward, backward) on ShortMix-like packed
  sequences of length L: flex, per-document SDPA and full causal attention; the speed-up of
  document masking over full attention beside the attention FLOPs the packing allows.
- `self_extend_2L`: a forward pass at 2L with Self-Extend (window L/4): finite, equal to
  plain attention on the first window's tokens, where no grouping applies, and not past it.
- `smoke`: `longmix smoke` of an output (`--output`, e.g. the demo prepared at 64K) with the
  GPU defaults (flex, bfloat16, the tokenizer's full vocabulary); skipped without one.
Exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from longmix.pipeline.trainer.balance import attended_pairs
from longmix.pipeline.trainer.extension import SELF_EXTEND_ATTENTION, SelfExtend
from longmix.pipeline.trainer.masking import labels as masked_labels
from longmix.pipeline.trainer.model import (
    IMPLEMENTATIONS,
    ModelShape,
    attention_inputs,
    build_model,
    loss_sum,
)


@dataclass(frozen=True)
class Size:
    """How big each check runs: an H100's, or CPU-tiny for `--dry-run`."""

    length: int  # L
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    steps: int
    dtype: torch.dtype
    tolerance: float  # relative L2 error allowed between two attention paths

    def shape(self, max_length: int) -> ModelShape:
        return ModelShape(
            self.vocab,
            self.hidden,
            self.layers,
            self.heads,
            self.kv_heads,
            int(self.hidden * 2.75),
            8e6,
            max_length,
        )


# A check passes or fails against its tolerance; a speed is measured (no threshold: the
# numbers go to RESULTS.md); the smoke check is skipped without an output.
PASSED, FAILED, MEASURED, SKIPPED = "ok", "FAIL", "measured", "skipped"


def passed(condition: bool) -> str:
    return PASSED if condition else FAILED


GPU = Size(65536, 32768, 1024, 4, 8, 4, 3, torch.bfloat16, 2e-2)
DRY = Size(512, 512, 64, 2, 4, 2, 2, torch.float32, 1e-4)
Line = dict[str, object]  # `status` first, then the numbers


def packed_indices(length: int, rng: np.random.Generator) -> np.ndarray:
    """Document boundaries of one ShortMix-like sequence: lengths log-normal around L/32."""
    ends, start = [], 0
    while start < length:
        size = int(min(length - start, max(16, rng.lognormal(np.log(length / 32), 1.0))))
        ends.append((start, start + size))
        start += size
    return np.asarray(ends, dtype=np.int64)


def hidden_states(model, ids: torch.Tensor, indices: np.ndarray, attention: str) -> torch.Tensor:
    model.set_attn_implementation(IMPLEMENTATIONS[attention])
    inputs = attention_inputs(indices, len(ids), attention, ids.device)
    with torch.no_grad():
        return model.model(input_ids=ids[None], **inputs).last_hidden_state[0].float()


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm().clamp_min(1e-12))


def flex_equals_documents(size: Size, device: torch.device) -> Line:
    rng = np.random.default_rng(0)
    indices = packed_indices(size.length, rng)
    model = build_model(size.shape(size.length), "documents", seed=0).to(device, size.dtype)
    ids = torch.randint(0, size.vocab, (size.length,), device=device)
    documents = hidden_states(model, ids, indices, "documents")
    flex = hidden_states(model, ids, indices, "flex")
    error = relative_error(flex, documents)
    return {
        "status": passed(error <= size.tolerance),
        "documents": len(indices),
        "rel_error": error,
    }


def steps_per_second(
    model, size: Size, device: torch.device, attention: str, batches: list
) -> float:
    model.set_attn_implementation(IMPLEMENTATIONS[attention])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    timed = 0.0
    for k, (ids, indices) in enumerate(batches):
        start = time.perf_counter()
        inputs = attention_inputs(indices, len(ids), attention, device)
        targets = masked_labels(ids, indices)
        loss = loss_sum(model, ids, targets, inputs)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if k > 0:  # the first step compiles and allocates
            timed += time.perf_counter() - start
    return (len(batches) - 1) * size.length / timed


def throughput(size: Size, device: torch.device, attentions: list[str]) -> list[tuple[str, Line]]:
    rng = np.random.default_rng(1)
    batches = [
        (
            torch.randint(0, size.vocab, (size.length,), device=device),
            packed_indices(size.length, rng),
        )
        for _ in range(size.steps + 1)
    ]
    pairs = sum(attended_pairs(indices) for _, indices in batches)
    full_pairs = (size.steps + 1) * size.length * (size.length + 1) // 2
    speeds = {}
    lines = []
    for attention in attentions:
        model = build_model(size.shape(size.length), "documents", seed=0).to(device, size.dtype)
        speeds[attention] = steps_per_second(model, size, device, attention, batches)
        lines.append(
            (f"throughput_{attention}", {"status": MEASURED, "tokens_per_s": speeds[attention]})
        )
        del model
    masked = attentions[0]
    lines.append(
        (
            "masking_speedup",
            {
                "status": MEASURED,
                f"{masked}_over_full": speeds[masked] / speeds["full"],
                "attention_flops_ratio": pairs / full_pairs,
            },
        )
    )
    return lines


def self_extend_2l(size: Size, device: torch.device) -> Line:
    trained = size.length // 2 if device.type == "cuda" else size.length
    length = 2 * trained
    extend = SelfExtend.for_lengths(trained, length, None, None)
    model = build_model(size.shape(trained), "documents", seed=0).to(device, size.dtype).eval()
    ids = torch.randint(0, size.vocab, (length,), device=device)
    indices = np.array([[0, length]])
    plain = hidden_states(model, ids, indices, "documents")
    model.set_attn_implementation(SELF_EXTEND_ATTENTION)
    inputs = {**attention_inputs(indices, length, "documents", device), "self_extend": extend}
    start = time.perf_counter()
    with torch.no_grad():
        extended = model.model(input_ids=ids[None], **inputs).last_hidden_state[0].float()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    window = extend.window
    error = relative_error(extended[:window], plain[:window])
    beyond = relative_error(extended[window:], plain[window:])
    finite = bool(torch.isfinite(extended).all())
    return {
        "status": passed(finite and error <= size.tolerance < beyond),  # grouping changes it
        "length": length,
        "group": extend.group,
        "window": window,
        "seconds": seconds,
        "rel_error_in_window": error,
        "rel_change_past_window": beyond,
    }


def smoke_run(output: str, dry: bool) -> Line:
    from longmix.pipeline.config import smoke_config
    from longmix.pipeline.trainer.report import problems
    from longmix.pipeline.trainer.train import smoke
    from longmix.stages.logic.errors import LongmixError
    from longmix.stages.logic.storage import StorageOptions

    overrides = ["smoke.steps=8", "smoke.eval.enabled=false"] if dry else ["smoke.steps=8"]
    settings = smoke_config(None, overrides, "gpu_check")
    try:
        report = smoke(output, settings, StorageOptions(), progress=False).data
    except LongmixError as exc:
        return {"status": FAILED, "error": str(exc)}
    found = problems(report)
    return {
        "status": passed(not found),
        "attention": report["runtime"].get("attention", ""),
        "tokens_per_s": report["tokens_per_second"],
        "loss_last": report["loss"]["last"],
        "problems": "; ".join(found) or "none",
    }


def say(name: str, line: Line) -> None:
    fields = " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in line.items()
        if k != "status"
    )
    print(f"check={name} {line['status']} {fields}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes (CI)")
    parser.add_argument("--output", help="a longmix output for the smoke check")
    parser.add_argument("--results", help="also write the RESULTS.md rows here")
    args = parser.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (use --dry-run on CPU)", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.dry_run else "cuda")
    size = DRY if args.dry_run else GPU
    name = "CPU (dry run)" if args.dry_run else torch.cuda.get_device_name(0)
    print(f"gpu_check on {name}: L={size.length} torch={torch.__version__}", flush=True)
    # Flex trains on CUDA only (on CPU it runs forward passes alone).
    attentions = ["documents", "full"] if args.dry_run else ["flex", "documents", "full"]
    checks: list[tuple[str, Line]] = [
        ("flex_equals_documents", flex_equals_documents(size, device))
    ]
    say(*checks[-1])
    for check in throughput(size, device, attentions):
        checks.append(check)
        say(*check)
    checks.append(("self_extend_2L", self_extend_2l(size, device)))
    say(*checks[-1])
    if args.output:
        checks.append(("smoke", smoke_run(args.output, args.dry_run)))
    else:
        checks.append(("smoke", {"status": SKIPPED, "why": "no --output given"}))
    say(*checks[-1])
    rows = [
        f"| {name}: `{check}` | {line['status']} | "
        + ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in line.items()
            if k != "status"
        )
        + " |"
        for check, line in checks
    ]
    table = "\n".join(["| check | result | numbers |", "|---|---|---|", *rows])
    print(table)
    if args.results:
        with open(args.results, "w") as out:
            out.write(table + "\n")
    return 0 if all(line["status"] != FAILED for _, line in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
