"""The transformer: causality, learning, variants, shapes."""
import math

import pytest
import torch

from dwlib.config import ModelConfig, model_config_from_dict
from dwlib.model import Transformer, residual_branch_scale

VARIANTS = [{}, {"norm": "rmsnorm"}, {"mlp": "swiglu"}, {"residual_scale": "rezero"},
            {"residual_scale": "inv-sqrt-2l"}, {"share": 2}, {"tie_embeddings": True},
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
    assert math.isclose(residual_branch_scale(ModelConfig(depth=8, residual_scale="inv-sqrt-2l")), 1 / 4)
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


def test_deepnorm_was_renamed_for_what_it_is():
    with pytest.raises(ValueError, match="renamed 'inv-sqrt-2l'.*not DeepNet"):
        ModelConfig(residual_scale="deepnorm")
    # a store written before the rename still lists its runs, under the new name
    assert model_config_from_dict({"depth": 2, "residual_scale": "deepnorm"}).residual_scale == "inv-sqrt-2l"


@pytest.mark.parametrize("parametrization", ["mup", "completep"])
def test_mup_and_completep_equal_sp_at_the_base_shape(parametrization):
    """Same weights, same logits: at base width and depth the μP/CompleteP forward pass is SP's (their
    init rules differ, which only changes the initial weights)."""
    torch.manual_seed(0)
    shape = dict(depth=2, width=128, context=32, base_width=128, base_depth=2)
    sp = Transformer(ModelConfig(**shape)).eval()
    mup = Transformer(ModelConfig(**shape, parametrization=parametrization)).eval()
    mup.load_state_dict(sp.state_dict())
    x = torch.randint(0, 256, (2, 32))
    with torch.no_grad():
        assert torch.equal(sp(x), mup(x))


def test_mup_attention_scale_goes_as_one_over_head_size():
    for width in (128, 256, 512):        # two heads: the head size grows with the width
        cfg = ModelConfig(width=width, n_heads=2, base_width=128, parametrization="mup")
        attn = Transformer(ModelConfig(**{**cfg.__dict__, "depth": 1})).blocks[0].attn
        assert math.isclose(attn.scale, math.sqrt(64) / (width / 2))
    sp = Transformer(ModelConfig(depth=1, width=512, n_heads=2)).blocks[0].attn
    assert math.isclose(sp.scale, 1 / math.sqrt(256))


def test_rope_scores_depend_only_on_the_offset_between_positions():
    """RoPE's defining property: the score of a query at position m against a key at n is a function of
    m − n, and rotating keeps each vector's length. Checked on the model's own q, k path."""
    torch.manual_seed(0)
    cfg = ModelConfig(depth=1, width=64, context=16, head_dim=16)
    model = Transformer(cfg).eval()
    tables = []
    model.blocks[0].attn.register_forward_hook(lambda m, args, out: tables.append(args[1:]))
    with torch.no_grad():
        model(torch.zeros(1, 16, dtype=torch.long))
        same = torch.randn(1, 1, cfg.width).expand(1, 16, cfg.width)   # one vector at every position
        q, k, v = model.blocks[0].attn.rotated_qkv(same, *tables[0])
    scores = q @ k.transpose(-2, -1)                                     # (1, heads, T, T)
    for offset in (-5, 0, 3):
        diagonal = scores.diagonal(offset, dim1=-2, dim2=-1)
        assert torch.allclose(diagonal, diagonal[..., :1].expand_as(diagonal), atol=1e-5)
    assert not torch.allclose(scores[..., 0, 0], scores[..., 5, 0], atol=1e-3)   # the offset matters
    assert torch.allclose(q.norm(dim=-1), q[..., :1, :].norm(dim=-1).expand(q.shape[:-1]), atol=1e-5)
    assert torch.equal(v, v[..., :1, :].expand_as(v))                    # values are not rotated
