"""A decoder-only transformer whose shape is depth × width, with the variants depth studies ask for.

Pre-LN blocks, rotary position embeddings, causal attention through
`torch.nn.functional.scaled_dot_product_attention`, a GELU (or SwiGLU) MLP, no biases by default.
One flag each: RMSNorm, SwiGLU, residual-branch scaling (ReZero gate / a fixed 1/√(2L)),
MobileLLM's immediate block-wise weight sharing, and the μP / CompleteP parametrisations
(the forward-pass half; the learning-rate half lives in `dwlib.train.param_groups`).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig


def rope_tables(head_size: int, context: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE's cos and sin (context, head_size) for `apply_rope`: channel i of a head pairs with channel
    i ± head_size/2, and the first half's sin is negated."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)
    angles = torch.outer(torch.arange(context, dtype=torch.float32), inv_freq)  # (T, hs/2)
    return angles.cos().repeat(1, 2), torch.cat((-angles.sin(), angles.sin()), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x1, x2) = (channel i, channel i + head_size/2) of x's last dimension by its
    position's angle, (x1·cos − x2·sin, x2·cos + x1·sin), as one multiply-add over whole heads (halves
    swapped by a roll); cos and sin: `rope_tables`, shaped by the model to broadcast against x."""
    return x * cos + x.roll(x.size(-1) // 2, dims=-1) * sin


def make_norm(cfg: ModelConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.width, eps=1e-6)
    return nn.LayerNorm(cfg.width, bias=cfg.bias)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.heads, self.head_size = cfg.heads, cfg.head_size
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width, bias=cfg.bias)
        self.proj = nn.Linear(cfg.width, cfg.width, bias=cfg.bias)
        # μP scales attention logits by 1/d_head (not 1/√d_head) so they stay O(1) as heads widen; the
        # multiplier √(base d_head) makes that exactly SP's 1/√d_head at the base shape
        mup = cfg.parametrization in ("mup", "completep")
        self.scale = math.sqrt(cfg.base_head_size) / self.head_size if mup else 1.0 / math.sqrt(self.head_size)

    def rotated_qkv(self, x, cos, sin):
        """Queries and keys rotated by RoPE, and values, each (B, heads, T, head_size)."""
        B, T, W = x.shape
        # q and k rotate in one pass, in the layout the projection writes (B, T, q|k, heads, head_size)
        qk, v = self.qkv(x).split((2 * W, W), dim=-1)
        qk = apply_rope(qk.view(B, T, 2, self.heads, self.head_size), cos.to(qk.dtype), sin.to(qk.dtype))
        q, k = qk.unbind(2)
        return q.transpose(1, 2), k.transpose(1, 2), v.view(B, T, self.heads, self.head_size).transpose(1, 2)

    def forward(self, x, cos, sin):
        B, T, W = x.shape
        q, k, v = self.rotated_qkv(x, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return self.proj(y.transpose(1, 2).reshape(B, T, W))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.swiglu = cfg.mlp == "swiglu"
        # SwiGLU's gate and up projections are one matmul
        self.fc = nn.Linear(cfg.width, (2 if self.swiglu else 1) * cfg.hidden, bias=cfg.bias)
        self.proj = nn.Linear(cfg.hidden, cfg.width, bias=cfg.bias)

    def forward(self, x):
        h = self.fc(x)
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            return self.proj(F.silu(gate) * up)
        return self.proj(F.gelu(h))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1, self.attn = make_norm(cfg), Attention(cfg)
        self.norm2, self.mlp = make_norm(cfg), MLP(cfg)
        if cfg.residual_scale == "rezero":
            # ReZero (Bachlechner et al. 2020): each branch enters through a learned gate that starts at 0
            self.gate1 = nn.Parameter(torch.zeros(()))
            self.gate2 = nn.Parameter(torch.zeros(()))
        else:
            self.gate1 = self.gate2 = None
        self.branch_scale = residual_branch_scale(cfg)

    def forward(self, x, cos, sin):
        x = x + self.branch(self.attn(self.norm1(x), cos, sin), self.gate1)
        return x + self.branch(self.mlp(self.norm2(x)), self.gate2)

    def branch(self, y, gate):
        if self.branch_scale != 1.0:   # a multiply by 1 is a full pass over the activations, forward and back
            y = y * self.branch_scale
        return y if gate is None else y * gate


def residual_branch_scale(cfg: ModelConfig) -> float:
    """Fixed multiplier on every residual branch: 1/√(2L) ("inv-sqrt-2l": Pre-LN with scaled branches, not
    DeepNet's Post-LN recipe), CompleteP's m_L^−α, else 1."""
    scale = 1.0
    if cfg.residual_scale == "inv-sqrt-2l":
        scale /= math.sqrt(2 * cfg.layers)
    if cfg.parametrization == "completep":
        scale *= cfg.depth_mult ** -cfg.depth_alpha
    return scale


class Transformer(nn.Module):
    """`Transformer(cfg)(idx)` → logits (B, T, vocab); with `targets`, also the mean cross-entropy."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.width)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = make_norm(cfg)
        self.head = None if cfg.tie_embeddings else nn.Linear(cfg.width, cfg.vocab_size, bias=False)
        # μP: the readout shrinks with width so logits stay O(1) as W grows
        self.output_scale = 1.0 / cfg.width_mult if cfg.parametrization in ("mup", "completep") else 1.0
        cos, sin = rope_tables(cfg.head_size, cfg.context, cfg.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        cfg = self.cfg
        std = cfg.init_std
        hidden_std = std / math.sqrt(cfg.width_mult) if cfg.parametrization != "sp" else std
        # Under SP, GPT-2's rule shrinks the residual output projections by 1/√(2L)
        proj_std = std / math.sqrt(2 * cfg.layers) if cfg.parametrization == "sp" else hidden_std
        nn.init.normal_(self.embed.weight, std=std)
        if self.head is not None:
            nn.init.normal_(self.head.weight, std=std)
        for block in self.blocks:
            for m, m_std in ((block.attn.qkv, hidden_std), (block.mlp.fc, hidden_std),
                             (block.attn.proj, proj_std), (block.mlp.proj, proj_std)):
                nn.init.normal_(m.weight, std=m_std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        T = idx.size(1)
        if T > self.cfg.context:
            raise ValueError(f"sequence length {T} exceeds the model's context {self.cfg.context}")
        x = self.embed(idx)
        # RoPE tables for these T positions, laid out once per forward as (T, q|k, heads, head_size): a
        # multiply then runs over whole contiguous rows, not head-sized pieces of a broadcast
        shape = (T, 2, self.cfg.heads, self.cfg.head_size)
        cos, sin = (table[:T, None, None].expand(shape).contiguous() for table in (self.rope_cos, self.rope_sin))
        for block in self.blocks:
            for _ in range(self.cfg.share):  # MobileLLM: apply the same block `share` times in a row
                x = block(x, cos, sin)
        x = self.norm(x)
        weight = self.embed.weight if self.head is None else self.head.weight
        logits = F.linear(x, weight)
        if self.output_scale != 1.0:
            logits = logits * self.output_scale
        if targets is None:
            return logits
        # targets of -1 are not trained (a k-hop document's marker and padding: dwlib/khop.py)
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by role, for per-role learning rates and weight decay (μP / CompleteP):
        `hidden` (matrices inside blocks), `embedding`, `head` (absent when tied), `norm`
        (vectors inside blocks: norm gains, biases and ReZero gates) and `final_norm` (the norm before
        the head, which CompleteP does not scale with depth: it is not part of any residual branch)."""
        groups = {"hidden": [], "embedding": [self.embed.weight], "head": [], "norm": [], "final_norm": []}
        if self.head is not None:
            groups["head"].append(self.head.weight)
        for p in self.blocks.parameters():
            groups["hidden" if p.dim() == 2 else "norm"].append(p)
        groups["final_norm"].extend(self.norm.parameters())
        return groups
