"""Trainer throughput: tokens/s, achieved FLOP/s and (on GPU) MFU for a few shapes.

Runs the real trainer (dwlib.train.train) on the embedded stdlib corpus, so the figures include
batch fetching, the optimizer and the loss bookkeeping. Throughput counts training steps only
(evaluation excluded); FLOPs are 6N + 6LTW + 6WV per token (Kaplan plus the output head).

    python bench/throughput.py                    # CPU shapes
    python bench/throughput.py --device cuda      # GPU shapes, bf16, with and without torch.compile
"""
from __future__ import annotations

import argparse
import json

import torch

from dwlib.config import ModelConfig, TrainConfig
from dwlib.data import load_tokens
from dwlib.train import resolve_device, train

CPU_SHAPES = [(2, 64, 16), (4, 128, 16), (8, 128, 16), (4, 256, 16)]          # (depth, width, batch)
GPU_SHAPES = [(4, 256, 64), (12, 768, 32), (24, 1024, 16), (16, 2048, 16)]


def measure(depth, width, batch, context, steps, device, compile_, tokens):
    model = ModelConfig(depth=depth, width=width, context=context)
    cfg = TrainConfig(steps=steps, batch_size=batch, eval_every=10 ** 9, eval_batches=1, device=device,
                      compile=compile_, warmup=1, grad_norm_steps=())
    warm = train(model, TrainConfig(**{**cfg.__dict__, "steps": 3}), progress=False, tokens=tokens)  # warm-up / compile
    record = train(model, cfg, progress=False, tokens=tokens)
    return dict(depth=depth, width=width, batch=batch, context=context, compile=compile_,
                params=record["params"], tokens_per_second=record["tokens_per_second"],
                tflops=record["flops_per_second"] / 1e12, mfu=record["mfu"], device=record["device"],
                warmup_seconds=warm["wall_seconds"])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=None, help="timed steps per shape (default 30 CPU, 100 GPU)")
    p.add_argument("--context", type=int, default=None, help="default 128 CPU, 1024 GPU")
    p.add_argument("--json", action="store_true", help="also print one JSON line per shape")
    args = p.parse_args()
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    shapes = GPU_SHAPES if gpu else CPU_SHAPES
    steps = args.steps or (100 if gpu else 30)
    context = args.context or (1024 if gpu else 128)
    tokens = load_tokens("stdlib", "byte")
    rows = []
    for depth, width, batch in shapes:
        for compile_ in ((False, True) if gpu else (False,)):
            rows.append(measure(depth, width, batch, context, steps, str(device), compile_, tokens))
            if args.json:
                print(json.dumps(rows[-1]))
    print(f"\ndevice: {rows[0]['device']}   torch {torch.__version__}   threads {torch.get_num_threads()}")
    print(f"{'D':>3} {'W':>5} {'B':>3} {'T':>5} {'compile':>7} {'params':>11} {'tok/s':>11} {'TFLOP/s':>8} {'MFU':>6}")
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
        print(f"{r['depth']:>3} {r['width']:>5} {r['batch']:>3} {r['context']:>5} {str(r['compile']):>7} "
              f"{r['params']:>11,} {r['tokens_per_second']:>11,.0f} {r['tflops']:>8.3f} {mfu:>6}")


if __name__ == "__main__":
    main()
