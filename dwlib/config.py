"""Run configuration and accounting: what a model shape costs in parameters and FLOPs.

Everything here is plain Python (no torch), so the store, the fitters and the notebooks can count
parameters and FLOPs without building a model. The counts are exact for the model that
`dwlib.model.Transformer` builds; `tests/test_config.py` checks them against the modules' own
parameter counts and against Kaplan et al. (arXiv 2001.08361): N = 12·D·W², C ≈ 6N + 6·D·T·W per token.
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
RESIDUAL_SCALES = ("none", "rezero", "deepnorm")
PARAMETRIZATIONS = ("sp", "mup", "completep")
SCHEDULES = ("cosine", "wsd", "constant")


@dataclass(frozen=True)
class ModelConfig:
    """The shape of a decoder-only transformer: depth D (blocks) and width W (d_model) first."""

    depth: int = 4
    width: int = 128
    context: int = 128
    vocab_size: int = 256
    head_dim: int = 64               # heads = width // head_dim, unless n_heads is given
    n_heads: int | None = None
    mlp: str = "gelu"                # gelu (4W hidden) or swiglu (hidden ≈ 8W/3: same params as gelu)
    mlp_ratio: float = 4.0
    norm: str = "layernorm"          # layernorm or rmsnorm, both without bias
    residual_scale: str = "none"     # none | rezero (learned gate, starts at 0) | deepnorm (× 1/√(2D))
    share: int = 1                   # MobileLLM immediate block-wise sharing: each block applied `share` times
    tie_embeddings: bool = False
    bias: bool = False
    init_std: float = 0.02
    rope_base: float = 10000.0
    # Parametrisation (see dwlib/train.py for the learning-rate half of the rules).
    parametrization: str = "sp"      # sp | mup | completep
    base_width: int = 128
    base_depth: int = 4
    depth_alpha: float = 1.0         # CompleteP depth exponent: 1.0 (CompleteP) or 0.5 (depth-μP)

    def __post_init__(self):
        for name in ("depth", "width", "context", "vocab_size", "share", "base_width", "base_depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        _choice("mlp", self.mlp, MLPS)
        _choice("norm", self.norm, NORMS)
        _choice("residual_scale", self.residual_scale, RESIDUAL_SCALES)
        _choice("parametrization", self.parametrization, PARAMETRIZATIONS)
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
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be positive, got {self.mlp_ratio!r}")
        if self.init_std <= 0:
            raise ValueError(f"init_std must be positive, got {self.init_std!r}")
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

    corpus: str = "stdlib"
    tokenizer: str = "byte"
    batch_size: int = 16
    steps: int | None = None         # budget: exactly one of steps / tokens / flops (default 200 steps)
    tokens: int | None = None
    flops: float | None = None
    grad_accum: int = 1
    lr: float = 3e-3
    min_lr: float | None = None      # default lr / 10
    warmup: int | None = None        # default 5% of the steps
    schedule: str = "cosine"         # cosine | wsd (warmup-stable-decay, last 20% decays) | constant
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    eval_every: int = 50
    eval_batches: int = 8
    grad_norm_steps: tuple[int, ...] = (1000,)   # also measured at every eval and at the end
    seed: int = 0
    # execution only
    device: str = "auto"
    threads: int | None = None
    compile: bool = False
    checkpoint_every: int = 100

    def __post_init__(self):
        for name in ("batch_size", "grad_accum", "eval_every", "eval_batches", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        given = [n for n in ("steps", "tokens", "flops") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"give one budget, not {' and '.join(given)}")
        for name in given:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} budget must be positive, got {getattr(self, name)!r}")
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
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be a positive integer, got {self.threads!r}")
        _choice("schedule", self.schedule, SCHEDULES)
        object.__setattr__(self, "grad_norm_steps", tuple(int(s) for s in self.grad_norm_steps))

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.grad_accum  # × context, which lives in ModelConfig



def default_threads() -> int:
    """Torch threads for a run that names none: $DWLIB_THREADS if set (tests and CI set 1), else the
    cores this process may run on. Callers running several trainings side by side must divide them:
    two 2-thread torch processes on 2 cores make every step ~50× slower (OpenMP spinning)."""
    env = os.environ.get("DWLIB_THREADS")
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"DWLIB_THREADS must be a positive integer, got {env!r}")
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


EXECUTION_FIELDS = ("device", "threads", "compile", "checkpoint_every")


def _choice(name, value, options):
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(options)}; got {value!r}")


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


def kaplan_params(cfg: ModelConfig) -> int:
    """Kaplan's closed form N = 12·D·W² (exact for the default block up to the norm gains)."""
    return 12 * cfg.depth * cfg.width ** 2


def flops_per_token(cfg: ModelConfig) -> float:
    """Training FLOPs per token by Kaplan's rule: 6·N_applied + 6·L·T·W, where N_applied counts each
    shared block once per application and L = depth × share is the number of applied layers.
    The output head is left out, as Kaplan does; `flops_per_token_with_head` adds it."""
    applied = cfg.layers * block_params(cfg) + cfg.width
    return 6.0 * applied + 6.0 * cfg.layers * cfg.context * cfg.width


def flops_per_token_with_head(cfg: ModelConfig) -> float:
    """Training FLOPs per token including the output projection (6·W·V): what the hardware does,
    used for MFU. For tiny models with large vocabularies the head dominates."""
    return flops_per_token(cfg) + 6.0 * cfg.width * cfg.vocab_size


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


def tokens_for_flops(cfg: ModelConfig, flops: float) -> float:
    """Training tokens a model of this shape processes for a budget of `flops` (Kaplan FLOPs)."""
    return flops / flops_per_token(cfg)


def steps_for_budget(cfg: ModelConfig, train: TrainConfig) -> int:
    """Optimizer steps for the run's budget. FLOP and token budgets round to the nearest whole step
    so compute-matched runs differ by less than one step's FLOPs."""
    tokens_per_step = train.batch_size * train.grad_accum * cfg.context
    if train.steps is not None:
        return int(train.steps)
    if train.tokens is not None:
        return max(1, round(train.tokens / tokens_per_step))
    if train.flops is not None:
        return max(1, round(train.flops / (flops_per_token(cfg) * tokens_per_step)))
    return 200


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
    return ModelConfig(**{k: v for k, v in d.items() if k in names})


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
    payload = json.dumps({"model": to_dict(model), "train": t, "corpus": corpus_fingerprint},
                         sort_keys=True, default=list)
    return hashlib.sha256(payload.encode()).hexdigest()
