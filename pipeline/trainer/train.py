"""`longmix smoke`: train a small Llama for a few steps on a longmix output, the way ProLong
trains on it, and say whether the data is fit to spend GPU hours on.

Read top to bottom: settings -> one streaming epoch (and held-out data) -> model -> AdamW
with warm-up and cosine decay -> steps of reordered micro-batches with a token-averaged loss
-> the held-out evaluation (`evaluate.py`) -> report.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch
from rich.progress import Progress

from longmix.pipeline.config import SmokeConfig
from longmix.pipeline.trainer.balance import balance, device_order
from longmix.pipeline.trainer.data import Sample, Vocabulary, open_output, read_epoch
from longmix.pipeline.trainer.evaluate import evaluate, held_out
from longmix.pipeline.trainer.masking import IGNORE, labels
from longmix.pipeline.trainer.model import (
    Attention,
    ModelShape,
    attention_inputs,
    build_model,
    loss_sum,
)
from longmix.pipeline.trainer.report import SmokeReport, StepRecord, build_report
from longmix.stages.logic.errors import LongmixError
from longmix.stages.logic.storage import StorageOptions

ROPE_THETA_64K = 8e6  # RECIPE: Llama-3's 5e5 raised for 64K ...
ROPE_THETA_512K = 1.28e8  # ... and for 512K training


@dataclass(frozen=True)
class Runtime:
    """Settings resolved against the machine: `auto` becomes a concrete choice."""

    device: torch.device
    attention: Attention
    dtype: torch.dtype
    vocab: str

    @classmethod
    def of(cls, settings: SmokeConfig) -> Runtime:
        cuda = torch.cuda.is_available() if settings.device == "auto" else settings.device == "cuda"
        if settings.device == "cuda" and not torch.cuda.is_available():
            raise LongmixError("smoke.device is cuda but no CUDA device is available")
        attention = settings.attention
        if attention == "auto":
            attention = "flex" if cuda else "documents"
        dtype = settings.dtype
        if dtype == "auto":
            dtype = "bfloat16" if cuda else "float32"
        vocab = settings.model.vocab
        if vocab == "auto":
            vocab = "tokenizer" if cuda else "observed"
        return cls(torch.device("cuda" if cuda else "cpu"), attention, getattr(torch, dtype), vocab)


def smoke(
    path: str, settings: SmokeConfig, storage: StorageOptions, progress: bool = True
) -> SmokeReport:
    runtime = Runtime.of(settings)
    output = open_output(path, storage)
    per_step = settings.devices * settings.accumulation
    said = progress_lines(progress)
    said(f"reading {settings.steps * per_step:,} samples and the held-out documents")
    with tempfile.TemporaryDirectory(prefix="longmix-smoke-") as cache:
        samples = read_epoch(output, settings.steps * per_step, settings.seed, storage, Path(cache))
        trained = max(s.length for s in samples)
        held = held_out(output, samples, settings.eval, trained, storage, Path(cache))
    vocabulary = Vocabulary.of(samples, runtime.vocab, output.tokenizer["vocab_size"], held.ids())
    shape = model_shape(settings, vocabulary, trained)
    model = build_model(shape, runtime.attention, settings.seed).to(runtime.device)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=settings.lr,
        betas=settings.betas,
        weight_decay=settings.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(settings))
    steps = [samples[k * per_step : (k + 1) * per_step] for k in range(settings.steps)]
    records = []
    began = time.monotonic()
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("smoke training", total=len(steps))
        for number, step in enumerate(steps, 1):
            records.append(train_step(model, optimizer, step, settings, runtime, vocabulary))
            scheduler.step()
            bar.update(task, advance=1, description=f"smoke loss {records[-1].loss:.3f}")
            took = time.monotonic() - began
            said(f"step {number} of {len(steps)}, loss {records[-1].loss:.3f}, {took:.0f} s")
    costs = [[s.squared_lengths for s in step] for step in steps]
    evaluation = None
    if settings.eval.enabled:
        said("evaluating the held-out documents")
        evaluation = evaluate(
            model, held, trained, settings.eval, vocabulary, runtime.attention, runtime.device
        )
    return build_report(
        output,
        settings,
        runtime_summary(runtime, shape, model),
        samples,
        records,
        balance(costs, settings.devices),
        evaluation,
    )


def progress_lines(progress: bool, stream: TextIO | None = None) -> Callable[[str], None]:
    """Where no terminal shows the progress bar (a log, a CI job), a function writing one
    `longmix: progress: smoke: ...` line per call on stderr; else one doing nothing."""
    stream = stream or sys.stderr
    if not progress or stream.isatty():
        return lambda text: None

    def say(text: str) -> None:
        stream.write(f"longmix: progress: smoke: {text}\n")
        stream.flush()

    return say


def model_shape(settings: SmokeConfig, vocabulary: Vocabulary, max_length: int) -> ModelShape:
    model = settings.model
    theta = model.rope_theta or (ROPE_THETA_64K if max_length <= 65536 else ROPE_THETA_512K)
    return ModelShape(
        vocabulary.size,
        model.hidden_size,
        model.layers,
        model.heads,
        model.kv_heads,
        model.intermediate_size,
        theta,
        max_length,
    )


def lr_schedule(settings: SmokeConfig):
    """Linear warm-up, then cosine decay to `min_lr_ratio` of the peak (RECIPE's shape)."""
    warmup = math.ceil(settings.warmup * settings.steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, settings.steps - warmup - 1)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return settings.min_lr_ratio + (1 - settings.min_lr_ratio) * cosine

    return factor


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step: list[Sample],
    settings: SmokeConfig,
    runtime: Runtime,
    vocabulary: Vocabulary,
) -> StepRecord:
    """One optimizer step over the step's micro-batches, in the order the simulated devices
    run them. The loss is the sum over every trained token of the step divided by their
    number, so long and short micro-batches weigh by tokens, not by sequence."""
    order = device_order([s.squared_lengths for s in step], settings.devices, settings.reorder)
    batches = [to_device(step[i], vocabulary, runtime.device) for i in order.ravel()]
    trained = sum(int((targets[1:] != IGNORE).sum()) for _, targets, _ in batches)
    started = time.perf_counter()
    total = 0.0
    for input_ids, targets, sample in batches:
        inputs = attention_inputs(sample.indices, sample.length, runtime.attention, runtime.device)
        with torch.autocast(runtime.device.type, runtime.dtype, enabled=is_low(runtime.dtype)):
            loss = loss_sum(model, input_ids, targets, inputs) / max(1, trained)
        loss.backward()
        total += loss.item()
    torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
    learning_rate = optimizer.param_groups[0]["lr"]
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if runtime.device.type == "cuda":
        torch.cuda.synchronize()
    return StepRecord(
        loss=total,
        tokens=sum(s.length for s in step),
        trained_tokens=trained,
        seconds=time.perf_counter() - started,
        lr=learning_rate,
    )


def to_device(
    sample: Sample, vocabulary: Vocabulary, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, Sample]:
    ids = torch.from_numpy(vocabulary.encode(sample.input_ids))
    targets = labels(ids, sample.indices, sample.mask)
    return ids.to(device), targets.to(device), sample


def is_low(dtype: torch.dtype) -> bool:
    return dtype in (torch.bfloat16, torch.float16)


def runtime_summary(runtime: Runtime, shape: ModelShape, model: torch.nn.Module) -> dict:
    return {
        "device": torch.cuda.get_device_name() if runtime.device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "attention": runtime.attention,
        "dtype": str(runtime.dtype).removeprefix("torch."),
        "vocab": runtime.vocab,
        "vocab_size": shape.vocab_size,
        "hidden_size": shape.hidden_size,
        "layers": shape.layers,
        "heads": shape.heads,
        "kv_heads": shape.kv_heads,
        "rope_theta": shape.rope_theta,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
