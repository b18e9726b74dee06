"""Critical depth: does the loss rise beyond some depth (a U-shape), where is its minimum, and does the
minimum move with the training budget?

Why not a quadratic in ln D: a curve that falls and then levels off bends a fitted parabola upward, so
its vertex lands inside the range and a "U" is found where there is none (Simonsohn 2018, "Two lines").
The verdict rests on tests of the depth means instead, built to survive what real sweeps do:

- **Seeds are a block.** In this trainer a seed fixes the data order at every depth, so a seed's runs
  share an effect. Depth means and their noise come from a two-way depth + seed model (residual dof
  (depths − 1)(seeds − 1) on a full grid; missing cells are fine): a seed's luck cancels in every
  comparison between depths. Per-depth residual variances are shrunk toward the pooled one.
- **One bad run is named, not obeyed.** A run far from what its depth and seed predict (externally
  studentised residual beyond the Bonferroni t-bound at OUTLIER_ALPHA, judged only where ≥ 3 runs share
  the depth) is flagged; the verdict is made without it and the summary also gives the verdict with it.
- **A rise must persist.** At a break b, the right segment [b, deepest] must slope up in ln D *and* end
  higher than it starts (deepest − D_b), each judged against the largest of its kind over all breaks
  (max-adjusted p-values); a break's p is the larger of the two, the test's p the smallest over breaks:
  a two-lines test whose break the data choose. A bump inside the range has no high end. Slopes are ≤ 0
  on every curve that never rises, end contrasts on every curve whose deepest depth is nowhere above a
  shallower one (levelling off, bumps), so for both the flat curve is the least favourable null: it is
  simulated with every depth's mean equal and the measured noise (its variance redrawn from its own
  sampling distribution). The fall test mirrors it on the left segment.
- **D* is what the data support.** The best depth's confidence set is the set of depths not measurably
  worse than any other (pairwise differences against the max-statistic of all pairs: the whole set of
  tied best depths is covered at `level`). D* is a parabola's vertex (5 depths around the minimum) only
  when a parabola in ln D passes its lack-of-fit test on up to 7 depths around it and the set spans at
  most three neighbouring depths inside that window; otherwise D* is the set, `ci["d_star"]` its lowest
  and highest depth. A bound "D* ≥ d" is the set's lowest depth.
- **A negative verdict says what it could have seen**: the minimum detectable rise (MDR), the rise above
  a flat plateau from the set's lowest depth to the deepest (linear in ln D) that the rise test detects
  with 80% power at the measured noise. With one run per depth there is no noise to measure: unless `noise_sd`
  is stated, the verdict is "inconclusive".

"U-shaped" needs a significant fall and a significant rise. The calibration on planted sweeps (false
"U-shaped" rate, power, coverage of D* and of the bound) is bench/u_test_calibration.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from ..config import paper_critical_depth, paper_critical_depth_power
from .stats import (Fit, as_array, check_level, check_n_boot, fmt, not_constant, percentile_ci, regime,
                    same_length)
from .verdicts import critical_depth_text, regime_of

ALPHA = 0.05             # level of the rise and fall tests
PRIOR_DOF = 4            # per-depth variances are shrunk toward the pooled one with this weight (dof)
OUTLIER_ALPHA = 0.01     # chance per sweep of flagging a run when no run is an outlier (Gaussian noise)
POWER = 0.8              # of the minimum detectable rise
N_SIM = 2000             # null draws of the test statistics
VERDICTS = ("U-shaped", "monotone decreasing", "monotone increasing", "inconclusive")


@dataclass(kw_only=True, repr=False)
class CriticalDepthFit(Fit):
    """`fit_critical_depth`'s result. When the verdict is 'U-shaped', `params['d_star']` is the parabola's
    vertex (`d_star_method` 'parabola', `ci['d_star']` its interval) or the best mean's depth with
    `ci['d_star']` the lowest and highest depth of `best_set` ('confidence set'); NaN otherwise, and then
    `bound` says what the data show (e.g. 'D* ≥ 12'). `means` has a row per depth: seed-blocked mean,
    standard error, runs, whether it is in `best_set`."""

    width: float | None = None
    depth_range: tuple[float, float] = (math.nan, math.nan)
    p_rise: float = math.nan            # rise test: P(a persistent rise this large | no rise anywhere)
    p_fall: float = math.nan            # fall test, mirror-wise
    rise: float = math.nan              # largest mean rise beyond the best depth (nats)
    bound: str = ""
    d_plateau: float = math.nan         # shallowest depth of best_set (not measurably worse than the best)
    best_depth: float = math.nan        # depth with the lowest mean loss
    best_set: list[float] = field(default_factory=list)   # confidence set of the best depth (`level`)
    d_star_method: str = ""             # 'parabola' or 'confidence set' (U-shaped only)
    still_improving: bool = False       # the deepest depth is best and measurably below the set's lowest
    mdr: float = math.nan               # minimum detectable rise (nats, POWER) from mdr_from to the deepest
    mdr_from: float = math.nan
    noise_sd: float = math.nan          # seed-blocked residual sd (measured), or the one stated
    noise_dof: float = math.nan         # its degrees of freedom (inf when stated)
    noise_source: str = ""
    seed_blocked: bool = False
    means: pd.DataFrame | None = None
    outliers: list[dict] = field(default_factory=list)    # runs flagged: run, depth, seed, excess, t
    verdict_with_outliers: str | None = None               # the verdict with the flagged runs put back
    reason: str = ""
    paper_log: float | None = None      # the paper's 2.43·ln W at this width
    paper_power: float | None = None    # its W^0.44 law anchored at W = 512
    regime: dict = field(default_factory=dict)
    excluded: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# The two-way depth + seed model
# ---------------------------------------------------------------------------------------------

def _design(d_idx, s_idx, n_depths, n_seeds):
    """Columns: one per depth, then one per seed but the first (seed effects); depths only without seeds."""
    n = len(d_idx)
    X = np.zeros((n, n_depths + (n_seeds - 1 if s_idx is not None else 0)))
    X[np.arange(n), d_idx] = 1.0
    if s_idx is not None:
        rows = np.flatnonzero(s_idx > 0)
        X[rows, n_depths + s_idx[rows] - 1] = 1.0
    return X


def _flag_outliers(X, y, d_idx, alpha=OUTLIER_ALPHA):
    """Runs that are outliers among their seeds, found one at a time (largest first, so one bad run cannot
    mask another): the externally studentised residual of the least-squares fit against the Bonferroni
    bound t_{1 − α/2m, dof − 1} over the m runs at depths that keep ≥ 3 runs. Returns (keep mask,
    {run index: (prediction error from the other runs, t)})."""
    keep = np.ones(len(y), bool)
    flagged = {}
    while True:
        idx = np.flatnonzero(keep)
        Xk, yk = X[idx], y[idx]
        pinv = np.linalg.pinv(Xk)
        h = np.einsum("ij,ji->i", Xk, pinv)
        r = yk - Xk @ (pinv @ yk)
        dof = len(idx) - np.linalg.matrix_rank(Xk)
        eligible = (np.bincount(d_idx[idx], minlength=d_idx.max() + 1)[d_idx[idx]] >= 3) & (1 - h > 1e-9)
        if dof < 3 or not eligible.any():
            return keep, flagged
        with np.errstate(divide="ignore", invalid="ignore"):
            s2 = (r @ r - r ** 2 / (1 - h)) / (dof - 1)          # the noise without run i
            t = np.where(eligible & (s2 > 0), r / np.sqrt(s2 * (1 - h)), 0.0)
        i = int(np.argmax(np.abs(t)))
        if not abs(t[i]) > stats.t.ppf(1 - alpha / (2 * eligible.sum()), dof - 1):
            return keep, flagged
        keep[idx[i]] = False
        flagged[int(idx[i])] = (float(r[i] / (1 - h[i])), float(t[i]))


def _model(X, d_idx, n_depths, n_seeds):
    """The linear maps of the model: depth means at the average seed (M: runs → depths), residuals (Q),
    each run's residual dof share (1 − leverage), and the level-sum matrix (runs → depths)."""
    pinv = np.linalg.pinv(X)
    M = pinv[:n_depths].copy()
    if X.shape[1] > n_depths:                   # + the average seed effect (the first seed's is 0)
        M += pinv[n_depths:].sum(axis=0) / n_seeds
    H = X @ pinv
    S = np.zeros((n_depths, len(d_idx)))
    S[d_idx, np.arange(len(d_idx))] = 1.0
    return M, np.eye(len(d_idx)) - H, 1 - np.diag(H), S


def _variances(R, S, share):
    """Per-depth noise variances from residual rows R (draws × runs): each depth's own estimate (its
    residual sum of squares over its dof share) shrunk toward the pooled one (PRIOR_DOF), never below
    its own where that has ≥ 1 dof — deep runs scatter more."""
    ss = (R ** 2) @ S.T
    dof = S @ share
    pooled = ss.sum(axis=1, keepdims=True) / dof.sum()
    shrunk = (PRIOR_DOF * pooled + ss) / (PRIOR_DOF + dof)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(dof >= 1, np.fmax(shrunk, ss / dof), shrunk)


# ---------------------------------------------------------------------------------------------
# The tests: contrasts of the depth means
# ---------------------------------------------------------------------------------------------

def _contrasts(x):
    """Rows of contrasts of the K depth means (x = ln D): for each break b the right segment's slope and
    end rise (deepest − D_b), the left segment's fall (minus its slope) and start excess (shallowest − D_b),
    then every ordered pair k − j. Returns (C, {name: row indices})."""
    K = len(x)
    rows, names = [], {"rise_slope": [], "rise_end": [], "fall_slope": [], "fall_end": [], "pairs": []}

    def add(kind, c):
        names[kind].append(len(rows))
        rows.append(c)

    def slope(lo, hi):
        c = np.zeros(K)
        u = x[lo:hi] - x[lo:hi].mean()
        c[lo:hi] = u / (u @ u)
        return c

    def diff(k, j):
        c = np.zeros(K)
        c[k], c[j] = 1.0, -1.0
        return c

    for b in range(K - 1):
        add("rise_slope", slope(b, K))
        add("rise_end", diff(K - 1, b))
    for b in range(1, K):
        add("fall_slope", -slope(0, b + 1))
        add("fall_end", diff(0, b))
    for k in range(K):
        for j in range(K):
            if j != k:
                add("pairs", diff(k, j))
    return np.array(rows), {k: np.array(v) for k, v in names.items()}


def _max_p(obs, null_max):
    """p-values of observed t-values against draws of the null's largest one (adjusted for the maximum)."""
    return (1 + len(null_max) - np.searchsorted(np.sort(null_max), obs, side="left")) / (1 + len(null_max))


def _segment_p(T, T0, rows, side):
    """Per break: the larger of the max-adjusted p-values of its segment's slope and of its end contrast
    (both must hold), for `side` 'rise' or 'fall'; T observed t-values, T0 null draws (draws × contrasts)."""
    slope, end = rows[f"{side}_slope"], rows[f"{side}_end"]
    return np.maximum(_max_p(T[slope], T0[:, slope].max(axis=1)), _max_p(T[end], T0[:, end].max(axis=1)))


def _tests(x, d_idx, y, X, n_seeds, noise_sd, rng, level):
    """The model fitted to one set of runs, the rise and fall tests, the best depth's confidence set and
    the minimum detectable rise. Returns a dict (var None where the noise cannot be measured)."""
    K = len(x)
    M, Q, share, S = _model(X, d_idx, K, n_seeds)
    means, resid = M @ y, Q @ y
    dof = float(share.sum())
    n_runs = S.sum(axis=1)
    if noise_sd is None and dof < 1.5:
        return dict(means=means, n=n_runs, var=None, dof=dof)
    C, rows = _contrasts(x)
    G = ((C @ M) ** 2) @ S.T                    # se² of each contrast = G @ per-depth variances
    var = _variances(resid[None], S, share)[0] if noise_sd is None else np.full(K, float(noise_sd) ** 2)
    se = np.sqrt(G @ var)

    def draws(true):
        """Contrasts of noise with per-depth variances `true` (draws × depths), and their estimated se."""
        Z = rng.standard_normal((N_SIM, len(y))) * np.sqrt(true[:, d_idx])
        if noise_sd is not None:
            return (Z @ M.T) @ C.T, np.broadcast_to(se, (N_SIM, len(C)))
        return (Z @ M.T) @ C.T, np.sqrt(_variances(Z @ Q.T, S, share) @ G.T)

    # the null's true variances are drawn around the estimate, so it also carries the estimate's uncertainty
    prior, exact = PRIOR_DOF + S @ share, np.broadcast_to(var, (N_SIM, K))
    null, se_null = draws(var * prior / rng.chisquare(prior, size=(N_SIM, K)) if noise_sd is None else exact)
    T = (C @ means) / se
    T0 = null / se_null                        # every depth's mean equal: the least favourable curve
    rise_p, fall_p = _segment_p(T, T0, rows, "rise"), _segment_p(T, T0, rows, "fall")
    pair_t = T[rows["pairs"]].reshape(K, K - 1)
    best_set = np.flatnonzero(pair_t.max(axis=1) <= np.quantile(T0[:, rows["pairs"]].max(axis=1), level))
    # minimum detectable rise: a rise of δ above a flat plateau from the set's lowest depth, linear in ln D
    b0 = min(int(best_set.min()), K - 2)
    shape = np.maximum(0.0, x - x[b0]) / (x[-1] - x[b0])
    mdr = _detectable(T0, *draws(exact), C @ shape, rows, b0)    # power if the noise is as measured
    return dict(means=means, n=n_runs, var=var, dof=dof, se=se, T=T, p_rise=float(rise_p.min()),
                p_fall=float(fall_p.min()), rise_break=int(np.argmin(rise_p)), best_set=best_set, mdr=mdr,
                mdr_from=b0, resid=resid,
                t_crit=stats.t.ppf(1 - ALPHA, dof) if noise_sd is None else stats.norm.ppf(1 - ALPHA))


def _detectable(T0, noise, se, effect, rows, first):
    """The rise δ (times `effect`: the contrasts of a rise of 1 from depth index `first` on) that the rise
    test detects with POWER when the noise is what was measured: `noise`, `se` are the contrasts and their
    re-estimated standard errors on draws of that noise, T0 the test's null. Each t-value is affine in δ,
    so per draw and break the δ where its slope and its end both clear their critical values is exact;
    the test rejects at the smallest such δ over the breaks from `first` on (in real data a shallower
    break meets the fall before the plateau)."""
    need = []
    for kind in ("rise_slope", "rise_end"):
        crit = np.quantile(T0[:, rows[kind]].max(axis=1), 1 - ALPHA)
        j = rows[kind][first:]
        with np.errstate(divide="ignore", invalid="ignore"):
            d = (crit * se[:, j] - noise[:, j]) / effect[j]
        need.append(np.where(effect[j] > 0, np.maximum(d, 0), np.where(noise[:, j] > crit * se[:, j], 0, np.inf)))
    return float(np.quantile(np.maximum(*need).min(axis=1), POWER))


# ---------------------------------------------------------------------------------------------
# D*: a parabola's vertex where one fits, else the confidence set
# ---------------------------------------------------------------------------------------------

def _lack_of_fit(u, y, w, dof):
    """p-value of a weighted parabola's lack of fit to the means y at u (weights 1/se²), against noise
    measured with `dof` (F test; χ² when the noise is stated)."""
    X = np.column_stack([np.ones_like(u), u, u * u])
    coef = np.linalg.lstsq(X * np.sqrt(w)[:, None], y * np.sqrt(w), rcond=None)[0]
    chi2, k = float(np.sum(w * (y - X @ coef) ** 2)), len(u) - 3
    return float(stats.f.sf(chi2 / k, k, dof) if math.isfinite(dof) else stats.chi2.sf(chi2, k))


def _vertex(x, means, se2, best_set, dof, n_boot, level, rng):
    """The local parabola in ln D through the (up to) 5 depth means around the best one: its vertex with
    a parametric bootstrap interval (means redrawn with their seed-blocked noise, the scale from its
    χ² when measured), or None with the reason it does not describe the minimum."""
    i, K = int(np.argmin(means)), len(x)
    first, last = int(best_set.min()), int(best_set.max())
    if last - first > 2:
        return None, (f"the minimum is flat: depths {fmt(math.exp(x[first]))}–{fmt(math.exp(x[last]))} are all not "
                      "measurably worse than the best")
    centre = (first + last) // 2
    lo, hi = max(0, centre - 2), min(K, centre + 3)
    if not (lo < first and last < hi - 1 and hi - lo >= 5):
        return None, "the best depths reach an end of the range, so no parabola brackets them"
    wide = slice(max(0, centre - 3), min(K, centre + 4))     # the parabola must hold on up to 7 depths
    p_fit = _lack_of_fit(x[wide] - x[i], means[wide], 1 / se2[wide], dof)
    if p_fit < ALPHA:
        return None, f"a parabola does not fit the means around the minimum (lack-of-fit p = {p_fit:.2g})"
    u, y, w = x[lo:hi] - x[i], means[lo:hi], 1 / se2[lo:hi]
    X = np.column_stack([np.ones_like(u), u, u * u])
    coef = np.linalg.lstsq(X * np.sqrt(w)[:, None], y * np.sqrt(w), rcond=None)[0]
    if not coef[2] > 0 or not u[0] < -coef[1] / (2 * coef[2]) < u[-1]:
        return None, "the local parabola has no minimum inside its window"
    scale = np.sqrt(dof / rng.chisquare(dof, (n_boot, 1))) if math.isfinite(dof) else 1.0
    Y = y + scale * rng.standard_normal((n_boot, len(y))) * np.sqrt(se2[lo:hi])
    c = Y @ np.linalg.solve((X.T * w) @ X, X.T * w).T     # the same weighted fit for every draw
    with np.errstate(divide="ignore", invalid="ignore"):
        draws = np.where(c[:, 2] > 0, -c[:, 1] / (2 * c[:, 2]), np.nan)
    draws[(draws < u[0]) | (draws > u[-1])] = np.nan    # no interior minimum: counted out, never imputed
    low, high = percentile_ci(draws, level)
    return dict(x=x[i] - coef[1] / (2 * coef[2]), low=x[i] + low, high=x[i] + high, samples=x[i] + draws,
                p_fit=p_fit, window=(x[lo], x[hi - 1]), coef=coef, centre=x[i]), ""


# ---------------------------------------------------------------------------------------------
# The fitter
# ---------------------------------------------------------------------------------------------

def fit_critical_depth(depths, losses, *, seeds=None, run_ids=None, noise_sd=None, width=None, n_boot=1000,
                       level=0.95, random_state=0, tokens_per_param=None, final_slope=None,
                       excluded=()) -> CriticalDepthFit:
    """Is loss against depth U-shaped at this width, and if so where is its minimum D*?

    depths, losses: one entry per run; `seeds` (per run) makes the seed a block — its effect shared by
    all depths is removed — and `run_ids` name flagged runs. `noise_sd`: the seed-to-seed sd of one run's
    loss when known from elsewhere (needed with one run per depth). Verdicts (module docstring):
    'U-shaped' — a significant fall, then a rise that persists to the deepest depth; D* as a vertex or
    the best depth's confidence set. 'monotone decreasing' — a fall and no rise detected: `bound` is
    D* ≥ the set's lowest depth, `mdr` what rise could have been detected. 'monotone increasing' — a
    rise and no fall: D* ≤ the set's highest depth. 'inconclusive' — neither, or no noise to measure,
    with the reason. tokens_per_param, final_slope (per run, optional) describe the training regime;
    `excluded` names runs left out by the caller (unstable, diverged) so the summary can list them."""
    check_level(level)
    check_n_boot(n_boot)
    depths = as_array("depths", depths, positive=True)
    losses = as_array("losses", losses, positive=True)
    same_length(depths=depths, losses=losses)
    for name, v in (("seeds", seeds), ("run_ids", run_ids)):
        if v is not None:
            same_length(depths=depths, **{name: np.asarray(v)})
    if noise_sd is not None and not (isinstance(noise_sd, (int, float)) and 0 < noise_sd < math.inf):
        raise ValueError(f"noise_sd must be a positive number (the sd of one run's loss over seeds), got {noise_sd!r}")
    levels, d_idx = np.unique(depths, return_inverse=True)
    if len(levels) < 3:
        raise ValueError(f"need at least 3 distinct depths, got {levels.tolist()}")
    if len(depths) < 4 and noise_sd is None:
        raise ValueError(f"need at least 4 runs (3 depths leave no noise to measure), got {len(depths)}")
    not_constant("losses", losses)
    rng = np.random.default_rng(random_state)
    s_idx, n_seeds = None, 1
    if seeds is not None:
        seed_levels, s_idx = np.unique(np.asarray(seeds), return_inverse=True)
        n_seeds = len(seed_levels)
        if not any(len(np.unique(d_idx[s_idx == s])) > 1 for s in range(n_seeds)):
            s_idx, n_seeds = None, 1            # no seed spans two depths: nothing to block
    X, x = _design(d_idx, s_idx, len(levels), n_seeds), np.log(levels)
    keep, flagged = _flag_outliers(X, losses, d_idx)
    test = _tests(x, d_idx[keep], losses[keep], X[keep], n_seeds, noise_sd, rng, level)
    result = _result(levels, test, noise_sd, n_boot, level, rng, seeds_blocked=s_idx is not None)
    if flagged:
        with_all = _tests(x, d_idx, losses, X, n_seeds, noise_sd, rng, level)
        result.verdict_with_outliers = _verdict(levels, with_all)[0]
        ids = np.asarray(run_ids) if run_ids is not None else None
        result.outliers = [dict(run=None if ids is None else ids[i], depth=float(depths[i]),
                                seed=None if seeds is None else np.asarray(seeds)[i], excess=e, t=t)
                           for i, (e, t) in flagged.items()]
    result.data = pd.DataFrame({"depth": depths, "loss": losses, "outlier": ~keep})
    if seeds is not None:
        result.data["seed"] = np.asarray(seeds)
    if run_ids is not None:
        result.data["run_id"] = np.asarray(run_ids)
    result.n_points = len(depths)
    result.width, result.excluded = width, list(excluded)
    result.regime = regime(tokens_per_param, final_slope, depths, best=result.best_depth, effect=result.rise)
    if width is not None:
        result.paper_log, result.paper_power = paper_critical_depth(width), paper_critical_depth_power(width)
    result.text = critical_depth_text(result)
    return result


def _result(levels, test, noise_sd, n_boot, level, rng, seeds_blocked) -> CriticalDepthFit:
    """The fit result of one analysis (`_tests`' dict), D* included."""
    means, var = test["means"], test["var"]
    i_min = int(np.argmin(means))
    rise = float(means[i_min:].max() - means[i_min])
    verdict, reason, bound = _verdict(levels, test)
    r = CriticalDepthFit(kind="critical_depth", params={"d_star": math.nan}, ci={"d_star": (math.nan, math.nan)},
                         n_points=0, level=level, verdict=verdict, reason=reason, bound=bound, rise=rise,
                         depth_range=(float(levels[0]), float(levels[-1])), best_depth=float(levels[i_min]),
                         seed_blocked=seeds_blocked, noise_dof=test["dof"] if noise_sd is None else math.inf,
                         noise_source="stated" if noise_sd is not None else "measured")
    if var is None:
        r.means = pd.DataFrame({"depth": levels, "n": test["n"].astype(int), "mean": means, "se": math.nan,
                                "in_set": False})
        return r
    se2 = var / test["n"]
    best_set = test["best_set"]
    r.means = pd.DataFrame({"depth": levels, "n": test["n"].astype(int), "mean": means, "se": np.sqrt(se2),
                            "in_set": np.isin(np.arange(len(levels)), best_set)})
    r.p_rise, r.p_fall = test["p_rise"], test["p_fall"]
    r.best_set = [float(levels[k]) for k in best_set]
    r.d_plateau = r.best_set[0]
    r.mdr, r.mdr_from = test["mdr"], float(levels[test["mdr_from"]])
    resid = test["resid"]
    r.noise_sd = float(noise_sd) if noise_sd is not None else float(np.sqrt(resid @ resid / test["dof"]))
    onset = int(best_set[0])
    gap = means[onset] - means[-1]
    r.still_improving = bool(i_min == len(levels) - 1 and (onset == i_min or gap / np.sqrt(se2[onset] + se2[-1])
                                                            > test["t_crit"]))
    x = np.log(levels)
    r.curve = _two_lines(x, means, test)
    if verdict != "U-shaped":
        return r
    vertex, why = _vertex(x, means, se2, best_set, r.noise_dof, n_boot, level, rng)
    if vertex is None:
        r.d_star_method, r.params["d_star"] = "confidence set", float(levels[i_min])
        r.ci["d_star"] = (r.best_set[0], r.best_set[-1])
        r.bound = "D* ∈ {" + ", ".join(fmt(d) for d in r.best_set) + "}" + f" ({level:.0%} confidence set: {why})"
        return r
    r.d_star_method, r.n_boot = "parabola", n_boot
    r.params["d_star"], r.ci["d_star"] = math.exp(vertex["x"]), (math.exp(vertex["low"]), math.exp(vertex["high"]))
    r.samples = pd.DataFrame({"d_star": np.exp(vertex["samples"])})
    grid = np.linspace(*vertex["window"], 50)
    u = grid - vertex["centre"]
    r.curve = pd.concat([r.curve, pd.DataFrame({"depth": np.exp(grid), "loss": vertex["coef"] @ [u ** 0, u, u * u],
                                                "law": "local parabola"})], ignore_index=True)
    r.bound = (f"D* = {fmt(r.params['d_star'])} ({level:.0%} CI {fmt(r.ci['d_star'][0])}–{fmt(r.ci['d_star'][1])}; "
               f"local parabola, lack-of-fit p = {vertex['p_fit']:.2g})")
    return r


def _two_lines(x, means, test):
    """The two lines of the two-lines test at the rise test's strongest break (for charts): depth, loss, law."""
    b = test["rise_break"]
    frames = []
    for name, part in ((f"line up to D = {fmt(math.exp(x[b]))}", slice(0, b + 1)),
                       (f"line from D = {fmt(math.exp(x[b]))}", slice(b, len(x)))):
        if part.stop - part.start >= 2:
            coef = np.polyfit(x[part], means[part], 1)
            frames.append(pd.DataFrame({"depth": np.exp(x[part]), "loss": np.polyval(coef, x[part]), "law": name}))
    return pd.concat(frames, ignore_index=True)


def _verdict(levels, test) -> tuple[str, str, str]:
    """(verdict, the reason in words, the bound on D* when there is no interior minimum)."""
    if test["var"] is None:
        return "inconclusive", ("there is one run per depth (or too few repeats): no seed-to-seed noise to measure, "
                                "so no difference between depths can be called measurable — repeat seeds, or pass "
                                "noise_sd= (the sd of one run's loss over seeds) if it is known"), ""
    falls, rises = test["p_fall"] < ALPHA, test["p_rise"] < ALPHA
    hi_d = fmt(levels[-1])
    best = fmt(levels[int(np.argmin(test["means"]))])
    lowest, highest = fmt(levels[test["best_set"].min()]), fmt(levels[test["best_set"].max()])
    tests = f"fall test p = {test['p_fall']:.3g}, rise test p = {test['p_rise']:.3g}"
    if falls and rises:
        return "U-shaped", (f"the loss falls to its lowest at D ≈ {best} and rises beyond it, staying higher up to the "
                            f"deepest depth D = {hi_d} ({tests})"), ""
    if falls:
        return "monotone decreasing", (f"the loss falls and no rise is detected up to D = {hi_d} ({tests})"), \
            f"D* ≥ {lowest}"
    if rises:
        return "monotone increasing", (f"the loss rises beyond D ≈ {best} up to the deepest depth and no fall before it "
                                       f"is detected ({tests}): every depth beyond D = {highest} is measurably worse "
                                       "than the best"), f"D* ≤ {highest}"
    return "inconclusive", f"neither a fall nor a rise is detected ({tests})", ""


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
                                seeds=frame["seed"].to_numpy() if "seed" in frame else None,
                                run_ids=frame["run_id"].to_numpy() if "run_id" in frame else None, width=width,
                                tokens_per_param=tpp, final_slope=slope, excluded=excluded, **kwargs)
    # beside tokens per non-embedding parameter, the ratio Chinchilla's ≈ 20 uses (embeddings counted)
    result.regime.update({k: v for k, v in regime_of(frame).items() if k != "tokens_per_param"})
    if slope is not None:
        result.regime["slope_kind"] = slope_kind
    result.text = critical_depth_text(result)
    return result


def critical_depth_by_budget(runs: pd.DataFrame, *, width=None, loss="val_loss", n_boot=1000, level=0.95,
                             random_state=0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The best depth at every training budget of an annealed depth sweep (one annealed run per depth,
    seed and budget: the cooldown branches of `dwlib.sweep.anneal`), whatever each budget's verdict, and
    whether it moves between consecutive budgets.

    Returns (by_budget, moves). by_budget: one row per budget — tokens, verdict, best_depth, best_set (the
    best depth's confidence set at `level`: the depths not measurably worse than any other) and its ends
    set_low, set_high, d_star, d_star_method, low, high (`ci['d_star']`, set only when U-shaped), bound and
    bound_depth, p_rise, p_fall, reason, n_runs, tokens_per_param.
    A budget whose loss rises from the shallowest depth is a finding like any other ('monotone
    increasing': deeper is worse at that budget). moves: one row per pair of consecutive budgets —
    best_from, best_to, set_from, set_to (text), direction ('deeper', 'shallower' or ''), across (the
    depth tried that separates the sets, next to the first) and `moves`: True when the two confidence
    sets are separated by a depth tried (every depth of one set below it, every depth of the other above). Why a whole depth between them: the minimiser can lie between
    two depths tried, and a change of the curve's shape alone (a steeper rise beyond it) flips which of
    the two is lower; only sets on either side of a depth tried put the minimiser on either side of it.
    A false 'moves' needs a set to miss the grid's best depth (each holds it with probability ≥ `level`);
    the rate on planted pairs is in bench/movement_calibration.py. Seeds are blocked within each budget
    (`fit_critical_depth`); budgets whose runs were not annealed (a schedule other than wsd / wsd-sqrt)
    are refused — a cosine run read part-way has not decayed its learning rate — and so is a budget that
    mixes configurations (`one_configuration`)."""
    frame, width = _one_width(runs, width)
    if "schedule" in frame.columns and not frame["schedule"].isin(["wsd", "wsd-sqrt"]).all():
        raise ValueError("critical_depth_by_budget needs annealed runs (schedule wsd or wsd-sqrt, e.g. from "
                         f"`--anneal-at`); got schedules {sorted(frame['schedule'].unique())}")
    frame, excluded = usable_runs(frame, ["depth", "tokens", loss])
    budgets = np.unique(frame["tokens"])
    for T in budgets:
        one_configuration(frame[frame["tokens"] == T], width)
    rows, fits = [], {}
    for T in budgets:
        at = frame[frame["tokens"] == T]
        try:
            fits[T] = f = critical_depth_from_frame(at, width=width, loss=loss, n_boot=n_boot, level=level,
                                                    random_state=random_state)
        except ValueError as err:
            rows.append(dict(tokens=T, verdict=f"not fitted: {err}", n_runs=len(at)))
            continue
        bound_depth = {"monotone decreasing": f.d_plateau,
                       "monotone increasing": f.best_set[-1] if f.best_set else math.nan}.get(f.verdict)
        rows.append(dict(tokens=T, verdict=f.verdict, best_depth=f.best_depth, best_set=tuple(f.best_set),
                         set_low=f.best_set[0] if f.best_set else math.nan,
                         set_high=f.best_set[-1] if f.best_set else math.nan, d_star=f.params["d_star"],
                         d_star_method=f.d_star_method,
                         low=f.ci["d_star"][0], high=f.ci["d_star"][1], bound=f.bound, bound_depth=bound_depth,
                         p_rise=f.p_rise, p_fall=f.p_fall, reason=f.reason, n_runs=len(at),
                         tokens_per_param=f.regime.get("tokens_per_param")))
    by_budget = pd.DataFrame(rows, columns=["tokens", "verdict", "best_depth", "best_set", "set_low", "set_high", "d_star",
                                            "d_star_method", "low", "high", "bound", "bound_depth", "p_rise", "p_fall", "reason", "n_runs",
                                            "tokens_per_param"])
    by_budget.attrs["excluded"] = excluded
    depths = np.unique(frame["depth"].to_numpy(float))
    moves = []
    for t1, t2 in zip(budgets[:-1], budgets[1:]):
        a, b = fits.get(t1), fits.get(t2)
        if a is None or b is None or not a.best_set or not b.best_set:
            continue
        up = depths[(depths > a.best_set[-1]) & (depths < b.best_set[0])]        # depths tried between the sets
        down = depths[(depths < a.best_set[0]) & (depths > b.best_set[-1])]
        direction, across = ("deeper", up[0]) if len(up) else ("shallower", down[-1]) if len(down) else ("", math.nan)
        moves.append(dict(tokens_from=t1, tokens_to=t2, best_from=a.best_depth, best_to=b.best_depth,
                          set_from=_set_text(a.best_set), set_to=_set_text(b.best_set), direction=direction,
                          across=float(across), moves=bool(direction)))
    return by_budget, pd.DataFrame(moves, columns=["tokens_from", "tokens_to", "best_from", "best_to", "set_from",
                                                    "set_to", "direction", "across", "moves"])


def _set_text(depths) -> str:
    return "{" + ", ".join(fmt(d) for d in depths) + "}"
