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
# # 5 · Scaling-law fits: the Depth Delusion ansatz, the Chinchilla form, compute-optimal shapes
#
# A sweep answers "which depth is best at this width and budget". A scaling law answers it for every
# budget at once. This notebook fits two laws to the store's runs:
#
# - the **Chinchilla form** L(N, T) = E + A/N^α + B/T^β (Hoffmann et al. 2022), which knows size and data
#   but not shape;
# - the **Depth Delusion ansatz** L(D, W, T) = A·N^−α + B·T^−δ + Φ(D, W), N = 12·D·W², whose depth
#   penalty Φ is zero up to a critical depth D_crit(W) = κ·W^γ and grows beyond it. The paper did not
#   publish its Φ; `dwlib.fit.fit_depth_width_law` documents the one used here.
#
# The fitted ansatz has **two depths** at each width, named apart throughout: **D_crit**, where its penalty
# *starts*, and **D\***, where its loss is *lowest* — further out, since each layer still adds parameters
# that lower the N term (on a planted law at W = 64: onset 5, minimum 14). The paper's critical depth is
# "the depth beyond which adding layers raises the loss" — a minimum — so its 2.43·ln W is set beside
# D\*, as it is beside notebook 02's D\*. A fitted γ ≤ 0 (a critical depth that does not grow with width)
# is a finding, reported with its interval like any other.
#
# Every nonlinear fit here carries a **health check**: a fit the data cannot identify is shown as such
# and never graded against a paper. Under the ansatz as written, the compute-optimal depth and width
# D\*(C), W\*(C) follow from a tie-break rather than from the data, so this notebook measures the optimum
# with an **isoFLOP** design instead (several budgets, many shapes each trained to exactly that budget:
# Chinchilla's approach 2): the optimal size N\*(C) and tokens T\*(C), and the best shape at each budget.
# Grading the paper's D\* ∝ C^0.12 and W\* ∝ C^0.34 would need depth and width each bracketed at every
# budget — a denser grid of shapes than this design affords. Finally the fitter is checked on
# Epoch AI's replication of Chinchilla: if it does not
# reproduce their published refit on their data, none of the numbers above should be trusted.

# %% tags=["parameters"]
preset = "smoke"       # smoke (CI) | cpu (a laptop result) | gpu (one GPU)
corpus = "stdlib"
tokenizer = "byte"
shapes = None          # isoFLOP shapes [[depth, width], ...]; None: from the preset
widths = None          # or: widths × depths as the shapes (give both); None: the preset's shapes
depths = None
budget = None          # list of FLOP budgets, each shape trained to each; None: from the preset
seeds = None
device = "auto"
store_path = None      # None: outputs/runs.sqlite
executor = "local"     # local | parallel | ray
output_dir = None      # None: outputs/05_scaling_fit/<preset>/
threads = None         # torch threads per run; None: $DWLIB_THREADS (`make lab` sets 1) or all cores
use_store = True       # fit the laws to every comparable run in the store, not only this design
epoch_data = None      # Epoch AI points (svg_extracted_data.csv); None: the copy in tests/fixtures

# %%
from pathlib import Path

import altair as alt
import pandas as pd
from IPython.display import display

from dwlib import charts, fit, notebooks, presets, sweep, widgets
from dwlib.config import steps_for_budget, tokens_per_step

alt.renderers.enable("svg")
nb = notebooks.start("05_scaling_fit", locals())
s = nb.settings

# %% [markdown]
# ## The design: isoFLOP, fixed before any result
#
# | held equal | varies |
# |---|---|
# | training FLOPs per run (at each budget), context, batch, learning rate, schedule | model size N and shape (D, W), and so the tokens T = C / FLOPs-per-token |
#
# Every shape is trained to every FLOP budget (a shape that a budget buys fewer than `min_steps` steps is
# left out there). Sizes span well below and well above the ≈ 20 tokens per parameter of Chinchilla's
# optimum at every budget, so an optimum near that ratio is *bracketed* (the fit says where one is not:
# tiny models can be compute-optimal far from 20); each size comes in two aspect ratios
# (D×4 at W÷2: the same 12·D·W²), so depth and width are not tied to size. One trunk per shape and seed
# trains to the largest budget; the smaller budgets are cooldown branches of it, each annealed to lr/10.

# %%
presets.preset_table("05_scaling_fit")

# %%
pairs = nb.design()
nb.show_design(pairs)

# %%
runs = nb.run(pairs)
runs[["run_id", "status", "depth", "width", "seed", "non_embedding_params", "tokens", "tokens_per_param", "flops",
      "val_loss"]]

# %% [markdown]
# ## IsoFLOP profiles: N\*(C), T\*(C), and the best shape per budget
#
# At each budget, each size is represented by its best shape (filled points; the other aspect ratio of
# that size is drawn open): at equal N a deep-narrow shape can be far worse than a shallow-wide one, and one
# parabola through both would zigzag. A local parabola of loss in ln N around the lowest point locates the
# optimum, with a bootstrap interval; an optimum counts only where the sizes tried bracket it, and resamples
# without an interior minimum are counted, never given a made-up value. A power law of the optima against
# C gives the exponent without assuming any law. The table also names each budget's best shape and how
# often it stays best when the seeds are resampled.

# %%
design_runs = runs[runs["status"] == "complete"]
iso, why = nb.attempt(fit.fit_isoflop, design_runs["flops"], design_runs["non_embedding_params"],
                      design_runs["val_loss"], depths=design_runs["depth"], widths=design_runs["width"],
                      n_boot=max(100, s.n_boot))
if iso is None:
    nb.figure(charts.isoflop_points_chart(design_runs), "isoflop")
    nb.say(f"**Not fitted** — {why}")
else:
    nb.figure(charts.isoflop_chart(iso), "isoflop")
    nb.verdict(iso.summary() + " " + fit.verdicts.regime_sentence(fit.verdicts.regime_of(design_runs)))
    columns = ("flops", "n_runs", "opt_params", "opt_tokens", "params_status", "best_")
    display(iso.optima[[c for c in iso.optima.columns if c.startswith(columns)]])

# %% [markdown]
# ## The data the laws are fitted to
#
# This design's runs and — with `use_store` — every other complete run in the store trained the same way
# (same corpus, tokenizer, context, batch, learning rate and block design): other notebooks' sweeps add
# shapes and token counts for free. Sizes are non-embedding parameters (Kaplan's N).

# %%
data = nb.store_runs(runs) if use_store else runs[runs["status"] == "complete"]
data = data.drop_duplicates("run_key")
nb.say(f"**{len(data)} runs** ({len(runs)} from this design): depths {sorted(map(int, data.depth.unique()))}, widths "
       f"{sorted(map(int, data.width.unique()))}, {data.tokens.min():,.0f}–{data.tokens.max():,.0f} tokens, "
       f"{data.non_embedding_params.min():,}–{data.non_embedding_params.max():,} non-embedding parameters.")

# %% [markdown]
# ## The Depth Delusion ansatz
#
# A nonlinear law with seven parameters fits *something* to any data. Before its numbers mean anything the
# fit must be **identified**: exponents in a plausible range, bootstrap intervals that do not span orders of
# magnitude, one optimum (not a ridge of equally good ones), no pair of parameters that only moves together,
# and a critical depth inside the depths tried. `law.health` lists every check that failed and what data
# would fix it; an unidentified fit is shown but never compared with the paper.

# %%
law, why = nb.attempt(fit.fit_depth_width_law, data["depth"], data["width"], data["tokens"], data["val_loss"],
                      n_boot=s.n_boot)
if law is None:
    nb.say(f"**Not fitted** — {why}")
else:
    nb.figure(charts.depth_width_law_chart(law), "depth_width_law")
    nb.verdict(law.summary() + " " + fit.verdicts.regime_sentence(fit.verdicts.regime_of(data)))

# %% [markdown]
# ## The Chinchilla form on the same runs

# %%
chinchilla, why = nb.attempt(fit.fit_chinchilla, data["non_embedding_params"], data["tokens"], data["val_loss"],
                             n_boot=s.n_boot)
if chinchilla is None:
    nb.say(f"**Not fitted** — {why}")
else:
    nb.figure(charts.chinchilla_chart(chinchilla), "chinchilla_form")
    nb.say(chinchilla.summary())

# %% [markdown]
# ## Does knowing the depth help? On shapes the fit has not seen
#
# In-sample R² always favours the law with more parameters. The fair question is out of sample: leave one
# shape (D, W) out, refit both laws on the rest, predict the left-out runs; repeat for every shape.

# %%
comparison, why = nb.attempt(fit.compare_laws, data["depth"], data["width"], data["tokens"], data["val_loss"],
                             params=data["non_embedding_params"])
if comparison is None:
    nb.say(f"**Not compared** — {why}")
else:
    display(comparison)
    nb.verdict(fit.laws.compare_laws_sentence(comparison) + " "
               + fit.verdicts.regime_sentence(fit.verdicts.regime_of(data)))

# %% [markdown]
# ## Is the fitter sound? Epoch AI's Chinchilla replication
#
# Besiroglu et al. (2024) digitised the points of Chinchilla's Figure 4 and refitted the law the way
# Hoffmann et al. describe; their estimates and 95% intervals (`fit.CHINCHILLA_EPOCH`, `_CI`) are the
# table's `epoch_ai` columns. The same fitter, on their points (the highest-loss ones excluded, as they did):

# %%
epoch_path = Path(epoch_data) if epoch_data else presets.repo_root() / "tests" / "fixtures" / "epoch_chinchilla_points.csv"
if not epoch_path.exists():
    epoch = None
    nb.say(f"Epoch AI's data file is not at `{epoch_path}`: the check is skipped (pass `epoch_data`).")
else:
    points = fit.read_epoch_points(epoch_path)
    epoch = fit.fit_chinchilla(points["params"], points["tokens"], points["loss"], n_boot=max(200, s.n_boot))
    nb.figure(charts.chinchilla_chart(epoch), "epoch_replication")
    display(pd.DataFrame({k: dict(this_fit=epoch.params[k], ci_low=epoch.ci[k][0], ci_high=epoch.ci[k][1],
                                  epoch_ai=fit.CHINCHILLA_EPOCH[k], epoch_ci=str(fit.CHINCHILLA_EPOCH_CI[k]))
                          for k in fit.CHINCHILLA_EPOCH}).T)
    assert epoch.identified, epoch.health
    nb.verdict(fit.verdicts.epoch_check_sentence(epoch, len(points)))

# %% [markdown]
# ## Predict, then train
#
# Choose a shape and a budget: the fitted ansatz (when there is one) predicts its loss at once; **Train**
# trains it to that budget, stores it, and adds the measured point beside the prediction below. First, how
# a slider position becomes a run, and what the fitted ansatz predicts for it:

# %%
def pair_for(depth, width, flops):
    return sweep.make_pair(s.model(), s.train(seed=s.seeds[0]), depth=depth, width=width, flops=flops)


def predict(m, t):
    if law is None:
        return "No fitted law to predict from."
    if not law.identified:
        return "The fitted ansatz is not identified by these runs: no prediction."
    tokens = steps_for_budget(m, t) * tokens_per_step(m, t)
    loss = float(fit.depth_width_loss(law.params, m.depth, m.width, tokens))
    return f"The fitted ansatz predicts a validation loss of <b>{loss:.3f}</b> after {tokens:,} tokens."


# %% [markdown]
# The chart sets each run's measured loss against the ansatz's prediction for it: the runs the laws were
# fitted to, and every shape trained here.

# %%
def prediction_chart(frame):
    if law is not None and law.identified:
        frame = frame.assign(predicted=fit.depth_width_loss(law.params, frame["depth"], frame["width"], frame["tokens"]))
    return charts.predicted_loss_chart(frame)


budgets = s.budget if isinstance(s.budget, list) else [s.budget]
widgets.explore(nb, pair_for, {"depth": widgets.depth_slider(4, high=64),
                               "width": widgets.width_slider(32, step=s.head_dim, high=512),
                               "flops": widgets.flops_slider(budgets[-1])},
                runs=data, predict=predict, chart=prediction_chart);

# %%
nb.finish();
