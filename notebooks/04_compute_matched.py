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
# # 4 · Compute-matched comparison: the critical depth against twice as deep
#
# The Depth Delusion's third experiment spends the *same training compute* on two shapes of (nearly) the
# same size: one at the predicted critical depth D_c = 2.43·ln W, one about twice as deep and narrower so
# its parameters match. At 7B parameters the paper reports the over-deep model (64 layers × 2816) 0.12
# nats worse than 32 × 4096.
#
# Here both shapes train for the same FLOP budget C (each for C / FLOPs-per-token tokens, rounded to whole
# steps), with several seeds, so the gap comes with an interval. Because a deep-narrow model also runs
# more sequential layers per token, we measure each shape's inference latency and throughput too: a
# shape can lose on loss and on speed, or trade one for the other.
#
# | held equal | differs |
# |---|---|
# | training FLOPs per run (C), non-embedding parameters (matched to a few %), seed, learning rate and schedule | depth and width — and so the tokens C buys (attention FLOPs grow with depth) and the inference latency |
#
# This is the fixed-budget question; notebook 2 holds *tokens* fixed instead, so its deeper models also
# spend more FLOPs.

# %% tags=["parameters"]
preset = "smoke"       # smoke (CI) | cpu (a laptop result, 3 seeds) | gpu (one GPU)
corpus = "stdlib"
tokenizer = "byte"
widths = None          # [width] of the shape at D_crit; None: from the preset
depths = None          # []: the paper pair (D_crit, factor x D_crit); or [shallow, deep]; None: from the preset
budget = None          # training FLOPs per run (the same for both shapes); None: from the preset
seeds = None
device = "auto"
store_path = None      # None: outputs/runs.sqlite
executor = "local"     # local | parallel | ray
output_dir = None      # None: outputs/04_compute_matched/
threads = None         # torch threads per run; None: $DWLIB_THREADS or all cores
factor = None          # how much deeper the second shape is; None: from the preset (2)

# %%
import altair as alt
import pandas as pd
from IPython.display import display

from dwlib import charts, fit, notebooks, presets, sweep, widgets
from dwlib.config import non_embedding_params, paper_critical_depth
from dwlib.train import measure_inference

alt.renderers.enable("svg")
nb = notebooks.start("04_compute_matched", preset=preset, corpus=corpus, tokenizer=tokenizer, widths=widths,
                     depths=depths, budget=budget, seeds=seeds, device=device, store_path=store_path,
                     executor=executor, output_dir=output_dir, threads=threads, factor=factor)

# %% [markdown]
# ## What each preset runs
#
# The `cpu` preset takes W = 64 (D_c = round(2.43·ln 64) = 10) against 20 layers at the width that matches
# its non-embedding parameters, each trained for 1.5·10¹² FLOPs (about half a million tokens), three seeds.

# %%
presets.preset_table("04_compute_matched")

# %%
pairs = nb.design()
nb.show_design(pairs)
(d_a, w_a), (d_b, w_b) = dict.fromkeys((m.depth, m.width) for m, _ in pairs)
shape_a = next(m for m, _ in pairs if m.depth == d_a)
shape_b = next(m for m, _ in pairs if m.depth == d_b)
nb.say(f"Shape A: **D = {d_a}, W = {w_a}** (the paper's D_crit at W = {w_a} is {paper_critical_depth(w_a):.1f}); "
       f"shape B: **D = {d_b}, W = {w_b}**, {d_b / d_a:.1f}× deeper. Non-embedding parameters "
       f"{non_embedding_params(shape_a):,} vs {non_embedding_params(shape_b):,} "
       f"({non_embedding_params(shape_b) / non_embedding_params(shape_a) - 1:+.1%}); both train for "
       f"{float(nb.budget):.3g} FLOPs.")

# %%
runs = nb.run(pairs)
runs[["run_id", "status", "depth", "width", "seed", "params", "steps", "tokens", "flops", "val_loss", "wall_seconds"]]

# %% [markdown]
# ## The loss gap at equal compute
#
# `dwlib.fit.compare_losses` takes B − A over the seeds — paired by seed when both shapes ran the same
# seeds, since a seed fixes the order of the training data — with a t-interval.

# %%
done = runs[runs["status"] == "complete"]
a_runs, b_runs = done[done["depth"] == d_a], done[done["depth"] == d_b]
gap, why = nb.attempt(fit.compare_losses, a_runs["val_loss"], b_runs["val_loss"],
                      seeds_a=a_runs["seed"], seeds_b=b_runs["seed"])
if gap is None:
    nb.say(f"**No interval** — {why}")
else:
    nb.figure(charts.loss_gap_chart(done, dict(gap=gap.params["gap"], ci=gap.ci["gap"])), "loss_gap")
    nb.say(gap.summary())

# %%
if gap is not None:
    g, (lo, hi) = gap.params["gap"], gap.ci["gap"]
    if gap.verdict == "first lower":
        claim = (f"the over-deep shape is **worse** by {g:.4f} nats (95% CI {lo:.4f} to {hi:.4f}) — the direction "
                 f"the paper reports (0.12 nats at 7B)")
    elif gap.verdict == "second lower":
        claim = (f"the over-deep shape is **better** by {-g:.4f} nats (95% CI {-hi:.4f} to {-lo:.4f}) — the paper's "
                 f"claim is **not reproduced** at this scale")
    else:
        claim = (f"the two shapes are **indistinguishable** (gap {g:+.4f}, 95% CI {lo:+.4f} to {hi:+.4f}): at this "
                 f"scale and budget the data neither confirm nor refute the paper's penalty for depth")
    nb.say(f"At {float(nb.budget):.3g} training FLOPs each, {claim}.")

# %% [markdown]
# ## Loss against compute
#
# Both shapes' validation curves against training FLOPs: equal compute means the curves end at the same x.

# %%
curves = nb.curves(runs)
nb.figure(charts.curves_chart(curves, color="depth", x="flops"), "loss_vs_flops")

# %% [markdown]
# ## Inference latency and throughput
#
# A forward pass over the full context with random weights (speed does not depend on their values): the
# latency of one sequence, and the throughput of a batch, on this notebook's device.

# %%
speed = pd.DataFrame([measure_inference(m, device=nb.device, batch_size=nb.latency_batch,
                                        repeats=nb.latency_repeats, threads=nb.threads)
                      for m in (shape_a, shape_b)])
nb.figure(charts.latency_chart(speed), "inference_speed")
speed

# %%
sa, sb = speed.iloc[0], speed.iloc[1]
nb.say(f"On {sa.device}, one {int(sa.context)}-token sequence takes {sa.latency_ms:.1f} ms through D = {d_a} and "
       f"{sb.latency_ms:.1f} ms through D = {d_b} ({sb.latency_ms / sa.latency_ms:.2f}×); batched throughput "
       f"{sa.tokens_per_second:,.0f} vs {sb.tokens_per_second:,.0f} tokens/s. Training throughput in the runs above: "
       f"{a_runs.tokens_per_second.mean():,.0f} vs {b_runs.tokens_per_second.mean():,.0f} tokens/s.")

# %% [markdown]
# ## Try another shape at the same compute
#
# Choose a depth and width: the readout shows the tokens this budget buys it; **Train** trains it for the
# same FLOPs, stores it and adds it to the chart of loss against depth at equal compute.

# %%
def pair_for(depth, width):
    return sweep.make_pair(nb.model(), nb.train(seed=nb.seeds[0]), depth=depth, width=width, flops=float(nb.budget))


def sweep_chart():
    frame = nb.store.runs_frame(keys=list(runs["run_key"]) + explorer.trained)
    return charts.loss_vs_chart(frame, "depth", color="width", title=f"loss at {float(nb.budget):.3g} FLOPs per run")


view = widgets.ChartView(sweep_chart)
explorer = widgets.ShapeExplorer(
    pair_for, {"depth": widgets.depth_slider(d_a, high=max(64, d_b)),
               "width": widgets.width_slider(w_a, step=nb.head_dim, high=max(512, w_a))},
    store=nb.store, on_trained=view.refresh, threads=nb.threads)
display(explorer, view)

# %%
nb.finish();
