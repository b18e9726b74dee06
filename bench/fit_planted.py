"""Every nonlinear fitter on planted data: what it recovers against what was planted, and whether its
health check flags the data that cannot identify a law; and how often the isoFLOP fit's lack-of-fit
fallback fires on true parabolas and on lopsided profiles. The planted data are tests/test_fit.py's
(which asserts on them); this script prints the table.

    python bench/fit_planted.py                 # ~1 min
    python bench/fit_planted.py --n-boot 300    # tighter intervals, slower
    python bench/fit_planted.py --runs 200      # τ(W) coverage over more planted sweeps
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_fit import (TRUE_CHINCHILLA, TRUE_DD, isoflop_fallback_rate, lopsided_profile,  # noqa: E402
                      planted_chinchilla, planted_dd, planted_isoflop, tau_coverage, two_aspect_ratios)

from dwlib import fit  # noqa: E402


def rows_for(case, result, planted):
    """One table row per planted parameter (or one row for a case that must be flagged)."""
    health = "; ".join(result.health)[:110] or "—"
    if not planted:
        return [dict(case=case, parameter="—", planted="—", recovered="—", identified=result.identified,
                     health=health)]
    out = []
    for name, truth in planted.items():
        value = result.params.get(name, math.nan)
        lo, hi = result.ci.get(name, (math.nan, math.nan))
        out.append(dict(case=case, parameter=name, planted=f"{truth:g}",
                        recovered=f"{value:.4g} ({fit.fmt_ci((lo, hi))})" if np.isfinite(value) else "not reported",
                        identified=result.identified, health=health))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-boot", type=int, default=200)
    p.add_argument("--runs", type=int, default=100, help="planted τ(W) sweeps per coverage figure")
    args = p.parse_args()
    nb = args.n_boot
    rows = []

    N, T, L = planted_chinchilla()
    rows += rows_for("Chinchilla form, 6 sizes × 6 token counts", fit.fit_chinchilla(N, T, L, n_boot=nb),
                     TRUE_CHINCHILLA)
    rows += rows_for("Chinchilla form, one model size",
                     fit.fit_chinchilla(np.full_like(N, 1e8), T, L, n_boot=nb), {})
    rows += rows_for("Chinchilla form, one token count",
                     fit.fit_chinchilla(N, np.full_like(T, 1e10), L, n_boot=nb), {})

    law = fit.fit_depth_width_law(*planted_dd(), n_boot=nb)
    rows += rows_for("depth–width law, D 2–32 × W 64–256 × 2 budgets", law,
                     {k: TRUE_DD[k] for k in ("alpha", "delta", "c", "kappa", "gamma")})
    rows += rows_for("depth–width law, D_crit ≈ 130–250 (beyond every depth)",
                     fit.fit_depth_width_law(*planted_dd(dict(TRUE_DD, kappa=20.0)), n_boot=nb), {})
    for gamma in (-0.15, 0.0):        # a critical depth that shrinks with width, or does not move: findings
        planted = dict(TRUE_DD, gamma=gamma, kappa=fit.d_crit(TRUE_DD, 128) / 128 ** gamma)
        rows += rows_for(f"depth–width law, planted γ = {gamma:g}, noise 1%",
                         fit.fit_depth_width_law(*planted_dd(planted, noise=0.01), n_boot=nb), dict(gamma=gamma))

    rng = np.random.default_rng(3)
    widths = np.repeat([32, 64, 128, 256, 512, 1024], 3).astype(float)
    rates = 1 / (0.5 * widths ** 0.44) + rng.normal(0, 0.002, len(widths))
    rows += rows_for("τ(W) = W^γ/k, widths 32–1024 × 3", fit.fit_tau_scaling(widths, rates),
                     dict(gamma=0.44))

    iso = planted_isoflop()
    rows += rows_for("isoFLOP, 3 budgets, one shape per size",
                     fit.fit_isoflop(iso.flops, iso.params, iso.loss, n_boot=nb), dict(params_exponent=0.5))
    both = two_aspect_ratios(iso)
    rows += rows_for("isoFLOP, 3 budgets, two aspect ratios per size (deep +0.25)",
                     fit.fit_isoflop(both.flops, both.params, both.loss, depths=both.depth, widths=both.width,
                                     n_boot=nb), dict(params_exponent=0.5))
    iso = planted_isoflop(budgets=(1e15, 1e16))
    iso = iso[~((iso.flops == 1e16) & (iso.params > 0.1 * 1e16 ** 0.5 * 0.9))]
    rows += rows_for("isoFLOP, sizes stop below the optimum at one of 2 budgets",
                     fit.fit_isoflop(iso.flops, iso.params, iso.loss, n_boot=nb), {})
    iso = planted_isoflop(budgets=(1e16,))
    rows += rows_for("isoFLOP, one budget", fit.fit_isoflop(iso.flops, iso.params, iso.loss, n_boot=nb), {})

    with pd.option_context("display.width", 250, "display.max_colwidth", 120):
        print(pd.DataFrame(rows).to_string(index=False))

    print(f"\nτ(W): share of {args.runs} planted sweeps (widths 32–1024 × 3) whose 95% interval of γ holds the truth:")
    for label, kw in (("rate noise 5% (relative)", dict(noise=0.05)), ("rate noise 0.002", dict(noise=0.002, relative=False)),
                      ("rate noise 0.01", dict(noise=0.01, relative=False)), ("γ = 0, noise 5%", dict(noise=0.05, gamma=0.0))):
        coverage, width = tau_coverage(args.runs, **kw)
        print(f"  {label}: coverage {coverage:.3f}, median interval width {width:.3f}")

    print("\ncompare_laws' folds fitted from scratch (CV_ROUGH starts each) against the same folds warm-started from"
          " the full-data optimum: folds whose objective is worse by more than 1e-6 (planted law, 24 shapes)")
    D, W, T, L = planted_dd()
    shapes = pd.factorize(pd.Series(list(zip(D, W))))[0]
    folds = (shapes[None] != np.arange(shapes.max() + 1)[:, None]).astype(float)
    for name, full, log_pred, starts in (
            ("Chinchilla form", fit.fit_chinchilla(12 * D * W ** 2, T, L, n_boot=0),
             fit.laws._chinchilla_log_pred(np.log(12 * D * W ** 2), np.log(T)), fit.laws._chinchilla_starts(fit.laws.CHINCHILLA_GRID)),
            ("depth–width law", fit.fit_depth_width_law(D, W, T, L, n_boot=0),
             fit.laws._dd_log_pred(np.log(D), np.log(W), np.log(T), "power", False),
             fit.laws._dd_starts(np.log(D), np.log(W), "power"))):
        _, warm = fit.stats.lbfgs_batch(fit.stats.huber_objective(log_pred, np.log(L), folds, 1e-3),
                                        np.repeat(full.theta[None], len(folds), axis=0), max_iter=2000)
        _, cold = fit.laws._multistart(log_pred, np.log(L), starts, 1e-3, fit.laws.CV_ROUGH, 4, folds=folds)
        gap = cold.min(axis=1) - warm
        print(f"  {name}: {int(np.sum(gap > 1e-6))} of {len(folds)} folds worse; largest gap {gap.max():.2g}")

    print("\nisoFLOP fallback to the best size tried (lack-of-fit p < 0.01), share of 200 planted single-budget"
          " profiles, 7 sizes × 3 seeds:")
    for noise in (0.003, 0.01):
        parabola = isoflop_fallback_rate(lambda i: planted_isoflop((1e15,), rng=i, noise=noise, seeds=3), 200)
        lopsided = isoflop_fallback_rate(lambda i: lopsided_profile(rng=i, noise=noise), 200)
        print(f"  seed sd {noise}: true parabola {parabola:.3f} (false positives)   lopsided {lopsided:.3f} (power)")


if __name__ == "__main__":
    main()
