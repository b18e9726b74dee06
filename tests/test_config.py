"""Accounting against outside references: the Depth Delusion paper's W = 512 family, and the
parameters (torch's numel) and FLOPs (torch's FlopCounterMode) the real model has."""
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dwlib.config import (ModelConfig, TrainConfig, breakdown, count_params, flops_per_token, flops_per_token_with_head,
                          non_embedding_params, run_key, steps_for_budget)
from dwlib.model import Transformer


@pytest.mark.parametrize("depth, expected", [(2, 57.75e6), (8, 76.6e6), (16, 101.8e6), (24, 127.0e6)])
def test_depth_delusion_w512_family(depth, expected):
    # the paper's counts equal 12·D·W² + 2·V·W: untied embeddings, GPT-2 vocabulary
    cfg = ModelConfig(depth=depth, width=512, vocab_size=50257, context=1024)
    assert abs(count_params(cfg) - expected) / expected < 1e-3


@pytest.mark.parametrize("overrides", [{}, {"share": 2, "mlp": "swiglu"}, {"tie_embeddings": True, "bias": True,
                                                                             "norm": "layernorm"}])
def test_breakdown_adds_up_to_the_one_definition(overrides):
    # the calculator's readout and chart both read these parts: their totals must be the library's
    cfg = ModelConfig(**{"depth": 16, "width": 512, "context": 1024, "vocab_size": 50257, **overrides})
    parts = breakdown(cfg)
    assert sum(parts["params"].values()) == count_params(cfg)
    assert sum(parts["flops"].values()) == pytest.approx(flops_per_token(cfg), rel=1e-12)
    assert parts["head_flops"] == 6 * 512 * 50257
    assert parts["flops"]["attention over context"] == 6 * cfg.layers * 1024 * 512
    assert ("output head" in parts["params"]) == (not cfg.tie_embeddings)


@pytest.mark.parametrize("overrides", [
    {}, {"norm": "rmsnorm"}, {"mlp": "swiglu"}, {"residual_scale": "rezero"}, {"tie_embeddings": True},
    {"bias": True}, {"share": 3}, {"n_heads": 2, "width": 96}, {"mlp": "swiglu", "width": 576, "head_dim": 64},
])
def test_count_params_matches_the_model(overrides):
    cfg = ModelConfig(**{"depth": 3, "width": 128, **overrides})
    model = Transformer(cfg)
    assert count_params(cfg) == sum(p.numel() for p in model.parameters())
    # Kaplan's N: all but the token embedding and the output head
    assert non_embedding_params(cfg) == sum(p.numel() for m in (model.blocks, model.norm) for p in m.parameters())
    roles = model.param_groups()
    assert sum(p.numel() for ps in roles.values() for p in ps) == count_params(cfg)
    assert len({id(p) for ps in roles.values() for p in ps}) == len(list(model.parameters()))


def test_swiglu_matches_mobilellm_125m_ffn():
    # MobileLLM-125M: dim 576, FFN 1536 (= 8/3 · 576)
    assert ModelConfig(width=576, mlp="swiglu").hidden == 1536


@pytest.mark.parametrize("overrides", [{}, {"share": 2}, {"mlp": "swiglu", "width": 192}, {"tie_embeddings": True},
                                       {"bias": True, "residual_scale": "rezero"}, {"n_heads": 2, "context": 96}])
def test_flops_against_torch_flop_counter(overrides):
    """torch's FlopCounterMode counts every matmul of forward + backward. Kaplan's count per token is the
    same matmuls (a shared block's once per application), plus 6 per vector parameter applied (norm gains,
    biases, gates: Kaplan's 6N counts every non-embedding parameter), plus 6·L·T·W for attention scores
    and values, the causal half of the T×T square. FlopCounterMode counts the full square (12·L·T·W) if it
    sees inside SDPA, else none of it."""
    cfg = ModelConfig(**{"depth": 3, "width": 128, "context": 64, **overrides})
    model = Transformer(cfg)
    x = torch.randint(0, cfg.vocab_size, (2, cfg.context))
    with FlopCounterMode(display=False) as counter:
        _, loss = model(x, x)
        loss.backward()
    matmuls = counter.get_total_flops() / x.numel()
    vectors = 6 * (cfg.share * sum(p.numel() for p in model.blocks.parameters() if p.dim() < 2)
                   + sum(p.numel() for p in model.norm.parameters()))
    attention = 6 * cfg.layers * cfg.context * cfg.width
    assert flops_per_token_with_head(cfg) - vectors in (matmuls + attention, matmuls - attention)
    head = 6 * cfg.width * cfg.vocab_size   # the output projection, which Kaplan leaves out
    assert flops_per_token(cfg) == flops_per_token_with_head(cfg) - head


def test_flop_budget_gives_exact_steps():
    cfg = ModelConfig(depth=4, width=128, context=128)
    budget = 3e12
    train = TrainConfig(flops=budget, batch_size=8)
    steps = steps_for_budget(cfg, train)
    per_step = flops_per_token(cfg) * 8 * 128
    assert abs(steps * per_step - budget) <= per_step / 2
    assert steps_for_budget(cfg, TrainConfig(tokens=8 * 128 * 37, batch_size=8)) == 37
    # a step trains on every micro-batch it accumulates
    assert steps_for_budget(cfg, TrainConfig(tokens=8 * 3 * 128 * 37, batch_size=8, grad_accum=3)) == 37
    assert steps_for_budget(cfg, TrainConfig(flops=per_step * 3 * 37, batch_size=8, grad_accum=3)) == 37


@pytest.mark.parametrize("kwargs, needle", [
    ({"depth": 0}, "depth"), ({"width": 0}, "width"), ({"width": -4}, "-4"), ({"context": 0}, "context"),
    ({"width": 100}, "100"), ({"width": 96, "n_heads": 5}, "n_heads 5"), ({"width": 96, "n_heads": 32}, "odd"),
    ({"depth": 2.5}, "2.5"), ({"mlp": "relu"}, "relu"), ({"share": 0}, "share"),
])
def test_bad_shapes_raise_naming_the_value(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        ModelConfig(**kwargs)


@pytest.mark.parametrize("kwargs, needle", [
    ({"steps": 0}, "steps"), ({"steps": 5, "flops": 1e9}, "one budget"), ({"lr": -1}, "lr"),
    ({"batch_size": 0}, "batch_size"), ({"schedule": "linear"}, "linear"), ({"min_lr": 1.0}, "min_lr"),
])
def test_bad_train_config_raises(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        TrainConfig(**kwargs)


def test_run_key_ignores_execution_fields_only():
    m = ModelConfig()
    base = run_key(m, TrainConfig(steps=10), "fp")
    assert run_key(m, TrainConfig(steps=10, device="cpu", threads=1, compile=True), "fp") == base
    assert run_key(m, TrainConfig(steps=10, seed=1), "fp") != base
    assert run_key(m, TrainConfig(steps=10), "other-corpus") != base
    assert run_key(ModelConfig(depth=5), TrainConfig(steps=10), "fp") != base
