"""Every nonlinear fitter on planted data: what it recovers against what was planted, and whether its
health check flags the data that cannot identify a law. The same kinds of cases as tests/test_fit.py
(which asserts them); this script prints the table.

    python bench/fit_planted.py                 # ~1 min on 2 cores
    python bench/fit_planted.py --n-boot 300    # tighter intervals, slower
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd

from dwlib import fit

CHINCHILLA = dict(E=1.7, A=400.0, B=1500.0, alpha=0.34, beta=0.30)
DEPTH_WIDTH = dict(A=20.0, alpha=0.3, B=30.0, delta=0.3, c=0.05, kappa=0.8, gamma=0.44)


def chinchilla_data(rng, noise=0.005):
    N = np.repeat(np.geomspace(1e6, 1e9, 6), 6)
    T = np.tile(np.geomspace(1e8, 1e11, 6), 6)
    return N, T, fit.chinchilla_loss(CHINCHILLA, N, T) * np.exp(rng.normal(0, noise, len(N)))


def depth_width_data(rng, truth=DEPTH_WIDTH, noise=0.003):
    D, W, T = (a.ravel().astype(float) for a in np.meshgrid([2, 4, 6, 8, 12, 16, 24, 32], [64, 128, 256], [1e7, 4e7],
                                                          indexing="ij"))
    return D, W, T, fit.depth_width_loss(truth, D, W, T) * np.exp(rng.normal(0, noise, len(D)))


def isoflop_data(rng, budgets=(1e15, 1e16, 1e17), exponent=0.5, noise=0.003, deep_penalty=None):
    """N* = 0.1·C^exponent; 7 sizes per budget over 64×; with `deep_penalty` a second, deeper shape at
    each size that much worse."""
    rows = []
    for C in budgets:
        n_opt = 0.1 * C ** exponent
        for n in n_opt * np.geomspace(1 / 8, 8, 7):
            loss = 2.0 + 0.3 * math.log(n / n_opt) ** 2
            rows.append(dict(flops=C, params=n, depth=2, width=math.sqrt(n / 24), loss=loss + rng.normal(0, noise)))
            if deep_penalty is not None:
                rows.append(dict(flops=C, params=n * 1.01, depth=8, width=math.sqrt(n / 96),
                                 loss=loss + deep_penalty + rng.normal(0, noise)))
    return pd.DataFrame(rows)


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
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    nb = args.n_boot
    rows = []

    N, T, L = chinchilla_data(rng)
    rows += rows_for("Chinchilla form, 6 sizes × 6 token counts",
                     fit.fit_chinchilla(N, T, L, n_boot=nb), CHINCHILLA)
    rows += rows_for("Chinchilla form, one model size",
                     fit.fit_chinchilla(np.full_like(N, 1e8), T, L, n_boot=nb), {})
    rows += rows_for("Chinchilla form, one token count",
                     fit.fit_chinchilla(N, np.full_like(T, 1e10), L, n_boot=nb), {})

    D, W, T, L = depth_width_data(rng)
    law = fit.fit_depth_width_law(D, W, T, L, n_boot=nb)
    rows += rows_for("depth–width law, D 2–32 × W 64–256 × 2 budgets", law,
                     {k: DEPTH_WIDTH[k] for k in ("alpha", "delta", "c", "kappa", "gamma")})
    D, W, T, L = depth_width_data(rng, dict(DEPTH_WIDTH, kappa=20.0))
    rows += rows_for("depth–width law, D_crit ≈ 130–250 (beyond every depth)",
                     fit.fit_depth_width_law(D, W, T, L, n_boot=nb), {})

    widths = np.repeat([32, 64, 128, 256, 512, 1024], 3).astype(float)
    rates = 1 / (0.5 * widths ** 0.44) + rng.normal(0, 0.002, len(widths))
    rows += rows_for("τ(W) = W^γ/k, widths 32–1024 × 3", fit.fit_tau_scaling(widths, rates, n_boot=nb),
                     dict(gamma=0.44))

    iso = isoflop_data(rng)
    rows += rows_for("isoFLOP, 3 budgets, one shape per size",
                     fit.fit_isoflop(iso.flops, iso.params, iso.loss, n_boot=nb), dict(params_exponent=0.5))
    iso = isoflop_data(rng, deep_penalty=0.25)
    rows += rows_for("isoFLOP, 3 budgets, two aspect ratios per size (deep +0.25)",
                     fit.fit_isoflop(iso.flops, iso.params, iso.loss, depths=iso.depth, widths=iso.width, n_boot=nb),
                     dict(params_exponent=0.5))
    iso = isoflop_data(rng, budgets=(1e15, 1e16))
    iso = iso[~((iso.flops == 1e16) & (iso.params > 0.1 * 1e16 ** 0.5 * 0.9))]
    rows += rows_for("isoFLOP, sizes stop below the optimum at one of 2 budgets",
                     fit.fit_isoflop(iso.flops, iso.params, iso.loss, n_boot=nb), {})
    iso = isoflop_data(rng, budgets=(1e16,))
    rows += rows_for("isoFLOP, one budget", fit.fit_isoflop(iso.flops, iso.params, iso.loss, n_boot=nb), {})

    with pd.option_context("display.width", 250, "display.max_colwidth", 120):
        print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
