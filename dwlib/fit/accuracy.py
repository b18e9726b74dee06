"""Task accuracy (the k-hop score of `dwlib.khop`) between shapes: per-shape means with intervals, a
seed-paired comparison, whether loss and accuracy rank the shapes alike, and the depth each hop count needs.

A run's accuracy carries two kinds of noise: the validation set's binomial sampling (p(1−p)/n over its
scored positions) and the run's own luck (its seed's data order and initialisation, shared by every
shape that ran that seed). Intervals are t-intervals over seeds — paired where both shapes ran the same
seeds — whose standard error is never below the binomial one, so two seeds that happen to agree cannot
make a claim the validation set is too small to support. `bench/accuracy_calibration.py` measures their
false-positive rate, power and coverage on planted accuracies (percentile bootstraps over three seeds
cover far less than 95%: measured there).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from .compare import ComparisonFit, compare_losses
from .stats import Fit, check_level, check_n_boot, percentile_ci, t_interval

POWER = 0.8   # the power at which a negative verdict states the difference it could have detected


def by_hops(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs frame long by hop count: one row per (run, k) with `hops`, `accuracy`, `scored`, from
    the `task_accuracy_by_hops` column ({"1": {"accuracy", "scored"}, …})."""
    if "task_accuracy_by_hops" not in runs:
        raise ValueError("the runs have no task_accuracy_by_hops column: train on a khop corpus")
    keep = [c for c in ("run_id", "run_key", "status", "depth", "width", "seed", "params", "non_embedding_params", "tokens",
                        "val_loss", "trained_here") if c in runs]
    rows = [{**{c: run[c] for c in keep}, "hops": int(k), "accuracy": float(v["accuracy"]), "scored": int(v["scored"])}
            for _, run in runs.iterrows() if isinstance(run["task_accuracy_by_hops"], dict)
            for k, v in run["task_accuracy_by_hops"].items()]
    if not rows:
        raise ValueError("no run has a task accuracy per hop count")
    return pd.DataFrame(rows)


def _sweep_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """Leave out runs an explorer's Train button added (one seed of a shape): they join no statistic."""
    return frame[~frame["trained_here"].fillna(False).astype(bool)] if "trained_here" in frame else frame


def _scores(runs: pd.DataFrame, hops: int | None) -> pd.DataFrame:
    """depth, width, seed, accuracy, scored (and val_loss) per run: all answer positions or one hop count."""
    if hops is None:
        frame = runs.dropna(subset=["task_accuracy"]).rename(columns={"task_accuracy": "accuracy", "task_scored": "scored"})
    else:
        long = by_hops(runs)
        frame = long[long["hops"] == int(hops)]
        if frame.empty:
            raise ValueError(f"no run scored hop count {hops}; hop counts: {sorted(set(long['hops']))}")
    frame = _sweep_runs(frame)
    if frame.empty:
        raise ValueError("no run has a task accuracy")
    return frame


def _binomial_var(acc, scored) -> np.ndarray:
    p = np.clip(np.asarray(acc, float), 0.5 / np.asarray(scored), 1 - 0.5 / np.asarray(scored))
    return p * (1 - p) / np.asarray(scored, float)


def _mean_se(acc, scored) -> tuple[float, float, int]:
    """Mean accuracy of one shape's runs, its standard error (over seeds, floored by the binomial), dof."""
    acc, n = np.asarray(acc, float), len(acc)
    binomial = math.sqrt(_binomial_var(acc, scored).mean() / n)
    spread = acc.std(ddof=1) / math.sqrt(n) if n > 1 else 0.0
    return float(acc.mean()), max(spread, binomial), max(n - 1, 1)


def accuracy_table(runs: pd.DataFrame, *, hops: int | None = None, level: float = 0.95) -> pd.DataFrame:
    """One row per shape (depth, width): runs, parameters, tokens, mean text loss with its t-interval over
    seeds, mean task accuracy with its interval (over seeds, never narrower than the binomial one)."""
    check_level(level)
    rows = []
    for (depth, width), g in _scores(runs, hops).groupby(["depth", "width"]):
        acc, se, dof = _mean_se(g["accuracy"], g["scored"])
        low, high = t_interval(acc, se, dof, level) if len(g) > 1 else (np.nan, np.nan)
        row = dict(depth=int(depth), width=int(width), runs=len(g))
        row.update({c: int(g[c].iloc[0]) for c in ("non_embedding_params", "tokens") if c in g})
        if "val_loss" in g:
            loss = g["val_loss"].astype(float)
            half = stats.t.ppf(0.5 + level / 2, len(g) - 1) * loss.std(ddof=1) / math.sqrt(len(g)) if len(g) > 1 else np.nan
            row.update(text_loss=loss.mean(), text_loss_low=loss.mean() - half, text_loss_high=loss.mean() + half)
        row.update(accuracy=acc, accuracy_low=max(low, 0.0), accuracy_high=min(high, 1.0), scored=int(g["scored"].sum()))
        rows.append(row)
    return pd.DataFrame(rows)


def _gap(a: pd.DataFrame, b: pd.DataFrame, level: float) -> dict:
    """mean(b) − mean(a) with its standard error and dof: paired over seeds when both ran the same seeds."""
    sa, sb = a["seed"].tolist(), b["seed"].tolist()
    paired = sorted(sa) == sorted(sb) and len(set(sa)) == len(sa) >= 2
    binomial = math.sqrt(_binomial_var(a["accuracy"], a["scored"]).mean() / len(a)
                         + _binomial_var(b["accuracy"], b["scored"]).mean() / len(b))
    if paired:
        d = b.set_index("seed")["accuracy"] - a.set_index("seed")["accuracy"]
        spread, dof, method = d.std(ddof=1) / math.sqrt(len(d)), len(d) - 1, f"paired over {len(d)} seeds"
    else:
        va, vb = a["accuracy"].var(ddof=1) / len(a), b["accuracy"].var(ddof=1) / len(b)
        spread = math.sqrt(va + vb)
        dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if va + vb > 0 else len(a) + len(b) - 2
        method = f"Welch, {len(a)} and {len(b)} runs"
    se = max(spread, binomial)
    gap = float(b["accuracy"].mean() - a["accuracy"].mean())
    crit = stats.t.ppf(0.5 + level / 2, dof)
    return dict(gap=gap, se=se, dof=dof, low=gap - crit * se, high=gap + crit * se, paired=paired, method=method,
                detectable=float((crit + stats.t.ppf(POWER, dof)) * se), floored=binomial >= spread)


def compare_accuracy(runs: pd.DataFrame, first, second, *, hops: int | None = None,
                     level: float = 0.95) -> ComparisonFit:
    """The task-accuracy difference second − first between two shapes, each a (depth, width), over their
    runs in `runs`: paired by seed when both ran the same seeds, Welch's otherwise, the standard error never
    below the binomial one. Verdict 'second higher', 'first higher' or 'no clear difference';
    params['detectable']: the difference this comparison would find with 80% power."""
    check_level(level)
    scores = _scores(runs, hops)
    sides = []
    for shape in (first, second):
        depth, width = (int(v) for v in shape)
        g = scores[(scores["depth"] == depth) & (scores["width"] == width)]
        if len(g) < 2:
            raise ValueError(f"need at least 2 runs of shape D={depth} W={width} for an interval, got {len(g)}")
        sides.append(g)
    a, b = sides
    r = _gap(a, b, level)
    verdict = "second higher" if r["low"] > 0 else "first higher" if r["high"] < 0 else "no clear difference"
    return ComparisonFit(kind="accuracy_comparison", level=level, verdict=verdict, paired=r["paired"], method=r["method"],
                         params=dict(gap=r["gap"], mean_a=float(a["accuracy"].mean()), mean_b=float(b["accuracy"].mean()),
                                     se=r["se"], detectable=r["detectable"], hops=hops or 0,
                                     depth_a=int(first[0]), width_a=int(first[1]),
                                     depth_b=int(second[0]), width_b=int(second[1])),
                         ci={"gap": (r["low"], r["high"])}, n_points=len(a) + len(b),
                         health=["the binomial noise of the validation set bounds the interval"] if r["floored"] else [],
                         data=pd.concat([a.assign(shape="first"), b.assign(shape="second")], ignore_index=True))


def ranking_agreement(runs: pd.DataFrame, *, hops: int | None = None, n_boot: int = 2000, level: float = 0.95,
                      seed: int = 0) -> Fit:
    """Do text loss and task accuracy rank the shapes alike? Kendall's τ between the ranking by mean loss
    (lower is better) and by mean accuracy (higher is better), with a parametric-bootstrap interval (each
    shape's two means drawn from their sampling distributions). Pairs ranked **oppositely** with both
    differences significant (Bonferroni over the pairs) are listed. Verdict: 'disagree' when such a pair
    exists, 'agree' when τ's interval lies above 0 and none does, else 'unclear'."""
    check_level(level)
    check_n_boot(n_boot)
    scores = _scores(runs, hops).dropna(subset=["val_loss"])
    groups = {(int(d), int(w)): g for (d, w), g in scores.groupby(["depth", "width"]) if len(g) >= 2}
    if len(groups) < 3:
        raise ValueError(f"need at least 3 shapes with 2 or more runs each to rank, got {len(groups)}")
    shapes = sorted(groups)
    loss = np.array([groups[s]["val_loss"].mean() for s in shapes])
    loss_se = np.array([groups[s]["val_loss"].std(ddof=1) / math.sqrt(len(groups[s])) for s in shapes])
    acc_se = [_mean_se(groups[s]["accuracy"], groups[s]["scored"]) for s in shapes]
    acc = np.array([m for m, _, _ in acc_se])
    tau = float(stats.kendalltau(-loss, acc).statistic)
    rng = np.random.default_rng(seed)
    dof = np.array([d for _, _, d in acc_se])
    draws_loss = loss + rng.standard_t(dof, (n_boot, len(shapes))) * loss_se
    draws_acc = acc + rng.standard_t(dof, (n_boot, len(shapes))) * np.array([s for _, s, _ in acc_se])
    i, j = np.triu_indices(len(shapes), 1)     # Kendall's τ of every draw at once (continuous draws: no ties)
    taus = (np.sign(draws_loss[:, j] - draws_loss[:, i]) * np.sign(draws_acc[:, i] - draws_acc[:, j])).mean(axis=1)
    low, high = percentile_ci(taus, level)
    pairs = [(i, j) for i in range(len(shapes)) for j in range(i + 1, len(shapes))]
    strict = 1 - (1 - level) / len(pairs)        # Bonferroni: any opposed pair is a claim about all pairs
    opposed = []
    for i, j in pairs:
        gi, gj = groups[shapes[i]], groups[shapes[j]]
        lg = compare_losses(gi["val_loss"], gj["val_loss"], seeds_a=gi["seed"], seeds_b=gj["seed"], level=strict)
        ag = _gap(gi, gj, strict)
        lower_loss = {"second lower": 1, "first lower": -1}.get(lg.verdict, 0)   # +1: shape j has the lower loss
        higher_acc = 1 if ag["low"] > 0 else -1 if ag["high"] < 0 else 0     # +1: shape j has the higher accuracy
        if lower_loss and higher_acc and lower_loss != higher_acc:
            opposed.append(dict(first=shapes[i], second=shapes[j], loss_gap=lg.params["gap"], accuracy_gap=ag["gap"]))
    verdict = "disagree" if opposed else "agree" if low > 0 else "unclear"
    table = pd.DataFrame({"depth": [s[0] for s in shapes], "width": [s[1] for s in shapes], "text_loss": loss,
                          "accuracy": acc, "loss_rank": stats.rankdata(loss), "accuracy_rank": stats.rankdata(-acc)})
    return Fit(kind="ranking_agreement", params=dict(tau=tau, shapes=len(shapes), opposed=len(opposed), hops=hops or 0),
               ci={"tau": (float(low), float(high))}, n_points=len(scores), level=level, n_boot=n_boot, verdict=verdict,
               data=table, samples=pd.DataFrame({"tau": taus}), health=[str(o) for o in opposed])


def depth_for_accuracy(runs: pd.DataFrame, target: float, *, level: float = 0.95) -> Fit:
    """For each hop count k, the shallowest depth whose mean accuracy reaches `target` (`depth`) and the
    shallowest whose interval lies wholly above it (`surely`); then the least-squares slope of that depth
    against log₂ k with its t-interval, when three or more hop counts are reached (Sanford et al. 2024: k
    hops need depth growing like log k). Depths are grid values, so the slope is a coarse reading of a
    step function; `identified` is False with fewer than three reached hop counts."""
    if not 0 < float(target) < 1:
        raise ValueError(f"target must be an accuracy strictly between 0 and 1, got {target!r}")
    check_level(level)
    long = _sweep_runs(by_hops(runs))
    rows = []
    for k, g in long.groupby("hops"):
        per_depth = []
        for depth, h in g.groupby("depth"):
            acc, se, dof = _mean_se(h["accuracy"], h["scored"])
            low, high = t_interval(acc, se, dof, level) if len(h) > 1 else (np.nan, np.nan)
            per_depth.append((int(depth), acc, low, high))
        reach = [d for d, acc, _, _ in per_depth if acc >= target]
        sure = [d for d, _, low, _ in per_depth if low >= target]
        best = max(per_depth, key=lambda p: p[1])
        rows.append(dict(hops=int(k), depth=min(reach) if reach else np.nan, surely=min(sure) if sure else np.nan,
                         best_accuracy=best[1], best_depth=best[0], deepest=max(p[0] for p in per_depth)))
    table = pd.DataFrame(rows)
    reached = table.dropna(subset=["depth"])
    params, ci, health = dict(target=float(target), reached=len(reached), hop_counts=len(table)), {}, []
    if len(reached) >= 3 and reached["depth"].nunique() > 1:
        fit = stats.linregress(np.log2(reached["hops"]), reached["depth"])
        params["slope"] = float(fit.slope)
        ci["slope"] = t_interval(fit.slope, fit.stderr, len(reached) - 2, level)
    else:
        health.append(f"{len(reached)} of {len(table)} hop counts reach accuracy {target:g} at a depth tried"
                      + (" (all at the same depth)" if len(reached) >= 3 else "") + ": no slope against log2 k")
    return Fit(kind="depth_for_accuracy", params=params, ci=ci, n_points=len(long), level=level,
               identified=not health, health=health, data=table)
