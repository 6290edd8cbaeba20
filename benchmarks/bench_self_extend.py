"""Self-Extend against plain per-document attention: one forward pass of the smoke model over
one document at several lengths, on this machine's CPU (or `--device cuda`).

    python benchmarks/bench_self_extend.py --lengths 8192 32768

Prints seconds per forward pass for each length with the trainer's `documents` attention
(causal SDPA) and with Self-Extend (`pipeline/trainer/extension.py`), and their ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from longmix.pipeline.trainer.extension import SELF_EXTEND_ATTENTION, SelfExtend
from longmix.pipeline.trainer.model import ModelShape, attention_inputs, build_model


def forward_seconds(model, ids: torch.Tensor, extend: SelfExtend | None) -> float:
    indices = np.array([[0, len(ids)]])
    inputs = attention_inputs(indices, len(ids), "documents", ids.device)
    previous = model.config._attn_implementation
    if extend is not None:
        model.set_attn_implementation(SELF_EXTEND_ATTENTION)
        inputs["self_extend"] = extend
    try:
        start = time.perf_counter()
        with torch.no_grad():
            model.model(input_ids=ids[None], **inputs)
        if ids.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start
    finally:
        model.set_attn_implementation(previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[8192, 32768])
    parser.add_argument("--trained", type=int, default=8192, help="L: w_n = L / 4, G reaches 4L")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    shape = ModelShape(16384, args.hidden, args.layers, 4, 2, 2 * args.hidden, 8e6, args.trained)
    model = build_model(shape, "documents", seed=0).eval().to(device)
    extend = SelfExtend.for_lengths(args.trained, 4 * args.trained, None, None)
    print(f"Self-Extend G {extend.group}, w_n {extend.window}; threads {torch.get_num_threads()}")
    for length in args.lengths:
        ids = torch.randint(0, shape.vocab_size, (length,), device=device)
        forward_seconds(model, ids[:256], None)  # warm-up
        plain = forward_seconds(model, ids, None)
        extended = forward_seconds(model, ids, extend)
        print(
            f"length={length} documents_s={plain:.2f} self_extend_s={extended:.2f} "
            f"ratio={extended / plain:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
