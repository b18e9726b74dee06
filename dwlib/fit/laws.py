"""Scaling laws fitted the way Hoffmann et al. (arXiv 2203.15556) and Epoch AI (arXiv 2404.10102) did —
Huber loss (δ = 1e-3) between log L and the log of a log-sum-exp prediction, L-BFGS from a grid of
starts, bootstrap intervals — with a health check that refuses to present a degenerate fit as a result:

    fit_chinchilla        L(N, T) = E + A/N^α + B/T^β                          (shape-blind)
    fit_depth_width_law   L(D, W, T) = A·N^−α + B·T^−δ + c·max(0, ln D/D_crit(W))² [+ E], N = 12·D·W²
    compare_laws          the two, compared on held-out shapes (leave whole shapes out)

Every result carries `identified` and `health` (plain reasons, each with what data would fix it).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from ..config import paper_critical_depth
from .stats import (Fit, as_array, bootstrap_weights, check_level, fmt, fmt_ci, huber_objective, huber_terms,
                    lbfgs_batch, not_constant, percentile_band, percentile_ci, r2, same_length)

CHINCHILLA_HOFFMANN = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
CHINCHILLA_EPOCH = dict(E=1.817, A=482.0, B=2085.0, alpha=0.348, beta=0.366)
CHINCHILLA_EPOCH_CI = dict(E=(1.769, 1.871), A=(285.0, 744.0), B=(1042.0, 5810.0),
                           alpha=(0.317, 0.373), beta=(0.331, 0.415))
# Hoffmann et al.'s grid of starts: α, β ∈ 0..2 by 0.5; e ∈ −1..1 by 0.5; a, b ∈ 0..25 by 5.
CHINCHILLA_GRID = dict(a=np.arange(0.0, 26.0, 5.0), b=np.arange(0.0, 26.0, 5.0), e=np.arange(-1.0, 1.01, 0.5),
                       alpha=np.arange(0.0, 2.01, 0.5), beta=np.arange(0.0, 2.01, 0.5))
EXPONENT_RANGE = (0.0, 2.0)     # plausible exponents of a loss term; outside it a term is not identified
EXPONENT_CI_WIDTH = 0.5         # an exponent interval wider than this cannot tell 0.44 from 0, or 0.5 from 0.73
SPAN_LIMIT = 100.0              # an interval whose ends differ by more than this factor spans orders of magnitude
CORRELATION_LIMIT = 0.999       # bootstrap correlation between parameters beyond which they trade off
REMEDY = {"N": "widen the range of model sizes N at fixed tokens (≥ 10× in N)",
          "T": "widen the range of tokens at fixed N (several budgets per size, ≥ 10×)",
          "E": "add runs nearer convergence (more tokens per parameter) so the loss floor shows",
          "D": "add depths beyond the critical depth at every width, and ≥ 3 widths spanning ≥ 4×"}


@dataclass(kw_only=True, repr=False)
class LawFit(Fit):
    law: str = ""
    theta: np.ndarray | None = None           # the optimiser's parameters (log-parametrised)
    objective: float = math.nan
    starts_at_best: int = 0
    derived: dict = field(default_factory=dict)       # e.g. N_opt ∝ C^a exponents, fitted D_crit per width
    derived_ci: dict = field(default_factory=dict)
    exponent_ci_widths: dict = field(default_factory=dict)   # each exponent's interval width (health reads them)


# ---------------------------------------------------------------------------------------------
# Shared machinery: grid → L-BFGS → bootstrap, and the health check
# ---------------------------------------------------------------------------------------------

def _health(est, ci, *, exponents, signed, scales, centred, polished, loss_min) -> list[str]:
    """Plain reasons a fit is not identified (empty when it is) — identification only, never agreement
    with a paper. `exponents` / `signed` / `scales` map a parameter to the data dimension it depends on
    ('N', 'T', 'E', 'D'): a loss term's exponent (α, β, δ) must be positive (at ≤ 0 its term is a
    constant that trades off with the others) and below 2, a `signed` one (γ: D_crit may shrink with
    width) may take any sign; every exponent's interval must be at most EXPONENT_CI_WIDTH wide.
    `centred` is a frame of bootstrap draws in a parametrisation without built-in trade-offs (term
    values at the data's centre, exponents); `polished` the (parameters, objective) of the multi-start
    optima in that parametrisation."""
    reasons = []
    for name, dim in {**exponents, **signed}.items():
        v, (lo, hi) = est[name], ci.get(name, (math.nan, math.nan))
        if name in exponents and not EXPONENT_RANGE[0] < v < EXPONENT_RANGE[1]:
            reasons.append(f"{name} = {fmt(v)} lies outside {EXPONENT_RANGE}, where its term is not separable from "
                           f"the others: {REMEDY[dim]}")
        elif np.isfinite(hi - lo) and hi - lo > EXPONENT_CI_WIDTH:
            reasons.append(f"{name}'s interval {fmt_ci((lo, hi))} is {hi - lo:.2f} wide, more than "
                           f"{EXPONENT_CI_WIDTH:g}: {REMEDY[dim]}")
    for name, dim in scales.items():
        lo, hi = ci.get(name, (math.nan, math.nan))
        if np.isfinite(lo) and np.isfinite(hi) and (lo <= 0 or hi / lo > SPAN_LIMIT):
            reasons.append(f"{name}'s interval {fmt_ci((lo, hi))} spans orders of magnitude: {REMEDY[dim]}")
    if "E" in est and not 0 < est["E"] < loss_min:
        reasons.append(f"E = {fmt(est['E'])} is not between 0 and the lowest loss ({fmt(loss_min)}): {REMEDY['E']}")
    params, objective = polished
    tied = objective <= objective.min() + 1e-6 * max(1.0, abs(objective.min()))
    if tied.sum() > 1 and np.ptp(params[tied], axis=0).max() > 0.05:
        reasons.append(f"{int(tied.sum())} starts reach the same loss at different parameters (spread up to "
                       f"{np.ptp(params[tied], axis=0).max():.2g}): the optimum is a ridge, not a point")
    if centred is not None and len(centred) > 10:
        corr = np.corrcoef(centred.to_numpy().T)
        i, j = np.triu_indices_from(corr, 1)
        worst = np.nanargmax(np.abs(corr[i, j])) if len(i) else None
        if worst is not None and abs(corr[i[worst], j[worst]]) > CORRELATION_LIMIT:
            a, b = centred.columns[i[worst]], centred.columns[j[worst]]
            reasons.append(f"{a} and {b} move together across resamples (r = {corr[i[worst], j[worst]]:.4f}): the "
                           "data fix only a combination of them")
    return reasons


def _multistart(log_pred_vjp, log_l, starts, huber_delta, n_rough, n_polish, folds=None):
    """Grid of starts → L-BFGS: every start (only the `n_rough` most promising when given) run roughly,
    the `n_polish` best to full convergence. `folds` (k, points): k problems at once, each with its own
    point weights (a cross-validation fold: 0 for held-out points) and every one from the same grid, so
    no fold starts from an optimum that saw its held-out points. Returns xs (k, n_polish, p) and
    fs (k, n_polish); k = 1 without folds."""
    folds = np.ones((1, len(log_l))) if folds is None else folds
    k, (n_starts, p) = len(folds), starts.shape

    def solve(x, fold_of_row, **kw):
        return lbfgs_batch(huber_objective(log_pred_vjp, log_l, folds[fold_of_row], huber_delta), x, **kw)

    pick = np.tile(np.arange(n_starts), (k, 1))
    if n_rough is not None and n_starts > n_rough:     # evaluate every start on every fold, keep the most promising
        chunks = np.array_split(starts, max(1, n_starts // 2000))
        h = np.concatenate([huber_terms(log_pred_vjp(c)[0], log_l, huber_delta)[0] for c in chunks])
        f0 = np.where(np.isfinite(h), h, 1e300) @ folds.T                   # (starts, folds)
        pick = np.argsort(f0.T, axis=1)[:, :n_rough]
    owner = np.repeat(np.arange(k), pick.shape[1])
    xs, fs = solve(starts[pick.ravel()], owner, ftol=1e-5, gtol=1e-3, max_iter=500)   # roughly, then the best fully
    keep = np.argsort(fs.reshape(k, -1), axis=1)[:, :n_polish]
    xs = xs.reshape(k, -1, p)[np.arange(k)[:, None], keep].reshape(-1, p)
    xs, fs = solve(xs, np.repeat(np.arange(k), keep.shape[1]), max_iter=2000)
    return xs.reshape(k, -1, p), fs.reshape(k, -1)


def _fit_law(log_pred_vjp, L, starts, to_frame, centred, *, columns, design, exponents, signed, scales, huber_delta,
             n_rough, n_polish, n_boot, level, random_state, **fields) -> LawFit:
    """Either law: grid of starts → L-BFGS (`_multistart`) → `n_boot` bootstrap refits from the best → health.

    The `n_polish` optima feed the multi-start check. `to_frame` maps optimiser rows to the named
    parameters, `centred` to the trade-off-free parametrisation `_health` reads; `design` lists (distinct
    values, needed, what, why, dimension) of the data's design, `columns` the data frame (a `fitted` column
    is added), `fields` the law's own."""
    log_l = np.log(L)
    xs, fs = (a[0] for a in _multistart(log_pred_vjp, log_l, starts, huber_delta, n_rough, n_polish))
    theta = xs[int(np.nanargmin(fs))]
    boot = np.empty((0, len(theta)))
    if n_boot:
        weights = bootstrap_weights(len(log_l), n_boot, np.random.default_rng(random_state))
        xb, fb = lbfgs_batch(huber_objective(log_pred_vjp, log_l, weights, huber_delta),
                             np.repeat(theta[None], n_boot, axis=0), max_iter=2000)
        boot = xb[np.isfinite(fb) & np.isfinite(xb).all(axis=1)]
    est = {k: float(v) for k, v in to_frame(theta[None]).iloc[0].items()}
    samples = to_frame(boot) if len(boot) else None
    ci = {k: percentile_ci(samples[k], level) if samples is not None else (math.nan, math.nan) for k in est}
    health = [f"only {k} distinct {what}: {why} — {REMEDY[dim]}" for k, need, what, why, dim in design if k < need]
    health += _health(est, ci, exponents=exponents, signed=signed, scales=scales, loss_min=float(L.min()),
                      centred=centred(boot) if len(boot) else None, polished=(centred(xs).to_numpy(), fs))
    log_pred = log_pred_vjp(theta[None])[0][0]
    widths = {k: ci[k][1] - ci[k][0] for k in {**exponents, **signed}}
    return LawFit(params=est, ci=ci, n_points=len(L), level=level, r2=r2(L, np.exp(log_pred)), exponent_ci_widths=widths,
                  residuals=log_l - log_pred, n_boot=len(boot), identified=not health, health=health,
                  data=pd.DataFrame({**columns, "fitted": np.exp(log_pred)}), samples=samples, theta=theta,
                  objective=float(fs.min()) * huber_delta, starts_at_best=int(np.sum(fs <= fs.min() + 1e-6)), **fields)


def _shown(est, ci, n_boot):
    return "; ".join(f"{k} = {fmt(v)}" + (f" ({fmt_ci(ci[k])})" if n_boot else "") for k, v in est.items())


def health_sentence(r) -> str:
    if r.identified:
        widths = ", ".join(f"{k} {v:.2f}" for k, v in r.exponent_ci_widths.items() if np.isfinite(v))
        return (f"Fit health: identified (exponent intervals {widths} wide, at most {EXPONENT_CI_WIDTH:g} allowed; "
                "scales bounded, one optimum, no trade-off)." if widths else
                "Fit health: identified (no intervals without a bootstrap; one optimum, no trade-off).")
    return "**Not identified** — " + "; ".join(r.health) + ". Its numbers are not estimates of anything and are not compared with any paper."


# ---------------------------------------------------------------------------------------------
# The Chinchilla form
# ---------------------------------------------------------------------------------------------

def _chinchilla_log_pred(log_n, log_t):
    """log L̂ = LSE(a − α·ln N, b − β·ln T, e) for rows (a, b, e, α, β), and ψ ↦ Σᵢ ψᵢ·∂ log L̂ᵢ/∂θ."""
    def log_pred_vjp(X):
        a, b, e, alpha, beta = (X[:, i:i + 1] for i in range(5))
        u1, u2 = a - alpha * log_n, b - beta * log_t
        m = np.maximum(np.maximum(u1, u2), e)
        w1, w2, w3 = np.exp(u1 - m), np.exp(u2 - m), np.exp(e - m)
        total = w1 + w2 + w3

        def vjp(psi):
            p = psi / total                      # the softmax weights are ∂ log L̂/∂(a, b, e)
            g1, g2 = p * w1, p * w2
            return np.stack([g1.sum(1), g2.sum(1), (p * w3).sum(1), -(g1 @ log_n), -(g2 @ log_t)], axis=1)
        return m + np.log(total), vjp
    return log_pred_vjp


def _chinchilla_params(X):
    return pd.DataFrame({"E": np.exp(X[:, 2]), "A": np.exp(X[:, 0]), "B": np.exp(X[:, 1]),
                         "alpha": X[:, 3], "beta": X[:, 4]})


def _chinchilla_centred(X, log_n, log_t):
    """Parameters without the built-in A–α and B–β trade-offs: each term's log value at the data's
    centre, the exponents, and log E."""
    n0, t0 = log_n.mean(), log_t.mean()
    return pd.DataFrame({"log E": X[:, 2], "N term": X[:, 0] - X[:, 3] * n0, "alpha": X[:, 3],
                         "T term": X[:, 1] - X[:, 4] * t0, "beta": X[:, 4]})


def _chinchilla_starts(g) -> np.ndarray:
    """Every point of a grid of starts (a, b, e, α, β) — Hoffmann et al.'s by default."""
    return np.array(list(itertools.product(g["a"], g["b"], g["e"], g["alpha"], g["beta"])), float)


def read_epoch_points(path, *, exclude_highest=5) -> pd.DataFrame:
    """Epoch AI's points digitised from Chinchilla's Figure 4 (columns `Model Size`, `Training FLOP`,
    `loss`) as params, tokens (= FLOP / 6N), flops, loss — minus the points at or above the
    `exclude_highest`-th highest loss, as Epoch did."""
    raw = pd.read_csv(path)
    for col in ("Model Size", "Training FLOP", "loss"):
        if col not in raw.columns:
            raise ValueError(f"{path} has no column {col!r}")
    frame = pd.DataFrame({"params": raw["Model Size"].astype(float), "flops": raw["Training FLOP"].astype(float),
                          "loss": raw["loss"].astype(float)}).dropna()
    frame["tokens"] = frame["flops"] / (6.0 * frame["params"])
    if exclude_highest:
        frame = frame[frame["loss"] < np.sort(frame["loss"].to_numpy())[-exclude_highest]]
    return frame[["params", "tokens", "flops", "loss"]].reset_index(drop=True)


def fit_chinchilla(params, tokens, losses, *, n_boot=1000, huber_delta=1e-3, level=0.95, random_state=0,
                   grid=None, n_polish=50) -> LawFit:
    """L(N, T) = E + A/N^α + B/T^β, fitted as Hoffmann et al. and Epoch AI did: Huber(δ) on
    LSE(a − α·ln N, b − β·ln T, e) − ln L with E = e^e, A = e^a, B = e^b, L-BFGS from every point of
    Hoffmann's grid (4500 starts in one batch) run roughly, the `n_polish` best to full convergence
    (on Epoch's data the same optimum to 1e-11 as polishing all; `bench/fit_bench.py`). Intervals:
    `n_boot` resamples of the points refitted from the optimum. `derived`: N_opt ∝ C^(β/(α+β)) and
    T_opt ∝ C^(α/(α+β)) (C = 6NT). Residuals in log space; R² on the loss scale."""
    check_level(level)
    N, T, L = (as_array(n, v, positive=True) for n, v in (("params", params), ("tokens", tokens), ("losses", losses)))
    same_length(params=N, tokens=T, losses=L)
    if len(L) < 10:
        raise ValueError(f"need at least 10 points to fit 5 parameters, got {len(L)}")
    not_constant("losses", L)
    design = [(len(np.unique(N)), 3, "model size(s)", "the N term cannot be separated from the others", "N"),
              (len(np.unique(T)), 3, "token count(s)", "the T term cannot be separated from the others", "T")]
    log_n, log_t = np.log(N), np.log(T)
    starts = _chinchilla_starts(CHINCHILLA_GRID if grid is None else grid)
    result = _fit_law(_chinchilla_log_pred(log_n, log_t), L, starts, _chinchilla_params,
                      lambda X: _chinchilla_centred(X, log_n, log_t), design=design,
                      columns={"params": N, "tokens": T, "flops": 6 * N * T, "loss": L},
                      exponents=dict(alpha="N", beta="T"), signed={}, scales=dict(E="E", A="N", B="T"), huber_delta=huber_delta,
                      n_rough=None, n_polish=n_polish, n_boot=n_boot, level=level, random_state=random_state,
                      kind="chinchilla", law="E + A/N^α + B/T^β")
    est, ci, samples = result.params, result.ci, result.samples
    a_exp = est["beta"] / (est["alpha"] + est["beta"])
    result.derived = dict(n_opt_exponent=a_exp, t_opt_exponent=1 - a_exp)
    if samples is not None:
        total = samples.alpha + samples.beta
        result.derived_ci = dict(n_opt_exponent=percentile_ci(samples.beta / total, level),
                                 t_opt_exponent=percentile_ci(samples.alpha / total, level))
    result.curve = chinchilla_curves(result)
    shown_ci = lambda k: f" ({level:.0%} CI {fmt_ci(result.derived_ci[k])})" if k in result.derived_ci else ""
    optimum = (f" Compute-optimal allocation with C = 6NT: N_opt ∝ C^{a_exp:.3f}{shown_ci('n_opt_exponent')}, "
               f"T_opt ∝ C^{1 - a_exp:.3f}{shown_ci('t_opt_exponent')}." if result.identified else "")
    result.text = (f"Chinchilla-form fit to {len(L)} points (Huber δ = {huber_delta:g} on log loss, {len(starts)} grid "
                   f"starts, the best {n_polish} polished, {result.starts_at_best} reach the best optimum): "
                   f"{_shown(est, ci, result.n_boot)}; R² = {result.r2:.3f}.{optimum} {health_sentence(result)}")
    return result


def chinchilla_loss(result: LawFit, params, tokens) -> np.ndarray:
    """L(N, T) = E + A/N^α + B/T^β from a `fit_chinchilla` result (or any dict with those keys)."""
    p = result.params if isinstance(result, Fit) else result
    N, T = np.asarray(params, float), np.asarray(tokens, float)
    return p["E"] + p["A"] / N ** p["alpha"] + p["B"] / T ** p["beta"]


def chinchilla_curves(result: LawFit, n_budgets=6) -> pd.DataFrame:
    """The fitted law along isoFLOP lines (T = C/6N) with bootstrap bands, for charts: one line per
    budget group of the data (≤ 12 groups of ≥ 3 points within 25% in C), else `n_budgets` budgets
    spread over the data, each over the sizes of the points within a factor 2 of it."""
    N, C = result.data["params"].to_numpy(), result.data["flops"].to_numpy()
    order = np.argsort(C)
    labels = np.cumsum(np.r_[0, np.diff(np.log(C[order])) > math.log(1.25)])[np.argsort(order)]
    groups = [np.flatnonzero(labels == g) for g in np.unique(labels)]
    if len(groups) <= 12 and min(len(g) for g in groups) >= 3:
        spans = [(float(np.exp(np.log(C[g]).mean())), N[g].min() / 1.2, N[g].max() * 1.2) for g in groups]
    else:
        spans = []
        for c in np.exp(np.quantile(np.log(C), np.linspace(0.05, 0.95, n_budgets))):
            near = np.abs(np.log(C / c)) < math.log(2)
            near = near if near.sum() >= 2 else np.ones_like(near)
            spans.append((float(c), N[near].min() / 1.2, N[near].max() * 1.2))
    rows = []
    for c, lo, hi in spans:
        n = np.exp(np.linspace(np.log(lo), np.log(hi), 60))
        t = c / (6 * n)
        frame = pd.DataFrame({"flops": c, "params": n, "tokens": t, "loss": chinchilla_loss(result, n, t)})
        if result.samples is not None and len(result.samples):
            s = result.samples
            draws = np.stack([chinchilla_loss(dict(row), n, t) for _, row in s.iterrows()])
            frame["low"], frame["high"] = percentile_band(draws, result.level)
        rows.append(frame)
    return pd.concat(rows, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# The Depth Delusion ansatz
# ---------------------------------------------------------------------------------------------

DCRIT_FORMS = ("power", "log")


def _dd_names(form, irreducible):
    return ["a", "b", "alpha", "delta", "log_c", "log_kappa"] + (["gamma"] if form == "power" else []) + \
        (["e"] if irreducible else [])


def _dd_log_pred(log_d, log_w, log_t, form, irreducible):
    """log L̂ and its vector-Jacobian product for rows (a, b, α, δ, ln c, ln κ, [γ], [e]):
    L̂ = e^(a − α ln N) + e^(b − δ ln T) + c·h² [+ e^e], h = max(0, ln D − ln D_crit(W)),
    ln D_crit = ln κ + γ ln W (power) or ln κ + ln ln W (log)."""
    log_n = math.log(12.0) + log_d + 2 * log_w
    power = form == "power"

    def log_pred_vjp(X):
        a, b, alpha, delta, log_c, log_kappa = (X[:, i][:, None] for i in range(6))
        gamma = X[:, 6][:, None] if power else None
        log_dcrit = log_kappa + (gamma * log_w if power else np.log(log_w))
        h = np.maximum(0.0, log_d - log_dcrit)
        with np.errstate(divide="ignore"):
            log_phi = np.where(h > 0, log_c + 2 * np.log(np.where(h > 0, h, 1.0)), -np.inf)
        u1, u2 = a - alpha * log_n, b - delta * log_t
        terms = [u1, u2, log_phi] + ([np.broadcast_to(X[:, -1][:, None], u1.shape)] if irreducible else [])
        m = np.maximum.reduce(terms)
        w = [np.exp(t - m) for t in terms]
        total = sum(w)
        log_pred = m + np.log(total)
        d_log_kappa = -2.0 * h * np.exp(log_c - log_pred)       # ∂ ln L̂ / ∂ ln κ (zero where h = 0)

        def vjp(psi):
            g1, g2, gk = psi * w[0] / total, psi * w[1] / total, psi * d_log_kappa
            cols = [g1.sum(1), g2.sum(1), -(g1 @ log_n), -(g2 @ log_t), (psi * w[2] / total).sum(1), gk.sum(1)]
            cols += [gk @ log_w] if power else []
            cols += [(psi * w[3] / total).sum(1)] if irreducible else []
            return np.stack(cols, axis=1)
        return log_pred, vjp
    return log_pred_vjp


def _dd_params(X, form, irreducible):
    col = dict(zip(_dd_names(form, irreducible), X.T))
    out = {"A": np.exp(col["a"]), "alpha": col["alpha"], "B": np.exp(col["b"]), "delta": col["delta"],
           "c": np.exp(col["log_c"]), "kappa": np.exp(col["log_kappa"])}
    out.update({"gamma": col["gamma"]} if form == "power" else {})
    out.update({"E": np.exp(col["e"])} if irreducible else {})
    return pd.DataFrame(out)


def _dd_centred(X, names, log_d, log_w, log_t) -> pd.DataFrame:
    """The ansatz's parameters without built-in trade-offs (see `_chinchilla_centred`): each term's log
    value at the data's centre, the exponents, ln c and ln D_crit at the mean width."""
    col = dict(zip(names, X.T))
    log_n0 = math.log(12.0) + float(np.mean(log_d + 2 * log_w))
    out = {"N term": col["a"] - col["alpha"] * log_n0, "alpha": col["alpha"],
           "T term": col["b"] - col["delta"] * log_t.mean(), "delta": col["delta"], "log c": col["log_c"],
           "log D_crit": col["log_kappa"] + (col["gamma"] * log_w.mean() if "gamma" in col else 0.0)}
    return pd.DataFrame({**out, **({"gamma": col["gamma"]} if "gamma" in col else {})})


def d_crit(params: dict, width, form="power"):
    """D_crit(W) = κ·W^γ (power) or κ·ln W (log) from a parameter dict."""
    width = np.asarray(width, float)
    return params["kappa"] * (width ** params["gamma"] if form == "power" else np.log(width))


def law_d_star(params: dict, width, form="power"):
    """The depth where the ansatz's loss is lowest at width W (the same at every token count: the T term
    does not depend on D) — beyond D_crit, where the penalty's rise 2c·ln(D/D_crit) per e-fold of depth
    meets the N term's fall α·A·N^−α. D_crit is where the penalty *starts*; this is where the loss
    *turns up*, the depth the paper calls critical ("adding layers beyond it raises the loss"). Infinite
    when c = 0. Parameters may be arrays (bootstrap rows) broadcasting against `width`."""
    p = {k: np.asarray(v, float) for k, v in params.items()}
    width = np.asarray(width, float)
    log_dc = np.log(d_crit(p, width, form))
    fall = np.maximum(p["alpha"], 0.0) * p["A"] * (12.0 * width ** 2) ** -p["alpha"]   # × D^−α: per e-fold of D
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        lo, hi = log_dc, log_dc + fall * np.exp(-p["alpha"] * log_dc) / (2 * p["c"])   # the rise beats the fall at hi
        for _ in range(60):                                                           # bisection in ln D
            mid = (lo + hi) / 2
            up = 2 * p["c"] * (mid - log_dc) >= fall * np.exp(-p["alpha"] * mid)
            lo, hi = np.where(up, lo, mid), np.where(up, mid, hi)
        return np.where(p["c"] > 0, np.exp((lo + hi) / 2), np.inf)


def depth_width_loss(params: dict, depths, widths, tokens, form="power") -> np.ndarray:
    """The ansatz at (D, W, T) for a parameter dict (`result.params`, or one bootstrap row)."""
    D, W, T = (np.asarray(v, float) for v in (depths, widths, tokens))
    h = np.maximum(0.0, np.log(D / d_crit(params, W, form)))
    return (params["A"] * (12.0 * D * W ** 2) ** -params["alpha"] + params["B"] * T ** -params["delta"]
            + params["c"] * h ** 2 + params.get("E", 0.0))


def _dd_starts(log_d, log_w, form):
    """Grid of starts: a, b ∈ 0..20 by 5; α, δ ∈ {0.1, 0.3, 0.6, 1}; c ∈ {0.01, 0.1, 1}; γ ∈ {−0.2, 0.2,
    0.6} (either sign: D_crit may shrink with width); D_crit at the median width placed at the quartiles of
    the depths tried."""
    w_med = float(np.median(log_w))
    rows = []
    for a, b, alpha, delta, log_c, target, gamma in itertools.product(
            np.arange(0.0, 21.0, 5.0), np.arange(0.0, 21.0, 5.0), [0.1, 0.3, 0.6, 1.0], [0.1, 0.3, 0.6, 1.0],
            np.log([0.01, 0.1, 1.0]), np.quantile(log_d, [0.25, 0.5, 0.75]), [-0.2, 0.2, 0.6] if form == "power" else [None]):
        log_kappa = target - (gamma * w_med if gamma is not None else math.log(w_med))
        rows.append([a, b, alpha, delta, log_c, log_kappa] + ([gamma] if gamma is not None else []))
    return np.array(rows)


def fit_depth_width_law(depths, widths, tokens, losses, *, dcrit_form="power", irreducible=False, n_boot=300,
                        huber_delta=1e-3, level=0.95, random_state=0, n_polish=64) -> LawFit:
    """The Depth Delusion ansatz L(D, W, T) = A·N^−α + B·T^−δ + Φ(D, W) [+ E], N = 12·D·W².

    Depth penalty Φ = c·max(0, ln(D/D_crit(W)))², D_crit = κ·W^γ ('power') or κ·ln W ('log'): zero up to
    D_crit (the paper's claim: depth is free until then, harmful beyond), growing with the ratio D/D_crit,
    and smooth (the squared hinge lets L-BFGS move D_crit). D_crit marks where the penalty *starts*;
    the loss is lowest further out, at D* (`law_d_star`), and D* is what the paper's 2.43·ln W is compared
    with (the paper's critical depth is where extra layers start to raise the loss). γ may take any sign:
    γ ≤ 0 (a critical depth that does not grow with width) is a finding, reported with its interval. The
    paper did not publish its Φ; `irreducible=True` adds a constant E, which its form lacks. Fitted like
    the Chinchilla form (grid of starts, the `n_polish` most promising run roughly, the best eighth to
    convergence), intervals from `n_boot` resampled refits. `derived['d_crit']` and `derived['d_star']`:
    both depths at each width, `derived_ci` their intervals. Health is identification only: the checks
    of `_health`, a D_crit outside the depths tried by more than a factor 3, a penalty below the noise."""
    check_level(level)
    if dcrit_form not in DCRIT_FORMS:
        raise ValueError(f"dcrit_form must be 'power' or 'log', got {dcrit_form!r}")
    D, W, T, L = (as_array(n, v, positive=True) for n, v in
                  (("depths", depths), ("widths", widths), ("tokens", tokens), ("losses", losses)))
    same_length(depths=D, widths=W, tokens=T, losses=L)
    names = _dd_names(dcrit_form, irreducible)
    if len(L) < 2 * len(names):
        raise ValueError(f"need at least {2 * len(names)} runs to fit {len(names)} parameters, got {len(L)}")
    not_constant("losses", L)
    design = [(len(np.unique(D)), 3, "depth(s)", "a critical depth cannot be located", "D"),
              (len(np.unique(W)), 2, "width(s)", "how D_crit moves with W cannot be fitted", "D"),
              (len(np.unique(T)), 2 + irreducible, "token count(s)", "the T term cannot be separated", "T")]
    if dcrit_form == "log" and (W <= math.e).any():
        raise ValueError("dcrit_form='log' needs widths above e (ln W > 1)")
    log_d, log_w, log_t, log_l = np.log(D), np.log(W), np.log(T), np.log(L)
    starts = _dd_starts(log_d, log_w, dcrit_form)
    if irreducible:   # E starts below the smallest loss
        starts = np.concatenate([np.column_stack([starts, np.full(len(starts), e)])
                                 for e in np.log(L.min()) + np.log([0.3, 0.6, 0.9])])
    result = _fit_law(_dd_log_pred(log_d, log_w, log_t, dcrit_form, irreducible), L, starts,
                      lambda X: _dd_params(X, dcrit_form, irreducible),
                      lambda X: _dd_centred(X, names, log_d, log_w, log_t), design=design,
                      columns={"depth": D, "width": W, "tokens": T, "params": 12 * D * W ** 2, "loss": L},
                      exponents={"alpha": "N", "delta": "T"}, signed={"gamma": "D"} if dcrit_form == "power" else {},
                      scales={"c": "D", "kappa": "D", **({"E": "E"} if irreducible else {})}, huber_delta=huber_delta,
                      n_rough=n_polish, n_polish=max(1, n_polish // 8), n_boot=n_boot, level=level,
                      random_state=random_state, kind="depth_width_law", law=dcrit_form)
    est, ci, samples, health = result.params, result.ci, result.samples, result.health
    crit = {float(w): float(d_crit(est, w, dcrit_form)) for w in np.unique(W)}
    for w, v in crit.items():
        if not D.min() / 3 <= v <= D.max() * 3:
            health.append(f"D_crit = {fmt(v)} at W = {w:g} lies outside the depths tried ({fmt(D.min())}–{fmt(D.max())}) "
                          f"by more than a factor 3: {REMEDY['D']}")
    penalty = est["c"] * np.maximum(0.0, np.log(D / d_crit(est, W, dcrit_form))) ** 2
    noise = float(np.std(result.residuals) * np.exp(log_l).mean())
    if penalty.max() < 2 * noise:
        health.append(f"the fitted depth penalty is at most {penalty.max():.2g} nats at the depths tried, no larger "
                      f"than the noise ({noise:.2g}): no critical depth shows in range — {REMEDY['D']}")
    result.identified = not health
    widths = np.unique(W)
    result.derived = dict(d_crit=crit, d_star={float(w): float(law_d_star(est, w, dcrit_form)) for w in widths})
    if samples is not None:
        draws = np.stack([depth_width_loss(dict(row), D, W, T, dcrit_form) for _, row in samples.iterrows()])
        result.data["low"], result.data["high"] = percentile_band(draws, level)
        cols = {k: samples[k].to_numpy()[:, None] for k in samples.columns}
        for key, draws in (("d_crit", d_crit(cols, widths[None], dcrit_form)),
                           ("d_star", law_d_star(cols, widths[None], dcrit_form))):
            result.derived_ci[key] = {float(w): percentile_ci(draws[:, i], level) for i, w in enumerate(widths)}
    result.text = _depth_width_text(result, D, W, irreducible, dcrit_form)
    return result


def _depth_width_text(r, D, W, irreducible, form) -> str:
    """The depth–width law's summary. Two depths per width, named apart: D_crit, where the fitted penalty
    starts, and D*, where the fitted loss is lowest; the paper's 2.43·ln W is set beside D* (the paper's
    critical depth is the depth beyond which adding layers raises the loss), and only when identified."""
    est, ci = r.params, r.ci

    def per_width(key):
        shown = []
        for w, v in r.derived[key].items():
            band = r.derived_ci.get(key, {}).get(w)
            shown.append(f"{fmt(v)}" + (f" ({fmt_ci(band)})" if band else "") + f" at W = {w:g}")
        return ", ".join(shown)

    text = (f"Depth–width law fitted to {len(D)} runs ({len(np.unique(D))} depths, {len(np.unique(W))} widths): "
            f"L = A·N^−α + B·T^−δ + c·max(0, ln(D/D_crit))²{' + E' if irreducible else ''}, D_crit = "
            f"{'κ·W^γ' if form == 'power' else 'κ·ln W'}. {_shown(est, ci, r.n_boot)}; R² = {r.r2:.3f}. "
            f"Penalty onset D_crit: {per_width('d_crit')}; loss-minimising depth D* of the law: {per_width('d_star')}.")
    if not r.identified:
        return f"{text} {health_sentence(r)}"
    if form == "power" and "gamma" in ci and all(np.isfinite(ci["gamma"])):
        lo, hi = ci["gamma"]
        text += (f" γ = {est['gamma']:.3f} ({r.level:.0%} CI {lo:.3f} to {hi:.3f}): "
                 + ("the critical depth **grows** with width" if lo > 0 else
                    "the critical depth **shrinks** with width" if hi < 0 else
                    "no measurable change of the critical depth with width")
                 + f" (the paper claims γ ≈ 0.44).")
    paper = {w: paper_critical_depth(w) for w in r.derived["d_star"]}
    band = r.derived_ci.get("d_star", {})
    graded = "; ".join(f"{v:.1f} at W = {w:g}" + (f" ({'inside' if band[w][0] <= v <= band[w][1] else 'outside'} our "
                                                   "D* interval)" if w in band else "") for w, v in paper.items())
    return (f"{text} The paper's critical depth is where adding layers starts to raise the loss — the law's D*, "
            f"not its penalty onset D_crit — and its 2.43·ln W gives {graded}. {health_sentence(r)}")


# ---------------------------------------------------------------------------------------------
# Does knowing the shape help? Out of sample, over whole shapes
# ---------------------------------------------------------------------------------------------

CV_ROUGH = 32       # compare_laws: starts per fold run roughly (on the planted law they reach every fold's
                    # optimum, warm-started from the full-data fit, to 1e-12: bench/fit_planted.py)


def compare_laws(depths, widths, tokens, losses, *, params=None, huber_delta=1e-3) -> pd.DataFrame:
    """Leave-one-shape-out cross-validation of the shape-blind Chinchilla form (in N = `params`, default
    12·D·W²) against the shape-aware depth–width law: each fold leaves out every run of one (D, W) shape,
    refits both laws on the rest from scratch — the law's own grid of starts, the `CV_ROUGH` most
    promising on that fold's runs run roughly, the best 4 to convergence; never from an optimum that saw
    the held-out shape — and predicts the held-out runs. Returns one row per law: law, cv_error (mean
    over shapes of the squared error of ln L on held-out runs), n_shapes, n_params, in_sample_r2,
    identified (of the full-data fit), and for the shape-aware law `p_better`: one-sided, that its
    held-out error is lower, from the paired differences over shapes with the variance corrected for
    the folds' overlapping training sets (Nadeau & Bengio 2003: the folds are not independent, so a
    plain paired t-test is too eager; the correction is itself approximate and errs conservative).
    `table.attrs`: `per_shape` (depth, width, each law's held-out error) and `predictions` (each run's
    held-out prediction of ln L by each law). Never judged by in-sample R²."""
    D, W, T, L = (as_array(n, v, positive=True) for n, v in
                  (("depths", depths), ("widths", widths), ("tokens", tokens), ("losses", losses)))
    N = 12 * D * W ** 2 if params is None else as_array("params", params, positive=True)
    shapes = pd.factorize(pd.Series(list(zip(D, W))))[0]
    n_shapes = shapes.max() + 1
    if n_shapes < 4:
        raise ValueError(f"need at least 4 distinct shapes to leave shapes out, got {n_shapes}")
    log_l = np.log(L)
    folds = (shapes[None] != np.arange(n_shapes)[:, None]).astype(float)     # fold s: every shape but s
    per_shape = pd.DataFrame({"depth": [D[shapes == s][0] for s in range(n_shapes)],
                              "width": [W[shapes == s][0] for s in range(n_shapes)]})
    predictions = pd.DataFrame({"depth": D, "width": W, "tokens": T, "log_loss": log_l})
    rows = []
    for name, fitted, log_pred_vjp, starts in (
            ("Chinchilla form (shape-blind)", fit_chinchilla(N, T, L, n_boot=0, huber_delta=huber_delta),
             _chinchilla_log_pred(np.log(N), np.log(T)), _chinchilla_starts(CHINCHILLA_GRID)),
            ("depth–width law (shape-aware)", fit_depth_width_law(D, W, T, L, n_boot=0, huber_delta=huber_delta),
             _dd_log_pred(np.log(D), np.log(W), np.log(T), "power", False), _dd_starts(np.log(D), np.log(W), "power"))):
        xs, fs = _multistart(log_pred_vjp, log_l, starts, huber_delta, CV_ROUGH, 4, folds=folds)
        best = xs[np.arange(n_shapes), np.argmin(np.where(np.isfinite(fs), fs, np.inf), axis=1)]
        held = log_pred_vjp(best)[0][shapes, np.arange(len(L))]   # each run predicted by the fold without its shape
        predictions[name] = held
        per_shape[name] = np.bincount(shapes, (held - log_l) ** 2) / np.bincount(shapes)
        rows.append(dict(law=name, cv_error=float(per_shape[name].mean()), n_shapes=n_shapes,
                         n_params=len(fitted.theta), in_sample_r2=fitted.r2, identified=fitted.identified))
    gain = (per_shape[rows[0]["law"]] - per_shape[rows[1]["law"]]).to_numpy()   # > 0: the shape-aware law is better
    se = math.sqrt((1 / n_shapes + 1 / (n_shapes - 1)) * np.var(gain, ddof=1))  # Nadeau–Bengio, leave-one-out
    p = float(stats.t.sf(gain.mean() / se, n_shapes - 1)) if se > 0 else 1.0
    table = pd.DataFrame(rows)
    table["p_better"] = [math.nan, p]
    table.attrs.update(per_shape=per_shape, predictions=predictions)
    return table


def compare_laws_sentence(table: pd.DataFrame) -> str:
    blind, aware = table.iloc[0], table.iloc[1]
    better = aware["p_better"] < 0.05
    return (f"On held-out shapes (leave one of {int(blind['n_shapes'])} shapes out) the mean squared error of ln L is "
            f"{aware['cv_error']:.3g} for the shape-aware law ({int(aware['n_params'])} parameters) and "
            f"{blind['cv_error']:.3g} for the shape-blind Chinchilla form ({int(blind['n_params'])}): "
            + (f"knowing the depth **improves** predictions for shapes the fit has not seen (paired over shapes, "
               f"corrected for overlapping folds: p = {aware['p_better']:.2g})." if better else
               f"knowing the depth **does not measurably improve** predictions for unseen shapes at this scale "
               f"(paired over shapes, corrected for overlapping folds: p = {aware['p_better']:.2g})."))
