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
# # 6 · The small-model counterpoint: MobileLLM's deep-and-thin
#
# MobileLLM (Liu et al., ICML 2024, arXiv 2402.14905) claims that below a billion parameters depth
# matters more than width: at a fixed parameter count, **deep-and-thin** models beat balanced and
# wide-and-shallow ones (its 125M model is 30 layers × 576, far beyond the Depth Delusion's D_crit ≈ 15
# for that width). It adds **immediate block-wise weight sharing** — each block applied twice in a row —
# for extra depth at no parameter cost (+0.7% / +0.8% average zero-shot accuracy at 125M / 350M).
#
# Here: shapes of equal non-embedding parameters from shallow-and-wide to deep-and-thin, each with and
# without sharing, MobileLLM-style blocks (SwiGLU MLP, RMSNorm, shared input/output embeddings), the same
# corpus and the same number of training tokens, several seeds. Note what "equal" means: MobileLLM
# compares at equal *parameters* and *tokens*, so a shared model spends twice the FLOPs of its unshared
# twin; the FLOPs are in the table to keep that visible.
#
# | held equal | differs |
# |---|---|
# | non-embedding parameters (matched to a few %), training tokens, block design, seed, learning rate | depth and width, block sharing — and so training FLOPs (a shared block costs FLOPs each time it is applied) |
#
# MobileLLM's evidence is zero-shot accuracy after about a trillion tokens; ours is validation loss after
# a few hundred thousand. A difference here is about training at this scale, not a test of its result.

# %% tags=["parameters"]
preset = "smoke"       # smoke (CI) | cpu (a laptop result, 3 seeds) | gpu (one GPU)
corpus = "stdlib"
tokenizer = "byte"
widths = None          # [width] of the reference shape; None: from the preset
depths = None          # depths to compare at the reference size; None: from the preset
budget = None          # training tokens per run; None: from the preset
seeds = None
device = "auto"
store_path = None      # None: outputs/runs.sqlite
executor = "local"     # local | parallel | ray
output_dir = None      # None: outputs/06_mobilellm_counterpoint/
threads = None         # torch threads per run; None: $DWLIB_THREADS or all cores
shares = None          # block-sharing factors (1: none, 2: MobileLLM); None: from the preset
reference_depth = None # the depth whose shape (at the width) sets the parameter count; None: from the preset

# %%
import altair as alt
import pandas as pd
from IPython.display import display

from dwlib import charts, fit, notebooks, presets, sweep, widgets

alt.renderers.enable("svg")
nb = notebooks.start("06_mobilellm_counterpoint", preset=preset, corpus=corpus, tokenizer=tokenizer, widths=widths,
                     depths=depths, budget=budget, seeds=seeds, device=device, store_path=store_path,
                     executor=executor, output_dir=output_dir, threads=threads, shares=shares,
                     reference_depth=reference_depth)

# %% [markdown]
# ## What each preset runs
#
# The `cpu` preset matches the parameters of a 4-block, 64-wide model with 2, 8 and 16 blocks (widths
# 96, 48 and 32), with and without sharing, three seeds each.

# %%
presets.preset_table("06_mobilellm_counterpoint")

# %%
pairs = nb.design()
nb.show_design(pairs)

# %%
runs = nb.run(pairs)
runs[["run_id", "status", "depth", "width", "share", "seed", "non_embedding_params", "flops", "val_loss"]]

# %% [markdown]
# ## Loss against depth at equal parameters

# %%
nb.figure(charts.loss_vs_chart(runs, "depth", color="share",
                               title="equal parameters: loss vs depth (colour: block sharing factor)"),
          "loss_vs_depth_sharing")

# %%
done = runs[runs["status"] == "complete"]
plain = done[done["share"] == 1]
means = plain.groupby(["depth", "width"])["val_loss"].mean().reset_index().sort_values("val_loss")
best = means.iloc[0]
shallow, deep = plain[plain.depth == plain.depth.min()], plain[plain.depth == plain.depth.max()]
gap, why = nb.attempt(fit.compare_losses, shallow["val_loss"], deep["val_loss"], seeds_a=shallow["seed"],
                      seeds_b=deep["seed"])
nb.say(f"Without sharing, the lowest mean loss is at **D = {int(best.depth)}, W = {int(best.width)}** "
       f"({best.val_loss:.4f}) among depths {sorted(map(int, plain.depth.unique()))}.")
if gap is None:
    nb.say(f"Deepest against shallowest: no interval — {why}")
else:
    nb.say(f"Deepest (D = {deep.depth.iloc[0]}, W = {deep.width.iloc[0]}) minus shallowest (D = {shallow.depth.iloc[0]}, "
           f"W = {shallow.width.iloc[0]}): {gap.summary()} "
           + {"second lower": "**Deep-and-thin wins** here, as MobileLLM claims.",
              "first lower": "**Wide-and-shallow wins** here: MobileLLM's claim is **not reproduced** at this scale.",
              "no clear difference": "The data **cannot separate** them at this scale and budget."}[gap.verdict])

# %% [markdown]
# ## Does block sharing help?
#
# For each depth, the shared model minus its unshared twin (same parameters, same tokens, twice the
# FLOPs), paired by seed.

# %%
rows = []
for depth in sorted(map(int, done.depth.unique())):
    one, two = done[(done.depth == depth) & (done.share == 1)], done[(done.depth == depth) & (done.share > 1)]
    result, why = nb.attempt(fit.compare_losses, one["val_loss"], two["val_loss"], seeds_a=one["seed"], seeds_b=two["seed"])
    rows.append(dict(depth=depth, unshared=one.val_loss.mean(), shared=two.val_loss.mean(),
                     gap=result.params["gap"] if result else two.val_loss.mean() - one.val_loss.mean(),
                     ci_low=result.ci["gap"][0] if result else None, ci_high=result.ci["gap"][1] if result else None,
                     verdict=result.verdict if result else f"no interval: {why}"))
sharing = pd.DataFrame(rows)
sharing

# %%
helped = sharing[sharing.verdict == "second lower"]
hurt = sharing[sharing.verdict == "first lower"]
nb.say(f"Sharing lowered the loss with an interval excluding zero at {len(helped)} of {len(sharing)} depths "
       f"({', '.join(map(str, helped.depth)) or 'none'}) and raised it at {len(hurt)} "
       f"({', '.join(map(str, hurt.depth)) or 'none'}); mean change {sharing.gap.mean():+.4f} nats. "
       + ("MobileLLM's sharing gain is **reproduced**." if len(helped) > len(sharing) / 2 else
          "MobileLLM's sharing gain is **not clearly reproduced** at this scale."))

# %% [markdown]
# ## Loss curves

# %%
nb.figure(charts.curves_chart(nb.curves(runs), color="depth", title="validation loss (colour: depth)"), "loss_curves")

# %% [markdown]
# ## Try a depth at the same size
#
# Choose a depth and a sharing factor: the width that matches the reference parameter count follows;
# **Train** trains it on this notebook's budget and adds it to the chart below.

# %%
ref_model = nb.model(depth=presets.reference_depth(nb.settings), width=nb.widths[0], **presets.MOBILELLM_BLOCK)


def pair_for(depth, share):
    width = sweep.matched_width(depth, ref_model)
    return sweep.make_pair(ref_model, nb.train(seed=nb.seeds[0]), depth=depth, width=width, share=share,
                           tokens=int(nb.budget))


def sweep_chart():
    frame = nb.store.runs_frame(keys=list(runs["run_key"]) + explorer.trained)
    return charts.loss_vs_chart(frame, "depth", color="share", title="equal parameters, with shapes you trained")


view = widgets.ChartView(sweep_chart)
explorer = widgets.ShapeExplorer(
    pair_for, {"depth": widgets.depth_slider(max(nb.depths), high=max(64, max(nb.depths))),
               "share": widgets.depth_slider(1, low=1, high=4, description="share")},
    store=nb.store, on_trained=view.refresh, threads=nb.threads)
display(explorer, view)

# %%
nb.finish();
