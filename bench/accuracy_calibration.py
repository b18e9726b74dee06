"""Calibration of notebook 08's accuracy verdicts on planted accuracies (tests/test_accuracy.py's
`planted_runs`: each run = truth + its seed's effect shared by every shape + its own noise, scored as a
binomial over the khop validation set's 16,128 answer positions; 3 seeds unless said).

Comparison (`fit.compare_accuracy`, shallowest vs deepest, paired by seed):
    claims    share of sweeps with a verdict other than "no clear difference": the false-positive rate where
              both shapes have the same planted accuracy (target ≤ 0.05), the power where they differ
    right     among those, the share naming the planted direction
    covers    share of 95% intervals holding the planted difference
    boot      the same coverage for a percentile bootstrap over seeds (what the interval is not, and why)

Ranking agreement (`fit.ranking_agreement`, 5 shapes): the share of sweeps said to "disagree", "agree",
"unclear", and the coverage of τ's interval of the planted τ.

    python bench/accuracy_calibration.py                 # 400 sweeps per comparison cell, 200 per ranking cell
    python bench/accuracy_calibration.py --sweeps 100
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_accuracy import SHAPES, planted_runs  # noqa: E402

from dwlib import fit  # noqa: E402

A, B = (1, 128), (16, 32)
# (name, planted gain of B over A, planted_runs keywords)
COMPARISONS = [
    ("equal, binomial noise only", 0.0, dict(seed_sd=0.0, run_sd=0.0)),
    ("equal, seed effect 0.02 shared, run noise 0.01", 0.0, {}),
    ("equal, seed effect 0.05 shared, run noise 0.02", 0.0, dict(seed_sd=0.05, run_sd=0.02)),
    ("equal at 0.95 (near the ceiling), run noise 0.01", 0.0, dict(base=0.95)),
    ("equal, run noise t3 (heavy tails) 0.02", 0.0, dict(run_sd=0.02, tails="t3")),
    ("equal, one run of A 0.1 lower (a bad run)", 0.0, dict(outlier=(A, 0, -0.1))),
    ("equal, 2 seeds", 0.0, dict(seeds=(0, 1))),
    ("equal, 5 seeds", 0.0, dict(seeds=(0, 1, 2, 3, 4))),
    ("equal, 200 scored positions per run, no run noise", 0.0, dict(seed_sd=0.0, run_sd=0.0, scored=200)),
    ("gain 0.02, seed effect 0.02, run noise 0.01", 0.02, {}),
    ("gain 0.05, seed effect 0.02, run noise 0.01", 0.05, {}),
    ("gain 0.10, seed effect 0.02, run noise 0.01", 0.10, {}),
    ("gain 0.05, run noise t3 0.02", 0.05, dict(run_sd=0.02, tails="t3")),
    ("gain 0.05, one run of B 0.1 lower", 0.05, dict(outlier=(B, 0, -0.1))),
    ("gain 0.05, 5 seeds", 0.05, dict(seeds=(0, 1, 2, 3, 4))),
    ("loss 0.05 (the deeper is worse)", -0.05, {}),
]
# (name, planted accuracy and loss per shape as functions of log2 depth)
RANKINGS = [
    ("agree: accuracy +0.08, loss −0.02 per doubling", lambda x: 0.3 + 0.08 * x, lambda x: 2.0 - 0.02 * x),
    ("agree, weakly: accuracy +0.01, loss −0.005 per doubling", lambda x: 0.3 + 0.01 * x, lambda x: 2.0 - 0.005 * x),
    ("no effect on either", lambda x: 0.5 + 0 * x, lambda x: 2.0 + 0 * x),
    ("loss flat, accuracy +0.08 per doubling", lambda x: 0.3 + 0.08 * x, lambda x: 2.0 + 0 * x),
    ("disagree: accuracy +0.08, loss +0.02 per doubling", lambda x: 0.3 + 0.08 * x, lambda x: 2.0 + 0.02 * x),
    ("disagree, weakly: accuracy +0.02, loss +0.01 per doubling", lambda x: 0.3 + 0.02 * x, lambda x: 2.0 + 0.01 * x),
]


def comparison_cell(gain, kw, sweeps, rng):
    kw = dict(kw)
    base = kw.pop("base", 0.5)
    truth = {A: base - (gain if base + gain > 1 else 0), B: base + gain - (gain if base + gain > 1 else 0)}
    claims = right = covers = boot = 0
    for _ in range(sweeps):
        runs = planted_runs(truth, rng=rng, **kw)
        r = fit.compare_accuracy(runs, A, B)
        lo, hi = r.ci["gap"]
        claims += r.verdict != "no clear difference"
        right += r.verdict == ("second higher" if gain > 0 else "first higher")
        covers += lo <= gain <= hi
        d = (runs[runs["depth"] == B[0]].set_index("seed")["task_accuracy"]
             - runs[runs["depth"] == A[0]].set_index("seed")["task_accuracy"]).to_numpy()
        means = d[rng.integers(0, len(d), (1000, len(d)))].mean(axis=1)
        blo, bhi = np.percentile(means, [2.5, 97.5])
        boot += blo <= gain <= bhi
    return dict(claims=claims / sweeps, right=right / max(claims, 1), covers=covers / sweeps, boot=boot / sweeps)


def ranking_cell(acc, loss, sweeps, rng):
    x = {s: np.log2(s[0]) for s in SHAPES}
    true_acc, true_loss = np.array([acc(x[s]) for s in SHAPES]), np.array([loss(x[s]) for s in SHAPES])
    i, j = np.triu_indices(len(SHAPES), 1)
    true_tau = np.mean(np.sign(true_loss[j] - true_loss[i]) * np.sign(true_acc[i] - true_acc[j]))
    out = dict(disagree=0, agree=0, unclear=0)
    covers = 0
    for _ in range(sweeps):
        r = fit.ranking_agreement(planted_runs({s: acc(x[s]) for s in SHAPES}, {s: loss(x[s]) for s in SHAPES}, rng=rng),
                                  n_boot=500)
        out[r.verdict] += 1
        covers += r.ci["tau"][0] <= true_tau <= r.ci["tau"][1]
    return {**{k: v / sweeps for k, v in out.items()}, "tau": true_tau, "covers": covers / sweeps}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=400, help="sweeps per comparison cell (half per ranking cell)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(20261204)
    started = time.perf_counter()
    print(f"compare_accuracy: D={A[0]} W={A[1]} vs D={B[0]} W={B[1]}, {args.sweeps} sweeps per cell")
    print(f"{'cell':<56} {'claims':>7} {'right':>6} {'covers':>7} {'boot':>6}")
    for name, gain, kw in COMPARISONS:
        r = comparison_cell(gain, kw, args.sweeps, rng)
        print(f"{name:<56} {r['claims']:7.3f} {r['right']:6.2f} {r['covers']:7.3f} {r['boot']:6.3f}")
    n = max(args.sweeps // 2, 20)
    print(f"\nranking_agreement: {len(SHAPES)} shapes, 3 seeds, loss seed effect 0.01, run noise 0.005, {n} sweeps per cell")
    print(f"{'cell':<58} {'τ':>5} {'disagree':>9} {'agree':>6} {'unclear':>8} {'covers':>7}")
    for name, acc, loss in RANKINGS:
        r = ranking_cell(acc, loss, n, rng)
        print(f"{name:<58} {r['tau']:+5.1f} {r['disagree']:9.3f} {r['agree']:6.3f} {r['unclear']:8.3f} {r['covers']:7.3f}")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
