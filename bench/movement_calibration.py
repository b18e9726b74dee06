"""Calibration of "the best depth moves with the budget" (`dwlib.fit.critical_depth_by_budget`) on planted
pairs of annealed budgets: 8 depths 2–24 × 3 seeds, the runs at the second budget cooldown branches of the
same trunks as at the first (a seed's effect shared by every depth and both budgets, each run's own noise
correlated between its budgets). The pairs are tests/test_fit.py's `annealed_pair`.

    moves     share of sweeps whose best depth is said to move: the false rate where the planted minimum
              stays put (target ≤ 0.05), the power where it moves
    right     among those, the share that name the planted direction
    disjoint  share of sweeps whose two confidence sets merely share no depth (what a rule without the
              separating depth would call a move)
    sets      median size of the two confidence sets (depths)

    python bench/movement_calibration.py                 # 200 sweeps per cell
    python bench/movement_calibration.py --sweeps 50 --workers 2
"""
from __future__ import annotations

import argparse
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_fit import annealed_pair  # noqa: E402

from dwlib import fit  # noqa: E402

# (name, planted direction or None for "stays put", annealed_pair's keywords)
CELLS = [
    ("same minimum 10, V, rise beyond it 0.03 → 0.06 per e-fold", None, {}),
    ("same minimum 10, V, rise 0.05 → 0.10, run noise 0.002", None, dict(right=(0.05, 0.10), sd=0.002)),
    ("same minimum 10, parabola, curvature beyond it 0.08 → 0.16", None,
     dict(shape="parabola", left=0.08, right=(0.08, 0.16))),
    ("same minimum 10, V, rise 0.03 → 0.06, no seed effect, budgets independent", None, dict(seed_sd=0.0, rho=0.0)),
    ("same minimum 10, V, rise 0.03 → 0.20, run noise 0.001 (best depth tried 12 → 8)", None,
     dict(right=(0.03, 0.20), sd=0.001, seed_sd=0.002)),
    ("flat from 8 at both budgets (monotone decreasing)", None, dict(d_min=(8.0, 8.0), right=(0.0, 0.0))),
    ("rises from 2 at both budgets, 0.03 → 0.06 per e-fold", None, dict(d_min=(2.0, 2.0))),
    ("minimum 4 → 12, V, rise 0.03", "deeper", dict(d_min=(4.0, 12.0), right=(0.03, 0.03))),
    ("minimum 4 → 12, parabola 0.08", "deeper", dict(d_min=(4.0, 12.0), shape="parabola", left=0.08, right=(0.08, 0.08))),
    ("minimum 6 → 16, V, rise 0.03", "deeper", dict(d_min=(6.0, 16.0), right=(0.03, 0.03))),
    ("rises from 2 → minimum 8, V, rise 0.06", "deeper", dict(d_min=(2.0, 8.0), right=(0.06, 0.06))),
    ("minimum 12 → 4, V, rise 0.03", "shallower", dict(d_min=(12.0, 4.0), right=(0.03, 0.03))),
]


def run_cell(args):
    (name, direction, pair), sweeps = args
    said, right, disjoint, sizes = 0, 0, 0, []
    for i in range(sweeps):
        by_budget, moves = fit.critical_depth_by_budget(annealed_pair(rng=10_000 + i, **pair), n_boot=100)
        sizes += [len(best) for best in by_budget["best_set"]]
        disjoint += not set(by_budget["best_set"].iloc[0]) & set(by_budget["best_set"].iloc[1])
        if len(moves) and moves["moves"].iloc[0]:
            said += 1
            right += moves["direction"].iloc[0] == direction
    return (name, direction, said / sweeps, right / said if said else float("nan"), disjoint / sweeps,
            float(np.median(sizes)))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweeps", type=int, default=200)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    start = time.time()
    jobs = [(cell, args.sweeps) for cell in CELLS]
    if args.workers > 1:
        with Pool(args.workers) as pool:
            results = pool.map(run_cell, jobs)
    else:
        results = map(run_cell, jobs)
    print(f"{args.sweeps} sweeps per cell (8 depths 2–24 × 3 seeds, run noise 0.005, seed effect 0.01, runs "
          "correlated 0.8 between budgets, unless said)")
    print(f"{'cell':82s} {'planted':>9s} {'moves':>6s} {'right':>6s} {'disjoint':>8s} {'sets':>5s}")
    for name, direction, rate, right, disjoint, size in results:
        print(f"{name:82s} {direction or 'stays':>9s} {rate:6.3f} {right:6.2f} {disjoint:8.3f} {size:5.1f}", flush=True)
    print(f"({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
