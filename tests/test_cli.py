"""The model and training flags are made from the config dataclasses: names, types and defaults."""
import dataclasses

import pytest

from dwlib.__main__ import build_parser, configs_from_args, main, parse_vary
from dwlib.config import ModelConfig, TrainConfig


def configs(*flags):
    return configs_from_args(build_parser().parse_args(["train", *flags]))


def test_no_flags_give_the_dataclass_defaults():
    assert configs() == (ModelConfig(), TrainConfig())


def test_every_flag_sets_its_field():
    """Flag names are a contract (README, notebooks, scripts): each sets the field it always set, read as
    that field's type. The command sets every field that has a flag, so a new field is tested here too."""
    model, train = configs(
        "--depth", "6", "--width", "96", "--heads", "3", "--head-dim", "32", "--context", "64", "--mlp", "swiglu",
        "--mlp-ratio", "3", "--norm", "rmsnorm", "--residual-scale", "rezero", "--share", "2", "--tie-embeddings",
        "--bias", "--init-std", "0.01", "--rope-base", "500", "--parametrization", "mup", "--base-width", "64",
        "--base-depth", "2", "--depth-alpha", "0.5",
        "--corpus", "file:notes/", "--tokenizer", "bpe:512", "--tokens", "2e6", "--batch-size", "8",
        "--grad-accum", "2", "--lr", "1e-3", "--min-lr", "1e-5", "--warmup", "7", "--schedule", "wsd",
        "--cooldown", "0.3", "--weight-decay", "0", "--beta1", "0.8", "--beta2", "0.99", "--eps", "1e-6",
        "--grad-clip", "0.5", "--seed", "3", "--eval-every", "25", "--eval-batches", "4",
        "--grad-norm-steps", "1000,2000", "--device", "cpu", "--threads", "2", "--compile")
    assert model == ModelConfig(
        depth=6, width=96, n_heads=3, head_dim=32, context=64, vocab_size=512, mlp="swiglu", mlp_ratio=3.0,
        norm="rmsnorm", residual_scale="rezero", share=2, tie_embeddings=True, bias=True, init_std=0.01,
        rope_base=500.0, parametrization="mup", base_width=64, base_depth=2, depth_alpha=0.5)
    assert train == TrainConfig(
        corpus="file:notes/", tokenizer="bpe:512", tokens=2_000_000, batch_size=8, grad_accum=2, lr=1e-3,
        min_lr=1e-5, warmup=7, schedule="wsd", cooldown=0.3, weight_decay=0.0, beta1=0.8, beta2=0.99, eps=1e-6,
        grad_clip=0.5, seed=3, eval_every=25, eval_batches=4, grad_norm_steps=(1000, 2000), device="cpu",
        threads=2, compile=True)
    assert type(train.tokens) is int
    unset = [f.name for cfg, default in ((model, ModelConfig()), (train, TrainConfig()))
             for f in dataclasses.fields(cfg) if getattr(cfg, f.name) == getattr(default, f.name)]
    assert unset == ["steps", "flops", "checkpoint_every"]   # the other budgets; a sweep-only setting
    assert configs("--steps", "2e3")[1].steps == 2000 and configs("--flops", "1e13")[1].flops == 1e13


@pytest.mark.parametrize("flags, message", [
    (["--depth", "2.5"], "--depth takes a whole number, got '2.5'"),
    (["--tokens", "inf"], "--tokens takes a whole number, got 'inf'"),
    (["--heads", "0"], "--heads must be a positive integer, got 0"),
    (["--mlp", "relu"], "--mlp must be one of gelu, swiglu; got 'relu'"),
    (["--schedule", "linear"], "--schedule must be one of cosine, wsd, wsd-sqrt, constant; got 'linear'"),
    (["--grad-norm-steps", "10,x"], "--grad-norm-steps takes comma-separated whole numbers, got '10,x'"),
    (["--mlp-ratio", "inf"], "--mlp-ratio must be a positive finite number, got inf"),
    (["--mlp-ratio", "0.001"], "leaves the MLP no hidden units"),
    (["--rope-base", "nan"], "--rope-base must be a positive finite number, got nan"),
    (["--lr", "fast"], "--lr takes a number, got 'fast'"),
])
def test_a_bad_flag_is_one_line_naming_it(flags, message, capsys):
    assert main(["train", "--quiet", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_vary_reads_values_by_the_fields_type():
    vary = parse_vary(["tokens=2e6,4e6", "min_lr=1e-4", "n_heads=2", "mlp=gelu, swiglu", "tie-embeddings=true,no",
                       "grad_norm_steps=500", "lr=0.001"])
    assert vary == {"tokens": [2_000_000, 4_000_000], "min_lr": [1e-4], "n_heads": [2], "mlp": ["gelu", "swiglu"],
                    "tie_embeddings": [True, False], "grad_norm_steps": [(500,)], "lr": [0.001]}
    assert [type(v) for v in vary["tokens"] + vary["n_heads"]] == [int, int, int]
    with pytest.raises(ValueError, match="--vary tie_embeddings: cannot read 'maybe' as true or false"):
        parse_vary(["tie_embeddings=maybe"])
    with pytest.raises(ValueError, match="--vary depth: cannot read '2.5' as a whole number"):
        parse_vary(["depth=2,2.5"])


TINY = ["--depth", "2", "--width", "32", "--head-dim", "16", "--context", "32", "--batch-size", "4", "--threads", "1",
        "--steps", "20", "--quiet", "--dry-run"]


@pytest.mark.parametrize("flags, message", [
    (["--vary", "seed=1,2"], "--vary seed=1,2 conflicts with --seeds, which sets every run's seed; give --seeds 1,2"),
    (["--depths", "2,4", "--vary", "depth=8,16"], "--vary depth=8,16 conflicts with --depths"),
    (["--vary", "width=64"], "--vary width=64 conflicts with --widths"),
    (["--design", "depth", "--depths", "1,2", "--vary", "seed=3"], "--vary seed=3 conflicts with --seeds"),
    (["--anneal-at", "2e3,4e3", "--vary", "cooldown=0.1,0.3"], "--vary cooldown=0.1,0.3 conflicts with --anneal-at"),
])
def test_vary_on_a_field_the_design_sets_is_an_error_naming_both_flags(flags, message, capsys):
    """Issue 25 item 1: `--vary seed=1,2` trained seed 0 twice, `--depths 2,4 --vary depth=8,16` trained 2, 2, 4, 4
    (exit 0): the design's own value won without a word. Now refused up front, naming both flags."""
    assert main(["sweep", *TINY, *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_vary_in_python_refuses_the_fields_a_design_sets():
    from dwlib import sweep
    with pytest.raises(ValueError, match="vary\\['seed'\\] conflicts with the design"):
        sweep.grid([2], [32], seeds=[0], head_dim=16, vary={"seed": [1, 2]})
    with pytest.raises(ValueError, match="vary\\['tokens'\\] conflicts"):   # compute_matched sets the budget
        sweep.design("compute-matched", shapes=[(2, 32)], flops=1e9, head_dim=16, vary={"tokens": [1000, 2000]})
    pairs = sweep.grid([2], [32], seeds=[0], head_dim=16, vary={"lr": [1e-3, 2e-3]})
    assert [t.lr for _, t in pairs] == [1e-3, 2e-3]


@pytest.mark.parametrize("argv, message", [
    (["train", "--seed", "99999999999999999999"], "--seed must be a whole number from 0 to 2**63 - 1, got 9999"),
    (["train", "--seed", "-1"], "--seed must be a whole number from 0 to 2**63 - 1, got -1"),
    (["sweep", "--seeds", "0,-3", "--dry-run"], "--seeds must be a whole number from 0 to 2**63 - 1, got -3"),
])
def test_a_seed_out_of_range_is_refused_up_front_naming_its_flag(argv, message, capsys):
    """Issue 25: `sweep --seeds -3` failed every run instead of refusing up front; `--seed 99999999999999999999`
    was torch's "Overflow when unpacking long long" without the flag."""
    assert main([*argv, "--steps", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
