"""Gradient persistence: how fast per-block gradient norms decay with distance from the output (τ),
and how τ scales with width — the Depth Delusion's τ(W) ∝ W^0.44 against a logarithm.

The decay rate 1/τ is the quantity fitted throughout: a model whose gradients do not decay (or grow)
toward the input has rate ≤ 0 — a result, not a reason to drop the run — where τ itself would be
infinite or negative.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize

from .stats import (Fit, as_array, check_level, check_n_boot, fmt, fmt_ci, not_constant, percentile_band,
                    percentile_ci, r2, residual_resamples, same_length, t_interval)

PAPER_TAU_EXPONENT = 0.44     # Depth Delusion: τ(W) ∝ W^0.44, R² = 0.98 (vs a logarithm, reported worse)
PAPER_GRAD_STEP = 1000        # the paper measured gradient norms after 1000 training steps
INDISTINGUISHABLE = 0.99      # |r| between W^γ and ln W over the widths tried beyond which the forms coincide


@dataclass(kw_only=True, repr=False)
class PersistenceFit(Fit):
    run_id: str | None = None
    steps: tuple = ()
    depth: int = 0
    n_repeats: int = 1


@dataclass(kw_only=True, repr=False)
class TauScalingFit(Fit):
    cv_power: float = math.nan          # leave-one-width-out error of rate = k·W^−γ
    cv_log: float = math.nan            # … of rate = 1/(a + b·ln W)
    preferred: str = ""
    form_correlation: float = math.nan  # r between W^γ̂ and ln W over the widths tried
    paper_in_ci: bool | None = None


def _block_norms(frame: pd.DataFrame, run_id, step) -> tuple[np.ndarray, tuple, str]:
    """Per-block gradient norms of one run from the store's grad-norm frame, one row per measured step
    near `step` (default: the paper's step 1000, else the nearest): the trainer records each probe at
    several consecutive steps — different batches — so the fit can average over them."""
    for col in ("layer", "norm", "step"):
        if col not in frame.columns:
            raise ValueError(f"grad-norm frame has no column {col!r} (columns: {list(frame.columns)})")
    if "run_id" in frame.columns:
        ids = frame["run_id"].unique()
        if run_id is None and len(ids) != 1:
            raise ValueError(f"grad-norm frame holds {len(ids)} runs: pass run_id= (one of {list(ids)[:5]}…)")
        run_id = ids[0] if run_id is None else run_id
        frame = frame[frame["run_id"] == run_id]
        if frame.empty:
            raise ValueError(f"no gradient norms for run {run_id!r}")
    steps = np.unique(frame["step"])
    target = PAPER_GRAD_STEP if step is None else step
    if step is not None and step not in steps:
        raise ValueError(f"no gradient norms at step {step}; measured at {steps.tolist()}")
    centre = steps[np.argmin(np.abs(steps - target))]
    near = steps[np.abs(steps - centre) <= 3]                    # the probe's consecutive steps
    depth = int(frame["depth"].iloc[0]) if "depth" in frame.columns else int(frame["layer"].max())
    blocks = frame[(frame["layer"] >= 0) & (frame["layer"] < depth) & frame["step"].isin(near)]
    table = blocks.pivot_table(index="step", columns="layer", values="norm",
                               aggfunc=lambda s: float(np.sqrt(np.sum(np.square(s)))))
    if list(table.columns) != list(range(depth)) or table.isna().any().any():
        raise ValueError(f"gradient norms of some blocks are missing at steps {near.tolist()}")
    return table.to_numpy(float), tuple(int(s) for s in near), run_id


def fit_gradient_persistence(layer_grad_norms, *, run_id=None, step=None, n_boot=1000, level=0.95,
                             random_state=0) -> PersistenceFit:
    """τ from one model's per-block gradient norms: ‖∇_ℓ‖ ≈ ‖∇_D‖·exp(−(D − ℓ)/τ), blocks ℓ = 0..D−1.

    A straight line in log space, ln‖∇_ℓ‖ = const + ℓ·rate, rate = 1/τ; `params`: rate, tau (= 1/rate,
    infinite or negative when the norms do not decay), g_top (the line at ℓ = D). R² in log space.
    `layer_grad_norms`: 1-D (blocks), 2-D (repeats × blocks: seeds, steps, batches — averaged in log
    space and resampled as wholes for the interval), or the store's grad-norm frame (`run_id`, and `step`,
    default the probe nearest step 1000 as in the paper, averaged over its consecutive steps). With one
    repeat the interval comes from a residual bootstrap over layers; neighbouring layers' residuals are
    correlated, so treat it as a lower bound on the uncertainty. Verdict: 'decays toward the input',
    'grows toward the input' or 'no clear trend' (the rate's interval includes 0)."""
    check_level(level)
    check_n_boot(n_boot)
    steps = ()
    if isinstance(layer_grad_norms, pd.DataFrame):
        reps, steps, run_id = _block_norms(layer_grad_norms, run_id, step)
    else:
        reps = np.atleast_2d(np.asarray(layer_grad_norms, dtype=float))
        if reps.ndim != 2:
            raise ValueError(f"layer_grad_norms must be 1-D (blocks) or 2-D (repeats × blocks), got shape {reps.shape}")
    if not np.isfinite(reps).all() or (reps <= 0).any():
        raise ValueError("gradient norms must be finite and positive")
    n_rep, D = reps.shape
    if D < 3:
        raise ValueError(f"need at least 3 blocks to fit a decay, got {D}")
    log_norms = np.log(reps)
    mean_log = log_norms.mean(axis=0)
    not_constant("gradient norms", mean_log)
    layers = np.arange(D, dtype=float)
    X = np.column_stack([np.ones(D), layers])
    coef = np.linalg.lstsq(X, mean_log, rcond=None)[0]
    fitted = X @ coef
    rng = np.random.default_rng(random_state)
    if n_rep >= 2:
        pick = rng.integers(0, n_rep, size=(n_boot, n_rep))
        Yb = mean_log + math.sqrt(n_rep / (n_rep - 1)) * (log_norms[pick].mean(axis=1) - mean_log)
        method = f"bootstrap over {n_rep} repeats"
    else:
        Yb = residual_resamples(X, fitted, mean_log - fitted, n_boot, rng)
        method = "residual bootstrap over layers"
    coef_b = np.linalg.lstsq(X, Yb.T, rcond=None)[0].T
    rate, rate_ci = float(coef[1]), percentile_ci(coef_b[:, 1], level)
    verdict = ("decays toward the input" if rate_ci[0] > 0 else
               "grows toward the input" if rate_ci[1] < 0 else "no clear trend")
    tau = 1.0 / rate if rate != 0 else math.inf
    lo, hi = rate_ci
    if lo > 0 or hi < 0:
        tau_ci = (1 / hi, 1 / lo)
    else:   # the rate's interval includes 0: τ is unbounded on that side
        tau_ci = (1 / hi if hi > 0 else -math.inf, math.inf) if rate > 0 else (-math.inf, 1 / lo if lo < 0 else math.inf)
    g_top = float(np.exp(coef[0] + rate * D))
    grid = np.linspace(0, D - 1, 100)
    band = np.exp(percentile_band(coef_b[:, :1] + coef_b[:, 1:] * grid[None], level))
    data = pd.DataFrame({"layer": np.arange(D), "norm": np.exp(mean_log), "fitted": np.exp(fitted)})
    if n_rep >= 2:
        data["low"], data["high"] = np.exp(log_norms.min(axis=0)), np.exp(log_norms.max(axis=0))
    curve = pd.DataFrame({"layer": grid, "norm": np.exp(coef[0] + rate * grid), "low": band[0], "high": band[1]})
    fit_r2 = r2(mean_log, fitted)
    where = f" of run {run_id} at steps {steps[0]}–{steps[-1]}" if steps else ""
    text = (f"Gradient persistence{where}: {D} blocks, ln‖∇_ℓ‖ linear in ℓ with R² = {fit_r2:.3f} (log space). "
            f"Decay rate 1/τ = {fmt(rate)} per layer ({level:.0%} CI {fmt_ci(rate_ci)}; {method}), τ = {fmt(tau)} "
            f"layers ({fmt_ci(tau_ci)}). Verdict: gradient norm {verdict}"
            + (" — the rate's interval includes 0, so τ is not bounded." if verdict == "no clear trend" else "."))
    return PersistenceFit(kind="gradient_persistence", params={"tau": tau, "rate": rate, "g_top": g_top},
                          ci={"tau": tau_ci, "rate": rate_ci}, n_points=D, level=level, r2=fit_r2,
                          residuals=mean_log - fitted, n_boot=n_boot, verdict=verdict, data=data, curve=curve,
                          samples=pd.DataFrame({"rate": coef_b[:, 1]}), text=text, run_id=run_id, steps=steps,
                          depth=D, n_repeats=n_rep)


def tau_by_width(grad_norms: pd.DataFrame, *, step=None, n_boot=500, level=0.95) -> pd.DataFrame:
    """The decay rate (and τ) of every run in the store's grad-norm frame — all of them, whatever their
    verdict: run_id, depth, width, seed, steps, rate, rate_low, rate_high, tau, r2, verdict. Ready for
    `fit_tau_scaling(df.width, df.rate, rate_se=…)`."""
    if "run_id" not in grad_norms.columns:
        raise ValueError("grad-norm frame needs a run_id column")
    rows = []
    for run_id, g in grad_norms.groupby("run_id", sort=False):
        f = fit_gradient_persistence(g, run_id=run_id, step=step, n_boot=n_boot, level=level)
        rows.append(dict(run_id=run_id, depth=f.depth, width=g["width"].iloc[0] if "width" in g else None,
                         seed=g["seed"].iloc[0] if "seed" in g else None, steps=f"{f.steps[0]}–{f.steps[-1]}",
                         rate=f.params["rate"], rate_low=f.ci["rate"][0], rate_high=f.ci["rate"][1],
                         tau=f.params["tau"], r2=f.r2, verdict=f.verdict))
    return pd.DataFrame(rows)


def _power(w, k, gamma):          # rate = k·W^−γ  ⇔  τ = W^γ / k
    return k * w ** -gamma


def _logform(w, a, b):            # rate = 1/(a + b·ln W)  ⇔  τ = a + b·ln W
    return 1.0 / (a + b * np.log(w))


def _fit_form(form, w, rate, sigma):
    """Least squares of one form on the rate scale; None when it does not converge."""
    f, p0 = (_power, (float(np.median(rate) * np.median(w) ** 0.44), 0.44)) if form == "power" else \
        (_logform, (float(1 / np.median(rate)), 0.0))
    try:
        with np.errstate(all="ignore"):
            p, _ = optimize.curve_fit(f, w, rate, p0=p0, sigma=sigma, maxfev=5000)
    except (RuntimeError, ValueError, optimize.OptimizeWarning):
        return None
    return p if np.isfinite(p).all() else None


def _gamma_interval(w, rate, sigma, k, gamma, level) -> tuple[float, float]:
    """γ's t-interval (n − 2 dof) from the HC3 sandwich standard error of the (weighted) least-squares fit
    of rate = k·W^−γ (MacKinnon & White 1985; Long & Ervin 2000 for small samples): it holds where the
    noise differs between widths. On planted sweeps it covers the truth at about the nominal rate, where
    resampling the runs at each width covered 80–88% (bench/fit_planted.py)."""
    s = np.ones_like(w) if sigma is None else sigma
    J = np.column_stack([w ** -gamma, -k * np.log(w) * w ** -gamma]) / s[:, None]     # ∂rate/∂(k, γ), weighted
    res = (rate - _power(w, k, gamma)) / s
    lev = np.clip(np.einsum("ij,ji->i", J, np.linalg.pinv(J)), 0, 1 - 1e-9)
    bread = np.linalg.pinv(J.T @ J)
    cov = bread @ ((J * (res / (1 - lev))[:, None] ** 2).T @ J) @ bread
    return t_interval(gamma, math.sqrt(max(cov[1, 1], 0.0)), len(w) - 2, level)


def fit_tau_scaling(widths, rates, *, rate_se=None, level=0.95) -> TauScalingFit:
    """τ(W) two ways on every run's decay rate (1/τ; any sign): the power law τ = W^γ/k (the paper's
    form, `gamma`) and the logarithm τ = a + b·ln W. Both are fitted on the rate scale (weighted by
    `rate_se` when given) and compared by leave-one-width-out prediction error on that same scale —
    never by R² on different scales. Over a narrow range of widths W^γ and ln W are almost collinear
    (r ≈ 0.996 for 64–512 at γ = 0.44): the summary says when the widths cannot tell the forms apart.
    γ's interval: `_gamma_interval` (a robust t-interval)."""
    check_level(level)
    w = as_array("widths", widths, positive=True)
    rate = as_array("rates", rates)
    same_length(widths=w, rates=rate)
    sigma = None if rate_se is None else np.maximum(as_array("rate_se", rate_se, positive=True), 1e-12)
    levels = np.unique(w)
    if len(levels) < 3:
        raise ValueError(f"need at least 3 distinct widths, got {levels.tolist()}")
    not_constant("rates", rate)
    fits = {form: _fit_form(form, w, rate, sigma) for form in ("power", "log")}
    if fits["power"] is None:
        raise ValueError("the power law τ = W^γ/k did not converge on these rates (are they mostly ≤ 0? "
                         "then the gradients do not decay and there is no τ to scale)")
    cv = {}
    for form, f in (("power", _power), ("log", _logform)):
        err = 0.0
        for lv in levels:
            held = w == lv
            p = _fit_form(form, w[~held], rate[~held], None if sigma is None else sigma[~held])
            err = math.inf if p is None else err + float(np.sum(((rate[held] - f(w[held], *p)) /
                                                                  (1 if sigma is None else sigma[held])) ** 2))
        cv[form] = err
    k, gamma = fits["power"]
    gamma_ci = _gamma_interval(w, rate, sigma, k, gamma, level)
    corr = float(np.corrcoef(levels ** gamma, np.log(levels))[0, 1])
    preferred = "power law" if cv["power"] < cv["log"] else "logarithm"
    if abs(corr) > INDISTINGUISHABLE:
        judgement = (f"over widths {fmt(levels.min())}–{fmt(levels.max())} W^γ and ln W correlate at r = {corr:.3f}: "
                     "these widths cannot tell the two forms apart, whatever the errors say")
    else:
        judgement = f"the {preferred} predicts held-out widths better"
    grid = np.exp(np.linspace(np.log(levels.min()), np.log(levels.max()), 100))
    curve = pd.DataFrame({"width": grid, "tau": 1 / _power(grid, k, gamma)})
    if fits["log"] is not None:
        curve["tau_log_form"] = 1 / _logform(grid, *fits["log"])
    inside = bool(gamma_ci[0] <= PAPER_TAU_EXPONENT <= gamma_ci[1])
    text = (f"τ(W) from {len(w)} runs at {len(levels)} widths, fitted on the decay rate 1/τ (all runs, any sign): "
            f"power law τ ∝ W^{gamma:.3f} ({level:.0%} CI {fmt_ci(gamma_ci)}, robust t-interval); leave-one-width-out error "
            f"{cv['power']:.3g} (power) vs {cv['log']:.3g} (logarithm): {judgement}. The Depth Delusion reports "
            f"γ ≈ {PAPER_TAU_EXPONENT}, {'inside' if inside else 'outside'} our interval.")
    data = pd.DataFrame({"width": w, "rate": rate, "fitted_power": _power(w, k, gamma)})
    return TauScalingFit(kind="tau_scaling", params={"gamma": float(gamma), "k": float(k)}, ci={"gamma": gamma_ci},
                         n_points=len(w), level=level, r2=r2(rate, _power(w, k, gamma)), data=data,
                         curve=curve, text=text, cv_power=cv["power"],
                         cv_log=cv["log"], preferred=preferred, form_correlation=corr, paper_in_ci=inside)
