"""Comparisons over seeds: the loss gap between two shapes (notebooks 04 and 06), and whether loss is
monotone in a size such as width (notebook 03)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .stats import Fit, as_array, check_level, fmt, fmt_ci, r2, same_length, t_interval


@dataclass(kw_only=True, repr=False)
class ComparisonFit(Fit):
    paired: bool = False
    method: str = ""


@dataclass(kw_only=True, repr=False)
class MonotoneFit(Fit):
    steps: pd.DataFrame | None = None      # one row per step between neighbouring x values
    decreasing: bool = True
    reason: str = ""


def compare_losses(losses_a, losses_b, *, seeds_a=None, seeds_b=None, level=0.95) -> ComparisonFit:
    """The gap mean(b) − mean(a) between two shapes' final losses, with a t-interval: paired over seeds
    when both sides ran the same seeds (same data order, so each seed's luck cancels), Welch's otherwise.
    Needs ≥ 2 runs per side. Verdict: 'first lower', 'second lower' or 'no clear difference'."""
    check_level(level)
    a, b = as_array("losses_a", losses_a), as_array("losses_b", losses_b)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"need at least 2 runs of each shape for an interval, got {len(a)} and {len(b)}")
    sa = None if seeds_a is None else np.asarray(seeds_a).tolist()
    sb = None if seeds_b is None else np.asarray(seeds_b).tolist()
    paired = sa is not None and sb is not None and sorted(sa) == sorted(sb) and len(set(sa)) == len(a)
    if paired:
        a, b = a[np.argsort(sa)], b[np.argsort(sb)]
        test = stats.ttest_rel(b, a)
        method = f"paired over {len(a)} seeds"
    else:
        test = stats.ttest_ind(b, a, equal_var=False)
        method = f"Welch, {len(a)} and {len(b)} runs"
    gap = float(b.mean() - a.mean())
    low, high = test.confidence_interval(level)
    low, high = (gap, gap) if not np.isfinite(low) else (float(low), float(high))
    verdict = "second lower" if high < 0 else "first lower" if low > 0 else "no clear difference"
    text = (f"Mean loss {a.mean():.4f} (first, {len(a)} runs) vs {b.mean():.4f} (second, {len(b)} runs): gap second − "
            f"first = {gap:+.4f} ({level:.0%} CI {low:+.4f} to {high:+.4f}; {method}). Verdict: {verdict}.")
    data = pd.DataFrame({"shape": ["first"] * len(a) + ["second"] * len(b), "loss": np.concatenate([a, b])})
    return ComparisonFit(kind="loss_comparison", params={"gap": gap, "mean_a": float(a.mean()), "mean_b": float(b.mean())},
                         ci={"gap": (low, high)}, n_points=len(a) + len(b), level=level, verdict=verdict, data=data,
                         text=text, paired=paired, method=method)


def check_monotone(x, losses, *, seeds=None, decreasing=True, level=0.95) -> MonotoneFit:
    """Does the loss fall (or rise, `decreasing=False`) steadily with x (e.g. width at fixed depth)?

    Per x the mean over repeats; each step between neighbouring x values gets its mean difference and,
    with ≥ 2 runs on both sides, a t-interval: paired over `seeds` when both sides ran the same seeds (a
    seed fixes the data order at every x, so its luck cancels), Welch's otherwise (`steps['method']`).
    Overall: the least-squares slope of loss on ln x with
    its t-interval (`params['slope']`, nats per e-fold of x). Verdict: 'monotone, every step significant',
    'monotone' (every step's mean moves the expected way) or 'not monotone' (naming the wrong-way step
    and whether its interval excludes 0). `steps` is the table of steps."""
    check_level(level)
    x, y = as_array("x", x, positive=True), as_array("losses", losses)
    same_length(x=x, losses=y)
    if seeds is not None:
        seeds = np.asarray(seeds)
        same_length(x=x, seeds=seeds)
    values = np.unique(x)
    if len(values) < 3:
        raise ValueError(f"need at least 3 distinct x values to judge a trend, got {values.tolist()}")
    sign = -1.0 if decreasing else 1.0
    rows = []
    for lo, hi in zip(values[:-1], values[1:]):
        a, b = y[x == lo], y[x == hi]
        diff, low, high, method = float(b.mean() - a.mean()), math.nan, math.nan, "none"
        if len(a) >= 2 and len(b) >= 2:
            sa, sb = (None, None) if seeds is None else (seeds[x == lo], seeds[x == hi])
            gap = compare_losses(a, b, seeds_a=sa, seeds_b=sb, level=level)
            (low, high), method = gap.ci["gap"], "paired" if gap.paired else "Welch"
            if low == high:                      # no spread at all: no interval
                low = high = math.nan
        rows.append(dict(x_from=float(lo), x_to=float(hi), diff=diff, low=float(low), high=float(high), method=method,
                         expected=bool(sign * diff > 0), significant=bool(np.isfinite(low) and (low > 0 or high < 0))))
    steps = pd.DataFrame(rows)
    line = stats.linregress(np.log(x), y)
    slope_ci = t_interval(line.slope, line.stderr, len(y) - 2, level) if len(y) > 2 else (math.nan, math.nan)
    wrong = steps[~steps["expected"]]
    if wrong.empty:
        verdict = "monotone, every step significant" if steps["significant"].all() else "monotone"
        reason = f"the mean loss {'falls' if decreasing else 'rises'} at every step"
    else:
        verdict, w = "not monotone", wrong.iloc[0]
        sig = "its interval excludes 0" if w["significant"] else "within noise: its interval includes 0"
        reason = (f"from x = {fmt(w['x_from'])} to {fmt(w['x_to'])} the mean loss moves {w['diff']:+.4f} the other way "
                  f"({sig})" + (f"; {len(wrong) - 1} more such step(s)" if len(wrong) > 1 else ""))
    fitted = line.intercept + line.slope * np.log(x)
    text = (f"Loss against x over {len(y)} runs at {len(values)} values: slope {line.slope:+.4f} per e-fold of x "
            f"({level:.0%} CI {fmt_ci(slope_ci)}). Verdict: {verdict} — {reason}.")
    return MonotoneFit(kind="monotone", params={"slope": float(line.slope), "n_wrong_steps": float(len(wrong))},
                       ci={"slope": slope_ci}, n_points=len(y), level=level, r2=r2(y, fitted), residuals=y - fitted,
                       verdict=verdict, data=pd.DataFrame({"x": x, "loss": y}), text=text, steps=steps,
                       decreasing=decreasing, reason=reason)
