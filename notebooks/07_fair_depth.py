# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 7 · Fair depth: does the critical depth survive a fair learning rate?
#
# *The Depth Delusion* (arXiv 2601.20994) trained every shape with **one** learning rate (3e-4, AdamW).
# Under the standard parametrisation (SP) the best learning rate moves with the model's width and depth,
# so "deeper got worse" can also mean "the learning rate was wrong for that depth". The paper lists
# depth-stabilising methods as an open question. This notebook separates the two explanations:
#
# 1. **Coordinate checks** — after a few Adam steps, does each layer's activation change grow with width
#    (SP) or stay put (μP, Yang et al., arXiv 2203.03466)? And with depth (SP, μP) or not (CompleteP,
#    Dey et al., arXiv 2505.01618)?
# 2. **Learning-rate transfer** — sweep the learning rate at several widths and depths: under SP the
#    optimum moves; under μP (widths) and CompleteP (depths) it should stay.
# 3. **The depth sweep three ways**, at one width:
#    **(a)** SP at one fixed learning rate, as the paper did;
#    **(b)** SP with each depth's own best learning rate;
#    **(c)** CompleteP with a single learning rate tuned at a shallow base depth and transferred.
#    The critical depth D\* is fitted for each (`dwlib.fit.fit_critical_depth`, bootstrap interval).
#
# If the U-shape of (a) is an artefact of the learning rate, it should flatten or move in (b) and (c).
# Every number in the prose is computed from this run; at the `smoke` preset they are not results.

# %% tags=["parameters"]
preset = "smoke"       # smoke (CI: plumbing only) | cpu (a laptop result) | gpu (one GPU); minutes: the table below
corpus = "stdlib"      # stdlib (offline default), tinyshakespeare, file:PATH, hf:NAME
tokenizer = "byte"     # byte or bpe:N
widths = None          # [width of the depth sweeps]; None: from the preset
depths = None          # depths of the depth sweeps; None: from the preset
budget = None          # training tokens per run (the same for every shape); None: from the preset
seeds = None           # seeds of the depth sweeps; None: from the preset
lrs = None             # learning-rate grid (log-spaced); None: from the preset
transfer_widths = None # widths of the width-transfer sweep; None: from the preset
device = "auto"        # auto (CUDA if present), cpu, cuda
store_path = None      # results store; None: outputs/runs.sqlite (finished runs are reused)
executor = "local"     # local | parallel (worker processes sharing the cores) | ray
output_dir = None      # charts (PNG + SVG); None: outputs/07_fair_depth/<preset>/
threads = None         # torch threads per run; None: $DWLIB_THREADS (`make lab` sets 1) or all cores

# %%
import math

import altair as alt
import numpy as np
import pandas as pd
from IPython.display import display

from dwlib import charts, fit, notebooks, presets, transfer, widgets
from dwlib.config import paper_critical_depth
from dwlib.data import load_tokens

alt.renderers.enable("svg")
nb = notebooks.start("07_fair_depth", locals())
s = nb.settings
W = s.widths[0]

# %% [markdown]
# ## What each preset runs
#
# Presets were fixed on cost before any result was seen. Each sweeps depths around the paper's D_crit at
# one width W, over a log-spaced grid of learning rates that holds the fixed learning rate of the other
# notebooks; the width-transfer sweep uses fewer seeds. μP and CompleteP share one base shape: width W and
# the base depth.

# %%
presets.preset_table("07_fair_depth")

# %%
nb.say(f"At preset `{s.preset}`: depths {', '.join(map(str, s.depths))} at W = {W}, where the paper's formula puts "
       f"D_crit at {paper_critical_depth(W):.1f}; learning rates {', '.join(f'{v:g}' for v in s.lrs)} (the fixed one: "
       f"{s.lr:g}; up to {s.lr_extensions} more per shape, ×2 apart, where an optimum sits at an end); {len(s.seeds)} seed{'s' if len(s.seeds) > 1 else ''} for the depth sweeps, {len(s.transfer_seeds)} for the width transfer over "
       f"widths {', '.join(map(str, s.transfer_widths))}; base depth {s.base_depth}; {int(s.budget):,} tokens per run.")

# %% [markdown]
# ## 1 · Coordinate checks
#
# Each model takes four Adam steps (constant learning rate, no clipping) and after each one the same
# validation batch is run through it. Plotted: the mean |change| of each site's activations since
# initialisation — token embeddings, the residual stream after the last block, the last block's attention
# logits and the output logits — against width (top) and depth (below). Flat lines mean the
# parametrisation keeps updates the same size as the model grows. `coord_drift` summarises each line by
# its log-log slope: about 1 when updates grow in proportion to width, about 0 when they do not.

# %%
tokens = load_tokens(s.corpus, s.tokenizer)
check_model = s.model(base_width=W, base_depth=s.base_depth)
cc_width = transfer.coord_check(s.transfer_widths, depths=[s.base_depth], lr=s.lr, tokens=tokens,
                                model=check_model, context=min(32, s.context))
cc_depth = transfer.coord_check([W], depths=s.depths, lr=s.lr, tokens=tokens, model=check_model,
                                context=min(32, s.context))
drift_width = transfer.coord_drift(cc_width)
drift_depth = transfer.coord_drift(cc_depth, over="depth")
worst_width = transfer.worst_drift(drift_width)
worst_depth = transfer.worst_drift(drift_depth, sites=["residual"])
nb.figure(charts.coord_check_chart(cc_width), "coord_check_width")

# %%
nb.figure(charts.coord_check_chart(cc_depth, over="depth"), "coord_check_depth")

# %%
display(drift_width.pivot(index="site", columns="parametrization", values="slope").round(2))
nb.say(f"Over widths {', '.join(map(str, s.transfer_widths))} the worst site's slope is "
       + ", ".join(f"**{p}** {worst_width[p]:.2f}" for p in worst_width.index)
       + f"; over depths {', '.join(map(str, s.depths))} (W = {W}) the final residual stream's slope is "
       + ", ".join(f"**{p}** {worst_depth[p]:.2f}" for p in worst_depth.index)
       + ". A slope near 1 means the update's effect doubles when the model doubles; the tests in "
         "`tests/test_transfer.py` require |slope| < 0.5 of μP and CompleteP and check that SP exceeds it.")

# %% [markdown]
# ## 2 · The learning-rate sweeps
#
# Two sweeps, every run for the same number of tokens: the grid of learning rates × widths (at the base
# depth) under SP and μP, and × depths (at width W) under SP and CompleteP. The depth sweep under SP at
# every learning rate is also what arms (a) and (b) below read their losses from.

# %%
parts = presets.fair_depth_design(s)
nb.show_design(parts["width_transfer"] + parts["depth_transfer"])

# %% [markdown]
# Where a shape's best learning rate sits at an end of the grid, that shape's grid is extended by factors
# of 2 until the optimum is bracketed — at most `lr_extensions` more rates per shape, the stated cap
# (`transfer.bracketed_best_lr`); the sentences below say where the cap was hit.

# %%
lr_args = dict(by=["parametrization", "depth", "width"], max_extensions=s.lr_extensions, n_boot=s.n_boot)
runs_w, best_w = transfer.bracketed_best_lr(nb.run, lambda g, lr: presets.fair_depth_lr_pairs(s, "width_transfer", g, lr),
                                            s.lrs, presets.fair_depth_groups(s, "width_transfer"), **lr_args)
nb.say(fit.verdicts.lr_grid_sentence(best_w, s.lr_extensions))

# %%
runs_d, best_d = transfer.bracketed_best_lr(nb.run, lambda g, lr: presets.fair_depth_lr_pairs(s, "depth_transfer", g, lr),
                                            s.lrs, presets.fair_depth_groups(s, "depth_transfer"), **lr_args)
nb.say(fit.verdicts.lr_grid_sentence(best_d, s.lr_extensions))

# %% [markdown]
# ## 3 · Does the best learning rate move with width?
#
# For each shape, `transfer.best_lr` averages the loss over seeds at each learning rate, fits a parabola
# in log(lr) to the (up to) five rates around the grid minimum and takes its vertex; the interval
# bootstraps the seeds (or, with one seed, the parabola's residuals). An optimum still at the edge of the
# grid after its extensions is only a bound and is drawn hollow.

# %%
nb.figure(charts.lr_curves_chart(runs_w, best_w, color="width"), "lr_curves_width")

# %%
nb.figure(charts.best_lr_chart(best_w, over="width"), "best_lr_width")
spread_w, why = nb.attempt(transfer.lr_spread, best_w, over="width")
if spread_w is None:
    nb.say(f"Not enough shapes to compare: {why}")
else:
    nb.verdict(fit.verdicts.lr_spread_sentence(spread_w, "width", regime=fit.verdicts.regime_of(runs_w)))
best_w[["parametrization", "depth", "width", "best_lr", "lr_low", "lr_high", "best_loss", "extended", "cap_hit",
        "method"]]

# %% [markdown]
# ## 4 · Does the best learning rate move with depth?

# %%
nb.figure(charts.lr_curves_chart(runs_d, best_d, color="depth"), "lr_curves_depth")

# %%
nb.figure(charts.best_lr_chart(best_d, over="depth"), "best_lr_depth")
spread_d, why = nb.attempt(transfer.lr_spread, best_d, over="depth")
if spread_d is None:
    nb.say(f"Not enough shapes to compare: {why}")
else:
    nb.verdict(fit.verdicts.lr_spread_sentence(spread_d, "depth", regime=fit.verdicts.regime_of(runs_d)))
best_d[["parametrization", "depth", "width", "best_lr", "lr_low", "lr_high", "best_loss", "extended", "cap_hit",
        "method"]]

# %% [markdown]
# ## 5 · The depth sweep three ways
#
# - **(a) fixed lr, SP** — every depth at the notebook's fixed learning rate, as in the paper.
# - **(b) best lr per depth, SP** — at each depth the runs at the grid learning rate with the lowest mean
#   loss. Picking the best of several noisy rates flatters every depth a little (a winner's curse of the
#   order of the seed-to-seed noise); it flatters all depths alike, so it shifts the curve more than it
#   bends it.
# - **(c) one transferred lr, CompleteP** — the best learning rate of the base depth under CompleteP (the
#   parabola's vertex above), used unchanged at every depth: the μTransfer recipe.
#
# Arm (a) reads the SP grid's runs when the fixed learning rate is on the grid (the store serves them), and
# trains them otherwise:

# %%
fixed_pairs = transfer.lr_sweep([s.lr], [(d, W) for d in s.depths], s.seeds, parametrizations=["sp"],
                                model=check_model, train=s.train(), tokens=int(s.budget))
arm_a = nb.run(fixed_pairs)

# %% [markdown]
# Arm (b) picks, at each depth, the SP grid's runs at that depth's best grid learning rate:

# %%
sp_best = best_d[best_d["parametrization"] == "sp"].set_index("depth")["grid_lr"]
sp_runs = runs_d[runs_d["parametrization"] == "sp"]
arm_b = sp_runs[sp_runs["lr"] == sp_runs["depth"].map(sp_best)]

# %% [markdown]
# Arm (c) trains every depth at the base depth's CompleteP optimum, rounded to 3 figures (at the fixed
# learning rate if the base shape has no usable optimum):

# %%
base_row = best_d[(best_d["parametrization"] == "completep") & (best_d["depth"] == s.base_depth)]
transferred_lr = float(base_row["best_lr"].iloc[0]) if len(base_row) else math.nan
if not math.isfinite(transferred_lr):
    transferred_lr = s.lr
    nb.say(f"CompleteP's base shape had no usable optimum; arm (c) falls back to the fixed lr {s.lr:g}.")
transferred_lr = float(f"{transferred_lr:.3g}")
arm_c = nb.run(presets.fair_depth_design(s, transferred_lr)["transferred"])
base_note = (f" (still at an end of the grid after {int(base_row['extended'].iloc[0])} more rates: a bound)"
             if len(base_row) and bool(base_row["at_edge"].iloc[0]) else "")
nb.say(f"Arm (a) uses lr = {s.lr:g}; arm (b) uses, by depth, "
       + ", ".join(f"D = {d}: {lr:g}" for d, lr in sp_best.items())
       + f"; arm (c) uses lr = {transferred_lr:g}, CompleteP's best at D = {s.base_depth}{base_note}.")

# %%
ARMS = {"(a) SP, fixed lr": arm_a, "(b) SP, best lr per depth": arm_b, "(c) CompleteP, transferred lr": arm_c}
fits = {}
for arm, frame in ARMS.items():
    fits[arm], why = nb.attempt(fit.critical_depth_from_frame, frame, width=W, n_boot=s.n_boot)
    if fits[arm] is None:
        nb.say(f"**{arm}: not fitted** — {why}")

both = pd.concat([frame.assign(arm=arm) for arm, frame in ARMS.items()], ignore_index=True)
nb.figure(charts.loss_vs_chart(both, "depth", color="arm",
                               title=f"loss vs depth at W = {W}, three ways (mean and 95% CI over seeds)"),
          "loss_vs_depth_three_ways")

# %%
fitted = [charts.critical_depth_chart(r).properties(title=f"{arm}: {r.verdict}" + (f", {r.bound}" if r.bound else ""))
          for arm, r in fits.items() if r is not None]
if fitted:
    nb.figure(alt.vconcat(*fitted), "critical_depth_three_ways")

# %%
table = pd.DataFrame([dict(arm=arm, verdict=r.verdict, d_star=r.params["d_star"], ci_low=r.ci["d_star"][0],
                           ci_high=r.ci["d_star"][1], bound=r.bound, p_rise=r.p_rise, runs=r.n_points,
                           paper_2_43_ln_w=r.paper_log) for arm, r in fits.items() if r is not None])
table

# %% [markdown]
# ## Explore: the depth curve at any one learning rate
#
# The slider redraws loss against depth at one learning rate of the grid, for SP and CompleteP (runs
# already trained — nothing trains here). Where the SP curve's minimum moves as you slide, the depth that
# looks best depends on the learning rate chosen for everybody.

# %%
def depth_curve_at(lr):
    return charts.loss_vs_chart(runs_d[np.isclose(runs_d["lr"], lr)], "depth", color="parametrization",
                                title=f"loss vs depth at lr = {lr:g} (W = {W})")


display(widgets.view(depth_curve_at, {"lr": widgets.choice_slider(s.lrs, near=s.lr, description="learning rate")}))

# %% [markdown]
# ## What this run shows

# %%
mean_loss = both[both["status"] == "complete"].groupby(["arm", "depth"])["val_loss"].mean().unstack("arm")
gain = (mean_loss["(a) SP, fixed lr"] - mean_loss["(b) SP, best lr per depth"]).dropna()
nb.say(f"Depth sweeps at W = {W}, {int(s.budget):,} tokens per run, seeds {s.seeds}, preset `{s.preset}`.")
regime = fit.verdicts.regime_of(both)
if len(gain):
    nb.verdict(fit.verdicts.retuning_gain_sentence(gain, regime=regime))
nb.verdict(fit.verdicts.fair_depth_text(fits, regime=regime), headline=True)
nb.finish();
