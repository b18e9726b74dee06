"""Critical depth: does the loss rise beyond some depth (a U-shape), where is its minimum, and does the
minimum move with the training budget?

Why not a quadratic in ln D: a curve that falls and then levels off bends a fitted parabola upward, so
its vertex lands inside the range and a "U" is found where there is none (Simonsohn 2018, "Two lines").
The verdict here rests on two calibrated tests of the *means* instead:

1. the **rise test**: is some depth deeper than the best one measurably worse? Statistic: the largest
   standardised rise R = max_{j beyond the minimum} (ȳ_j − ȳ_min)/se; its null distribution is simulated
   (parametric bootstrap) with every depth's mean equal — the least favourable of all curves without a
   rise (a falling curve gives smaller rises) — and the per-depth noise measured from the seeds. The
   mirror statistic F tests that the loss falls before the minimum.
2. a **model comparison**: does a saturating law that may rise, E + A·D^−a + c·ln D (c ≥ 0), predict
   held-out depths better than the monotone saturating law E + A·D^−a? (leave-one-depth-out
   cross-validation on the depth means, each weighted by its precision).

"U-shaped" needs a significant fall, a significant rise and the rising law winning out of sample. The
calibration on planted curves is in tests/test_fit.py and bench/u_test_calibration.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..config import paper_critical_depth, paper_critical_depth_power
from .stats import (Fit, as_array, check_level, check_n_boot, fmt, fmt_ci, group_means, local_vertex,
                    not_constant, percentile_ci, regime, resample_within, same_length)
from .verdicts import critical_depth_text

ALPHA = 0.05             # level of the rise and fall tests
PRIOR_DOF = 4            # per-depth variances are shrunk toward the pooled one with this weight (dof)
SATURATING_A = np.exp(np.linspace(np.log(0.02), np.log(4.0), 48))   # grid of the exponent a
VERDICTS = ("U-shaped", "monotone decreasing", "monotone increasing", "inconclusive")


@dataclass(kw_only=True, repr=False)
class CriticalDepthFit(Fit):
    """`fit_critical_depth`'s result. `params['d_star']` is the loss-minimising depth when the verdict is
    'U-shaped' (NaN otherwise: then `bound` says what the data do show, e.g. 'D* ≥ 12')."""

    width: float | None = None
    depth_range: tuple[float, float] = (math.nan, math.nan)
    p_rise: float = math.nan            # rise test: P(a rise this large | no rise anywhere)
    p_fall: float = math.nan            # fall test, mirror-wise
    rise: float = math.nan              # largest mean rise beyond the best depth (nats)
    cv_saturating: float = math.nan     # leave-one-depth-out error of E + A·D^−a
    cv_rising: float = math.nan         # … of E + A·D^−a + c·ln D
    bound: str = ""
    d_plateau: float = math.nan         # shallowest depth not measurably worse than the best
    best_depth: float = math.nan        # depth with the lowest mean loss
    reason: str = ""
    paper_log: float | None = None      # the paper's 2.43·ln W at this width
    paper_power: float | None = None    # its W^0.44 law anchored at W = 512
    regime: dict = field(default_factory=dict)
    excluded: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# The rise test
# ---------------------------------------------------------------------------------------------

def _level_sums(index, n_levels):
    """Matrices that turn point values (rows) into per-level sums: values @ S.T."""
    S = np.zeros((n_levels, len(index)))
    S[index, np.arange(len(index))] = 1.0
    return S


def _noise_se2(Y, index, n):
    """Squared standard errors of the per-depth means for each row of Y (points) → (rows, levels).
    With repeats: per-depth variances shrunk toward the pooled one (PRIOR_DOF). With one run per depth:
    the pooled variance from second differences of the means (Rice 1984), which ignores a smooth trend."""
    S = _level_sums(index, len(n))
    means = (Y @ S.T) / n
    if n.max() >= 2:
        ss = ((Y - means[:, index]) ** 2) @ S.T
        dof = np.maximum(n - 1, 0)
        pooled = ss.sum(axis=1, keepdims=True) / dof.sum()
        shrunk = (PRIOR_DOF * pooled + ss) / (PRIOR_DOF + dof)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = np.fmax(shrunk, ss / dof)          # never below a depth's own spread: deep runs scatter more
    else:
        second = means[:, 2:] - 2 * means[:, 1:-1] + means[:, :-2]
        var = np.repeat((second ** 2).mean(axis=1, keepdims=True) / 6, len(n), axis=1)
    return means, var / n


def _rise_fall(means, se2):
    """Largest standardised rise beyond the minimum (R) and fall before it (F), per row."""
    i_min = np.argmin(means, axis=1)
    rows = np.arange(len(means))
    z = (means - means[rows, i_min][:, None]) / np.sqrt(se2 + se2[rows, i_min][:, None])
    j = np.arange(means.shape[1])[None]
    R = np.where(j > i_min[:, None], z, -np.inf).max(axis=1)
    F = np.where(j < i_min[:, None], z, -np.inf).max(axis=1)
    return R, F


def rise_test(depths, losses, *, n_sim=2000, rng=None) -> dict:
    """The rise and fall tests on one depth sweep (see the module docstring). Returns p_rise, p_fall,
    the per-depth table (depth, n, mean, se) and the index of the best depth."""
    rng = np.random.default_rng(rng)
    levels, index, n, _, _ = group_means(depths, losses)
    means, se2 = _noise_se2(losses[None], index, n)
    R, F = _rise_fall(means, se2)
    # Noise of each depth for the null draws: the estimate, redrawn from its own sampling distribution
    # (scaled inverse χ² with the estimate's degrees of freedom) so the null also carries the
    # uncertainty of a variance measured from three seeds; plugging the estimate in as if exact makes
    # the test too eager where the noise is uneven across depths.
    dof = PRIOR_DOF + np.maximum(n - 1, 0) if n.max() >= 2 else np.full(len(n), max(1, len(n) - 2))
    var = se2[0] * n * dof / rng.chisquare(dof, size=(n_sim, len(n)))
    Z = rng.standard_normal((n_sim, len(losses))) * np.sqrt(var[:, index])
    R_null, F_null = _rise_fall(*_noise_se2(Z, index, n))
    p = lambda obs, null: 1.0 if not np.isfinite(obs) else float((1 + np.sum(null >= obs)) / (1 + n_sim))
    table = pd.DataFrame({"depth": levels, "n": n.astype(int), "mean": means[0], "se": np.sqrt(se2[0])})
    return dict(p_rise=p(R[0], R_null), p_fall=p(F[0], F_null), table=table, i_min=int(np.argmin(means[0])))


# ---------------------------------------------------------------------------------------------
# Saturating laws, compared out of sample
# ---------------------------------------------------------------------------------------------

def _saturating_fit(d, y, w, rising):
    """Weighted least squares of E + A·D^−a (+ c·ln D) over the grid of a, with A ≥ 0 and c ≥ 0
    (a negative coefficient drops its term). Returns a function D ↦ prediction."""
    best = (math.inf, None)
    for a in SATURATING_A:
        for cols in ([0, 1, 2], [0, 1], [0, 2], [0]) if rising else ([0, 1], [0]):
            X = np.column_stack([np.ones_like(d), d ** -a, np.log(d)])[:, cols]
            coef = np.linalg.lstsq(X * np.sqrt(w)[:, None], y * np.sqrt(w), rcond=None)[0]
            if (coef[1:] < 0).any():
                continue
            sse = float(np.sum(w * (y - X @ coef) ** 2))
            if sse < best[0] - 1e-15:
                best = (sse, (a, cols, coef))
            break   # the largest admissible model for this a
    a, cols, coef = best[1]
    return lambda D: np.column_stack([np.ones_like(D), D ** -a, np.log(D)])[:, cols] @ coef


def saturating_cv(table) -> tuple[float, float]:
    """Leave-one-depth-out prediction error (precision-weighted) of the monotone saturating law and of
    the law that may rise. Needs ≥ 5 depths (4 coefficients, one left out)."""
    d, y = table["depth"].to_numpy(float), table["mean"].to_numpy(float)
    w = 1.0 / np.maximum(table["se"].to_numpy(float) ** 2, 1e-18)
    errors = {False: 0.0, True: 0.0}
    for i in range(len(d)):
        keep = np.arange(len(d)) != i
        for rising in errors:
            pred = _saturating_fit(d[keep], y[keep], w[keep], rising)(d[i:i + 1])[0]
            errors[rising] += w[i] * (y[i] - pred) ** 2
    return errors[False], errors[True]


# ---------------------------------------------------------------------------------------------
# The fitter
# ---------------------------------------------------------------------------------------------

def fit_critical_depth(depths, losses, *, seeds=None, width=None, n_boot=1000, level=0.95, random_state=0,
                       tokens_per_param=None, final_slope=None, excluded=()) -> CriticalDepthFit:
    """Is loss against depth U-shaped at this width, and if so where is its minimum D*?

    depths, losses: one entry per run (repeats at a depth are seeds). Verdict (see the module
    docstring for the tests): 'U-shaped' — the loss falls, then rises measurably, and a law that may
    rise beats the monotone saturating one on held-out depths; D* is then the vertex of a local
    parabola in ln D around the best depth (`stats.local_vertex`), with a bootstrap interval over the
    runs at each depth. 'monotone decreasing' — it falls and no rise is detected: `bound` gives
    D* ≥ the shallowest depth not measurably worse than the best. 'monotone increasing' — the
    shallowest depth is best and deeper ones are worse. 'inconclusive' — otherwise, with the reason.
    tokens_per_param, final_slope (per run, optional) describe the training regime in the summary;
    `excluded` names runs left out by the caller (unstable, diverged) so the summary can list them."""
    check_level(level)
    check_n_boot(n_boot)
    depths = as_array("depths", depths, positive=True)
    losses = as_array("losses", losses, positive=True)
    same_length(depths=depths, losses=losses)
    if seeds is not None:
        seeds = np.asarray(seeds)
        same_length(depths=depths, seeds=seeds)
    levels = np.unique(depths)
    if len(levels) < 3:
        raise ValueError(f"need at least 3 distinct depths, got {levels.tolist()}")
    if len(depths) < 4:
        raise ValueError(f"need at least 4 runs (3 depths leave no noise to measure), got {len(depths)}")
    not_constant("losses", losses)
    rng = np.random.default_rng(random_state)

    test = rise_test(depths, losses, rng=rng)
    table = test["table"]
    i_min = test["i_min"]
    m, se = table["mean"].to_numpy(), table["se"].to_numpy()
    rise = float(m[i_min:].max() - m[i_min])
    z_crit = 1.6448536269514722    # one-sided 5%: "measurably worse than the best"
    worse = (m - m[i_min]) / np.sqrt(se ** 2 + se[i_min] ** 2) > z_crit
    d_plateau = float(levels[np.flatnonzero(~worse)[0]])
    cv0, cv1 = saturating_cv(table) if len(levels) >= 5 else (math.nan, math.nan)
    verdict, reason, bound = _verdict(test, levels, rise, d_plateau, cv0, cv1)
    d_star, ci, vertex = math.nan, (math.nan, math.nan), None
    if verdict == "U-shaped":
        vertex = local_vertex(np.log(depths), losses, n_boot=n_boot, level=level, rng=rng)
        d_star, ci = math.exp(vertex["x"]), (math.exp(vertex["low"]), math.exp(vertex["high"]))
        bound = f"D* = {fmt(d_star)} ({level:.0%} CI {fmt_ci(ci)})"
    data = pd.DataFrame({"depth": depths, "loss": losses})
    if seeds is not None:
        data["seed"] = seeds
    curve = _saturating_curves(table)
    samples = pd.DataFrame({"d_star": np.exp(vertex["samples"])}) if vertex and vertex["samples"] is not None else None
    result = CriticalDepthFit(
        kind="critical_depth", params={"d_star": d_star}, ci={"d_star": ci}, n_points=len(depths), level=level,
        n_boot=n_boot if vertex else 0, verdict=verdict, data=data, curve=curve, samples=samples, width=width,
        depth_range=(float(levels[0]), float(levels[-1])), p_rise=test["p_rise"], p_fall=test["p_fall"], rise=rise,
        cv_saturating=cv0, cv_rising=cv1, bound=bound, d_plateau=d_plateau, best_depth=float(levels[i_min]),
        reason=reason, excluded=list(excluded),
        regime=regime(tokens_per_param, final_slope, depths, best=float(levels[i_min]), effect=rise),
        paper_log=paper_critical_depth(width) if width is not None else None,
        paper_power=paper_critical_depth_power(width) if width is not None else None)
    result.text = critical_depth_text(result)
    return result


def _verdict(test, levels, rise, d_plateau, cv0, cv1) -> tuple[str, str, str]:
    """(verdict, the reason in words, the bound on D* when there is no interior minimum)."""
    falls, rises = test["p_fall"] < ALPHA, test["p_rise"] < ALPHA
    lo_d, hi_d, best = float(levels[0]), float(levels[-1]), float(levels[test["i_min"]])
    if falls and rises and cv1 < cv0:
        return "U-shaped", (f"the loss falls to its lowest at D ≈ {fmt(best)} and rises by {rise:.3f} nats beyond it "
                            f"(rise test p = {test['p_rise']:.3g}), and a law that may rise predicts held-out depths "
                            "better than a monotone saturating one"), ""
    if falls and rises:
        return "inconclusive", ("a rise beyond the best depth is significant by the rise test (p = "
                                f"{test['p_rise']:.3g}), but " + (
                                    "with fewer than 5 depths no law can be compared out of sample" if len(levels) < 5
                                    else "a monotone saturating law predicts held-out depths as well as one that "
                                         "rises: the rise is not a consistent trend (a bump, or one noisy depth)")), ""
    if falls:
        reason = ("the loss keeps falling to the deepest depth tried" if d_plateau == hi_d else
                  f"the loss falls until D ≈ {fmt(d_plateau)} and no depth beyond is measurably better or worse")
        return "monotone decreasing", (reason + f" (no rise detected up to D = {fmt(hi_d)}: rise test p = "
                                       f"{test['p_rise']:.3g})"), f"D* ≥ {fmt(d_plateau)}"
    if rises and test["i_min"] == 0:
        return "monotone increasing", ("the shallowest depth tried is best and deeper ones are measurably worse "
                                       f"(p = {test['p_rise']:.3g})"), f"D* ≤ {fmt(lo_d)}"
    return "inconclusive", ("no depth is measurably better than another (fall test p = "
                            f"{test['p_fall']:.3g}, rise test p = {test['p_rise']:.3g}): more seeds or a wider range "
                            "would help"), ""


def _saturating_curves(table) -> pd.DataFrame:
    """Both saturating laws fitted to all depth means, on a grid (for charts)."""
    d, y = table["depth"].to_numpy(float), table["mean"].to_numpy(float)
    w = 1.0 / np.maximum(table["se"].to_numpy(float) ** 2, 1e-18)
    grid = np.exp(np.linspace(np.log(d.min()), np.log(d.max()), 100))
    frames = [pd.DataFrame({"depth": grid, "loss": _saturating_fit(d, y, w, rising)(grid), "law": name})
              for rising, name in ((False, "E + A·D^-a"), (True, "E + A·D^-a + c·ln D"))]
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# From the store's runs frame, and D* across annealed budgets
# ---------------------------------------------------------------------------------------------

def usable_runs(runs: pd.DataFrame, columns) -> tuple[pd.DataFrame, list[str]]:
    """Complete runs with finite `columns`, and one line per run left out saying why (diverged,
    unstable, unfinished, failed, or a missing value): no silent survivorship."""
    missing = [c for c in columns if c not in runs.columns]
    if missing:
        raise ValueError(f"runs frame has no column(s) {missing} (columns: {list(runs.columns)})")
    ok = np.all([np.isfinite(runs[c].astype(float)) for c in columns], axis=0)
    status = runs["status"] if "status" in runs.columns else pd.Series("complete", index=runs.index)
    keep = ok & (status == "complete").to_numpy()
    excluded = []
    for _, r in runs[~keep].iterrows():
        why = r.get("status", "?") if r.get("status", "complete") != "complete" else "no finite " + "/".join(columns)
        detail = r.get("unstable_reason") or r.get("error") or ""
        shape = f"D={r['depth']:g}" + (f" W={r['width']:g}" if "width" in r else "") + (f" seed {r['seed']}" if "seed" in r else "")
        excluded.append(f"{r.get('run_id', '?')} ({shape}): {why}" + (f" — {detail}" if isinstance(detail, str) and detail else ""))
    return runs[keep], excluded


# Columns of the store's runs frame that set a run's configuration besides its depth, width and seed.
CONFIG_COLUMNS = ("heads", "context", "mlp", "norm", "share", "parametrization", "lr", "schedule", "warmup",
                  "cooldown", "batch_size", "tokens", "corpus", "tokenizer", "corpus_fingerprint")


def one_configuration(frame: pd.DataFrame, width) -> None:
    """Refuse runs at one width that mix configurations, naming the differing field: seeds are repeats
    of one run, so at each depth every CONFIG_COLUMNS column must take one value (a value may change with
    the depth — each depth at its own best learning rate is one design), and no (depth, seed) may appear
    twice (then the runs differ in a field the frame does not show)."""
    for col in (c for c in CONFIG_COLUMNS if c in frame.columns):
        counts = frame.groupby("depth")[col].nunique()
        if (counts > 1).any():
            depth = counts.idxmax()
            values = sorted(map(str, frame.loc[frame["depth"] == depth, col].dropna().unique()))
            raise ValueError(f"the runs at width {width:g} mix configurations: at D = {depth:g} they differ in "
                             f"{col!r} ({', '.join(values)}), so they are not seeds of one run — select one "
                             f"{col} first" + (" (budgets that were not annealed are separate sweeps)"
                                               if col == "tokens" else ""))
    if "seed" in frame.columns:
        twice = frame[frame.duplicated(["depth", "seed"], keep=False)]
        if len(twice):
            r = twice.iloc[0]
            raise ValueError(f"the runs at width {width:g} hold {int((twice['depth'] == r['depth']).sum())} runs of seed "
                             f"{r['seed']} at D = {r['depth']:g}" + (f" ({', '.join(map(str, twice['run_id'][:4]))})"
                                                                      if "run_id" in twice else "")
                             + ": they differ in a field the frame does not show — select one configuration first")


def _one_width(runs, width):
    if width is None:
        widths = sorted(runs["width"].unique())
        if len(widths) != 1:
            raise ValueError(f"runs span widths {widths}: pass width=")
        width = widths[0]
    return runs[runs["width"] == width], width


def critical_depth_from_frame(runs: pd.DataFrame, *, width=None, loss="val_loss", **kwargs) -> CriticalDepthFit:
    """`fit_critical_depth` on the store's runs frame at one `width` (the only one when None): complete
    runs only — diverged, unstable and unfinished ones are excluded and listed in the summary — with
    the regime (tokens_per_param, final_slope) taken from the frame. A frame that mixes configurations at
    a depth (two learning rates, two budgets that were not annealed, …) is refused (`one_configuration`). When the frame holds annealed runs
    at several budgets (`dwlib.sweep.anneal`), the fit uses the largest budget and the regime's slope is
    the change between the two largest budgets per doubling of tokens (a run's own last quarter is
    mostly its cooldown, whose drop says nothing about how much more data would help)."""
    frame, width = _one_width(runs, width)
    frame, excluded = usable_runs(frame, ["depth", loss])
    if frame.empty:
        raise ValueError(f"no complete runs with a finite {loss} at width {width}" +
                         (f" (excluded: {'; '.join(excluded)})" if excluded else ""))
    slope, slope_kind = frame.get("final_slope"), "last quarter"
    budgets = np.unique(frame["tokens"]) if "tokens" in frame else []
    if len(budgets) >= 2 and "schedule" in frame and frame["schedule"].isin(["wsd", "wsd-sqrt"]).all():
        last, before = (frame[frame["tokens"] == t] for t in budgets[-1:-3:-1])
        one_configuration(last, width)
        pairs = last.merge(before, on=["depth", "seed"], how="left", suffixes=("", "_before"))
        slope = (pairs[loss] - pairs[f"{loss}_before"]) / np.log2(budgets[-1] / budgets[-2])
        frame, slope_kind = pairs, "annealed budgets"
    else:
        one_configuration(frame, width)
    tpp = frame["tokens_per_param"] if "tokens_per_param" in frame else frame["tokens"] / frame["non_embedding_params"] \
        if {"tokens", "non_embedding_params"} <= set(frame.columns) else None
    result = fit_critical_depth(frame["depth"].to_numpy(), frame[loss].to_numpy(float),
                                seeds=frame["seed"].to_numpy() if "seed" in frame else None, width=width,
                                tokens_per_param=tpp, final_slope=slope, excluded=excluded, **kwargs)
    if slope is not None:
        result.regime["slope_kind"] = slope_kind
        result.text = critical_depth_text(result)
    return result


def critical_depth_by_budget(runs: pd.DataFrame, *, width=None, loss="val_loss", n_boot=1000, level=0.95,
                             random_state=0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """D* at every training budget of an annealed depth sweep (one annealed run per depth, seed and
    budget: the cooldown branches of `dwlib.sweep.anneal`), and whether it moves between budgets.

    Returns (by_budget, moves). by_budget: one row per budget — tokens, verdict, d_star, low, high,
    bound (text) and bound_depth, best_depth, p_rise, n_runs, tokens_per_param range. moves: one row per pair of consecutive budgets where
    both are U-shaped — the paired bootstrap difference D*(T₂) − D*(T₁) with its interval, computed from
    the same resamples (the runs at each depth drawn with the same indices at both budgets, since a
    seed's runs at several budgets share one trunk), and `moves` = the interval excludes 0. Budgets
    whose runs were not annealed (a schedule other than wsd / wsd-sqrt) are refused: a cosine run read
    part-way has not decayed its learning rate."""
    frame, width = _one_width(runs, width)
    if "schedule" in frame.columns and not frame["schedule"].isin(["wsd", "wsd-sqrt"]).all():
        raise ValueError("critical_depth_by_budget needs annealed runs (schedule wsd or wsd-sqrt, e.g. from "
                         f"`--anneal-at`); got schedules {sorted(frame['schedule'].unique())}")
    frame, excluded = usable_runs(frame, ["depth", "tokens", loss])
    budgets = np.unique(frame["tokens"])
    rows, fits = [], {}
    for T in budgets:
        at = frame[frame["tokens"] == T]
        try:
            fits[T] = f = fit_critical_depth(at["depth"], at[loss], seeds=at.get("seed"), width=width, n_boot=n_boot,
                                             level=level, random_state=random_state,
                                             tokens_per_param=at.get("tokens_per_param"))
        except ValueError as err:
            rows.append(dict(tokens=T, verdict=f"not fitted: {err}", n_runs=len(at)))
            continue
        bound_depth = {"monotone decreasing": f.d_plateau, "monotone increasing": f.depth_range[0]}.get(f.verdict)
        rows.append(dict(tokens=T, verdict=f.verdict, d_star=f.params["d_star"], low=f.ci["d_star"][0],
                         high=f.ci["d_star"][1], bound=f.bound, bound_depth=bound_depth, best_depth=f.best_depth,
                         p_rise=f.p_rise, n_runs=len(at), tokens_per_param=f.regime.get("tokens_per_param")))
    by_budget = pd.DataFrame(rows, columns=["tokens", "verdict", "d_star", "low", "high", "bound", "bound_depth",
                                            "best_depth", "p_rise", "n_runs", "tokens_per_param"])
    by_budget.attrs["excluded"] = excluded
    moves = []
    for t1, t2 in zip(budgets[:-1], budgets[1:]):
        if not all(t in fits and fits[t].verdict == "U-shaped" for t in (t1, t2)):
            continue
        diff = _paired_vertex_difference(frame, t1, t2, loss, n_boot, random_state)
        lo, hi = percentile_ci(diff, level)
        moves.append(dict(tokens_from=t1, tokens_to=t2, d_star_from=fits[t1].params["d_star"],
                          d_star_to=fits[t2].params["d_star"], shift=float(np.nanmedian(diff)), low=lo, high=hi,
                          moves=bool(lo > 0 or hi < 0)))
    return by_budget, pd.DataFrame(moves, columns=["tokens_from", "tokens_to", "d_star_from", "d_star_to",
                                                    "shift", "low", "high", "moves"])


def _paired_vertex_difference(frame, t1, t2, loss, n_boot, seed):
    """Bootstrap draws of D*(t2) − D*(t1): both budgets resampled with the same draws (runs matched by
    depth and seed), each resample's D* the local-parabola vertex."""
    a = frame[frame["tokens"] == t1].sort_values(["depth", "seed"])
    b = frame[frame["tokens"] == t2].sort_values(["depth", "seed"])
    common = a.merge(b, on=["depth", "seed"], suffixes=("_1", "_2"))
    x = np.log(common["depth"].to_numpy(float))
    index = np.unique(x, return_inverse=True)[1]
    Y1 = resample_within(index, common[f"{loss}_1"].to_numpy(float), n_boot, np.random.default_rng(seed))
    Y2 = resample_within(index, common[f"{loss}_2"].to_numpy(float), n_boot, np.random.default_rng(seed))
    out = np.empty(n_boot)
    for i in range(n_boot):
        v1 = local_vertex(x, Y1[i], n_boot=0)["x"]
        v2 = local_vertex(x, Y2[i], n_boot=0)["x"]
        out[i] = math.exp(v2) - math.exp(v1)
    return out
