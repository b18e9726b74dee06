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
# # 8 · Does depth buy reasoning that the loss hides?
#
# Every other notebook judges shapes by validation loss. The Depth Delusion's claims are about loss; its
# critics' are not: deeper models generalise more compositionally at equal loss or parameters (Petty et
# al. 2024, arXiv 2310.19956), looped or deeper models reason better even at worse perplexity (Saunshi et
# al. 2025, arXiv 2502.17416), MobileLLM's deep-thin win is in zero-shot accuracy (arXiv 2402.14905), and
# a k-hop induction needs depth that grows like log k (Sanford, Hsu & Telgarsky 2024).
#
# Here one set of runs gives both answers. Each model trains on a **mixed corpus**: text, with k-hop
# documents interleaved at a stated fraction of the training sequences. A k-hop document is a random
# sequence over a small alphabet; at each position the model must name the symbol reached by hopping k
# times to "the symbol after the most recent earlier occurrence of this one" (`dwlib/khop.py`). Every
# run records its **text** validation loss and its **k-hop accuracy** on a fixed validation set, per hop
# count, with the number of positions scored.
#
# | arm | held equal | differs |
# |---|---|---|
# | parameters | non-embedding parameters (12·D·W², matched within 13% on the head-dimension grid), tokens, seeds, schedule | depth and width |
# | FLOPs | training FLOPs per run (C), width, seeds, schedule | depth — and so the tokens C buys |
#
# The questions, each answered with a calibrated test (`bench/accuracy_calibration.py`): does a deeper
# shape score higher on the task than a shallower one of equal size (paired by seed)? Do the shapes rank
# the same by loss and by task accuracy? And how deep must a model be to reach a stated accuracy at k
# hops — does that depth grow like log₂ k?

# %% tags=["parameters"]
preset = "smoke"       # smoke (CI) | cpu (2 cores: the preset table below predicts its minutes) | gpu (one GPU)
corpus = "stdlib"      # the text half of the mixed corpus
tokenizer = "byte"
widths = None          # [width of the parameter arm's reference shape, width of the FLOP arm]; None: preset
depths = None          # depths tried in both arms; None: from the preset
budget = None          # training tokens per run in the parameter arm; None: from the preset
seeds = None
task = None            # the k-hop task's options as in the khop corpus spec (hop counts, alphabet); None: preset
fraction = None        # share of training sequences that are k-hop documents; None: from the preset
target = None          # the accuracy "reaching" means for the depth-per-hop reading; None: from the preset
device = "auto"
store_path = None      # None: outputs/runs.sqlite
executor = "local"     # local | parallel | ray
output_dir = None      # None: outputs/08_depth_reasoning/<preset>/
threads = None         # torch threads per run; None: $DWLIB_THREADS (`make lab` sets 1) or all cores

# %%
import altair as alt
from IPython.display import display

from dwlib import charts, data, fit, notebooks, presets, sweep, widgets

alt.renderers.enable("svg")
nb = notebooks.start("08_depth_reasoning", locals())
s = nb.settings

# %% [markdown]
# ## What each preset runs
#
# The parameter arm: every depth at the non-embedding parameters of the reference shape (`reference_depth`
# × the first width), all for `budget` tokens. The FLOP arm: every depth at the second width, all for the
# training FLOPs the reference shape spends, so a deeper model sees fewer tokens. Both on the same mixed
# corpus and seeds.

# %%
presets.preset_table("08_depth_reasoning")

# %% [markdown]
# ## The design at this preset

# %%
arms = presets.reasoning_design(s)
nb.show_design([pair for pairs in arms.values() for pair in pairs])
nb.say(f"Corpus `{presets.reasoning_corpus(s)}`: {s.fraction:.0%} of training sequences are k-hop documents "
       f"(hop counts {', '.join(map(str, presets.reasoning_hops(s)))}), the rest `{s.corpus}` text.")

# %%
runs = {arm: nb.run(pairs) for arm, pairs in arms.items()}
shown = ["run_id", "status", "depth", "width", "seed", "params", "tokens", "val_loss", "task_accuracy", "task_scored"]
display(runs["parameters"][shown])

# %% [markdown]
# ## Text loss and k-hop accuracy, from the same runs
#
# Left: text validation loss against depth; right: k-hop accuracy (all hop counts) against depth; faint
# points are runs, bars the 95% t-interval of the mean over seeds. Below: each shape's means with their
# intervals — accuracy intervals combine the binomial noise of each run's scored positions with the
# spread between seeds.

# %%
done = {arm: r[(r["status"] == "complete") & r["task_accuracy"].notna()] for arm, r in runs.items()}
for arm, frame in done.items():
    if len(frame):
        nb.figure(charts.accuracy_vs_depth(frame), f"accuracy_vs_depth_{arm}")
        display(fit.accuracy_table(frame))

# %% [markdown]
# ## Does the deeper shape score higher?
#
# In each arm, the deepest shape against the shallowest — over all hop counts, and at the largest hop
# count, where the depth argument bites hardest: the difference in accuracy, paired by seed (a seed fixes
# the data order for both), with a 95% t-interval over seeds whose standard error is never below the
# validation set's binomial one. `bench/accuracy_calibration.py` measures this test's false-positive rate
# and power on planted accuracies (bench/RESULTS.md). A negative verdict says the smallest difference it
# could have detected.

# %%
for arm, frame in done.items():
    shapes = sorted({(int(d), int(w)) for d, w in zip(frame["depth"], frame["width"])})
    if len(shapes) < 2:
        nb.say(f"{arm} arm: fewer than two shapes finished; nothing to compare.")
        continue
    for hops in (None, max(presets.reasoning_hops(s))):
        result, why = nb.attempt(fit.compare_accuracy, frame, shapes[0], shapes[-1], hops=hops)
        nb.verdict(fit.verdicts.accuracy_sentence(result, arm=arm, regime=fit.verdicts.regime_of(frame))
                   if result else f"{arm} arm: not compared — {why}", headline=bool(result) and hops is None)

# %% [markdown]
# ## Do loss and reasoning rank the shapes alike?
#
# If the loss hides what depth buys, the shapes' ranking by text loss and by task accuracy disagree:
# Kendall's τ between the two rankings, with a parametric-bootstrap interval (each shape's mean loss and
# mean accuracy drawn from their sampling distributions), and any pair of shapes that loss and accuracy
# order oppositely with both differences clear (Bonferroni over the pairs).

# %%
for arm, frame in done.items():
    agreement, why = nb.attempt(fit.ranking_agreement, frame, n_boot=s.n_boot)
    nb.verdict(fit.verdicts.agreement_sentence(agreement, arm=arm) if agreement else
               f"{arm} arm: no ranking comparison — {why}", headline=bool(agreement))

# %% [markdown]
# ## Accuracy by hop count, and the depth each hop count needs
#
# One line per depth: accuracy against k. Sanford et al. prove that k hops need depth growing like
# log k for a transformer of bounded width; below, for each k, the shallowest depth whose accuracy reaches
# `target`, against log₂ k — a slope with its interval where three or more hop counts reach it.

# %%
frame = done["parameters"]
if len(frame):
    nb.figure(charts.accuracy_by_hops(frame), "accuracy_by_hops")
    needed, why = nb.attempt(fit.depth_for_accuracy, frame, s.target)
    if needed:
        nb.figure(charts.depth_for_accuracy_chart(needed), "depth_for_accuracy")
        nb.verdict(fit.verdicts.depth_for_accuracy_sentence(needed))
    else:
        nb.say(f"No depth-per-hop reading — {why}")

# %% [markdown]
# ## Explore a shape
#
# Pick a depth, a width and the largest hop count k (the task then holds hop counts 1, 2, 4 … up to k):
# the shape's size and predicted cost update at once. **Train** trains it as the parameter arm's runs
# were trained — same corpus mix, tokens, schedule and first seed — and shows its accuracy at each hop
# count beside the arm's. Nothing trains unless you click.

# %%
arm_train = arms["parameters"][0][1]


def pair_for(depth, width, hops):
    corpus = presets.reasoning_corpus(s, max_hops=hops)
    return sweep.make_pair(s.model(vocab_size=data.vocab_size(corpus, s.tokenizer)), arm_train,
                           depth=depth, width=width, corpus=corpus)


hop_choices = [k for k in (1, 2, 4, 8, 16) if k <= max(16, *presets.reasoning_hops(s))]
widgets.explore(nb, pair_for, {"depth": widgets.depth_slider(s.reference_depth, high=max(32, *s.depths)),
                               "width": widgets.width_slider(s.widths[0], step=s.head_dim, high=max(256, *s.widths)),
                               "hops": widgets.choice_slider(hop_choices, near=max(presets.reasoning_hops(s)),
                                                             description="k (hops)")},
                runs=frame, chart=charts.accuracy_by_hops);

# %% [markdown]
# ## What this run shows

# %%
for arm, r in runs.items():
    finished = int((r["status"] == "complete").sum())
    nb.say(f"{arm} arm: {finished} of {len(r)} runs finished; preset `{s.preset}`, corpus "
           f"`{presets.reasoning_corpus(s)}`.")
nb.finish();
