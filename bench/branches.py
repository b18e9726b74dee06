"""Cooldown branches vs runs trained from scratch (issue 10, item 3).

For each seed, one shape is trained to K token budgets three ways:
  branch     the sweep's way: one warmup-stable-decay trunk to the largest budget, and every smaller
             budget resumed from the trunk's checkpoint at its decay start (only its cooldown computed)
  scratch    the same WSD run to that budget, trained from step 0 on its own
  cosine     for context: a cosine run to that budget (same warmup, same min_lr)
and the script prints, per budget, the validation-loss difference branch − scratch (0 up to float
noise: they are the same computation), the seed sd of the scratch losses (the noise any such difference
must be compared with), cosine − WSD, and the cost of K branches vs K separate runs in training tokens
and in measured train seconds.

    python bench/branches.py                                   # CPU: W=64, D=4, 3 seeds, 4 budgets
    python bench/branches.py --tiny                            # a quick check that it runs (~1 min)
    python bench/branches.py --device cuda --width 256 --depth 8 --context 512 --batch-size 32 \\
        --budgets 2e7,4e7,8e7,1.6e8
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import numpy as np

from dwlib import sweep
from dwlib.data import load_tokens
from dwlib.store import Store
from dwlib.train import train


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--budgets", default="2.5e5,5e5,1e6,2e6", help="token budgets, comma-separated")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--schedule", choices=["wsd-sqrt", "wsd"], default="wsd-sqrt")
    p.add_argument("--cooldown", type=float, default=0.2)
    p.add_argument("--corpus", default="stdlib")
    p.add_argument("--device", default="auto")
    p.add_argument("--tiny", action="store_true", help="a tiny shape and budgets: checks the script runs")
    args = p.parse_args()
    if args.tiny:
        args.depth, args.width, args.context, args.batch_size, args.budgets, args.seeds = 2, 32, 32, 8, "2e4,4e4", "0,1"
    budgets = [float(b) for b in args.budgets.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    tokens = load_tokens(args.corpus, "byte")
    base = sweep.grid([args.depth], [args.width], seeds, context=args.context, head_dim=16, batch_size=args.batch_size,
                      eval_every=50, eval_batches=8, corpus=args.corpus, device=args.device)
    pairs = sweep.anneal(base, budgets, schedule=args.schedule, cooldown=args.cooldown)
    train(*sweep.make_pair(*pairs[0], steps=2), progress=False, tokens=tokens)   # start-up costs, untimed

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:   # a fresh store: every branch really is trained as one
        frame = sweep.run_sweep(pairs, store=f"{tmp}/runs.sqlite", progress=False)
        resumed = [Store(f"{tmp}/runs.sqlite").get(k)["result"]["resumed_from_step"] for k in frame["run_key"]]
    branched_seconds = time.perf_counter() - start
    rows, scratch_seconds = [], 0.0
    for (m, t), (_, run), fork in zip(pairs, frame.iterrows(), resumed):
        start = time.perf_counter()
        scratch = train(m, t, progress=False, tokens=tokens)
        scratch_seconds += time.perf_counter() - start
        cosine = train(m, dataclasses.replace(t, schedule="cosine"), progress=False, tokens=tokens)
        rows.append(dict(seed=t.seed, budget=t.tokens, steps=run["steps"], fork=fork, branch=run["val_loss"],
                         scratch=scratch["val_loss"], cosine=cosine["val_loss"]))

    print(f"\nD={args.depth} W={args.width} T={args.context} batch {args.batch_size}, {args.schedule} cooldown "
          f"{args.cooldown:.0%}, seeds {seeds}, device {frame['device'].iloc[0]}")
    print(f"{'budget':>10} {'steps':>6} {'fork':>5} {'branch-scratch':>15} {'max |diff|':>11} {'seed sd':>8} "
          f"{'cosine-wsd':>11} {'(sd)':>7}")
    for budget in sorted({r["budget"] for r in rows}):
        at = [r for r in rows if r["budget"] == budget]
        diff = np.array([r["branch"] - r["scratch"] for r in at])
        gap = np.array([r["cosine"] - r["scratch"] for r in at])
        sd = np.std([r["scratch"] for r in at], ddof=1) if len(at) > 1 else float("nan")
        print(f"{budget:>10.3g} {at[0]['steps']:>6} {at[0]['fork']:>5} {diff.mean():>15.2e} {np.abs(diff).max():>11.2e} {sd:>8.4f} "
              f"{gap.mean():>+11.4f} {gap.std(ddof=1) if len(at) > 1 else float('nan'):>7.4f}")
    cost = sweep.anneal_cost(pairs)
    print(f"\ncost of {len(budgets)} budgets x {len(seeds)} seeds: {cost['tokens_branched']:,} training tokens "
          f"with branches vs {cost['tokens_separate']:,} as separate runs "
          f"({cost['tokens_branched'] / cost['tokens_separate']:.0%})")
    print(f"measured wall time: {branched_seconds:.1f} s for the sweep with branches vs {scratch_seconds:.1f} s "
          "for the same runs from scratch (evaluations in both; the sweep also writes the store and checkpoints)")


if __name__ == "__main__":
    main()
