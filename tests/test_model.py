"""The transformer: causality, learning, variants, shapes."""
import math

import pytest
import torch

from dwlib.config import ModelConfig
from dwlib.model import Transformer, residual_branch_scale

VARIANTS = [{}, {"norm": "rmsnorm"}, {"mlp": "swiglu"}, {"residual_scale": "rezero"},
            {"residual_scale": "deepnorm"}, {"share": 2}, {"tie_embeddings": True},
            {"parametrization": "mup"}, {"parametrization": "completep"}]


@pytest.mark.parametrize("overrides", VARIANTS)
def test_future_tokens_do_not_change_past_logits(overrides):
    torch.manual_seed(0)
    cfg = ModelConfig(depth=2, width=64, context=32, **overrides)
    model = Transformer(cfg).eval()
    if cfg.residual_scale == "rezero":  # gates start at 0: open them so attention matters
        for b in model.blocks:
            b.gate1.data.fill_(1.0); b.gate2.data.fill_(1.0)
    x = torch.randint(0, 256, (2, 32))
    y = x.clone()
    y[:, 20:] = torch.randint(0, 256, (2, 12))
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.allclose(a[:, :20], b[:, :20], atol=1e-5)
    assert not torch.allclose(a[:, 20:], b[:, 20:], atol=1e-3)


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(depth=2, width=64, context=16))
    x = torch.randint(0, 256, (4, 17))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        _, loss = model(x[:, :-1], x[:, 1:])
        opt.zero_grad(); loss.backward(); opt.step()
        first = first or loss.item()
    assert first > 5.0  # ~ln 256 at init
    assert loss.item() < 0.05


def test_initial_loss_is_near_uniform():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(depth=2, width=64, context=16))
    x = torch.randint(0, 256, (8, 16))
    _, loss = model(x, x)
    assert abs(loss.item() - math.log(256)) < 0.1


def test_weight_sharing_applies_blocks_k_times():
    torch.manual_seed(0)
    shared = Transformer(ModelConfig(depth=2, width=64, context=16, share=2)).eval()
    calls = []
    for b in shared.blocks:
        b.register_forward_hook(lambda m, i, o: calls.append(m))
    shared(torch.randint(0, 256, (1, 16)))
    assert calls == [shared.blocks[0], shared.blocks[0], shared.blocks[1], shared.blocks[1]]


def test_residual_branch_scales():
    assert residual_branch_scale(ModelConfig(depth=8)) == 1.0
    assert math.isclose(residual_branch_scale(ModelConfig(depth=8, residual_scale="deepnorm")), 1 / 4)
    assert math.isclose(residual_branch_scale(ModelConfig(depth=8, base_depth=2, parametrization="completep")), 1 / 4)
    assert math.isclose(residual_branch_scale(ModelConfig(depth=8, base_depth=2, parametrization="completep",
                                                          depth_alpha=0.5)), 1 / 2)


def test_sequence_longer_than_context_is_a_clear_error():
    model = Transformer(ModelConfig(depth=1, width=64, context=8))
    with pytest.raises(ValueError, match="exceeds the model's context 8"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_heads_from_head_dim_or_explicit():
    assert ModelConfig(width=256).heads == 4
    assert ModelConfig(width=32).heads == 1  # narrower than one head: a single head
    assert ModelConfig(width=96, n_heads=3).head_size == 32
