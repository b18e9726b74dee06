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
# orders of magnitude fewer (the design below says how many). A difference here is about training at this
# scale, not a test of its result.

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

from dwlib import charts, fit, notebooks, presets, sweep, widgets

alt.renderers.enable("svg")
nb = notebooks.start("06_mobilellm_counterpoint", locals())
s = nb.settings

# %% [markdown]
# ## What each preset runs
#
# Each preset takes a reference shape (`reference_depth` blocks at the preset's width) and shapes of the
# other depths at the width that matches its non-embedding parameters — narrower when deeper — each with
# and without sharing; `cpu` and `gpu` repeat each over several seeds.

# %%
presets.preset_table("06_mobilellm_counterpoint")

# %% [markdown]
# ## The design at this preset

# %%
pairs = nb.design()
nb.show_design(pairs)
shapes = sorted({(m.depth, m.width) for m, _ in pairs})
nb.say(f"Reference: **D = {presets.reference_depth(s)}, W = {s.widths[0]}**; at its non-embedding parameters: "
       + ", ".join(f"D = {d} at W = {w}" for d, w in shapes) + f"; block sharing ×{', ×'.join(map(str, s.shares))}; "
       f"{int(s.budget):,} training tokens per run, {len(s.seeds)} seed(s).")

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
best = plain.groupby(["depth", "width"])["val_loss"].mean().reset_index().sort_values("val_loss").iloc[0]
nb.say(f"Without sharing, the lowest mean loss is at **D = {int(best.depth)}, W = {int(best.width)}** "
       f"({best.val_loss:.4f}) among depths {sorted(map(int, plain.depth.unique()))}.")

# %% [markdown]
# MobileLLM's claim, tested at its extremes: the deepest shape minus the shallowest (without sharing), paired
# by seed (`dwlib.fit.compare_losses`).

# %%
shallow, deep = plain[plain.depth == plain.depth.min()], plain[plain.depth == plain.depth.max()]
gap, why = nb.attempt(fit.compare_losses, shallow["val_loss"], deep["val_loss"], seeds_a=shallow["seed"],
                      seeds_b=deep["seed"])
if gap is None:
    nb.say(f"Deepest against shallowest: no interval — {why}")
else:
    nb.verdict(fit.verdicts.deep_vs_shallow_sentence(gap, (deep.depth.iloc[0], deep.width.iloc[0]),
                                                     (shallow.depth.iloc[0], shallow.width.iloc[0])))

# %% [markdown]
# ## Does block sharing help?
#
# For each depth, the shared model minus its unshared twin (same parameters, same tokens, more FLOPs: a
# shared block costs its FLOPs each time it is applied), paired by seed (`dwlib.fit.compare_losses`).
# MobileLLM's gain counts as reproduced when sharing lowers the loss measurably at most depths.

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
nb.verdict(fit.verdicts.sharing_sentence(sharing))

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
ref_model = s.model(depth=presets.reference_depth(s), width=s.widths[0], **presets.MOBILELLM_BLOCK)


def pair_for(depth, share):
    width = sweep.matched_width(depth, ref_model)
    return sweep.make_pair(ref_model, s.train(seed=s.seeds[0]), depth=depth, width=width, share=share,
                           tokens=int(s.budget))


widgets.explore(nb, pair_for, {"depth": widgets.depth_slider(max(s.depths), high=max(64, *s.depths)),
                               "share": widgets.depth_slider(1, low=1, high=4, description="share")},
                runs=runs, chart=lambda frame: charts.loss_vs_chart(
                    frame, "depth", color="share", title="equal parameters, with shapes you trained"));

# %%
nb.finish();
