"""IsoFLOP profiles (Chinchilla's approach 2): at each FLOP budget, where is the loss lowest in model
size N (and in depth D and width W)? Then power laws of those optima against C: N*(C), T*(C) = C/6N*,
D*(C), W*(C) — the Depth Delusion's D* ∝ C^0.12 and W* ∝ C^0.34 measured without assuming its law.

An optimum is only reported where the budget's runs bracket it; bootstrap resamples whose parabola
has no interior minimum are counted and reported, never given a made-up value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .stats import (Fit, as_array, check_level, check_n_boot, fmt_ci, local_vertex, not_constant, percentile_ci,
                    same_length, t_interval)

PAPER_DEPTH_EXPONENT = 0.12     # Depth Delusion: D* ∝ C^0.12
PAPER_WIDTH_EXPONENT = 0.34     # Depth Delusion: W* ∝ C^0.34
MAX_NO_MINIMUM = 0.2            # a budget whose resamples lack a minimum this often has no usable optimum


@dataclass(kw_only=True, repr=False)
class IsoflopFit(Fit):
    optima: pd.DataFrame | None = None        # one row per budget: flops, opt_<coord>, its interval, status
    exponents: pd.DataFrame | None = None     # one row per coordinate: exponent, interval, budgets used
    notes: list[str] = field(default_factory=list)


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
    """Optimal size (and depth, width) per FLOP budget, and their power laws in C.

    Per budget and coordinate x ∈ {ln N, ln D, ln W}: the local parabola around the lowest-loss value
    (`stats.local_vertex`, window of 5 values) with a bootstrap interval. The optimum counts only when
    it is interior (the runs bracket it) and at most 20% of resamples lack an interior minimum. Power
    laws x*(C) = k·C^a over the budgets with an optimum: the exponent's interval is the wider of the
    bootstrap one (each resample's line through the per-budget draws) and the t-interval from the
    optima's scatter about the line (≥ 3 budgets). `identified` needs ≥ 2 budgets with a bracketed
    size optimum and a bounded exponent interval. `params`: <coord>_exponent, <coord>_coef, and
    tokens_exponent = 1 − params_exponent (T* = C/6N*)."""
    check_level(level)
    check_n_boot(n_boot)
    C, N, L = (as_array(n, v, positive=True) for n, v in (("flops", flops), ("params", params), ("losses", losses)))
    same_length(flops=C, params=N, losses=L)
    coords = {"params": N}
    for name, values in (("depth", depths), ("width", widths)):
        if values is not None:
            coords[name] = as_array(f"{name}s", values, positive=True)
            same_length(flops=C, **{f"{name}s": coords[name]})
    not_constant("losses", L)
    labels = group_budgets(C, budget_rtol)
    rng = np.random.default_rng(random_state)
    rows, curves, draws = [], [], {k: [] for k in coords}
    for g in np.unique(labels):
        idx = np.flatnonzero(labels == g)
        budget = float(np.exp(np.log(C[idx]).mean()))
        row = dict(flops=budget, n_runs=len(idx), min_loss=float(L[idx].min()))
        for name, values in coords.items():
            optimum, status, curve = _budget_optimum(np.log(values[idx]), L[idx], n_boot, level, rng)
            row[f"{name}_status"] = status
            if optimum is not None:
                row.update({f"opt_{name}{k}": v for k, v in optimum.items() if k != "samples"})
                draws[name].append((budget, optimum["samples"]))
                curves.append(curve.assign(flops=budget, coordinate=name))
        rows.append(row)
    optima = pd.DataFrame(rows)
    est, ci, ex_rows, notes = {}, {}, [], []
    for name in coords:
        if len(draws[name]) < 2:
            notes.append(f"{name}: {len(draws[name])} budget(s) with a bracketed optimum — need 2 for a power law")
            continue
        slope, log_k, slope_ci, used = _power_law(draws[name], optima[f"opt_{name}"].dropna(), level)
        est[f"{name}_exponent"], est[f"{name}_coef"] = slope, math.exp(log_k)
        ci[f"{name}_exponent"] = slope_ci
        ex_rows.append(dict(coordinate=name, exponent=slope, low=slope_ci[0], high=slope_ci[1],
                            budgets=len(draws[name]), resamples_used=used))
    if "params_exponent" in est:
        est["tokens_exponent"] = 1 - est["params_exponent"]
        lo, hi = ci["params_exponent"]
        ci["tokens_exponent"] = (1 - hi, 1 - lo)
    health = list(notes) if "params_exponent" not in est else []
    for k, (lo, hi) in ci.items():
        if k.endswith("_exponent") and not (np.isfinite(lo) and np.isfinite(hi) and hi - lo <= 1.0):
            health.append(f"{k[:-9]}'s exponent interval {fmt_ci((lo, hi))} is unbounded or wider than 1: "
                          "add budgets (≥ 3, spanning ≥ 10×) and sizes that bracket each optimum")
    data = pd.DataFrame({"flops": C, "budget": optima["flops"].to_numpy()[labels], "loss": L, **coords})
    result = IsoflopFit(kind="isoflop", params=est, ci=ci, n_points=len(L), level=level, n_boot=n_boot,
                        identified=not health, health=health, data=data,
                        curve=pd.concat(curves, ignore_index=True) if curves else None, optima=optima,
                        exponents=pd.DataFrame(ex_rows), notes=notes)
    from .verdicts import isoflop_text
    result.text = isoflop_text(result)
    return result


def _budget_optimum(x, y, n_boot, level, rng):
    """The optimum of one budget along one coordinate x (log scale): (dict of the optimum, its interval and
    its bootstrap draws, or None; a status; the fitted parabola on a grid for charts)."""
    if len(np.unique(x)) < 3:
        return None, "fewer than 3 distinct values", None
    v = local_vertex(x, y, n_boot=n_boot, level=level, rng=rng)
    if v["method"] == "edge":
        return None, "not bracketed: the lowest loss is at an end of the sizes tried", None
    if not v["method"].startswith("parabola"):
        return None, "no interior minimum (the parabola opens downward or leaves the window)", None
    if v["no_minimum"] > MAX_NO_MINIMUM:
        return None, f"{v['no_minimum']:.0%} of resamples have no interior minimum", None
    grid = np.linspace(x.min(), x.max(), 60)
    coef = np.polyfit(x - x.mean(), y, 2)
    optimum = {"": math.exp(v["x"]), "_low": math.exp(v["low"]), "_high": math.exp(v["high"]),
               "_no_minimum": v["no_minimum"], "samples": v["samples"]}
    return optimum, "ok", pd.DataFrame({"x": np.exp(grid), "loss": np.polyval(coef, grid - x.mean())})


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
