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
# scaling claim at D_crit ∝ W^0.44 — the two agree only near W = 512.
#
# This notebook repeats that first experiment on your data and hardware:
#
# 1. train every depth in the sweep at each width, several seeds each, all on the same number of tokens;
# 2. ask whether the curve is really U-shaped — a calibrated test that some depth beyond the best one is
#    measurably worse — or falls and levels off, and report D\* with its interval (or the bound it is);
# 3. put D\* beside the paper's 2.43·ln W and W^0.44, and say which regime (tokens per parameter) it comes from.
#
# Every number in the prose below is computed from this run. With the `smoke` preset (what CI runs) the
# models are tiny and trained for seconds: the plumbing is checked, the science is not. Use `cpu` for a
# result on a laptop and `gpu` for a serious run.

# %% tags=["parameters"]
preset = "smoke"       # smoke (CI, ~1 min) | cpu (a laptop result, ≥ 3 seeds) | gpu (one GPU); see the table below
corpus = "stdlib"      # stdlib (offline default), tinyshakespeare, file:PATH, hf:NAME
tokenizer = "byte"     # byte or bpe:N
widths = None          # widths to sweep; None: from the preset
depths = None          # depths at each width; None: from the preset
budget = None          # training tokens per run (the same for every depth); None: from the preset
seeds = None           # seeds per shape; None: from the preset
device = "auto"        # auto (CUDA if present), cpu, cuda
store_path = None      # results store; None: outputs/runs.sqlite (finished runs are reused)
executor = "local"     # local | parallel (worker processes sharing the cores) | ray
output_dir = None      # charts (PNG + SVG); None: outputs/02_baseline_sweep/
threads = None         # torch threads per run; None: $DWLIB_THREADS or all cores

# %%
import altair as alt
import pandas as pd
from IPython.display import display

from dwlib import charts, fit, notebooks, presets, sweep, widgets

alt.renderers.enable("svg")
nb = notebooks.start("02_baseline_sweep", preset=preset, corpus=corpus, tokenizer=tokenizer, widths=widths,
                     depths=depths, budget=budget, seeds=seeds, device=device, store_path=store_path,
                     executor=executor, output_dir=output_dir, threads=threads)

# %% [markdown]
# ## What each preset runs
#
# Presets were chosen on cost and on statistics, before any result was seen. The `cpu` preset sweeps
# W = 64, where the paper's formula predicts D_crit ≈ 10, with depths from 2 to 24 — far enough on both
# sides of the prediction for a U to show — and three seeds per depth, because at toy scale deep, narrow
# runs scatter between seeds by as much as the depth effect itself. Predicted minutes come from a cost
# model calibrated on this project's machines (`dwlib.presets.estimate_seconds`).

# %%
presets.preset_table("02_baseline_sweep")

# %% [markdown]
# ## The design

# %%
pairs = nb.design()
nb.show_design(pairs)

# %% [markdown]
# ## Training
#
# Each run is claimed in the store before it trains, so re-running this notebook (or running it in two
# terminals at once) trains nothing twice; an interrupted run resumes from its checkpoint.

# %%
runs = nb.run(pairs)
runs[["run_id", "status", "depth", "width", "seed", "params", "tokens", "val_loss", "wall_seconds"]]

# %% [markdown]
# ## Loss against depth
#
# Each faint dot is one run; the line joins the means over seeds, with 95% t-intervals. The x axis is
# logarithmic, as depths are spaced geometrically.

# %%
nb.figure(charts.loss_vs_chart(runs, "depth", color="width"), "loss_vs_depth")

# %% [markdown]
# ## The critical depth D\*, with its interval
#
# A quadratic fitted to loss against ln D always finds a "minimum" when the curve merely levels off, so
# the verdict here rests on calibrated tests instead (`dwlib.fit.fit_critical_depth`): is some depth beyond
# the best one **measurably worse** (a rise test whose false-positive rate is checked on planted curves
# that fall and level off), does the loss fall before it, and does a law that may rise predict held-out
# depths better than a monotone saturating one? Only then is the curve **U-shaped** and D\* reported with
# its interval; otherwise the summary gives the bound the data support (e.g. D\* ≥ 12).

# %%
fits = {}
for width in nb.widths:
    fits[width], why = nb.attempt(fit.critical_depth_from_frame, runs, width=width, n_boot=nb.n_boot)
    nb.say(fits[width].summary() if fits[width] else f"**W = {width}: not fitted** — {why}")
fitted = [charts.critical_depth_chart(r) for r in fits.values() if r is not None]
if fitted:
    nb.figure(alt.vconcat(*fitted), "critical_depth")

# %% [markdown]
# ## Side by side with the paper

# %%
comparison = pd.DataFrame([
    dict(width=w, verdict=r.verdict, d_star=r.params["d_star"], ci_low=r.ci["d_star"][0], ci_high=r.ci["d_star"][1],
         bound=r.bound, p_rise=r.p_rise, paper_2_43_ln_w=r.paper_log, paper_w_0_44=r.paper_power)
    for w, r in fits.items() if r is not None])
comparison

# %%
for width, r in fits.items():
    nb.say(fit.verdicts.critical_depth_sentence(r) if r else f"At W = {width} there were too few finished runs to fit.")

# %% [markdown]
# ## Loss curves
#
# Validation loss at each evaluation, one line per run, coloured by depth.

# %%
nb.figure(charts.curves_chart(nb.curves(runs), color="depth"), "loss_curves")

# %% [markdown]
# ## Explore a shape
#
# Move the sliders: the prediction (from the fitted curve when the width was swept), the shape's size and
# its cost update at once. **Train** trains that shape on this notebook's budget (first seed), stores it,
# and adds it to the chart below. Nothing trains unless you click.

# %%
def pair_for(depth, width):
    return sweep.make_pair(nb.model(), nb.train(seed=nb.seeds[0]), depth=depth, width=width, tokens=int(nb.budget))


def predict(m, t):
    r = fits.get(m.width)
    if r is None:
        return "No fitted curve at this width: the chart below gains a point when you train it."
    lo, hi = r.depth_range
    if not lo <= m.depth <= hi:
        return f"D = {m.depth} lies outside the swept depths {lo:g}–{hi:g} at W = {m.width}: no prediction."
    law = r.curve[r.curve["law"] == r.curve["law"].iloc[-1]].set_index("depth")["loss"]
    loss = float(law.reindex([m.depth], method="nearest").iloc[0])
    return f"The fitted saturating law at W = {m.width} puts the validation loss near <b>{loss:.3f}</b> at D = {m.depth}."


def sweep_chart():
    frame = nb.store.runs_frame(keys=list(runs["run_key"]) + explorer.trained)
    return charts.loss_vs_chart(frame, "depth", color="width", title="the sweep, with shapes you trained")


view = widgets.ChartView(sweep_chart)
explorer = widgets.ShapeExplorer(
    pair_for, {"depth": widgets.depth_slider(nb.depths[len(nb.depths) // 2], high=max(64, max(nb.depths))),
               "width": widgets.width_slider(nb.widths[0], step=nb.head_dim, high=max(512, max(nb.widths)))},
    store=nb.store, predict=predict, on_trained=view.refresh, threads=nb.threads)
display(explorer, view)

# %% [markdown]
# ## What this run shows

# %%
done = runs[runs["status"] == "complete"]
nb.say(f"{len(done)} of {len(runs)} runs finished ({(runs['status'] == 'diverged').sum()} diverged), "
       f"{done['wall_seconds'].sum() / 60:.1f} minutes of training in all, preset `{nb.preset}`, corpus "
       f"`{nb.corpus}` ({nb.tokenizer} tokens), {int(nb.budget):,} tokens per run. "
       + " ".join(fit.verdicts.critical_depth_sentence(r) for r in fits.values() if r is not None))
nb.finish();
