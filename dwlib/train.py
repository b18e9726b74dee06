"""One training run: ModelConfig + TrainConfig → a plain, JSON-serialisable result record.

The loop keeps the device busy: losses accumulate in a device tensor and reach the host only at
evaluations, checkpoints and every `SYNC_EVERY` steps (to notice divergence), so a CUDA run makes no
per-step host syncs. On CUDA it uses bf16 autocast, TF32 matmuls, fused AdamW and, when asked,
torch.compile. Batches are a pure function of (seed, step), so a resumed run replays exactly the
batches the uninterrupted run would have seen.
"""
from __future__ import annotations

import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__
from .config import (ModelConfig, TrainConfig, count_params, default_threads, flops_per_token, flops_per_token_with_head,
                     non_embedding_params, run_key, steps_for_budget, to_dict)
from .data import Tokens, get_batch, load_tokens, val_batches
from .model import Transformer

SYNC_EVERY = 50  # steps between host syncs that check the loss is still finite

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
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but this torch build sees no CUDA GPU "
                         f"(torch {torch.__version__}); use --device cpu or install a CUDA build")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {name!r}")
    return device


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_FLOPS.items():  # ordered so "H100 PCIe" matches before "H100"
        if key in name:
            return value
    return None


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
    """Learning rate for 0-based `step`: linear warmup, then cosine, warmup-stable-decay or constant."""
    warmup = default_warmup(total, train)
    min_lr = train.lr / 10 if train.min_lr is None else train.min_lr
    if step < warmup:
        return train.lr * (step + 1) / warmup
    if train.schedule == "constant":
        return train.lr
    if train.schedule == "wsd":
        decay_start = warmup + int(0.8 * (total - warmup))  # last 20% decays linearly
        if step < decay_start:
            return train.lr
        frac = (step - decay_start + 1) / max(1, total - decay_start)
        return train.lr + (min_lr - train.lr) * frac
    frac = (step - warmup + 1) / max(1, total - warmup)
    return min_lr + 0.5 * (train.lr - min_lr) * (1 + math.cos(math.pi * frac))


def default_warmup(total: int, train: TrainConfig) -> int:
    return train.warmup if train.warmup is not None else max(1, round(0.05 * total))


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


def train(model_cfg: ModelConfig, train_cfg: TrainConfig, *, checkpoint: str | Path | None = None,
          progress: bool = True, on_eval=None, tokens: Tokens | None = None) -> dict:
    """Train one model and return its result record (see README "Result record").

    checkpoint: a path; the run resumes from it if the file exists and saves to it every
        `train_cfg.checkpoint_every` steps (atomically). The file is left in place; callers delete it.
    progress: show a tqdm progress bar.
    on_eval: called with {step, tokens, train_loss, val_loss} after each evaluation (live charts).
    tokens: pre-loaded `data.Tokens` (else loaded from train_cfg.corpus / tokenizer).
    """
    if tokens is None:
        tokens = load_tokens(train_cfg.corpus, train_cfg.tokenizer)
    if model_cfg.vocab_size != tokens.vocab_size:
        raise ValueError(f"model vocab_size {model_cfg.vocab_size} does not match tokenizer "
                         f"{train_cfg.tokenizer!r} (vocab {tokens.vocab_size}); set vocab_size={tokens.vocab_size}")
    device = resolve_device(train_cfg.device)
    torch.set_num_threads(train_cfg.threads or default_threads())
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda)

    steps = steps_for_budget(model_cfg, train_cfg)
    B, T, accum = train_cfg.batch_size, model_cfg.context, train_cfg.grad_accum
    tokens_per_step = B * T * accum
    fpt = flops_per_token(model_cfg)

    torch.manual_seed(train_cfg.seed)
    model = Transformer(model_cfg).to(device)
    groups = param_groups(model, model_cfg, train_cfg)
    optimizer = torch.optim.AdamW(groups, lr=train_cfg.lr, betas=(train_cfg.beta1, train_cfg.beta2),
                                  fused=cuda)
    forward = torch.compile(model) if train_cfg.compile else model
    val = [(x.to(device), y.to(device)) for x, y in val_batches(tokens, train_cfg.eval_batches, B, T)]

    key = run_key(model_cfg, train_cfg, tokens.fingerprint)
    state = dict(step=0, losses=[], evals=[], grad_norms=[], train_seconds=0.0, wall_seconds=0.0)
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if checkpoint is not None and checkpoint.exists():
        saved = torch.load(checkpoint, map_location=device, weights_only=False)
        if saved["run_key"] != key:
            raise ValueError(f"checkpoint {checkpoint} belongs to another run ({saved['run_key'][:12]}, "
                             f"this run is {key[:12]})")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
    start_step = state["step"]

    grad_norm_steps = set(train_cfg.grad_norm_steps) | {steps}
    eval_steps = set(range(train_cfg.eval_every, steps + 1, train_cfg.eval_every)) | {steps}
    step_losses = torch.zeros(steps, device=device)  # filled on device, read at sync points
    pending_norms = []  # (step, device tensor)
    status, diverged_step = "complete", None
    bar = tqdm(total=steps, initial=start_step, disable=not progress, leave=False,
               desc=f"D={model_cfg.depth} W={model_cfg.width}")

    def sync(upto: int) -> bool:
        """Move losses and grad norms of steps [state.step, upto) to the host; False if any is non-finite."""
        nonlocal status, diverged_step
        host = step_losses[state["step"]:upto].tolist()
        for step, norms in pending_norms:
            for layer, value in enumerate(norms.tolist()):
                name = "embedding" if layer == 0 else ("head" if layer == len(norms) - 1 else f"block{layer - 1}")
                state["grad_norms"].append(dict(step=step, layer=layer - 1, name=name, norm=value))
        pending_norms.clear()
        for i, loss in enumerate(host):
            if not math.isfinite(loss):
                status, diverged_step = "diverged", state["step"] + i + 1
                state["losses"].extend(host[:i + 1])
                state["step"] = state["step"] + i + 1
                return False
        state["losses"].extend(host)
        state["step"] = upto
        return True

    def save_checkpoint():
        tmp = checkpoint.with_suffix(".tmp")
        torch.save(dict(run_key=key, model=model.state_dict(), optimizer=optimizer.state_dict(), state=state), tmp)
        os.replace(tmp, checkpoint)

    wall_start = time.perf_counter() - state["wall_seconds"]
    segment_start = time.perf_counter()
    for step in range(start_step, steps):
        lr = lr_at(step, steps, train_cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_mult"]
        loss_sum = torch.zeros((), device=device)
        for micro in range(accum):
            x, y = get_batch(tokens.train, step * accum + micro, B, T, train_cfg.seed)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast:
                _, loss = forward(x, y)
            (loss / accum).backward()
            loss_sum += loss.detach().float()
        done = step + 1
        if done in grad_norm_steps or done in eval_steps:
            pending_norms.append((done, layer_grad_norms(model)))  # raw gradients, before clipping
        if train_cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip, foreach=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step_losses[step] = loss_sum / accum
        bar.update(1)

        at_eval = done in eval_steps
        at_checkpoint = checkpoint is not None and done % train_cfg.checkpoint_every == 0 and done < steps
        if at_eval or at_checkpoint or done % SYNC_EVERY == 0:
            if not sync(done):  # .tolist() synchronises the device, so the timer below is honest
                break
            now = time.perf_counter()
            state["train_seconds"] += now - segment_start
            if at_eval:
                val_loss = evaluate(forward, val, autocast).item()
                recent = state["losses"][-min(len(state["losses"]), train_cfg.eval_every):]
                point = dict(step=done, tokens=done * tokens_per_step, train_loss=float(np.mean(recent)),
                             val_loss=val_loss)
                state["evals"].append(point)
                bar.set_postfix(train=f"{point['train_loss']:.3f}", val=f"{val_loss:.3f}")
                if not math.isfinite(val_loss):
                    status, diverged_step = "diverged", done
                    break
            state["wall_seconds"] = time.perf_counter() - wall_start
            if at_checkpoint:
                save_checkpoint()
            if at_eval and on_eval is not None:
                on_eval(dict(point, depth=model_cfg.depth, width=model_cfg.width))
            segment_start = time.perf_counter()
    bar.close()
    state["wall_seconds"] = time.perf_counter() - wall_start

    return result_record(model_cfg, train_cfg, tokens, key, state, steps, status, diverged_step, device)


def result_record(model_cfg, train_cfg, tokens, key, state, steps, status, diverged_step, device) -> dict:
    """Assemble the plain-data record the store, CLI and notebooks consume."""
    B, T, accum = train_cfg.batch_size, model_cfg.context, train_cfg.grad_accum
    tokens_per_step = B * T * accum
    fpt = flops_per_token(model_cfg)
    done = state["step"]
    losses = state["losses"]
    evals = {e["step"]: e["val_loss"] for e in state["evals"]}
    # train-loss curve: at most ~500 points, each the mean over its interval
    every = max(1, math.ceil(len(losses) / 500))
    curve = []
    for end in sorted(set(range(every, len(losses) + 1, every)) | set(evals) | ({len(losses)} if losses else set())):
        if end > len(losses):
            continue
        window = losses[max(0, end - every):end]
        curve.append(dict(step=end, tokens=end * tokens_per_step, flops=end * tokens_per_step * fpt,
                          train_loss=float(np.mean(window)), val_loss=evals.get(end),
                          lr=lr_at(end - 1, steps, train_cfg)))
    val_losses = [v for v in evals.values() if math.isfinite(v)]
    trained_tokens = done * tokens_per_step
    train_seconds = max(state["train_seconds"], 1e-9)
    hw_flops = flops_per_token_with_head(model_cfg) * trained_tokens
    peak = peak_flops(device)
    finite_losses = [x for x in losses[-max(1, len(losses) // 10):] if math.isfinite(x)]
    return dict(
        status=status, diverged_step=diverged_step, run_key=key,
        model=to_dict(model_cfg), train=to_dict(train_cfg),
        corpus=tokens.corpus, tokenizer=tokens.tokenizer, corpus_fingerprint=tokens.fingerprint,
        params=count_params(model_cfg), non_embedding_params=non_embedding_params(model_cfg),
        flops_per_token=fpt, steps=done, planned_steps=steps, tokens=trained_tokens, flops=fpt * trained_tokens,
        train_loss=float(np.mean(finite_losses)) if finite_losses else None,
        val_loss=state["evals"][-1]["val_loss"] if status == "complete" and state["evals"] else None,
        best_val_loss=min(val_losses) if val_losses else None,
        curve=curve, grad_norms=state["grad_norms"],
        wall_seconds=state["wall_seconds"], train_seconds=state["train_seconds"],
        tokens_per_second=trained_tokens / train_seconds,
        flops_per_second=hw_flops / train_seconds,
        mfu=hw_flops / train_seconds / peak if peak else None,
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        versions=dict(dwlib=__version__, torch=torch.__version__, numpy=np.__version__,
                      python=platform.python_version()),
    )


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
