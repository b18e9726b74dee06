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
from .stats import (Fit, as_array, bootstrap_weights, check_level, fmt, fmt_ci, huber_objective, lbfgs_batch,
                    not_constant, percentile_band, percentile_ci, r2, same_length)

CHINCHILLA_HOFFMANN = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
CHINCHILLA_EPOCH = dict(E=1.817, A=482.0, B=2085.0, alpha=0.348, beta=0.366)
CHINCHILLA_EPOCH_CI = dict(E=(1.769, 1.871), A=(285.0, 744.0), B=(1042.0, 5810.0),
                           alpha=(0.317, 0.373), beta=(0.331, 0.415))
# Hoffmann et al.'s grid of starts: α, β ∈ 0..2 by 0.5; e ∈ −1..1 by 0.5; a, b ∈ 0..25 by 5.
CHINCHILLA_GRID = dict(a=np.arange(0.0, 26.0, 5.0), b=np.arange(0.0, 26.0, 5.0), e=np.arange(-1.0, 1.01, 0.5),
                       alpha=np.arange(0.0, 2.01, 0.5), beta=np.arange(0.0, 2.01, 0.5))
EXPONENT_RANGE = (0.0, 2.0)     # plausible exponents of a loss law; outside it a term is not identified
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


# ---------------------------------------------------------------------------------------------
# Shared machinery: grid → L-BFGS → bootstrap, and the health check
# ---------------------------------------------------------------------------------------------

def _health(est, ci, *, exponents, scales, centred, polished, loss_min) -> list[str]:
    """Plain reasons a fit is not identified (empty when it is). `exponents` / `scales` map a parameter to
    the data dimension it depends on ('N', 'T', 'E', 'D'); `centred` is a frame of bootstrap draws in a
    parametrisation without built-in trade-offs (term values at the data's centre, exponents);
    `polished` the (parameters, objective) of the multi-start optima in that parametrisation."""
    reasons = []
    for name, dim in exponents.items():
        v, (lo, hi) = est[name], ci.get(name, (math.nan, math.nan))
        if not EXPONENT_RANGE[0] < v < EXPONENT_RANGE[1]:
            reasons.append(f"{name} = {fmt(v)} lies outside the plausible range {EXPONENT_RANGE}: {REMEDY[dim]}")
        elif np.isfinite(hi - lo) and hi - lo > 1.0:
            reasons.append(f"{name}'s interval {fmt_ci((lo, hi))} is wider than 1: {REMEDY[dim]}")
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


def _fit_law(log_pred_vjp, L, starts, to_frame, centred, *, columns, design, exponents, scales, huber_delta,
             n_rough, n_polish, n_boot, level, random_state, **fields) -> LawFit:
    """Either law: grid of starts → L-BFGS → `n_boot` bootstrap refits from the best → health.

    Every start is run roughly (only the `n_rough` most promising when given), the `n_polish` best to full
    convergence; their optima feed the multi-start check. `to_frame` maps optimiser rows to the named
    parameters, `centred` to the trade-off-free parametrisation `_health` reads; `design` lists (distinct
    values, needed, what, why, dimension) of the data's design, `columns` the data frame (a `fitted` column
    is added), `fields` the law's own."""
    log_l = np.log(L)
    fun = huber_objective(log_pred_vjp, log_l, None, huber_delta)
    if n_rough is not None and len(starts) > n_rough:     # evaluate every start, keep the most promising
        f0 = np.concatenate([fun(chunk, None)[0] for chunk in np.array_split(starts, max(1, len(starts) // 2000))])
        starts = starts[np.argsort(f0)[:n_rough]]
    xs, fs = lbfgs_batch(fun, starts, ftol=1e-5, gtol=1e-3, max_iter=500)    # roughly, then the best fully
    keep = np.argsort(fs)[:n_polish]
    xs, fs = lbfgs_batch(fun, xs[keep], max_iter=2000)
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
    health += _health(est, ci, exponents=exponents, scales=scales, loss_min=float(L.min()),
                      centred=centred(boot) if len(boot) else None, polished=(centred(xs).to_numpy(), fs))
    log_pred = log_pred_vjp(theta[None])[0][0]
    return LawFit(params=est, ci=ci, n_points=len(L), level=level, r2=r2(L, np.exp(log_pred)),
                  residuals=log_l - log_pred, n_boot=len(boot), identified=not health, health=health,
                  data=pd.DataFrame({**columns, "fitted": np.exp(log_pred)}), samples=samples, theta=theta,
                  objective=float(fs.min()) * huber_delta, starts_at_best=int(np.sum(fs <= fs.min() + 1e-6)), **fields)


def _shown(est, ci, n_boot):
    return "; ".join(f"{k} = {fmt(v)}" + (f" ({fmt_ci(ci[k])})" if n_boot else "") for k, v in est.items())


def health_sentence(r) -> str:
    if r.identified:
        return "Fit health: identified (exponents plausible, intervals bounded, one optimum, no trade-off)."
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
    g = CHINCHILLA_GRID if grid is None else grid
    starts = np.array(list(itertools.product(g["a"], g["b"], g["e"], g["alpha"], g["beta"])), float)
    result = _fit_law(_chinchilla_log_pred(log_n, log_t), L, starts, _chinchilla_params,
                      lambda X: _chinchilla_centred(X, log_n, log_t), design=design,
                      columns={"params": N, "tokens": T, "flops": 6 * N * T, "loss": L},
                      exponents=dict(alpha="N", beta="T"), scales=dict(E="E", A="N", B="T"), huber_delta=huber_delta,
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
    optimum = (f" Compute-optimal allocation with C = 6NT: N_opt ∝ C^{a_exp:.3f}, T_opt ∝ C^{1 - a_exp:.3f}."
               if result.identified else "")
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


def depth_width_loss(params: dict, depths, widths, tokens, form="power") -> np.ndarray:
    """The ansatz at (D, W, T) for a parameter dict (`result.params`, or one bootstrap row)."""
    D, W, T = (np.asarray(v, float) for v in (depths, widths, tokens))
    h = np.maximum(0.0, np.log(D / d_crit(params, W, form)))
    return (params["A"] * (12.0 * D * W ** 2) ** -params["alpha"] + params["B"] * T ** -params["delta"]
            + params["c"] * h ** 2 + params.get("E", 0.0))


def _dd_starts(log_d, log_w, form):
    """Grid of starts: a, b ∈ 0..20 by 5; α, δ ∈ {0.1, 0.3, 0.6, 1}; c ∈ {0.01, 0.1, 1}; γ ∈ {0.2, 0.45,
    0.7}; D_crit at the median width placed at the quartiles of the depths tried."""
    w_med = float(np.median(log_w))
    rows = []
    for a, b, alpha, delta, log_c, target, gamma in itertools.product(
            np.arange(0.0, 21.0, 5.0), np.arange(0.0, 21.0, 5.0), [0.1, 0.3, 0.6, 1.0], [0.1, 0.3, 0.6, 1.0],
            np.log([0.01, 0.1, 1.0]), np.quantile(log_d, [0.25, 0.5, 0.75]), [0.2, 0.45, 0.7] if form == "power" else [None]):
        log_kappa = target - (gamma * w_med if gamma is not None else math.log(w_med))
        rows.append([a, b, alpha, delta, log_c, log_kappa] + ([gamma] if gamma is not None else []))
    return np.array(rows)


def fit_depth_width_law(depths, widths, tokens, losses, *, dcrit_form="power", irreducible=False, n_boot=300,
                        huber_delta=1e-3, level=0.95, random_state=0, n_polish=64) -> LawFit:
    """The Depth Delusion ansatz L(D, W, T) = A·N^−α + B·T^−δ + Φ(D, W) [+ E], N = 12·D·W².

    Depth penalty Φ = c·max(0, ln(D/D_crit(W)))², D_crit = κ·W^γ ('power') or κ·ln W ('log'): zero up to
    D_crit (the paper's claim: depth is free until then, harmful beyond), growing with the ratio D/D_crit,
    and smooth (the squared hinge lets L-BFGS move D_crit). D_crit marks where the penalty starts. The
    paper did not publish its Φ; `irreducible=True` adds a constant E, which its form lacks. Fitted like
    the Chinchilla form (grid of starts, the `n_polish` most promising run roughly, the best eighth to
    convergence), intervals from `n_boot` resampled refits. `derived['d_crit']`: D_crit at each width.
    The health check also flags a D_crit outside the depths tried by more than a factor 3."""
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
                      exponents={"alpha": "N", "delta": "T", **({"gamma": "D"} if dcrit_form == "power" else {})},
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
    result.derived = dict(d_crit=crit)
    if samples is not None:
        draws = np.stack([depth_width_loss(dict(row), D, W, T, dcrit_form) for _, row in samples.iterrows()])
        result.data["low"], result.data["high"] = percentile_band(draws, level)
    form_txt = "κ·W^γ" if dcrit_form == "power" else "κ·ln W"
    paper = ("; the paper's 2.43·ln W gives " + ", ".join(f"{paper_critical_depth(w):.1f}" for w in crit)
             if result.identified else "")
    result.text = (f"Depth–width law fitted to {len(L)} runs ({len(np.unique(D))} depths, {len(np.unique(W))} widths): "
                   f"L = A·N^−α + B·T^−δ + c·max(0, ln(D/D_crit))²{' + E' if irreducible else ''}, D_crit = {form_txt}. "
                   f"{_shown(est, ci, result.n_boot)}; R² = {result.r2:.3f}. Fitted D_crit: "
                   + ", ".join(f"{fmt(v)} at W = {w:g}" for w, v in crit.items()) + f"{paper}. {health_sentence(result)}")
    return result


# ---------------------------------------------------------------------------------------------
# Does knowing the shape help? Out of sample, over whole shapes
# ---------------------------------------------------------------------------------------------

def compare_laws(depths, widths, tokens, losses, *, params=None, huber_delta=1e-3) -> pd.DataFrame:
    """Leave-one-shape-out cross-validation of the shape-blind Chinchilla form (in N = `params`, default
    12·D·W²) against the shape-aware depth–width law: each fold leaves out every run of one (D, W) shape,
    refits both laws on the rest from their full-data optima, and predicts the held-out runs. Returns
    one row per law: law, cv_error (mean over shapes of the squared error of ln L on held-out runs),
    n_shapes, n_params, in_sample_r2, identified, and for the shape-aware law `p_better`: a one-sided
    paired t-test over shapes that its held-out error is lower. Never judged by in-sample R²."""
    D, W, T, L = (as_array(n, v, positive=True) for n, v in
                  (("depths", depths), ("widths", widths), ("tokens", tokens), ("losses", losses)))
    N = 12 * D * W ** 2 if params is None else as_array("params", params, positive=True)
    shapes = pd.factorize(pd.Series(list(zip(D, W))))[0]
    if shapes.max() < 3:
        raise ValueError(f"need at least 4 distinct shapes to leave shapes out, got {shapes.max() + 1}")
    log_l = np.log(L)
    rows = []
    for name, fitted, log_pred_vjp in (
            ("Chinchilla form (shape-blind)", fit_chinchilla(N, T, L, n_boot=0, huber_delta=huber_delta),
             _chinchilla_log_pred(np.log(N), np.log(T))),
            ("depth–width law (shape-aware)", fit_depth_width_law(D, W, T, L, n_boot=0, huber_delta=huber_delta),
             _dd_log_pred(np.log(D), np.log(W), np.log(T), "power", False))):
        folds = np.array([(shapes != s).astype(float) for s in range(shapes.max() + 1)])
        xf, ff = lbfgs_batch(huber_objective(log_pred_vjp, log_l, folds, huber_delta),
                             np.repeat(fitted.theta[None], len(folds), axis=0), max_iter=2000)
        sq = (log_pred_vjp(xf)[0] - log_l) ** 2                    # (folds, points)
        per_shape = np.array([sq[s, shapes == s].mean() for s in range(len(folds))])
        rows.append(dict(law=name, cv_error=float(per_shape.mean()), n_shapes=len(folds), n_params=len(fitted.theta),
                         in_sample_r2=fitted.r2, identified=fitted.identified, per_shape=per_shape))
    gain = rows[0]["per_shape"] - rows[1]["per_shape"]              # > 0 where the shape-aware law predicts better
    p = float(stats.ttest_1samp(gain, 0.0, alternative="greater").pvalue) if np.ptp(gain) > 0 else 1.0
    table = pd.DataFrame(rows).drop(columns="per_shape")
    table["p_better"] = [math.nan, p]
    return table


def compare_laws_sentence(table: pd.DataFrame) -> str:
    blind, aware = table.iloc[0], table.iloc[1]
    better = aware["p_better"] < 0.05
    return (f"On held-out shapes (leave one of {int(blind['n_shapes'])} shapes out) the mean squared error of ln L is "
            f"{aware['cv_error']:.3g} for the shape-aware law ({int(aware['n_params'])} parameters) and "
            f"{blind['cv_error']:.3g} for the shape-blind Chinchilla form ({int(blind['n_params'])}): "
            + (f"knowing the depth **improves** predictions for shapes the fit has not seen (paired over shapes, "
               f"p = {aware['p_better']:.2g})." if better else
               f"knowing the depth **does not measurably improve** predictions for unseen shapes at this scale "
               f"(paired over shapes, p = {aware['p_better']:.2g})."))
