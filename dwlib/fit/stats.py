"""Statistics every fitter shares: input checks, the result type, intervals, resampling, the vertex of a
local quadratic, and a batched L-BFGS for the nonlinear laws.

numpy / scipy / pandas only (no torch): data flows config → … → store → sweep → fit → charts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats


@dataclass(kw_only=True, repr=False)
class Fit:
    """What every fitter returns. `params` holds estimates, `ci` their intervals (`level`, 95% by
    default). `identified` is False when the data cannot pin the parameters down; `health` then says
    why in plain words, and nothing is compared with a paper. `data`, `curve`, `samples` are tidy
    frames for charts (fitted points, fitted curve with its band, bootstrap draws)."""

    kind: str
    params: dict[str, float]
    ci: dict[str, tuple[float, float]]
    n_points: int
    level: float = 0.95
    r2: float | None = None
    residuals: np.ndarray | None = None
    n_boot: int = 0
    verdict: str | None = None
    identified: bool = True
    health: list[str] = field(default_factory=list)
    data: pd.DataFrame | None = None
    curve: pd.DataFrame | None = None
    samples: pd.DataFrame | None = None
    text: str = ""

    def summary(self) -> str:
        """A readable paragraph: what was fitted, the estimates with intervals, what they mean."""
        return self.text

    def __repr__(self):
        shown = ", ".join(f"{k}={fmt(v)}" for k, v in self.params.items())
        verdict = f", verdict={self.verdict!r}" if self.verdict else ""
        health = "" if self.identified else ", NOT identified"
        return f"{type(self).__name__}({self.kind}: {shown}{verdict}{health}, n={self.n_points})"


# ---------------------------------------------------------------------------------------------
# Input checks: ValueError naming what is wrong
# ---------------------------------------------------------------------------------------------

def as_array(name, values, *, positive=False) -> np.ndarray:
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


def same_length(**arrays):
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError("lengths differ: " + ", ".join(f"{k}={n}" for k, n in lengths.items()))


def not_constant(name, values):
    if np.ptp(values) <= 1e-12 * max(1.0, float(np.abs(values).max())):
        raise ValueError(f"{name} are all equal ({values[0]!r}): nothing to fit")


def check_level(level):
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")


def check_n_boot(n_boot, minimum=100):
    if not isinstance(n_boot, (int, np.integer)) or n_boot < minimum:
        raise ValueError(f"n_boot must be an integer of at least {minimum}, got {n_boot!r}")


# ---------------------------------------------------------------------------------------------
# Small statistics
# ---------------------------------------------------------------------------------------------

def percentile_ci(samples, level) -> tuple[float, float]:
    """Percentile interval of the finite samples (NaN, NaN when there are none)."""
    samples = np.asarray(samples, float)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return (math.nan, math.nan)
    lo, hi = percentile_band(samples, level)
    return (float(lo), float(hi))


def percentile_band(draws, level) -> np.ndarray:
    """Rows (lower, upper): the `level` percentile interval of each column of `draws` (resamples × points)."""
    q = 100 * (1 - level) / 2
    return np.percentile(draws, [q, 100 - q], axis=0)


def t_interval(value, se, dof, level) -> tuple[float, float]:
    """value ± t_{dof}·se; (value, value) when se is 0."""
    if not se > 0:
        return (float(value), float(value))
    lo, hi = stats.t.interval(level, dof, loc=value, scale=se)
    return (float(lo), float(hi))


def r2(y, yhat) -> float:
    ss_tot = float(np.sum((y - np.mean(y)) ** 2))
    return 1.0 - float(np.sum((y - yhat) ** 2)) / ss_tot if ss_tot > 0 else math.nan


def fmt(v) -> str:
    """Four significant figures, but whole numbers between 1000 and 10⁶ in full (A = 482, B = 2085)."""
    if v is None or not math.isfinite(float(v)):
        return str(v)
    v = float(v)
    return f"{v:.0f}" if 1000 <= abs(v) < 1e6 else f"{v:.4g}"


def fmt_ci(ci) -> str:
    return f"{fmt(ci[0])}–{fmt(ci[1])}"


def group_means(x, y):
    """Distinct values of x (sorted), the index of each point's value, and per value: count, mean and
    sample variance (NaN for a single point)."""
    levels, index = np.unique(x, return_inverse=True)
    n = np.bincount(index).astype(float)
    mean = np.bincount(index, y) / n
    ss = np.bincount(index, (y - mean[index]) ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(n > 1, ss / (n - 1), np.nan)
    return levels, index, n, mean, var


# ---------------------------------------------------------------------------------------------
# Resampling
# ---------------------------------------------------------------------------------------------

def resample_within(index, y, n_boot, rng) -> np.ndarray:
    """Bootstrap responses (n_boot, n): the points of each group (one group per value of `index`) drawn
    with replacement among themselves, every group in every resample. Deviations from the group mean
    are scaled by √(k/(k−1)) (k points in the group), since resampling k values shrinks their spread.
    Pass the same `rng` state to get the same draws for two response vectors with the same grouping
    (a paired bootstrap). Groups of one point stay fixed."""
    out = np.empty((n_boot, len(y)))
    for g in np.unique(index):
        members = np.flatnonzero(index == g)
        k = len(members)
        mean = y[members].mean()
        if k == 1:
            out[:, members] = mean
            continue
        draws = rng.choice(members, size=(n_boot, k), replace=True)
        out[:, members] = mean + math.sqrt(k / (k - 1)) * (y[draws] - mean)
    return out


def residual_resamples(X, fitted, residuals, n_boot, rng) -> np.ndarray:
    """Residual-bootstrap responses (n_boot, n) of a linear fit with design X: fitted + s·(resampled
    leverage-adjusted, centred residuals), the noise scale s = √(dof/χ²_dof) drawn per resample — the
    small-sample calibration a t-quantile gives a z-interval (Davison & Hinkley 1997, §6.2.3)."""
    H = X @ np.linalg.pinv(X)
    lev = np.clip(np.diag(H), 0, 1 - 1e-9)
    r = residuals / np.sqrt(1 - lev)
    r = r - r.mean()
    dof = max(1, X.shape[0] - X.shape[1])
    scale = np.sqrt(dof / rng.chisquare(dof, size=(n_boot, 1)))
    return fitted[None] + scale * rng.choice(r, size=(n_boot, len(fitted)))


def bootstrap_weights(n, n_boot, rng) -> np.ndarray:
    """Integer weights (n_boot, n): how many times each point is drawn in each resample, so every
    resample of a weighted fit shares one array shape."""
    draws = rng.integers(0, n, size=(n_boot, n))
    return np.stack([np.bincount(d, minlength=n) for d in draws]).astype(float)


# ---------------------------------------------------------------------------------------------
# Quadratics and the vertex of a local one (the best depth, the best learning rate)
# ---------------------------------------------------------------------------------------------

def quadratics(x, Y) -> np.ndarray:
    """Least-squares c0 + c1·x + c2·x² for each row of Y (same x): rows of (c0, c1, c2)."""
    X = np.column_stack([np.ones_like(x), x, x * x])
    coef, *_ = np.linalg.lstsq(X, np.atleast_2d(Y).T, rcond=None)
    return coef.T


def vertex(coef, lo, hi) -> np.ndarray:
    """Minimiser over [lo, hi] of each quadratic (rows of coef); the lower end when it opens downward."""
    c0, c1, c2 = coef[:, 0], coef[:, 1], coef[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(c2 > 0, -c1 / (2 * c2), np.nan)
    at = lambda x: c0 + c1 * x + c2 * x * x
    edge = np.where(at(lo) <= at(hi), lo, hi)
    return np.where(c2 > 0, np.clip(v, lo, hi), edge)


def local_vertex(x, y, *, window=5, n_boot=1000, level=0.95, rng=None) -> dict:
    """Where a noisy curve sampled at a few values of x is lowest, with a bootstrap interval.

    Average y at each x; fit a parabola to the points at the `window` values of x centred on the grid
    minimum; its vertex (kept inside the window) is the estimate. Local, because away from the minimum a
    curve is rarely a parabola (a loss that levels off, a divergence wall) and would bend a global one.
    Values of x whose mean is not finite (diverged runs) are walls: they bound the minimum but never
    enter the parabola.

    Interval (none with n_boot=0): percentiles of the vertex over `n_boot` resamples — the points at
    each x resampled among themselves when every x in the window has ≥ 2, else the parabola's
    residuals. Resamples whose parabola has no minimum inside the window are left out; `no_minimum` is
    their share. `method` is 'edge' when the grid minimum has no finite neighbour on one side (it was
    never seen rising there), 'grid' when the parabola opens downward or its vertex leaves the window;
    both return the grid minimum with its neighbouring x values as the interval (NaN where the range
    ends). Returns dict(x, low, high, method, grid_x, grid_y, value, samples, no_minimum), and for the
    parabola methods `window` (its x range) and `coef` (a + b·u + c·u², u = x − grid_x)."""
    rng = np.random.default_rng(rng)
    x, y = np.asarray(x, float), np.asarray(y, float)
    levels = np.unique(x)
    means = np.array([y[x == v].mean() for v in levels])
    finite = np.isfinite(means)
    i = int(np.nanargmin(np.where(finite, means, np.nan)))
    answer = dict(grid_x=float(levels[i]), grid_y=float(means[i]), samples=None, no_minimum=math.nan)

    def grid(method):
        return dict(answer, x=float(levels[i]), value=float(means[i]), method=method,
                    low=float(levels[i - 1]) if i > 0 else math.nan,
                    high=float(levels[i + 1]) if i < len(levels) - 1 else math.nan)

    if not (0 < i < len(levels) - 1 and finite[i - 1] and finite[i + 1]):
        return grid("edge")
    half = window // 2
    lo, hi = max(0, i - half), min(len(levels), i + half + 1)
    chosen = levels[lo:hi][finite[lo:hi]]
    keep = np.isin(x, chosen) & np.isfinite(y)
    xs, ys = x[keep] - levels[i], y[keep]          # centred on the grid minimum: well conditioned
    x_lo, x_hi = float(chosen.min() - levels[i]), float(chosen.max() - levels[i])
    coef = quadratics(xs, ys)[0]
    if not coef[2] > 0 or not x_lo <= -coef[1] / (2 * coef[2]) <= x_hi:
        return grid("grid")
    best = float(vertex(coef[None], x_lo, x_hi)[0])
    answer.update(value=float(coef[0] + coef[1] * best + coef[2] * best ** 2), method="parabola",
                  window=(x_lo + levels[i], x_hi + levels[i]), coef=coef)
    if not n_boot:
        return dict(answer, x=best + levels[i], low=math.nan, high=math.nan)
    _, index, counts, _, _ = group_means(xs, ys)
    if counts.min() >= 2:
        Y, how = resample_within(index, ys, n_boot, rng), "runs"
    else:
        X = np.column_stack([np.ones_like(xs), xs, xs * xs])
        Y, how = residual_resamples(X, X @ coef, ys - X @ coef, n_boot, rng), "residual"
    coefs = quadratics(xs, Y)
    with np.errstate(divide="ignore", invalid="ignore"):
        draws = np.where(coefs[:, 2] > 0, -coefs[:, 1] / (2 * coefs[:, 2]), np.nan)
    draws[(draws < x_lo) | (draws > x_hi)] = np.nan     # no interior minimum: counted, never imputed
    low, high = percentile_ci(draws, level)
    return dict(answer, x=best + levels[i], low=low + levels[i], high=high + levels[i],
                method=f"parabola ({how} bootstrap)", samples=draws + levels[i],
                no_minimum=float(np.mean(~np.isfinite(draws))))


# ---------------------------------------------------------------------------------------------
# Batched L-BFGS: many small independent problems (grid starts or bootstrap resamples) at once
# ---------------------------------------------------------------------------------------------

def lbfgs_batch(fun_grad, x0, *, memory=10, max_iter=1000, gtol=1e-7, ftol=1e-12):
    """Minimise B independent smooth objectives with L-BFGS, vectorised across the batch (scipy's
    minimize runs one problem at a time; the Chinchilla fit runs 4500 starts and 1000 resamples).

    `fun_grad(X, rows)` returns (f (b,), grad (b, p)) for the parameter rows X of problems `rows`.
    Two-loop recursion, backtracking (Armijo) line search, curvature pairs kept only when sᵀy > 0,
    per-problem stopping on a negligible gradient or decrease. Returns (x (B, p), f (B,))."""
    x = np.array(x0, dtype=float)
    B, p = x.shape
    f, g = fun_grad(x, np.arange(B))
    S, Y = np.zeros((memory, B, p)), np.zeros((memory, B, p))
    rho, stored = np.zeros((memory, B)), np.zeros((memory, B), bool)
    head = 0
    active = np.isfinite(f)
    dot = lambda a, b: np.einsum("bp,bp->b", a, b)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for _ in range(max_iter):
            idx = np.flatnonzero(active)
            if idx.size == 0:
                break
            q = g[idx].copy()                            # two-loop recursion, newest pair first
            order = [(head - 1 - j) % memory for j in range(memory)]
            alphas = np.zeros((memory, idx.size))
            for j in order:
                alphas[j] = np.where(stored[j, idx], rho[j, idx] * dot(S[j, idx], q), 0.0)
                q -= alphas[j][:, None] * Y[j, idx]
            last = (head - 1) % memory
            sy, yy = dot(S[last, idx], Y[last, idx]), dot(Y[last, idx], Y[last, idx])
            first = 1.0 / np.maximum(np.linalg.norm(g[idx], axis=1), 1e-12)   # first step: length 1
            r = np.where(stored[last, idx] & (yy > 0), sy / np.where(yy > 0, yy, 1.0), first)[:, None] * q
            for j in reversed(order):
                beta = np.where(stored[j, idx], rho[j, idx] * dot(Y[j, idx], r), 0.0)
                r += S[j, idx] * (alphas[j] - beta)[:, None]
            d = -r
            slope = dot(g[idx], d)
            uphill = ~(slope < 0)                        # lost curvature information: restart along −g
            if uphill.any():
                d[uphill] = -g[idx][uphill] * first[uphill, None]
                slope[uphill] = dot(g[idx][uphill], d[uphill])
                stored[:, idx[uphill]] = False
            step, f_new, g_new = np.ones(idx.size), np.full(idx.size, np.nan), np.zeros((idx.size, p))
            todo = np.arange(idx.size)
            for _ in range(50):                          # backtracking line search, all problems together
                fv, gv = fun_grad(x[idx[todo]] + step[todo, None] * d[todo], idx[todo])
                ok = np.isfinite(fv) & (fv <= f[idx[todo]] + 1e-4 * step[todo] * slope[todo])
                f_new[todo[ok]], g_new[todo[ok]] = fv[ok], gv[ok]
                todo = todo[~ok]
                if todo.size == 0:
                    break
                step[todo] *= 0.5
            moved = np.isfinite(f_new)
            active[idx[~moved]] = False                  # no decrease along the direction: converged
            ii = idx[moved]
            s, yv = step[moved, None] * d[moved], g_new[moved] - g[ii]
            sy = dot(s, yv)
            good = sy > 1e-10 * dot(yv, yv)
            S[head, ii], Y[head, ii], stored[head, ii] = s, yv, good
            rho[head, ii] = np.where(good, 1.0 / np.where(good, sy, 1.0), 0.0)
            head = (head + 1) % memory
            f_old = f[ii]
            x[ii] += s
            f[ii], g[ii] = f_new[moved], g_new[moved]
            tiny_grad = np.abs(g[ii]).max(axis=1) < gtol
            tiny_step = (f_old - f[ii]) <= ftol * np.maximum(np.maximum(np.abs(f_old), np.abs(f[ii])), 1.0)
            active[ii[tiny_grad | tiny_step]] = False
    return x, f


def huber_terms(log_pred, log_losses, delta):
    """Per point: Huber_δ(log pred − log L)/δ and its derivative in log pred."""
    r = log_pred - log_losses
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r / delta, a - 0.5 * delta), np.clip(r / delta, -1.0, 1.0)


def huber_objective(log_pred_vjp, log_losses, weights, delta):
    """Σ wᵢ·Huber_δ(log predᵢ − log Lᵢ)/δ and its gradient, for `lbfgs_batch` (Hoffmann et al.'s loss;
    dividing by δ keeps the objective near the number of points, so tolerances mean the same for any δ).
    `weights` (B, n) or None; `log_pred_vjp(X)` returns log predictions (b, n) and ψ ↦ Σᵢ ψᵢ ∂log predᵢ/∂θ."""
    def fun_grad(X, rows):
        log_pred, vjp = log_pred_vjp(X)
        h, psi = huber_terms(log_pred, log_losses, delta)
        if weights is not None:
            h, psi = h * weights[rows], psi * weights[rows]
        f = h.sum(axis=1)
        return np.where(np.isfinite(f), f, np.inf), np.nan_to_num(vjp(psi))
    return fun_grad


# ---------------------------------------------------------------------------------------------
# The training regime a set of runs comes from
# ---------------------------------------------------------------------------------------------

FALLING_FAST = -0.02     # nats per doubling of tokens: the run would still gain visibly from more data
CHINCHILLA_TOKENS_PER_PARAM = 20.0


def regime(tokens_per_param, final_slope, depths, *, best=None, effect=None) -> dict:
    """The training regime of a set of runs: tokens-per-parameter range, and the final slopes (nats
    per doubling of tokens) of the best and the deepest runs."""
    out = {}
    if tokens_per_param is not None:
        tpp = np.asarray(tokens_per_param, float)
        tpp = tpp[np.isfinite(tpp)]
        if tpp.size:
            out.update(tokens_per_param=(float(tpp.min()), float(tpp.max())))
    if final_slope is not None:
        slope = np.asarray(final_slope, float)
        depths = np.asarray(depths, float)
        for name, d in (("best", best), ("deepest", depths.max())):
            if d is not None and np.isfinite(slope[depths == d]).any():
                out[f"slope_{name}"] = float(np.nanmean(slope[depths == d]))
    if effect is not None:
        out["effect"] = float(effect)
    return out
