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
# # 1 · Primer: deeper or wider?
#
# A decoder-only transformer is a stack of **D** identical blocks (its *depth*), each working on vectors
# of **W** numbers (its *width*, d_model). Every block holds an attention layer (four W×W matrices) and
# an MLP (two W×4W matrices): twelve W² per block. So the parameters outside the embeddings are, to a
# very good approximation (Kaplan et al. 2020),
#
# $$N = 12\,D\,W^2,$$
#
# and training costs about **6N FLOPs per token** plus **6·D·T·W** for attention over a context of T
# tokens. The same N can be spent on many thin layers or a few wide ones: D = 8, W = 64 and D = 2,
# W = 128 have exactly the same N. Which is better at a fixed budget is the question this project tests.
#
# Two recent papers disagree:
#
# - ***The Depth Delusion*** (Fahim & Karim, arXiv 2601.20994): beyond a **critical depth**
#   D_crit ≈ 2.43·ln W (claimed to scale as W^0.44), adding layers *raises* the loss; at a compute
#   budget C the optimal depth grows only as C^0.12 while the width grows as C^0.34.
# - ***MobileLLM*** (Liu et al., ICML 2024, arXiv 2402.14905): below a billion parameters,
#   **deep-and-thin** beats wide-and-shallow, and sharing weights between adjacent blocks adds depth for free.
#
# The two claims measure different things. The Depth Delusion compares **validation loss** of shapes
# trained on the same tokens, each shape **once, at one fixed learning rate** (3e-4 for every depth).
# MobileLLM compares **zero-shot accuracy** of models of equal *parameter count*, trained for far longer
# (about a trillion tokens) with tuned recipes. A result for one is not a refutation of the other.
#
# This primer builds the intuition: a calculator for where parameters and FLOPs go, the paper's
# gradient-persistence picture, MobileLLM's counterpoint, and a live race between a deep-thin and a
# wide-shallow model of equal size on your CPU. The other notebooks measure the claims.
#
# **Reading a loss.** Losses here are cross-entropies in nats per token (per byte, with the default byte
# tokens). A gap of Δ nats means the better model gives the true next token e^Δ times the probability on
# average: 0.01 nats is 1% — often within seed-to-seed noise at this scale — 0.1 nats is 10%, a large
# difference between two shapes of the same size. Every notebook reports gaps with intervals over seeds
# for that reason.

# %% tags=["parameters"]
preset = "smoke"       # smoke (race of a few seconds) | cpu (a one-minute race) | gpu
corpus = "stdlib"      # the race trains on this corpus
tokenizer = "byte"
widths = None          # race shapes: widths, paired with depths; None: from the preset
depths = None          # race shapes: depths; None: from the preset (shapes of equal 12·D·W²)
budget = None          # training tokens per racer; None: from the preset
seeds = None
device = "auto"
store_path = None      # None: outputs/runs.sqlite
executor = "local"
output_dir = None      # None: outputs/01_primer/
threads = None         # torch threads; None: $DWLIB_THREADS or all cores
calc_depth = 16        # calculator defaults: the Depth Delusion W 512 family
calc_width = 512
calc_context = 1024
calc_budget = 1e19     # FLOPs
tau = 8.0              # persistence length for the gradient picture (layers)

# %%
import math

import altair as alt
import pandas as pd
from IPython.display import display

from dwlib import charts, notebooks, presets, widgets
from dwlib.config import ModelConfig, paper_critical_depth

alt.renderers.enable("svg")
nb = notebooks.start("01_primer", locals())

# %% [markdown]
# ## Where the parameters and FLOPs go
#
# The Depth Delusion's depth sweep at W = 512 used D = 2, 8, 16, 24 with untied embeddings and GPT-2's
# vocabulary of 50,257 tokens. The library's exact accounting (`dwlib.config`) reproduces the paper's
# parameter counts (58M, 77M, 102M, 127M) and shows how little of a small model's parameters sit in its
# blocks:

# %%
family = pd.DataFrame([widgets.shape_facts(d, 512, 1024, calc_budget) for d in (2, 8, 16, 24)])
family[["depth", "width", "non_embedding_params", "embedding_params", "params", "flops_per_token",
        "attention_flops_share", "d_crit_log"]]

# %%
nb.say(f"At D = 2 the blocks hold only {family.non_embedding_params[0] / family.params[0]:.0%} of the "
       f"{family.params[0] / 1e6:.0f}M parameters; at D = 24, {family.non_embedding_params[3] / family.params[3]:.0%}. "
       f"The paper's formula puts the critical depth at W = 512 at {paper_critical_depth(512):.1f} layers.")

# %%
nb.figure(charts.budget_breakdown_chart(ModelConfig(depth=calc_depth, width=calc_width, context=calc_context,
                                                    vocab_size=widgets.PAPER_VOCAB)), "budget_breakdown")

# %% [markdown]
# ## A calculator
#
# Move the sliders. The readout gives the non-embedding parameters N, the FLOPs per training token, the
# tokens a FLOP budget buys, and where the shape sits against the paper's critical depth for its width.

# %%
widgets.calculator(calc_depth, calc_width, calc_context, calc_budget)

# %% [markdown]
# ## Gradient persistence
#
# The paper's explanation for a critical depth: the gradient reaching block ℓ of a D-block model decays
# with its distance from the output,
#
# $$\lVert\nabla_\ell L\rVert \approx \lVert\nabla_D L\rVert\, e^{-(D-\ell)/\tau(W)},$$
#
# with a *persistence length* τ that grows with width (τ ∝ W^0.44 in the paper). The paper's argument:
# blocks much further than τ from the output barely learn, so beyond a depth of a few τ extra blocks add
# parameters without useful capacity — which is how τ(W) ∝ W^0.44 becomes D_crit ∝ W^0.44.
#
# That argument is the paper's **hypothesis, not a fact**. Adam divides each update by a running estimate
# of its gradient's size, so a block whose gradient is 100× smaller still takes steps of about the same
# size; and in a Pre-LN transformer every block adds to a residual stream with an identity path, so the
# gradient reaching an early block does not have to pass through the later ones. Small gradient norms
# need not mean blocks that do not learn. Notebook 3 measures τ on real models; notebook 7 asks whether a
# better learning rate removes the critical depth.
#
# The paper states D_crit two ways: a **working formula 2.43·ln W** and a **scaling law D_crit ∝ W^0.44**.
# They are different claims: a logarithm and a power law agree at one width (≈ 512, where both give ≈ 15)
# and part ways elsewhere (at W = 64: 10.1 vs 6.1; at W = 4096: 20.2 vs 37.8). The paper publishes the
# exponent but not the constant of τ, so τ here is a slider.

# %%
widgets.persistence_explorer(depth=24, tau=tau)

# %%
nb.figure(charts.persistence_profile_chart(24, tau), "gradient_persistence")
nb.say(f"With τ = {tau:g}, the first of 24 blocks receives {math.exp(-23 / tau):.1%} of the last block's "
       f"gradient; at 48 blocks, {math.exp(-47 / tau):.2%}.")

# %% [markdown]
# ## The counterpoint: MobileLLM
#
# MobileLLM (Liu et al. 2024) argues the opposite for models below a billion parameters. Its 125M model
# is **30 layers × 576 wide** (9 heads, 3 key-value heads, SwiGLU MLP of 1536, shared input/output
# embeddings), its 350M model **32 layers × 960**. Deep-and-thin beat balanced and wide-shallow designs
# of the same size, with +2.7% and +4.3% average zero-shot accuracy over the previous best 125M and 350M
# models. Its *immediate block-wise weight sharing* — each block applied twice in a row — adds depth
# without parameters and a further +0.7% / +0.8%.

# %%
mobile = pd.DataFrame([dict(model="MobileLLM-125M", depth=30, width=576), dict(model="MobileLLM-350M", depth=32, width=960)])
mobile["paper_d_crit"] = [paper_critical_depth(w) for w in mobile.width]
mobile["depth_over_d_crit"] = mobile.depth / mobile.paper_d_crit
nb.say(f"By the Depth Delusion's formula, MobileLLM-125M's width of 576 gives D_crit ≈ {mobile.paper_d_crit[0]:.1f}, "
       f"yet it uses {mobile.depth[0]} layers — {mobile.depth_over_d_crit[0]:.1f}× deeper than the paper says is "
       f"useful; MobileLLM-350M is {mobile.depth_over_d_crit[1]:.1f}× deeper. One of the two claims has to give "
       f"at small scale: notebook 6 tests MobileLLM's, notebooks 2–5 the Depth Delusion's.")
mobile

# %% [markdown]
# ## A race: deep-thin against wide-shallow, equal parameters
#
# | held equal | differs |
# |---|---|
# | non-embedding parameters (12·D·W²), training tokens, seed, learning rate and schedule | depth and width — and so FLOPs per token (attention adds 6·D·T·W) and sequential work per step |
#
# Two models with the same non-embedding parameters, trained on the same tokens of the corpus with the
# same seed and learning rate, one after the other on this machine. Left: validation loss against tokens
# seen (which shape learns more per token); right: against training seconds, each clock starting at its
# run's first step (deep-thin models do more sequential work per token, so on a CPU they are usually
# slower). Runs are stored: re-running this notebook shows the stored curves at once.
#
# A short race favours wide-shallow: a shallow model's early loss falls fast (few layers to coordinate,
# larger per-layer updates), while a deep one needs more steps before its extra layers pay off. Who
# leads after a few hundred steps says how fast each shape *starts*, not where it ends — which is why the
# other notebooks train longer and report the tokens per parameter of every result.

# %%
pairs = nb.design()
nb.show_design(pairs)

# %%
labels = [f"D={m.depth} W={m.width}" for m, _ in pairs]
live = widgets.LiveChart("race: validation loss")
display(live.out)
race = widgets.race(pairs, labels, store=nb.store, live=live)

# %%
nb.figure(live.chart(), "race")
race[["run_id", "depth", "width", "non_embedding_params", "params", "tokens", "val_loss", "wall_seconds"]]

# %%
a, b = race.iloc[0], race.iloc[1]
winner, loser = (a, b) if a.val_loss < b.val_loss else (b, a)
nb.say(f"After {int(a.tokens):,} tokens each, **D={winner.depth} W={winner.width}** reached validation loss "
       f"{winner.val_loss:.4f} against {loser.val_loss:.4f} for D={loser.depth} W={loser.width} (a gap of "
       f"{loser.val_loss - winner.val_loss:.4f} nats, one seed each: a demonstration, not a measurement — "
       f"notebook 6 repeats it with seeds and intervals). Training took {a.wall_seconds:.1f} s for "
       f"D={a.depth} and {b.wall_seconds:.1f} s for D={b.depth} on this machine.")
nb.finish();
