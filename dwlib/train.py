"""One training run: ModelConfig + TrainConfig → a plain, JSON-serialisable result record.

The loop keeps the device busy: each step's loss stays a device scalar and reaches the host only at
evaluations, checkpoints and every `SYNC_EVERY` steps (to notice divergence), so a CUDA run makes no
per-step host syncs. AdamW is the fused kernel on CPU and CUDA alike. On CUDA it uses bf16
autocast, TF32 matmuls and, when asked, torch.compile. Batches are a pure function of (seed, step),
so a resumed run replays exactly the batches the uninterrupted run would have seen.
"""
from __future__ import annotations

import contextlib
import math
import os
import platform
import time
import uuid
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import __version__
from .config import (WSD_SCHEDULES, ModelConfig, TrainConfig, count_params, decay_start, default_threads,
                     embedding_params, flops_per_token, flops_per_token_with_head, non_embedding_params, run_key,
                     steps_for_budget, to_dict, tokens_per_step, warmup_steps)
from . import khop
from .data import Tokens, load_tokens, train_batch, val_batches, write_error
from .model import Transformer

SYNC_EVERY = 50        # steps between host syncs that check the loss is still finite
CURVE_POINTS = 1000    # the train-loss curve keeps 500–1000 buckets, however long the run
PROBE_STEPS = 4        # per-layer gradient norms at s−3 … s for each gradient-norm step s
MIN_TIMED_SECONDS = 1e-3
# A generous CPU peak (AVX-512, two FMA units, 3 GHz): a step takes at least its FLOPs over this per thread
CPU_PEAK_FLOPS_PER_THREAD = 2e11
SLOW_STEP_SECONDS = 10.0   # warn when one step must take at least this long

# Dense bf16 peak FLOP/s by device name, from the vendors' datasheets (no sparsity). Used for MFU.
PEAK_BF16_FLOPS = {
    "H200": 989e12, "H100 NVL": 835e12, "H100 PCIe": 756e12, "H100": 989e12, "GH200": 989e12,
    "A100": 312e12, "A10G": 70e12, "A10": 125e12, "L40S": 362e12, "L4": 121e12,
    "RTX 4090": 165e12, "RTX 3090": 71e12, "V100": 125e12, "T4": 65e12,
}


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU. Asking for CUDA on a machine without it is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but this torch build sees no CUDA GPU "
                         f"(torch {torch.__version__}); use --device cpu or install a CUDA build")
    return device


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    # the table is ordered so that "H100 PCIe" matches before "H100"
    return next((value for key, value in PEAK_BF16_FLOPS.items() if key in name), None)


def memory_estimate(model_cfg: ModelConfig, train_cfg: TrainConfig, device: torch.device) -> dict:
    """Bytes a training step holds at its peak, by part (and their `total`): `state`, the fp32 parameters with
    their gradients and AdamW's two moments (16 bytes a parameter; on CUDA also autocast's bf16 weight
    copies); `activations`, what backward keeps per token of a micro-batch: about 16·W values per applied
    layer plus its MLP's hidden units (twice, four times for SwiGLU) and 16·W outside the blocks, 4 bytes
    each on CPU, 2 (bf16) on CUDA; `logits`, 4 fp32 values per token and vocabulary entry (the logits,
    their log-softmax and both gradients). A floor, not a bound: on CPU it came out 1–40% under the
    measured peak memory of 11 shapes (and under the fixed ~80 MiB of a tiny run); on CUDA, where norms
    and the residual stream stay fp32, it is lower still."""
    cuda = device.type == "cuda"
    tokens = train_cfg.batch_size * model_cfg.context
    mlp = (4 if model_cfg.mlp == "swiglu" else 2) * model_cfg.hidden
    per_token = model_cfg.layers * (16 * model_cfg.width + mlp) + 16 * model_cfg.width
    parts = dict(state=(18 if cuda else 16) * count_params(model_cfg),
                 activations=tokens * per_token * (2 if cuda else 4), logits=16 * tokens * model_cfg.vocab_size)
    return dict(parts, total=sum(parts.values()))


def device_memory(device: torch.device) -> int | None:
    """Bytes of memory a run on `device` may use: the GPU's, or this machine's (its cgroup limit when lower);
    None where the platform does not say."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    with contextlib.suppress(OSError, ValueError):   # "max" when the cgroup sets no limit
        total = min(total, int(open("/sys/fs/cgroup/memory.max").read()))
    return total


def check_memory(model_cfg: ModelConfig, train_cfg: TrainConfig, device: torch.device) -> None:
    """Refuse, before anything is allocated, a run whose estimated peak memory (`memory_estimate`) is more
    than the device has (`device_memory`): a ValueError with both figures, naming the flags to lower."""
    need, have = memory_estimate(model_cfg, train_cfg, device), device_memory(device)
    if have is None or need["total"] <= have:
        return
    m = model_cfg
    largest = max(("state", "activations", "logits"), key=need.get)
    if largest == "state":
        lower = "--tokenizer's vocabulary" if embedding_params(m) > non_embedding_params(m) else "--width or --depth"
    elif largest == "activations":
        lower = "--batch-size or --context (--grad-accum keeps the tokens per step)"
    else:
        lower = "--tokenizer's vocabulary, --batch-size or --context"
    gib = lambda n: f"{n / 2**30:,.1f} GiB"
    where = f"of {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "this machine has"
    raise ValueError(
        f"this run needs about {gib(need['total'])} of memory, more than the {gib(have)} {where}: "
        f"{count_params(m):,} parameters (--depth {m.depth}, --width {m.width:,}, vocabulary {m.vocab_size:,}) "
        f"with their gradients and AdamW state {gib(need['state'])}, activations for --batch-size "
        f"{train_cfg.batch_size:,} sequences of --context {m.context:,} tokens {gib(need['activations'])}, their "
        f"logits {gib(need['logits'])}; lower {lower}")


def param_groups(model: Transformer, cfg: ModelConfig, train: TrainConfig) -> list[dict]:
    """AdamW groups with per-role learning-rate multipliers (`lr_mult`), weight decay and ε.

    sp: one learning rate and ε; weight decay on matrices only (hidden, embedding, head).
    mup (Yang et al. 2022, Table 3 / Table 8 for Adam): hidden-matrix LR ÷ m_w; embedding, head and
    norms at the base LR. Adam ε ÷ m_w everywhere: in μP every gradient entry shrinks like 1/m_w, and a
    fixed ε would come to dominate the update at large width (as in EleutherAI/nanoGPT-mup).
    completep (Dey et al. 2025, Table 1 and Eq. 40): as μP, plus in-block LRs (hidden matrices and the
    norm gains / biases inside blocks) × m_L^(α−1); in-block ε ÷ (m_w·m_L^α) while the embedding, head
    and final norm keep ε ÷ m_w and the base LR; hidden weight decay × m_w (decoupled decay is lr·wd,
    so this keeps lr·wd width-independent).
    """
    roles = model.param_groups()
    m_w, m_l, alpha = cfg.width_mult, cfg.depth_mult, cfg.depth_alpha
    hidden_lr = block_vector_lr = 1.0
    outer_eps = hidden_eps = train.eps          # outer: embedding, head, final norm
    hidden_wd = train.weight_decay
    if cfg.parametrization in ("mup", "completep"):
        hidden_lr = 1.0 / m_w
        outer_eps = hidden_eps = train.eps / m_w
    if cfg.parametrization == "completep":
        hidden_lr *= m_l ** (alpha - 1)
        block_vector_lr = m_l ** (alpha - 1)
        hidden_eps = train.eps / (m_w * m_l ** alpha)
        hidden_wd = train.weight_decay * m_w
    groups = [
        dict(name="hidden", params=roles["hidden"], lr_mult=hidden_lr, weight_decay=hidden_wd, eps=hidden_eps),
        dict(name="embedding", params=roles["embedding"], lr_mult=1.0, weight_decay=train.weight_decay, eps=outer_eps),
        dict(name="head", params=roles["head"], lr_mult=1.0, weight_decay=train.weight_decay, eps=outer_eps),
        dict(name="norm", params=roles["norm"], lr_mult=block_vector_lr, weight_decay=0.0, eps=hidden_eps),
        dict(name="final_norm", params=roles["final_norm"], lr_mult=1.0, weight_decay=0.0, eps=outer_eps),
    ]
    return [g for g in groups if g["params"]]


def lr_at(step: int, total: int, train: TrainConfig) -> float:
    """Learning rate for 0-based `step` of `total`: linear warmup, then cosine to min_lr, constant, or
    warmup-stable-decay: constant until `config.decay_start`, then a cooldown to min_lr over the last
    `cooldown` of the steps, linear ("wsd") or 1 − sqrt(progress) ("wsd-sqrt", Hägele et al. 2024)."""
    warmup = warmup_steps(total, train)
    min_lr = train.lr / 10 if train.min_lr is None else train.min_lr
    if step < warmup:
        return train.lr * (step + 1) / warmup
    if train.schedule == "constant":
        return train.lr
    if train.schedule in WSD_SCHEDULES:
        start = decay_start(total, train)
        if step < start:
            return train.lr
        progress = (step - start + 1) / (total - start)
        shape = progress if train.schedule == "wsd" else math.sqrt(progress)
        return train.lr + (min_lr - train.lr) * shape
    frac = (step - warmup + 1) / max(1, total - warmup)
    return min_lr + 0.5 * (train.lr - min_lr) * (1 + math.cos(math.pi * frac))


@torch.no_grad()
def evaluate(model, batches, autocast) -> torch.Tensor:
    """Mean loss over the fixed validation batches, as a device scalar (no sync)."""
    model.eval()
    total = torch.zeros((), device=batches[0][0].device)
    for x, y in batches:
        with autocast:
            _, loss = model(x, y)
        total += loss.float()
    model.train()
    return total / len(batches)


@torch.no_grad()
def task_evaluation(model, task_val, batch_size: int, autocast) -> dict:
    """Accuracy (argmax = answer) and mean loss on the answer positions of a k-hop task's fixed validation set,
    overall and by hop count; only answer positions (hops > 0, where the target is >= 0) are scored."""
    x, y, hops = task_val
    model.eval()
    right, loss = [], torch.zeros((), device=x.device)
    for i in range(0, len(x), batch_size):
        with autocast:
            logits = model(x[i:i + batch_size])
        scored = y[i:i + batch_size] >= 0
        loss += F.cross_entropy(logits.float()[scored], y[i:i + batch_size][scored], reduction="sum")
        right.append(logits.argmax(-1) == y[i:i + batch_size])
    model.train()
    right, hops = torch.cat(right).cpu(), hops.cpu()
    scored = int((hops > 0).sum())
    counts = {k: int((hops == k).sum()) for k in hops.unique().tolist() if k > 0}
    by_hops = {str(k): dict(accuracy=int(right[hops == k].sum()) / n, scored=n) for k, n in counts.items()}
    return dict(task_accuracy=int(right[hops > 0].sum()) / scored, task_scored=scored, task_accuracy_by_hops=by_hops,
                task_loss=loss.item() / scored)


def layer_grad_norms(model: Transformer) -> torch.Tensor:
    """Gradient L2 norm per layer: [embedding, block 0 … block D−1, head] as one device tensor."""
    def norm(params):
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return torch.zeros((), device=model.embed.weight.device)
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
    head = [model.head.weight] if model.head is not None else [model.embed.weight]
    parts = [norm([model.embed.weight])] + [norm(b.parameters()) for b in model.blocks] + [norm(head)]
    return torch.stack(parts)


def new_state() -> dict:
    """What a run carries from step to step (and in its checkpoint). Its size does not grow with the
    planned steps: the train-loss curve keeps CURVE_POINTS buckets at most, merging pairs when full."""
    return dict(step=0, evals=[], grad_norms=[], buckets=[], bucket_width=1, bucket_sum=0.0, bucket_n=0,
                eval_sum=0.0, eval_n=0, clipped=0, train_seconds=0.0, wall_seconds=0.0)


def add_step(state: dict, step: int, loss: float, seconds: float) -> None:
    """Fold one step's train loss into the curve buckets and the mean since the last evaluation."""
    state["bucket_sum"] += loss
    state["bucket_n"] += 1
    state["eval_sum"] += loss
    state["eval_n"] += 1
    if step % state["bucket_width"] == 0:
        state["buckets"].append([step, state["bucket_sum"] / state["bucket_n"], seconds])
        state["bucket_sum"], state["bucket_n"] = 0.0, 0
        if len(state["buckets"]) == CURVE_POINTS:   # even, so every bucket has a partner
            b = state["buckets"]
            state["buckets"] = [[b[i + 1][0], (b[i][1] + b[i + 1][1]) / 2, b[i + 1][2]] for i in range(0, len(b), 2)]
            state["bucket_width"] *= 2


def setup_device(train_cfg: TrainConfig):
    """The run's device and its autocast context (bf16 and TF32 on CUDA; plain fp32 on CPU)."""
    device = resolve_device(train_cfg.device)
    torch.set_num_threads(train_cfg.threads or default_threads())
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return device, torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def build(model_cfg: ModelConfig, train_cfg: TrainConfig, device: torch.device):
    """A freshly initialised model (seeded) and its AdamW optimizer."""
    torch.manual_seed(train_cfg.seed)
    model = Transformer(model_cfg).to(device)
    # fused: one kernel per parameter for the whole update, ~3× faster than the per-op loop on CPU
    optimizer = torch.optim.AdamW(param_groups(model, model_cfg, train_cfg), lr=train_cfg.lr,
                                  betas=(train_cfg.beta1, train_cfg.beta2), fused=True)
    return model, optimizer


def checkpoint_fs(location):
    """(filesystem, path) of a checkpoint location: a local path, or a URI of storage that every node of
    a cluster reaches — any fsspec URL: s3://… (needs s3fs), gs://… (gcsfs), file://…. fsspec comes with
    torch. An unknown protocol, or one whose package is missing, is a ValueError naming the location."""
    import fsspec
    try:
        return fsspec.core.url_to_fs(str(location))
    except (ImportError, ValueError) as e:
        raise ValueError(f"checkpoint location {str(location)!r} cannot be used: {e}") from None


def adopt_checkpoint(previous, location) -> None:
    """Move a run's checkpoint from where an earlier attempt left it (under another checkpoint dir) to
    `location`, saying so, so the run resumes from it instead of starting over and leaving it behind for
    good. One that cannot be moved (another kind of storage, an error) is named in a warning and left."""
    if previous is None or str(previous) == str(location):
        return
    try:
        (old_fs, old_path), (fs, path) = checkpoint_fs(previous), checkpoint_fs(location)
        if not old_fs.exists(old_path) or fs.exists(path):
            return
        if type(old_fs) is not type(fs):
            raise ValueError("it is on another kind of storage")
        if "file" in fs.protocol:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        old_fs.mv(old_path, path)
    except Exception as e:
        warnings.warn(f"an earlier attempt of this run left its checkpoint at {previous}, which cannot be moved to "
                      f"{location} ({e}): the run starts from step 0 and that file stays", RuntimeWarning, stacklevel=2)
        return
    warnings.warn(f"an earlier attempt of this run checkpointed to {previous}: moved it to {location} and "
                  "resuming from it", RuntimeWarning, stacklevel=2)


def resume(location, key: str, model_cfg: ModelConfig, train_cfg: TrainConfig, device):
    """(model, optimizer, state): resumed from the checkpoint at `location` if there is one, else fresh. A
    checkpoint that cannot be resumed (corrupt, truncated, another run's) is moved aside with a warning
    naming it, and the run starts over."""
    model, optimizer = build(model_cfg, train_cfg, device)
    fs, path = checkpoint_fs(location) if location is not None else (None, None)
    if fs is not None:   # partial checkpoints of a writer that was killed (kill -9) before it could remove them
        for stale in fs.glob(f"{path}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(stale)
    if fs is None or not fs.exists(path):
        return model, optimizer, new_state()
    try:
        with fs.open(path, "rb") as f:
            saved = torch.load(f, map_location=device, weights_only=False)
        if saved["run_key"] != key:
            raise ValueError(f"it belongs to another run ({str(saved['run_key'])[:10]}, this run is {key[:10]})")
        if set(saved["state"]) != set(new_state()):
            raise ValueError("it was written by another version of dwlib")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        return model, optimizer, saved["state"]
    except Exception as e:
        aside = f"{path}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        fs.mv(path, aside)
        why = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
        warnings.warn(f"checkpoint {location} cannot be resumed ({why}); moved it to {aside.rsplit('/', 1)[-1]}, "
                      "training this run from step 0", RuntimeWarning, stacklevel=3)
        return (*build(model_cfg, train_cfg, device), new_state())


def save_checkpoint(location, key: str, model, optimizer, state: dict) -> None:
    """Write under a private temporary name, then move it into place, so a kill mid-write never leaves
    half a checkpoint under the real name: locally the move is an atomic rename; on object stores (s3,
    gs) the object appears whole once the move's server-side copy completes."""
    fs, path = checkpoint_fs(location)
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"   # unique across the nodes that may write one run
    try:
        if "file" in fs.protocol:   # a local folder (object stores have none to create)
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with fs.open(tmp, "wb") as f:
            torch.save(dict(run_key=key, model=model.state_dict(), optimizer=optimizer.state_dict(), state=state), f)
        fs.mv(tmp, path)
    except BaseException as e:   # a partial file must not stay behind (on a full disk it keeps the disk full)
        with contextlib.suppress(Exception):
            fs.rm_file(tmp)
        if isinstance(e, (OSError, RuntimeError)):   # torch reports a failed write as a RuntimeError
            raise write_error(e, location, "a checkpoint: --checkpoint-dir") from e
        raise


def remove_checkpoint(location) -> None:
    """Delete a run's checkpoint once its result is stored (nothing if there is none)."""
    fs, path = checkpoint_fs(location)
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(path)


def warn_surprises(model_cfg: ModelConfig, train_cfg: TrainConfig, steps: int, device) -> None:
    """Legal but probably not what was meant: say so, then train as asked."""
    per_step = tokens_per_step(model_cfg, train_cfg)
    step_flops = flops_per_token(model_cfg) * per_step
    if train_cfg.tokens is not None and train_cfg.tokens < per_step:
        warnings.warn(f"tokens={train_cfg.tokens:,} is less than one step of {per_step:,} tokens; "
                      "training one step", UserWarning, stacklevel=3)
    if train_cfg.flops is not None and train_cfg.flops < step_flops:
        warnings.warn(f"flops={train_cfg.flops:.3g} is less than one step of {step_flops:.3g} FLOPs; "
                      "training one step", UserWarning, stacklevel=3)
    if train_cfg.warmup is not None and train_cfg.warmup > steps:
        warnings.warn(f"warmup of {train_cfg.warmup:,} steps is longer than the run ({steps:,} steps): the "
                      "learning rate never reaches its peak", UserWarning, stacklevel=3)
    peak = peak_flops(device) if device.type == "cuda" else CPU_PEAK_FLOPS_PER_THREAD * torch.get_num_threads()
    hardware = flops_per_token_with_head(model_cfg) * per_step
    if peak and hardware / peak > SLOW_STEP_SECONDS:
        attention = 6.0 * model_cfg.layers * model_cfg.context * model_cfg.width / flops_per_token_with_head(model_cfg)
        why = f" ({attention:.0%} of it attention over the context of {model_cfg.context:,})" if attention > 0.5 else ""
        total = hardware / peak * steps
        span = f"{total / 3600:,.1f} h" if total >= 3600 else f"{total / 60:,.1f} min"
        warnings.warn(f"one step is {hardware:.3g} FLOPs{why}: at least {hardware / peak:,.0f} s per step on "
                      f"{device.type} even at a generous {peak:.3g} FLOP/s, {span} or more for {steps:,} steps",
                      UserWarning, stacklevel=3)


def train(model_cfg: ModelConfig, train_cfg: TrainConfig, *, checkpoint: str | os.PathLike | None = None,
          progress: bool = True, on_eval=None, tokens: Tokens | None = None, fork_at: dict | None = None,
          on_step=None, on_sync=None) -> dict:
    """Train one model and return its result record (see README "Result record").

    checkpoint: a path or URI (s3://…, gs://…, see `checkpoint_fs`); the run resumes from it if it exists
        and saves to it every `train_cfg.checkpoint_every` steps (atomically). It is left in place;
        callers delete it (`remove_checkpoint`).
        A checkpoint that cannot be resumed is moved aside (`<name>.corrupt-<time>`) with a warning.
    progress: show a tqdm progress bar. on_eval: called after each evaluation with {step, tokens,
        train_loss, val_loss, seconds, depth, width}.
    tokens: pre-loaded `data.Tokens` (else loaded from train_cfg.corpus / tokenizer).
    fork_at: {step: [(run_key, location), …]}: on passing `step`, also save a checkpoint *as each of those
        runs* (cooldown branches: see `dwlib.sweep.anneal`), which `train(…, checkpoint=location)` of it resumes.
    on_step: called as on_step(steps done, model) after every optimizer step (the cost model's clock,
        the coordinate check's probe); the loss is not synced for it.
    on_sync: called at each host sync, before that step's checkpoint or fork is written; what it raises
        stops the run there (a sweep's lease check: a run taken over elsewhere writes nothing more).
    """
    device, autocast = setup_device(train_cfg)
    check_memory(model_cfg, train_cfg, device)   # before the corpus or a BPE vocabulary is built
    if tokens is None:
        tokens = load_tokens(train_cfg.corpus, train_cfg.tokenizer)
    if model_cfg.vocab_size != tokens.vocab_size:
        raise ValueError(f"model vocab_size {model_cfg.vocab_size} does not match tokenizer "
                         f"{train_cfg.tokenizer!r} (vocab {tokens.vocab_size}); set vocab_size={tokens.vocab_size}")
    steps = steps_for_budget(model_cfg, train_cfg)
    warn_surprises(model_cfg, train_cfg, steps, device)
    key = run_key(model_cfg, train_cfg, tokens.fingerprint)
    model, optimizer, state = resume(checkpoint, key, model_cfg, train_cfg, device)
    start_step = state["step"]
    forward = torch.compile(model) if train_cfg.compile else model
    B, T = train_cfg.batch_size, model_cfg.context
    # a pure k-hop corpus has no text: its val_loss is the loss on the task's answer positions
    text = tokens.task is None or tokens.task.fraction is not None
    val = [(x.to(device), y.to(device)) for x, y in val_batches(tokens, train_cfg.eval_batches, B, T)] if text else None
    task_val = None if tokens.task is None else [t.to(device) for t in khop.validation(tokens.task, T)]
    # Per-step device scalars (loss, clipped or not, per-layer gradient norms), held until the next sync:
    # at most SYNC_EVERY steps
    losses, clipped, pending_norms, status = [], [], [], "complete"
    fork_at = fork_at or {}

    bar = tqdm(total=steps, initial=start_step, disable=not progress, leave=False,
               desc=f"D={model_cfg.depth} W={model_cfg.width}")
    wall_start = time.perf_counter() - state["wall_seconds"]
    compile_seconds = None
    if train_cfg.compile:   # compile now (the first forward and backward), so rates leave the compile time out
        compile_start = time.perf_counter()
        forward_backward(forward, tokens, start_step, train_cfg, T, device, autocast).item()
        optimizer.zero_grad(set_to_none=True)   # a dry run: no update, and the step's batch is drawn again
        compile_seconds = time.perf_counter() - compile_start
    segment_start = time.perf_counter()
    for step in range(start_step, steps):
        lr = lr_at(step, steps, train_cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_mult"]
        loss = forward_backward(forward, tokens, step, train_cfg, T, device, autocast)
        done = step + 1
        if probes_gradients(done, steps, train_cfg):
            pending_norms.append((done, layer_grad_norms(model)))  # raw gradients, before clipping
        if train_cfg.grad_clip > 0:   # the pre-clip total norm, compared on the device: no host sync
            total_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip, foreach=True)
            clipped.append(total_norm > train_cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if on_step is not None:
            on_step(done, model)
        losses.append(loss)
        bar.update(1)

        at_eval = done % train_cfg.eval_every == 0 or done == steps
        at_checkpoint = checkpoint is not None and done % train_cfg.checkpoint_every == 0 and done < steps
        forks = fork_at.get(done, ())
        if at_eval or at_checkpoint or forks or len(losses) == SYNC_EVERY:
            if on_sync is not None:
                on_sync()
            # .tolist() waits for the device, so the clock read after it is honest
            host_losses = torch.stack(losses).tolist()
            host_clipped = torch.stack(clipped).tolist() if clipped else [False] * len(losses)
            finite = sync(state, host_losses, host_clipped, pending_norms, time.perf_counter() - segment_start)
            losses.clear()
            clipped.clear()
            if finite and at_eval:
                point = evaluation(state, forward, val, autocast, tokens_per_step(model_cfg, train_cfg), task_val, B)
                bar.set_postfix(train=f"{point['train_loss']:.3f}", val=f"{point['val_loss']:.3f}")
                finite = math.isfinite(point["val_loss"])
            if not finite:
                status = "diverged"
                break
            state["wall_seconds"] = time.perf_counter() - wall_start
            if at_checkpoint:
                save_checkpoint(checkpoint, key, model, optimizer, state)
            for fork_key, fork_path in forks:
                save_checkpoint(fork_path, fork_key, model, optimizer, state)
            if at_eval and on_eval is not None:
                on_eval(dict(point, depth=model_cfg.depth, width=model_cfg.width))
            segment_start = time.perf_counter()
    bar.close()
    state["wall_seconds"] = time.perf_counter() - wall_start
    return dict(result_record(model_cfg, train_cfg, tokens, key, state, steps, status, device),
                resumed_from_step=start_step, compile_seconds=compile_seconds)


def forward_backward(forward, tokens: Tokens, step: int, train_cfg: TrainConfig, context: int, device,
                     autocast) -> torch.Tensor:
    """Gradients of one optimizer step (its `grad_accum` micro-batches); the step's mean loss, on the device."""
    accum, loss_sum = train_cfg.grad_accum, 0.0
    for micro in range(accum):
        x, y = train_batch(tokens, step * accum + micro, train_cfg.batch_size, context, train_cfg.seed)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast:
            _, loss = forward(x, y)
        (loss / accum).backward()
        loss_sum = loss_sum + loss.detach().float()
    return loss_sum / accum


def probes_gradients(done: int, steps: int, train_cfg: TrainConfig) -> bool:
    """Per-layer gradient norms are taken at steps s−3 … s (four different batches, for fitters to average)
    for each step s that asks for them: `grad_norm_steps`, every evaluation and the end."""
    for s in range(done, min(done + PROBE_STEPS, steps + 1)):
        if s == steps or s % train_cfg.eval_every == 0 or s in train_cfg.grad_norm_steps:
            return True
    return False


def sync(state: dict, losses: list, clipped: list, pending_norms: list, seconds: float) -> bool:
    """Fold the steps since the last sync into `state`: losses (each stamped with train seconds,
    interpolated across the segment's `seconds`), clip flags (one per loss) and gradient norms. False if
    a loss is not finite: the run stops at that step."""
    start, before = state["step"], state["train_seconds"]
    for i, loss in enumerate(losses):
        state["step"] = start + i + 1
        state["train_seconds"] = before + seconds * (i + 1) / len(losses)
        state["clipped"] += int(clipped[i])
        add_step(state, state["step"], loss, state["train_seconds"])
        if not math.isfinite(loss):
            break
    for step, norms in pending_norms:
        values = norms.tolist()
        for layer, value in enumerate(values):
            name = "embedding" if layer == 0 else ("head" if layer == len(values) - 1 else f"block{layer - 1}")
            if step <= state["step"]:
                state["grad_norms"].append(dict(step=step, layer=layer - 1, name=name, norm=value))
    pending_norms.clear()
    return math.isfinite(losses[state["step"] - start - 1])


def evaluation(state: dict, forward, val, autocast, per_step: int, task_val=None, batch_size: int = 1) -> dict:
    """Validation loss now, with the mean train loss since the previous evaluation; appended to state.
    per_step: tokens per optimizer step. With a k-hop task (`task_val`), its accuracy too; val_loss is the
    text's (None: a pure k-hop corpus, whose val_loss is the task's loss on its answer positions)."""
    step = state["step"]
    task = task_evaluation(forward, task_val, batch_size, autocast) if task_val is not None else {}
    point = dict(step=step, tokens=step * per_step, train_loss=state["eval_sum"] / max(1, state["eval_n"]),
                 val_loss=evaluate(forward, val, autocast).item() if val is not None else task["task_loss"],
                 seconds=state["train_seconds"], **{k: v for k, v in task.items() if k != "task_loss"})
    state["eval_sum"], state["eval_n"] = 0.0, 0
    state["evals"].append(point)
    return point


def result_record(model_cfg, train_cfg, tokens, key, state, steps, status, device) -> dict:
    """Assemble the plain-data record the store, CLI and notebooks consume."""
    per_step = tokens_per_step(model_cfg, train_cfg)
    fpt = flops_per_token(model_cfg)
    done = state["step"]
    curve = curve_points(state, per_step, fpt, steps, train_cfg)
    tail = [c["train_loss"] for c in curve if c["step"] > done - max(1, done // 10) and math.isfinite(c["train_loss"])]
    best_val_loss = min((e["val_loss"] for e in state["evals"] if math.isfinite(e["val_loss"])), default=None)
    val_loss = state["evals"][-1]["val_loss"] if status == "complete" and state["evals"] else None
    last = state["evals"][-1] if status == "complete" and state["evals"] else {}
    unstable_reason = instability(val_loss, best_val_loss, model_cfg.vocab_size)
    trained_tokens = done * per_step
    seconds = state["train_seconds"]
    timed = seconds >= MIN_TIMED_SECONDS   # rates over less than a millisecond would be clock noise
    hw_flops = flops_per_token_with_head(model_cfg) * trained_tokens
    peak = peak_flops(device)
    return dict(
        status="unstable" if unstable_reason else status, unstable_reason=unstable_reason,
        diverged_step=done if status == "diverged" else None, run_key=key,
        model=to_dict(model_cfg), train=to_dict(train_cfg),
        corpus=tokens.corpus, tokenizer=tokens.tokenizer, corpus_fingerprint=tokens.fingerprint,
        params=count_params(model_cfg), non_embedding_params=non_embedding_params(model_cfg),
        flops_per_token=fpt, steps=done, planned_steps=steps, tokens=trained_tokens, flops=fpt * trained_tokens,
        tokens_per_param=trained_tokens / non_embedding_params(model_cfg),
        train_loss=float(np.mean(tail)) if tail else None, val_loss=val_loss,
        best_val_loss=best_val_loss,
        # a k-hop task's accuracy on its validation set's answer positions (None for a text corpus)
        task_accuracy=last.get("task_accuracy"), task_scored=last.get("task_scored"),
        task_accuracy_by_hops=last.get("task_accuracy_by_hops"),
        final_slope=final_slope(state["evals"], curve, done) if status == "complete" else None,
        clip_fraction=state["clipped"] / done if done else 0.0,
        curve=curve, grad_norms=state["grad_norms"],
        wall_seconds=state["wall_seconds"], train_seconds=seconds,
        tokens_per_second=trained_tokens / seconds if timed else None,
        flops_per_second=hw_flops / seconds if timed else None,
        mfu=hw_flops / seconds / peak if timed and peak else None,
        device=(torch.cuda.get_device_name(device) if device.type == "cuda"
                else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"),
        versions=dict(dwlib=__version__, torch=torch.__version__, numpy=np.__version__,
                      python=platform.python_version()),
    )


def curve_points(state, per_step, fpt, steps, train_cfg) -> list[dict]:
    """The curve: a row at each bucket end, each evaluation and the last step. train_loss is the bucket's
    mean (at an evaluation between bucket ends: the mean since the previous evaluation)."""
    rows = {e["step"]: (e["train_loss"], e["val_loss"], e["seconds"]) for e in state["evals"]}
    for end, mean, seconds in state["buckets"]:
        rows[end] = (mean, rows.get(end, (None, None))[1], seconds)
    if state["bucket_n"]:   # the steps after the last full bucket
        rows[state["step"]] = (state["bucket_sum"] / state["bucket_n"], rows.get(state["step"], (None, None))[1],
                               state["train_seconds"])
    return [dict(step=s, tokens=s * per_step, flops=s * per_step * fpt, train_loss=train_loss,
                 val_loss=val_loss, lr=lr_at(s - 1, steps, train_cfg), seconds=seconds)
            for s, (train_loss, val_loss, seconds) in sorted(rows.items())]


def final_slope(evals: list, curve: list, done: int) -> float | None:
    """Change of validation loss per doubling of tokens over the last quarter of the steps: the
    least-squares slope of val_loss on log2(tokens) over the evaluations there (the train-loss curve's
    points when fewer than two evaluations lie there). Negative: still falling."""
    points = [(e["tokens"], e["val_loss"]) for e in evals if e["step"] >= 0.75 * done]
    if len(points) < 2:
        points = [(c["tokens"], c["train_loss"]) for c in curve if c["step"] >= 0.75 * done]
    points = [(t, y) for t, y in points if t > 0 and y is not None and math.isfinite(y)]
    if len(points) < 2:
        return None
    x, y = np.log2([t for t, _ in points]), np.array([y for _, y in points])
    return float(np.polyfit(x, y, 1)[0])


def instability(val_loss: float | None, best: float | None, vocab_size: int) -> str | None:
    """Why a finished run counts as unstable, or None: its final validation loss is no better than
    guessing uniformly (≥ ln V), or a spike that stayed high — more than 10% of the way from its own best
    back to ln V (mild overfitting stays well below that)."""
    if val_loss is None:
        return None
    uniform = math.log(vocab_size)
    if val_loss >= uniform:
        return f"final validation loss {val_loss:.4f} >= ln(vocab) = {uniform:.4f}: no better than uniform guessing"
    if val_loss > best + 0.1 * (uniform - best):
        return (f"final validation loss {val_loss:.4f} ended {val_loss - best:.4f} above its best {best:.4f}, more "
                f"than 10% of the way back to ln(vocab) = {uniform:.4f}: a spike that stayed high")
    return None


# ---------------------------------------------------------------------------------------------
# Inference speed (for compute-matched comparisons: a deeper, narrower shape is slower per token)
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def measure_inference(model_cfg: ModelConfig, *, device: str = "auto", batch_size: int = 16,
                      repeats: int = 10, threads: int | None = None) -> dict:
    """Forward-pass speed of a shape with random weights (speed does not depend on their values):
    latency of one sequence over the full context (batch 1; median of `repeats`, with its spread) and
    throughput at `batch_size` (tokens/s). bf16 autocast on CUDA, as in training. Returns a plain dict:
    depth, width, params, context, batch_size, latency_ms, latency_ms_sd, tokens_per_second, device."""
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    dev = resolve_device(device)
    if threads is not None:
        torch.set_num_threads(threads)
    cuda = dev.type == "cuda"
    model = Transformer(model_cfg).to(dev).eval()
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda)
    gen = torch.Generator().manual_seed(0)
    T = model_cfg.context

    def timed(batch):
        x = torch.randint(0, model_cfg.vocab_size, (batch, T), generator=gen).to(dev)
        with autocast:
            model(x)                                     # warm-up: allocations, kernel selection
        times = []
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize(dev)
            start = time.perf_counter()
            with autocast:
                model(x)
            if cuda:
                torch.cuda.synchronize(dev)
            times.append(time.perf_counter() - start)
        return np.array(times)

    single = timed(1)
    batched = timed(batch_size)
    return dict(depth=model_cfg.depth, width=model_cfg.width, share=model_cfg.share, params=count_params(model_cfg),
                context=T, batch_size=batch_size, latency_ms=float(np.median(single) * 1e3),
                latency_ms_sd=float(np.std(single) * 1e3),
                tokens_per_second=float(batch_size * T / np.median(batched)),
                device=torch.cuda.get_device_name(dev) if cuda else f"cpu ({torch.get_num_threads()} threads)")
