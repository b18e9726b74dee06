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
# # 2 · Baseline sweep: is there a depth beyond which loss rises?
#
# *The Depth Delusion* (arXiv 2601.20994) trains transformers of many depths at one width and reports
# a U-shaped curve: loss falls as layers are added, up to a **critical depth**, and rises beyond it.
# Its working formula puts that depth at **D_crit ≈ 2.43·ln W** (about 15 layers at W = 512) and its
# scaling claim at D_crit ∝ W^0.44 — the two agree only near W = 512. The paper trained each shape once,
# at one fixed learning rate. Its critical depth is where the loss is *lowest* (more layers beyond it raise
# the loss), so it is compared with this notebook's **D\***, the loss-minimising depth — not with the D_crit
# of notebook 05's fitted law, which marks where that law's depth penalty *starts*.
#
# | held equal | grows with depth |
# |---|---|
# | training tokens per run (at each budget), context, batch, learning rate and schedule, data order (seed) | parameters and training FLOPs (a deeper model costs more per token) |
#
# So this notebook asks the paper's question — *at a fixed number of tokens, does depth beyond some point
# hurt?* — not "at a fixed compute budget, deeper or wider?"; that one is notebook 04's.
#
# This notebook repeats the paper's first experiment on your data and hardware, and checks it:
#
# 1. train every depth at each width, several seeds each, all on the same number of tokens — and every run
#    **annealed** at several budgets (a cooldown of the learning rate to lr/10, branched from one constant-rate
#    trunk per shape: a run read part-way through a cosine schedule is not what a run trained to that budget
#    reaches);
# 2. ask whether the curve is really U-shaped — a calibrated test that the loss measurably rises beyond the
#    best depth and stays higher (seeds as a block, outlying runs named) — or falls and levels off, and report
#    D\* with its interval or the best depth's confidence set (or the bound it is), and what rise the sweep
#    could have detected;
# 3. put D\* beside the paper's 2.43·ln W and W^0.44, say which regime (tokens per parameter) it comes from,
#    and report the best depth at every budget, testing whether it moves between budgets;
# 4. check whether "deeper got worse" is only "this learning rate was wrong for that depth": re-tune the
#    learning rate at the best and the deepest depth on separate seeds.
#
# Every number in the prose below is computed from this run. With the `smoke` preset (what CI runs) the
# models are tiny and trained for seconds: the plumbing is checked, the science is not.

# %% tags=["parameters"]
preset = "smoke"       # smoke (CI: plumbing only) | cpu (`make run`) | gpu (one GPU); minutes: see the table below
corpus = "stdlib"      # stdlib (offline default), tinyshakespeare, file:PATH, hf:NAME
tokenizer = "byte"     # byte or bpe:N
widths = None          # widths to sweep; None: from the preset
depths = None          # depths at each width; None: from the preset
budget = None          # the largest training-token budget per run (the same for every depth); None: preset
anneal = None          # annealed budgets as fractions of `budget`, e.g. [0.25, 0.5, 1.0]; None: preset
seeds = None           # seeds per shape (the verdict's); None: from the preset
tuning_seeds = None    # seeds that choose the learning rates of the LR check; None: from the preset
lr_factors = None      # the LR check's learning rates, as multiples of the preset's lr; None: preset
device = "auto"        # auto (CUDA if present), cpu, cuda
store_path = None      # results store; None: outputs/runs.sqlite (finished runs are reused)
executor = "local"     # local | parallel (worker processes sharing the cores) | ray
output_dir = None      # charts (PNG + SVG); None: outputs/02_baseline_sweep/<preset>/
threads = None         # torch threads per run; None: $DWLIB_THREADS (`make lab` sets 1) or all cores

# %%
import altair as alt
import numpy as np
import pandas as pd

from dwlib import charts, fit, notebooks, presets, sweep, transfer, widgets
from dwlib.config import tokens_per_step

alt.renderers.enable("svg")
nb = notebooks.start("02_baseline_sweep", locals())
s = nb.settings

# %% [markdown]
# ## What each preset runs, and why
#
# Presets were fixed on cost and statistics before any result was seen. A rise in loss with depth at well
# under one token per parameter mostly measures how fast each shape learns, not a depth limit, so the `cpu`
# preset (what `make run` runs) spends its CPU minutes on the regime: the narrowest widths the head size
# allows, which reach the most tokens per parameter per CPU-second. The table shows each preset with its
# predicted minutes on this machine (`presets.estimate_seconds`, calibrated by timing a few steps here).

# %%
presets.preset_table("02_baseline_sweep")

# %% [markdown]
# ## The design

# %%
pairs = nb.design()
nb.show_design(pairs)
budgets = sorted({t.tokens for _, t in pairs})

# %% [markdown]
# ## Training
#
# Each run is claimed in the store before it trains, so re-running this notebook (or running it in two
# terminals at once) trains nothing twice; an interrupted trunk or branch resumes from its checkpoint.

# %%
runs = nb.run(pairs)
final = runs[runs["tokens"] == max(runs["tokens"])]          # the largest budget
final[["run_id", "status", "depth", "width", "seed", "tokens", "tokens_per_param", "val_loss", "final_slope"]]

# %% [markdown]
# ## Loss against depth, at the largest budget
#
# Each faint dot is one run; the line joins the means over seeds, and each bar is the 95% t-interval of
# a mean — the same interval on every chart of seed means in these notebooks. The x axis is logarithmic,
# as depths are spaced geometrically.

# %%
nb.figure(charts.loss_vs_chart(final, "depth", color="width"), "loss_vs_depth")

# %% [markdown]
# ## The critical depth D\*, with its interval or its confidence set
#
# A quadratic fitted to loss against ln D always finds a "minimum" when the curve merely levels off, so the
# verdict rests on calibrated tests (`dwlib.fit.fit_critical_depth`, checked on planted sweeps by
# `bench/u_test_calibration.py`). Each seed fixes the data order at every depth, so seeds are a block: the
# depths are compared with each seed's effect removed, and a run far from what its depth and seed predict
# is named as an outlier (the verdict is given with and without it). The curve is **U-shaped** only when
# the loss measurably falls and then rises in a way that **persists** to the deepest depth (a two-lines
# test: one high depth inside the range is not a U). D\* is a parabola's vertex with its interval where a
# parabola fits the minimum; otherwise it is the **confidence set** of the best depth — the depths not
# measurably worse than any other. A negative verdict states the smallest rise this sweep would have
# detected with 80% power.

# %%
fits = {}
for width in s.widths:
    fits[width], why = nb.attempt(fit.critical_depth_from_frame, runs, width=width, n_boot=s.n_boot)
    nb.say(fits[width].summary() if fits[width] else f"**W = {width}: not fitted** — {why}")
fitted = [charts.critical_depth_chart(r) for r in fits.values() if r is not None]
if fitted:
    nb.figure(alt.vconcat(*fitted), "critical_depth")

# %%
pd.DataFrame([dict(width=w, verdict=r.verdict, d_star=r.params["d_star"], ci_low=r.ci["d_star"][0],
                   ci_high=r.ci["d_star"][1], bound=r.bound, p_rise=r.p_rise, paper_2_43_ln_w=r.paper_log,
                   paper_w_0_44=r.paper_power) for w, r in fits.items() if r is not None])

# %% [markdown]
# ## The best depth across annealed budgets: D\*(T)
#
# Every budget's points are annealed runs (schedule `wsd-sqrt`: the learning rate cools down to lr/10 over the
# last 20% of each budget's own steps). Each budget gets its best depth and its confidence set — the depths
# not measurably worse than any other — whatever its verdict: a budget whose loss rises from the shallowest
# depth is a finding too (deeper is worse at that budget). The best depth **moves** between two budgets only
# when their confidence sets are separated by a depth tried: the minimum can lie between two depths tried,
# and a steeper rise beyond an unchanged minimum flips which of the two is lower without moving it
# (calibrated on planted pairs of budgets: `bench/movement_calibration.py`). Every budget is on the chart; one
# with no best depth (not fitted) is a dotted rule.

# %%
by_budget = {}
for width in s.widths:
    by_budget[width], why = nb.attempt(fit.critical_depth_by_budget, runs, width=width, n_boot=min(s.n_boot, 500))
    if by_budget[width]:
        nb.verdict(fit.verdicts.movement_sentence(*by_budget[width], width,
                                                  regime=fit.verdicts.regime_of(runs[runs["width"] == width])))
    else:
        nb.say(f"W = {width}: {why}")
drawn = [charts.critical_depth_by_budget_chart(b[0], width=w) for w, b in by_budget.items()
         if b is not None and b[0]["best_depth"].notna().any()]
if drawn:
    nb.figure(alt.vconcat(*drawn).resolve_scale(shape="independent"), "critical_depth_by_budget")  # own markers each

# %% [markdown]
# ## Does the rise survive a better learning rate?
#
# One learning rate for every depth can make a deep model look bad because that rate suits it badly. At
# the first width, the best depth and the deepest depth get a small learning-rate sweep on **other** seeds
# (the tuning seeds: choosing a winner and scoring it on the same seeds would flatter it). Where a depth's
# best rate sits at an end of that grid, its grid is extended by factors of 2 until the best rate is
# bracketed, at most `lr_extensions` more rates per depth (the cap); a rate still at an end after the cap
# is only a bound, and the verdict says so. The curves below show loss against learning rate at the two
# depths on those seeds, and each depth's best rate with its interval (a diamond).

# %%
r = fits.get(s.widths[0])
if r is None:
    nb.say("No fitted sweep at the first width: no learning-rate check.")
else:
    best, deepest = presets.lr_check_depths(r, s.depths)
    tuning, tuned = transfer.bracketed_best_lr(
        nb.run, lambda d, lr: presets.lr_check_design(s, [d], s.widths[0], lrs={d: lr}, seeds=s.tuning_seeds),
        [f * s.lr for f in s.lr_factors], [best, deepest], by="depth", max_extensions=s.lr_extensions, n_boot=200)
    nb.figure(charts.lr_curves_chart(tuning, tuned, color="depth"), "lr_check")
    tuned = tuned.set_index("depth")
    chosen = tuned["grid_lr"].to_dict()

# %% [markdown]
# Each depth's best rate is then trained on the verdict's seeds, and the two depths are compared paired by
# seed (`dwlib.fit.compare_losses`), beside the difference the fixed learning rate gave.

# %%
if r is not None:
    scored = nb.run(presets.lr_check_design(s, [best, deepest], s.widths[0], lrs=chosen, seeds=s.seeds))
    a, b = (scored[(scored["depth"] == d) & (scored["status"] == "complete")] for d in (best, deepest))
    gap, why = nb.attempt(fit.compare_losses, a["val_loss"], b["val_loss"], seeds_a=a["seed"], seeds_b=b["seed"])
    at_fixed = final[final["width"] == s.widths[0]].groupby("depth")["val_loss"].mean()
    if gap is None:
        nb.say(f"Not compared — {why}")
    else:
        nb.verdict(fit.verdicts.lr_check_sentence(gap, (best, deepest), chosen, s.tuning_seeds,
                                                  rise=at_fixed[deepest] - at_fixed[best],
                                                  at_edge=[d for d in (best, deepest) if tuned.loc[d, "at_edge"]],
                                                  extended=tuned["extended"].to_dict(), cap=s.lr_extensions,
                                                  regime=fit.verdicts.regime_of(scored)))

# %% [markdown]
# ## Loss curves
#
# Validation loss at each evaluation, one line per run at the largest budget, coloured by depth, one
# panel per width. The token axis is linear, so the cooldown — the last 20% of each run's steps, shaded —
# shows as the drop at the end.

# %%
nb.figure(charts.curves_chart(nb.curves(final), color="depth", facet="width", log_x=False), "loss_curves")

# %% [markdown]
# ## Explore a shape
#
# Move the sliders: the prediction (from the fitted curve when the width was swept), the shape's size and
# its cost update at once. **Train** trains that shape exactly as the sweep trained its runs at the largest
# budget — the same schedule (`wsd-sqrt`), warmup, cooldown and first seed — stores it, and adds it to the
# chart below: a swept shape is the sweep's own run (the store serves it at once), a new one is drawn apart
# as a black diamond and kept out of the means. Nothing trains unless you click. First, how a slider
# position becomes a run, and the prediction read off the depth means of the fit (seed effects removed,
# interpolated in ln D):

# %%
sweep_train = next(t for _, t in pairs if t.tokens == max(budgets) and t.seed == s.seeds[0])   # the sweep's settings


def pair_for(depth, width):
    return sweep.make_pair(s.model(), sweep_train, depth=depth, width=width)


def predict(m, t):
    r = fits.get(m.width)
    if r is None:
        return "No fitted curve at this width: the chart below gains a point when you train it."
    lo, hi = r.depth_range
    if not lo <= m.depth <= hi:
        return f"D = {m.depth} lies outside the swept depths {lo:g}–{hi:g} at W = {m.width}: no prediction."
    loss = float(np.interp(np.log(m.depth), np.log(r.means["depth"]), r.means["mean"]))
    return f"The sweep's depth means at W = {m.width} put the validation loss near <b>{loss:.3f}</b> at D = {m.depth}."


# %% [markdown]
# The sliders start in the middle of the sweep; the chart holds the sweep's runs at the largest budget.

# %%
widgets.explore(nb, pair_for, {"depth": widgets.depth_slider(s.depths[len(s.depths) // 2], high=max(64, *s.depths)),
                               "width": widgets.width_slider(s.widths[0], step=s.head_dim, high=max(512, *s.widths))},
                runs=final, predict=predict,
                chart=lambda frame: charts.loss_vs_chart(frame, "depth", color="width",
                                                         title="the sweep, with shapes you trained"));

# %% [markdown]
# ## What this run shows

# %%
done = runs[runs["status"] == "complete"]
others = ", ".join(f"{n} {k}" for k, n in runs["status"].value_counts().items() if k != "complete")
trained = sorted(runs["tokens"].unique())      # each budget rounded to whole steps
nb.say(f"{len(done)} of {len(runs)} runs finished" + (f" ({others})" if others else "") + f"; preset `{s.preset}`, "
       f"corpus `{s.corpus}` ({s.tokenizer} tokens), budgets {', '.join(f'{b:,}' for b in trained)} tokens per run "
       f"(each requested budget rounded to whole steps of {tokens_per_step(*pairs[0]):,} tokens).")
for r in fits.values():
    if r is not None:
        nb.verdict(fit.verdicts.critical_depth_sentence(r), headline=True)
nb.finish();
