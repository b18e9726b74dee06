"""What each notebook runs at each scale: the preset tables, and the settings a notebook resolves from
its papermill parameters.

Three presets, chosen on cost and statistics before any result was looked at:

    smoke   plumbing check, what CI runs: every notebook end to end in about a minute on 2 CPU cores
            with one torch thread. Tiny models, a few dozen steps: its numbers are not results.
    cpu     a meaningful result on a laptop-class CPU in well under an hour, ≥ 3 seeds per shape
            (at toy scale deep-narrow runs scatter between seeds by more than the depth effect).
    gpu     a serious run for one GPU; its expected time comes from `estimate_seconds`, calibrated on
            the trainer's measured throughput (bench/RESULTS.md).

A notebook's parameter left at None takes the preset's value; a value given (in the notebook or with
papermill's -p) wins. `settings(...)` does the merge; `preset_table(notebook)` shows all three presets
side by side with their predicted cost, so a reader sees what each one runs.

Plain data and arithmetic on configs (no torch, no widgets): notebooks and the runner import it.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path

from .config import (ModelConfig, TrainConfig, count_params, default_threads, flops_per_token, flops_per_token_with_head,
                     steps_for_budget)

PRESETS = ("smoke", "cpu", "gpu")
NOTEBOOKS = ("01_primer", "02_baseline_sweep", "03_width_validation", "04_compute_matched",
             "05_scaling_fit", "06_mobilellm_counterpoint", "07_fair_depth")

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
        "smoke": dict(widths=[64], depths=[1, 2, 4, 8], budget=40 * 8 * 64),
        # W = 64: the paper's D_crit = 2.43·ln 64 ≈ 10.1, so depths 2…24 bracket it by ×5 below and ×2.4 above
        "cpu": dict(widths=[64], depths=[2, 3, 4, 6, 8, 12, 16, 24], budget=400 * 16 * 64),
        "gpu": dict(widths=[256, 512], depths=[2, 4, 8, 12, 16, 24, 32, 48], budget=100_000_000),
    },
    "03_width_validation": {
        "smoke": dict(widths=[32, 48, 64], depths=[4], budget=30 * 8 * 64, seeds=[0]),
        # depth 8 ≈ the paper's D_crit for the widths tried (2.43·ln W = 8.4 … 11.8 for W = 32 … 128)
        "cpu": dict(widths=[32, 48, 64, 96, 128], depths=[8], budget=300 * 16 * 64),
        "gpu": dict(widths=[128, 256, 384, 512, 768], depths=[16], budget=50_000_000),
    },
    "04_compute_matched": {
        # depths [] = the paper's pair: D_crit(W) = round(2.43·ln W) vs factor × D_crit, narrower
        "smoke": dict(widths=[64], depths=[], budget=3e10, factor=2.0, latency_batch=8, latency_repeats=3),
        # C = 1.5e12 FLOPs buys the W = 64 shape at D_crit ≈ 10 about 500k tokens
        "cpu": dict(widths=[64], depths=[], budget=1.5e12, factor=2.0, latency_batch=16, latency_repeats=20),
        "gpu": dict(widths=[512], depths=[], budget=1e17, factor=2.0, latency_batch=64, latency_repeats=50),
    },
    "05_scaling_fit": {
        # isoFLOP design: shapes (depth × width) each trained to every budget in the list
        "smoke": dict(widths=[32, 64], depths=[1, 2, 4, 8], budget=[4e9, 1.2e10], seeds=[0], n_boot=100,
                      min_steps=8),
        # min_steps: shapes a budget buys fewer optimizer steps than this are left out (too short to mean much)
        "cpu": dict(widths=[32, 64, 128], depths=[2, 4, 8, 16], budget=[5e10, 1.5e11, 5e11], n_boot=300,
                    min_steps=50),
        "gpu": dict(widths=[128, 256, 512, 768], depths=[2, 4, 8, 16, 32], budget=[3e15, 1e16, 3e16],
                    seeds=[0], n_boot=300, min_steps=200),
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


@dataclass
class Settings:
    """A notebook's resolved parameters: the papermill values, with None filled from the preset."""

    notebook: str
    preset: str
    corpus: str
    tokenizer: str
    widths: list
    depths: list
    budget: object
    seeds: list
    device: str
    store_path: Path
    executor: str
    output_dir: Path
    threads: int
    context: int
    head_dim: int
    batch_size: int
    lr: float
    eval_every: int
    eval_batches: int
    n_boot: int
    extra: dict = field(default_factory=dict)   # notebook-specific knobs (factor, shares, …)

    def model(self, **fields) -> ModelConfig:
        """The notebook's base ModelConfig (context, heads, vocabulary of the tokenizer) with `fields`."""
        from .data import tokenizer_vocab_size   # light: no corpus is read
        base = dict(context=self.context, head_dim=self.head_dim, vocab_size=tokenizer_vocab_size(self.tokenizer))
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

    def __getattr__(self, name):
        # notebook-specific knobs read like the common ones: s.factor, s.shares
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(name)


def settings(notebook: str, preset: str = "smoke", *, corpus="stdlib", tokenizer="byte", widths=None,
             depths=None, budget=None, seeds=None, device="auto", store_path=None, executor="local",
             output_dir=None, threads=None, **overrides) -> Settings:
    """Resolve a notebook's parameters: None means "the preset's value". `overrides` may set any other
    preset key (context, batch_size, lr, n_boot, or a notebook knob such as factor) — also None = preset."""
    values = preset_values(notebook, preset)
    given = dict(widths=widths, depths=depths, budget=budget, seeds=seeds,
                 **{k: v for k, v in overrides.items()})
    for key, value in given.items():
        if value is not None:
            values[key] = value
    for key in ("widths", "depths", "seeds"):
        values[key] = _as_list(key, values[key])
    if executor not in ("local", "parallel", "ray"):
        raise ValueError(f"executor must be 'local', 'parallel' or 'ray'; got {executor!r}")
    common = {k: values.pop(k) for k in ("widths", "depths", "budget", "seeds", "context", "head_dim",
                                         "batch_size", "lr", "eval_every", "eval_batches", "n_boot")}
    return Settings(notebook=notebook, preset=preset, corpus=corpus, tokenizer=tokenizer,
                    device=device, executor=executor,
                    store_path=Path(store_path) if store_path else default_store_path(),
                    output_dir=Path(output_dir) if output_dir else default_output_dir(notebook),
                    threads=int(threads) if threads else default_threads(), extra=values, **common)


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

# CPU, one torch thread, fitted to step times measured on the 2-core project machine while other jobs
# ran (so a quiet laptop is faster): seconds per step ≈ CPU_LAYER_SECONDS·layers·(tokens/1024) +
# FLOPs / CPU_FLOPS. The per-layer term is the memory-bound work (norms, softmax, GELU) small models
# are dominated by.
CPU_FLOPS = 17e9
CPU_LAYER_SECONDS = 0.0116
# CUDA, from bench/RESULTS.md (H100, bf16, no compile): achieved FLOP/s grows with width, from
# ~91 TFLOP/s at W = 256 to ~231 at W = 768 and ~385 at W = 2048; log-linear between those points.
GPU_FLOPS_BY_WIDTH = ((256, 91e12), (768, 231e12), (1024, 271e12), (2048, 385e12))
GPU_STEP_OVERHEAD = 0.004   # seconds per step the small models spend launching kernels
# Checked on an H100 (2026-11-23, torch 2.11, context 512, batch 64, 40 steps): measured vs predicted
# ms per step — D=16 W=512: 70.6 vs 69.6; D=48 W=512: 197 vs 201; D=16 W=256: 44.8 vs 35.9.


def step_seconds(model: ModelConfig, train: TrainConfig, device: str = "cpu", threads: int = 1) -> float:
    """Predicted seconds per optimizer step of one run on `device` ('cpu' or 'cuda')."""
    tokens = train.batch_size * train.grad_accum * model.context
    flops = flops_per_token_with_head(model) * tokens
    if device.startswith("cuda"):
        import math
        pts = GPU_FLOPS_BY_WIDTH
        w = min(max(model.width, pts[0][0]), pts[-1][0])
        for (w0, f0), (w1, f1) in zip(pts, pts[1:]):
            if w <= w1:
                rate = math.exp(math.log(f0) + (math.log(f1) - math.log(f0)) * math.log(w / w0) / math.log(w1 / w0))
                break
        return GPU_STEP_OVERHEAD + flops / rate
    speedup = 1.0 + 0.5 * (max(1, threads) - 1)   # a second thread helps small models little
    return (CPU_LAYER_SECONDS * model.layers * tokens / 1024 + flops / CPU_FLOPS) / speedup


def estimate_seconds(pairs, device: str = "cpu", threads: int = 1, workers: int = 1) -> float:
    """Predicted wall seconds to train every (ModelConfig, TrainConfig) pair, evaluation included
    (≈ 5%), `workers` runs side by side. A rough guide (±50%), not a promise."""
    total = 0.0
    for m, t in pairs:
        steps = steps_for_budget(m, t)
        evals = steps // t.eval_every + 1
        eval_steps = evals * t.eval_batches / 3      # forward only: ~1/3 of a training step
        total += (steps + eval_steps) * step_seconds(m, t, device, threads) + 0.3   # + per-run overhead
    return total / max(1, workers)


def design_cost(pairs) -> dict:
    """Runs, total training FLOPs and tokens of a design, and predicted hours on CPU / an H100."""
    flops = sum(flops_per_token(m) * steps_for_budget(m, t) * t.batch_size * t.grad_accum * m.context
                for m, t in pairs)
    tokens = sum(steps_for_budget(m, t) * t.batch_size * t.grad_accum * m.context for m, t in pairs)
    return dict(runs=len(pairs), flops=flops, tokens=tokens,
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
# Designs: the runs each notebook trains, from its settings (one place, so the preset tables can
# price every preset and a notebook's Train button builds shapes the same way)
# ---------------------------------------------------------------------------------------------

def design(s: Settings) -> list[tuple]:
    """The (ModelConfig, TrainConfig) pairs notebook `s.notebook` trains with settings `s`."""
    if s.notebook not in DESIGNS:
        raise ValueError(f"no design for notebook {s.notebook!r}; known: {', '.join(DESIGNS)}")
    return DESIGNS[s.notebook](s)


def _race(s: Settings):
    """Primer: each (depth, width) of the race — paired up by position — for `budget` tokens."""
    from . import sweep
    if len(s.depths) != len(s.widths):
        raise ValueError(f"the race pairs depths with widths: got {len(s.depths)} depths, {len(s.widths)} widths")
    pairs = []
    for depth, width in zip(s.depths, s.widths):
        pairs += sweep.grid([depth], [width], s.seeds[:1], model=s.model(), train=s.train(), tokens=int(s.budget))
    return pairs


def _baseline(s: Settings):
    """02: the paper's depth sweep — every depth at each width, `budget` training tokens per run."""
    from . import sweep
    pairs = []
    for width in s.widths:
        pairs += sweep.depth_sweep(width, s.depths, s.seeds, model=s.model(), train=s.train(), tokens=int(s.budget))
    return pairs


def _width_validation(s: Settings):
    """03: every width at one depth (the first of `depths`), `budget` tokens per run."""
    from . import sweep
    return sweep.width_sweep(s.depths[0], s.widths, s.seeds, model=s.model(), train=s.train(), tokens=int(s.budget))


def _compute_matched(s: Settings):
    """04: at `budget` FLOPs per run, the shape at D_crit(W) against one `factor`× deeper and narrower
    (matched non-embedding parameters); with two `depths` given, those two depths instead."""
    from . import sweep
    width = s.widths[0]
    if not s.depths:
        return sweep.critical_depth_pair(float(s.budget), width, s.seeds, factor=s.factor, model=s.model(),
                                         train=s.train())
    if len(s.depths) != 2:
        raise ValueError(f"give two depths (reference, deeper) or none (the paper's pair), got {s.depths}")
    shallow, deep = s.depths
    narrow = sweep.matched_width(deep, s.model(depth=shallow, width=width))
    return sweep.compute_matched(float(s.budget), [(shallow, width), (deep, narrow)], s.seeds,
                                 model=s.model(), train=s.train())


def _scaling(s: Settings):
    """05: isoFLOP design — every depth × width trained to each FLOP budget in `budget`."""
    import warnings
    from . import sweep
    budgets = s.budget if isinstance(s.budget, (list, tuple)) else [s.budget]
    with warnings.catch_warnings():   # shapes too big for the smallest budget are dropped on purpose
        warnings.simplefilter("ignore")
        return sweep.isoflop(budgets, depths=s.depths, widths=s.widths, seeds=s.seeds, model=s.model(),
                             train=s.train(), min_steps=s.extra.get("min_steps", 10))


def _counterpoint(s: Settings):
    """06: shapes of every depth at the non-embedding parameters of (reference_depth, widths[0])
    — narrower when deeper — each with every block-sharing factor in `shares`, `budget` tokens per run."""
    from . import sweep
    reference = s.model(depth=reference_depth(s), width=s.widths[0], **MOBILELLM_BLOCK)
    pairs = []
    for depth in s.depths:
        width = s.widths[0] if depth == reference.depth else sweep.matched_width(depth, reference)
        for share in s.shares:
            pairs += sweep.grid([depth], [width], s.seeds, model=replace(reference, share=share),
                                train=s.train(), tokens=int(s.budget))
    return pairs


def reference_depth(s: Settings) -> int:
    """06: the depth whose shape (at widths[0]) sets the parameter count every other shape matches:
    the preset's `reference_depth` if it is among the depths, else the second-shallowest depth."""
    depths = sorted(s.depths)
    ref = s.extra.get("reference_depth")
    return ref if ref in depths else depths[min(1, len(depths) - 1)]


DESIGNS = {
    "01_primer": _race,
    "02_baseline_sweep": _baseline,
    "03_width_validation": _width_validation,
    "04_compute_matched": _compute_matched,
    "05_scaling_fit": _scaling,
    "06_mobilellm_counterpoint": _counterpoint,
}


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
                       cpu_minutes=round(cost["cpu_minutes"], 1),
                       cpu_minutes_2_workers=round(cost["cpu_minutes_2_workers"], 1),
                       h100_minutes=round(cost["h100_minutes"], 1))
        rows[preset] = row
    return pd.DataFrame(rows)
