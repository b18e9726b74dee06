"""Learning-rate transfer: coordinate checks, learning-rate sweeps and the best learning rate per shape.

The Depth Delusion paper trained every shape at one learning rate. Under the standard parametrisation
(SP) the best learning rate moves with width and depth, so "deeper got worse" can mean "the learning
rate was wrong for that depth". μP (Yang et al., arXiv 2203.03466) keeps the optimum in place across
widths, CompleteP (Dey et al., arXiv 2505.01618) across depths too; their rules live in `dwlib.model`
and `dwlib.train.param_groups`. Here: `coord_check` / `coord_drift` / `worst_drift` test a
parametrisation; `log_spaced` / `lr_sweep` design a learning-rate sweep; `best_lr` / `lr_spread` read
its optima, `bracketed_best_lr` extends a grid until each optimum is bracketed. Only `coord_check` needs torch.
"""
from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pandas as pd

from .config import PARAMETRIZATIONS, ModelConfig, TrainConfig
from .fit.stats import local_vertex
from .sweep import as_list, design

# Activation sites a coordinate check measures, in the order they are drawn.
SITES = ("embedding", "residual", "attn_logits", "logits")


# ---------------------------------------------------------------------------------------------
# Coordinate checks
# ---------------------------------------------------------------------------------------------

def coord_check(widths=(64, 128, 256, 512), *, depths=(2,), parametrizations=PARAMETRIZATIONS, steps: int = 4,
                lr: float = 3e-3, model: ModelConfig | None = None, train: TrainConfig | None = None,
                tokens=None, corpus: str = "stdlib", tokenizer: str = "byte", batch_size: int = 8,
                context: int = 32, seed: int = 0) -> pd.DataFrame:
    """The coordinate check of Yang et al. (arXiv 2203.03466): activation sizes over the first `steps`
    AdamW steps, for every width × depth × parametrisation.

    Each model starts from seed `seed` and trains at a constant `lr` (no warmup, no clipping: the check
    is about the size of the updates the rules allow). At step 0 and after every step one fixed
    validation batch is measured at each site: embedding (layer −1), residual stream after each block
    and attention logits q·k·scale, causal part (layers 0 … D−1), output logits (layer D).
    `scale` is the mean |x|; `delta` the mean |x_t − x_0|, the change since initialisation. Under a
    correct parametrisation both stay O(1) as width (and, under CompleteP, depth) grows; under SP with
    Adam the change grows like width or faster (each step moves every weight by ~lr, a layer sums
    `width` of those moves, and layers compound).

    model: base ModelConfig for the other fields (default base_width = min(widths), base_depth =
        min(depths)). train: TrainConfig for betas, ε and weight decay only. tokens: a
        `dwlib.data.Tokens`, else loaded from `corpus` / `tokenizer`.
    Returns a long frame: parametrization, width, depth, step, site, layer, scale, delta.
    """
    import torch

    from .data import load_tokens, val_batches
    from .train import build
    from .train import train as train_run

    widths, depths = _positive_ints("widths", widths), _positive_ints("depths", depths)
    parametrizations = _choices("parametrizations", parametrizations, PARAMETRIZATIONS)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if tokens is None:
        tokens = load_tokens(corpus, tokenizer)
    base = model or ModelConfig(base_width=min(widths), base_depth=min(depths))
    train = train or TrainConfig()
    # trained by train.train, step for step the batches any run of this seed sees, on the CPU in fp32
    run = TrainConfig(corpus=tokens.corpus, tokenizer=tokens.tokenizer, steps=steps, batch_size=batch_size, lr=lr,
                      schedule="constant", warmup=0, grad_clip=0.0, beta1=train.beta1, beta2=train.beta2,
                      eps=train.eps, weight_decay=train.weight_decay, seed=seed, eval_every=steps, eval_batches=1,
                      grad_norm_steps=(), device="cpu", threads=torch.get_num_threads())
    probe, _ = val_batches(tokens, 1, batch_size, context)[0]

    rows = []
    for parametrization, depth, width in itertools.product(parametrizations, depths, widths):
        cfg = dataclasses.replace(base, depth=depth, width=width, context=context,
                                  vocab_size=tokens.vocab_size, parametrization=parametrization)
        initial = build(cfg, run, torch.device("cpu"))[0]   # the model train() starts from (same seed)
        first = _activations(initial, probe)

        def measure(step, net):
            for (site, layer), value in _activations(net, probe).items():
                rows.append(dict(parametrization=parametrization, width=width, depth=depth, step=step,
                                 site=site, layer=layer, scale=value.abs().mean().item(),
                                 delta=(value - first[site, layer]).abs().mean().item()))

        measure(0, initial)
        train_run(cfg, run, progress=False, tokens=tokens, on_step=measure)
    return pd.DataFrame(rows)


def _activations(net, idx) -> dict:
    """{(site, layer): tensor} for one forward pass of `idx` through `net` (no grad, eval mode)."""
    import torch

    acts, hooks = {}, []

    def attention_logits(i):
        def hook(module, args, output):
            q, k, _ = module.rotated_qkv(*args)
            T = q.size(-2)
            logits = (q @ k.transpose(-2, -1)) * module.scale
            causal = torch.ones(T, T, dtype=torch.bool).tril()
            acts["attn_logits", i] = logits[..., causal]      # the entries softmax actually sees
        return hook

    def output(key):
        def hook(module, args, out):
            acts[key] = out                                   # a shared block: after its last application
        return hook

    hooks.append(net.embed.register_forward_hook(output(("embedding", -1))))
    for i, block in enumerate(net.blocks):
        hooks.append(block.attn.register_forward_hook(attention_logits(i)))
        hooks.append(block.register_forward_hook(output(("residual", i))))
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            acts["logits", len(net.blocks)] = net(idx)
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
    return {key: acts[key].detach().float() for key in sorted(acts, key=lambda k: (SITES.index(k[0]), k[1]))}


def coord_drift(frame: pd.DataFrame, *, over: str = "width", value: str = "delta", step: int | None = None,
                layer: str = "last") -> pd.DataFrame:
    """How fast each site's activation size grows with width (or depth): the least-squares slope of
    log(size) on log(width) at `step` (default: the last), per parametrization × site × other size.

    Blocks' sites are read at the last block (`layer='last'`: where SP's per-layer changes have all
    added up, so depth drift shows most) or averaged over blocks (`layer='mean'`). Slope 0: the size
    does not change with width (μP, CompleteP); 1: it doubles when width doubles (SP's Adam updates,
    per layer). `ratio`: largest over smallest size.
    Columns: parametrization, site, over, <other size>, slope, ratio, n_sizes, step.
    """
    if over not in ("width", "depth"):
        raise ValueError(f"over must be 'width' or 'depth', got {over!r}")
    if value not in ("delta", "scale"):
        raise ValueError(f"value must be 'delta' or 'scale', got {value!r}")
    if layer not in ("last", "mean"):
        raise ValueError(f"layer must be 'last' or 'mean', got {layer!r}")
    missing = {"parametrization", "width", "depth", "step", "site", "layer", value} - set(frame.columns)
    if missing:
        raise ValueError(f"frame lacks column(s) {sorted(missing)}: pass the frame coord_check returned")
    step = int(frame["step"].max()) if step is None else step
    at = frame[frame["step"] == step]
    if at.empty:
        raise ValueError(f"no rows at step {step}; steps in the frame: {sorted(frame['step'].unique())}")
    other = "depth" if over == "width" else "width"
    if layer == "last":   # embedding (−1) and logits (D) have one layer each; blocks keep their last
        at = at[at["layer"] == at.groupby(["parametrization", "width", "depth", "site"])["layer"].transform("max")]
    sizes = at.groupby(["parametrization", "site", other, over], sort=False)[value].mean().reset_index()
    rows = []
    for (parametrization, site, fixed), g in sizes.groupby(["parametrization", "site", other], sort=False):
        g = g.sort_values(over)
        if len(g) < 2:
            raise ValueError(f"coord_drift over {over} needs at least 2 {over}s; the frame has {g[over].tolist()} "
                             f"at {other} {fixed}")
        x, y = np.log(g[over].to_numpy(float)), g[value].to_numpy(float)
        slope = float(np.polyfit(x, np.log(y), 1)[0]) if (y > 0).all() else math.nan
        rows.append({"parametrization": parametrization, "site": site, "over": over, other: fixed,
                     "slope": slope, "ratio": float(y.max() / y.min()) if y.min() > 0 else math.inf,
                     "n_sizes": len(g), "step": step})
    return pd.DataFrame(rows)


def worst_drift(drift: pd.DataFrame, sites=("residual", "attn_logits", "logits")) -> pd.Series:
    """The largest |slope| over `sites` per parametrisation, from `coord_drift`'s frame (the embedding
    is left out by default: its size never depends on width, so it cannot fail)."""
    chosen = drift[drift["site"].isin(as_list("sites", sites))]
    if chosen.empty:
        raise ValueError(f"no rows for sites {sites}; sites in the frame: {sorted(drift['site'].unique())}")
    return chosen.groupby("parametrization", sort=False)["slope"].apply(lambda s: float(s.abs().max()))


# ---------------------------------------------------------------------------------------------
# Learning-rate sweeps
# ---------------------------------------------------------------------------------------------

def log_spaced(low: float, high: float, n: int) -> list[float]:
    """`n` learning rates spaced evenly in log between `low` and `high` (inclusive), rounded to
    3 significant digits so they read well in tables and hash stably into run keys."""
    if not (low > 0 and high > low):
        raise ValueError(f"need 0 < low < high, got low={low!r}, high={high!r}")
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    return [float(f"{v:.3g}") for v in np.geomspace(low, high, n)]


def lr_sweep(lrs, shapes, seeds=(0,), *, parametrizations=("sp",), **spec) -> list[tuple]:
    """Every parametrization × (depth, width) shape × lr × seed: `sweep.design("grid", …)` per
    parametrization, with `spec` its other keywords (base configs, any config field). Give `lrs`
    log-spaced (`log_spaced`): near its minimum the loss is roughly a parabola in log(lr), which `best_lr` fits.

        pairs = lr_sweep(log_spaced(1e-3, 3e-2, 6), [(2, 64), (2, 128), (2, 256)],
                         parametrizations=["sp", "mup"], base_width=64, steps=300)
    """
    return [pair for parametrization in as_list("parametrizations", parametrizations)
            for pair in design("grid", shapes=shapes, seeds=seeds, vary={"lr": lrs}, parametrization=parametrization,
                               **spec)]


def best_lr(frame: pd.DataFrame, *, loss: str = "val_loss", by=("parametrization", "depth", "width"),
            window: int = 5, n_boot: int = 1000, level: float = 0.95, random_state: int = 0) -> pd.DataFrame:
    """The best learning rate of each shape in a sweep's runs frame, with a bootstrap interval.

    Per group of `by`: average the loss over seeds at each lr, take the grid minimum, and fit a parabola
    in log(lr) to the `window` lrs centred on it (every run a point); the best lr is its vertex, kept
    inside the window. Why: sweeps step by 2× or more, while how far the optimum moves across widths
    is less than a step; the vertex of a local quadratic interpolates between grid points (as Everett
    et al., arXiv 2407.05872, and DeepSeek LLM, arXiv 2401.02954, read optima). A window, not all
    points: far from the optimum the curve is no parabola (divergence walls, plateaus).

    Interval: percentiles of the vertex over `n_boot` resamples of the runs at each lr (≥ 2 seeds at
    every lr of the window) or of the parabola's residuals (one seed: rough).

    Diverged runs (or without a finite loss) count as infinitely bad: they bound the optimum but are
    left out of the parabola. If the grid minimum has no finite neighbour on one side (the end of the
    range, or the next lr diverged), `method` is 'edge' and `at_edge` True: best_lr is the grid minimum,
    the interval its neighbouring grid lrs (NaN past the range's end). If the parabola opens downward
    or its vertex leaves the window (noise, a late spike), `method` is 'grid': the grid minimum with
    its neighbours as the interval.

    Columns: the `by` columns, best_lr, lr_low, lr_high, best_loss (fitted loss at best_lr),
    grid_lr, grid_loss, at_edge, method, n_lrs, n_runs, n_diverged, seeds.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    if not isinstance(window, int) or window < 3:
        raise ValueError(f"window must be an integer >= 3 (a parabola needs 3 points), got {window!r}")
    if n_boot < 100:
        raise ValueError(f"n_boot must be at least 100, got {n_boot!r}")
    by = [by] if isinstance(by, str) else list(by)
    missing = (set(by) | {"lr", loss}) - set(frame.columns)
    if missing:
        raise ValueError(f"runs frame lacks column(s) {sorted(missing)} (columns: {list(frame.columns)})")
    runs = frame.copy()
    if "status" in runs.columns:
        runs = runs[runs["status"].isin(["complete", "diverged", "unstable"])]
    if runs.empty:
        raise ValueError("no complete or diverged runs in the frame")
    runs["_loss"] = runs[loss].astype(float).where(np.isfinite(runs[loss].astype(float)), np.inf)
    if "status" in runs.columns:
        runs.loc[runs["status"].isin(["diverged", "unstable"]), "_loss"] = np.inf
    if "seed" not in runs.columns:
        runs["seed"] = 0
    rng = np.random.default_rng(random_state)
    rows = []
    for key, g in runs.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key)), **_best_lr_one(g, window, n_boot, level, rng)})
    return pd.DataFrame(rows)


def _best_lr_one(g: pd.DataFrame, window: int, n_boot: int, level: float, rng) -> dict:
    lrs = np.sort(g["lr"].unique())
    base = dict(n_lrs=len(lrs), n_runs=len(g), n_diverged=int(np.isinf(g["_loss"]).sum()),
                seeds=int(g["seed"].nunique()))
    if not np.isfinite(g["_loss"]).any():
        return dict(best_lr=math.nan, lr_low=math.nan, lr_high=math.nan, best_loss=math.nan, grid_lr=math.nan,
                    grid_loss=math.nan, at_edge=False, method="none", **base)
    v = local_vertex(np.log(g["lr"].to_numpy(float)), g["_loss"].to_numpy(float), window=window, n_boot=n_boot,
                     level=level, rng=rng)
    on_grid = lambda x: float(lrs[np.argmin(np.abs(np.log(lrs) - x))]) if np.isfinite(x) else math.nan
    exact = v["method"].startswith("parabola")          # else best, low and high are grid learning rates
    lr = (lambda x: math.exp(x)) if exact else on_grid
    return dict(best_lr=lr(v["x"]), lr_low=lr(v["low"]), lr_high=lr(v["high"]), best_loss=v["value"],
                grid_lr=on_grid(v["grid_x"]), grid_loss=v["grid_y"], at_edge=v["method"] == "edge",
                method=v["method"], **base)


def bracketed_best_lr(train, pairs_at, lrs, groups, *, by, factor: float = 2.0, max_extensions: int = 2,
                      loss: str = "val_loss", n_boot: int = 1000, level: float = 0.95,
                      random_state: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`best_lr` of a sweep whose grid grows until each optimum is bracketed: every group at every lr in
    `lrs`, then, while a group's lowest mean loss sits at the top (bottom) of the rates it was trained at,
    one more rate `factor` × above (÷ below) that end — at most `max_extensions` rates per group, the
    stated cap. An optimum at an end means only "the best rate is at least this"; the question needs the
    optimum. A rate whose neighbour diverged is bounded by the divergence and is not extended.

    `groups`: the values of the `by` columns of each shape (a tuple, or one value for one column);
    `pairs_at(group, lr)` its runs at one rate (config pairs); `train(pairs)` trains them and returns their
    runs frame (a notebook's `nb.run`). Returns (runs, best): every run trained, and `best_lr`'s frame with
    `lrs_tried`, `extended` (rates added) and `cap_hit` (its best rate still at an end of the grid after
    `max_extensions` rates were added: only a bound)."""
    if not (factor > 1 and math.isfinite(factor)):
        raise ValueError(f"factor must be a finite number above 1, got {factor!r}")
    if not isinstance(max_extensions, int) or max_extensions < 0:
        raise ValueError(f"max_extensions must be a non-negative integer, got {max_extensions!r}")
    by = [by] if isinstance(by, str) else list(by)
    key = lambda g: g if isinstance(g, tuple) else (g,)
    tried = {key(g): sorted(float(v) for v in lrs) for g in groups}
    added = dict.fromkeys(tried, 0)
    runs = train([pair for g in groups for lr in lrs for pair in pairs_at(g, lr)])
    while True:
        best = best_lr(runs, loss=loss, by=by, n_boot=n_boot, level=level, random_state=random_state)
        rows = {tuple(r[b] for b in by): r for _, r in best.iterrows()}
        more = []
        for g in groups:
            k, row = key(g), rows.get(key(g))
            if row is None or not row["at_edge"] or added[k] >= max_extensions:
                continue
            grid = tried[k]
            if row["grid_lr"] == grid[-1]:
                new = float(f"{grid[-1] * factor:.3g}")
            elif row["grid_lr"] == grid[0]:
                new = float(f"{grid[0] / factor:.3g}")
            else:                                     # bounded by a diverged neighbour: nothing to extend
                continue
            tried[k], added[k] = sorted(grid + [new]), added[k] + 1
            more += pairs_at(g, new)
        if not more:
            break
        runs = pd.concat([runs, train(more)], ignore_index=True)
    keys = [tuple(r[b] for b in by) for _, r in best.iterrows()]
    best["lrs_tried"] = [len(tried.get(k, [])) for k in keys]
    best["extended"] = [added.get(k, 0) for k in keys]
    best["cap_hit"] = [bool(r["at_edge"]) and added.get(k, 0) >= max_extensions and r["grid_lr"] in
                       (tried[k][0], tried[k][-1]) for k, (_, r) in zip(keys, best.iterrows())]
    return runs, best


def lr_spread(best: pd.DataFrame, *, over: str = "width", by="parametrization") -> pd.DataFrame:
    """How far the best learning rate moves across sizes, from `best_lr`'s frame: per group of `by` and
    other size, the ratio of the largest to the smallest best lr, in octaves too, and the least-squares
    slope of log(best lr) on log(width or depth) (≈ −1 under SP with Adam, ≈ 0 when the lr transfers).
    `n_at_edge` counts shapes whose optimum lies at the sweep's edge (their best lr is only a bound).
    Columns: by…, <other size>, over, n_sizes, lr_min, lr_max, ratio, octaves, slope, n_at_edge."""
    if over not in ("width", "depth"):
        raise ValueError(f"over must be 'width' or 'depth', got {over!r}")
    by = [by] if isinstance(by, str) else list(by)
    other = "depth" if over == "width" else "width"
    need = set(by) | {over, other, "best_lr", "at_edge"}
    if need - set(best.columns):
        raise ValueError(f"frame lacks column(s) {sorted(need - set(best.columns))}: pass best_lr's frame")
    rows = []
    for key, g in best.dropna(subset=["best_lr"]).groupby(by + [other], sort=True):
        g = g.sort_values(over)
        if g[over].nunique() < 2:
            continue
        x, y = np.log(g[over].to_numpy(float)), np.log(g["best_lr"].to_numpy(float))
        rows.append({**dict(zip(by + [other], key)), "over": over, "n_sizes": len(g),
                     "lr_min": float(np.exp(y.min())), "lr_max": float(np.exp(y.max())),
                     "ratio": float(np.exp(y.max() - y.min())), "octaves": float((y.max() - y.min()) / math.log(2)),
                     "slope": float(np.polyfit(x, y, 1)[0]), "n_at_edge": int(g["at_edge"].sum())})
    if not rows:
        raise ValueError(f"no group has at least 2 {over}s to compare")
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

def _positive_ints(name, values) -> list[int]:
    values = as_list(name, values)
    for v in values:
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be positive integers, got {v!r}")
    return values


def _choices(name, values, options) -> list[str]:
    values = as_list(name, values)
    for v in values:
        if v not in options:
            raise ValueError(f"{name}: {v!r} is not one of {', '.join(options)}")
    return values
