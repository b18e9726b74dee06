"""Sweeps: designs that list runs, and executors that train them into a results store.

`design(kind, **spec)` returns a list of (ModelConfig, TrainConfig) pairs; `run_sweep(pairs, executor=...)`
trains every pair not already in the store and returns the store's frame of those runs:

    pairs = design("depth", depths=[2, 4, 8, 16], widths=[128], steps=500)
    frame = run_sweep(pairs, store="outputs/runs.sqlite", executor="parallel")

Designs: the kinds of `design`; `anneal` trains runs that differ only in budget as one trunk with a
cooldown branch per smaller budget.

Executors: "local" (in this process, one run after another), "parallel" (worker processes sharing
the machine's cores: small models use cores far better side by side than with many threads each),
"ray" (one Ray task per run, on a local instance or any node of a cluster; only the driver opens the
store). Every run is claimed in the store before it trains, so sweeps in several processes at once
never train a run twice, and a run interrupted in any way resumes from its checkpoint the next time
it is asked for.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import os
import threading
import time
import warnings
from pathlib import Path

from .config import (WSD_SCHEDULES, ModelConfig, TrainConfig, available_cores, cooldown_steps, count_params,
                     decay_start, default_threads, flops_per_token, non_embedding_params, paper_critical_depth,
                     run_key, steps_for_budget, to_dict, tokens_per_step)
from .store import DONE, Store, StoreError, owner_id

LEASE_SECONDS = 60.0      # a dead holder's run becomes claimable this long after its last heartbeat
POLL_SECONDS = 2.0        # how often a sweep checks on a run another process is training
RAY_RETRIES = 3           # Ray resubmits a run whose worker or node died this often; each resumes from its checkpoint
EXECUTORS = ("local", "parallel", "ray")
BUDGET_FIELDS = ("steps", "tokens", "flops")
MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig))
TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))


# ---------------------------------------------------------------------------------------------
# One run, through the store
# ---------------------------------------------------------------------------------------------

def as_store(store) -> Store:
    """A Store from a Store, a path, or None (the default `outputs/runs.sqlite`)."""
    if isinstance(store, Store):
        return store
    return Store() if store is None else Store(store)


def load_tokens(corpus: str, tokenizer: str):
    # imported here so designing a sweep or listing a store does not import torch (≈2 s)
    from .data import load_tokens as load
    return load(corpus, tokenizer)   # a cache hit costs ~20 ms (stat of the corpus files)


def key_for(model_cfg: ModelConfig, train_cfg: TrainConfig, tokens=None) -> str:
    """The run key of a pair (loads the corpus to read its fingerprint unless `tokens` is given)."""
    tokens = tokens if tokens is not None else load_tokens(train_cfg.corpus, train_cfg.tokenizer)
    return run_key(model_cfg, train_cfg, tokens.fingerprint)


def run(model_cfg: ModelConfig, train_cfg: TrainConfig, *, store=None, progress: bool = True,
        on_eval=None, tokens=None, lease_seconds: float = LEASE_SECONDS, wait: bool = True,
        checkpoint_dir=None) -> dict | None:
    """Train one run into the store, or return its stored result if it is already complete or diverged.

    The run is claimed first; while it trains, a background thread renews the lease. If another process
    holds the run, this waits for it (or returns None at once with wait=False; if that process fails,
    this raises RuntimeError with its error instead of repeating it). Interrupted runs resume from their
    checkpoint (`checkpoint_location`: in `checkpoint_dir`, by default `<store dir>/checkpoints/`),
    which is deleted once the result is stored.
    An exception is recorded as status 'failed' with its message and re-raised; Ctrl-C leaves the run
    resumable and re-raises. The record's `resumed_from_step` says where training began (0: a fresh start).
    """
    return _run(model_cfg, train_cfg, as_store(store), progress, on_eval, tokens, lease_seconds, wait,
                checkpoint_dir=checkpoint_dir)[0]


def _run(model_cfg, train_cfg, store, progress, on_eval, tokens, lease_seconds, wait, fork_at=None,
         checkpoint_dir=None):
    """run(), also saying how the result came: 'cached', 'trained', or 'busy' (held elsewhere, no wait)."""
    if tokens is None:
        tokens = load_tokens(train_cfg.corpus, train_cfg.tokenizer)
    key = run_key(model_cfg, train_cfg, tokens.fingerprint)
    config = {"model": to_dict(model_cfg), "train": to_dict(train_cfg),
              "corpus_fingerprint": tokens.fingerprint}
    location = checkpoint_location(store, key, checkpoint_dir)
    owner = owner_id()
    waited = False
    while True:
        how, result = _claim(store, key, config, owner, lease_seconds, location, waited)
        if how == "cached":
            return result, "cached"
        if how == "claimed":
            break
        if not wait:
            return None, "busy"
        waited = True
        time.sleep(POLL_SECONDS)

    stop_renewing = _keep_leases(store, owner, {key}, lease_seconds)
    try:
        from .train import train
        result = train(model_cfg, train_cfg, checkpoint=location, progress=progress, on_eval=on_eval,
                       tokens=tokens, fork_at=fork_at)
    except BaseException as e:
        stop_renewing()
        if isinstance(e, Exception):
            store.fail(key, f"{type(e).__name__}: {e}", owner)
        else:   # Ctrl-C, SystemExit: not the run's fault; the next claimant may resume it at once
            store.release(key, owner)
        raise
    stop_renewing()
    _store_result(store, key, result, owner, location)
    return result, "trained"


def checkpoint_location(store: Store, key: str, checkpoint_dir=None) -> str:
    """Where run `key` saves its checkpoint while it trains: `<checkpoint_dir>/<key>.pt`, a local folder or
    the URI of storage every node of a cluster reaches (s3://bucket/dwlib, gs://…, file://…; see
    `train.checkpoint_fs`), by default beside the store. Local paths are made absolute: a Ray worker's
    working directory is not the driver's."""
    if checkpoint_dir is None:
        return str(store.checkpoint_path(key).resolve())
    if "://" in str(checkpoint_dir):
        return f"{str(checkpoint_dir).rstrip('/')}/{key}.pt"
    return str(Path(checkpoint_dir).resolve() / f"{key}.pt")


def _claim(store, key, config, owner, lease_seconds, location, waited) -> tuple[str, dict | None]:
    """One try at a run: ('cached', its result) when it is final, ('claimed', None) when `owner` now holds
    it, ('busy', None) when another holder has it. If the run failed in the process we `waited` for,
    raises RuntimeError with that error rather than repeat it."""
    row = store.get(key)
    if row is not None and row["status"] in DONE:
        return "cached", row["result"]
    if waited and row is not None and row["status"] == "failed":
        raise RuntimeError(f"run {key[:10]} failed in another process: {row['error']}")
    if store.claim(key, config, owner, lease_seconds, checkpoint=location):
        if row is not None:   # an earlier attempt may have checkpointed elsewhere (another --checkpoint-dir)
            from .train import adopt_checkpoint
            adopt_checkpoint(row["checkpoint"], location)
        return "claimed", None
    return "busy", None


def _keep_leases(store, owner, keys: set, lease_seconds):
    """Renew `owner`'s leases on `keys` (a set the caller may change meanwhile) from a background thread,
    four times per lease; returns the function that stops it. A key taken over after we stalled past its
    lease is dropped: `finish` will refuse our result."""
    stop = threading.Event()

    def renew():
        while not stop.wait(lease_seconds / 4):
            for key in list(keys):
                try:
                    if not store.heartbeat(key, owner, lease_seconds):
                        keys.discard(key)
                except Exception:   # a busy or briefly unreadable store: try again next beat
                    pass

    thread = threading.Thread(target=renew, name="dwlib-leases", daemon=True)
    thread.start()
    return lambda: (stop.set(), thread.join())


def _store_result(store, key, result, owner, location) -> None:
    """Record a finished run and delete its checkpoint, unless another process took the run over after
    our lease lapsed (then its result is the one stored)."""
    from .train import remove_checkpoint
    if store.finish(key, result, owner):
        remove_checkpoint(location)
    else:
        warnings.warn(f"run {key[:10]} was taken over by another process after its lease lapsed; "
                      "that process's result is the one stored", RuntimeWarning)


def checkpoint_step(location) -> int:
    """The step a checkpoint was saved at (0 if there is none). A local file is memory-mapped: no weights
    are read. An unreadable file is a ValueError naming it (the trainer moves such a file aside and
    starts over)."""
    import torch
    from .train import checkpoint_fs
    fs, path = checkpoint_fs(location)
    if not fs.exists(path):
        return 0
    try:
        if "file" in fs.protocol:
            return int(torch.load(path, map_location="cpu", weights_only=False, mmap=True)["state"]["step"])
        with fs.open(path, "rb") as f:
            return int(torch.load(f, map_location="cpu", weights_only=False)["state"]["step"])
    except Exception as e:
        raise ValueError(f"checkpoint {location} cannot be read ({type(e).__name__}: {e})") from None


# ---------------------------------------------------------------------------------------------
# Designs
# ---------------------------------------------------------------------------------------------

# Each design's own keywords, beside depths, widths, shapes, seeds, vary, anneal_at and config fields
DESIGNS = {"grid": (), "depth": (), "width": (), "compute-matched": (), "critical-depth": ("factor", "match", "critical_depth"),
           "isoflop": ("budgets", "aspect_ratios", "min_steps", "annealed"), "matched": ("reference_depth", "match")}
FLOP_DESIGNS = ("compute-matched", "critical-depth", "isoflop")   # every run's budget is FLOPs
SHAPES_HELP = "give shapes=[(depth, width), ...], or depths with widths, or depths with aspect_ratios (isoflop)"


def design(kind: str, *, depths=None, widths=None, shapes=None, seeds=None, model=None, train=None, vary=None,
           anneal_at=None, **spec) -> list[tuple]:
    """The (ModelConfig, TrainConfig) pairs of a sweep design: the one place designs are made, for the
    command line (--design), the notebooks' presets and scripts alike. E.g.
    design("depth", depths=[2, 4, 8], widths=[128], seeds=[0, 1], tokens=10**6, anneal_at=[2.5e5, 1e6]).

        grid             depths × widths, or `shapes` [(depth, width)], × each field in `vary` × seeds
        depth            the same, width by width: the paper's depth sweep at each width
        width            the same as grid: widths at a depth
        compute-matched  as grid, every shape trained for the same `flops` C: C / FLOPs-per-token tokens,
                         rounded to whole steps (matched to within one step's FLOPs)
        matched          every depth at the size of the shape (reference_depth, default the first depth;
                         width): its non-embedding parameters, or FLOPs per token with match='flops'
        critical-depth   the paper's third experiment at `flops` C: matched at the predicted critical depth
                         D_c = round(critical_depth(W)) (default 2.43·ln W) and factor·D_c (default 2), or at
                         the two `depths` given (reference, deeper)
        isoflop          every shape at each FLOP budget in `budgets` (shapes, depths × widths, or depths ×
                         aspect_ratios: width = ratio·depth rounded to a valid width), except where a budget
                         buys fewer than `min_steps` (10) steps: dropped, with a warning. annealed=True: each
                         shape and seed once, a trunk to its largest budget and a cooldown branch per smaller one

    depths and widths default to the base model's, seeds to the base training config's; `model` and
    `train` are the base configs, any other keyword a config field (`make_pair`). anneal_at: token budgets:
    every run once per budget, fully annealed (`anneal`); the fields schedule (default wsd-sqrt), cooldown
    and warmup give the schedule of these and of annealed=True.
    """
    if kind not in DESIGNS:
        raise ValueError(f"design must be one of {', '.join(DESIGNS)}; got {kind!r}")
    own = {k: spec.pop(k) for k in DESIGNS[kind] if k in spec}
    stray = [k for k in dict.fromkeys(k for keys in DESIGNS.values() for k in keys) if k in spec]
    if stray:
        raise ValueError(f"design {kind} takes no {', '.join(stray)}")
    if anneal_at is not None and kind in FLOP_DESIGNS:
        raise ValueError(f"anneal_at sets token budgets; design {kind} matches FLOP budgets")
    m, t = make_pair(model, train, **spec)
    wsd = dict(schedule=spec.get("schedule", "wsd-sqrt"), cooldown=t.cooldown, warmup=t.warmup)
    common = dict(seeds=[t.seed] if seeds is None else seeds, model=model, train=train, vary=vary, **spec)
    if kind in ("compute-matched", "critical-depth"):
        _positive("flops", t.flops)
        common["flops"] = float(t.flops)
    pairs = grid(shapes=_design_shapes(kind, depths, widths, shapes, m, own), **common)
    if kind == "isoflop":
        return _isoflop(pairs, own.get("budgets"), own.get("min_steps", 10), wsd if own.get("annealed") else None)
    return pairs if anneal_at is None else anneal(pairs, anneal_at, **wsd)


def make_pair(model: ModelConfig | None = None, train: TrainConfig | None = None, **fields):
    """(ModelConfig, TrainConfig) from base configs and field overrides, each routed to its config.
    Giving one budget (steps / tokens / flops) replaces the base's budget."""
    unknown = sorted(set(fields) - set(MODEL_FIELDS) - set(TRAIN_FIELDS))
    if unknown:
        raise ValueError(f"unknown config field(s) {', '.join(unknown)}; model fields: "
                         f"{', '.join(MODEL_FIELDS)}; training fields: {', '.join(TRAIN_FIELDS)}")
    model_kw = {k: v for k, v in fields.items() if k in MODEL_FIELDS}
    train_kw = {k: v for k, v in fields.items() if k in TRAIN_FIELDS}
    if any(train_kw.get(b) is not None for b in BUDGET_FIELDS):
        train_kw = {**{b: None for b in BUDGET_FIELDS}, **train_kw}
    model = dataclasses.replace(model or ModelConfig(), **model_kw)
    train = dataclasses.replace(train or TrainConfig(), **train_kw)
    return model, train


def grid(depths=None, widths=None, seeds=(0,), *, shapes=None, model=None, train=None, vary=None,
         **fields) -> list[tuple]:
    """Every (depth, width) — depths × widths, or `shapes` — × (each field in `vary`) × seed, with `fields`
    fixed. E.g. grid([2, 4], [64, 128], seeds=[0, 1], steps=300, vary={"lr": [1e-3, 3e-3]})."""
    if shapes is None:
        shapes = list(itertools.product(as_list("depths", depths), as_list("widths", widths)))
    shapes, seeds = _shapes(shapes), as_list("seeds", seeds)
    vary = {name: as_list(f"vary[{name!r}]", values) for name, values in (vary or {}).items()}
    fixed = {"depth", "width", "seed", *fields} | (set(BUDGET_FIELDS) if set(fields) & set(BUDGET_FIELDS) else set())
    clash = sorted(set(vary) & fixed)   # the design's own value would win without a word
    if clash:
        raise ValueError(f"vary[{clash[0]!r}] conflicts with the design, which sets every run's {clash[0]} (give "
                         "depths, widths, seeds, shapes, budgets and fixed fields as such, not in vary)")
    pairs = []
    for (depth, width), *varied, seed in itertools.product(shapes, *vary.values(), seeds):
        pairs.append(make_pair(model, train, **{**fields, **dict(zip(vary, varied)),
                                                "depth": depth, "width": width, "seed": seed}))
    return pairs


def width_step(model: ModelConfig) -> int:
    """Widths must keep the head layout valid: multiples of head_dim, or of 2·n_heads when the head
    count is fixed (RoPE needs an even head size)."""
    return 2 * model.n_heads if model.n_heads is not None else model.head_dim


def matched_width(depth: int, reference: ModelConfig, match: str = "params") -> int:
    """The width (a multiple of `width_step`) that gives a model of `depth` blocks the reference's
    non-embedding parameters (match='params') or training FLOPs per token (match='flops')."""
    measures = {"params": non_embedding_params, "flops": flops_per_token}
    if match not in measures:
        raise ValueError(f"match must be 'params' or 'flops', got {match!r}")
    measure, target = measures[match], measures[match](reference)
    step = width_step(reference)
    # N grows like D·W², so the answer lies near W·sqrt(D_ref / D); search a generous range around it
    guess = reference.width * math.sqrt(reference.depth / depth)
    candidates = range(step, max(2 * step, int(3 * guess) + step), step)
    return min(candidates, key=lambda w: (abs(measure(dataclasses.replace(reference, depth=depth, width=w))
                                              - target), w))


def _design_shapes(kind, depths, widths, shapes, base, own) -> list[tuple[int, int]]:
    """The (depth, width) shapes of a design, in its order; depths and widths default to `base`'s."""
    if kind in ("matched", "critical-depth"):
        if shapes is not None:
            raise ValueError(f"design {kind} takes depths and widths, not shapes")
        return [shape for width in as_list("widths", [base.width] if widths is None else widths)
                for shape in _matched(kind, depths, width, base, **own)]
    if kind == "isoflop" and own.get("aspect_ratios") is not None:
        if shapes is not None or widths is not None:
            raise ValueError(SHAPES_HELP)
        step = width_step(base)
        ratios = itertools.product(as_list("depths", [base.depth] if depths is None else depths),
                                   as_list("aspect_ratios", own["aspect_ratios"]))
        return list(dict.fromkeys((d, max(step, step * round(r * d / step))) for d, r in ratios))
    if shapes is not None:
        if depths is not None or widths is not None:
            raise ValueError(SHAPES_HELP)
        return shapes
    depths = as_list("depths", [base.depth] if depths is None else depths)
    widths = as_list("widths", [base.width] if widths is None else widths)
    return [(d, w) for w in widths for d in depths] if kind == "depth" else list(itertools.product(depths, widths))


def _matched(kind, depths, width, base, *, reference_depth=None, match="params", factor=2.0,
             critical_depth=paper_critical_depth) -> list[tuple[int, int]]:
    """A matched design's shapes at `width`: the reference shape, and every other depth at its size."""
    if kind == "matched":
        depths = as_list("depths", [base.depth] if depths is None else depths)
        reference_depth = depths[0] if reference_depth is None else reference_depth
    elif depths is None:   # the paper's pair
        reference_depth = max(1, round(critical_depth(width)))
        depths = [reference_depth, max(reference_depth + 1, round(factor * reference_depth))]
    elif len(depths) == 2:
        reference_depth = depths[0]
    else:
        raise ValueError(f"give two depths (reference, deeper) or none (the paper's pair), got {depths}")
    reference = dataclasses.replace(base, depth=reference_depth, width=width)
    return [(d, width if d == reference_depth else matched_width(d, reference, match)) for d in depths]


def _isoflop(pairs, budgets, min_steps, wsd) -> list[tuple]:
    """isoflop: each pair at every FLOP budget that buys it `min_steps` steps; with `wsd` (annealed), each
    pair once over those budgets' tokens (C / FLOPs per token), a trunk and its cooldown branches."""
    if budgets is None:
        raise ValueError("isoflop needs FLOP budgets: budgets=[C1, C2, ...]")
    budgets = as_list("budgets", budgets)
    for c in budgets:
        _positive("budget", c)
    kept = [[c for c in budgets if steps_for_budget(*make_pair(m, t, flops=float(c))) >= min_steps] for m, t in pairs]
    dropped = list(dict.fromkeys(f"D={m.depth} W={m.width} at C={c:.3g}" for c in budgets
                                 for (m, _), cs in zip(pairs, kept) if c not in cs))   # once over seeds
    if dropped:
        warnings.warn(f"isoflop: dropped {len(dropped)} shape(s) with fewer than {min_steps} steps: "
                      + "; ".join(dropped), stacklevel=3)
    if not any(kept):
        raise ValueError(f"no shape gets {min_steps} steps at budgets {budgets}; raise the budgets")
    if wsd is not None:
        return [p for (m, t), cs in zip(pairs, kept) if cs
                for p in anneal([(m, t)], [round(c / flops_per_token(m)) for c in cs], **wsd)]
    return [make_pair(m, t, flops=float(c)) for c in budgets for (m, t), cs in zip(pairs, kept) if c in cs]


# ---------------------------------------------------------------------------------------------
# Cooldown branches: annealed budgets from one run (Hägele et al. 2024, arXiv 2405.18392)
# ---------------------------------------------------------------------------------------------

def anneal(pairs, budgets, *, schedule: str = "wsd-sqrt", cooldown: float = 0.2, warmup: int | None = None):
    """Each pair once per token budget, with a warmup-stable-decay schedule: every run is annealed (cooled to `min_lr`, lr/10 by default)
    at its own budget (its cooldown is the last `cooldown` of its steps; "wsd-sqrt" the 1 − sqrt shape
    Hägele et al. found best, "wsd" linear). All budgets of a pair share one absolute `warmup` (default 5%
    of the smallest budget's steps), so they are the same computation up to each one's decay start and
    `run_sweep` trains the largest once, branching the others' cooldowns from it (see `anneal_cost`)."""
    if schedule not in WSD_SCHEDULES:
        raise ValueError(f"anneal needs a warmup-stable-decay schedule ({', '.join(WSD_SCHEDULES)}), got {schedule!r}")
    budgets = sorted(dict.fromkeys(as_list("budgets", budgets)))
    for tokens in budgets:
        _positive("budget", tokens)
    out = []
    for m, t in pairs:
        smallest = steps_for_budget(m, make_pair(m, t, tokens=int(budgets[0]))[1])
        steps_warmup = warmup if warmup is not None else max(1, round(0.05 * smallest))
        for tokens in budgets:
            _, t_budget = make_pair(m, t, tokens=int(tokens), schedule=schedule, cooldown=cooldown, warmup=steps_warmup)
            steps = steps_for_budget(m, t_budget)
            if steps - cooldown_steps(steps, t_budget) < steps_warmup:
                raise ValueError(f"budget {tokens:.3g} tokens ({steps} steps): its cooldown would start at step "
                                 f"{steps - cooldown_steps(steps, t_budget)}, before the {steps_warmup}-step "
                                 "warmup ends; give larger budgets, a shorter warmup or cooldown")
            out.append((m, t_budget))
    return out


def branch_groups(pairs) -> list[list[int]]:
    """Indices of the pairs that differ only in their budget and share a trunk (a wsd schedule with an
    explicit warmup), largest budget first; every other pair is a group of its own."""
    groups = {}
    for i, (m, t) in enumerate(pairs):
        shared = t.schedule in WSD_SCHEDULES and t.warmup is not None
        groups.setdefault((m, dataclasses.replace(t, steps=None, tokens=None, flops=None)) if shared else i, []).append(i)
    return [sorted(g, key=lambda i: -steps_for_budget(*pairs[i])) for g in groups.values()]


def trained_steps(pairs) -> list[int]:
    """The optimizer steps each pair trains in a sweep: a trunk, or a run of its own, all of its steps; a
    cooldown branch only those after its fork from the trunk (`branch_groups`)."""
    trained = [0] * len(pairs)
    for group in branch_groups(pairs):
        for position, i in enumerate(group):
            steps = steps_for_budget(*pairs[i])
            trained[i] = steps if position == 0 else steps - decay_start(steps, pairs[i][1])
    return trained


def anneal_cost(pairs) -> dict:
    """Training tokens of a design with cooldown branches (per group: its largest budget plus the others'
    cooldowns) against training every run from scratch."""
    per_step = [tokens_per_step(m, t) for m, t in pairs]
    return dict(runs=len(pairs), trunks=len(branch_groups(pairs)),
                tokens_branched=sum(s * n for s, n in zip(trained_steps(pairs), per_step)),
                tokens_separate=sum(steps_for_budget(*pair) * n for pair, n in zip(pairs, per_step)))


def design_frame(pairs):
    """A preview of a design: one row per pair with its shape, size and budget (no training)."""
    import pandas as pd
    rows = []
    for m, t in pairs:
        steps = steps_for_budget(m, t)
        tokens = steps * tokens_per_step(m, t)
        rows.append(dict(depth=m.depth, width=m.width, heads=m.heads, params=count_params(m),
                         non_embedding_params=non_embedding_params(m), flops_per_token=flops_per_token(m),
                         steps=steps, tokens=tokens, flops=tokens * flops_per_token(m), budget=t.flops,
                         lr=t.lr, seed=t.seed, corpus=t.corpus))
    return pd.DataFrame(rows)


def as_list(name, values) -> list:
    """`values` as a non-empty list (one value becomes a list of it; numpy scalars become Python's), or a
    ValueError naming `name`: the one list check of designs and their callers."""
    scalar = isinstance(values, (str, bytes)) or not hasattr(values, "__iter__")
    values = [values] if scalar else [v.item() if hasattr(v, "item") else v for v in values]  # numpy → python
    if not values:
        raise ValueError(f"{name} is empty")
    return values


def _shapes(shapes) -> list[tuple[int, int]]:
    out = []
    for shape in as_list("shapes", shapes):
        if not (isinstance(shape, (tuple, list)) and len(shape) == 2):
            raise ValueError(f"a shape is a (depth, width) pair, got {shape!r}")
        out.append((shape[0], shape[1]))
    return out


def _positive(name, value):
    if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------------------------

def run_sweep(pairs, *, store=None, executor: str = "local", workers: int | None = None,
              progress: bool = True, lease_seconds: float = LEASE_SECONDS, ray_address: str | None = None,
              gpus_per_run: float | None = None, cpus_per_run: int = 1, checkpoint_dir=None,
              on_result=None):
    """Train every (ModelConfig, TrainConfig) pair not already in the store; return their frame.

    executor: 'local' (default: in this process, one after another, with a per-run progress bar),
        'parallel' (`workers` spawned processes, default one per core; each torch gets
        default_threads(workers) threads), or 'ray' (one task per run, on any node of a cluster: see
        `_ray`; `ray.init(address=ray_address)` unless Ray is already initialised; each task asks for
        `gpus_per_run` GPUs — default 1 when the cluster has GPUs; a fraction such as 0.25 packs four
        small runs on one GPU — and `cpus_per_run` CPUs, which are also its torch threads).
    checkpoint_dir: where runs checkpoint while they train: a local folder or the URI of storage every
        node reaches (s3://bucket/dwlib, gs://…, file://…); default `<store dir>/checkpoints/`.
    on_result: called as on_result(index, outcome) when each run finishes or is found in the store;
        `index` is the pair's position after duplicates are dropped, `outcome` has `how` ('trained',
        'cached', 'failed') and `status` (progress displays, e.g. the notebook runner's).
    A failing or diverging run is recorded with its status and error and the sweep goes on. Runs that
    another process is training are waited for. Returns `Store.runs_frame` for the pairs, in their
    order (duplicates removed); a run that failed before it had a run key (its corpus could not be
    loaded, its worker process died) is absent, warned about, and listed in `frame.attrs["lost"]`.
    """
    _check_executor(executor, workers, cpus_per_run, gpus_per_run, checkpoint_dir)
    store = as_store(store)
    pairs = list(pairs)
    for pair in pairs:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[0], ModelConfig)
                and isinstance(pair[1], TrainConfig)):
            raise ValueError(f"a sweep takes (ModelConfig, TrainConfig) pairs, got {pair!r}")
    pairs = list(dict.fromkeys((m, t) for m, t in pairs))   # same pair twice would only wait on itself
    if not pairs:
        raise ValueError("the sweep has no runs")
    from tqdm.auto import tqdm

    bar = tqdm(total=len(pairs), desc="sweep", unit="run", disable=not progress)
    counts = dict.fromkeys(("trained", "cached", "diverged", "failed"), 0)
    keys = [None] * len(pairs)
    lost = []   # failures before the run had a key (bad corpus, a worker process died): not in the store

    def report(i, outcome):
        keys[i] = outcome["key"]
        if outcome["key"] is None:
            m, t = pairs[i]
            lost.append(f"D={m.depth} W={m.width} seed={t.seed}: {outcome['error']}")
        if outcome["how"] == "busy":
            return
        counts["failed" if outcome["status"] == "failed" else outcome["how"]] += 1
        counts["diverged"] += outcome["status"] == "diverged"
        bar.set_postfix({k: v for k, v in counts.items() if v}, refresh=False)
        bar.update(1)
        if on_result is not None:
            on_result(i, outcome)

    try:
        submit = {"local": _local, "parallel": _parallel, "ray": _ray}[executor]
        kwargs = dict(store=store, progress=progress, lease_seconds=lease_seconds, workers=workers,
                      ray_address=ray_address, gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run,
                      checkpoint_dir=checkpoint_dir)
        # First pass: train what is free, a group (a trunk and its cooldown branches) per task; runs
        # another process holds come back 'busy' (the Ray driver polls them itself: none come back).
        groups = branch_groups(pairs)
        outcomes = list(submit(pairs, groups, wait=False, report=report, **kwargs))
        busy = {i for i, outcome in outcomes if outcome["how"] == "busy"}
        # Second pass: wait for those (or take them over if their holder dies).
        if busy:
            bar.set_description(f"sweep (waiting on {len(busy)} held elsewhere)")
            groups = [g for g in ([i for i in group if i in busy] for group in groups) if g]
            list(submit(pairs, groups, wait=True, report=report, **kwargs))
    finally:
        bar.close()
    if lost:
        warnings.warn(f"{len(lost)} run(s) failed before reaching the store:\n  " + "\n  ".join(lost),
                      RuntimeWarning, stacklevel=2)
    frame = store.runs_frame(keys=[k for k in keys if k is not None])
    frame.attrs["lost"] = lost   # runs missing from the frame, with their errors
    return frame


def _check_executor(executor, workers, cpus_per_run, gpus_per_run, checkpoint_dir) -> None:
    """run_sweep's execution arguments, each refused with its name and value before anything trains."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}; got {executor!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if not (isinstance(cpus_per_run, int) and cpus_per_run >= 1):
        raise ValueError(f"cpus_per_run must be a positive integer, got {cpus_per_run!r}")
    if gpus_per_run is not None and not (isinstance(gpus_per_run, (int, float)) and gpus_per_run >= 0
                                         and (gpus_per_run <= 1 or float(gpus_per_run).is_integer())):
        raise ValueError(f"gpus_per_run must be 0, a fraction of one GPU (0.25 packs four runs on a GPU) or a "
                         f"whole number of GPUs; got {gpus_per_run!r}")
    if checkpoint_dir is not None:   # an unknown protocol or a missing s3fs / gcsfs: said before training
        from .train import checkpoint_fs
        checkpoint_fs(checkpoint_dir)


def _sweep_task(group, store, wait, lease_seconds, threads, progress=False, checkpoint_dir=None) -> list[dict]:
    """One group of a sweep, [(model dict, train dict)] with the largest budget first, in whichever process
    executes it: an outcome per run; never raises for a run's own failure. Each run goes through `_run`
    (its own claim) and saves a fork checkpoint for each later run not yet in the store, which that run
    then resumes from: only its cooldown is computed. A run whose fork is missing trains from step 0.
    Two processes writing one run's checkpoint are harmless: any checkpoint of a run at any step is a
    valid state of that run. Raises only StoreError (a store that cannot be written stops the sweep).
    Takes plain dicts and a store path so that it pickles into worker processes."""
    from .config import model_config_from_dict, train_config_from_dict
    if threads is not None:
        import torch
        torch.set_num_threads(threads)
    pairs = [(model_config_from_dict(m), train_config_from_dict(t)) for m, t in group]
    if threads is not None:   # execution-only: same run keys
        pairs = [(m, t if t.threads is not None else dataclasses.replace(t, threads=threads)) for m, t in pairs]
    store = store if isinstance(store, Store) else Store(store, check=False)   # the parent checked it
    try:
        tokens = load_tokens(pairs[0][1].corpus, pairs[0][1].tokenizer)
    except Exception as e:   # a bad corpus name: nothing to claim, report it against no key
        return [dict(key=None, how="failed", status="failed", error=f"{type(e).__name__}: {e}")] * len(pairs)
    keys = [run_key(m, t, tokens.fingerprint) for m, t in pairs]
    outcomes = []
    for j, (m, t) in enumerate(pairs):
        if any(o["how"] == "busy" for o in outcomes):   # its trunk is held elsewhere: wait on the second pass
            outcomes.append(dict(key=keys[j], how="busy", status="running", error=None))
            continue
        forks = {}
        for k in range(j + 1, len(pairs)):
            row = store.get(keys[k])
            if row is None or row["status"] not in DONE:
                forks.setdefault(fork_step(*pairs[k]), []).append(
                    (keys[k], checkpoint_location(store, keys[k], checkpoint_dir)))
        try:
            result, how = _run(m, t, store, progress, None, tokens, lease_seconds, wait, forks, checkpoint_dir)
            outcomes.append(dict(key=keys[j], how=how, status=result["status"] if result else "running", error=None))
        except StoreError:
            raise
        except Exception as e:
            outcomes.append(dict(key=keys[j], how="trained", status="failed", error=f"{type(e).__name__}: {e}"))
    return outcomes


def fork_step(model_cfg: ModelConfig, train_cfg: TrainConfig) -> int:
    """The step at which a branch leaves its trunk: its own decay start."""
    return decay_start(steps_for_budget(model_cfg, train_cfg), train_cfg)


def _plain(pairs, group) -> list[tuple[dict, dict]]:
    """A group's pairs as plain dicts: they pickle into worker processes."""
    return [(to_dict(pairs[i][0]), to_dict(pairs[i][1])) for i in group]


def _local(pairs, groups, *, wait, report, store, progress, lease_seconds, checkpoint_dir, **_):
    for group in groups:
        outcomes = _sweep_task(_plain(pairs, group), store, wait, lease_seconds, None, progress, checkpoint_dir)
        for i, outcome in zip(group, outcomes):
            report(i, outcome)
            yield i, outcome


def _parallel(pairs, groups, *, wait, report, store, lease_seconds, workers, checkpoint_dir, **_):
    import multiprocessing
    import sys
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    main_file = getattr(sys.modules["__main__"], "__file__", None)
    if main_file is not None and not os.path.exists(main_file):
        raise ValueError(f"executor='parallel' starts fresh worker processes, which re-import the main "
                         f"script, but it is {main_file!r} (read from stdin?); save it to a file, or use "
                         "executor='local'")
    workers = workers or max(1, min(len(groups), available_cores()))
    threads = default_threads(side_by_side=workers)
    # spawn, not fork: forking a process that already ran torch (or holds sqlite handles) is unsafe
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads, os.getpid())) as pool:
        futures = {pool.submit(_sweep_task, _plain(pairs, group), str(store.path.resolve()), wait, lease_seconds,
                               threads, False, checkpoint_dir): group for group in groups}
        try:
            for future in as_completed(futures):
                group = futures[future]
                try:
                    outcomes = future.result()
                except BrokenProcessPool:   # a worker was killed (OOM killer, kill -9): the pool is gone
                    outcomes = [dict(key=None, how="failed", status="failed",
                                     error="a worker process died (killed, or out of memory); rerun the sweep "
                                           "to resume its runs from their checkpoints")] * len(group)
                for i, outcome in zip(group, outcomes):
                    report(i, outcome)
                    yield i, outcome
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _init_worker(threads, parent):
    # before torch is imported in the worker, so OpenMP starts with the right pool size
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    _exit_with_parent(parent)


def _exit_with_parent(parent: int) -> None:
    """Make this worker die with the sweep that started it (kill -9 included): an orphaned worker
    would otherwise wait for tasks forever, holding its memory and the resource tracker beside it.
    On Linux the kernel kills it (prctl PR_SET_PDEATHSIG); everywhere, a thread polls the parent's
    pid, which also covers a parent that died before the prctl call."""
    import ctypes
    import signal
    try:
        prctl = getattr(ctypes.CDLL(None), "prctl", None)   # libc's, on Linux only
    except OSError:
        prctl = None
    if prctl is not None:
        prctl(1, signal.SIGKILL)   # 1 = PR_SET_PDEATHSIG

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="dwlib-parent-watch", daemon=True).start()


def _ray(pairs, groups, *, report, store, lease_seconds, ray_address, gpus_per_run, cpus_per_run,
         checkpoint_dir, **_):
    """Ray, on one machine or a cluster. Only this process (the driver) opens the store: it claims the
    runs, renews their leases from a thread and stores the records the tasks return; a task, one per
    run on whichever node Ray picks, only trains. So no other node needs the store (SQLite must not sit
    on a network filesystem), and two drivers on one store still never train the same run. The token
    arrays reach the tasks through Ray's object store (see `_ray_runs`). A worker or node lost mid-run
    is retried by Ray (RAY_RETRIES) and resumes from its checkpoint in `checkpoint_dir`. Runs held
    elsewhere are polled while the tasks train, so this never reports one 'busy'."""
    ray = _start_ray(ray_address)
    resources = ray.cluster_resources()
    if gpus_per_run is None:
        gpus_per_run = 1 if resources.get("GPU", 0) > 0 else 0
    elif gpus_per_run > 0 and not resources.get("GPU"):
        warnings.warn(f"gpus_per_run={gpus_per_run}, but the Ray cluster has no GPUs now: the runs wait until "
                      "a GPU node joins (gpus_per_run=0 trains them on CPUs)", RuntimeWarning, stacklevel=3)
    if checkpoint_dir is None and sum(node["Alive"] for node in ray.nodes()) > 1:
        warnings.warn("checkpoints go beside the store, on the disk of whichever node trains a run, so a run "
                      "resumed on another node starts over: give checkpoint_dir (--checkpoint-dir) a location "
                      "every node reaches, such as s3://bucket/dwlib", RuntimeWarning, stacklevel=3)
    task = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=RAY_RETRIES)(_train_run)
    runs = _ray_runs(ray, pairs, store, checkpoint_dir)
    owner, held, waited = owner_id(), set(), set()
    stop_renewing = _keep_leases(store, owner, held, lease_seconds)
    pending, running = list(groups), {}   # running: task ref → pair index
    try:
        while pending or running:
            still = []
            for group in pending:
                settled, claimed, rest = _claim_group(group, runs, store, owner, lease_seconds, held, waited)
                for i, outcome in settled:
                    report(i, outcome)
                    yield i, outcome
                running.update(_submit(task, claimed, pairs, runs, cpus_per_run))
                still += [rest] if rest else []
            pending = still
            if not running:   # only runs held elsewhere are left: look again in a moment
                time.sleep(POLL_SECONDS if pending else 0)
                continue
            done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_SECONDS)
            for ref in done:
                i = running.pop(ref)
                outcome = _collect(ray, ref, runs[i], store, owner)
                held.discard(runs[i]["key"])
                report(i, outcome)
                yield i, outcome
    except BaseException:   # Ctrl-C, a store that cannot be written: stop the tasks, free their runs
        for ref in running:
            ray.cancel(ref)
        for key in list(held):
            try:
                store.release(key, owner)   # the next sweep resumes it at once
            except Exception:
                pass
        raise
    finally:
        stop_renewing()


def _start_ray(address):
    try:
        import ray
    except ImportError:
        raise ImportError('executor="ray" needs Ray, an optional dependency: pip install "ray[default]" '
                          "(or: pip install -r requirements-ray.txt)") from None
    if not ray.is_initialized():
        ray.init(address=address)   # None: $RAY_ADDRESS (set by `ray job submit`), else a local instance
    return ray


def _ray_runs(ray, pairs, store, checkpoint_dir) -> list[dict]:
    """Per pair, what the driver needs to claim it and a task to train it: key, config, checkpoint location,
    and `tokens`, a reference to its token arrays. The driver loads each corpus once and puts its arrays in
    Ray's object store once per sweep: each node fetches them once and its tasks read them from shared
    memory. So nodes need no corpus files, no network and no token cache, and train exactly the tokens
    whose fingerprint is in the run keys (the `stdlib` corpus differs between Python versions).
    A corpus that cannot be loaded leaves its runs without a key, with the error."""
    import numpy as np
    data, runs = {}, []
    for m, t in pairs:
        corpus = (t.corpus, t.tokenizer)
        if corpus not in data:
            try:
                tokens = load_tokens(*corpus)
                # plain arrays, not the memory maps: Ray hands those to a task as read-only views of its
                # node's shared memory, where a memory map would be copied into every task
                plain = dataclasses.replace(tokens, train=np.asarray(tokens.train), val=np.asarray(tokens.val))
                data[corpus] = (tokens.fingerprint, ray.put(plain))
            except Exception as e:
                data[corpus] = (None, f"{type(e).__name__}: {e}")
        fingerprint, ref = data[corpus]
        if fingerprint is None:
            runs.append(dict(key=None, error=ref))
            continue
        key = run_key(m, t, fingerprint)
        runs.append(dict(key=key, config={"model": to_dict(m), "train": to_dict(t), "corpus_fingerprint": fingerprint},
                         location=checkpoint_location(store, key, checkpoint_dir), tokens=ref))
    return runs


def _claim_group(group, runs, store, owner, lease_seconds, held, waited):
    """The driver's claims on a group's runs, in order (largest budget first): (outcomes of the runs settled
    without training — stored, failed in the process we waited for, no corpus —, the runs claimed (added
    to `held`), the rest of the group from its first run held elsewhere on, to try again later)."""
    settled, claimed = [], []
    for position, i in enumerate(group):
        key = runs[i]["key"]
        if key is None:
            settled.append((i, dict(key=None, how="failed", status="failed", error=runs[i]["error"])))
            continue
        try:
            how, result = _claim(store, key, runs[i]["config"], owner, lease_seconds, runs[i]["location"],
                                 i in waited)
        except StoreError:
            raise
        except RuntimeError as e:   # it failed in the process we waited for
            settled.append((i, dict(key=key, how="trained", status="failed", error=str(e))))
            continue
        if how == "busy":
            waited.add(i)
            return settled, claimed, group[position:]
        if how == "cached":
            settled.append((i, dict(key=key, how="cached", status=result["status"], error=None)))
        else:
            claimed.append(i)
            held.add(key)
    return settled, claimed, []


def _submit(task, claimed, pairs, runs, threads) -> dict:
    """A Ray task per claimed run of a group, named after the run (`ray::dwlib-<run id>` in ps, `ray list
    tasks` and the dashboard). The first saves a fork checkpoint for each of the others, which start once
    it has finished and resume from their forks: only their cooldowns are computed (a branch whose fork
    is missing trains from step 0)."""
    if not claimed:
        return {}

    def launch(i, fork_at, after):
        (m, t), run = pairs[i], runs[i]
        return task.options(name=f"dwlib-{run['key'][:10]}").remote(
            to_dict(m), to_dict(t), run["location"], fork_at, run["tokens"], threads, *after)

    first, *branches = claimed
    forks = {}
    for k in branches:
        forks.setdefault(fork_step(*pairs[k]), []).append((runs[k]["key"], runs[k]["location"]))
    head = launch(first, forks, ())
    return {head: first, **{launch(k, {}, (head,)): k for k in branches}}


def _train_run(model: dict, train: dict, location: str, fork_at: dict, tokens, threads: int, *after) -> dict:
    """A Ray task: train one run, resuming from its checkpoint at `location` (so a retry after a lost worker
    or node goes on from the last save), and return {"result": its record} or {"error": why it failed}.
    It opens neither the store nor the corpus: `tokens` arrive through Ray's object store. `after`: the
    task of the trunk this branch forks from, which Ray finishes first."""
    from .config import model_config_from_dict, train_config_from_dict
    from .train import train as train_run
    m, t = model_config_from_dict(model), train_config_from_dict(train)
    if t.threads is None:   # execution-only: the same run key
        t = dataclasses.replace(t, threads=threads)
    try:
        return {"result": train_run(m, t, checkpoint=location, progress=False, tokens=tokens, fork_at=fork_at)}
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}


def _collect(ray, ref, run, store, owner) -> dict:
    """Store what a finished task returned: the run's record, or its error; when Ray gave up on the task
    (its worker or node lost RAY_RETRIES + 1 times, or its trunk's task lost), the run is recorded
    'failed' with that error and keeps its checkpoint: the next sweep resumes it."""
    try:
        value = ray.get(ref)
    except ray.exceptions.RayError as e:
        value = {"error": f"Ray lost the task ({type(e).__name__}: {str(e).strip().splitlines()[0]})"}
    if "error" in value:
        store.fail(run["key"], value["error"], owner)
        return dict(key=run["key"], how="trained", status="failed", error=value["error"])
    _store_result(store, run["key"], value["result"], owner, run["location"])
    return dict(key=run["key"], how="trained", status=value["result"]["status"], error=None)
