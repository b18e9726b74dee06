"""The sentences notebooks print as conclusions (`dwlib.fit.verdicts`), on planted inputs run through the
real fitters: each sentence must state the verdict the evidence gives, and change when the verdict does."""
import numpy as np
import pandas as pd
import pytest

from dwlib import fit, transfer
from dwlib.fit import verdicts

SEEDS = range(5)


def planted_gap(gap, noise=0.002, rng=0):
    """Losses of two shapes over five seeds that share each seed's luck; the second is `gap` nats higher."""
    rng = np.random.default_rng(rng)
    luck = rng.normal(0, 0.05, 5)
    a = 2.0 + luck + rng.normal(0, noise, 5)
    return fit.compare_losses(a, a + gap + rng.normal(0, noise, 5), seeds_a=SEEDS, seeds_b=SEEDS)


def test_width_trend_sentence_follows_check_monotone():
    rng = np.random.default_rng(5)
    x = np.repeat([32, 64, 128, 256], 3).astype(float)
    falling = 2.0 - 0.1 * np.log(x) + rng.normal(0, 0.005, len(x))
    steady = verdicts.width_trend_sentence(fit.check_monotone(x, falling), depth=8)
    assert steady.startswith("At depth 8, widening the model **lowered the loss at every step**")
    trend = fit.check_monotone(x, falling + np.where(x == 128, 0.2, 0.0))
    bumpy = verdicts.width_trend_sentence(trend, depth=8)
    assert "**did not lower the loss steadily**" in bumpy and "from W = 64 to 128" in bumpy
    assert f"{trend.params['slope']:+.4f} nats per e-fold of width" in bumpy


def test_width_trend_says_every_step_only_when_every_paired_step_is_significant():
    rng = np.random.default_rng(2)
    x = np.repeat([32, 64, 128, 256], 3).astype(float)
    seeds = np.tile([0, 1, 2], 4)
    luck = rng.normal(0, 0.03, 3)[seeds]                 # a seed's data order shifts every width alike
    steady = 2.0 - 0.02 * np.log(x) + luck + rng.normal(0, 0.001, len(x))
    paired = fit.check_monotone(x, steady, seeds=seeds)
    assert paired.verdict == "monotone, every step significant" and (paired.steps["method"] == "paired").all()
    assert "**lowered the loss at every step**" in verdicts.width_trend_sentence(paired, depth=8)
    welch = fit.check_monotone(x, steady)                 # without the pairing the seed luck swamps the steps
    assert welch.verdict == "monotone" and not welch.steps["significant"].all()
    text = verdicts.width_trend_sentence(welch, depth=8)
    assert "**lowered the loss on average**" in text and "every step**" not in text


@pytest.mark.parametrize("gap, expected", [(0.05, "**worse** by {:.4f} nats"), (-0.05, "**better** by {:.4f} nats"),
                                           (0.0, "**indistinguishable** (gap {:+.4f}")])
def test_compute_matched_sentence_states_the_direction_of_the_gap(gap, expected):
    result = planted_gap(gap, noise=0.002 if gap else 0.02)
    text = verdicts.compute_matched_sentence(result, 1.5e12)
    measured = result.params["gap"] if gap >= 0 else -result.params["gap"]
    assert text.startswith("At 1.5e+12 training FLOPs each, ") and expected.format(measured) in text, text
    assert ("not reproduced" in text) == (gap < 0)
    assert ("0.12 nats at 7B" in text) == (gap > 0)    # the paper's figure beside a gap in its direction


@pytest.mark.parametrize("gap, expected", [(-0.05, "**Deep-and-thin wins**"), (0.05, "**not reproduced**"),
                                           (0.0, "**cannot separate**")])
def test_deep_vs_shallow_sentence_names_the_winner(gap, expected):
    result = planted_gap(gap, noise=0.002 if gap else 0.02)
    text = verdicts.deep_vs_shallow_sentence(result, deep=(16, 32), shallow=(2, 96))
    assert text.startswith("Deepest (D = 16, W = 32) minus shallowest (D = 2, W = 96)") and expected in text
    assert result.summary() in text


def sharing_table(gaps):
    """A row per depth as notebook 06 builds it: shared minus unshared, compared over seeds."""
    rows = []
    for depth, gap in gaps.items():
        r = planted_gap(gap, rng=depth)
        rows.append(dict(depth=depth, gap=r.params["gap"], verdict=r.verdict))
    return pd.DataFrame(rows)


def test_sharing_is_reproduced_only_when_it_helps_at_most_depths():
    most = verdicts.sharing_sentence(sharing_table({2: -0.05, 4: -0.05, 8: 0.0}))
    assert most.startswith("Sharing lowered the loss with an interval excluding zero at 2 of 3 depths (D = 2, D = 4) "
                           "and raised it at 0 (none)") and "is **reproduced**." in most
    half = verdicts.sharing_sentence(sharing_table({2: -0.05, 4: 0.05}))
    assert "at 1 of 2 depths (D = 2) and raised it at 1 (D = 4)" in half and "**not clearly reproduced**" in half


def test_lr_spread_sentence_reports_how_far_the_best_lr_moves():
    widths = [16, 32, 64]
    best = pd.DataFrame([dict(parametrization=p, depth=2, width=w, best_lr=lr, at_edge=edge)
                         for p, lrs, edges in (("sp", [4e-3, 2e-3, 1e-3], [False, False, True]),
                                               ("mup", [2e-3, 2e-3, 2e-3], [False, False, False]))
                         for w, lr, edge in zip(widths, lrs, edges)])
    text = verdicts.lr_spread_sentence(transfer.lr_spread(best, over="width"), "width")
    assert text.startswith("Across widths ")
    assert ("under **sp** the best learning rate ranges over 0.001–0.004, a factor of 4.0 (2.0 octaves; slope "
            "-1.00 per log-width) (1 of 3 optima still at an edge of the grid: bounds)") in text
    assert "under **mup** the best learning rate ranges over 0.002–0.002, a factor of 1.0 (0.0 octaves" in text


def test_retuning_gain_sentence_compares_the_deepest_with_the_shallowest():
    deep_more = verdicts.retuning_gain_sentence(pd.Series({2: 0.01, 4: 0.02, 8: 0.05}))
    assert deep_more.startswith("Re-tuning the learning rate per depth lowered SP's loss by 0.010 at D = 2, "
                                "0.020 at D = 4, 0.050 at D = 8 nats")
    assert "handicapped deep models more" in deep_more
    assert "did not single out deep models" in verdicts.retuning_gain_sentence(pd.Series({2: 0.05, 8: 0.01}))


def test_epoch_check_sentence_passes_only_inside_epochs_intervals():
    def chinchilla(E, alpha, beta, identified=True):
        return fit.Fit(kind="chinchilla", params=dict(E=E, alpha=alpha, beta=beta), ci={}, n_points=240,
                       identified=identified)
    good = verdicts.epoch_check_sentence(chinchilla(1.82, 0.35, 0.37), 240)
    assert good.startswith("On 240 points: E = 1.820") and "3 of 3" in good and "reproduces their refit" in good
    off = verdicts.epoch_check_sentence(chinchilla(1.6, 0.35, 0.37), 240)
    assert "2 of 3" in off and "**check the fitter**" in off
    assert "**check the fitter**" in verdicts.epoch_check_sentence(chinchilla(1.82, 0.35, 0.37, False), 240)


@pytest.mark.parametrize("gap, rise, expected", [
    (0.05, 0.04, "**the deeper model is worse even at its best learning rate** — the rise survives"),
    (0.0, 0.04, "**no measurable difference** — with a tuned learning rate the rise seen at the fixed rate is not there"),
    (0.0, -0.01, "**no measurable difference** at their best learning rates, as at the fixed rate"),
    (-0.05, 0.04, "**the deeper model is better at its best learning rate**")])
def test_lr_check_sentence_follows_the_tuned_gap_and_says_when_a_rate_is_only_a_bound(gap, rise, expected):
    result = planted_gap(gap, noise=0.002 if gap else 0.02)
    text = verdicts.lr_check_sentence(result, (8, 16), {8: 6e-3, 16: 3e-3}, [10, 11], rise=rise)
    assert expected in text and "chosen on seeds 10, 11" in text, text
    edge = verdicts.lr_check_sentence(result, (8, 16), {8: 6e-3, 16: 3e-3}, [10, 11], rise=rise, at_edge=[8],
                                      extended={8: 2, 16: 0}, cap=2)
    assert "the grid was extended by factors of 2 at D = 8 (2 more rates)" in edge
    assert "at D = 8 the best rate is still at an end of the grid after the cap of 2 more rates" in edge


def test_lr_grid_sentence_names_the_extended_shapes_and_where_the_cap_was_hit():
    best = pd.DataFrame([dict(parametrization="sp", depth=2, width=w, extended=n, cap_hit=hit)
                         for w, n, hit in ((16, 0, False), (32, 1, False), (64, 2, True))])
    text = verdicts.lr_grid_sentence(best, 2)
    assert text.startswith("The grid was extended by factors of 2 for 2 of 3 shapes (at most 2 more rates each): "
                           "sp D = 2 W = 32 +1; sp D = 2 W = 64 +2")
    assert "The cap was hit for 1: sp D = 2 W = 64 — their best rates are bounds" in text
    assert "no extension needed" in verdicts.lr_grid_sentence(best.assign(extended=0, cap_hit=False), 2)


def test_regime_of_annealed_budgets_comes_from_the_change_between_budgets():
    rng = np.random.default_rng(6)
    rows = []
    for tokens, offset in ((1e6, 0.0), (2e6, -0.03)):       # 0.03 nats lower per doubling of tokens
        for d in (1, 2, 3, 4, 6, 8, 12, 16):
            for seed in range(3):
                rows.append(dict(run_id=f"{tokens}-{d}-{seed}", depth=d, width=16, seed=seed, tokens=tokens,
                                 status="complete", schedule="wsd-sqrt", final_slope=-0.3,   # a cooldown's drop
                                 tokens_per_param=tokens / (3072 * d),
                                 val_loss=1.5 + 0.5 * d ** -0.7 + offset + rng.normal(0, 0.003)))
    r = fit.critical_depth_from_frame(pd.DataFrame(rows), n_boot=200)
    assert r.n_points == 24 and r.regime["slope_kind"] == "annealed budgets"
    assert r.regime["slope_best"] == pytest.approx(-0.03, abs=0.01)
    assert "between the two largest annealed budgets the loss was still falling" in r.summary()


def test_depth_sentences_name_an_outlying_run_and_the_verdict_with_it():
    # a real minimum at 8 (8 depths × 3 seeds) and one run of D = 2 that went wrong by +0.3 nats
    rng = np.random.default_rng(4)
    d, s = np.repeat([2, 3, 4, 6, 8, 12, 16, 24], 3).astype(float), np.tile([0, 1, 2], 8)
    y = 1.5 + 0.06 * (np.log(d) - np.log(8)) ** 2 + rng.normal(0, 0.005, 24) + 0.3 * ((d == 2) & (s == 1))
    ids = [f"run{i}" for i in range(24)]
    r = fit.fit_critical_depth(d, y, seeds=s, run_ids=ids, width=32, n_boot=200)
    text = verdicts.critical_depth_sentence(r)
    assert r.verdict == "U-shaped" and r.verdict_with_outliers != "U-shaped"
    assert "run1 (D = 2, seed 1): +0.29" in text and f"With it the verdict is **{r.verdict_with_outliers}**" in text
    assert "stored status is unchanged" in text
    decreasing = fit.fit_critical_depth(d, 1.5 + 0.3 * d ** -0.7 + rng.normal(0, 0.005, 24), seeds=s, n_boot=200)
    sentence = verdicts.critical_depth_sentence(decreasing)
    assert "**no rise is detected** up to D = 24" in sentence and "80% power" in sentence
    assert f"{decreasing.level:.0%} confidence set" in sentence and "An outlier" not in sentence


# ---------------------------------------------------------------------------------------------
# Every verdict states its regime, in the convention of what it is compared with (issue 21)
# ---------------------------------------------------------------------------------------------

def runs_frame(depth=1, width=16, tokens=125_000, vocab=256):
    """Store-like rows of one shape: D = 1, W = 16 has 3,120 non-embedding parameters of 11,312."""
    from dwlib.config import ModelConfig, count_params, non_embedding_params
    m = ModelConfig(depth=depth, width=width, vocab_size=vocab, head_dim=16)
    return pd.DataFrame([dict(status="complete", tokens=tokens, non_embedding_params=non_embedding_params(m),
                              params=count_params(m), seed=s) for s in range(3)])


def test_regime_sets_chinchillas_count_beside_the_non_embedding_one():
    runs = runs_frame()
    assert runs[["non_embedding_params", "params"]].iloc[0].tolist() == [3120, 11312]
    text = verdicts.regime_sentence(verdicts.regime_of(runs))
    # 125,000 tokens: 40 per non-embedding parameter but 11 per parameter, the count Chinchilla's 20 uses
    assert text.startswith("Regime: 40 tokens per non-embedding parameter (11 per parameter counting embeddings and "
                           "head, as Chinchilla's ≈ 20 does), models of 11k parameters; below the ≈ 20"), text
    assert "under-trained" in text
    over = verdicts.regime_sentence(verdicts.regime_of(runs_frame(tokens=500_000)))
    assert "160 tokens per non-embedding parameter (44 per parameter" in over and "under-trained" not in over


def test_a_step_the_other_way_within_noise_is_not_a_reversal():
    x = np.repeat([32, 64, 128], 3).astype(float)
    y = np.array([1.70, 1.72, 1.68, 1.60, 1.66, 1.54, 1.62, 1.70, 1.54])    # 64 → 128: +0.02, noise ± 0.06
    trend = fit.check_monotone(x, y)
    assert trend.verdict == "not monotone" and not trend.steps["significant"].any()
    text = verdicts.width_trend_sentence(trend, depth=8, regime=verdicts.regime_of(runs_frame()))
    assert "**no step is significantly reversed**: from W = 64 to 128" in text and "nats per e-fold of width" in text
    assert "did not lower" not in text and "Regime: 40 tokens per non-embedding parameter" in text


def test_compute_matched_sentence_states_its_regime_and_the_papers():
    text = verdicts.compute_matched_sentence(planted_gap(0.05), 1.5e12, regime=verdicts.regime_of(runs_frame()))
    assert "0.12 nats at 7B: 64 × 2816 with 6.38B parameters" in text
    assert "learns more slowly per token" in text and "Regime: 40 tokens per non-embedding parameter" in text


def test_persistence_is_graded_only_where_gradients_decay():
    taus = pd.DataFrame({"verdict": ["grows toward the input"] * 14 + ["no clear trend"]})
    text = verdicts.persistence_sentence(taus)
    assert text.startswith("In 0 of 15 runs the block gradients **decay**") and "**not observed**" in text
    assert "not graded" in text
    ok = verdicts.persistence_sentence(pd.DataFrame({"verdict": ["decays toward the input"] * 3}))
    assert "τ(W) is fitted below" in ok


def test_a_loss_rising_from_the_shallowest_depth_is_the_depth_penalty_surviving_a_fair_lr():
    depths = np.repeat([2, 4, 8, 16], 3)
    rng = np.random.default_rng(2)
    rising = lambda: fit.fit_critical_depth(depths, 2 + 0.05 * np.log2(depths) + rng.normal(0, 0.003, 12),  # noqa: E731
                                            seeds=np.tile([0, 1, 2], 4), width=32, n_boot=200)
    fits = {"(a) SP, fixed lr": rising(), "(b) SP, best lr per depth": rising()}
    assert all(r.verdict == "monotone increasing" for r in fits.values())
    text = verdicts.fair_depth_text(fits, regime=verdicts.regime_of(runs_frame()))
    assert text.startswith("**The depth penalty survives a fair learning rate**: the loss rises from D = 2 on — the "
                           "depth penalty itself, at D ≤ 2 —"), text
    assert "Nothing to explain away" not in text and "Regime:" in text
