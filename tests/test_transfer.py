"""Learning-rate transfer: the parametrisation rules, coordinate checks (which must pass for μP and
CompleteP and fail for SP), the learning-rate sweep design, the best-lr picker and its charts."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from dwlib.config import ModelConfig, TrainConfig
from dwlib.model import Transformer
from dwlib.train import param_groups
from dwlib.transfer import (best_lr, bracketed_best_lr, coord_check, coord_drift, log_spaced, lr_spread, lr_sweep,
                            worst_drift)

# A parametrisation passes the coordinate check when no site's size grows faster than W^0.5 (or
# D^0.5): SP's Adam updates grow ∝ W (slope ≈ 1 or more), μP's stay flat (slope ≈ 0).
DRIFT_THRESHOLD = 0.5


@pytest.fixture(scope="module")
def corpus_tokens():
    # the stdlib corpus: every machine with Python has it, so the coordinate checks never skip
    from dwlib.data import load_tokens
    return load_tokens("stdlib")


# ---------------------------------------------------------------------------------------------
# The rules (Yang et al. 2022 Table 3/8; Dey et al. 2025 Table 1 / Eq. 40; EleutherAI nanoGPT-mup)
# ---------------------------------------------------------------------------------------------

def test_mup_scales_adam_eps_with_width_everywhere():
    cfg = ModelConfig(depth=2, width=256, base_width=64, parametrization="mup")
    groups = {g["name"]: g for g in param_groups(Transformer(cfg), cfg, TrainConfig(eps=1e-8))}
    assert set(groups) == {"hidden", "embedding", "head", "norm", "final_norm"}
    for g in groups.values():
        assert g["eps"] == pytest.approx(1e-8 / 4)
    assert groups["hidden"]["lr_mult"] == pytest.approx(1 / 4)
    assert all(groups[n]["lr_mult"] == 1.0 for n in ("embedding", "head", "norm", "final_norm"))
    sp = ModelConfig(depth=2, width=256, base_width=64)
    assert {g["eps"] for g in param_groups(Transformer(sp), sp, TrainConfig(eps=1e-8))} == {1e-8}


def test_completep_scales_in_block_vectors_but_not_the_final_norm():
    cfg = ModelConfig(depth=8, width=256, base_width=64, base_depth=2, parametrization="completep", depth_alpha=0.5)
    groups = {g["name"]: g for g in param_groups(Transformer(cfg), cfg, TrainConfig(eps=1e-8))}
    assert groups["norm"]["lr_mult"] == pytest.approx(4 ** -0.5)         # in-block gains × m_L^(α−1)
    assert groups["final_norm"]["lr_mult"] == 1.0                        # outside every residual branch
    assert groups["norm"]["eps"] == groups["hidden"]["eps"] == pytest.approx(1e-8 / (4 * 4 ** 0.5))
    for name in ("embedding", "head", "final_norm"):
        assert groups[name]["eps"] == pytest.approx(1e-8 / 4)


def test_mup_forward_rules_at_the_base_width_and_beyond():
    base = Transformer(ModelConfig(depth=2, width=64, base_width=64, parametrization="mup"))
    wide = Transformer(ModelConfig(depth=2, width=256, base_width=64, parametrization="mup"))
    assert base.output_scale == 1.0 and wide.output_scale == pytest.approx(1 / 4)
    ratio = wide.blocks[0].attn.qkv.weight.std() / base.blocks[0].attn.qkv.weight.std()
    assert ratio.item() == pytest.approx(0.5, rel=0.05)                   # hidden init ÷ √m_w
    # readout and embedding init do not change with width (Table 8: the 1/m_w multiplier does the work)
    assert wide.head.weight.std().item() == pytest.approx(base.head.weight.std().item(), rel=0.05)
    # 1/d_head times √(base d_head): SP's temperature at the base head size, falling as 1/d_head beyond it
    assert wide.blocks[0].attn.scale == base.blocks[0].attn.scale == 64 ** 0.5 / 64


# ---------------------------------------------------------------------------------------------
# Coordinate checks
# ---------------------------------------------------------------------------------------------

def test_coordinate_check_over_width_flat_for_mup_and_completep_drifts_for_sp(corpus_tokens):
    # base depth 1, depth 2: CompleteP's depth rules are active (m_L = 2), so it is not μP relabelled
    frame = coord_check([32, 64, 128, 256], depths=[2], steps=4, lr=3e-3, tokens=corpus_tokens,
                        batch_size=8, context=32, model=ModelConfig(head_dim=32, base_width=32, base_depth=1))
    assert set(frame["site"]) == {"embedding", "residual", "attn_logits", "logits"}
    assert set(frame["step"]) == set(range(5))
    drift = coord_drift(frame)
    worst = worst_drift(drift)
    print("\ncoordinate check over width 32..256 (slope of log mean|Δx| vs log W, last block):")
    print(drift.pivot(index="site", columns="parametrization", values="slope").round(3).to_string())
    print("worst |slope| per parametrisation:", worst.round(3).to_dict())
    assert worst["mup"] < DRIFT_THRESHOLD
    assert worst["completep"] < DRIFT_THRESHOLD
    assert worst["sp"] > DRIFT_THRESHOLD                   # the check can fail: SP fails it
    sp = drift[drift["parametrization"] == "sp"].set_index("site")["slope"]
    assert sp["residual"] > 1.0 and sp["logits"] > DRIFT_THRESHOLD


def test_coordinate_check_over_depth_flat_for_completep_drifts_for_sp_and_mup(corpus_tokens):
    frame = coord_check([32], depths=[2, 4, 8, 16], steps=4, lr=3e-3, tokens=corpus_tokens,
                        batch_size=8, context=32, model=ModelConfig(head_dim=32, base_width=32, base_depth=2))
    drift = coord_drift(frame, over="depth")
    worst = worst_drift(drift, sites=["residual"])
    print("\ncoordinate check over depth 2..16 at W = 32 (slope of the final residual stream's mean|Δx| vs log D):")
    print(worst.round(3).to_dict())
    assert worst["completep"] < DRIFT_THRESHOLD
    assert worst["sp"] > DRIFT_THRESHOLD
    assert worst["mup"] > DRIFT_THRESHOLD                  # μP is a width rule: depth still drifts


def test_coord_check_measures_the_models_the_trainer_trains(corpus_tokens):
    """The check's models are train.train's, step for step: the activations it reports after each step
    are those of the trainer's model at that step (the same batches, optimizer and learning rate)."""
    from dwlib.data import val_batches
    from dwlib.train import train
    from dwlib.transfer import _activations
    frame = coord_check([32], depths=[1], parametrizations=["mup"], steps=2, lr=1e-2, tokens=corpus_tokens,
                        context=16)
    probe, _ = val_batches(corpus_tokens, 1, 8, 16)[0]
    cfg = ModelConfig(depth=1, width=32, context=16, vocab_size=corpus_tokens.vocab_size, parametrization="mup",
                      base_width=32, base_depth=1)
    run = TrainConfig(steps=2, batch_size=8, lr=1e-2, schedule="constant", warmup=0, grad_clip=0.0, eval_every=2,
                      eval_batches=1, device="cpu", threads=torch.get_num_threads())
    scales = {}
    train(cfg, run, progress=False, tokens=corpus_tokens, on_step=lambda step, model: scales.update(
        {step: {key: value.abs().mean().item() for key, value in _activations(model, probe).items()}}))
    for row in frame[frame["step"] > 0].itertuples():
        assert row.scale == scales[row.step][row.site, row.layer]


def test_coord_check_and_drift_reject_bad_input(corpus_tokens):
    with pytest.raises(ValueError, match="widths"):
        coord_check([0], tokens=corpus_tokens)
    with pytest.raises(ValueError, match="parametrizations"):
        coord_check([64], parametrizations=["ntk"], tokens=corpus_tokens)
    with pytest.raises(ValueError, match="steps"):
        coord_check([64], steps=0, tokens=corpus_tokens)
    frame = coord_check([64], depths=[1], parametrizations=["sp"], steps=1, tokens=corpus_tokens, context=16)
    with pytest.raises(ValueError, match="at least 2 widths"):
        coord_drift(frame)
    with pytest.raises(ValueError, match="over"):
        coord_drift(frame, over="heads")
    with pytest.raises(ValueError, match="lacks column"):
        coord_drift(frame.drop(columns="delta"))


# ---------------------------------------------------------------------------------------------
# Sweep design
# ---------------------------------------------------------------------------------------------

def test_lr_sweep_design():
    lrs = log_spaced(1e-3, 1.6e-2, 5)
    assert lrs == [0.001, 0.002, 0.004, 0.008, 0.016]
    pairs = lr_sweep(lrs, [(2, 64), (4, 128)], seeds=[0, 1], parametrizations=["sp", "mup"], steps=50,
                     base_width=64)
    assert len(pairs) == 5 * 2 * 2 * 2
    assert {(m.parametrization, m.depth, m.width, t.lr, t.seed) for m, t in pairs} == {
        (p, d, w, lr, s) for p in ("sp", "mup") for d, w in [(2, 64), (4, 128)] for lr in lrs for s in (0, 1)}
    assert all(t.steps == 50 and m.base_width == 64 for m, t in pairs)
    with pytest.raises(ValueError, match="lr must be positive"):
        lr_sweep([0.0], [(2, 64)])
    with pytest.raises(ValueError, match="shape"):
        lr_sweep([1e-3], [64])
    with pytest.raises(ValueError, match="parametrization must be one of"):
        lr_sweep([1e-3], [(2, 64)], parametrizations=["ntk"])
    with pytest.raises(ValueError, match="low < high"):
        log_spaced(1e-2, 1e-3, 4)


# ---------------------------------------------------------------------------------------------
# Best learning rate
# ---------------------------------------------------------------------------------------------

def _planted(lr_star, *, lrs=None, seeds=3, noise=0.01, curvature=0.05, rng=None, **cols):
    """A sweep's runs whose loss is a parabola in log lr with its minimum at lr_star, plus noise."""
    rng = rng or np.random.default_rng(0)
    lrs = lrs or log_spaced(1e-3, 6.4e-2, 7)
    rows = []
    for lr in lrs:
        for seed in range(seeds):
            loss = 2.0 + curvature * (math.log(lr) - math.log(lr_star)) ** 2 + noise * rng.standard_normal()
            rows.append(dict(lr=lr, seed=seed, val_loss=loss, status="complete", **cols))
    return pd.DataFrame(rows)


def test_best_lr_finds_a_planted_optimum_between_grid_points():
    runs = _planted(5.7e-3, parametrization="sp", depth=2, width=64)
    best = best_lr(runs).iloc[0]
    assert best["method"] == "parabola (runs bootstrap)" and not best["at_edge"]
    assert best["lr_low"] < best["best_lr"] < best["lr_high"]
    assert best["best_lr"] == pytest.approx(5.7e-3, rel=0.15)
    assert best["grid_lr"] in (0.004, 0.008) and best["n_runs"] == 21 and best["seeds"] == 3


def test_best_lr_interval_coverage():
    """The 95% interval should cover the planted optimum in most repeats (seed-to-seed noise)."""
    rng = np.random.default_rng(1)
    hits = 0
    for i in range(60):
        lr_star = float(np.exp(rng.uniform(np.log(3e-3), np.log(2e-2))))
        best = best_lr(_planted(lr_star, rng=rng, noise=0.02, parametrization="sp", depth=2, width=64),
                       n_boot=300, random_state=i).iloc[0]
        hits += best["lr_low"] <= lr_star <= best["lr_high"]
    print(f"\ncoverage of the planted optimum: {hits}/60")
    assert hits >= 48


def test_best_lr_single_seed_edges_and_divergence():
    one = best_lr(_planted(6e-3, seeds=1, parametrization="sp", depth=2, width=64)).iloc[0]
    assert one["method"] == "parabola (residual bootstrap)"
    assert one["lr_low"] < one["best_lr"] < one["lr_high"]
    edge = _planted(2e-1, parametrization="sp", depth=2, width=64)            # optimum beyond the range
    edge.loc[edge["lr"] == 0.064, "status"] = "diverged"                       # ... and the top lr diverged
    edge.loc[edge["lr"] == 0.064, "val_loss"] = np.nan
    best = best_lr(edge).iloc[0]
    assert best["n_diverged"] == 3
    assert best["at_edge"] and best["best_lr"] == 0.032                        # the best finite lr
    assert (best["lr_low"], best["lr_high"]) == (0.016, 0.064)                  # bounded by the divergence
    low = _planted(1e-4, parametrization="sp", depth=2, width=64)
    b = best_lr(low).iloc[0]
    assert b["at_edge"] and b["best_lr"] == 0.001 and math.isnan(b["lr_low"]) and b["lr_high"] == 0.002


def test_best_lr_groups_by_shape_and_reports_spread():
    frames = [_planted(8e-3 * 64 / w, parametrization="sp", depth=2, width=w, rng=np.random.default_rng(w))
              for w in (32, 64, 128, 256)]
    frames += [_planted(8e-3, parametrization="mup", depth=2, width=w, rng=np.random.default_rng(w + 1))
               for w in (32, 64, 128, 256)]
    best = best_lr(pd.concat(frames))
    assert len(best) == 8
    spread = lr_spread(best).set_index("parametrization")
    print("\n" + spread.round(3).to_string())
    assert spread.loc["sp", "slope"] == pytest.approx(-1.0, abs=0.2)
    assert abs(spread.loc["mup", "slope"]) < 0.2
    assert spread.loc["sp", "octaves"] > 2.5 and spread.loc["mup", "octaves"] < 1.0
    with pytest.raises(ValueError, match="lacks column"):
        best_lr(pd.concat(frames).drop(columns="lr"))
    with pytest.raises(ValueError, match="window"):
        best_lr(pd.concat(frames), window=2)


def test_bracketed_best_lr_extends_the_grid_until_each_optimum_is_bracketed():
    optimum = {32: 4e-2, 64: 5e-3, 128: 2e-3}           # above the grid, inside it, below it

    def train(pairs):                                    # a parabola in log lr, no training
        rng = np.random.default_rng(len(pairs))
        return pd.DataFrame([dict(parametrization=m.parametrization, depth=m.depth, width=m.width, lr=t.lr, seed=t.seed,
                                  status="complete", val_loss=2 + 0.05 * math.log(t.lr / optimum[m.width]) ** 2
                                  + 0.002 * rng.standard_normal()) for m, t in pairs])

    def pairs_at(group, lr):
        return lr_sweep([lr], [(2, group)], seeds=(0, 1), steps=10)

    lrs = [2.5e-3, 5e-3, 1e-2]
    runs, best = bracketed_best_lr(train, pairs_at, lrs, [32, 64, 128], by="width", max_extensions=3, n_boot=200)
    best = best.set_index("width")
    assert list(best["extended"]) == [3, 0, 1] and not best["cap_hit"].any() and not best["at_edge"].any()
    assert best.loc[32, "best_lr"] == pytest.approx(4e-2, rel=0.2) and sorted(runs[runs.width == 32].lr.unique())[-1] == 0.08
    assert best.loc[128, "best_lr"] == pytest.approx(2e-3, rel=0.2)
    _, capped = bracketed_best_lr(train, pairs_at, lrs, [32], by="width", max_extensions=1, n_boot=200)
    assert capped["cap_hit"].iloc[0] and capped["at_edge"].iloc[0] and capped["grid_lr"].iloc[0] == 0.02
    with pytest.raises(ValueError, match="factor"):
        bracketed_best_lr(train, pairs_at, lrs, [32], by="width", factor=1.0)


# ---------------------------------------------------------------------------------------------
# Charts and the sweep end to end
# ---------------------------------------------------------------------------------------------

def test_charts_render(corpus_tokens):
    from dwlib import charts
    frame = coord_check([64, 128], depths=[1], steps=2, tokens=corpus_tokens, context=16)
    spec = charts.coord_check_chart(frame).to_dict()
    assert spec["facet"]["row"]["field"] == "parametrisation"
    runs = pd.concat([_planted(8e-3, parametrization=p, depth=2, width=w) for p in ("sp", "mup") for w in (64, 128)])
    best = best_lr(runs)
    charts.lr_curves_chart(runs, best).to_dict()
    charts.best_lr_chart(best).to_dict()
    with pytest.raises(ValueError, match="over"):
        charts.best_lr_chart(best, over="heads")


def test_lr_sweep_runs_through_the_store(tmp_path, corpus_tokens):
    from dwlib.sweep import run_sweep
    pairs = lr_sweep([1e-3, 4e-3, 1.6e-2], [(1, 32)], corpus=corpus_tokens.corpus, steps=4, batch_size=2,
                     context=16, eval_every=4, eval_batches=1, head_dim=16, threads=1, grad_norm_steps=())
    runs = run_sweep(pairs, store=tmp_path / "runs.sqlite", progress=False)
    assert len(runs) == 3 and set(runs["status"]) == {"complete"}
    best = best_lr(runs)
    assert len(best) == 1 and best.iloc[0]["n_lrs"] == 3
