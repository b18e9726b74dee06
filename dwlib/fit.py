"""Fitters with intervals: critical depth, gradient persistence, τ(W), Chinchilla form, the Depth Delusion
ansatz, isoFLOP profiles.

Every fitter takes plain arrays (or the store's frames, through the `*_from_frame` helpers), checks them
(ValueError naming the bad value: too few points, NaN, non-positive, constant, mismatched lengths) and
returns one `FitResult`: `.params` (name → value), `.ci` (name → (low, high), 95% unless `level` says
otherwise), `.r2` where it has a meaning, `.residuals`, `.summary()` (a paragraph), and for charts the
fitted points (`.data`), the fitted curve with its band (`.curve`) and the bootstrap draws (`.samples`).

The nonlinear laws (Chinchilla form, Depth Delusion ansatz) are fitted the way Hoffmann et al. (arXiv
2203.15556) and Epoch AI (Besiroglu et al., arXiv 2404.10102) did: Huber loss (δ = 1e-3) between log L
and the log of the prediction, L-BFGS from a grid of starts, bootstrap intervals. To make that fast the
L-BFGS here runs many problems at once (every grid start, or every bootstrap resample, is one row of a
batch); resampling with replacement is expressed as integer weights on the points so every resample
shares one array shape.

numpy / scipy / pandas only (no torch): data flows config → … → store → sweep → fit → charts.
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, stats

from .config import paper_critical_depth, paper_critical_depth_power

# Published figures the summaries and charts compare against (see /work/shared/notes/references.md).
PAPER_TAU_EXPONENT = 0.44       # Depth Delusion: τ(W) ∝ W^0.44, R² = 0.98
PAPER_DCRIT_EXPONENT = 0.44     # Depth Delusion: D_crit ∝ W^0.44
PAPER_DEPTH_EXPONENT = 0.12     # Depth Delusion: D* ∝ C^0.12
PAPER_WIDTH_EXPONENT = 0.34     # Depth Delusion: W* ∝ C^0.34
CHINCHILLA_HOFFMANN = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
CHINCHILLA_EPOCH = dict(E=1.817, A=482.0, B=2085.0, alpha=0.348, beta=0.366)
CHINCHILLA_EPOCH_CI = dict(E=(1.769, 1.871), A=(285.0, 744.0), B=(1042.0, 5810.0),
                           alpha=(0.317, 0.373), beta=(0.331, 0.415))

# Hoffmann et al.'s grid of starting points: α, β ∈ 0..2 by 0.5; e ∈ −1..1 by 0.5; a, b ∈ 0..25 by 5.
CHINCHILLA_GRID = dict(a=np.arange(0.0, 26.0, 5.0), b=np.arange(0.0, 26.0, 5.0), e=np.arange(-1.0, 1.01, 0.5),
                       alpha=np.arange(0.0, 2.01, 0.5), beta=np.arange(0.0, 2.01, 0.5))


@dataclass(repr=False)
class FitResult:
    """What every fitter returns. `params` holds estimated values only; `ci` their intervals."""

    kind: str                                   # which fitter made it
    params: dict[str, float]
    ci: dict[str, tuple[float, float]]
    r2: float | None
    residuals: np.ndarray
    n_points: int
    n_boot: int = 0
    level: float = 0.95
    verdict: str | None = None                  # critical depth / gradient persistence: what the data show
    data: pd.DataFrame | None = None            # the points fitted, tidy (for charts)
    curve: pd.DataFrame | None = None           # the fitted curve on a grid with its band: low, high
    samples: pd.DataFrame | None = None         # bootstrap draws of the parameters, one row per resample
    extra: dict = field(default_factory=dict)   # fitter-specific: comparisons, alternative forms, method
    text: str = ""

    def summary(self) -> str:
        """A readable paragraph: what was fitted, the estimates with intervals, the comparison."""
        return self.text

    def __repr__(self):
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in self.params.items())
        verdict = f", verdict={self.verdict!r}" if self.verdict else ""
        return f"FitResult({self.kind}: {shown}{verdict}, n={self.n_points})"


# ---------------------------------------------------------------------------------------------
# Input checks and small statistics
# ---------------------------------------------------------------------------------------------

def _array(name, values, *, positive=False) -> np.ndarray:
    """A finite 1-D float array, or ValueError saying what is wrong with `name`."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers, got {values!r:.80}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{name} contains {bad.sum()} non-finite value(s) (NaN or inf) at index "
                         f"{np.flatnonzero(bad)[:5].tolist()}; drop unfinished or diverged runs first")
    if positive and (arr <= 0).any():
        i = int(np.flatnonzero(arr <= 0)[0])
        raise ValueError(f"{name} must be positive, got {arr[i]!r} at index {i}")
    return arr


def _same_length(**arrays):
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError("lengths differ: " + ", ".join(f"{k}={n}" for k, n in lengths.items()))


def _not_constant(name, values):
    if np.ptp(values) <= 1e-12 * max(1.0, float(np.abs(values).max())):
        raise ValueError(f"{name} are all equal ({values[0]!r}): nothing to fit")


def _check_level(level):
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")


def _percentile_ci(samples, level) -> tuple[float, float]:
    samples = np.asarray(samples, float)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return (math.nan, math.nan)
    q = 100 * (1 - level) / 2
    lo, hi = np.percentile(samples, [q, 100 - q])
    return (float(lo), float(hi))


def _r2(y, yhat) -> float:
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - yhat) ** 2)) / ss_tot if ss_tot > 0 else math.nan


def _fmt(v) -> str:
    """Four significant figures, but whole numbers between 1000 and 10⁶ in full (A = 482, B = 2085)."""
    if v is None or not math.isfinite(float(v)):
        return str(v)
    v = float(v)
    return f"{v:.0f}" if 1000 <= abs(v) < 1e6 else f"{v:.4g}"


def _fmt_ci(ci) -> str:
    return f"{_fmt(ci[0])}–{_fmt(ci[1])}"


def _linear_fit(x, y):
    """OLS y = a + b·x with classical standard errors. Returns a, b, se_a, se_b, dof, fitted."""
    X = np.column_stack([np.ones_like(x), x])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    fitted = X @ coef
    dof = len(x) - 2
    s2 = float(np.sum((y - fitted) ** 2)) / dof if dof > 0 else math.nan
    cov = s2 * np.linalg.inv(X.T @ X)
    return coef[0], coef[1], math.sqrt(cov[0, 0]), math.sqrt(cov[1, 1]), dof, fitted


def _t_ci(value, se, dof, level):
    t = stats.t.ppf(0.5 + level / 2, dof)
    return (float(value - t * se), float(value + t * se))


def _weighted_quadratics(x, Y, W):
    """Least-squares quadratics y = c0 + c1·x + c2·x², one per row of Y (B, n) with weights W (B, n).
    Returns coefficients (B, 3); rows whose weighted design is singular come back as NaN."""
    X = np.column_stack([np.ones_like(x), x, x * x])                # (n, 3)
    XtWX = np.einsum("ni,bn,nj->bij", X, W, X)
    XtWy = np.einsum("ni,bn,bn->bi", X, W, Y)
    ok = np.linalg.cond(XtWX) < 1e12
    coef = np.full((len(W), 3), np.nan)
    if ok.any():
        coef[ok] = np.linalg.solve(XtWX[ok], XtWy[ok][..., None])[..., 0]
    return coef


def _modified_residuals(X, residuals):
    """Residuals rescaled by 1/√(1 − leverage) and centred (Davison & Hinkley 1997, §6.2.3): the
    fitted residuals are smaller than the noise, most of all at high-leverage points."""
    H = X @ np.linalg.pinv(X)
    lev = np.clip(np.diag(H), 0, 1 - 1e-9)
    r = residuals / np.sqrt(1 - lev)
    return r - r.mean()


def _residual_resamples(X, fitted, residuals, n_boot, rng):
    """Residual-bootstrap responses (n_boot, n): fitted + s·(resampled modified residuals), where each
    resample's noise scale s = √(dof/χ²_dof) is drawn from its sampling distribution. That is the
    small-sample calibration a t-quantile gives a z-interval: with 7 residual degrees of freedom the
    plain percentile interval of a planted minimum covered it ~90% of the time, this one ~94%."""
    dof = X.shape[0] - X.shape[1]
    scale = np.sqrt(dof / rng.chisquare(dof, size=(n_boot, 1)))
    return fitted[None] + scale * rng.choice(_modified_residuals(X, residuals), size=(n_boot, len(fitted)))


# ---------------------------------------------------------------------------------------------
# Batched L-BFGS: many small independent problems (grid starts or bootstrap resamples) at once
# ---------------------------------------------------------------------------------------------

def _lbfgs_batch(fun_grad, x0, *, memory=10, max_iter=1000, gtol=1e-7, ftol=1e-12):
    """Minimise B independent smooth objectives with L-BFGS, vectorised across the batch.

    `fun_grad(X, rows)` returns (f (b,), grad (b, p)) for the parameter rows X of problems `rows`.
    Two-loop recursion for the direction, backtracking (Armijo) line search, curvature pairs kept
    only when sᵀy > 0, per-problem stopping when the gradient or the decrease becomes negligible.
    Returns (x (B, p), f (B,), iterations (B,))."""
    x = np.array(x0, dtype=float)
    B, p = x.shape
    f, g = fun_grad(x, np.arange(B))
    S = np.zeros((memory, B, p))
    Y = np.zeros((memory, B, p))
    rho = np.zeros((memory, B))
    stored = np.zeros((memory, B), bool)
    head = 0
    active = np.isfinite(f)
    iterations = np.zeros(B, int)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for _ in range(max_iter):
            idx = np.flatnonzero(active)
            if idx.size == 0:
                break
            # two-loop recursion, newest pair first
            q = g[idx].copy()
            order = [(head - 1 - j) % memory for j in range(memory)]
            alphas = np.zeros((memory, idx.size))
            for j in order:
                use = stored[j, idx]
                alphas[j] = np.where(use, rho[j, idx] * np.einsum("bp,bp->b", S[j, idx], q), 0.0)
                q -= alphas[j][:, None] * Y[j, idx]
            last = (head - 1) % memory
            sy = np.einsum("bp,bp->b", S[last, idx], Y[last, idx])
            yy = np.einsum("bp,bp->b", Y[last, idx], Y[last, idx])
            first = 1.0 / np.maximum(np.linalg.norm(g[idx], axis=1), 1e-12)   # first step: length 1
            scale = np.where(stored[last, idx] & (yy > 0), sy / np.where(yy > 0, yy, 1.0), first)
            r = scale[:, None] * q
            for j in reversed(order):
                use = stored[j, idx]
                beta = np.where(use, rho[j, idx] * np.einsum("bp,bp->b", Y[j, idx], r), 0.0)
                r += S[j, idx] * (alphas[j] - beta)[:, None]
            d = -r
            slope = np.einsum("bp,bp->b", g[idx], d)
            uphill = ~(slope < 0)          # lost curvature information: restart along −g
            if uphill.any():
                d[uphill] = -g[idx][uphill] * first[uphill, None]
                slope[uphill] = np.einsum("bp,bp->b", g[idx][uphill], d[uphill])
                stored[:, idx[uphill]] = False
            # backtracking line search, all problems together
            step = np.ones(idx.size)
            f_new = np.full(idx.size, np.nan)
            g_new = np.zeros((idx.size, p))
            todo = np.arange(idx.size)
            for _ in range(50):
                fv, gv = fun_grad(x[idx[todo]] + step[todo, None] * d[todo], idx[todo])
                ok = np.isfinite(fv) & (fv <= f[idx[todo]] + 1e-4 * step[todo] * slope[todo])
                f_new[todo[ok]] = fv[ok]
                g_new[todo[ok]] = gv[ok]
                todo = todo[~ok]
                if todo.size == 0:
                    break
                step[todo] *= 0.5
            moved = np.isfinite(f_new)
            active[idx[~moved]] = False        # no decrease found along the direction: converged
            ii, m = idx[moved], moved
            s = step[m, None] * d[m]
            yv = g_new[m] - g[ii]
            sy = np.einsum("bp,bp->b", s, yv)
            good = sy > 1e-10 * np.einsum("bp,bp->b", yv, yv)
            S[head, ii], Y[head, ii] = s, yv
            rho[head, ii] = np.where(good, 1.0 / np.where(good, sy, 1.0), 0.0)
            stored[head, ii] = good
            head = (head + 1) % memory
            f_old = f[ii]
            x[ii] += s
            f[ii], g[ii] = f_new[m], g_new[m]
            iterations[ii] += 1
            tiny_grad = np.abs(g[ii]).max(axis=1) < gtol
            tiny_step = (f_old - f[ii]) <= ftol * np.maximum(np.maximum(np.abs(f_old), np.abs(f[ii])), 1.0)
            active[ii[tiny_grad | tiny_step]] = False
    return x, f, iterations


def _huber_fun_grad(log_pred_vjp, log_losses, weights, delta):
    """Objective Σ wᵢ·Huber_δ(log predᵢ − log Lᵢ) / δ and its gradient, for `_lbfgs_batch`.
    Dividing by δ leaves the minimiser unchanged and keeps the objective near the number of points,
    so the stopping tolerances mean the same thing for any δ. `weights` is (B, n) or None (all ones).
    `log_pred_vjp(X)` returns the log predictions (b, n) and ψ ↦ Σᵢ ψᵢ ∂ log predᵢ/∂θ."""
    def fun_grad(X, rows):
        log_pred, vjp = log_pred_vjp(X)
        r = log_pred - log_losses
        a = np.abs(r)
        h = np.where(a <= delta, 0.5 * r * r / delta, a - 0.5 * delta)
        psi = np.clip(r / delta, -1.0, 1.0)                            # dh/dr
        if weights is not None:
            w = weights[rows]
            h, psi = h * w, psi * w
        f = h.sum(axis=1)
        f = np.where(np.isfinite(f), f, np.inf)
        return f, np.nan_to_num(vjp(psi))
    return fun_grad


def _bootstrap_weights(n, n_boot, rng, groups=None):
    """Integer weights (n_boot, n): how many times each point is drawn in each resample. With `groups`
    (one label per point) whole groups are drawn, so repeats of one run/seed move together."""
    if groups is None:
        draws = rng.integers(0, n, size=(n_boot, n))
        return np.stack([np.bincount(d, minlength=n) for d in draws]).astype(float)
    labels, inverse = np.unique(groups, return_inverse=True)
    draws = rng.integers(0, len(labels), size=(n_boot, len(labels)))
    counts = np.stack([np.bincount(d, minlength=len(labels)) for d in draws]).astype(float)
    return counts[:, inverse]


# ---------------------------------------------------------------------------------------------
# 1. Critical depth: loss vs depth at fixed width
# ---------------------------------------------------------------------------------------------

def fit_critical_depth(depths, losses, *, seeds=None, width=None, n_boot=1000, bootstrap="auto",
                       level=0.95, random_state=0) -> FitResult:
    """The loss-minimising depth D* of a depth sweep at one width, with a bootstrap interval and a verdict.

    Model: L(D) = c0 + c1·x + c2·x², x = ln D. Why a quadratic in log-depth: at small depth the loss
    falls roughly as a power of the parameter count (∝ D), i.e. linearly in ln D, and a penalty beyond a
    critical depth bends it back up; the quadratic is the lowest-order smooth curve with an interior
    minimum, treats D*/k and k·D* alike (depths are usually spaced geometrically), is linear in its
    coefficients (exact least squares, no starting values, every bootstrap resample solved in one batched
    solve), and has only three coefficients — sweeps have 4–8 depths. D* = exp(−c1 / 2c2) when c2 > 0.

    `params['d_star']` is the minimiser of the fitted curve *within the tried range*; when the curve is
    monotone that is an end of the range (a bound, not a critical depth: see `verdict`). The unclipped
    vertex, which may lie outside the data, is `extra['d_star_vertex']` (NaN when c2 ≤ 0).

    Interval: percentiles of D* over `n_boot` bootstrap refits. `bootstrap`: 'runs' resamples the
    repeats (seeds) at each depth, keeping every depth in every resample; 'seeds' resamples whole seeds
    (all depths of a seed together: use when seeds share data order, needs ≥ 3 seeds); 'residual'
    resamples leverage-adjusted residuals of the fit, with the noise scale of each resample drawn from
    its χ² distribution for small-sample calibration (no repeats); 'auto' = 'runs' when every depth has
    ≥ 2 runs, else 'residual'. 'runs' and 'seeds' scale the resampled deviations from each depth's
    mean by √(k/(k−1)) (k runs or seeds), since resampling k values shrinks their spread. In simulations
    with a planted minimum (10 depths) the 95% intervals of 'residual' and 'runs' covered it 93–94% of
    the time; 'seeds' with only 4 seeds 87% (few clusters give a coarse resampling distribution).

    Verdict: 'U-shaped' when the vertex is interior (c2 > 0) and its interval excludes both the smallest
    and the largest depth tried; 'monotone decreasing' when the fitted minimum is at the largest depth and
    the interval excludes the smallest; 'monotone increasing' mirror-wise; else 'inconclusive'.
    With `width`, the summary compares D* with the paper's 2.43·ln W and its W^0.44 law."""
    _check_level(level)
    depths = _array("depths", depths, positive=True)
    losses = _array("losses", losses, positive=True)
    _same_length(depths=depths, losses=losses)
    if seeds is not None:
        seeds = np.asarray(seeds)
        _same_length(depths=depths, seeds=seeds)
    distinct = np.unique(depths)
    if len(distinct) < 3:
        raise ValueError(f"need at least 3 distinct depths to fit a curve with a minimum, got "
                         f"{distinct.tolist()}")
    if len(depths) < 4:
        raise ValueError(f"need at least 4 runs (3 depths leave no residual to measure noise), got "
                         f"{len(depths)}")
    _not_constant("losses", losses)
    if n_boot < 100:
        raise ValueError(f"n_boot must be at least 100 for a {level:.0%} interval, got {n_boot}")

    runs_per_depth = np.array([(depths == d).sum() for d in distinct])
    if bootstrap == "auto":
        bootstrap = "runs" if runs_per_depth.min() >= 2 else "residual"
    if bootstrap not in ("runs", "seeds", "residual"):
        raise ValueError(f"bootstrap must be 'auto', 'runs', 'seeds' or 'residual', got {bootstrap!r}")
    if bootstrap == "runs" and runs_per_depth.min() < 2:
        raise ValueError("bootstrap='runs' needs at least 2 runs at every depth; depths with one run: "
                         f"{distinct[runs_per_depth < 2].tolist()}")
    if bootstrap == "seeds" and (seeds is None or len(np.unique(seeds)) < 3):
        raise ValueError("bootstrap='seeds' needs `seeds` with at least 3 distinct values")

    dof = len(depths) - 3
    x_mean = float(np.log(depths).mean())
    x = np.log(depths) - x_mean                       # centred for a well-conditioned solve
    x_lo, x_hi = float(x.min()), float(x.max())
    coef = _weighted_quadratics(x, losses[None], np.ones((1, len(x))))[0]
    X = np.column_stack([np.ones_like(x), x, x * x])
    fitted = X @ coef
    residuals = losses - fitted

    rng = np.random.default_rng(random_state)
    if bootstrap == "residual":
        Yb = _residual_resamples(X, fitted, residuals, n_boot, rng)
        Wb = np.ones_like(Yb)
    elif bootstrap == "runs":
        # resample the runs at each depth; deviations from the depth's mean are scaled by √(n/(n−1))
        # so that a resample's spread is unbiased (resampling 3 runs shrinks it by √(2/3))
        Yb = np.empty((n_boot, len(x)))
        for d in distinct:
            members = np.flatnonzero(depths == d)
            mean = losses[members].mean()
            draws = rng.choice(members, size=(n_boot, len(members)), replace=True)
            Yb[:, members] = mean + math.sqrt(len(members) / (len(members) - 1)) * (losses[draws] - mean)
        Wb = np.ones_like(Yb)
    else:
        labels = np.unique(seeds)
        balanced = all(sorted(seeds[depths == d].tolist()) == sorted(labels.tolist()) for d in distinct)
        if balanced:
            # whole seeds drawn with replacement, the same seeds at every depth; deviations from each
            # depth's mean scaled by √(k/(k−1)) so k seeds do not give a too-narrow interval
            k = len(labels)
            draws = rng.integers(0, k, size=(n_boot, k))
            Yb = np.empty((n_boot, len(x)))
            for d in distinct:
                members = np.flatnonzero(depths == d)
                members = members[np.argsort(seeds[members])]        # one run per seed, in label order
                mean = losses[members].mean()
                Yb[:, members] = mean + math.sqrt(k / (k - 1)) * (losses[members][draws] - mean)
            Wb = np.ones_like(Yb)
        else:   # seeds missing at some depths: resample whole seeds as weights (no variance correction)
            Wb = _bootstrap_weights(len(x), n_boot, rng, groups=seeds)
            Yb = np.broadcast_to(losses, Wb.shape)
    boot = _weighted_quadratics(x, Yb, Wb)
    usable = np.isfinite(boot).all(axis=1)
    dropped = int((~usable).sum())
    boot = boot[usable]

    x_star = _argmin_quadratic(coef[None], x_lo, x_hi)[0]
    x_star_boot = _argmin_quadratic(boot, x_lo, x_hi)
    d_star = float(np.exp(x_star + x_mean))
    d_boot = np.exp(x_star_boot + x_mean)
    ci = _percentile_ci(d_boot, level)
    vertex = float(np.exp(-coef[1] / (2 * coef[2]) + x_mean)) if coef[2] > 0 else math.nan
    d_lo, d_hi = float(distinct[0]), float(distinct[-1])
    interior = coef[2] > 0 and d_lo < vertex < d_hi
    if interior and ci[0] > d_lo and ci[1] < d_hi:
        verdict = "U-shaped"
        why = (f"the loss has an interior minimum and its {level:.0%} interval lies inside the tried range "
               f"{_fmt(d_lo)}–{_fmt(d_hi)}: deeper than D* the loss rises")
    elif not interior and d_star >= d_hi * (1 - 1e-9) and ci[0] > d_lo:
        verdict = "monotone decreasing"
        why = (f"the loss keeps falling up to the largest depth tried ({_fmt(d_hi)}): no critical depth "
               f"within the range, D* ≥ {_fmt(d_hi)}")
    elif not interior and d_star <= d_lo * (1 + 1e-9) and ci[1] < d_hi:
        verdict = "monotone increasing"
        why = (f"the loss rises from the smallest depth tried ({_fmt(d_lo)}): D* ≤ {_fmt(d_lo)}")
    else:
        verdict = "inconclusive"
        why = (f"the {level:.0%} interval of D* ({_fmt_ci(ci)}) reaches an end of the tried range "
               f"{_fmt(d_lo)}–{_fmt(d_hi)}, so the data cannot tell a minimum from a monotone trend")

    grid = np.linspace(x_lo, x_hi, 120)
    basis = np.column_stack([np.ones_like(grid), grid, grid * grid])
    band = boot @ basis.T
    q = 100 * (1 - level) / 2
    curve = pd.DataFrame({"depth": np.exp(grid + x_mean), "loss": basis @ coef,
                          "low": np.percentile(band, q, axis=0), "high": np.percentile(band, 100 - q, axis=0)})
    data = pd.DataFrame({"depth": depths, "loss": losses, "fitted": fitted})
    if seeds is not None:
        data["seed"] = seeds
    samples = pd.DataFrame({"d_star": d_boot, "c0": boot[:, 0], "c1": boot[:, 1], "c2": boot[:, 2]})

    extra = dict(d_star_vertex=vertex, coef=dict(c0=coef[0], c1=coef[1], c2=coef[2], x_mean=x_mean),
                 bootstrap=bootstrap, dropped_resamples=dropped, verdict_reason=why, width=width,
                 depth_range=(d_lo, d_hi), dof=dof)
    notes = []
    if bootstrap == "residual" and dof < 3:
        notes.append(f"with {dof} residual degree(s) of freedom the residual bootstrap sees little of the "
                     "noise: treat the interval as rough, and add depths or seeds to firm it up")
    if dropped:
        notes.append(f"{dropped} resample(s) lacked three distinct depths and were dropped")
    comparison = ""
    if width is not None:
        paper_log = paper_critical_depth(width)
        paper_pow = paper_critical_depth_power(width)
        extra.update(paper_d_crit_log=paper_log, paper_d_crit_power=paper_pow,
                     paper_log_in_ci=bool(ci[0] <= paper_log <= ci[1]),
                     paper_power_in_ci=bool(ci[0] <= paper_pow <= ci[1]))
        inside = lambda v: "inside" if ci[0] <= v <= ci[1] else "outside"
        comparison = (f" The Depth Delusion's working formula 2.43·ln W gives {paper_log:.1f} at W = {width:g} "
                      f"({inside(paper_log)} our interval); its power law D_crit ∝ W^0.44, anchored at W = 512, "
                      f"gives {paper_pow:.1f} ({inside(paper_pow)}).")
    r2 = _r2(losses, fitted)
    where = f" at width {width:g}" if width is not None else ""
    seeds_txt = f", {len(np.unique(seeds))} seed(s)" if seeds is not None else ""
    text = (f"Critical depth{where} from {len(depths)} runs ({len(distinct)} depths "
            f"{_fmt(d_lo)}–{_fmt(d_hi)}{seeds_txt}): a quadratic in ln D fits with R² = {r2:.3f}. "
            f"The fitted loss is lowest at D* = {_fmt(d_star)} ({level:.0%} CI {_fmt_ci(ci)}; "
            f"{bootstrap} bootstrap, {len(boot)} resamples). Verdict: {verdict} — {why}."
            + comparison + "".join(f" Note: {n}." for n in notes))
    return FitResult("critical_depth", {"d_star": d_star}, {"d_star": ci}, r2, residuals, len(depths),
                     len(boot), level, verdict, data, curve, samples, extra, text)


def _argmin_quadratic(coef, x_lo, x_hi):
    """Minimiser over [x_lo, x_hi] of each quadratic c0 + c1·x + c2·x² (rows of coef)."""
    c0, c1, c2 = coef[:, 0], coef[:, 1], coef[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = np.where(c2 > 0, -c1 / (2 * c2), np.nan)
    value = lambda x: c0 + c1 * x + c2 * x * x
    edge = np.where(value(x_lo) <= value(x_hi), x_lo, x_hi)
    return np.where(c2 > 0, np.clip(vertex, x_lo, x_hi), edge)


def _complete_runs(runs, columns):
    """Complete runs (when a status column exists) with finite values in `columns`, from a runs frame."""
    missing = [c for c in columns if c not in runs.columns]
    if missing:
        raise ValueError(f"runs frame has no column(s) {missing} (columns: {list(runs.columns)})")
    frame = runs[runs["status"] == "complete"] if "status" in runs.columns else runs
    finite = np.all([np.isfinite(frame[c].astype(float)) for c in columns], axis=0)
    frame = frame[finite]
    if frame.empty:
        raise ValueError(f"no complete runs with finite {', '.join(columns)}")
    return frame


def _select_runs(runs, width, loss):
    """Finished runs of one width with a finite loss, from the store's runs frame."""
    for col in ("depth", "width", loss):
        if col not in runs.columns:
            raise ValueError(f"runs frame has no column {col!r} (columns: {list(runs.columns)})")
    frame = runs
    if "status" in frame.columns:
        frame = frame[frame["status"] == "complete"]
    if width is None:
        widths = sorted(frame["width"].unique())
        if len(widths) != 1:
            raise ValueError(f"runs span widths {widths}: pass width=")
        width = widths[0]
    frame = frame[frame["width"] == width]
    frame = frame[np.isfinite(frame[loss].astype(float))]
    if frame.empty:
        raise ValueError(f"no complete runs with a finite {loss} at width {width}")
    return frame, width


def critical_depth_from_frame(runs: pd.DataFrame, *, width=None, loss="val_loss", **kwargs) -> FitResult:
    """`fit_critical_depth` on the store's runs frame: complete runs at `width` (the only width when
    None), depth vs `loss`, seeds from the `seed` column (repeats are resampled together)."""
    frame, width = _select_runs(runs, width, loss)
    seeds = frame["seed"].to_numpy() if "seed" in frame.columns else None
    return fit_critical_depth(frame["depth"].to_numpy(), frame[loss].to_numpy(float), seeds=seeds,
                              width=width, **kwargs)


def critical_depth_trajectory(curves: pd.DataFrame, runs: pd.DataFrame | None = None, *, width=None,
                              loss="val_loss", n_boot=500, level=0.95, random_state=0,
                              max_checkpoints=60) -> pd.DataFrame:
    """D*(T): the critical-depth fit repeated at every evaluation checkpoint of a depth sweep.

    `curves` is the store's curves frame (run_id, depth, width, seed, tokens, val_loss…); `runs`, when
    given, restricts it to those runs (and to complete ones). Runs are aligned on tokens: a run's loss at
    checkpoint T is its evaluation at T, or the interpolation (linear in ln T) between its neighbouring
    evaluations; runs that have not reached T, or started later, are left out at T. Returns one row per
    checkpoint: tokens, d_star, low, high, verdict, n_runs, n_depths (checkpoints with too few depths
    get NaN and the reason in `verdict`)."""
    for col in ("run_id", "depth", "width", "tokens", loss):
        if col not in curves.columns:
            raise ValueError(f"curves frame has no column {col!r} (columns: {list(curves.columns)})")
    frame = curves
    if runs is not None:
        keep = runs
        if "status" in keep.columns:
            keep = keep[keep["status"] == "complete"]
        frame = frame[frame["run_id"].isin(keep["run_id"])]
    elif "status" in frame.columns:
        frame = frame[frame["status"] == "complete"]
    if width is None:
        widths = sorted(frame["width"].unique())
        if len(widths) != 1:
            raise ValueError(f"curves span widths {widths}: pass width=")
        width = widths[0]
    frame = frame[(frame["width"] == width) & np.isfinite(frame[loss].astype(float))
                  & (frame["tokens"] > 0)]
    if frame.empty:
        raise ValueError(f"no evaluations of {loss} at width {width}")
    per_run = []
    for run_id, g in frame.groupby("run_id", sort=False):
        g = g.sort_values("tokens")
        seed = g["seed"].iloc[0] if "seed" in g.columns else 0
        per_run.append((int(g["depth"].iloc[0]), seed, np.log(g["tokens"].to_numpy(float)),
                        g[loss].to_numpy(float)))
    checkpoints = np.unique(frame["tokens"].to_numpy(float))
    if len(checkpoints) > max_checkpoints:   # keep the chart readable: log-spaced subset of the checkpoints
        pick = np.unique(np.round(np.linspace(0, len(checkpoints) - 1, max_checkpoints)).astype(int))
        checkpoints = checkpoints[pick]
    rows = []
    for T in checkpoints:
        lt = math.log(T)
        depths, losses, seeds = [], [], []
        for depth, seed, lts, ls in per_run:
            if lts[0] - 1e-9 <= lt <= lts[-1] + 1e-9:
                depths.append(depth)
                seeds.append(seed)
                losses.append(float(np.interp(lt, lts, ls)))
        row = dict(tokens=T, d_star=math.nan, low=math.nan, high=math.nan, n_runs=len(depths),
                   n_depths=len(set(depths)))
        try:
            fit = fit_critical_depth(depths, losses, seeds=seeds, width=width, n_boot=n_boot, level=level,
                                     random_state=random_state)
            row.update(d_star=fit.params["d_star"], low=fit.ci["d_star"][0], high=fit.ci["d_star"][1],
                       verdict=fit.verdict)
        except ValueError as err:
            row["verdict"] = f"not fitted: {err}"
        rows.append(row)
    return pd.DataFrame(rows, columns=["tokens", "d_star", "low", "high", "verdict", "n_runs", "n_depths"])


# ---------------------------------------------------------------------------------------------
# 2. Gradient persistence and τ(W)
# ---------------------------------------------------------------------------------------------

def _block_norms_from_frame(frame, run_id, step):
    """Block gradient norms (layers 0..D−1) of one run at one step from the store's grad-norm frame."""
    for col in ("layer", "norm"):
        if col not in frame.columns:
            raise ValueError(f"grad-norm frame has no column {col!r} (columns: {list(frame.columns)})")
    if "run_id" in frame.columns:
        ids = frame["run_id"].unique()
        if run_id is None:
            if len(ids) != 1:
                raise ValueError(f"grad-norm frame holds {len(ids)} runs: pass run_id= (one of {list(ids)[:5]}…)")
            run_id = ids[0]
        frame = frame[frame["run_id"] == run_id]
        if frame.empty:
            raise ValueError(f"no gradient norms for run {run_id!r}")
    if "step" in frame.columns:
        steps = np.unique(frame["step"])
        if step is None:   # the paper measured after 1000 steps: take the measurement nearest to it
            step = int(steps[np.argmin(np.abs(steps - 1000))])
        elif step not in steps:
            raise ValueError(f"no gradient norms at step {step}; measured at {steps.tolist()}")
        frame = frame[frame["step"] == step]
    if "depth" in frame.columns:
        depth = int(frame["depth"].iloc[0])
    else:   # layers are −1 (embedding), 0..D−1 (blocks), D (head)
        depth = int(frame["layer"].max())
    blocks = frame[(frame["layer"] >= 0) & (frame["layer"] < depth)]
    # one norm per block: root-sum-square if a block was logged in parts
    norms = blocks.groupby("layer")["norm"].apply(lambda s: float(np.sqrt(np.sum(np.square(s))))).sort_index()
    if list(norms.index) != list(range(depth)):
        raise ValueError(f"gradient norms of blocks {sorted(set(range(depth)) - set(norms.index))} are missing")
    return norms.to_numpy(), step, run_id


def fit_gradient_persistence(layer_grad_norms, *, run_id=None, step=None, n_boot=1000, level=0.95,
                             random_state=0) -> FitResult:
    """τ from one model's per-block gradient norms: ‖∇_ℓ‖ ≈ ‖∇_D‖·exp(−(D − ℓ)/τ), blocks ℓ = 0..D−1.

    Fitted as a straight line in log space, ln‖∇_ℓ‖ = ln‖∇_D‖ − D/τ + ℓ/τ, so the slope s = 1/τ;
    `params`: tau, rate (= 1/τ), g_top (‖∇_D‖, the line extrapolated to ℓ = D). R² is in log space.
    A positive τ means the gradient shrinks with distance from the output; a negative one that it grows
    (verdict says which; the exponential model then describes growth, not persistence).

    `layer_grad_norms`: a 1-D array (index = block), a 2-D array (repeats × blocks, e.g. seeds or
    several steps — the bootstrap then resamples repeats), or the store's grad-norm frame (pick the run
    with `run_id` and the step with `step`, default the measurement nearest step 1000, as in the paper).
    Without repeats the interval comes from a residual bootstrap; neighbouring layers' residuals are
    correlated, so treat it as a lower bound on the uncertainty."""
    _check_level(level)
    if isinstance(layer_grad_norms, pd.DataFrame):
        norms, step, run_id = _block_norms_from_frame(layer_grad_norms, run_id, step)
        reps = norms[None]
    else:
        reps = np.asarray(layer_grad_norms, dtype=float)
        if reps.ndim == 1:
            reps = reps[None]
        if reps.ndim != 2:
            raise ValueError("layer_grad_norms must be 1-D (blocks) or 2-D (repeats × blocks), "
                             f"got shape {reps.shape}")
    if not np.isfinite(reps).all():
        raise ValueError("layer_grad_norms contain NaN or inf")
    if (reps <= 0).any():
        raise ValueError(f"gradient norms must be positive, got {reps[reps <= 0][0]!r}")
    n_rep, D = reps.shape
    if D < 3:
        raise ValueError(f"need at least 3 blocks to fit a decay, got {D}")
    if n_boot < 100:
        raise ValueError(f"n_boot must be at least 100, got {n_boot}")
    log_norms = np.log(reps)
    mean_log = log_norms.mean(axis=0)
    _not_constant("gradient norms", mean_log)
    layers = np.arange(D, dtype=float)
    intercept, rate, *_, fitted = _linear_fit(layers, mean_log)
    residuals = mean_log - fitted
    rng = np.random.default_rng(random_state)
    X = np.column_stack([np.ones(D), layers])
    if n_rep >= 2:   # resample whole repeats (seeds / steps), spread corrected by √(k/(k−1)) as for depths
        pick = rng.integers(0, n_rep, size=(n_boot, n_rep))
        Yb = mean_log + math.sqrt(n_rep / (n_rep - 1)) * (log_norms[pick].mean(axis=1) - mean_log)
        method = f"bootstrap over {n_rep} repeats"
    else:
        Yb = _residual_resamples(X, fitted, residuals, n_boot, rng)
        method = "residual bootstrap over layers"
    coef_b = np.linalg.lstsq(X, Yb.T, rcond=None)[0].T
    rate_b = coef_b[:, 1]
    rate_ci = _percentile_ci(rate_b, level)
    tau = 1.0 / rate
    tau_ci = _reciprocal_ci(rate, rate_ci)
    g_top = float(np.exp(intercept + rate * D))
    g_top_ci = _percentile_ci(np.exp(coef_b[:, 0] + coef_b[:, 1] * D), level)
    r2 = _r2(mean_log, fitted)
    if rate_ci[0] > 0:
        verdict = "decays toward the input"
    elif rate_ci[1] < 0:
        verdict = "grows toward the input"
    else:
        verdict = "no clear trend"
    with np.errstate(divide="ignore"):
        tau_b = 1.0 / rate_b
    data = pd.DataFrame({"layer": np.arange(D), "norm": np.exp(mean_log), "fitted": np.exp(fitted)})
    if n_rep >= 2:
        data["low"] = np.exp(log_norms.min(axis=0))
        data["high"] = np.exp(log_norms.max(axis=0))
    grid = np.linspace(0, D - 1, 100)
    band = coef_b[:, :1] + coef_b[:, 1:] * grid[None]
    q = 100 * (1 - level) / 2
    curve = pd.DataFrame({"layer": grid, "norm": np.exp(intercept + rate * grid),
                          "low": np.exp(np.percentile(band, q, axis=0)),
                          "high": np.exp(np.percentile(band, 100 - q, axis=0))})
    samples = pd.DataFrame({"rate": rate_b, "tau": tau_b})
    where = f" of run {run_id} at step {step}" if run_id is not None else ""
    text = (f"Gradient persistence{where}: {D} blocks, ln‖∇_ℓ‖ linear in ℓ with R² = {r2:.3f} (log space). "
            f"τ = {_fmt(tau)} layers ({level:.0%} CI {_fmt_ci(tau_ci)}; {method}, {n_boot} resamples); "
            f"rate 1/τ = {_fmt(rate)} ({_fmt_ci(rate_ci)}); ‖∇_D‖ = {_fmt(g_top)}. Verdict: gradient norm "
            f"{verdict}" + (" — the interval of 1/τ includes 0, so τ is not bounded." if verdict == "no clear trend"
                            else "."))
    return FitResult("gradient_persistence", {"tau": tau, "rate": rate, "g_top": g_top},
                     {"tau": tau_ci, "rate": rate_ci, "g_top": g_top_ci}, r2, residuals, D, n_boot, level,
                     verdict, data, curve, samples,
                     dict(run_id=run_id, step=step, depth=D, n_repeats=n_rep, method=method), text)


def _reciprocal_ci(rate, rate_ci):
    """Interval of τ = 1/rate from the interval of the rate; unbounded when the rate's includes 0."""
    lo, hi = rate_ci
    if lo > 0 or hi < 0:
        return (1.0 / hi, 1.0 / lo)
    return (1.0 / hi, math.inf) if rate > 0 else (-math.inf, 1.0 / lo)


def tau_by_width(grad_norms: pd.DataFrame, *, step=None, n_boot=500, level=0.95) -> pd.DataFrame:
    """τ for every run in the store's grad-norm frame: one row per run with run_id, depth, width, seed,
    tau, low, high, r2, verdict — ready for `fit_tau_scaling(df.width, df.tau)`."""
    if "run_id" not in grad_norms.columns:
        raise ValueError("grad-norm frame needs a run_id column")
    rows = []
    for run_id, g in grad_norms.groupby("run_id", sort=False):
        fit = fit_gradient_persistence(g, run_id=run_id, step=step, n_boot=n_boot, level=level)
        rows.append(dict(run_id=run_id, depth=fit.extra["depth"],
                         width=int(g["width"].iloc[0]) if "width" in g.columns else None,
                         seed=g["seed"].iloc[0] if "seed" in g.columns else None, step=fit.extra["step"],
                         tau=fit.params["tau"], low=fit.ci["tau"][0], high=fit.ci["tau"][1], r2=fit.r2,
                         verdict=fit.verdict))
    return pd.DataFrame(rows)


def fit_tau_scaling(widths, taus, *, level=0.95) -> FitResult:
    """τ(W) two ways, so the data can say which form they prefer:
    power law τ = c·W^γ (a line in log-log: `gamma`, `c`) and logarithm τ = a + b·ln W (`a`, `b`).

    Intervals are the classical t-intervals of the two least-squares lines (exact for Gaussian noise,
    and appropriately wide with the 4–6 widths a sweep has; a bootstrap of so few points is not).
    `.r2` is the power law's R² on the τ scale; `extra` has both forms' R² on the τ scale (comparable:
    same quantity) and the power law's log-log R² (the scale such fits are usually quoted on)."""
    _check_level(level)
    widths = _array("widths", widths, positive=True)
    taus = _array("taus", taus)
    _same_length(widths=widths, taus=taus)
    if (taus <= 0).any():
        raise ValueError(f"taus must be positive for a power law (τ ≤ 0 means gradients do not decay "
                         f"toward the input), got {taus[taus <= 0].tolist()}")
    if len(np.unique(widths)) < 3:
        raise ValueError(f"need at least 3 distinct widths, got {np.unique(widths).tolist()}")
    _not_constant("taus", taus)
    lw, lt = np.log(widths), np.log(taus)
    log_c, gamma, se_logc, se_gamma, dof, fitted_log = _linear_fit(lw, lt)
    a, b, se_a, se_b, _, fitted_lin = _linear_fit(lw, taus)
    gamma_ci = _t_ci(gamma, se_gamma, dof, level)
    logc_ci = _t_ci(log_c, se_logc, dof, level)
    r2_power = _r2(taus, np.exp(fitted_log))
    r2_log = _r2(taus, fitted_lin)
    r2_power_loglog = _r2(lt, fitted_log)
    grid = np.exp(np.linspace(lw.min(), lw.max(), 100))
    # band of the power-law mean line: t-interval of the prediction in log space
    Xg = np.column_stack([np.ones_like(grid), np.log(grid)])
    X = np.column_stack([np.ones_like(lw), lw])
    s2 = float(np.sum((lt - fitted_log) ** 2)) / dof if dof > 0 else math.nan
    se_pred = np.sqrt(s2 * np.einsum("gi,ij,gj->g", Xg, np.linalg.inv(X.T @ X), Xg))
    t = stats.t.ppf(0.5 + level / 2, dof)
    centre = log_c + gamma * np.log(grid)
    curve = pd.DataFrame({"width": grid, "tau": np.exp(centre), "low": np.exp(centre - t * se_pred),
                          "high": np.exp(centre + t * se_pred), "tau_log_form": a + b * np.log(grid)})
    data = pd.DataFrame({"width": widths, "tau": taus, "fitted_power": np.exp(fitted_log),
                         "fitted_log": fitted_lin})
    prefer = "power law" if r2_power > r2_log else "logarithm"
    inside = gamma_ci[0] <= PAPER_TAU_EXPONENT <= gamma_ci[1]
    text = (f"τ(W) over {len(widths)} runs at {len(np.unique(widths))} widths: power law τ = {_fmt(math.exp(log_c))}"
            f"·W^{gamma:.3f} (γ {level:.0%} CI {_fmt_ci(gamma_ci)}), R² = {r2_power:.3f} on τ "
            f"({r2_power_loglog:.3f} log-log); logarithm τ = {_fmt(a)} + {_fmt(b)}·ln W, R² = {r2_log:.3f}. "
            f"The data prefer the {prefer}. The Depth Delusion reports γ ≈ {PAPER_TAU_EXPONENT} (R² 0.98), "
            f"{'inside' if inside else 'outside'} our interval.")
    return FitResult("tau_scaling",
                     {"gamma": float(gamma), "c": float(math.exp(log_c)), "a": float(a), "b": float(b)},
                     {"gamma": gamma_ci, "c": (math.exp(logc_ci[0]), math.exp(logc_ci[1])),
                      "a": _t_ci(a, se_a, dof, level), "b": _t_ci(b, se_b, dof, level)},
                     r2_power, lt - fitted_log, len(widths), 0, level, None, data, curve, None,
                     dict(r2_power=r2_power, r2_log=r2_log, r2_power_loglog=r2_power_loglog, preferred=prefer,
                          paper_gamma=PAPER_TAU_EXPONENT, paper_gamma_in_ci=bool(inside)), text)


# ---------------------------------------------------------------------------------------------
# 3. Chinchilla form: L(N, T) = E + A/N^α + B/T^β
# ---------------------------------------------------------------------------------------------

def _chinchilla_log_pred(log_n, log_t):
    """log L̂ = LSE(a − α·ln N, b − β·ln T, e) for parameter rows (a, b, e, α, β), and the map
    ψ ↦ Σᵢ ψᵢ·∂ log L̂ᵢ/∂θ (the gradient of any objective of the residuals, with no Jacobian array)."""
    def log_pred_vjp(X):
        a, b, e, alpha, beta = (X[:, i:i + 1] for i in range(5))
        u1 = a - alpha * log_n
        u2 = b - beta * log_t
        m = np.maximum(np.maximum(u1, u2), e)
        w1, w2, w3 = np.exp(u1 - m), np.exp(u2 - m), np.exp(e - m)
        total = w1 + w2 + w3
        log_pred = m + np.log(total)

        def vjp(psi):
            p = psi / total                                 # softmax weights wₖ/total are ∂ log L̂/∂(a, b, e)
            g1, g2 = p * w1, p * w2
            return np.stack([g1.sum(1), g2.sum(1), (p * w3).sum(1), -(g1 @ log_n), -(g2 @ log_t)], axis=1)
        return log_pred, vjp
    return log_pred_vjp


def read_epoch_points(path, *, exclude_highest=5) -> pd.DataFrame:
    """Epoch AI's points digitised from Chinchilla's Figure 4 (columns `Model Size`, `Training FLOP`,
    `loss`) as params, tokens (= FLOP / 6N), flops, loss — minus the `exclude_highest` highest losses,
    as Epoch did (every point whose loss reaches the 5th-highest value is left out)."""
    raw = pd.read_csv(path)
    for col in ("Model Size", "Training FLOP", "loss"):
        if col not in raw.columns:
            raise ValueError(f"{path} has no column {col!r}")
    frame = pd.DataFrame({"params": raw["Model Size"].astype(float), "flops": raw["Training FLOP"].astype(float),
                          "loss": raw["loss"].astype(float)}).dropna()
    frame["tokens"] = frame["flops"] / (6.0 * frame["params"])
    if exclude_highest:
        cutoff = np.sort(frame["loss"].to_numpy())[-exclude_highest]
        frame = frame[frame["loss"] < cutoff]
    return frame[["params", "tokens", "flops", "loss"]].reset_index(drop=True)


def fit_chinchilla(params, tokens, losses, *, n_boot=1000, huber_delta=1e-3, level=0.95, random_state=0,
                   grid=None, n_polish=50) -> FitResult:
    """L(N, T) = E + A/N^α + B/T^β fitted as Hoffmann et al. and Epoch AI did.

    Minimises Σ Huber_δ(LSE(a − α·ln N, b − β·ln T, e) − ln L) with δ = `huber_delta` (1e-3), E = e^e,
    A = e^a, B = e^b, by L-BFGS from every point of the grid (α, β ∈ 0..2 by 0.5; e ∈ −1..1 by 0.5;
    a, b ∈ 0..25 by 5: 4500 starts, run as one batch) keeping the best. To save time every start runs
    until its objective changes by < 1e-5 (relative) per iteration, then the `n_polish` best are run to
    full convergence; `n_polish=None` runs every start to full convergence instead (on Epoch's data both
    give the same optimum to 1e-11 in the objective; the shortcut takes about a third of the time:
    `bench/fit_bench.py --full-grid`). Intervals: percentiles over
    `n_boot` resamples of the points with replacement, each refitted by L-BFGS from the full-data
    optimum (as Epoch did). `params`: E, A, B, alpha, beta. Residuals are in log space (ln L − ln L̂);
    R² on the loss scale. `extra['n_opt_exponent']` = β/(α+β) (N_opt ∝ C^a with C = 6NT) and
    `extra['t_opt_exponent']` = α/(α+β), with intervals."""
    _check_level(level)
    N = _array("params", params, positive=True)
    T = _array("tokens", tokens, positive=True)
    L = _array("losses", losses, positive=True)
    _same_length(params=N, tokens=T, losses=L)
    if len(L) < 10:
        raise ValueError(f"need at least 10 points to fit 5 parameters robustly, got {len(L)}")
    _not_constant("losses", L)
    if len(np.unique(N)) < 3 or len(np.unique(T)) < 3:
        raise ValueError("need at least 3 distinct model sizes and 3 distinct token counts to separate "
                         "the N and T terms")
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    log_n, log_t, log_l = np.log(N), np.log(T), np.log(L)
    log_pred_vjp = _chinchilla_log_pred(log_n, log_t)
    g = CHINCHILLA_GRID if grid is None else grid
    starts = np.array(list(itertools.product(g["a"], g["b"], g["e"], g["alpha"], g["beta"])), float)
    fun_grad = _huber_fun_grad(log_pred_vjp, log_l, None, huber_delta)
    clock = time.perf_counter()
    if n_polish is None:     # every start to full convergence
        xs, fs, _ = _lbfgs_batch(fun_grad, starts)
    else:                    # every start roughly, the n_polish best of them to full convergence
        xs, fs, _ = _lbfgs_batch(fun_grad, starts, ftol=1e-5, gtol=1e-3)
        keep = np.argsort(fs)[:n_polish]
        xs, fs, _ = _lbfgs_batch(fun_grad, xs[keep])
    best = int(np.nanargmin(fs))
    theta = xs[best]
    seconds = dict(grid=time.perf_counter() - clock, bootstrap=0.0)
    names = ["E", "A", "B", "alpha", "beta"]
    untransform = lambda t: np.column_stack([np.exp(t[:, 2]), np.exp(t[:, 0]), np.exp(t[:, 1]), t[:, 3], t[:, 4]])
    point = untransform(theta[None])[0]
    log_pred = log_pred_vjp(theta[None])[0][0]
    residuals = log_l - log_pred

    samples = None
    ci = {k: (math.nan, math.nan) for k in names}
    derived_ci = {}
    if n_boot:
        rng = np.random.default_rng(random_state)
        weights = _bootstrap_weights(len(L), n_boot, rng)
        clock = time.perf_counter()
        xb, fb, _ = _lbfgs_batch(_huber_fun_grad(log_pred_vjp, log_l, weights, huber_delta),
                                 np.repeat(theta[None], n_boot, axis=0))
        seconds["bootstrap"] = time.perf_counter() - clock
        ok = np.isfinite(fb) & np.isfinite(xb).all(axis=1)
        samples = pd.DataFrame(untransform(xb[ok]), columns=names)
        ci = {k: _percentile_ci(samples[k], level) for k in names}
        s = samples
        derived_ci = dict(n_opt_exponent=_percentile_ci(s.beta / (s.alpha + s.beta), level),
                          t_opt_exponent=_percentile_ci(s.alpha / (s.alpha + s.beta), level))
    est = dict(zip(names, map(float, point)))
    a_exp = est["beta"] / (est["alpha"] + est["beta"])
    r2 = _r2(L, np.exp(log_pred))
    curve = _chinchilla_curves(est, samples, N, T, level)
    data = pd.DataFrame({"params": N, "tokens": T, "flops": 6 * N * T, "loss": L, "fitted": np.exp(log_pred)})
    extra = dict(objective=float(fs[best]) * huber_delta, n_starts=len(starts), n_polish=n_polish,
                 starts_at_best=int(np.sum(fs <= fs[best] + 1e-6)), huber_delta=huber_delta,
                 n_opt_exponent=a_exp, t_opt_exponent=1 - a_exp, **{f"{k}_ci": v for k, v in derived_ci.items()},
                 hoffmann=CHINCHILLA_HOFFMANN, epoch=CHINCHILLA_EPOCH, theta=theta, seconds=seconds)
    boot_txt = (f"{level:.0%} intervals from {len(samples)} bootstrap refits" if n_boot else "no bootstrap")
    shown = "; ".join(f"{k} = {_fmt(est[k])}" + (f" ({_fmt_ci(ci[k])})" if n_boot else "") for k in names)
    polished = "all" if n_polish is None else f"the best {min(n_polish, len(starts))}"
    text = (f"Chinchilla-form fit to {len(L)} points (Huber δ = {huber_delta:g} on log loss, L-BFGS from "
            f"{len(starts)} grid starts, {polished} run to convergence, {extra['starts_at_best']} of those "
            f"reach the best optimum): {shown}; "
            f"{boot_txt}; R² = {r2:.3f}. Compute-optimal allocation with C = 6NT: N_opt ∝ C^{a_exp:.3f}, "
            f"T_opt ∝ C^{1 - a_exp:.3f}. For comparison: Hoffmann et al. E 1.69, A 406.4, B 410.7, α 0.34, "
            f"β 0.28; Epoch AI's refit of the Figure 4 points E 1.817, A 482, B 2085, α 0.348, β 0.366.")
    return FitResult("chinchilla", est, ci, r2, residuals, len(L), 0 if samples is None else len(samples),
                     level, None, data, curve, samples, extra, text)


def chinchilla_from_frame(runs: pd.DataFrame, *, params="non_embedding_params", loss="val_loss",
                          **kwargs) -> FitResult:
    """`fit_chinchilla` on the store's runs frame: complete runs, N from the `params` column (Kaplan's
    non-embedding count by default; 'params' for the total), T from `tokens`, L from `loss`."""
    frame = _complete_runs(runs, [params, "tokens", loss])
    return fit_chinchilla(frame[params].to_numpy(float), frame["tokens"].to_numpy(float),
                          frame[loss].to_numpy(float), **kwargs)


def chinchilla_loss(result: FitResult, params, tokens) -> np.ndarray:
    """L(N, T) = E + A/N^α + B/T^β from a `fit_chinchilla` result."""
    p = result.params
    N, T = np.asarray(params, float), np.asarray(tokens, float)
    return p["E"] + p["A"] / N ** p["alpha"] + p["B"] / T ** p["beta"]


def _chinchilla_curves(est, samples, N, T, level, n_budgets=6):
    """Fitted loss vs N along isoFLOP lines (T = C/6N), with bootstrap bands: one line per FLOP budget
    when the points come in isoFLOP groups (≤ 12 groups of ≥ 3 points within 25% in C), drawn over that
    group's range of N; otherwise `n_budgets` budgets spread over the data, each over the sizes of the
    points within a factor 2 of it."""
    C = 6 * N * T
    labels = _group_budgets(C, 0.25)
    groups = [np.flatnonzero(labels == g) for g in np.unique(labels)]
    if len(groups) <= 12 and min(len(g) for g in groups) >= 3:
        spans = [(float(np.exp(np.log(C[g]).mean())), N[g].min() / 1.2, N[g].max() * 1.2) for g in groups]
    else:
        budgets = np.exp(np.quantile(np.log(C), np.linspace(0.05, 0.95, n_budgets)))
        spans = []
        for c in budgets:   # over the sizes of the points within a factor 2 of this budget
            near = np.abs(np.log(C / c)) < math.log(2)
            near = near if near.sum() >= 2 else np.ones_like(near)
            spans.append((float(c), N[near].min() / 1.2, N[near].max() * 1.2))
    rows = []
    q = 100 * (1 - level) / 2
    for c, n_lo, n_hi in spans:
        n_grid = np.exp(np.linspace(np.log(n_lo), np.log(n_hi), 60))
        t = c / (6 * n_grid)
        centre = est["E"] + est["A"] / n_grid ** est["alpha"] + est["B"] / t ** est["beta"]
        if samples is not None and len(samples):
            s = samples[["E", "A", "B", "alpha", "beta"]].to_numpy()
            draws = s[:, :1] + s[:, 1:2] / n_grid[None] ** s[:, 3:4] + s[:, 2:3] / t[None] ** s[:, 4:5]
            low, high = np.percentile(draws, [q, 100 - q], axis=0)
        else:
            low = high = np.full_like(centre, np.nan)
        rows.append(pd.DataFrame({"flops": c, "params": n_grid, "tokens": t, "loss": centre, "low": low, "high": high}))
    return pd.concat(rows, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# 4. The Depth Delusion ansatz: L(D, W, T) = A·N^−α + B·T^−δ + Φ(D, W), N = 12·D·W²
# ---------------------------------------------------------------------------------------------

DCRIT_FORMS = ("power", "log")


def _dd_names(dcrit_form, irreducible):
    names = ["a", "b", "alpha", "delta", "log_c", "log_kappa"] + (["gamma"] if dcrit_form == "power" else [])
    return names + (["e"] if irreducible else [])


def _dd_log_pred(log_d, log_w, log_t, dcrit_form, irreducible):
    """log L̂ for the ansatz and its vector-Jacobian product, for rows (a, b, α, δ, ln c, ln κ, [γ], [e]).

    L̂ = e^(a − α ln N) + e^(b − δ ln T) + c·h² [+ e^e], h = max(0, ln D − ln D_crit(W)),
    ln D_crit = ln κ + γ ln W (power) or ln κ + ln ln W (log)."""
    log_n = math.log(12.0) + log_d + 2 * log_w
    log_log_w = np.log(log_w) if dcrit_form == "log" else None
    has_gamma = dcrit_form == "power"

    def log_pred_vjp(X):
        cols = iter(range(X.shape[1]))
        a, b, alpha, delta, log_c, log_kappa = (X[:, next(cols)][:, None] for _ in range(6))
        gamma = X[:, next(cols)][:, None] if has_gamma else None
        e = X[:, next(cols)][:, None] if irreducible else None
        log_dcrit = log_kappa + (gamma * log_w if has_gamma else log_log_w)
        h = np.maximum(0.0, log_d - log_dcrit)
        with np.errstate(divide="ignore"):
            log_phi = np.where(h > 0, log_c + 2 * np.log(np.where(h > 0, h, 1.0)), -np.inf)
        u1 = a - alpha * log_n
        u2 = b - delta * log_t
        terms = [u1, u2, log_phi] + ([np.broadcast_to(e, u1.shape)] if irreducible else [])
        m = np.maximum.reduce(terms)
        w = [np.exp(t - m) for t in terms]
        total = sum(w)
        log_pred = m + np.log(total)
        s1, s2, s_phi = w[0] / total, w[1] / total, w[2] / total
        c_over_pred = np.exp(log_c - log_pred)             # c / L̂
        d_log_kappa = -2.0 * h * c_over_pred                # ∂ ln L̂ / ∂ ln κ (zero where h = 0)

        def vjp(psi):
            g1, g2 = psi * s1, psi * s2
            g_kappa = psi * d_log_kappa
            cols = [g1.sum(1), g2.sum(1), -(g1 @ log_n), -(g2 @ log_t), (psi * s_phi).sum(1), g_kappa.sum(1)]
            if has_gamma:
                cols.append(g_kappa @ log_w)
            if irreducible:
                cols.append((psi * w[3] / total).sum(1))
            return np.stack(cols, axis=1)
        return log_pred, vjp
    return log_pred_vjp


def _dd_untransform(X, dcrit_form, irreducible):
    names = _dd_names(dcrit_form, irreducible)
    col = {n: X[:, i] for i, n in enumerate(names)}
    out = {"A": np.exp(col["a"]), "alpha": col["alpha"], "B": np.exp(col["b"]), "delta": col["delta"],
           "c": np.exp(col["log_c"]), "kappa": np.exp(col["log_kappa"])}
    if dcrit_form == "power":
        out["gamma"] = col["gamma"]
    if irreducible:
        out["E"] = np.exp(col["e"])
    return pd.DataFrame(out)


def fit_depth_width_law(depths, widths, tokens, losses, *, dcrit_form="power", irreducible=False,
                        n_boot=300, huber_delta=1e-3, level=0.95, random_state=0, n_polish=64) -> FitResult:
    """The Depth Delusion ansatz L(D, W, T) = A·N^−α + B·T^−δ + Φ(D, W) [+ E], N = 12·D·W².

    Depth penalty: Φ = c·max(0, ln(D / D_crit(W)))², D_crit(W) = κ·W^γ (`dcrit_form='power'`) or
    κ·ln W ('log'). Why this Φ: it is exactly zero up to D_crit (the paper's claim: depth is free until
    the critical depth, harmful beyond), it grows with the *ratio* D/D_crit (depths are compared on a
    log scale throughout), and squaring the hinge makes the loss surface continuously differentiable, so
    L-BFGS can move D_crit smoothly (a plain hinge has a kink exactly where D_crit is to be located).
    Note that D_crit marks where the penalty *starts*; the loss-minimising depth at fixed width is a
    little beyond it. The paper did not publish its Φ (references.md); `irreducible=True` adds a
    constant E, which the paper's form lacks.

    Fitting: the Chinchilla machinery — Huber (δ = 1e-3) on ln L − ln L̂, positivity by log-parametrising
    A, B, c, κ (and E); a grid of starts (a, b ∈ 0..20 by 5; α, δ ∈ {0.1, 0.3, 0.6, 1}; c ∈ {0.01, 0.1, 1};
    γ ∈ {0.2, 0.45, 0.7}; D_crit at the median width placed at the lower quartile, median and upper
    quartile of the depths tried), L-BFGS from the `n_polish` best of them (roughly, then the best
    eighth to full convergence), the best kept. Intervals:
    `n_boot` resamples of the runs, refitted from the optimum. `params`: A, alpha, B, delta, c, kappa,
    gamma (power form), E (if irreducible)."""
    _check_level(level)
    if dcrit_form not in DCRIT_FORMS:
        raise ValueError(f"dcrit_form must be 'power' or 'log', got {dcrit_form!r}")
    D = _array("depths", depths, positive=True)
    W = _array("widths", widths, positive=True)
    T = _array("tokens", tokens, positive=True)
    L = _array("losses", losses, positive=True)
    _same_length(depths=D, widths=W, tokens=T, losses=L)
    names = _dd_names(dcrit_form, irreducible)
    if len(L) < 2 * len(names):
        raise ValueError(f"need at least {2 * len(names)} runs to fit {len(names)} parameters, got {len(L)}")
    _not_constant("losses", L)
    if len(np.unique(D)) < 3:
        raise ValueError(f"need at least 3 distinct depths to locate a critical depth, got {np.unique(D).tolist()}")
    if len(np.unique(W)) < 2:
        raise ValueError(f"need at least 2 distinct widths to fit how D_crit moves with W, got {np.unique(W).tolist()}")
    needed = 3 if irreducible else 2
    if len(np.unique(T)) < needed:   # B·T^−δ (+ E) has `needed` parameters to pin down from the token counts
        raise ValueError(f"need at least {needed} distinct token counts to separate B, delta"
                         f"{' and E' if irreducible else ''}, got {np.unique(T).tolist()}")
    if dcrit_form == "log" and (W <= math.e).any():
        raise ValueError("dcrit_form='log' needs widths above e (ln W > 1)")
    log_d, log_w, log_t, log_l = np.log(D), np.log(W), np.log(T), np.log(L)
    log_pred_vjp = _dd_log_pred(log_d, log_w, log_t, dcrit_form, irreducible)

    # grid of starts: evaluate all, polish the best with L-BFGS
    w_med = float(np.median(log_w))
    dcrit_targets = np.quantile(log_d, [0.25, 0.5, 0.75])
    gammas = [0.2, 0.45, 0.7] if dcrit_form == "power" else [None]
    rows = []
    for a, b, alpha, delta, log_c, target, gamma in itertools.product(
            np.arange(0.0, 21.0, 5.0), np.arange(0.0, 21.0, 5.0), [0.1, 0.3, 0.6, 1.0], [0.1, 0.3, 0.6, 1.0],
            np.log([0.01, 0.1, 1.0]), dcrit_targets, gammas):
        log_kappa = target - (gamma * w_med if gamma is not None else math.log(w_med))
        row = [a, b, alpha, delta, log_c, log_kappa] + ([gamma] if gamma is not None else [])
        rows.append(row)
    starts = np.array(rows)
    if irreducible:   # start E below the smallest loss
        e_starts = np.log(L.min()) + np.log([0.3, 0.6, 0.9])
        starts = np.concatenate([np.column_stack([starts, np.full(len(starts), e)]) for e in e_starts])
    fun_grad = _huber_fun_grad(log_pred_vjp, log_l, None, huber_delta)
    f0 = np.concatenate([fun_grad(chunk, None)[0] for chunk in np.array_split(starts, max(1, len(starts) // 2000))])
    polish = starts[np.argsort(f0)[:n_polish]]
    xs, fs, _ = _lbfgs_batch(fun_grad, polish, ftol=1e-5, gtol=1e-3, max_iter=500)   # roughly, then
    keep = np.argsort(fs)[:max(1, n_polish // 8)]                                     # the best to convergence
    xs, fs, _ = _lbfgs_batch(fun_grad, xs[keep], max_iter=2000)
    best = int(np.nanargmin(fs))
    theta = xs[best]
    log_pred = log_pred_vjp(theta[None])[0][0]
    residuals = log_l - log_pred
    est_frame = _dd_untransform(theta[None], dcrit_form, irreducible)
    est = {k: float(v) for k, v in est_frame.iloc[0].items()}

    samples = None
    ci = {k: (math.nan, math.nan) for k in est}
    if n_boot:
        rng = np.random.default_rng(random_state)
        weights = _bootstrap_weights(len(L), n_boot, rng)
        xb, fb, _ = _lbfgs_batch(_huber_fun_grad(log_pred_vjp, log_l, weights, huber_delta),
                                 np.repeat(theta[None], n_boot, axis=0), max_iter=2000)
        ok = np.isfinite(fb) & np.isfinite(xb).all(axis=1)
        samples = _dd_untransform(xb[ok], dcrit_form, irreducible)
        ci = {k: _percentile_ci(samples[k], level) for k in est}
    r2 = _r2(L, np.exp(log_pred))
    data = pd.DataFrame({"depth": D, "width": W, "tokens": T, "params": 12 * D * W ** 2, "loss": L,
                         "fitted": np.exp(log_pred)})
    if samples is not None:
        draws = np.stack([depth_width_loss(dict(zip(samples.columns, r)), D, W, T, dcrit_form)
                          for r in samples.to_numpy()])
        q = 100 * (1 - level) / 2
        data["low"], data["high"] = np.percentile(draws, [q, 100 - q], axis=0)
    dcrit = {float(w): float(_dcrit(est, w, dcrit_form)) for w in np.unique(W)}
    form_txt = "κ·W^γ" if dcrit_form == "power" else "κ·ln W"
    shown = "; ".join(f"{k} = {_fmt(v)}" + (f" ({_fmt_ci(ci[k])})" if n_boot else "") for k, v in est.items())
    text = (f"Depth–width law fitted to {len(L)} runs ({len(np.unique(D))} depths, {len(np.unique(W))} widths): "
            f"L = A·N^−α + B·T^−δ + c·max(0, ln(D/D_crit))²{' + E' if irreducible else ''}, N = 12·D·W², "
            f"D_crit = {form_txt}. {shown}"
            + (f"; {level:.0%} intervals from {len(samples)} bootstrap refits" if samples is not None else "")
            + f"; R² = {r2:.3f}. Fitted D_crit: "
            + ", ".join(f"{_fmt(v)} at W = {w:g}" for w, v in dcrit.items())
            + " (paper's 2.43·ln W: " + ", ".join(f"{paper_critical_depth(w):.1f}" for w in dcrit) + ").")
    return FitResult("depth_width_law", est, ci, r2, residuals, len(L), 0 if samples is None else len(samples),
                     level, None, data, None, samples,
                     dict(dcrit_form=dcrit_form, irreducible=irreducible, theta=theta, d_crit=dcrit,
                          objective=float(fs[best]) * huber_delta, huber_delta=huber_delta), text)


def depth_width_law_from_frame(runs: pd.DataFrame, *, loss="val_loss", **kwargs) -> FitResult:
    """`fit_depth_width_law` on the store's runs frame: complete runs' depth, width, tokens and `loss`."""
    frame = _complete_runs(runs, ["depth", "width", "tokens", loss])
    return fit_depth_width_law(*(frame[c].to_numpy(float) for c in ("depth", "width", "tokens", loss)), **kwargs)


def _dcrit(p, width, dcrit_form):
    width = np.asarray(width, float)
    return p["kappa"] * (width ** p["gamma"] if dcrit_form == "power" else np.log(width))


def depth_width_loss(params: dict, depths, widths, tokens, dcrit_form="power") -> np.ndarray:
    """The ansatz evaluated at (D, W, T) for a parameter dict (`result.params`, or one bootstrap row)."""
    D, W, T = (np.asarray(v, float) for v in (depths, widths, tokens))
    N = 12.0 * D * W ** 2
    h = np.maximum(0.0, np.log(D / _dcrit(params, W, dcrit_form)))
    return (params["A"] * N ** -params["alpha"] + params["B"] * T ** -params["delta"] + params["c"] * h ** 2
            + params.get("E", 0.0))


def _check_law(result):
    if result.kind != "depth_width_law":
        raise ValueError(f"needs a fit_depth_width_law result, got a {result.kind!r} result")


def _optimal_shape(p, flops, dcrit_form, context):
    """Compute-optimal (D, W, N, T, L) for one parameter dict at budgets `flops` (array).

    Without an attention term the ansatz depends on shape only through N and Φ, so every shape with the
    optimal N and D ≤ D_crit(W) is equally good: N* = (αA / δB)^(1/(α+δ))·(C/6)^(δ/(α+δ)), and we report
    the deepest of them, D* = D_crit(W*) with 12·D_crit(W*)·W*² = N* (the shape the law recommends when
    depth is free up to D_crit). With `context` the cost per token is 6N + 6·D·context·W (Kaplan), which
    makes wider-and-shallower strictly cheaper at equal N; the optimum is then found numerically over
    (ln D, ln W) with D ≥ 1 and may sit at D = 1 (reported as such)."""
    C = np.asarray(flops, float)
    A, B, alpha, delta = p["A"], p["B"], p["alpha"], p["delta"]
    n_star = (alpha * A / (delta * B)) ** (1 / (alpha + delta)) * (C / 6) ** (delta / (alpha + delta))
    if dcrit_form == "power":
        w_star = (n_star / (12 * p["kappa"])) ** (1 / (2 + p["gamma"]))
    else:   # solve ln 12 + ln κ + ln(ln W) + 2 ln W = ln N* for y = ln W > 0 (increasing, concave: Newton)
        target = np.log(n_star) - math.log(12 * p["kappa"])
        y = np.maximum(target / 2, 1.0)
        for _ in range(60):
            y = np.maximum(y - (np.log(y) + 2 * y - target) / (1 / y + 2), 1e-9)
        w_star = np.exp(y)
    d_star = _dcrit(p, w_star, dcrit_form)
    t_star = C / (6 * n_star)
    if context is None:
        loss = depth_width_loss(p, d_star, w_star, t_star, dcrit_form)
        return d_star, w_star, n_star, t_star, loss
    out = []
    for c, d0, w0 in zip(C, d_star, w_star):
        def objective(z, c=c):
            d, w = np.exp(z)
            t = c / (6 * (12 * d * w * w + d * context * w))
            return float(depth_width_loss(p, d, w, t, dcrit_form))
        res = optimize.minimize(objective, np.log([max(d0, 1.0), w0]), method="L-BFGS-B",
                                bounds=[(0.0, math.log(1e5)), (0.0, math.log(1e8))])
        d, w = np.exp(res.x)
        t = c / (6 * (12 * d * w * w + d * context * w))
        out.append((d, w, 12 * d * w * w, t, res.fun))
    return tuple(np.array(v) for v in zip(*out))


def compute_optimal_shapes(result: FitResult, flops, *, context=None, max_samples=300) -> pd.DataFrame:
    """D*(C), W*(C), N*(C), T*(C) and the loss there, from a fitted depth–width law, with intervals
    (low/high columns) from the bootstrap draws (at most `max_samples` of them). See `_optimal_shape`
    for how the tie between equally good shapes is broken and what `context` (the attention FLOPs) does."""
    _check_law(result)
    flops = _array("flops", np.atleast_1d(flops), positive=True)
    form = result.extra["dcrit_form"]
    d, w, n, t, loss = _optimal_shape(result.params, flops, form, context)
    frame = pd.DataFrame({"flops": flops, "depth": d, "width": w, "params": n, "tokens": t, "loss": loss})
    if result.samples is not None and len(result.samples):
        draws = [_optimal_shape(dict(zip(result.samples.columns, r)), flops, form, context)
                 for r in result.samples.to_numpy()[:max_samples]]
        q = 100 * (1 - result.level) / 2
        for i, name in enumerate(("depth", "width", "params", "tokens", "loss")):
            stack = np.stack([dr[i] for dr in draws])
            frame[f"{name}_low"], frame[f"{name}_high"] = np.nanpercentile(stack, [q, 100 - q], axis=0)
    if context is not None and (frame["depth"] <= 1.0001).any():
        frame.attrs["note"] = ("with the attention term the law prefers the shallowest shape allowed (D = 1): "
                               "the ansatz has no cost for shallowness")
    return frame


def compute_optimal_exponents(result: FitResult, flops=None, *, context=None, max_samples=300) -> FitResult:
    """Exponents of D* ∝ C^a, W* ∝ C^b, N* ∝ C^c, T* ∝ C^d from a fitted depth–width law: slopes of
    ln(optimum) against ln C over `flops` (default: 12 budgets spanning the fitted runs' 6·N·T), with
    intervals from the bootstrap draws. Compared with the paper's 0.12 (depth) and 0.34 (width). For
    the power form without attention term the exponents are exact: a = γ/(2+γ)·δ/(α+δ), b = a/γ."""
    _check_law(result)
    if flops is None:
        C = 6 * result.data["params"] * result.data["tokens"]
        flops = np.exp(np.linspace(np.log(C.min()), np.log(C.max()), 12))
    flops = _array("flops", np.atleast_1d(flops), positive=True)
    if len(np.unique(flops)) < 2:
        raise ValueError("need at least 2 distinct budgets to measure an exponent")
    form = result.extra["dcrit_form"]
    lc = np.log(flops)
    keys = ("depth", "width", "params", "tokens")

    def slopes(p):
        shape = _optimal_shape(p, flops, form, context)
        return [np.polyfit(lc, np.log(shape[i]), 1)[0] for i in range(4)]

    est = dict(zip([f"{k}_exponent" for k in keys], map(float, slopes(result.params))))
    ci = {k: (math.nan, math.nan) for k in est}
    samples = None
    if result.samples is not None and len(result.samples):
        rows = [slopes(dict(zip(result.samples.columns, r))) for r in result.samples.to_numpy()[:max_samples]]
        samples = pd.DataFrame(rows, columns=list(est))
        ci = {k: _percentile_ci(samples[k], result.level) for k in est}
    shapes = compute_optimal_shapes(result, flops, context=context, max_samples=max_samples)
    text = (f"Compute-optimal shapes from the fitted depth–width law over C = {_fmt_ci((flops.min(), flops.max()))} "
            f"FLOPs ({'with' if context else 'without'} the attention term): D* ∝ C^{est['depth_exponent']:.3f} "
            f"({_fmt_ci(ci['depth_exponent'])}), W* ∝ C^{est['width_exponent']:.3f} "
            f"({_fmt_ci(ci['width_exponent'])}), "
            f"N* ∝ C^{est['params_exponent']:.3f}, T* ∝ C^{est['tokens_exponent']:.3f}. The Depth Delusion reports "
            f"D* ∝ C^{PAPER_DEPTH_EXPONENT} and W* ∝ C^{PAPER_WIDTH_EXPONENT}."
            + (" Shapes with the optimal N and D ≤ D_crit(W) tie under this law; D* is the deepest of them."
               if context is None else "") + (f" Note: {shapes.attrs['note']}." if "note" in shapes.attrs else ""))
    return FitResult("compute_optimal", est, ci, None, np.array([]), len(flops),
                     0 if samples is None else len(samples), result.level, None, shapes, None, samples,
                     dict(context=context, paper_depth_exponent=PAPER_DEPTH_EXPONENT,
                          paper_width_exponent=PAPER_WIDTH_EXPONENT), text)


def loss_gap(result: FitResult, shape_a, shape_b, flops, *, context=None) -> dict:
    """Predicted loss of two shapes (depth, width) trained on the same compute `flops`, and the gap
    L(a) − L(b) with its interval from the bootstrap draws. Tokens = C / (6N [+ 6·D·context·W])."""
    _check_law(result)
    form = result.extra["dcrit_form"]
    C = float(flops)
    if not C > 0:
        raise ValueError(f"flops must be positive, got {flops!r}")
    shapes = []
    for label, shape in (("a", shape_a), ("b", shape_b)):
        try:
            d, w = (float(v) for v in shape)
        except (TypeError, ValueError):
            raise ValueError(f"shape_{label} must be (depth, width), got {shape!r}") from None
        if d <= 0 or w <= 0:
            raise ValueError(f"shape_{label} must have positive depth and width, got {shape!r}")
        n = 12 * d * w * w
        t = C / (6 * (n + (d * context * w if context else 0)))
        shapes.append((d, w, n, t))
    losses = [float(depth_width_loss(result.params, d, w, t, form)) for d, w, _, t in shapes]
    out = dict(flops=C, loss_a=losses[0], loss_b=losses[1], gap=losses[0] - losses[1],
               params_a=shapes[0][2], params_b=shapes[1][2], tokens_a=shapes[0][3], tokens_b=shapes[1][3],
               gap_ci=(math.nan, math.nan))
    if result.samples is not None and len(result.samples):
        gaps = [float(depth_width_loss(p, *shapes[0][:2], shapes[0][3], form)
                      - depth_width_loss(p, *shapes[1][:2], shapes[1][3], form))
                for p in (dict(zip(result.samples.columns, r)) for r in result.samples.to_numpy())]
        out["gap_ci"] = _percentile_ci(gaps, result.level)
    return out


# ---------------------------------------------------------------------------------------------
# 5. IsoFLOP profiles (Chinchilla's approach 2)
# ---------------------------------------------------------------------------------------------

def _group_budgets(flops, rtol):
    """Label runs by FLOP budget: sorted budgets within a factor (1 + rtol) of the group's first join it
    (compute-matched runs differ by less than a step's FLOPs, not exactly)."""
    order = np.argsort(flops)
    labels = np.empty(len(flops), int)
    group, start = 0, flops[order[0]]
    for i in order:
        if flops[i] > start * (1 + rtol):
            group, start = group + 1, flops[i]
        labels[i] = group
    return labels


def fit_isoflop(flops, params, losses, *, depths=None, widths=None, n_boot=1000, level=0.95,
                budget_rtol=0.05, random_state=0) -> FitResult:
    """IsoFLOP profiles: for each FLOP budget, a parabola of loss in ln N (and in ln D, ln W when
    `depths` / `widths` are given) locates the optimal size (and depth, width); power laws of those
    optima against C follow: N_opt = k·C^a etc. (`params_exponent`, `params_coef`, `depth_exponent`…).

    Runs join one budget when their FLOPs agree within `budget_rtol`; the budget is their geometric mean.
    Each budget needs ≥ 4 runs at ≥ 3 distinct sizes (else it is skipped, with the reason in
    `extra['optima']`); a budget whose parabola opens downward or whose optimum falls outside the sizes
    tried gives no optimum for that coordinate (the sweep did not bracket it). Per-budget intervals come
    from a residual bootstrap of the parabola; the exponent's interval is the wider of (i) the bootstrap
    propagating those per-budget draws through the power-law fit and (ii) the t-interval from the optima's
    scatter about the line (≥ 3 budgets), so neither source of noise is ignored."""
    _check_level(level)
    C = _array("flops", flops, positive=True)
    N = _array("params", params, positive=True)
    L = _array("losses", losses, positive=True)
    _same_length(flops=C, params=N, losses=L)
    coords = {"params": N}
    if depths is not None:
        coords["depth"] = _array("depths", depths, positive=True)
        _same_length(flops=C, depths=coords["depth"])
    if widths is not None:
        coords["width"] = _array("widths", widths, positive=True)
        _same_length(flops=C, widths=coords["width"])
    _not_constant("losses", L)
    if n_boot < 100:
        raise ValueError(f"n_boot must be at least 100, got {n_boot}")
    labels = _group_budgets(C, budget_rtol)
    rng = np.random.default_rng(random_state)
    optima_rows, curves, draws = [], [], {k: [] for k in coords}
    for g in np.unique(labels):
        idx = np.flatnonzero(labels == g)
        budget = float(np.exp(np.log(C[idx]).mean()))
        row = dict(flops=budget, n_runs=len(idx), min_loss=float(L[idx].min()), status="ok")
        if len(idx) < 4 or len(np.unique(N[idx])) < 3:
            row["status"] = f"skipped: {len(idx)} runs at {len(np.unique(N[idx]))} sizes (need ≥ 4 runs, ≥ 3 sizes)"
            optima_rows.append(row)
            continue
        for name, values in coords.items():
            x_all = np.log(values[idx])
            if len(np.unique(x_all)) < 3:
                row[f"opt_{name}"] = math.nan
                row["status"] = f"{name}: fewer than 3 distinct values"
                continue
            x_mean = x_all.mean()
            x = x_all - x_mean
            y = L[idx]
            coef = _weighted_quadratics(x, y[None], np.ones((1, len(x))))[0]
            X = np.column_stack([np.ones_like(x), x, x * x])
            fitted = X @ coef
            boot = _weighted_quadratics(x, _residual_resamples(X, fitted, y - fitted, n_boot, rng),
                                        np.ones((n_boot, len(x))))
            lo, hi = x.min(), x.max()
            vertex = -coef[1] / (2 * coef[2]) if coef[2] > 0 else math.nan
            grid = np.linspace(lo, hi, 60)
            curves.append(pd.DataFrame({"flops": budget, "coordinate": name, "x": np.exp(grid + x_mean),
                                        "loss": coef[0] + coef[1] * grid + coef[2] * grid ** 2}))
            if not (coef[2] > 0 and lo < vertex < hi):
                row[f"opt_{name}"] = math.nan
                row["status"] = f"{name}: no interior minimum (the sweep does not bracket the optimum)"
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                vb = np.where(boot[:, 2] > 0, -boot[:, 1] / (2 * boot[:, 2]), np.nan)
            vb = np.clip(vb, lo, hi)            # a resample without a minimum puts it at an edge
            vb = np.where(np.isfinite(vb), vb, np.where(rng.random(n_boot) < 0.5, lo, hi))
            row[f"opt_{name}"] = float(np.exp(vertex + x_mean))
            row[f"opt_{name}_low"], row[f"opt_{name}_high"] = np.exp(np.array(_percentile_ci(vb, level)) + x_mean)
            draws[name].append((budget, vb + x_mean))
        optima_rows.append(row)
    optima = pd.DataFrame(optima_rows)
    est, ci, r2s = {}, {}, {}
    residuals = np.array([])
    for name in coords:
        pts = draws[name]
        if len(pts) < 2:
            continue
        lc = np.log([b for b, _ in pts])
        opt = np.array([np.log(optima.loc[optima.flops == b, f"opt_{name}"].iloc[0]) for b, _ in pts])
        log_k, slope, se_k, se_slope, dof, fitted = _linear_fit(lc, opt)
        sample_fit = np.polyfit(lc, np.stack([d for _, d in pts]), 1)     # one line per bootstrap draw
        sample_slopes = sample_fit[0]
        boot_ci = _percentile_ci(sample_slopes, level)
        slope_ci = boot_ci
        if dof >= 1:
            t_ci = _t_ci(slope, se_slope, dof, level)
            slope_ci = (min(boot_ci[0], t_ci[0]), max(boot_ci[1], t_ci[1]))
        est[f"{name}_exponent"] = float(slope)
        est[f"{name}_coef"] = float(math.exp(log_k))
        ci[f"{name}_exponent"] = slope_ci
        ci[f"{name}_coef"] = tuple(float(v) for v in np.exp(_percentile_ci(sample_fit[1], level)))
        r2s[name] = _r2(opt, fitted) if len(pts) > 2 else math.nan
        if name == "params":
            residuals = opt - fitted
    if not est:
        raise ValueError("fewer than 2 budgets have an interior optimum; the per-budget status is: "
                         + "; ".join(f"{r['flops']:.3g}: {r['status']}" for r in optima_rows))
    data = pd.DataFrame({"flops": C, "budget": [optima_rows[l]["flops"] for l in labels], "loss": L,
                         **{k: v for k, v in coords.items()}})
    parts = []
    for name in coords:
        if f"{name}_exponent" in est:
            paper = {"depth": f" (paper: {PAPER_DEPTH_EXPONENT})",
                     "width": f" (paper: {PAPER_WIDTH_EXPONENT})"}.get(name, "")
            parts.append(f"{name}_opt ∝ C^{est[f'{name}_exponent']:.3f} ({_fmt_ci(ci[f'{name}_exponent'])}){paper}")
    used = int((optima["status"] == "ok").sum()) if "status" in optima else 0
    text = (f"IsoFLOP profiles: {len(optima)} budgets from {len(L)} runs, {used} with every optimum bracketed. "
            f"Parabolas in log size per budget, then power laws in C: " + "; ".join(parts) + f" ({level:.0%} CIs).")
    return FitResult("isoflop", est, ci, r2s.get("params"), residuals, len(L), n_boot, level, None, data,
                     pd.concat(curves, ignore_index=True) if curves else None, None,
                     dict(optima=optima, r2=r2s), text)


def isoflop_from_frame(runs: pd.DataFrame, *, params="non_embedding_params", loss="val_loss", **kwargs) -> FitResult:
    """`fit_isoflop` on the store's runs frame: complete runs grouped by their `flops`, sizes from the
    `params` column (non-embedding by default), depth and width from their columns."""
    frame = _complete_runs(runs, ["flops", params, "depth", "width", loss])
    return fit_isoflop(frame["flops"].to_numpy(float), frame[params].to_numpy(float), frame[loss].to_numpy(float),
                       depths=frame["depth"].to_numpy(float), widths=frame["width"].to_numpy(float), **kwargs)


# ---------------------------------------------------------------------------------------------
# 6. Comparisons over seeds (for the notebooks: two shapes' loss gap; is loss monotone in width?)
# ---------------------------------------------------------------------------------------------

def compare_losses(losses_a, losses_b, *, seeds_a=None, seeds_b=None, level=0.95) -> FitResult:
    """The gap between two shapes' final losses over repeated runs: `gap` = mean(b) − mean(a) with a
    t-interval — paired over seeds when both sides ran the same seeds (same data order, so the seed's
    own luck cancels), Welch's otherwise. Needs ≥ 2 runs per side. Verdict: which is lower, or
    'no clear difference' when the interval includes 0."""
    _check_level(level)
    a = _array("losses_a", losses_a)
    b = _array("losses_b", losses_b)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"need at least 2 runs of each shape for an interval, got {len(a)} and {len(b)}")
    paired = (seeds_a is not None and seeds_b is not None and len(a) == len(b)
              and sorted(np.asarray(seeds_a).tolist()) == sorted(np.asarray(seeds_b).tolist())
              and len(set(np.asarray(seeds_a).tolist())) == len(a))
    if paired:
        order_a, order_b = np.argsort(np.asarray(seeds_a)), np.argsort(np.asarray(seeds_b))
        diffs = b[order_b] - a[order_a]
        gap, se, dof = float(diffs.mean()), float(diffs.std(ddof=1) / math.sqrt(len(diffs))), len(diffs) - 1
        method = f"paired over {len(diffs)} seeds"
    else:
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        gap, se = float(b.mean() - a.mean()), float(math.sqrt(va + vb))
        dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if va + vb > 0 else len(a) + len(b) - 2
        method = f"Welch, {len(a)} and {len(b)} runs"
    ci = _t_ci(gap, se, dof, level) if se > 0 else (gap, gap)
    if ci[1] < 0:
        verdict = "second lower"
    elif ci[0] > 0:
        verdict = "first lower"
    else:
        verdict = "no clear difference"
    text = (f"Mean loss {a.mean():.4f} (first, {len(a)} runs) vs {b.mean():.4f} (second, {len(b)} runs): "
            f"gap second − first = {gap:+.4f} ({level:.0%} CI {ci[0]:+.4f} to {ci[1]:+.4f}; {method}). "
            f"Verdict: {verdict}.")
    data = pd.DataFrame({"shape": ["first"] * len(a) + ["second"] * len(b), "loss": np.concatenate([a, b])})
    return FitResult("loss_comparison", {"gap": gap, "mean_a": float(a.mean()), "mean_b": float(b.mean())},
                     {"gap": ci}, None, np.array([]), len(a) + len(b), 0, level, verdict, data, None, None,
                     dict(paired=paired, method=method, se=se, dof=dof), text)


def check_monotone(x, losses, *, decreasing=True, level=0.95) -> FitResult:
    """Does the loss fall (or rise, `decreasing=False`) steadily with x (e.g. width at fixed depth)?

    Per x: mean over repeats; each step between neighbouring x values gets its mean difference and, with
    ≥ 2 runs on both sides, a Welch t-interval. Overall: the least-squares slope of loss on ln x with its
    t-interval (`params['slope']`, nats per e-fold of x). Verdict: 'monotone' (every step's mean moves the
    expected way), 'monotone, every step significant' (and every interval excludes 0), or 'not monotone'
    naming the step that goes the wrong way (and whether its interval excludes 0). `extra['steps']` is
    the table of steps."""
    _check_level(level)
    x = _array("x", x, positive=True)
    y = _array("losses", losses)
    _same_length(x=x, losses=y)
    values = np.unique(x)
    if len(values) < 3:
        raise ValueError(f"need at least 3 distinct x values to judge a trend, got {values.tolist()}")
    sign = -1.0 if decreasing else 1.0
    rows = []
    for lo, hi in zip(values[:-1], values[1:]):
        a, b = y[x == lo], y[x == hi]
        diff = float(b.mean() - a.mean())
        low = high = math.nan
        if len(a) >= 2 and len(b) >= 2:
            va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
            se = math.sqrt(va + vb)
            if se > 0:
                dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
                low, high = _t_ci(diff, se, dof, level)
        rows.append(dict(x_from=float(lo), x_to=float(hi), diff=diff, low=low, high=high,
                         expected=bool(sign * diff > 0),
                         significant=bool(np.isfinite(low) and (low > 0 or high < 0))))
    steps = pd.DataFrame(rows)
    intercept, slope, se_i, se_slope, dof, fitted = _linear_fit(np.log(x), y)
    slope_ci = _t_ci(slope, se_slope, dof, level) if dof > 0 else (math.nan, math.nan)
    wrong = steps[~steps["expected"]]
    direction = "falls" if decreasing else "rises"
    if wrong.empty:
        verdict = ("monotone, every step significant" if steps["significant"].all() else "monotone")
        why = f"the mean loss {direction} at every step"
    else:
        verdict = "not monotone"
        w = wrong.iloc[0]
        sig = "its interval excludes 0" if w["significant"] else "within noise: its interval includes 0"
        why = (f"from x = {_fmt(w['x_from'])} to {_fmt(w['x_to'])} the mean loss moves {w['diff']:+.4f} "
               f"the other way ({sig})" + (f"; {len(wrong) - 1} more such step(s)" if len(wrong) > 1 else ""))
    text = (f"Loss against x over {len(y)} runs at {len(values)} values: slope {slope:+.4f} per e-fold of x "
            f"({level:.0%} CI {_fmt_ci(slope_ci)}). Verdict: {verdict} — {why}.")
    data = pd.DataFrame({"x": x, "loss": y})
    return FitResult("monotone", {"slope": float(slope), "n_wrong_steps": float(len(wrong))}, {"slope": slope_ci},
                     _r2(y, fitted), y - fitted, len(y), 0, level, verdict, data, None, None,
                     dict(steps=steps, decreasing=decreasing, reason=why), text)
