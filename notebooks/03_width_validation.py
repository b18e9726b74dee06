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
# # 3 · Width validation and gradient persistence
#
# The Depth Delusion's second experiment holds depth near the critical depth and varies width. Two
# things are checked:
#
# 1. **Monotonicity** — at fixed depth, is a wider model always better (lower loss)? If so, width is a
#    safe direction to spend parameters in, unlike depth.
# 2. **Gradient persistence** — the paper's mechanism. For each model it measures the gradient norm of
#    every block and fits ‖∇_ℓ‖ ≈ ‖∇_D‖·exp(−(D − ℓ)/τ): τ is how many layers a gradient survives. It
#    reports τ(W) ∝ W^0.44 (R² = 0.98) and a logarithmic form fitting worse. We fit both forms and let the
#    data say which they prefer.
#
# | held equal | grows with width |
# |---|---|
# | depth, training tokens per run, context, batch, learning rate and schedule | parameters (∝ W²) and training FLOPs |
#
# The paper measured gradients after 1000 training steps; the trainer records them around step 1000 when
# a run gets that far (four consecutive steps, so four batches), at every evaluation and at the end, and
# the fit averages the probe nearest step 1000. τ(W) is fitted to every run's decay rate, whatever its
# sign. Numbers in the prose come from this run; with the `smoke` preset they are not results.

# %% tags=["parameters"]
preset = "smoke"       # smoke (CI) | cpu (a laptop result, 3 seeds) | gpu (one GPU)
corpus = "stdlib"
tokenizer = "byte"
widths = None          # widths to sweep; None: from the preset
depths = None          # [depth] held fixed; None: from the preset
budget = None          # training tokens per run; None: from the preset
seeds = None
device = "auto"
store_path = None      # None: outputs/runs.sqlite
executor = "local"     # local | parallel | ray
output_dir = None      # None: outputs/03_width_validation/<preset>/
threads = None         # torch threads per run; None: $DWLIB_THREADS (`make lab` sets 1) or all cores

# %%
import altair as alt
from IPython.display import display

from dwlib import charts, fit, notebooks, presets, sweep, widgets
from dwlib.config import paper_critical_depth

alt.renderers.enable("svg")
nb = notebooks.start("03_width_validation", locals())
s = nb.settings

# %% [markdown]
# ## What each preset runs
#
# Each preset holds depth near the paper's critical depth for the widths it sweeps, and trains every width
# on the same number of tokens; `cpu` and `gpu` repeat each width over several seeds.

# %%
presets.preset_table("03_width_validation")

# %% [markdown]
# ## The design at this preset

# %%
pairs = nb.design()
nb.show_design(pairs)
depth = s.depths[0]
nb.say(f"Depth held at **{depth}** over widths {', '.join(map(str, s.widths))}, {len(s.seeds)} seed{'s' if len(s.seeds) > 1 else ''} each; the "
       f"paper's critical depth over these widths runs from {paper_critical_depth(min(s.widths)):.1f} "
       f"(W = {min(s.widths)}) to {paper_critical_depth(max(s.widths)):.1f} (W = {max(s.widths)}).")

# %%
runs = nb.run(pairs)
runs[["run_id", "status", "depth", "width", "seed", "params", "tokens", "val_loss", "wall_seconds"]]

# %% [markdown]
# ## Is loss monotone in width?
#
# `dwlib.fit.check_monotone` compares each width with the next (mean over seeds, the difference's interval
# paired over seeds: a seed fixes the data order at every width) and fits the overall slope of loss against
# ln W. Widening "lowered the loss at every step" only when every step's difference excludes 0; when only
# the means fall, it lowered the loss "on average". A step the wrong way whose interval includes zero is
# noise, not a reversal.

# %%
nb.figure(charts.loss_vs_chart(runs, "width", color="depth"), "loss_vs_width")
done = runs[runs["status"] == "complete"]
trend, why = nb.attempt(fit.check_monotone, done["width"], done["val_loss"], seeds=done["seed"], decreasing=True)
regime = fit.verdicts.regime_of(runs)
if trend is None:
    nb.say(f"**Not judged** — {why}")
else:
    display(trend.steps.rename(columns={"x_from": "width_from", "x_to": "width_to"}))
    nb.verdict(fit.verdicts.width_trend_sentence(trend, depth, regime=regime))

# %% [markdown]
# ## Per-layer gradient norms
#
# One line per run: the gradient norm of each block (log axis), at the measurement nearest step 1000. A
# straight falling line towards block 0 is exponential decay; its slope is 1/τ.

# %%
grads = nb.grad_norms(runs)
nb.figure(charts.grad_norm_profiles_chart(grads, color="width"), "grad_norm_profiles")

# %% [markdown]
# ## τ for each model, and τ(W)

# %%
taus = fit.tau_by_width(grads, n_boot=min(s.n_boot, 500))
taus

# %%
decays = (taus["verdict"] == "decays toward the input").all()
nb.verdict(fit.verdicts.persistence_sentence(taus, regime=regime))

# %% [markdown]
# Where every run's gradients decay, τ(W) is fitted to the runs' decay rates 1/τ as a power law and as a
# logarithm, each judged on widths it was not fitted to (`dwlib.fit.fit_tau_scaling`). Where they do not,
# there is no persistence length to scale, and nothing is fitted.

# %%
rate_se = (taus["rate_high"] - taus["rate_low"]) / (2 * 1.96)
scaling, why = (nb.attempt(fit.fit_tau_scaling, taus["width"], taus["rate"], rate_se=rate_se.clip(lower=1e-6))
                if decays else (None, "the gradients do not decay in every run"))
if scaling is None:
    nb.say(f"**τ(W) not fitted** — {why}. The paper's τ ∝ W^0.44 is not tested on this run.")
else:
    nb.figure(charts.tau_scaling_chart(scaling), "tau_scaling")
    nb.verdict(scaling.summary() + " " + fit.verdicts.regime_sentence(regime))

# %% [markdown]
# ## One model's gradient profile, fitted
#
# The widest model of the first seed, with the fitted exponential and its band.

# %%
widest = done.sort_values(["width", "seed"], ascending=[False, True]).iloc[0] if len(done) else None
profile, why = (nb.attempt(fit.fit_gradient_persistence, grads, run_id=widest["run_id"], n_boot=min(s.n_boot, 500))
                if widest is not None else (None, "no finished run"))
if profile is None:
    nb.say(f"Not fitted — {why}")
else:
    nb.figure(charts.gradient_persistence_chart(profile), "gradient_persistence_widest")
    nb.say(profile.summary() if profile.verdict == "decays toward the input" else
           f"The widest model's block gradients **{profile.verdict}** (decay rate 1/τ = {profile.params['rate']:+.3f} per "
           f"layer, {profile.level:.0%} CI {profile.ci['rate'][0]:+.3f} to {profile.ci['rate'][1]:+.3f}): it has no "
           "persistence length.")

# %% [markdown]
# ## Explore a width
#
# Choose a width (at this notebook's depth, or another): the readout shows its size and cost; **Train**
# trains it on this notebook's budget, stores it and adds it to the width chart below.

# %%
def pair_for(depth, width):
    return sweep.make_pair(s.model(), s.train(seed=s.seeds[0]), depth=depth, width=width, tokens=int(s.budget))


widgets.explore(nb, pair_for, {"depth": widgets.depth_slider(depth, high=max(32, depth)),
                               "width": widgets.width_slider(s.widths[len(s.widths) // 2], step=s.head_dim,
                                                             high=max(512, *s.widths))},
                runs=runs, chart=lambda frame: charts.loss_vs_chart(frame, "width", color="depth",
                                                                    title="the width sweep, with shapes you trained"));

# %%
nb.finish();
