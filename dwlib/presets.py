"""What each notebook runs at each preset (smoke, cpu, gpu: README.md "Notebooks"): the preset tables, the
settings a notebook resolves from its parameters cell, its design, and the cost model that prices it.
The presets were chosen on cost and statistics before any result was looked at; at toy scale deep-narrow
runs scatter between seeds by more than the depth effect, hence ≥ 3 seeds per shape at cpu.

Plain data and arithmetic on configs (no torch, no widgets): notebooks and the runner import it.
"""
from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path
from types import SimpleNamespace

from . import sweep
from .config import (ModelConfig, TrainConfig, count_params, default_threads, flops_per_token,
                     flops_per_token_with_head, steps_for_budget, tokens_per_step)

PRESETS = ("smoke", "cpu", "gpu")

# Shared by every notebook at a preset: the model's context and heads, the batch, evaluation, bootstrap.
# head_dim 16 on CPU so widths come in steps of 16 (32, 48, 64 …): parameter-matched shapes then match
# to within a few percent, and even W = 64 has 4 heads.
BASE = {
    "smoke": dict(context=64, head_dim=16, batch_size=8, lr=3e-3, eval_every=10, eval_batches=2,
                  seeds=[0, 1], n_boot=200),
    "cpu": dict(context=64, head_dim=16, batch_size=16, lr=3e-3, eval_every=50, eval_batches=8,
                seeds=[0, 1, 2], n_boot=1000),
    "gpu": dict(context=512, head_dim=64, batch_size=64, lr=1e-3, eval_every=250, eval_batches=20,
                seeds=[0, 1, 2], n_boot=1000),
}

# Per notebook: widths, depths and the budget (its unit is the notebook's: training tokens per run for
# depth/width sweeps, FLOPs per run for compute-matched sets, a list of FLOP budgets for isoFLOP fits),
# plus any notebook-specific knob. Keys here override BASE.
TABLES: dict[str, dict[str, dict]] = {
    "01_primer": {
        # the live race: deep-thin vs wide-shallow at equal non-embedding parameters (12·D·W² the same)
        "smoke": dict(depths=[8, 2], widths=[64, 128], budget=16 * 8 * 64, seeds=[0], eval_every=4),
        "cpu": dict(depths=[8, 2], widths=[64, 128], budget=150 * 16 * 64, seeds=[0], eval_every=10),
        # the race is a CPU demonstration: on a GPU it runs the cpu shapes (in seconds)
        "gpu": dict(depths=[8, 2], widths=[64, 128], budget=150 * 16 * 64, seeds=[0], context=64,
                    head_dim=16, batch_size=16, lr=3e-3, eval_every=10),
    },
    "02_baseline_sweep": {
        # budget = the largest training-token budget per run; every run is also annealed (cooldown branches
        # of one trunk) at the fractions in `anneal` of it, so D* can be read at each budget. The LR check:
        # learning rates lr_factors × lr, chosen on tuning_seeds (not the verdict's seeds)
        # lr_extensions: an LR-check optimum at an end of the grid gets up to this many more rates, ×2 apart
        "smoke": dict(widths=[32], depths=[1, 2, 4, 8], budget=60 * 8 * 64, anneal=[0.5, 1.0], lr_factors=[0.5, 1, 2],
                      tuning_seeds=[10], lr_extensions=1),
        # Chosen for evidence per CPU-minute before any result was seen (see the notebook): the narrowest
        # widths reach the most tokens per parameter; 2M tokens, the most whose predicted time on the 2-core
        # project machine (with the LR check) stays well inside 30 minutes, is 40 tokens per non-embedding
        # parameter for W = 16 at D = 16 and 10 for W = 32 at D = 16 (40 at D = 4); depths 1…16 bracket the
        # paper's D_crit = 2.43·ln W (6.7 and 8.4) on both sides.
        "cpu": dict(widths=[16, 32], depths=[1, 2, 3, 4, 6, 8, 12, 16], budget=2_000_000, anneal=[0.25, 0.5, 1.0],
                    lr_factors=[0.5, 1, 2], tuning_seeds=[10, 11], lr_extensions=2),
        "gpu": dict(widths=[256, 512], depths=[2, 4, 8, 12, 16, 24, 32, 48], budget=100_000_000,
                    anneal=[0.25, 0.5, 1.0], lr_factors=[0.5, 1, 2], tuning_seeds=[10, 11], lr_extensions=2),
    },
    "03_width_validation": {
        "smoke": dict(widths=[32, 48, 64], depths=[4], budget=30 * 8 * 64, seeds=[0]),
        # depth 8 ≈ the paper's D_crit for the widths tried (2.43·ln W = 8.4 … 11.8 for W = 32 … 128)
        "cpu": dict(widths=[32, 48, 64, 96, 128], depths=[8], budget=300 * 16 * 64),
        "gpu": dict(widths=[128, 256, 384, 512, 768], depths=[16], budget=50_000_000),
    },
    "04_compute_matched": {
        # depths [] = the paper's pair: D_crit(W) = round(2.43·ln W) vs factor × D_crit, narrower;
        # latency_batch / latency_repeats: the inference-speed measurement's batch and timed repeats
        "smoke": dict(widths=[64], depths=[], budget=3e10, factor=2.0, latency_batch=8, latency_repeats=3),
        # C = 1.5e12 FLOPs buys the W = 64 shape at D_crit ≈ 10 about 500k tokens
        "cpu": dict(widths=[64], depths=[], budget=1.5e12, factor=2.0, latency_batch=16, latency_repeats=20),
        "gpu": dict(widths=[512], depths=[], budget=1e17, factor=2.0, latency_batch=64, latency_repeats=50),
    },
    "05_scaling_fit": {
        # isoFLOP design, fixed before any result: every shape is trained to every FLOP budget (cooldown
        # branches of one trunk per shape and seed); two aspect ratios per size (D×4 at W÷2, the same
        # 12·D·W²); sizes span well below and above the ~20 tokens per parameter of Chinchilla's optimum
        # at every budget (N* ≈ sqrt(C/120): 14k, 25k, 43k, 75k at the cpu budgets, sizes 3k … 393k).
        # min_steps: a shape a budget buys fewer steps than this is left out at that budget.
        "smoke": dict(shapes=[[1, 16], [2, 16], [4, 16], [1, 32], [8, 16], [2, 32], [16, 16], [4, 32]], widths=[], depths=[],
                      budget=[3e9, 9e9], seeds=[0], n_boot=100, min_steps=8),
        "cpu": dict(shapes=[[1, 16], [2, 16], [4, 16], [1, 32], [8, 16], [2, 32], [16, 16], [4, 32], [8, 32],
                            [2, 64], [16, 32], [4, 64], [8, 64], [2, 128]],
                    widths=[], depths=[], budget=[2.5e10, 7.5e10, 2.25e11, 6.75e11], n_boot=300, min_steps=50),
        "gpu": dict(shapes=[[2, 128], [8, 64], [4, 128], [2, 256], [8, 128], [4, 256], [16, 128], [8, 256],
                            [2, 512], [16, 256], [4, 512], [32, 256], [8, 512], [16, 512], [4, 1024]],
                    widths=[], depths=[], budget=[3e15, 1e16, 3e16], n_boot=300, min_steps=200),
    },
    "06_mobilellm_counterpoint": {
        # equal non-embedding parameters: the reference (reference_depth × width) and shapes of other depths
        # made narrower / wider to match it; each with and without MobileLLM's block sharing (×2)
        "smoke": dict(widths=[64], depths=[1, 2, 4], reference_depth=2, budget=30 * 8 * 64, seeds=[0],
                      shares=[1, 2]),
        "cpu": dict(widths=[64], depths=[2, 4, 8, 16], reference_depth=4, budget=300 * 16 * 64, shares=[1, 2]),
        # MobileLLM-125M's own shape (30 × 576) as the reference, against shallower, wider ones
        "gpu": dict(widths=[576], depths=[4, 8, 16, 30], reference_depth=30, budget=50_000_000, shares=[1, 2]),
    },
}
TABLES["07_fair_depth"] = {
    # widths[0] is the width of the depth sweeps; the learning-rate grid holds the preset's fixed lr (3e-3 on
    # CPU), so the paper-style fixed-lr sweep (a) reuses the SP grid's runs. base_depth: CompleteP's lr is
    # tuned there and transferred to the rest; the base width is widths[0], so the depth sweeps run at m_w = 1.
    # transfer_widths / transfer_seeds: the width-transfer sweep's widths (at base_depth) and seeds.
    # lr_extensions: an optimum at an end of the lr grid gets up to this many more rates, ×2 apart
    "smoke": dict(widths=[32], depths=[1, 2, 4], budget=20 * 8 * 64, seeds=[0, 1], lrs=[1.5e-3, 3e-3, 6e-3],
                  transfer_widths=[16, 32, 64], transfer_seeds=[0], base_depth=1, n_boot=200, lr_extensions=1),
    # ~100k tokens per run: the paper's D_crit at W = 32 is 2.43·ln 32 ≈ 8.4, bracketed by depths 2 … 16;
    # 5 learning rates a factor 2 apart around the preset's 3e-3
    "cpu": dict(widths=[32], depths=[2, 4, 8, 16], budget=200 * 8 * 64, seeds=[0, 1, 2], batch_size=8,
                lrs=[7.5e-4, 1.5e-3, 3e-3, 6e-3, 1.2e-2], transfer_widths=[16, 32, 64, 128], transfer_seeds=[0],
                base_depth=2, lr_extensions=2),
    "gpu": dict(widths=[256], depths=[2, 4, 8, 16, 32], budget=50_000_000, seeds=[0, 1],
                lrs=[1.25e-4, 2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3], transfer_widths=[128, 256, 512, 1024],
                transfer_seeds=[0], base_depth=2, lr_extensions=2),
}
TABLES["08_depth_reasoning"] = {
    # widths = [the parameter arm's reference width, the FLOP arm's width]; task: the k-hop options, every
    # run on corpus + k-hop documents at `fraction` of the training sequences (half: at CPU scale the task
    # needs the examples to be learnable at all — chosen before any result); target: the accuracy "reaching"
    # means in the depth-per-hop reading. Matched shapes at reference (4, 64): widths 128, 96, 64, 48, 32.
    "smoke": dict(widths=[32, 32], depths=[1, 2], reference_depth=2, budget=40 * 8 * 64, seeds=[0, 1],
                  task="hops=1,2", fraction=0.5, target=0.5, n_boot=200),
    "cpu": dict(widths=[64, 32], depths=[1, 2, 4, 8, 16], reference_depth=4, budget=1_000_000,
                task="hops=1,2,4,8", fraction=0.5, target=0.9),
    "gpu": dict(widths=[512, 256], depths=[2, 4, 8, 16, 32], reference_depth=8, budget=200_000_000,
                task="hops=1,2,4,8,16", fraction=0.25, target=0.9),
}
# Mobile-style blocks for the counterpoint notebook, as MobileLLM (arXiv 2402.14905) builds them.
MOBILELLM_BLOCK = dict(mlp="swiglu", norm="rmsnorm", tie_embeddings=True)


def repo_root() -> Path:
    """The checkout dwlib was imported from (an editable install), else the current directory."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "notebooks").is_dir() else Path.cwd()


def default_output_dir(notebook: str) -> Path:
    return repo_root() / "outputs" / notebook


def default_store_path() -> Path:
    return repo_root() / "outputs" / "runs.sqlite"


def preset_values(notebook: str, preset: str) -> dict:
    """BASE[preset] with the notebook's table for that preset on top (a fresh copy)."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}; got {preset!r}")
    if notebook not in TABLES:
        raise ValueError(f"no presets for notebook {notebook!r}; known: {', '.join(TABLES)}")
    return copy.deepcopy({**BASE[preset], **TABLES[notebook][preset]})


# Every notebook's parameters beside its preset table's keys, with their defaults
COMMON = dict(corpus="stdlib", tokenizer="byte", device="auto", store_path=None, executor="local", output_dir=None,
              threads=None)


def parameters(notebook: str, preset: str) -> set:
    """The names a notebook's settings take: preset, COMMON's and its preset table's (BASE's too)."""
    return {"preset", *COMMON, *preset_values(notebook, preset)}


class Settings(SimpleNamespace):
    """A notebook's resolved parameters as attributes — its preset's table (`preset_values`) with the
    notebook's own values on top: s.widths, s.budget, s.factor … — and the base configs they make."""

    def model(self, **fields) -> ModelConfig:
        """The notebook's base ModelConfig (context, heads, vocabulary of the tokenizer) with `fields`."""
        from .data import vocab_size   # light: no corpus is read
        base = dict(context=self.context, head_dim=self.head_dim, vocab_size=vocab_size(self.corpus, self.tokenizer))
        return ModelConfig(**{**base, **fields})

    def train(self, **fields) -> TrainConfig:
        """The notebook's base TrainConfig (corpus, tokenizer, batch, LR, evaluation, device, threads).
        Threads are pinned only for the in-process executor: the parallel and Ray executors size each
        worker's threads to its share of the cores (pinning all cores in every worker oversubscribes
        them, ~50× slower)."""
        base = dict(corpus=self.corpus, tokenizer=self.tokenizer, batch_size=self.batch_size, lr=self.lr,
                    eval_every=self.eval_every, eval_batches=self.eval_batches, device=self.device,
                    threads=self.threads if self.executor == "local" else None)
        return TrainConfig(**{**base, **fields})


def settings(notebook: str, preset: str = "smoke", **params) -> Settings:
    """Resolve a notebook's parameters (`parameters`): None means the default, for a preset key (widths,
    depths, budget, seeds, context, lr, n_boot, a notebook knob such as factor…) the preset's value."""
    values = {**COMMON, **preset_values(notebook, preset)}
    for key, value in params.items():
        if key not in values:
            raise ValueError(f"unknown notebook parameter {key!r}; known: {', '.join(sorted(values))}")
        if value is not None:
            values[key] = value
    for key in ("widths", "depths", "seeds"):
        values[key] = _as_list(key, values[key])
    if str(values["executor"]).partition(":")[0] not in sweep.EXECUTORS:   # "slurm:partition=gpu,…": its options
        raise ValueError(f"executor must be one of {', '.join(sweep.EXECUTORS)} (Slurm's options as "
                         f"'slurm:partition=gpu,time_limit=120'); got {values['executor']!r}")
    threads = values["threads"]
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer (None: $DWLIB_THREADS or all cores); got {threads!r}")
    values["store_path"] = Path(values["store_path"] or default_store_path())
    values["output_dir"] = Path(values["output_dir"] or default_output_dir(notebook))
    values["threads"] = threads or default_threads()
    return Settings(notebook=notebook, preset=preset, **values)


def _as_list(name, value) -> list:
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):   # "64,128" from a command line
        try:
            return [int(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"{name} must be a list of integers or 'a,b,c', got {value!r}") from None
    return [value]


# ---------------------------------------------------------------------------------------------
# Cost model: predicted seconds for a design, so notebooks can say what a preset will cost
# ---------------------------------------------------------------------------------------------

# CUDA, from bench/RESULTS.md (H100, bf16, no compile): achieved FLOP/s grows with width, from
# ~91 TFLOP/s at W = 256 to ~231 at W = 768 and ~385 at W = 2048; log-linear between those points.
GPU_FLOPS_BY_WIDTH = ((256, 91e12), (768, 231e12), (1024, 271e12), (2048, 385e12))
GPU_STEP_OVERHEAD = 0.004   # seconds per step the small models spend launching kernels
# Checked on an H100 (2026-11-23, torch 2.11, context 512, batch 64, 40 steps): measured vs predicted
# ms per step — D=16 W=512: 70.6 vs 69.6; D=48 W=512: 197 vs 201; D=16 W=256: 44.8 vs 35.9.
SPEED_SHAPES = ((2, 16), (8, 32), (8, 64), (4, 128))   # timed to calibrate the CPU model: narrow to wide
# `machine_speed` on the 2-core project machine, one thread, quiet: what tests price the presets with
# (a live measurement on a busy CI machine would make the check depend on the load)
REFERENCE_SPEED = dict(layer_seconds=0.0009, layer_width_seconds=0.0033, flops_per_second=1.15e11)


def speed_cache_path(threads: int):
    """Where `machine_speed` keeps its measurement: one file per machine, CPU, torch version and threads."""
    import platform

    import torch

    from .data import cache_dir
    cpu = platform.processor() or platform.machine()
    key = f"{platform.node()}-{cpu}-torch{torch.__version__}-{threads}t".replace("/", "_").replace(" ", "_")
    return cache_dir() / "speed" / f"{key}.json"


def machine_speed(threads: int = 1, *, refresh: bool = False) -> dict:
    """How fast this machine trains on the CPU with `threads` torch threads, measured and cached.

    A CPU step of a small model costs, per layer and per 1024 tokens, `layer_seconds` of fixed work plus
    `layer_width_seconds` × W/64 of memory-bound work that grows with the width (norms, softmax, GELU, the
    optimizer), plus its FLOPs at `flops_per_second`. The three are fitted (least squares, non-negative)
    to the median of ten timed `train.train` steps of four shapes (context 64, batch 16, after three
    warm-up steps), ~15 s, and cached under the cache folder by machine, CPU, torch version and thread
    count. Measure on a quiet machine: a busy one gives a slower (pessimistic) model; `refresh=True`
    measures again."""
    import json

    import numpy as np
    import torch
    from scipy.optimize import nnls

    from .data import Tokens
    from .train import train

    path = speed_cache_path(threads)
    if path.exists() and not refresh:
        try:
            cached = json.loads(path.read_text())
        except ValueError:
            cached = {}
        if set(REFERENCE_SPEED) <= set(cached):     # a file from an older cost model is measured again
            return cached
    ids = np.random.default_rng(0).integers(0, 256, 1 << 16, dtype=np.uint8)   # speed does not depend on the text
    tokens = Tokens(train=ids, val=ids[:4096], fingerprint="speed", vocab_size=256, corpus="speed", tokenizer="byte")
    previous = torch.get_num_threads()
    rows, seconds = [], []
    try:
        for depth, width in SPEED_SHAPES:
            cfg = ModelConfig(depth=depth, width=width, context=64, head_dim=16, vocab_size=256)
            # 17 steps: three warm-up, ten timed, and the four before the end that also take gradient norms
            run = TrainConfig(corpus="speed", steps=17, batch_size=16, eval_every=17, eval_batches=1,
                              grad_norm_steps=(), device="cpu", threads=threads)
            clock = [time.perf_counter()]
            train(cfg, run, progress=False, tokens=tokens, on_step=lambda step, _: clock.append(time.perf_counter()))
            per_step = tokens_per_step(cfg, run)
            rows.append([cfg.layers * per_step / 1024, cfg.layers * per_step / 1024 * width / 64,
                         flops_per_token_with_head(cfg) * per_step])
            seconds.append(float(np.median(np.diff(clock[3:14]))))
    finally:
        torch.set_num_threads(previous)
    coef, _ = nnls(np.array(rows), np.array(seconds))
    speed = dict(layer_seconds=float(coef[0]), layer_width_seconds=float(coef[1]),
                 flops_per_second=float(1 / coef[2]) if coef[2] > 0 else 1e12,
                 threads=threads, torch=torch.__version__, measured=time.strftime("%Y-%m-%d %H:%M"),
                 shapes=[dict(depth=d, width=w, step_seconds=t) for (d, w), t in zip(SPEED_SHAPES, seconds)])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(speed, indent=1))
    return speed


def step_seconds(model: ModelConfig, train: TrainConfig, device: str = "cpu", threads: int = 1) -> float:
    """Predicted seconds per optimizer step of one run on `device` ('cpu' or 'cuda'); the CPU model is
    this machine's, measured by `machine_speed`."""
    tokens = tokens_per_step(model, train)
    flops = flops_per_token_with_head(model) * tokens
    if device.startswith("cuda"):
        import numpy as np
        widths, rates = np.log(GPU_FLOPS_BY_WIDTH).T     # log-linear in the width, held at the end points
        return GPU_STEP_OVERHEAD + flops / math.exp(np.interp(math.log(model.width), widths, rates))
    speed = machine_speed(threads)
    per_layer = speed["layer_seconds"] + speed["layer_width_seconds"] * model.width / 64
    return per_layer * model.layers * tokens / 1024 + flops / speed["flops_per_second"]


def estimate_seconds(pairs, device: str = "cpu", threads: int = 1, workers: int = 1) -> float:
    """Predicted wall seconds to train every (ModelConfig, TrainConfig) pair, `workers` runs side by side:
    steps (a cooldown branch only its cooldown: `sweep.trained_steps`), evaluations (forward only, ≈ 1/3
    of a step each), and ~0.3 s per run of overhead. Calibrated on this machine (`machine_speed`); print it
    beside the measured time."""
    total = 0.0
    for (m, t), trained in zip(pairs, sweep.trained_steps(pairs)):
        evals = trained // t.eval_every + 1
        total += (trained + evals * t.eval_batches / 3) * step_seconds(m, t, device, threads) + 0.3
    return total / max(1, workers)


def contention(threads: int = 1) -> float:
    """How many times longer a run of `threads` torch threads takes now than `estimate_seconds` says (a
    quiet machine's figure) when the cores are shared fairly with whatever else runs: (1-minute load
    average + threads) / cores, at least 1."""
    from .config import available_cores
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):     # not POSIX
        return 1.0
    return max(1.0, (load + threads) / available_cores())


def busy_note(seconds: float, threads: int = 1) -> str:
    """A sentence to follow a prediction of `seconds` while the machine is busy (`contention` ≥ 1.5), else ""."""
    from .config import available_cores
    factor = contention(threads)
    if factor < 1.5:
        return ""
    longer = seconds * factor
    return (f" The machine is busy now (load {os.getloadavg()[0]:.1f} on {available_cores()} cores): with the cores "
            f"shared fairly that is about {factor:.0f}× longer, "
            + (f"{longer:.0f} s." if longer < 120 else f"{longer / 60:.0f} min."))


def design_cost(pairs) -> dict:
    """Runs, trunks, training tokens (cooldown branches counted once) and FLOPs of a design, and its
    predicted minutes on this CPU (one thread; two workers) and on an H100."""
    cost = sweep.anneal_cost(pairs)
    flops = sum(flops_per_token(m) * steps_for_budget(m, t) * tokens_per_step(m, t) for m, t in pairs)
    return dict(runs=len(pairs), trunks=cost["trunks"], tokens=cost["tokens_branched"],
                tokens_without_branches=cost["tokens_separate"], flops=flops,
                largest_params=max(count_params(m) for m, _ in pairs),
                cpu_minutes=estimate_seconds(pairs, "cpu") / 60,
                cpu_minutes_2_workers=estimate_seconds(pairs, "cpu", workers=2) / 60,
                h100_minutes=estimate_seconds(pairs, "cuda") / 60)


def describe(notebook: str, preset: str) -> dict:
    """One preset of a notebook as a flat dict for a table (lists shown as text)."""
    values = preset_values(notebook, preset)
    return {k: (", ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v) if isinstance(v, list) else v)
            for k, v in values.items()}


# ---------------------------------------------------------------------------------------------
# Designs: the runs each notebook trains, as one `sweep.design` spec filled from its settings (one place,
# so the preset tables can price every preset and a notebook's Train button builds shapes the same way)
# ---------------------------------------------------------------------------------------------

def design(s: Settings) -> list[tuple]:
    """The (ModelConfig, TrainConfig) pairs notebook `s.notebook` trains with settings `s`."""
    if s.notebook not in DESIGNS:
        raise ValueError(f"no design for notebook {s.notebook!r}; known: {', '.join(DESIGNS)}")
    return DESIGNS[s.notebook](s)


def _design(s: Settings, kind: str, **spec) -> list[tuple]:
    """`sweep.design(kind, **spec)` on the notebook's base configs and seeds."""
    return sweep.design(kind, **{"model": s.model(), "train": s.train(), "seeds": s.seeds, **spec})


def _annealed(s: Settings, budgets=None) -> dict:
    """02's schedule: every run annealed at each fraction in `anneal` of the budget (or at `budgets`), with
    one absolute warmup for the whole design (5% of the smallest annealed budget's steps), so that runs of
    different designs (the LR check) share their schedule."""
    annealed = [int(f * s.budget) for f in (s.anneal or [1.0])]
    warmup = max(1, round(0.05 * min(annealed) / tokens_per_step(s.model(), s.train())))
    return dict(anneal_at=budgets or annealed, warmup=warmup)


def _race(s: Settings) -> list[tuple]:
    """01: each (depth, width) of the race — paired up by position — for `budget` tokens, on one seed."""
    if len(s.depths) != len(s.widths):
        raise ValueError(f"the race pairs depths with widths: got {len(s.depths)} depths, {len(s.widths)} widths")
    return _design(s, "grid", shapes=list(zip(s.depths, s.widths)), seeds=s.seeds[:1], tokens=int(s.budget))


DESIGNS = {
    "01_primer": _race,
    # the paper's depth sweep at each width, each run annealed at every budget in `anneal` (fractions of
    # `budget`): one trunk per shape and seed, a cooldown branch per smaller budget
    "02_baseline_sweep": lambda s: _design(s, "depth", depths=s.depths, widths=s.widths, tokens=int(s.budget),
                                           **_annealed(s)),
    "03_width_validation": lambda s: _design(s, "width", depths=s.depths[:1], widths=s.widths, tokens=int(s.budget)),
    # the shape at D_crit(W) against one `factor`× deeper and narrower (matched non-embedding parameters),
    # or the two `depths` given, at `budget` FLOPs each
    "04_compute_matched": lambda s: _design(s, "critical-depth", depths=s.depths or None, widths=s.widths[:1],
                                            factor=s.factor, flops=float(s.budget)),
    # every shape (`shapes`, or depths × widths when both are given) trained to each FLOP budget in `budget`
    # that buys it ≥ min_steps steps: one trunk per shape and seed to the largest, a cooldown branch per other
    "05_scaling_fit": lambda s: _design(s, "isoflop", budgets=s.budget, min_steps=s.min_steps, annealed=True,
                                        **(dict(depths=s.depths, widths=s.widths) if s.depths and s.widths
                                           else dict(shapes=s.shapes))),
    # every depth at the non-embedding parameters of (reference_depth, widths[0]), with each block-sharing factor
    "06_mobilellm_counterpoint": lambda s: _design(s, "matched", depths=s.depths, widths=s.widths[:1],
                                                   reference_depth=reference_depth(s), vary={"share": s.shares},
                                                   tokens=int(s.budget), model=s.model(**MOBILELLM_BLOCK)),
    # every run as one list for cost estimates: arm (c) priced at the preset's lr (its real lr is only known
    # once the base shape has been tuned)
    "08_depth_reasoning": lambda s: [pair for arm in reasoning_design(s).values() for pair in arm],
    "07_fair_depth": lambda s: [pair for part in fair_depth_design(s, transferred_lr=s.lr).values() for pair in part],
}


def reasoning_hops(s: Settings) -> list[int]:
    """08: the hop counts of the preset's k-hop task."""
    from .khop import split_corpus
    return list(split_corpus(f"khop:{s.task}")[1].hops)


def reasoning_corpus(s: Settings, max_hops: int | None = None) -> str:
    """08: the mixed corpus spec, text + k-hop documents at `fraction`; `max_hops` (the explorer's k)
    replaces the hop counts by the powers of 2 up to it."""
    options = [o for o in s.task.split(",") if o] if max_hops is None else \
        [o for o in s.task.split(",") if o and "=" in o and not o.startswith("hops=")]
    if max_hops is not None:
        options.insert(0, "hops=" + ",".join(str(2 ** i) for i in range(int(max_hops).bit_length())))
    return f"{s.corpus}+khop:fraction={s.fraction:g}," + ",".join(options)


def reasoning_design(s: Settings) -> dict[str, list[tuple]]:
    """08's two arms on the mixed corpus: `parameters` (every depth at the non-embedding parameters of
    (reference_depth, widths[0]), `budget` tokens each) and `flops` (every depth at widths[-1], each for
    the training FLOPs of the reference shape's run)."""
    from .data import vocab_size   # light: no corpus is read
    corpus = reasoning_corpus(s)
    model = s.model(vocab_size=vocab_size(corpus, s.tokenizer))    # text tokens + the task's
    params = _design(s, "matched", depths=s.depths, widths=s.widths[:1], reference_depth=s.reference_depth,
                     tokens=int(s.budget), corpus=corpus, model=model)
    m, t = next((m, t) for m, t in params if m.depth == s.reference_depth)
    flops = float(steps_for_budget(m, t) * tokens_per_step(m, t) * flops_per_token(m))
    return {"parameters": params,
            "flops": _design(s, "compute-matched", depths=s.depths, widths=s.widths[-1:], flops=flops, corpus=corpus,
                             model=model)}


def lr_check_depths(r, depths) -> tuple[int, int]:
    """02's learning-rate check compares two depths of the critical-depth fit `r`: its best depth — or,
    when that is the deepest, where the loss levels off, or else the second-deepest — and the deepest."""
    deepest = max(depths)
    best = r.best_depth if r.best_depth != deepest else r.d_plateau if r.d_plateau < deepest else sorted(depths)[-2]
    return int(best), deepest


def lr_check_design(s: Settings, depths, width, lrs=None, seeds=None) -> list[tuple]:
    """02's learning-rate check: at each of `depths` (the best and the deepest) at `width`, learning rates
    `lr_factors` × lr on the tuning seeds (not the verdict's: choosing a winner and scoring it on the same
    seeds flatters it) — or, with `lrs` {depth: lr} and `seeds`, those learning rates on those seeds.
    Every run is annealed at the largest budget only, with the sweep's schedule and warmup."""
    return [pair for depth in depths for pair in _design(
        s, "grid", shapes=[(depth, width)], seeds=seeds or s.tuning_seeds, tokens=int(s.budget),
        vary={"lr": [lrs[depth]] if lrs else [f * s.lr for f in s.lr_factors]}, **_annealed(s, [int(s.budget)]))]


def reference_depth(s: Settings) -> int:
    """06: the depth whose shape (at widths[0]) sets the parameter count every other shape matches:
    the preset's `reference_depth` if it is among the depths, else the second-shallowest depth."""
    depths = sorted(s.depths)
    ref = s.reference_depth
    return ref if ref in depths else depths[min(1, len(depths) - 1)]


FAIR_DEPTH_SWEEPS = {"width_transfer": ("sp", "mup"), "depth_transfer": ("sp", "completep")}


def fair_depth_groups(s: Settings, part: str) -> list[tuple]:
    """07: the shapes (parametrization, depth, width) of one lr sweep: `width_transfer` (transfer_widths at
    the base depth, SP and μP) or `depth_transfer` (depths at widths[0], SP and CompleteP)."""
    shapes = ([(s.base_depth, w) for w in s.transfer_widths] if part == "width_transfer" else
              [(d, s.widths[0]) for d in s.depths])
    return [(p, d, w) for p in FAIR_DEPTH_SWEEPS[part] for d, w in shapes]


def fair_depth_lr_pairs(s: Settings, part: str, group: tuple, lr: float) -> list[tuple]:
    """07: one shape `group` (parametrization, depth, width) of sweep `part` at one learning rate, on that
    sweep's seeds (transfer_seeds for the width transfer, seeds for the depth transfer), `budget` tokens,
    the base shape (widths[0], base_depth) — how the grid is built and how `transfer.bracketed_best_lr`
    extends it."""
    from .transfer import lr_sweep
    parametrization, depth, width = group
    return lr_sweep([lr], [(depth, width)], s.transfer_seeds if part == "width_transfer" else s.seeds,
                    parametrizations=[parametrization], model=s.model(base_width=s.widths[0], base_depth=s.base_depth),
                    train=s.train(), tokens=int(s.budget))


def fair_depth_design(s: Settings, transferred_lr: float | None = None) -> dict[str, list[tuple]]:
    """07's runs by part: `width_transfer` and `depth_transfer` (the lr grid × `fair_depth_groups`; the
    depth transfer's SP runs are also the input of arms (a) and (b)), and with `transferred_lr`,
    `transferred` (every depth at that one lr under CompleteP: arm (c)). The lr sweeps' grids are only
    where they start: the notebook extends them (`lr_extensions`) where an optimum sits at an end."""
    parts = {part: [pair for g in fair_depth_groups(s, part) for lr in s.lrs for pair in fair_depth_lr_pairs(s, part, g, lr)]
             for part in FAIR_DEPTH_SWEEPS}
    if transferred_lr is not None:
        parts["transferred"] = [pair for d in s.depths for pair in
                                fair_depth_lr_pairs(s, "depth_transfer", ("completep", d, s.widths[0]), transferred_lr)]
    return parts


def preset_table(notebook: str, **params):
    """All presets of a notebook side by side: their values, runs, total FLOPs and predicted minutes
    (CPU one thread, CPU two workers, one H100). `params` are applied to every preset (e.g. corpus)."""
    import pandas as pd
    rows = {}
    for preset in PRESETS:
        s = settings(notebook, preset, **params)
        row = describe(notebook, preset)
        if notebook in DESIGNS:
            cost = design_cost(design(s))
            row.update(runs=cost["runs"], total_flops=f"{cost['flops']:.2g}",
                       largest_params=f"{cost['largest_params']:,}",
                       **{k: round(cost[k], 1) for k in ("cpu_minutes", "cpu_minutes_2_workers", "h100_minutes")})
        rows[preset] = row
    return pd.DataFrame(rows)
