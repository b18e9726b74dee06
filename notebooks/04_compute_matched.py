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
# # 4 · Compute-matched comparison: the critical depth against a deeper twin
#
# The Depth Delusion's third experiment spends the *same training compute* on two shapes of (nearly) the
# same size: one at the predicted critical depth D_c = 2.43·ln W, one about twice as deep and narrower so
# its parameters match. At 7B parameters the paper reports the over-deep model (64 layers × 2816) 0.12
# nats worse than 32 × 4096.
#
# Here the deeper shape is `factor` times as deep, and both shapes train for the same FLOP budget C (each
# for C / FLOPs-per-token tokens, rounded to whole steps), with several seeds, so the gap comes with an
# interval. Because a deep-narrow model also runs more sequential layers per token, we measure each
# shape's inference latency and throughput too: a shape can lose on loss and on speed, or trade one for
# the other.
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
factor = None          # how much deeper the second shape is; None: from the preset

# %%
import altair as alt
import pandas as pd
from IPython.display import display

from dwlib import charts, fit, notebooks, presets, sweep, widgets
from dwlib.config import non_embedding_params, paper_critical_depth, steps_for_budget, tokens_per_step
from dwlib.train import measure_inference

alt.renderers.enable("svg")
nb = notebooks.start("04_compute_matched", locals())
s = nb.settings

# %% [markdown]
# ## What each preset runs
#
# Each preset takes one width W, the shape at D_c = round(2.43·ln W) and one `factor` times deeper at the
# width that matches its non-embedding parameters, and trains both for the same FLOP budget; `cpu` and
# `gpu` repeat each over several seeds.

# %%
presets.preset_table("04_compute_matched")

# %% [markdown]
# ## The design at this preset

# %%
pairs = nb.design()
nb.show_design(pairs)
shapes = dict(pairs)              # the two shapes (D_crit's first), each with a training config
shape_a, shape_b = shapes
(d_a, w_a), (d_b, w_b) = (shape_a.depth, shape_a.width), (shape_b.depth, shape_b.width)
tokens_a, tokens_b = (steps_for_budget(m, t) * tokens_per_step(m, t) for m, t in shapes.items())
nb.say(f"Shape A: **D = {d_a}, W = {w_a}** (the paper's D_crit at W = {w_a} is {paper_critical_depth(w_a):.1f}); "
       f"shape B: **D = {d_b}, W = {w_b}**, {d_b / d_a:.1f}× deeper. Non-embedding parameters "
       f"{non_embedding_params(shape_a):,} vs {non_embedding_params(shape_b):,} "
       f"({non_embedding_params(shape_b) / non_embedding_params(shape_a) - 1:+.1%}); both train for "
       f"{float(s.budget):.3g} FLOPs — {tokens_a:,} tokens for A, {tokens_b:,} for B — over "
       f"{len(s.seeds)} seed(s).")

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
    nb.verdict(fit.verdicts.compute_matched_sentence(gap, s.budget))

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
speed = pd.DataFrame([measure_inference(m, device=s.device, batch_size=s.latency_batch,
                                        repeats=s.latency_repeats, threads=s.threads)
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
    return sweep.make_pair(s.model(), s.train(seed=s.seeds[0]), depth=depth, width=width, flops=float(s.budget))


widgets.explore(nb, pair_for, {"depth": widgets.depth_slider(d_a, high=max(64, d_b)),
                               "width": widgets.width_slider(w_a, step=s.head_dim, high=max(512, w_a))},
                runs=runs, chart=lambda frame: charts.loss_vs_chart(
                    frame, "depth", color="width", title=f"loss at {float(s.budget):.3g} FLOPs per run"));

# %%
nb.finish();
