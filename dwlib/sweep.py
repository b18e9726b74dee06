"""Sweeps: designs that list runs, and executors that train them into a results store.

`design(kind, **spec)` returns a list of (ModelConfig, TrainConfig) pairs; `run_sweep(pairs, executor=...)`
trains every pair not already in the store and returns the store's frame of those runs:

    pairs = design("depth", depths=[2, 4, 8, 16], widths=[128], steps=500)
    frame = run_sweep(pairs, store="outputs/runs.sqlite", executor="parallel")

Designs: the kinds of `design`; `anneal` trains runs that differ only in budget as one trunk with a
cooldown branch per smaller budget.

Executors: "local" (in this process, one run after another), "parallel" (worker processes sharing
the machine's cores: small models use cores far better side by side than with many threads each),
"ray" (one Ray task per run, on a local instance or any node of a cluster), "slurm" (one Slurm job
per run through submitit). Whatever the executor, one loop in this process (`_drive`) claims every
run in the store before it trains, renews the leases and stores the records the tasks return, so
sweeps in several processes at once never train a run twice, only this process opens the store,
and a run interrupted in any way resumes from its checkpoint the next time it is asked for.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import math
import os
import re
import shlex
import shutil
import threading
import time
import warnings
from pathlib import Path

from .config import (WSD_SCHEDULES, ModelConfig, TrainConfig, available_cores, cooldown_steps, count_params,
                     decay_start, default_threads, flops_per_token, non_embedding_params, paper_critical_depth,
                     run_key, steps_for_budget, to_dict, tokens_per_step)
from .store import DEFAULT_PATH, DONE, Store, owner_id

LEASE_SECONDS = 60.0      # a dead holder's run becomes claimable this long after its last heartbeat
POLL_SECONDS = 2.0        # how often a sweep checks on a run another process is training
RETRIES = 3               # Ray and Slurm resubmit a run whose worker, node or job died this often (from its checkpoint)
EXECUTORS = ("local", "parallel", "ray", "slurm")
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

    A sweep of one pair in this process (see `_drive`). If another process holds the run, this waits
    for it (or returns None at once with wait=False; if that process fails, this raises RuntimeError
    with its error instead of repeating it). Interrupted runs resume from their checkpoint
    (`checkpoint_location`: in `checkpoint_dir`, by default `<store dir>/checkpoints/`), which is
    deleted once the result is stored.
    An exception is recorded as status 'failed' with its message and re-raised; Ctrl-C leaves the run
    resumable and re-raises. The record's `resumed_from_step` says where training began (0: a fresh start).
    """
    (_, outcome), = _drive([(model_cfg, train_cfg)], as_store(store), _Local(progress, on_eval), lease_seconds,
                           checkpoint_dir, wait=wait, tokens=tokens)
    if outcome["how"] == "busy":
        return None
    if outcome["status"] == "failed":
        raise outcome["exception"] or RuntimeError(outcome["error"])
    return outcome["record"]


def checkpoint_location(store: Store, key: str, checkpoint_dir=None) -> str:
    """Where run `key` saves its checkpoint while it trains: `<checkpoint_dir>/<key>.pt`, a local folder or
    the URI of storage every node of a cluster reaches (s3://bucket/dwlib, gs://…, file://…; see
    `train.checkpoint_fs`), by default beside the store. Local paths are made absolute: a Ray worker's
    or a Slurm job's working directory is not the driver's."""
    if checkpoint_dir is None:
        return str(store.checkpoint_path(key).resolve())
    if "://" in str(checkpoint_dir):
        return f"{str(checkpoint_dir).rstrip('/')}/{key}.pt"
    return str(Path(checkpoint_dir).resolve() / f"{key}.pt")


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
# Executors: one driver loop, and the submitters it hands runs to
# ---------------------------------------------------------------------------------------------

def run_sweep(pairs, *, store=None, executor: str = "local", workers: int | None = None,
              progress: bool = True, lease_seconds: float = LEASE_SECONDS, ray_address: str | None = None,
              gpus_per_run: float | None = None, cpus_per_run: int = 1, checkpoint_dir=None,
              retries: int = RETRIES, slurm: dict | None = None, on_result=None):
    """Train every (ModelConfig, TrainConfig) pair not already in the store; return their frame.

    executor: 'local' (default: in this process, one after another, with a per-run progress bar),
        'parallel' (`workers` spawned processes, default one per core), 'ray' (a task per run:
        `ray.init(address=ray_address)` unless Ray is initialised; `gpus_per_run`, fractions allowed,
        default 1 when the cluster has GPUs; `cpus_per_run`, also the torch threads) or 'slurm' (a job
        per run: `gpus_per_run`, `cpus_per_run` and the options in `slurm`, see `slurm_options`; a
        notebook writes them into the executor's name: "slurm:partition=gpu,time_limit=120").
    checkpoint_dir: where runs checkpoint while they train: a local folder or the URI of storage every
        node reaches (s3://bucket/dwlib, gs://…, file://…); default `<store dir>/checkpoints/`.
    retries: how often Ray or Slurm resubmits a run whose worker, node or job died (each resumes from
        its checkpoint); after that the run is stored 'failed' and keeps its checkpoint.
    on_result: called as on_result(index, outcome) when each run finishes or is found in the store;
        `index` is the pair's position after duplicates are dropped, `outcome` has `how` ('trained',
        'cached', 'failed') and `status` (progress displays, e.g. the notebook runner's).
    A failing or diverging run is recorded with its status and error and the sweep goes on. Runs that
    another process is training are waited for. Returns `Store.runs_frame` for the pairs, in their
    order (duplicates removed); a run that failed before it reached the store (its corpus could not be
    loaded: absent from the frame; its worker process died: 'interrupted' in it) is warned about and
    listed in `frame.attrs["lost"]`.
    """
    executor, spec = executor.partition(":")[::2] if isinstance(executor, str) else (executor, "")
    _check_executor(executor, workers, cpus_per_run, gpus_per_run, checkpoint_dir, retries)
    if spec and executor != "slurm":
        raise ValueError(f"only executor 'slurm' takes options after a ':'; got {executor}:{spec}")
    pairs = list(pairs)
    for pair in pairs:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[0], ModelConfig)
                and isinstance(pair[1], TrainConfig)):
            raise ValueError(f"a sweep takes (ModelConfig, TrainConfig) pairs, got {pair!r}")
    pairs = list(dict.fromkeys((m, t) for m, t in pairs))   # same pair twice would only wait on itself
    if not pairs:
        raise ValueError("the sweep has no runs")
    if executor == "slurm":   # every option checked before anything is submitted, or the store opened
        where = store.path if isinstance(store, Store) else Path(store or DEFAULT_PATH)
        options = slurm_options({**_parse_spec(spec), **(slurm or {})}, pairs, where.parent, gpus_per_run,
                                cpus_per_run, checkpoint_dir)
    store = as_store(store)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(pairs), desc="sweep", unit="run", disable=not progress)
    counts = dict.fromkeys(("trained", "cached", "diverged", "failed"), 0)
    keys = [None] * len(pairs)
    lost = []   # runs that never reached a verdict in the store (bad corpus, a worker process died)

    def report(i, outcome):
        keys[i] = outcome["key"]
        if outcome["key"] is None or outcome["status"] == "interrupted":
            m, t = pairs[i]
            lost.append(f"D={m.depth} W={m.width} seed={t.seed}: {outcome['error']}")
        counts["failed" if outcome["status"] in ("failed", "interrupted") else outcome["how"]] += 1
        counts["diverged"] += outcome["status"] == "diverged"
        bar.set_postfix({k: v for k, v in counts.items() if v}, refresh=False)
        bar.update(1)
        if on_result is not None:
            on_result(i, outcome)

    try:
        if executor == "local":
            submitter = _Local(progress)
        elif executor == "parallel":
            submitter = _Parallel(workers, len(branch_groups(pairs)))
        elif executor == "ray":
            submitter = _Ray(ray_address, gpus_per_run, cpus_per_run, retries, checkpoint_dir)
        else:
            submitter = _Slurm(options, retries)
        for i, outcome in _drive(pairs, store, submitter, lease_seconds, checkpoint_dir):
            report(i, outcome)
    finally:
        bar.close()
    if lost:
        warnings.warn(f"{len(lost)} run(s) failed before reaching the store:\n  " + "\n  ".join(lost),
                      RuntimeWarning, stacklevel=2)
    frame = store.runs_frame(keys=[k for k in keys if k is not None])
    frame.attrs["lost"] = lost   # runs without a result in the frame, with their errors
    return frame


def _check_executor(executor, workers, cpus_per_run, gpus_per_run, checkpoint_dir, retries) -> None:
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
    if not (isinstance(retries, int) and retries >= 0):
        raise ValueError(f"retries must be a whole number >= 0, got {retries!r}")
    if checkpoint_dir is not None:   # an unknown protocol or a missing s3fs / gcsfs: said before training
        from .train import checkpoint_fs
        checkpoint_fs(checkpoint_dir)


def fork_step(model_cfg: ModelConfig, train_cfg: TrainConfig) -> int:
    """The step at which a branch leaves its trunk: its own decay start."""
    return decay_start(steps_for_budget(model_cfg, train_cfg), train_cfg)


class LeaseLapsed(RuntimeError):
    """Raised inside a task, before it writes anything more, once its run's lease went unrenewed too long."""


class WorkerLost(RuntimeError):
    """A task's worker process died without a verdict on its run: the run is released, not failed."""


class TaskError(RuntimeError):
    """A run failed in a remote task (Ray, Slurm); the message is the run's error as the task worded it."""


def _drive(pairs, store, executor, lease_seconds, checkpoint_dir, *, wait=True, tokens=None):
    """The one execution loop, for every executor: yields (pair index, outcome) as each pair settles.

    This process (the driver) claims each run in the store just before submitting it, renews the leases
    from a thread while the tasks queue and train, stores the record (or the error) each task returns
    and deletes the run's checkpoint; an executor only trains (submit a task, get a record back). A
    group of runs sharing a trunk (`branch_groups`, largest budget first) submits its head first, which
    saves a fork checkpoint for each other run of the group not yet stored; those then train only their
    cooldowns (a branch whose fork is missing trains from step 0). Runs another process holds are polled
    (with wait=False: reported 'busy' at once) and taken over if their holder dies. A task whose lease
    went unrenewed (this process was frozen past it: SIGSTOP, a suspended machine) stops at its next
    sync before writing anything more; if another process took the run meanwhile, it is left to that
    one. Ctrl-C or a store that cannot be written: the tasks are cancelled, their runs released
    (resumable at once) and the exception raised.
    """
    from .train import remove_checkpoint
    runs = _plan(pairs, store, checkpoint_dir, executor.share, tokens)
    owner, held, taken = owner_id(), {}, set()     # held: run key → pair index; taken: keys another holder took
    renew_by = executor.lease_table(len(pairs))    # per pair: its task stops before writing once past this time
    stop_renewing = _keep_leases(store, owner, held, taken, renew_by, lease_seconds)
    pending, running, tasks, waited, forked = branch_groups(pairs), {}, {}, set(), set()
    aborted = True
    try:
        while pending or running:
            still = []
            for group in pending:
                while group and (executor.slots is None or len(running) < executor.slots):
                    i, key, started = group[0], runs[group[0]]["key"], time.time()
                    how, value = _claim(store, runs[i], owner, lease_seconds, i in waited, held)
                    if how == "busy":
                        waited.add(i)
                        if not wait:
                            yield from ((j, _outcome(runs[j]["key"], "busy", "running")) for j in group)
                            group = []
                        break
                    group = group[1:]
                    if how == "failed":
                        yield i, _outcome(key, "failed" if key is None else "trained", "failed", value,
                                          exception=runs[i].get("exception"))
                    elif how == "cached":
                        if i in forked:   # the fork we saved for it outlived it: another process finished it
                            remove_checkpoint(runs[i]["location"])
                        yield i, _outcome(key, "cached", value["status"], record=value)
                    else:
                        held[key], renew_by[i] = i, started + 0.75 * lease_seconds
                        tasks[i] = _task(i, pairs, runs, group, store, forked, executor.threads)
                        running[executor.submit(tasks[i])] = (i, group)
                        group = []
                if group:
                    still.append(group)
            pending = still
            if not running:   # only runs held elsewhere are left: look again in a moment
                time.sleep(POLL_SECONDS if pending else 0)
                continue
            for handle in executor.wait(list(running), POLL_SECONDS):
                i, rest = running.pop(handle)
                key = runs[i]["key"]
                try:
                    record = executor.result(handle)
                except LeaseLapsed:
                    if key not in taken and store.heartbeat(key, owner, lease_seconds):   # nobody took it: go on
                        renew_by[i] = time.time() + 0.5 * lease_seconds
                        running[executor.submit(tasks[i])] = (i, rest)
                    else:
                        taken.add(key)
                        running[handle] = (i, rest)   # settled with the others taken over, below
                    continue
                except Exception as e:
                    if isinstance(e, WorkerLost):
                        store.release(key, owner)
                        outcome = _outcome(key, "failed", "interrupted", str(e))
                    else:
                        store.fail(key, _error(e), owner)
                        outcome = _outcome(key, "trained", "failed", _error(e), exception=e)
                else:
                    if store.finish(key, record, owner):
                        remove_checkpoint(runs[i]["location"])
                    else:
                        warnings.warn(f"run {key[:10]} was taken over by another process after its lease lapsed; "
                                      "that process's result is the one stored", RuntimeWarning)
                    outcome = _outcome(key, "trained", record["status"], record=record)
                held.pop(key)
                pending += [[j] for j in rest]   # its branches, each from the fork it saved
                yield i, outcome
            for handle, (i, rest) in list(running.items()):
                if runs[i]["key"] in taken and held.get(runs[i]["key"]) == i:   # leave it to its new holder
                    executor.cancel([handle])
                    del running[handle], held[runs[i]["key"]]
                    waited.add(i)
                    pending.append([i, *rest])
            taken.clear()
        aborted = False
    except BaseException:
        executor.cancel(list(running))
        for key in list(held):
            try:
                store.release(key, owner)   # the next sweep resumes it at once
            except Exception:
                pass
        raise
    finally:
        stop_renewing()
        executor.close(aborted)


def _outcome(key, how, status, error=None, record=None, exception=None) -> dict:
    """What the loop reports of a pair: its run key, how it settled ('trained', 'cached', 'failed' before
    it trained, 'busy'), its status, and its error, record and (in this process) exception."""
    return dict(key=key, how=how, status=status, error=error, record=record, exception=exception)


def _error(e: BaseException) -> str:
    return str(e) if isinstance(e, TaskError) else f"{type(e).__name__}: {e}"


def _plan(pairs, store, checkpoint_dir, share, tokens=None) -> list[dict]:
    """Per pair what the driver needs to claim it and a task to train it: key, config, checkpoint
    location, and `tokens`, what its task gets of the token arrays (`share` of the loaded data: the
    arrays themselves, a Ray reference, or None for a task that loads the corpus where it runs). Each
    corpus is loaded once. A corpus that cannot be loaded leaves its runs without a key, with the error."""
    loaded, runs = {}, []
    for m, t in pairs:
        corpus = (t.corpus, t.tokenizer)
        if corpus not in loaded:
            try:
                data = tokens if tokens is not None else load_tokens(*corpus)
                loaded[corpus] = (data.fingerprint, share(data))
            except Exception as e:
                loaded[corpus] = (None, e)
        fingerprint, shared = loaded[corpus]
        if fingerprint is None:
            runs.append(dict(key=None, error=_error(shared), exception=shared))
            continue
        key = run_key(m, t, fingerprint)
        runs.append(dict(key=key, config={"model": to_dict(m), "train": to_dict(t), "corpus_fingerprint": fingerprint},
                         location=checkpoint_location(store, key, checkpoint_dir), tokens=shared))
    return runs


def _claim(store, run, owner, lease_seconds, waited, held) -> tuple[str, object]:
    """One try at a run: ('cached', its record) when it is final, ('claimed', None) when `owner` now holds
    it, ('busy', None) when another holder has it (or this loop does, for another pair of the same key),
    ('failed', error) when it has no key (its corpus did not load) or failed in the process we `waited` for
    (its error, rather than a repeat)."""
    key = run["key"]
    if key is None:
        return "failed", run["error"]
    if key in held:
        return "busy", None
    row = store.get(key)
    if row is not None and row["status"] in DONE:
        return "cached", row["result"]
    if waited and row is not None and row["status"] == "failed":
        return "failed", f"run {key[:10]} failed in another process: {row['error']}"
    if store.claim(key, run["config"], owner, lease_seconds, checkpoint=run["location"]):
        if row is not None:   # an earlier attempt may have checkpointed elsewhere (another --checkpoint-dir)
            from .train import adopt_checkpoint
            adopt_checkpoint(row["checkpoint"], run["location"])
        return "claimed", None
    return "busy", None


def _task(i, pairs, runs, rest, store, forked, threads) -> dict:
    """The task that trains pair i: its run, and a fork checkpoint for each run in `rest` (the others of
    its group) not yet stored. Plain data, so that it pickles into any worker."""
    forks = {}
    for j in rest:
        row = store.get(runs[j]["key"])
        if row is None or row["status"] not in DONE:
            forks.setdefault(fork_step(*pairs[j]), []).append((runs[j]["key"], runs[j]["location"]))
            forked.add(j)
    m, t = pairs[i]
    return dict(key=runs[i]["key"], model=m, train=t, location=runs[i]["location"], fork_at=forks,
                tokens=runs[i]["tokens"], threads=threads, slot=i)


def _keep_leases(store, owner, held: dict, taken: set, renew_by, lease_seconds):
    """Renew `owner`'s leases on the runs in `held` (run key → pair index; the loop changes it meanwhile)
    from a background thread, four times per lease, moving each run's `renew_by` on; returns the
    function that stops it. A run taken over after we stalled past its lease goes into `taken`, its
    renew_by to 0, so its task stops at its next sync."""
    stop = threading.Event()

    def renew():
        while not stop.wait(lease_seconds / 4):
            for key, i in held.copy().items():
                now = time.time()
                try:
                    if store.heartbeat(key, owner, lease_seconds):
                        renew_by[i] = now + 0.75 * lease_seconds
                    else:
                        renew_by[i] = 0.0
                        taken.add(key)
                except Exception:   # a busy or briefly unreadable store: try again next beat
                    pass

    thread = threading.Thread(target=renew, name="dwlib-leases", daemon=True)
    thread.start()
    return lambda: (stop.set(), thread.join())


def _lease_check(renew_by, i):
    """The trainer's `on_sync` for pair i: stop (LeaseLapsed) once its lease was not renewed in time."""
    def check():
        if time.time() > renew_by[i]:
            raise LeaseLapsed("the run's lease was not renewed in time (was this process frozen?); "
                              "stopped it before writing anything more")
    return check


def _train_run(key, model, train, location, fork_at, tokens=None, threads=None, slot=None, check=None,
               progress=False, on_eval=None) -> dict:
    """A task, in whichever process trains it: train one run from its checkpoint at `location` (so a
    resubmitted task goes on from the last save) and return its record; raises what the run raised. It
    opens no store. `tokens`: the run's token arrays, or None to load the corpus here (refused if its
    fingerprint is not the one the driver keyed the run with). `check`: see `_lease_check`."""
    from .train import train as train_run
    if train.threads is None and threads is not None:   # execution-only: the same run key
        train = dataclasses.replace(train, threads=threads)
    if tokens is None:
        tokens = load_tokens(train.corpus, train.tokenizer)
        if run_key(model, train, tokens.fingerprint) != key:
            raise ValueError(f"corpus {train.corpus!r} reads differently here (fingerprint {tokens.fingerprint[:10]}) "
                             "than where the sweep's driver read it: give every node the same corpus and tokenizer")
    return train_run(model, train, checkpoint=location, progress=progress, on_eval=on_eval, tokens=tokens,
                     fork_at=fork_at, on_sync=check)


def _remote_task(task: dict, tokens=None) -> dict:
    """A Ray task or a Slurm job: {"record": …}, or {"error": …} with the run's own error (a raised one
    would come back wrapped in the scheduler's). submitit's own exception (a job timed out too often to
    be requeued) is raised: the job died, and the driver resubmits it."""
    try:
        return {"record": _train_run(**{**task, "tokens": tokens})}
    except Exception as e:
        if type(e).__module__.startswith("submitit"):
            raise
        return {"error": _error(e)}


def _requeue(*args, **kwargs):
    """submitit calls this when Slurm preempts a job or its time limit nears, and requeues the job with
    what it returns: the same call, which resumes from the run's last checkpoint."""
    from submitit.helpers import DelayedSubmission
    return DelayedSubmission(_remote_task, *args, **kwargs)


_remote_task.checkpoint = _requeue


def _unwrap(value: dict) -> dict:
    if "error" in value:
        raise TaskError(value["error"])
    return value["record"]


class _Local:
    """Train in this process, one run at a time: a task trains as it is submitted (with a progress bar,
    and `on_eval` after each evaluation). The base of the other submitters: a submitter has `slots` (how
    many tasks at once; None: no limit), `threads` (torch threads of a run that does not set them), and
    share / lease_table / submit / wait / result / cancel / close."""
    slots, threads = 1, None

    def __init__(self, progress=False, on_eval=None):
        self.progress, self.on_eval = progress, on_eval

    def share(self, tokens):
        return tokens

    def lease_table(self, n):
        self.renew_by = [0.0] * n
        return self.renew_by

    def submit(self, task):
        future = concurrent.futures.Future()
        try:
            future.set_result(_train_run(**task, check=_lease_check(self.renew_by, task["slot"]),
                                         progress=self.progress, on_eval=self.on_eval))
        except Exception as e:
            future.set_exception(e)
        return future

    def wait(self, handles, timeout):
        return concurrent.futures.wait(handles, timeout, return_when=concurrent.futures.FIRST_COMPLETED)[0]

    def result(self, handle):
        return handle.result()

    def cancel(self, handles):
        for handle in handles:
            handle.cancel()

    def close(self, aborted):
        pass


class _Parallel(_Local):
    """`workers` spawned processes (default one per core, at most one per group), each torch with
    default_threads(workers) threads; they load the corpus themselves (a token-cache hit) and die with
    this process. A worker killed mid-run (OOM killer, kill -9) breaks the pool: its runs and those not
    yet trained are released, resumable by the next sweep."""

    def __init__(self, workers, groups):
        import multiprocessing
        import sys
        main_file = getattr(sys.modules["__main__"], "__file__", None)
        if main_file is not None and not os.path.exists(main_file):
            raise ValueError(f"executor='parallel' starts fresh worker processes, which re-import the main "
                             f"script, but it is {main_file!r} (read from stdin?); save it to a file, or use "
                             "executor='local'")
        self.slots = workers or max(1, min(groups, available_cores()))
        self.threads = default_threads(side_by_side=self.slots)
        # spawn, not fork: forking a process that already ran torch (or holds sqlite handles) is unsafe
        self.context, self.pool = multiprocessing.get_context("spawn"), None

    def share(self, tokens):
        return None

    def lease_table(self, n):
        self.renew_by = self.context.RawArray("d", n)   # shared memory: the workers' lease checks read it
        return self.renew_by

    def submit(self, task):
        from concurrent.futures.process import BrokenProcessPool
        if self.pool is None:
            self.pool = concurrent.futures.ProcessPoolExecutor(
                self.slots, mp_context=self.context, initializer=_init_worker,
                initargs=(self.threads, os.getpid(), self.renew_by))
        try:
            return self.pool.submit(_pool_task, task)
        except BrokenProcessPool as e:   # the pool died with an earlier worker
            future = concurrent.futures.Future()
            future.set_exception(e)
            return future

    def result(self, handle):
        from concurrent.futures.process import BrokenProcessPool
        try:
            return handle.result()
        except BrokenProcessPool:   # a worker was killed (OOM killer, kill -9): the pool is gone
            raise WorkerLost("a worker process died (killed, or out of memory); rerun the sweep to resume its "
                             "runs from their checkpoints") from None

    def close(self, aborted):
        if self.pool is not None:
            self.pool.shutdown(wait=not aborted, cancel_futures=True)


_RENEW_BY = None   # in a parallel worker: the driver's lease table (`_Parallel.lease_table`)


def _init_worker(threads, parent, renew_by):
    global _RENEW_BY
    _RENEW_BY = renew_by
    # before torch is imported in the worker, so OpenMP starts with the right pool size
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    _exit_with_parent(parent)


def _pool_task(task):
    return _train_run(**task, check=_lease_check(_RENEW_BY, task["slot"]))


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


class _Ray(_Local):
    """One Ray task per run, named `ray::dwlib-<run id>` (README "Sweeps on a Ray cluster"). The token arrays
    go into Ray's object store once per sweep (`share`), so nodes need no corpus and train exactly the
    tokens of the run keys. Ray retries a task whose worker or node died (`retries`); it resumes from its
    checkpoint, and if Ray gives up the run is stored 'failed' and keeps it. A run taken over is cancelled."""
    slots = None

    def __init__(self, address, gpus_per_run, cpus_per_run, retries, checkpoint_dir):
        ray = self.ray = _start_ray(address)
        resources = ray.cluster_resources()
        if gpus_per_run is None:
            gpus_per_run = 1 if resources.get("GPU", 0) > 0 else 0
        elif gpus_per_run > 0 and not resources.get("GPU"):
            warnings.warn(f"gpus_per_run={gpus_per_run}, but the Ray cluster has no GPUs now: the runs wait until "
                          "a GPU node joins (gpus_per_run=0 trains them on CPUs)", RuntimeWarning, stacklevel=4)
        if checkpoint_dir is None and sum(node["Alive"] for node in ray.nodes()) > 1:
            warnings.warn("checkpoints go beside the store, on the disk of whichever node trains a run, so a run "
                          "resumed on another node starts over: give checkpoint_dir (--checkpoint-dir) a location "
                          "every node reaches, such as s3://bucket/dwlib", RuntimeWarning, stacklevel=4)
        self.threads = cpus_per_run
        self.remote = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=retries)(_remote_task)

    def share(self, tokens):
        # plain arrays, not the memory maps: Ray hands those to a task as read-only views of its node's
        # shared memory, where a memory map would be copied into every task
        import numpy as np
        return self.ray.put(dataclasses.replace(tokens, train=np.asarray(tokens.train), val=np.asarray(tokens.val)))

    def submit(self, task):
        # the reference as an argument of its own: Ray resolves those (not ones inside a dict) before the task runs
        return self.remote.options(name=f"dwlib-{task['key'][:10]}").remote({**task, "tokens": None}, task["tokens"])

    def wait(self, handles, timeout):
        return self.ray.wait(handles, num_returns=1, timeout=timeout)[0]

    def result(self, handle):
        try:
            return _unwrap(self.ray.get(handle))
        except self.ray.exceptions.RayError as e:   # its worker or node lost retries + 1 times
            raise TaskError(f"Ray lost the task ({type(e).__name__}: {str(e).strip().splitlines()[0]})") from None

    def cancel(self, handles):
        for ref in handles:
            self.ray.cancel(ref)


def _start_ray(address):
    try:
        import ray
    except ImportError:
        raise ImportError('executor="ray" needs Ray, an optional dependency: pip install "ray[default]" '
                          "(or: pip install -r requirements-ray.txt)") from None
    if not ray.is_initialized():
        ray.init(address=address)   # None: $RAY_ADDRESS (set by `ray job submit`), else a local instance
    return ray


# Slurm through submitit (https://github.com/facebookincubator/submitit): its options, then its submitter
SLURM_OPTIONS = dict(partition=None, time_limit=60, mem_per_run=None, array_parallelism=None, sbatch_args="",
                     logs=None, backend="slurm", gpus_per_run=None, cpus_per_run=None)
SLURM_BACKENDS = ("slurm", "local")   # local: submitit's local backend, the same jobs as processes of this machine


def _parse_spec(spec: str) -> dict:
    """'partition=gpu,time_limit=120' (the part of a notebook's executor after 'slurm:') as a dict; whole
    numbers are read as such."""
    options = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"executor options are NAME=VALUE items separated by commas, e.g. "
                             f"'slurm:partition=gpu,time_limit=120'; got {item!r}")
        options[name.strip()] = int(value) if value.strip().isdigit() else value.strip()
    return options


def slurm_options(options: dict, pairs, store_dir, gpus_per_run=None, cpus_per_run=1, checkpoint_dir=None) -> dict:
    """The Slurm executor's options, each checked (a ValueError naming it) before anything is submitted:
    partition (a name, or several comma-separated), time_limit (minutes, or Slurm's [D-]HH:MM[:SS]; a
    job near it is requeued and resumes from its checkpoint), gpus_per_run (whole GPUs; default 1 when a
    run's device is cuda, else 0) and cpus_per_run (also the torch threads), mem_per_run ('16G', '500M'
    or GB), array_parallelism (at most this many of the sweep's jobs queued or running at once; default
    no limit), sbatch_args (more sbatch options, e.g. '--qos=high --account=lab'), logs (the folder of
    the jobs' pickles and logs, on storage the nodes share; default `<store dir>/slurm/`), backend
    ('slurm', or 'local': submitit's local backend, the jobs as processes of this machine)."""
    unknown = sorted(set(options) - set(SLURM_OPTIONS))
    if unknown:
        raise ValueError(f"unknown Slurm option(s) {', '.join(unknown)}; known: {', '.join(SLURM_OPTIONS)}")
    o = {**SLURM_OPTIONS, "gpus_per_run": gpus_per_run, "cpus_per_run": cpus_per_run,
         **{k: v for k, v in options.items() if v is not None}}
    if o["backend"] not in SLURM_BACKENDS:
        raise ValueError(f"Slurm backend must be one of {', '.join(SLURM_BACKENDS)}; got {o['backend']!r}")
    partition = o["partition"]
    if partition is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*", str(partition)):
        raise ValueError(f"partition (--partition) must be a Slurm partition name (letters, digits, _ . -), or "
                         f"several separated by commas; got {partition!r}")
    o["time_limit"] = _minutes(o["time_limit"])
    gpus, cuda = o["gpus_per_run"], sorted({t.device for _, t in pairs if t.device.startswith("cuda")})
    if gpus is None:
        gpus = 1 if cuda else 0
    if isinstance(gpus, str) and gpus.isdigit():
        gpus = int(gpus)
    if isinstance(gpus, bool) or not (isinstance(gpus, (int, float)) and gpus >= 0 and float(gpus).is_integer()):
        raise ValueError(f"gpus_per_run (--gpus-per-run) for Slurm is a whole number of GPUs (Slurm allocates whole "
                         f"GPUs; executor='ray' packs runs on one); got {gpus!r}")
    if gpus == 0 and cuda:
        raise ValueError(f"gpus_per_run (--gpus-per-run) is 0, but the runs train on device {cuda[0]!r} (--device): "
                         "their jobs would have no GPU; ask for GPUs, or train on --device cpu")
    o["gpus_per_run"] = int(gpus)
    for name in ("cpus_per_run", "array_parallelism"):
        if o[name] is not None and (isinstance(o[name], bool) or not isinstance(o[name], int) or o[name] < 1):
            raise ValueError(f"{name} (--{name.replace('_', '-')}) must be a positive integer, got {o[name]!r}")
    o["mem_per_run"] = _gigabytes(o["mem_per_run"])
    o["sbatch_args"] = _sbatch_args(o["sbatch_args"])
    o["logs"] = Path(o["logs"] or Path(store_dir) / "slurm").expanduser().resolve()
    try:
        import submitit   # noqa: F401
    except ImportError:
        raise ImportError('executor="slurm" needs submitit, an optional dependency: pip install submitit '
                          "(or: pip install -r requirements-slurm.txt)") from None
    if o["backend"] == "slurm" and not shutil.which("sbatch"):
        raise ValueError("executor 'slurm': sbatch is not on PATH, so this machine cannot submit Slurm jobs; run the "
                         "sweep where it can (a login node), or try it here with backend 'local' "
                         "(--slurm-backend local)")
    if o["backend"] == "slurm" and checkpoint_dir is None:
        warnings.warn("checkpoints go beside the store; a job on another node resumes from them only if that node "
                      "mounts the folder: give checkpoint_dir (--checkpoint-dir) a location every node reaches",
                      RuntimeWarning, stacklevel=3)
    return o


def _minutes(value) -> int:
    """Minutes of a Slurm time limit: a number of minutes, or MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS."""
    text = str(value).strip()
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not match or isinstance(value, bool):
        raise ValueError(f"time_limit (--time-limit) takes minutes or Slurm's [D-]HH:MM[:SS], got {value!r}")
    days, first, second, third = (int(g) if g else None for g in match.groups())
    if days is not None:   # D-HH[:MM[:SS]]
        seconds = ((days * 24 + first) * 60 + (second or 0)) * 60 + (third or 0)
    elif third is not None:   # HH:MM:SS
        seconds = (first * 60 + second) * 60 + third
    else:   # M or M:SS
        seconds = first * 60 + (second or 0)
    if seconds <= 0:
        raise ValueError(f"time_limit (--time-limit) must be more than zero, got {value!r}")
    return math.ceil(seconds / 60)


def _gigabytes(value) -> float | None:
    if value is None:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([MGT]?)B?", str(value).strip(), re.IGNORECASE)
    if not match or float(match.group(1)) <= 0 or isinstance(value, bool):
        raise ValueError(f"mem_per_run (--mem-per-run) takes a size such as 16G, 500M or a number of GB; got {value!r}")
    return float(match.group(1)) * {"M": 1 / 1024, "G": 1, "T": 1024, "": 1}[match.group(2).upper()]


def _sbatch_args(value) -> dict:
    """'--qos=high --exclusive' (or a list of such) as submitit's additional sbatch parameters."""
    parsed = {}
    for arg in shlex.split(value) if isinstance(value, str) else list(value):
        name, eq, setting = arg.partition("=")
        if not re.fullmatch(r"--[a-z][a-z0-9-]*", name):
            raise ValueError(f"sbatch_args (--sbatch-args) takes long sbatch options such as --qos=high "
                             f"--account=lab --exclusive; got {arg!r}")
        parsed[name[2:]] = setting if eq else True
    return parsed


class _SlurmJob:   # a run's job, resubmitted in place
    def __init__(self, job, task):
        self.job, self.task, self.resubmitted, self.value, self.error = job, task, 0, None, None


class _Slurm(_Local):
    """One Slurm job per run through submitit (README "Sweeps on a Slurm cluster"), named dwlib-<run id>.
    Only this process opens the store; a job loads the corpus where it runs, trains, and returns the
    record. Slurm requeues a job it preempts or that nears its time limit (submitit's signal, `_requeue`);
    a job that died (node failure, killed, out of memory, out of requeues) is resubmitted up to
    `retries` times; each resumes from the run's checkpoint in `checkpoint_dir`."""

    def __init__(self, o, retries):
        import submitit
        self.slots, self.threads, self.retries = o["array_parallelism"], o["cpus_per_run"], retries
        self.executor = submitit.AutoExecutor(folder=o["logs"] / "%j", cluster=o["backend"])
        self.executor.update_parameters(timeout_min=o["time_limit"], gpus_per_node=o["gpus_per_run"],
                                        cpus_per_task=o["cpus_per_run"], mem_gb=o["mem_per_run"],
                                        slurm_partition=o["partition"], slurm_additional_parameters=o["sbatch_args"])

    def share(self, tokens):
        return None

    def submit(self, task):
        self.executor.update_parameters(name=f"dwlib-{task['key'][:10]}")
        return _SlurmJob(self.executor.submit(_remote_task, task), task)

    def wait(self, handles, timeout):
        deadline = time.monotonic() + timeout
        while True:
            done = []
            for handle in handles:
                if handle.job.done():
                    try:
                        handle.value = handle.job.result()
                    except Exception as e:   # the job died without returning: resubmit it, or give up
                        if handle.resubmitted < self.retries:
                            handle.resubmitted += 1
                            handle.job = self.executor.submit(_remote_task, handle.task)
                            continue
                        handle.error = (f"its Slurm job died {handle.resubmitted + 1} times (last: "
                                        f"{str(e).strip().splitlines()[0]}); logs in {handle.job.paths.folder}")
                    done.append(handle)
            if done or time.monotonic() > deadline:
                return done
            time.sleep(min(1.0, timeout))

    def result(self, handle):
        if handle.error is not None:
            raise TaskError(handle.error)
        return _unwrap(handle.value)

    def cancel(self, handles):
        for handle in handles:
            handle.job.cancel(check=False)
