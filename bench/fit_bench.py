"""Fit times: the Chinchilla-form fit on Epoch AI's 240 points with 1000 bootstrap resamples (the
headline figure, with our intervals beside Epoch's), and every other fitter on synthetic data of a
realistic size. Wall seconds (and CPU seconds, which other processes on a shared machine do not
inflate as much) in one process; numpy's elementwise work is single-threaded.

    python bench/fit_bench.py                  # everything
    python bench/fit_bench.py --n-boot 4000    # Epoch's own resample count
    python bench/fit_bench.py --scipy-check    # + scipy's L-BFGS-B, one resample at a time, for reference
    python bench/fit_bench.py --full-grid      # + every grid start run to full convergence (Hoffmann's way)
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize

from dwlib import fit
from dwlib.fit import laws, stats

EPOCH_CSV = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "epoch_chinchilla_points.csv"


def timed(label, fn, rows):
    """Run fn, print wall seconds (and CPU seconds: on a shared machine wall time includes waiting)."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    rows.append((label, seconds))
    print(f"{label:<72s} {seconds:7.2f} s wall {cpu:7.2f} s CPU", flush=True)
    return out


def epoch(n_boot, scipy_check, full_grid, rows):
    if not EPOCH_CSV.exists():
        print(f"skipped the Epoch AI benchmark: {EPOCH_CSV} is absent")
        return
    points = fit.read_epoch_points(EPOCH_CSV)
    N, T, L = points["params"], points["tokens"], points["loss"]
    grid_only = timed(f"Chinchilla fit, {len(points)} Epoch points, 4500 grid starts, no bootstrap",
                      lambda: fit.fit_chinchilla(N, T, L, n_boot=0), rows)
    r = timed(f"Chinchilla fit, {len(points)} Epoch points, grid + {n_boot} bootstrap refits",
              lambda: fit.fit_chinchilla(N, T, L, n_boot=n_boot), rows)
    print(f"\n  {'':6s} {'this fit':>9s} {'95% CI':>22s}   {'Epoch AI':>9s} {'95% CI':>20s}")
    for name in ("E", "A", "B", "alpha", "beta"):
        lo, hi = r.ci[name]
        elo, ehi = fit.CHINCHILLA_EPOCH_CI[name]
        print(f"  {name:6s} {fit.fmt(r.params[name]):>9s} {fit.fmt(lo):>10s} – {fit.fmt(hi):<9s}"
              f"   {fit.fmt(fit.CHINCHILLA_EPOCH[name]):>9s} {fit.fmt(elo):>9s} – {fit.fmt(ehi):<9s}")
    print(f"  {grid_only.starts_at_best} of the polished starts reach the best objective {grid_only.objective:.10g}; "
          f"identified: {r.identified}\n")
    if full_grid:
        full = timed("Chinchilla fit, every one of the 4500 starts to full convergence (n_polish=None)",
                     lambda: fit.fit_chinchilla(N, T, L, n_boot=0, n_polish=4500), rows)
        diff = max(abs(full.params[k] / grid_only.params[k] - 1) for k in full.params)
        print(f"  {full.starts_at_best} of 4500 starts reach objective {full.objective:.10g}; "
              f"largest relative parameter difference from the default route {diff:.1e}\n")
    if scipy_check:
        scipy_reference(points, r, rows)


def scipy_reference(points, result, rows, n=100):
    """The same objective minimised by scipy's L-BFGS-B one resample at a time from the same start:
    how long the unbatched route takes, and whether it finds the same optima."""
    log_n, log_t, log_l = (np.log(points[c].to_numpy()) for c in ("params", "tokens", "loss"))
    log_pred_vjp = laws._chinchilla_log_pred(log_n, log_t)
    rng = np.random.default_rng(0)
    weights = stats.bootstrap_weights(len(points), n, rng)
    theta = result.theta
    fun_grad = stats.huber_objective(log_pred_vjp, log_l, weights, 1e-3)

    def loop():
        out = []
        for i in range(n):
            one = lambda th, i=i: tuple(v[0] for v in fun_grad(th[None], np.array([i])))
            out.append(optimize.minimize(one, theta, jac=True, method="L-BFGS-B"))
        return out
    ref = timed(f"  reference: scipy L-BFGS-B, {n} resamples one at a time", loop, rows)
    batched = timed(f"  batched L-BFGS, the same {n} resamples", lambda: stats.lbfgs_batch(
        fun_grad, np.repeat(theta[None], n, axis=0)), rows)
    worse = np.array([b - r.fun for b, r in zip(batched[1], ref)])
    print(f"  batched objective minus scipy's: max {worse.max():+.2e}, median {np.median(worse):+.2e} "
          f"(≤ 0: batched as good or better); ×{rows[-2][1] / rows[-1][1]:.0f} faster\n")


def synthetic(rows):
    rng = np.random.default_rng(0)
    depths = np.repeat([2, 3, 4, 6, 8, 12, 16, 24, 32, 48], 3)
    losses = 3 + 0.06 * (np.log(depths) - math.log(12)) ** 2 + rng.normal(0, 0.01, len(depths))
    seeds = np.tile([0, 1, 2], 10)
    timed("critical depth, 30 runs (10 depths × 3 seeds), 1000 resamples",
          lambda: fit.fit_critical_depth(depths, losses, seeds=seeds, width=512), rows)
    rows_b = []
    for T, d_star in ((1e6, 5.0), (4e6, 8.0), (1.6e7, 12.0)):
        for depth, seed in zip(depths, seeds):
            rows_b.append(dict(run_id=f"{T}-{depth}-{seed}", depth=depth, width=512, seed=seed, tokens=T,
                               status="complete", schedule="wsd-sqrt",
                               val_loss=3 + 0.06 * (math.log(depth) - math.log(d_star)) ** 2 + rng.normal(0, 0.005)))
    timed("D* at 3 annealed budgets + paired movement tests, 1000 resamples",
          lambda: fit.critical_depth_by_budget(pd.DataFrame(rows_b)), rows)
    layers = np.arange(48)
    norms = np.exp(-(48 - layers) / 8 + rng.normal(0, 0.05, 48))
    timed("gradient persistence, 48 blocks, 1000 resamples", lambda: fit.fit_gradient_persistence(norms), rows)
    widths = np.array([64, 128, 256, 512, 1024, 2048])
    timed("τ(W) power law + log form, 6 widths, robust t-interval, leave-one-width-out",
          lambda: fit.fit_tau_scaling(widths, 1 / (0.5 * widths ** 0.44) * np.exp(rng.normal(0, 0.03, 6))), rows)
    truth = dict(A=40.0, alpha=0.3, B=60.0, delta=0.3, c=0.15, kappa=1.2, gamma=0.4)
    grid = [(d, w, t) for w in (64, 128, 256, 512) for d in (2, 4, 8, 16, 32, 64) for t in (3e7, 1e8, 3e8)]
    D, W, T = (np.array(v, float) for v in zip(*grid))
    L = fit.depth_width_loss(truth, D, W, T) * np.exp(rng.normal(0, 0.005, len(D)))
    timed(f"depth–width law, {len(D)} runs, power D_crit, 300 resamples",
          lambda: fit.fit_depth_width_law(D, W, T, L, n_boot=300), rows)
    timed(f"shape-aware vs shape-blind law, leave-one-shape-out ({len(set(zip(D, W)))} shapes)",
          lambda: fit.compare_laws(D, W, T, L), rows)
    iso = []
    for C in (1e15, 1e16, 1e17, 1e18, 1e19):
        for k in np.linspace(-1.5, 1.5, 9):
            n = 2 * C ** 0.45 * math.exp(k)
            d = (n / (12 * 32 ** 2)) ** (1 / 3)
            iso.append(dict(flops=C, params=n, depth=d, width=32 * d,
                            loss=4 - 0.2 * math.log10(C) + 0.05 * k * k + rng.normal(0, 0.003)))
    iso = pd.DataFrame(iso)
    timed("isoFLOP, 5 budgets × 9 sizes, params/depth/width, 1000 resamples",
          lambda: fit.fit_isoflop(iso.flops, iso.params, iso.loss, depths=iso.depth, widths=iso.width), rows)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the Epoch fit")
    p.add_argument("--scipy-check", action="store_true", help="also time scipy's L-BFGS-B per resample")
    p.add_argument("--full-grid", action="store_true", help="also run every grid start to full convergence")
    p.add_argument("--skip-synthetic", action="store_true")
    args = p.parse_args()
    rows = []
    epoch(args.n_boot, args.scipy_check, args.full_grid, rows)
    if not args.skip_synthetic:
        synthetic(rows)


if __name__ == "__main__":
    main()
