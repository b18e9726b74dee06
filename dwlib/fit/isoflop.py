"""IsoFLOP profiles (Chinchilla's approach 2): at each FLOP budget, where is the loss lowest in model
size N, and which shape is best there? Then a power law of those optima against C: N*(C) and
T*(C) = C/6N*, measured without assuming any law. (The Depth Delusion's D* ∝ C^0.12 and W* ∝ C^0.34
would need depth and width each bracketed at every budget: a denser grid of shapes than a few aspect
ratios per size.)

An optimum is only reported where the budget's runs bracket it; bootstrap resamples whose parabola
has no interior minimum are counted and reported, never given a made-up value.

When a design tries several shapes (D, W) of about the same size, the size profile is taken along the
*frontier*: at each size the shape with the lowest mean loss at that budget (the compute-optimal choice
among the shapes tried). Mixing shapes of one size into one parabola makes it zigzag — at equal N a
deep-narrow shape can be tenths of a nat worse than a shallow-wide one — and hides the optimum.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import f as f_distribution

from .laws import EXPONENT_CI_WIDTH
from .stats import (Fit, as_array, check_level, check_n_boot, fmt_ci, group_means, local_vertex, not_constant,
                    percentile_ci, same_length, t_interval)

PAPER_DEPTH_EXPONENT = 0.12     # Depth Delusion: D* ∝ C^0.12
PAPER_WIDTH_EXPONENT = 0.34     # Depth Delusion: W* ∝ C^0.34
MAX_NO_MINIMUM = 0.2            # a budget whose resamples lack a minimum this often has no usable optimum
LACK_OF_FIT_P = 0.01            # below this the seeds show a budget's profile is not a parabola near its minimum


@dataclass(kw_only=True, repr=False)
class IsoflopFit(Fit):
    optima: pd.DataFrame | None = None        # one row per budget: N*, T* and their intervals, status, best shape
    exponents: pd.DataFrame | None = None     # N*'s exponent, its interval, budgets used (when fitted)


def group_budgets(flops, rtol=0.05) -> np.ndarray:
    """Label runs by FLOP budget: sorted budgets within a factor (1 + rtol) of their group's first join it
    (compute-matched runs differ by under a step's FLOPs, not exactly)."""
    order = np.argsort(flops)
    labels = np.empty(len(flops), int)
    group, start = 0, flops[order[0]]
    for i in order:
        if flops[i] > start * (1 + rtol):
            group, start = group + 1, flops[i]
        labels[i] = group
    return labels


def fit_isoflop(flops, params, losses, *, depths=None, widths=None, n_boot=1000, level=0.95, budget_rtol=0.05,
                random_state=0) -> IsoflopFit:
    """Optimal size per FLOP budget, the best shape there, and a power law of the optima in C.

    Per budget: the vertex of a local parabola of loss in ln N around the lowest-loss size
    (`stats.local_vertex`, window of 5 sizes) with a bootstrap interval. It counts only when the runs
    bracket it and at most 20% of resamples lack an interior minimum. Where the seeds show the parabola
    misfits (lack-of-fit F-test, p < 0.01) and its interval excludes the best size tried, N* is that size
    and its interval the neighbouring sizes. With `depths` and `widths` the profile follows the frontier
    (see the module docstring; sizes within 5% are one size, its shape chosen on the seed means), and the
    optima table names each budget's best shape (`best_depth`, `best_width`) with the share of seed
    resamples in which it stays best (`best_share`). N*(C) = k·C^a over the budgets with an optimum; the
    exponent's interval is the wider of the bootstrap one and the t-interval from the optima's scatter
    (≥ 3 budgets). `identified` needs ≥ 2 such budgets and an exponent interval at most
    `laws.EXPONENT_CI_WIDTH` (0.5) wide.
    `params`: params_exponent, params_coef, tokens_exponent = 1 − params_exponent (T* = C/6N*). Depth
    and width exponents are not fitted (see the module docstring)."""
    check_level(level)
    check_n_boot(n_boot)
    C, N, L = (as_array(n, v, positive=True) for n, v in (("flops", flops), ("params", params), ("losses", losses)))
    same_length(flops=C, params=N, losses=L)
    if (depths is None) != (widths is None):
        raise ValueError("give both depths and widths (the shapes), or neither")
    if depths is not None:
        D, W = as_array("depths", depths, positive=True), as_array("widths", widths, positive=True)
        same_length(flops=C, depths=D, widths=W)
    not_constant("losses", L)
    labels = group_budgets(C, budget_rtol)
    rng = np.random.default_rng(random_state)
    rows, curves, draws = [], [], []
    frontier = np.ones(len(L), bool)
    for g in np.unique(labels):
        idx = np.flatnonzero(labels == g)
        budget = float(np.exp(np.log(C[idx]).mean()))
        row = dict(flops=budget, n_runs=len(idx), min_loss=float(L[idx].min()))
        if depths is not None:
            keep, best = _frontier(N[idx], D[idx], W[idx], L[idx], n_boot, rng)
            frontier[idx] = keep
            row.update(best)
            idx = idx[keep]
        optimum, row["params_status"], curve = _budget_optimum(np.log(N[idx]), L[idx], n_boot, level, rng)
        if optimum is not None:
            row.update({f"opt_params{k}": v for k, v in optimum.items() if k != "samples"})
            # T* = C/(6N*): the 6N-per-token rule (attention adds a little); a larger N* means fewer tokens
            row.update(opt_tokens=budget / (6 * optimum[""]), opt_tokens_low=budget / (6 * optimum["_high"]),
                       opt_tokens_high=budget / (6 * optimum["_low"]))
            draws.append((budget, optimum["samples"]))
            curves.append(curve.assign(flops=budget, coordinate="params"))
        rows.append(row)
    optima = pd.DataFrame(rows)
    est, ci, ex_rows, health = {}, {}, [], []
    if len(draws) < 2:
        health.append(f"the size optimum is bracketed at {len(draws)} budget(s) — need 2 for a power law: "
                      "add sizes beyond the lowest-loss one at each budget (or budgets where the sizes bracket it)")
    else:
        slope, log_k, slope_ci, used = _power_law(draws, optima["opt_params"].dropna(), level)
        est.update(params_exponent=slope, params_coef=math.exp(log_k), tokens_exponent=1 - slope)
        ci.update(params_exponent=slope_ci, tokens_exponent=(1 - slope_ci[1], 1 - slope_ci[0]))
        ex_rows.append(dict(coordinate="params", exponent=slope, low=slope_ci[0], high=slope_ci[1],
                            budgets=len(draws), resamples_used=used))
        lo, hi = slope_ci
        if not (np.isfinite(lo) and np.isfinite(hi) and hi - lo <= EXPONENT_CI_WIDTH):
            span = max(b for b, _ in draws) / min(b for b, _ in draws)
            health.append(f"N*'s exponent interval {fmt_ci((lo, hi))} (from {len(draws)} budgets spanning "
                          f"{span:.0f}×) is unbounded or {hi - lo:.2f} wide, more than {EXPONENT_CI_WIDTH:g}: add "
                          "budgets (≥ 4, spanning ≥ 10×) with sizes that bracket each optimum")
    columns = {"flops": C, "budget": optima["flops"].to_numpy()[labels], "loss": L, "params": N}
    if depths is not None:
        columns.update(depth=D, width=W, frontier=frontier)
    result = IsoflopFit(kind="isoflop", params=est, ci=ci, n_points=len(L), level=level, n_boot=n_boot,
                        identified=not health, health=health, data=pd.DataFrame(columns),
                        curve=pd.concat(curves, ignore_index=True) if curves else None, optima=optima,
                        exponents=pd.DataFrame(ex_rows))
    from .verdicts import isoflop_text
    result.text = isoflop_text(result)
    return result


def _frontier(N, D, W, L, n_boot, rng):
    """One budget's runs: (mask of the runs whose shape is the best of its size, the best shape overall
    with the share of seed resamples in which it stays best). Sizes within 5% are one size."""
    shapes = pd.DataFrame({"size": group_budgets(N, 0.05), "depth": D, "width": W, "loss": L})
    means = shapes.groupby(["size", "depth", "width"]).loss.mean()
    best_of_size = means.groupby(level="size").idxmin()
    keep = shapes.set_index(["size", "depth", "width"]).index.isin(best_of_size.to_numpy())
    shape_id = shapes.groupby(["depth", "width"]).ngroup().to_numpy()
    keys = shapes.groupby(["depth", "width"]).size().index
    winner = int(np.argmin([L[shape_id == k].mean() for k in range(len(keys))]))
    wins = [np.argmin([rng.choice(L[shape_id == k], (shape_id == k).sum()).mean() for k in range(len(keys))])
            for _ in range(min(n_boot, 300))]
    depth, width = keys[winner]
    best = dict(best_depth=int(depth), best_width=int(width),
                best_share=float(np.mean(np.equal(wins, winner))) if wins else math.nan)
    return keep, best


def _budget_optimum(x, y, n_boot, level, rng):
    """The size optimum of one budget, x = ln N: (dict of the optimum, its interval and its bootstrap
    draws, or None; a status; the fitted parabola over its window, for charts)."""
    if len(np.unique(x)) < 3:
        return None, "fewer than 3 distinct values", None
    v = local_vertex(x, y, n_boot=n_boot, level=level, rng=rng)
    if v["method"] == "edge":
        return None, "not bracketed: the lowest loss is at an end of the sizes tried", None
    if not v["method"].startswith("parabola"):
        return None, "no interior minimum (the parabola opens downward or leaves the window)", None
    if v["no_minimum"] > MAX_NO_MINIMUM:
        return None, f"{v['no_minimum']:.0%} of resamples have no interior minimum", None
    lo, hi = v["window"]
    inside = (x >= lo) & (x <= hi)
    grid = np.linspace(lo, hi, 40)

    def parabola(u):                              # the one local_vertex fitted, centred on the best size
        return np.polyval(v["coef"][::-1], u - v["grid_x"])

    curve = pd.DataFrame({"x": np.exp(grid), "loss": parabola(grid)})
    optimum = {"": math.exp(v["x"]), "_low": math.exp(v["low"]), "_high": math.exp(v["high"]),
               "_no_minimum": v["no_minimum"], "samples": v["samples"]}
    status = "ok"
    if _lack_of_fit_p(x[inside], y[inside], parabola(x[inside])) < LACK_OF_FIT_P and not v["low"] <= v["grid_x"] <= v["high"]:
        # The profile's minimum is sharper or more lopsided than a parabola (the seeds say so), and the
        # vertex's interval (seed noise only) excludes the best size tried. Fall back to what the runs
        # show: the best size, bracketed by its neighbours, with no bootstrap draws for the power law.
        levels = np.unique(x)
        centre = int(np.searchsorted(levels, v["grid_x"]))       # interior: the method was not 'edge'
        optimum.update({"": math.exp(v["grid_x"]), "_low": math.exp(levels[centre - 1]),
                        "_high": math.exp(levels[centre + 1]), "samples": np.full_like(v["samples"], np.nan)})
        status = ("the parabola misses the lowest-loss size tried: N* is that size, bracketed by its neighbours "
                  "(add sizes between them to locate it)")
    return optimum, status, curve


def _lack_of_fit_p(x, y, fitted) -> float:
    """p-value of the classical lack-of-fit F-test of a parabola (`fitted`: its values at x): its
    residual error beyond the spread of the repeated runs (seeds) at each x. 1.0 when there are no
    repeats or no spare values."""
    levels, index, _, means, _ = group_means(x, y)
    df_pure, df_lack = len(y) - len(levels), len(levels) - 3
    if df_pure < 1 or df_lack < 1:
        return 1.0
    pure = float(np.sum((y - means[index]) ** 2))
    residual = float(np.sum((y - fitted) ** 2))
    if pure <= 0:
        return 0.0 if residual > 0 else 1.0
    return float(f_distribution.sf((residual - pure) / df_lack / (pure / df_pure), df_lack, df_pure))


def _power_law(points, optima, level):
    """x*(C) = k·C^a through the per-budget optima: (a, ln k, a's interval, resamples used). The interval
    is the wider of the bootstrap one (a line through each resample's per-budget draws; resamples with
    no minimum at some budget left out) and the t-interval from the optima's scatter (≥ 3 budgets)."""
    lc = np.log([b for b, _ in points])
    opt = np.log(optima.to_numpy(float))
    slope, log_k = np.polyfit(lc, opt, 1)
    sample = np.stack([s for _, s in points])                     # (budgets, resamples), NaN = no minimum
    usable = np.isfinite(sample).all(axis=0)
    slope_ci = percentile_ci(np.polyfit(lc, sample[:, usable], 1)[0] if usable.sum() > 10 else [], level)
    if len(points) >= 3:
        resid = opt - (log_k + slope * lc)
        se = math.sqrt(np.sum(resid ** 2) / (len(points) - 2) / np.sum((lc - lc.mean()) ** 2))
        t_ci = t_interval(slope, se, len(points) - 2, level)
        slope_ci = (min(slope_ci[0], t_ci[0]), max(slope_ci[1], t_ci[1])) if np.isfinite(slope_ci[0]) else t_ci
    return float(slope), float(log_k), slope_ci, int(usable.sum())
