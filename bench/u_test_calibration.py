"""Calibration of the U-shape verdict (`dwlib.fit.fit_critical_depth`) on planted depth sweeps.

For each planted curve — several that fall and level off (or are flat: any "U-shaped" verdict there is a
false positive) and several with a real rise of +0.03 nats at 2·D* (the size of the rise in the GPU sweep
of bench/RESULTS.md; a "U-shaped" verdict there is a hit) — simulate sweeps of 8 depths (2–24) × 3 seeds
with Gaussian seed noise and count how often the verdict is "U-shaped". The planted curves are the ones
tests/test_fit.py asserts on (≤ 5% false positives, ≥ 80% power at sd 0.005).

    python bench/u_test_calibration.py                 # 400 sweeps per curve and noise level
    python bench/u_test_calibration.py --trials 1000
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_fit import DEPTHS, NO_RISE, RISES  # noqa: E402  (the planted curves the tests use)

from dwlib import fit  # noqa: E402


def u_rate(curve, sd, trials, rng, hetero=False):
    d = np.repeat(DEPTHS, 3)
    seeds = np.tile([0, 1, 2], len(DEPTHS))
    # hetero: noise grows ×3 from the shallowest to the deepest depth (deep, narrow runs scatter more)
    scale = sd * (1 + 2 * np.log(d / d.min()) / np.log(d.max() / d.min())) if hetero else sd
    hits = 0
    for _ in range(trials):
        r = fit.fit_critical_depth(d, curve(d) + rng.normal(0, 1, len(d)) * scale, seeds=seeds, n_boot=100,
                                   random_state=int(rng.integers(1 << 31)))
        hits += r.verdict == "U-shaped"
    return hits / trials


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=400)
    args = p.parse_args()
    noises = [(0.005, False), (0.01, False), (0.02, False), (0.01, True)]
    header = "".join(f"{f'sd {sd}' + (' hetero' if h else ''):>16s}" for sd, h in noises)
    print(f"'U-shaped' rate over {args.trials} simulated sweeps (8 depths × 3 seeds) per cell\n")
    start = time.perf_counter()
    for title, curves in (("no rise (false-positive rate; target ≤ 0.05)", NO_RISE),
                          ("rise of +0.03 nats at 2·D* (power; target ≥ 0.80 at sd 0.005)", RISES)):
        print(f"{title}\n  {'curve':<28s}{header}")
        for name, curve in curves.items():
            rates = [u_rate(curve, sd, args.trials, np.random.default_rng(7), h) for sd, h in noises]
            print(f"  {name:<28s}" + "".join(f"{r:>16.3f}" for r in rates), flush=True)
        print()
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
