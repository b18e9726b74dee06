"""Accounting against hand-computed formulas (Kaplan et al. 2020; the Depth Delusion W=512 family)
and against the parameters and FLOPs the real model has."""
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dwlib.config import (ModelConfig, TrainConfig, breakdown, count_params, flops_per_token, kaplan_params,
                          non_embedding_params, run_key, steps_for_budget, tokens_for_flops)
from dwlib.model import Transformer


@pytest.mark.parametrize("depth, expected", [(2, 57.75e6), (8, 76.6e6), (16, 101.8e6), (24, 127.0e6)])
def test_depth_delusion_w512_family(depth, expected):
    # the paper's counts equal 12·D·W² + 2·V·W: untied embeddings, GPT-2 vocabulary
    cfg = ModelConfig(depth=depth, width=512, vocab_size=50257, context=1024)
    assert abs(count_params(cfg) - expected) / expected < 1e-3


@pytest.mark.parametrize("depth, width", [(1, 64), (4, 128), (12, 256), (3, 768)])
def test_non_embedding_is_kaplan_plus_norm_gains(depth, width):
    cfg = ModelConfig(depth=depth, width=width)
    assert kaplan_params(cfg) == 12 * depth * width ** 2
    # exact: 12·D·W² plus two norm gains per block and the final norm
    assert non_embedding_params(cfg) == 12 * depth * width ** 2 + 2 * depth * width + width
    assert count_params(cfg) == non_embedding_params(cfg) + 2 * 256 * width


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
    roles = model.param_groups()
    assert sum(p.numel() for ps in roles.values() for p in ps) == count_params(cfg)
    assert len({id(p) for ps in roles.values() for p in ps}) == len(list(model.parameters()))


def test_swiglu_matches_mobilellm_125m_ffn():
    # MobileLLM-125M: dim 576, FFN 1536 (= 8/3 · 576)
    assert ModelConfig(width=576, mlp="swiglu").hidden == 1536


def test_flops_per_token_kaplan_formula():
    cfg = ModelConfig(depth=6, width=256, context=512)
    n = non_embedding_params(cfg)
    assert flops_per_token(cfg) == 6 * n + 6 * 6 * 512 * 256
    shared = ModelConfig(depth=6, width=256, context=512, share=2)
    # a shared block costs compute every time it is applied, but its parameters once
    assert non_embedding_params(shared) == n
    assert flops_per_token(shared) - 6 * 256 == 2 * (flops_per_token(cfg) - 6 * 256)


def test_flops_against_torch_flop_counter():
    """torch's FlopCounterMode counts every matmul in forward + backward: it must equal 6 × (block
    matrices + head) per token, plus the attention matmuls if it sees inside SDPA (it counts the full
    T×T square, 12·D·T·W per token, where Kaplan's formula counts half)."""
    cfg = ModelConfig(depth=3, width=128, context=64)
    model = Transformer(cfg)
    x = torch.randint(0, cfg.vocab_size, (2, cfg.context))
    with FlopCounterMode(display=False) as counter:
        _, loss = model(x, x)
        loss.backward()
    per_token = counter.get_total_flops() / x.numel()
    dense = 6 * (12 * cfg.depth * cfg.width ** 2 + cfg.width * cfg.vocab_size)
    attention = 12 * cfg.depth * cfg.context * cfg.width
    assert per_token in (dense, dense + attention)
    kaplan_dense = flops_per_token(cfg) - 6 * cfg.depth * cfg.context * cfg.width
    assert abs(kaplan_dense - 6 * 12 * cfg.depth * cfg.width ** 2) / kaplan_dense < 2e-3  # norm gains only


def test_flop_budget_gives_exact_steps():
    cfg = ModelConfig(depth=4, width=128, context=128)
    budget = 3e12
    train = TrainConfig(flops=budget, batch_size=8)
    steps = steps_for_budget(cfg, train)
    per_step = flops_per_token(cfg) * 8 * 128
    assert abs(steps * per_step - budget) <= per_step / 2
    assert math.isclose(tokens_for_flops(cfg, budget) * flops_per_token(cfg), budget)
    assert steps_for_budget(cfg, TrainConfig(tokens=8 * 128 * 37, batch_size=8)) == 37


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
