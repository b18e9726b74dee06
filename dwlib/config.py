"""Run configuration and accounting: what a model shape costs in parameters and FLOPs.

Everything here is plain Python (no torch), so the store, the fitters and the notebooks can count
parameters and FLOPs without building a model. The counts are exact for the model that
`dwlib.model.Transformer` builds (Kaplan et al., arXiv 2001.08361: N ≈ 12·D·W² non-embedding
parameters, C ≈ 6N + 6·D·T·W per token); `tests/test_config.py` checks them against torch's own
parameter and FLOP counts and the Depth Delusion paper's W = 512 family.

Each config field carries its command-line help in its metadata (`option`): `python -m dwlib` makes
one flag per field from it, so a field's default, choices and help are written once, here.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field

NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu")
RESIDUAL_SCALES = ("none", "rezero", "inv-sqrt-2l")
PARAMETRIZATIONS = ("sp", "mup", "completep")
SCHEDULES = ("cosine", "wsd", "wsd-sqrt", "constant")
WSD_SCHEDULES = ("wsd", "wsd-sqrt")      # warmup, constant, then a cooldown over the last `cooldown` of the steps
DEFAULT_STEPS = 200                      # the budget of a run that gives none
# A plan longer than this is refused up front. At the fastest step this trainer takes (~1 ms: a tiny model
# on a GPU) ten million steps are about 3 hours, on a CPU days; the gpu preset's runs are ~3k steps. A
# bigger plan is almost surely a budget in the wrong unit (--tokens 1e12 meant as FLOPs), and the
# trainer's bookkeeping stays small only for plans of sane length.
MAX_STEPS = 10_000_000


def option(default, help: str, **cli):
    """A config field and its command-line help. `cli` may hold flag (the flag's name when it is not
    --field-name; None: no flag), choices (the allowed values, checked by the config itself) and group
    (the help section this field and the ones after it belong to)."""
    return field(default=default, metadata=dict(help=help, **cli))


@dataclass(frozen=True)
class ModelConfig:
    """The shape of a decoder-only transformer: depth D (blocks) and width W (d_model) first."""

    depth: int = option(4, "number of transformer blocks D", group="model shape")
    width: int = option(128, "model width W = d_model")
    n_heads: int | None = option(None, "attention heads (default: width / head-dim)", flag="--heads")
    head_dim: int = option(64, "head dimension when --heads is not given")
    context: int = option(128, "context length T in tokens")
    vocab_size: int = option(256, "vocabulary size; on the command line it follows --tokenizer", flag=None)
    mlp: str = option("gelu", "MLP type: gelu (hidden mlp-ratio·W) or swiglu (hidden 2/3 of that: the same "
                              "parameters)", choices=MLPS)
    mlp_ratio: float = option(4.0, "MLP hidden size over the width (before swiglu's 2/3)")
    norm: str = option("layernorm", "normalisation, without bias", choices=NORMS)
    residual_scale: str = option("none", "residual-branch scaling: none, rezero (a learned gate per branch, "
                                         "starting at 0) or inv-sqrt-2l (every Pre-LN branch x 1/sqrt(2L); called "
                                         "'deepnorm' before, but it is not DeepNet)", choices=RESIDUAL_SCALES)
    share: int = option(1, "MobileLLM immediate block-wise sharing: apply each block k times")
    tie_embeddings: bool = option(False, "share input embedding and output head")
    bias: bool = option(False, "biases in the linear layers and LayerNorms")
    init_std: float = option(0.02, "standard deviation of the initial weights")
    rope_base: float = option(10000.0, "RoPE base frequency")
    # Parametrisation (see dwlib/train.py for the learning-rate half of the rules).
    parametrization: str = option("sp", "standard, muP or CompleteP", choices=PARAMETRIZATIONS)
    base_width: int = option(128, "muP/CompleteP base width")
    base_depth: int = option(4, "CompleteP base depth")
    depth_alpha: float = option(1.0, "CompleteP depth exponent: 1.0 or 0.5 (depth-muP)")

    def __post_init__(self):
        for name in ("depth", "width", "context", "vocab_size", "share", "base_width", "base_depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.residual_scale == "deepnorm":
            raise ValueError("residual_scale 'deepnorm' was renamed 'inv-sqrt-2l': it multiplies every Pre-LN "
                             "residual branch by 1/sqrt(2L), which is not DeepNet (Post-LN with a scaled skip)")
        _check_choices(self)
        if self.n_heads is not None:
            if not isinstance(self.n_heads, int) or self.n_heads < 1:
                raise ValueError(f"n_heads must be a positive integer, got {self.n_heads!r}")
            if self.width % self.n_heads:
                raise ValueError(f"width {self.width} is not divisible by n_heads {self.n_heads}")
        elif not isinstance(self.head_dim, int) or self.head_dim < 1:
            raise ValueError(f"head_dim must be a positive integer, got {self.head_dim!r}")
        elif self.width >= self.head_dim and self.width % self.head_dim:
            raise ValueError(f"width {self.width} is not divisible by head_dim {self.head_dim} "
                             f"(pick a width that is a multiple of {self.head_dim}, or set n_heads)")
        if self.head_size % 2:
            raise ValueError(f"head dimension {self.head_size} (width {self.width} / {self.heads} heads) "
                             "is odd; RoPE rotates pairs of channels and needs an even head dimension")
        for name in ("mlp_ratio", "init_std", "rope_base"):   # inf and nan pass `<= 0`: refuse them too
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if self.hidden < 1:
            raise ValueError(f"mlp_ratio {self.mlp_ratio} leaves the MLP no hidden units at width {self.width}")
        if self.depth_alpha not in (0.5, 1.0):
            raise ValueError(f"depth_alpha must be 1.0 (CompleteP) or 0.5 (depth-muP), got {self.depth_alpha!r}")

    @property
    def heads(self) -> int:
        """Number of attention heads: explicit, or width // head_dim with at least one head."""
        if self.n_heads is not None:
            return self.n_heads
        return max(1, self.width // self.head_dim)

    @property
    def head_size(self) -> int:
        return self.width // self.heads

    @property
    def base_head_size(self) -> float:
        """Head size of this model at base_width (μP/CompleteP's reference shape)."""
        return self.base_width / (self.n_heads or max(1, self.base_width // self.head_dim))

    @property
    def hidden(self) -> int:
        """MLP hidden size. SwiGLU uses 2/3 of the GELU size so both cost the same parameters."""
        if self.mlp == "swiglu":
            return int(round(self.mlp_ratio * self.width * 2 / 3))
        return int(round(self.mlp_ratio * self.width))

    @property
    def layers(self) -> int:
        """Effective depth: blocks applied in the forward pass (depth × share)."""
        return self.depth * self.share

    @property
    def width_mult(self) -> float:
        return self.width / self.base_width

    @property
    def depth_mult(self) -> float:
        return self.layers / self.base_depth


@dataclass(frozen=True)
class TrainConfig:
    """One training run: data, budget, optimiser, evaluation. Execution-only fields (device, threads,
    compile, checkpoint_every) do not change the result and are left out of the run key."""

    corpus: str = option("stdlib", "stdlib (default, offline: this Python's standard library source), "
                                   "tinyshakespeare, file:PATH (a text file or folder), hf:NAME[:CONFIG] (needs "
                                   "`datasets`); khop[:alphabet=4,length=63,hops=1,2,4,8,val=256], the k-hop "
                                   "reasoning task, or TEXT+khop[:fraction=0.25,...] mixed into a text corpus",
                         group="data")
    tokenizer: str = option("byte", "byte (default, vocab 256) or bpe:N (trained locally)")
    steps: int | None = option(None, "optimizer steps", group=f"budget (give one; default {DEFAULT_STEPS} steps)")
    tokens: int | None = option(None, "training tokens, e.g. 2e6 (rounded to whole steps)")
    flops: float | None = option(None, "training FLOPs by Kaplan's 6N + 6LTW per token (rounded to whole steps)")
    batch_size: int = option(16, "sequences per micro-batch", group="optimisation")
    grad_accum: int = option(1, "micro-batches per step")
    lr: float = option(3e-3, "peak learning rate")
    min_lr: float | None = option(None, "final learning rate (default lr/10)")
    warmup: int | None = option(None, "linear warmup steps (default 5% of the steps)")
    schedule: str = option("cosine", "LR schedule after warmup: cosine to --min-lr (default; with --anneal-at: "
                                     "wsd-sqrt), constant, or warmup-stable-decay: constant, then a cooldown to "
                                     "--min-lr over the last --cooldown of the steps, linear (wsd) or 1-sqrt "
                                     "(wsd-sqrt, Hagele et al. 2024)", choices=SCHEDULES)
    cooldown: float = option(0.2, "wsd schedules: fraction of the steps in the final decay")
    weight_decay: float = option(0.1, "AdamW weight decay on matrices")
    beta1: float = option(0.9, "AdamW beta1")
    beta2: float = option(0.95, "AdamW beta2")
    eps: float = option(1e-8, "AdamW epsilon")
    grad_clip: float = option(1.0, "gradient-norm clip, 0 = off")
    seed: int = option(0, "seed for init and batch order")
    eval_every: int = option(50, "steps between validation evals", group="evaluation")
    eval_batches: int = option(8, "fixed validation batches")
    grad_norm_steps: tuple[int, ...] = option((1000,), "comma-separated steps at which to record per-layer "
                                                       "gradient norms, besides every eval and the end (default "
                                                       "1000, as the Depth Delusion paper)")
    # execution only
    device: str = option("auto", "auto (CUDA if present), cpu, cuda, cuda:N", group="execution")
    threads: int | None = option(None, "CPU threads for torch (default: $DWLIB_THREADS, else all cores this "
                                       "process may use)")
    compile: bool = option(False, "torch.compile the model (pays off on long GPU runs)")
    checkpoint_every: int = option(100, "steps between a sweep run's checkpoints", flag=None)

    def __post_init__(self):
        for name in ("batch_size", "grad_accum", "eval_every", "eval_batches", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("steps", "tokens", "flops", "lr", "min_lr", "weight_decay", "grad_clip", "eps", "beta1",
                     "beta2", "cooldown"):
            value = getattr(self, name)   # inf and nan pass every comparison below: refuse them here
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**63:
            # numpy's batch order takes no negative seed, torch's init none beyond 64 bits, the store's column 63
            raise ValueError(f"seed must be a whole number from 0 to 2**63 - 1, got {self.seed!r}")
        given = [n for n in ("steps", "tokens", "flops") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"give one budget, not {' and '.join(given)}")
        for name in given:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} budget must be positive, got {getattr(self, name)!r}")
        if self.steps is not None and self.steps > MAX_STEPS:
            raise ValueError(f"steps {self.steps:,} is more than the {MAX_STEPS:,} a run may plan")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if self.min_lr is not None and not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr must lie in [0, lr={self.lr}], got {self.min_lr!r}")
        if self.warmup is not None and self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"betas must lie in [0, 1), got ({self.beta1}, {self.beta2})")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0 (0 disables it), got {self.grad_clip!r}")
        if not 0 <= self.cooldown <= 1:
            raise ValueError(f"cooldown must lie in [0, 1] (a fraction of the run's steps), got {self.cooldown!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be a positive integer, got {self.threads!r}")
        _check_choices(self)
        object.__setattr__(self, "grad_norm_steps", tuple(int(s) for s in self.grad_norm_steps))


EXECUTION_FIELDS = ("device", "threads", "compile", "checkpoint_every")


def _check_choices(cfg) -> None:
    for f in dataclasses.fields(cfg):
        options, value = f.metadata.get("choices"), getattr(cfg, f.name)
        if options is not None and value not in options:
            raise ValueError(f"{f.name} must be one of {', '.join(options)}; got {value!r}")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), which on shared machines can be < cpu_count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_threads(side_by_side: int = 1) -> int:
    """Torch threads for a run that names none, one of `side_by_side` runs training at once on this
    process's cores: $DWLIB_THREADS if set (taken as given; tests and CI set 1), else its share of
    `available_cores()`. Runs side by side must share the cores: two 2-thread torch processes on 2
    cores make every step ~50× slower (OpenMP spinning)."""
    env = os.environ.get("DWLIB_THREADS")
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"DWLIB_THREADS must be a positive integer, got {env!r}")
        return int(env)
    return max(1, available_cores() // side_by_side)


# ---------------------------------------------------------------------------------------------
# Accounting
# ---------------------------------------------------------------------------------------------

def block_parts(cfg: ModelConfig) -> dict:
    """Parameters of one transformer block by part: attention and MLP (weights and biases), and the
    norm gains with the residual gates."""
    w, h = cfg.width, cfg.hidden
    attn = 4 * w * w + (4 * w if cfg.bias else 0)
    if cfg.mlp == "swiglu":
        mlp = 3 * w * h + ((2 * h + w) if cfg.bias else 0)
    else:
        mlp = 2 * w * h + ((h + w) if cfg.bias else 0)
    norms = 2 * w * (2 if cfg.norm == "layernorm" and cfg.bias else 1)
    gates = 2 if cfg.residual_scale == "rezero" else 0
    return dict(attention=attn, mlp=mlp, norms=norms + gates)


def block_params(cfg: ModelConfig) -> int:
    """Parameters of one transformer block (attention + MLP + its two norms + gates)."""
    return sum(block_parts(cfg).values())


def non_embedding_params(cfg: ModelConfig) -> int:
    """Kaplan's N: every parameter but the token embedding and the output head. For the default
    block this is 12·D·W² plus the norm gains (2W per block + W for the final norm)."""
    final_norm = cfg.width * (2 if cfg.norm == "layernorm" and cfg.bias else 1)
    return cfg.depth * block_params(cfg) + final_norm


def embedding_params(cfg: ModelConfig) -> int:
    """Token embedding plus the output head (one matrix when tied)."""
    return cfg.vocab_size * cfg.width * (1 if cfg.tie_embeddings else 2)


def count_params(cfg: ModelConfig) -> int:
    """Total trainable parameters, as `sum(p.numel() for p in Transformer(cfg).parameters())`."""
    return non_embedding_params(cfg) + embedding_params(cfg)


def flops_per_token(cfg: ModelConfig) -> float:
    """Training FLOPs per token by Kaplan's rule: 6·N_applied + 6·L·T·W, where N_applied counts each
    shared block once per application and L = depth × share is the number of applied layers.
    The output head is left out, as Kaplan does; `flops_per_token_with_head` adds it."""
    applied = non_embedding_params(cfg) + (cfg.layers - cfg.depth) * block_params(cfg)
    return 6.0 * applied + 6.0 * cfg.layers * cfg.context * cfg.width


def flops_per_token_with_head(cfg: ModelConfig) -> float:
    """Training FLOPs per token including the output projection (6·W·V): what the hardware does,
    used for MFU. For tiny models with large vocabularies the head dominates."""
    return flops_per_token(cfg) + 6.0 * cfg.width * cfg.vocab_size


def tokens_per_step(cfg: ModelConfig, train: TrainConfig) -> int:
    """Tokens one optimizer step trains on: batch_size sequences × grad_accum micro-batches × context."""
    return train.batch_size * train.grad_accum * cfg.context


def breakdown(cfg: ModelConfig) -> dict:
    """Where a shape's parameters and training FLOPs per token go, part by part: `params` sums to
    `count_params`, `flops` to `flops_per_token` (6N + 6·L·T·W, the FLOPs every budget counts), and
    `head_flops` is the output head's 6·W·V, which budgets leave out (as Kaplan does)."""
    block, L, W = block_parts(cfg), cfg.layers, cfg.width
    params = {"attention matrices": cfg.depth * block["attention"], "MLP matrices": cfg.depth * block["mlp"]}
    params["norm gains"] = non_embedding_params(cfg) - sum(params.values())
    params["token embedding"] = cfg.vocab_size * W
    if not cfg.tie_embeddings:
        params["output head"] = cfg.vocab_size * W
    flops = {"attention matrices": 6.0 * L * block["attention"], "MLP matrices": 6.0 * L * block["mlp"],
             "attention over context": 6.0 * L * cfg.context * W}
    flops["norm gains"] = flops_per_token(cfg) - sum(flops.values())
    return dict(params=params, flops=flops, head_flops=flops_per_token_with_head(cfg) - flops_per_token(cfg))


def steps_for_budget(cfg: ModelConfig, train: TrainConfig) -> int:
    """Optimizer steps for the run's budget. FLOP and token budgets round to the nearest whole step
    so compute-matched runs differ by less than one step's FLOPs. A plan beyond MAX_STEPS is an error."""
    per_step = tokens_per_step(cfg, train)
    if train.steps is not None:
        return int(train.steps)
    if train.tokens is not None:
        name, value, steps = "tokens", train.tokens, round(train.tokens / per_step)
    elif train.flops is not None:
        name, value, steps = "flops", train.flops, round(train.flops / (flops_per_token(cfg) * per_step))
    else:
        return DEFAULT_STEPS
    if steps > MAX_STEPS:
        raise ValueError(f"{name} {value:.3g} is {steps:.3g} optimizer steps of {per_step:,} tokens, more "
                         f"than the {MAX_STEPS:,} a run may plan (a budget in the wrong unit?)")
    return max(1, steps)


def warmup_steps(total: int, train: TrainConfig) -> int:
    """Linear-warmup steps of a run of `total` steps: as given, else 5% of the steps (at least 1)."""
    return train.warmup if train.warmup is not None else max(1, round(0.05 * total))


def cooldown_steps(total: int, train: TrainConfig) -> int:
    """Steps in a wsd schedule's final decay: cooldown·total, rounded half up (never Python's round to
    even, so the decay start total − cooldown_steps never decreases as the budget grows)."""
    return math.floor(train.cooldown * total + 0.5)


def decay_start(total: int, train: TrainConfig) -> int:
    """First step of a wsd schedule's cooldown, never inside the warmup. A run to budget T with an
    explicit warmup is, up to this step, the same computation as any longer run of the same config."""
    return max(total - cooldown_steps(total, train), min(warmup_steps(total, train), total))


def paper_critical_depth(width: float) -> float:
    """The Depth Delusion's working formula D_crit ≈ 2.43·ln W (arXiv 2601.20994)."""
    return 2.43 * math.log(width)


def paper_critical_depth_power(width: float, exponent: float = 0.44) -> float:
    """The paper's claimed scaling D_crit ∝ W^0.44, anchored to the log formula at W = 512
    (the only width where the paper's two statements agree)."""
    return paper_critical_depth(512) * (width / 512) ** exponent


# ---------------------------------------------------------------------------------------------
# Run identity
# ---------------------------------------------------------------------------------------------

def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def model_config_from_dict(d: dict) -> ModelConfig:
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    d = {k: v for k, v in d.items() if k in names}
    if d.get("residual_scale") == "deepnorm":   # stores written before the rename hold the old name
        d["residual_scale"] = "inv-sqrt-2l"
    return ModelConfig(**d)


def train_config_from_dict(d: dict) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    d = {k: v for k, v in d.items() if k in names}
    if "grad_norm_steps" in d:
        d["grad_norm_steps"] = tuple(d["grad_norm_steps"])
    return TrainConfig(**d)


def run_key(model: ModelConfig, train: TrainConfig, corpus_fingerprint: str) -> str:
    """Stable hash of everything that determines a run's outcome (execution-only fields excluded).
    The corpus fingerprint covers the corpus content and the tokenizer; the seed is in `train`."""
    t = {k: v for k, v in to_dict(train).items() if k not in EXECUTION_FIELDS}
    if train.schedule not in WSD_SCHEDULES:
        del t["cooldown"]   # it changes nothing else, so cosine and constant runs keep their keys
    payload = {"model": to_dict(model), "train": t, "corpus": corpus_fingerprint}
    if model.parametrization != "sp":
        # μP / CompleteP attention became √(base head size)/head size: their earlier runs are other models
        payload["attention"] = "sqrt(base_head_size)/head_size"
    payload = json.dumps(payload, sort_keys=True, default=list)
    return hashlib.sha256(payload.encode()).hexdigest()
