"""Calibration of the depth verdict (`dwlib.fit.fit_critical_depth`) on planted depth sweeps that look like
real ones: one bad run, seeds that share an effect across depths, heavy-tailed noise, bumps, lopsided and
flat-bottomed minima, a coarse grid with two seeds, plateaus.

Each cell plants a curve, simulates `--sweeps` sweeps (8 depths 2–24 × 3 seeds unless said) with its noise
and prints, over those sweeps:

    U        share called "U-shaped": the false-positive rate on a curve without a rise (target ≤ 0.05),
             the power on a curve with one (target ≥ 0.80)
    cover    on a curve with a rise, among the U-shaped verdicts (their count in brackets), the share whose
             D* interval (`ci["d_star"]`) holds the planted minimiser: for a parabola vertex the curve's own
             minimiser (the whole range of them when the bottom is flat); for a confidence set of depths
             the best depths of the grid (target ≥ 0.90)
    bound    on a curve flat from some depth on (a plateau), the share of sweeps whose bound — D* ≥ the
             shallowest depth not measurably worse than the best (`d_plateau`) — is true (target ≥ 0.90)
    flagged  runs flagged as outliers per sweep (when the fitter flags any)

    python bench/u_test_calibration.py                        # 200 sweeps per cell, one process
    python bench/u_test_calibration.py --sweeps 50 --workers 2
    python bench/u_test_calibration.py --only outlier,bump    # cells whose name contains a word
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_fit import DEPTHS, rising  # noqa: E402  (the depths and the squared-hinge rise the tests use)

from dwlib import fit  # noqa: E402

COARSE = np.array([2, 4, 8, 16, 32, 48], float)
power_law = lambda d: 1.5 + 0.5 * d ** -0.7
hinge = lambda onset, slope=0.1: (lambda d: 1.5 + slope * np.maximum(0, np.log(onset / d)))


def bumped(base, at, size=0.02):
    return lambda d: base(d) + size * np.isclose(d, at)


def two_sided(onset, end, rise=0.03, left=0.1, last=24):
    """Falls (left per e-fold) to `onset`, flat to `end`, then rises linearly in ln D by `rise` at `last`."""
    return lambda d: (1.5 + left * np.maximum(0, np.log(onset / d))
                      + rise * np.maximum(0, np.log(d / end)) / math.log(last / end))


@dataclass
class Cell:
    name: str
    curve: object
    rise: bool                     # does the planted curve rise beyond its minimum?
    sd: float = 0.005
    depths: tuple = tuple(DEPTHS)
    seeds: int = 3
    noise: str = "normal"          # "normal", "t3" (Student t, 3 dof, scaled to sd), "hetero" (sd ×1 → ×3 with ln D)
    seed_sd: float = 0.0           # an effect per seed shared by every depth
    outlier: tuple | None = None   # (depth, nats): seed 0's run at that depth is that much worse


def cells() -> list[Cell]:
    sh6, sh8 = rising(power_law, 6), rising(power_law, 8)
    out = []
    for sd in (0.005, 0.01):
        out += [Cell(f"power law a=0.7", power_law, False, sd),
                Cell(f"still falling a=0.2", lambda d: 1.5 + 0.4 * d ** -0.2, False, sd),
                Cell(f"hinge, flat from 6", hinge(6), False, sd),
                Cell(f"plateau from 8", hinge(8), False, sd),
                Cell(f"flat", lambda d: 1.5 + 0 * d, False, sd)]
    out += [Cell("bump +0.02 at D=12", bumped(hinge(6), 12), False),
            Cell("bump +0.02 at D=16", bumped(hinge(6), 16), False),
            Cell("bump +0.03 at D=16", bumped(hinge(6), 16, 0.03), False)]
    for size in (0.1, 0.2, 0.3):
        out += [Cell(f"power law, outlier +{size} at D=24", power_law, False, outlier=(24, size)),
                Cell(f"power law, outlier +{size} at D=12", power_law, False, outlier=(12, size))]
    out += [Cell(f"power law, seed effect sd {s}", power_law, False, seed_sd=s) for s in (0.01, 0.02)]
    out += [Cell("power law, t3 noise", power_law, False, noise="t3"),
            Cell("hinge from 6, t3 noise", hinge(6), False, noise="t3"),
            Cell("power law, hetero noise", power_law, False, 0.01, noise="hetero"),
            Cell("coarse ×2 seeds, power law", power_law, False, depths=tuple(COARSE), seeds=2),
            Cell("coarse ×2 seeds, plateau from 8", hinge(8), False, depths=tuple(COARSE), seeds=2)]
    # real rises: +0.03 nats at 2·D* (the GPU sweep's size, bench/RESULTS.md) or at the deepest depth
    out += [Cell("quadratic in ln D, D*=6", lambda d: 1.5 + 0.0624 * (np.log(d) - np.log(6)) ** 2, True),
            Cell("saturating + hinge, D*=6", sh6, True),
            Cell("saturating + hinge, D*=8", sh8, True),
            Cell("lopsided V at 8", lambda d: (1.5 + 0.15 * np.maximum(0, np.log(8 / d))
                                               + 0.03 * np.maximum(0, np.log(d / 8)) / math.log(2)), True),
            Cell("flat-bottomed 6-12, +0.03 at 24", two_sided(6, 12), True),
            Cell("flat 6-16, +0.03 at 24 only", two_sided(6, 16), True)]
    for size in (0.1, 0.2, 0.3):
        out += [Cell(f"sat+hinge D*=8, outlier +{size} at D=24", sh8, True, outlier=(24, size)),
                Cell(f"sat+hinge D*=8, outlier +{size} at D=2", sh8, True, outlier=(2, size))]
    out += [Cell(f"sat+hinge D*=6, seed effect sd {s}", sh6, True, seed_sd=s) for s in (0.01, 0.02)]
    out += [Cell(f"flat-bottomed, seed effect sd {s}", two_sided(6, 12), True, seed_sd=s) for s in (0.01, 0.02)]
    out += [Cell("sat+hinge D*=8, t3 noise", sh8, True, noise="t3"),
            Cell("sat+hinge D*=8, hetero noise", sh8, True, 0.01, noise="hetero"),
            Cell("coarse ×2 seeds, sat+hinge D*=8", sh8, True, depths=tuple(COARSE), seeds=2),
            Cell("coarse ×2 seeds, quadratic D*=8", lambda d: 1.5 + 0.0624 * (np.log(d) - np.log(8)) ** 2, True,
                 depths=tuple(COARSE), seeds=2)]
    return out


def truth(cell):
    """(lowest, highest) planted minimiser of the curve itself, and of the grid's depths; the plateau onset
    (the shallowest grid depth at the minimum) for curves without a rise that are flat from some depth."""
    depths = np.array(cell.depths, float)
    fine = np.union1d(np.exp(np.linspace(np.log(depths[0]), np.log(depths[-1]), 20001)), depths)
    y = cell.curve(fine)
    at_min = fine[y <= y.min() + 1e-9]
    g = cell.curve(depths)
    grid_min = depths[g <= g.min() + 1e-9]
    return (at_min.min(), at_min.max()), (grid_min.min(), grid_min.max())


def sweep_data(cell, rng):
    d = np.repeat(np.array(cell.depths, float), cell.seeds)
    seeds = np.tile(np.arange(cell.seeds), len(cell.depths))
    if cell.noise == "t3":
        e = rng.standard_t(3, len(d)) / math.sqrt(3)
    else:
        e = rng.standard_normal(len(d))
    scale = cell.sd
    if cell.noise == "hetero":     # deep, narrow runs scatter more: ×3 from the shallowest to the deepest
        scale = cell.sd * (1 + 2 * np.log(d / d.min()) / np.log(d.max() / d.min()))
    y = cell.curve(d) + e * scale + rng.normal(0, cell.seed_sd, cell.seeds)[seeds] * (cell.seed_sd > 0)
    if cell.outlier:
        y = y + cell.outlier[1] * ((d == cell.outlier[0]) & (seeds == 0))
    return d, y, seeds


def run_cell(args):
    """Counts over `sweeps` sweeps of one cell: (U-shaped, covered, U-shaped with an interval, bound true,
    sweeps with a bound to judge, runs flagged)."""
    index, sweeps, n_boot, seed = args
    cell = cells()[index]
    (c_lo, c_hi), (g_lo, g_hi) = truth(cell)
    plateau = not cell.rise and g_hi > g_lo
    rng = np.random.default_rng([seed, index])
    n_u = n_cov = n_int = n_bound_ok = n_bound = n_flag = 0
    for i in range(sweeps):
        d, y, seeds = sweep_data(cell, rng)
        r = fit.fit_critical_depth(d, y, seeds=seeds, n_boot=n_boot, random_state=int(rng.integers(1 << 31)))
        n_flag += len(getattr(r, "outliers", []) or [])
        if r.verdict == "U-shaped":
            n_u += 1
            lo, hi = r.ci["d_star"]
            if math.isfinite(lo) and math.isfinite(hi):
                n_int += 1
                a, b = (g_lo, g_hi) if getattr(r, "d_star_method", "parabola") == "confidence set" else (c_lo, c_hi)
                n_cov += lo <= a + 1e-9 and b <= hi + 1e-9
        if plateau:
            n_bound += 1
            n_bound_ok += r.d_plateau <= g_lo + 1e-9
    return index, np.array([n_u, n_cov, n_int, n_bound_ok, n_bound, n_flag])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweeps", type=int, default=200, help="simulated sweeps per cell (default 200)")
    p.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    p.add_argument("--n-boot", type=int, default=200, help="resamples per fit for D*'s interval (default 200)")
    p.add_argument("--only", default="", help="run only the cells whose name contains one of these "
                                              "comma-separated words")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    words = [w.strip().lower() for w in args.only.split(",")]
    chosen = [i for i, c in enumerate(cells()) if any(w in c.name.lower() for w in words)]
    chunks = max(1, min(args.sweeps, 4 * args.workers // max(1, len(chosen))))   # split cells over idle workers
    jobs = [(i, args.sweeps // chunks + (k < args.sweeps % chunks), args.n_boot, args.seed * 1000 + k)
            for i in chosen for k in range(chunks)]
    start = time.perf_counter()
    totals = {i: np.zeros(6, int) for i in chosen}
    with Pool(args.workers) if args.workers > 1 else _Serial() as pool:
        for i, counts in pool.imap_unordered(run_cell, jobs):
            totals[i] += counts
    all_cells = cells()
    print(f"Depth verdict on planted sweeps: {args.sweeps} sweeps per cell, {args.n_boot} resamples per fit\n")
    for rise, title in ((False, "no rise (U = false-positive rate, target ≤ 0.05; bound target ≥ 0.90)"),
                        (True, "real rise (U = power, target ≥ 0.80; cover target ≥ 0.90)")):
        print(f"{title}\n  {'cell':<42s}{'grid':>10s}{'sd':>7s}{'U':>7s}{'cover':>13s}{'bound':>8s}{'flagged':>9s}")
        for i in chosen:
            c = all_cells[i]
            if c.rise != rise:
                continue
            n_u, n_cov, n_int, n_bok, n_b, n_flag = totals[i]
            n = args.sweeps
            grid = f"{len(c.depths)}×{c.seeds}"
            cover = f"{n_cov / n_int:.2f} ({n_int})" if n_int and rise else "–"
            bound = f"{n_bok / n_b:.2f}" if n_b else "–"
            miss = (n_u / n > 0.05) if not rise else (n_u / n < 0.80 or (n_int and n_cov / n_int < 0.90))
            miss = miss or (n_b and n_bok / n_b < 0.90)
            print(f"  {c.name:<42s}{grid:>10s}{c.sd:>7.3f}{n_u / n:>7.2f}{cover:>13s}{bound:>8s}{n_flag / n:>9.2f}"
                  + ("   ✗" if miss else ""), flush=True)
        print()
    print(f"{time.perf_counter() - start:.0f} s")


class _Serial:
    """Pool's imap_unordered in this process (no fork for --workers 1)."""
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def imap_unordered(self, f, jobs):
        return map(f, jobs)


if __name__ == "__main__":
    main()
