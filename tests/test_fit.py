"""Fitters on planted data: the U-shape test's false-positive rate and power, recovered parameters,
fit health that flags data which cannot identify a law, and Epoch AI's refit of Chinchilla's Figure 4
points (their digitised data in tests/fixtures, source: epoch-research/analyzing-chinchilla)."""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from dwlib import fit
from dwlib.fit import verdicts

EPOCH_CSV = Path(__file__).parent / "fixtures" / "epoch_chinchilla_points.csv"
SMALL_GRID = dict(a=np.array([0.0, 5.0, 10.0]), b=np.array([5.0, 10.0]), e=np.array([-0.5, 0.5]),
                  alpha=np.array([0.5, 1.0]), beta=np.array([0.5, 1.0]))
DEPTHS = np.array([2, 3, 4, 6, 8, 12, 16, 24], float)


# -- the depth verdict -----------------------------------------------------------------------------

def rising(base, d_star, rise=0.03):
    """`base` plus a squared hinge beyond d_star, scaled so the loss at 2·d_star is `rise` above the minimum."""
    grid = np.exp(np.linspace(0, np.log(64), 4000))
    lo, hi = 0.0, 10.0
    for _ in range(60):
        c = (lo + hi) / 2
        f = lambda d, c=c: base(d) + c * np.maximum(0, np.log(d / d_star)) ** 2
        lo, hi = (c, hi) if f(2 * d_star) - f(grid[grid <= 2 * d_star]).min() < rise else (lo, c)
    return f


def two_sided(onset, end, rise=0.03, left=0.1, last=24):
    """Falls (left per e-fold) to `onset`, flat to `end`, then rises linearly in ln D by `rise` at `last`."""
    return lambda d: (1.5 + left * np.maximum(0, np.log(onset / d))
                      + rise * np.maximum(0, np.log(d / end)) / math.log(last / end))


NO_RISE = {   # curves that fall and level off (or are flat): a U-shape here is a false positive
    "power law a=0.7": lambda d: 1.5 + 0.5 * d ** -0.7,
    "steep power law": lambda d: 1.5 + 1.0 * d ** -1.5,
    "still falling": lambda d: 1.5 + 0.4 * d ** -0.2,
    "hinge, flat from 6": lambda d: 1.5 + 0.1 * np.maximum(0, np.log(6 / d)),
    "sigmoid drop": lambda d: 1.5 + 0.3 / (1 + np.exp((np.log(d) - np.log(5)) / 0.3)),
    "flat": lambda d: 1.5 + 0 * d,
}
RISES = {     # real rises of +0.03 nats at 2·D* (the GPU sweep's size, bench/RESULTS.md)
    "quadratic in ln D, D*=6": lambda d: 1.5 + 0.0624 * (np.log(d) - np.log(6)) ** 2,
    "saturating + hinge, D*=6": rising(lambda d: 1.5 + 0.5 * d ** -0.7, 6),
    "saturating + hinge, D*=8": rising(lambda d: 1.5 + 0.5 * d ** -0.7, 8),
}


def planted_fits(curve, trials=20, sd=0.005, depths=DEPTHS, seeds=3, seed_sd=0.0, outlier=None, rng=0):
    """`fit_critical_depth` on `trials` planted sweeps (depths × seeds): Gaussian noise `sd`, an effect per
    seed shared by every depth (`seed_sd`), and with `outlier` = (depth, nats) seed 0's run at that depth
    that much worse (run id 'bad')."""
    rng = np.random.default_rng(rng)
    d = np.repeat(np.asarray(depths, float), seeds)
    s = np.tile(np.arange(seeds), len(depths))
    bad = (d == outlier[0]) & (s == 0) if outlier else np.zeros(len(d), bool)
    ids = np.where(bad, "bad", [f"r{i}" for i in range(len(d))])
    for i in range(trials):
        y = curve(d) + rng.normal(0, sd, len(d)) + rng.normal(0, seed_sd, seeds)[s] + bad * (outlier or (0, 0))[1]
        yield fit.fit_critical_depth(d, y, seeds=s, run_ids=ids, n_boot=200, random_state=i)


def u_rate(curve, **kw):
    return np.mean([r.verdict == "U-shaped" for r in planted_fits(curve, **kw)])


@pytest.mark.parametrize("name", NO_RISE)
def test_curves_without_a_rise_are_rarely_called_u_shaped(name):
    # 30 sweeps per shape at the noise (sd 0.005) and at twice it (bench: ≤ 5% at 200 sweeps)
    assert u_rate(NO_RISE[name], trials=30, sd=0.005) <= 0.1
    assert u_rate(NO_RISE[name], trials=30, sd=0.01) <= 0.1


@pytest.mark.parametrize("name", RISES)
def test_a_small_real_rise_is_found_at_least_80_percent_of_the_time(name):
    assert u_rate(RISES[name]) >= 0.8


def test_one_bad_run_is_named_and_does_not_erase_a_real_rise():
    # issue 20 item 1: one seed of one depth +0.3 nats (a run that went wrong without diverging)
    for depth in (24, 2):
        fits = list(planted_fits(RISES["saturating + hinge, D*=8"], trials=15, outlier=(depth, 0.3)))
        assert np.mean([r.verdict == "U-shaped" for r in fits]) >= 0.8
        assert all([o["run"] for o in r.outliers][:1] == ["bad"] for r in fits)     # the worst first
    r = fits[0]
    assert r.outliers[0]["depth"] == 2 and r.outliers[0]["seed"] == 0 and r.outliers[0]["excess"] > 0.25
    assert bool(r.data.loc[r.data["run_id"] == "bad", "outlier"].iloc[0]) and r.n_points == 24
    assert "bad (D = 2, seed 0)" in r.summary() and f"With it the verdict is" in r.summary()
    # a bad run at the deepest depth of a curve that only levels off makes no rise either way
    flat = list(planted_fits(NO_RISE["power law a=0.7"], trials=15, outlier=(24, 0.3)))
    assert not any(r.verdict == "U-shaped" for r in flat) and all(r.outliers[0]["run"] == "bad" for r in flat)


def test_seed_effects_shared_by_all_depths_cancel():
    # issue 20 item 2: each seed fixes the data order at every depth, so seeds share an effect (sd 0.02 here,
    # 4× the run noise) on a shallow rise of 0.03 nats at the deepest depth
    fits = list(planted_fits(two_sided(6, 12), trials=15, seed_sd=0.02))
    assert np.mean([r.verdict == "U-shaped" for r in fits]) >= 0.8
    assert all(r.seed_blocked and r.noise_dof == 14 for r in fits)
    assert np.median([r.noise_sd for r in fits]) < 0.008          # the run noise (0.005), not the seeds' spread
    d, y, s = np.repeat(DEPTHS, 3), np.linspace(2, 1.5, 24), np.tile([0, 1, 2], 8)
    runs = pd.DataFrame({"run_id": [f"r{i}" for i in range(24)], "depth": d, "width": 64, "seed": s,
                         "status": "complete", "val_loss": y + np.random.default_rng(0).normal(0, 0.01, 24)})
    assert fit.critical_depth_from_frame(runs, n_boot=200).seed_blocked


@pytest.mark.parametrize("at", [12, 16])
def test_a_single_high_depth_is_not_a_u(at):
    # issue 20 item 3: flat from D = 6 with +0.02 at one depth only (the deeper ones back on the plateau)
    bump = lambda d: NO_RISE["hinge, flat from 6"](d) + 0.02 * (d == at)
    assert u_rate(bump, trials=30) <= 0.1


def test_d_star_is_a_vertex_only_where_a_parabola_fits_else_the_best_set():
    # issue 20 item 4: a lopsided V (steep left, shallow right) and a minimum flat from 6 to 16 that rises
    # only at 24: what is reported must hold the planted minimiser(s)
    v = lambda d: 1.5 + 0.15 * np.maximum(0, np.log(8 / d)) + 0.03 * np.maximum(0, np.log(d / 8)) / math.log(2)
    # (a parabola's vertex must hold the curve's own minimiser; a set of depths the grid's best depths)
    coarse = dict(depths=[2, 4, 8, 16, 32, 48], seeds=2)
    for curve, grid, vertex, kw in ((v, (8, 8), (8, 8), {}), (two_sided(6, 16), (6, 16), (6, 16), {}),
                                    (RISES["saturating + hinge, D*=8"], (8, 8), (10.32, 10.32), coarse)):
        fits = [r for r in planted_fits(curve, **kw) if r.verdict == "U-shaped"]
        assert len(fits) >= 16
        covered = [r.ci["d_star"][0] <= lo and hi <= r.ci["d_star"][1]
                   for r in fits for lo, hi in [grid if r.d_star_method == "confidence set" else vertex]]
        assert np.mean(covered) >= 0.9, [r.ci["d_star"] for r in fits]
    assert all(r.d_star_method == "confidence set" and r.params["d_star"] in r.best_set for r in fits)  # too coarse
    flat = next(planted_fits(two_sided(6, 16)))
    assert flat.bound.startswith("D* ∈ {6, 8, 12, 16}") and "confidence set" in verdicts.critical_depth_sentence(flat)


def test_u_curve_verdict_d_star_and_its_interval():
    hits = []
    for r in planted_fits(lambda d: 1.5 + 0.06 * (np.log(d) - np.log(6)) ** 2, trials=20):
        assert r.verdict == "U-shaped" and r.d_star_method == "parabola"
        hits.append(r.ci["d_star"][0] <= 6 <= r.ci["d_star"][1])
    assert np.mean(hits) >= 0.85
    assert r.params["d_star"] == pytest.approx(6, rel=0.15)
    r.width, r.paper_log, r.paper_power = 64, 10.1, 6.1
    text = verdicts.critical_depth_text(r)
    assert "U-shaped" in text and "local parabola" in text and "rise test p" in text and "inside" in text


def test_the_plateau_bound_is_calibrated_and_worded_as_what_it_is():
    # issue 20 item 7: a plateau from 8 — the bound D* ≥ d must hold (d ≤ 8) in ≥ 95% of sweeps
    bounds = [r.d_plateau for r in planted_fits(lambda d: 1.5 + 0.1 * np.maximum(0, np.log(8 / d)), trials=60)]
    assert np.mean(np.array(bounds) <= 8) >= 0.95
    # notebook 02's W = 16 sweep (depths 1–16): D = 16 below D = 8 in all three seeds, still falling slowly
    d = np.repeat([1, 2, 3, 4, 6, 8, 12, 16], 3).astype(float)
    s = np.tile([0, 1, 2], 8)
    y = 2.0 + 0.6 * d ** -1.0 - 0.004 * np.log(d) + np.random.default_rng(3).normal(0, 0.004, 24)
    r = fit.fit_critical_depth(d, y, seeds=s, width=16, n_boot=200)
    text = verdicts.critical_depth_sentence(r)
    assert r.verdict == "monotone decreasing" and r.best_depth == 16
    assert "**no rise is detected** up to D = 16" in text and "levels off" not in text
    assert "at the deepest depth" in text and "confidence set" in text and f"D* ≥ {r.d_plateau:g}" in text


def test_negative_verdicts_say_what_rise_they_could_have_detected():
    # issue 20 item 8: the minimum detectable rise (80% power) — a planted rise of that size is found about
    # 80% of the time, and every negative sentence states it
    r = next(planted_fits(NO_RISE["hinge, flat from 6"]))
    assert r.verdict == "monotone decreasing" and 0.003 < r.mdr < 0.03 and r.mdr_from == 6
    assert f"a rise of {r.mdr:.3g} nats or more from D = 6 to D = 24" in verdicts.critical_depth_sentence(r)
    assert "80% power" in r.summary()
    planted = lambda d: NO_RISE["hinge, flat from 6"](d) + r.mdr * np.maximum(0, np.log(d / 6)) / math.log(4)
    found = np.mean([f.p_rise < fit.ALPHA for f in planted_fits(planted, trials=40, rng=1)])
    assert 0.6 <= found <= 0.95


def test_paper_w512_points_are_inconclusive_without_replicates():
    # one run per depth: no seed noise to measure, so nothing is measurable — unless a noise level is stated
    r = fit.fit_critical_depth([2, 8, 16, 24], [3.945, 3.543, 3.435, 3.468], width=512)
    assert r.verdict == "inconclusive" and "one run per depth" in r.reason and "noise_sd" in r.reason
    assert math.isnan(r.mdr) and r.paper_log == pytest.approx(2.43 * math.log(512))
    stated = fit.fit_critical_depth([2, 8, 16, 24], [3.945, 3.543, 3.435, 3.468], width=512, noise_sd=0.002)
    assert stated.noise_source == "stated" and stated.verdict == "U-shaped" and stated.best_set == [16.0]
    assert "noise sd 0.002 per run as stated" in stated.summary()


def test_levelling_off_is_monotone_decreasing_with_a_bound_not_a_d_star():
    rng = np.random.default_rng(1)
    d = np.repeat(DEPTHS, 3)
    y = 1.5 + 0.5 * d ** -0.7 + rng.normal(0, 0.005, len(d))
    r = fit.fit_critical_depth(d, y, width=64, n_boot=300)
    assert r.verdict == "monotone decreasing"
    assert math.isnan(r.params["d_star"]) and r.bound.startswith("D* ≥")
    assert "no critical depth to set beside" in r.summary()
    rising_ = fit.fit_critical_depth(d, 1.5 + 0.05 * np.log(d) + rng.normal(0, 0.005, len(d)), n_boot=300)
    assert rising_.verdict == "monotone increasing" and rising_.bound == "D* ≤ 2"


def test_regime_and_exclusions_are_stated():
    rng = np.random.default_rng(2)
    d = np.repeat(DEPTHS, 3)
    runs = pd.DataFrame({"run_id": [f"r{i}" for i in range(len(d))], "depth": d, "width": 64,
                         "seed": np.tile([0, 1, 2], 8), "status": "complete",
                         "val_loss": 1.5 + 0.5 * d ** -0.7 + rng.normal(0, 0.005, len(d)),
                         "tokens_per_param": 400_000 / (12 * d * 64 ** 2), "final_slope": -0.05})
    runs.loc[5, "status"] = "unstable"
    runs.loc[7, "status"] = "diverged"
    r = fit.critical_depth_from_frame(runs, n_boot=200)
    assert r.n_points == len(d) - 2 and len(r.excluded) == 2
    text = r.summary()
    assert "r5" in text and "unstable" in text and "r7" in text and "diverged" in text
    assert "below the ≈ 20" in text and "still falling" in text
    with pytest.raises(ValueError, match="pass width"):
        fit.critical_depth_from_frame(pd.concat([runs, runs.assign(width=128)]))


def test_a_frame_that_mixes_configurations_is_refused_naming_the_field():
    runs = annealed_sweep({1e6: 6.0}).assign(lr=3e-3)
    two_lrs = pd.concat([runs, runs.assign(lr=6e-3, val_loss=runs.val_loss + 0.01)])
    with pytest.raises(ValueError, match=r"at D = 2 they differ in 'lr' \(0.003, 0.006\)"):
        fit.critical_depth_from_frame(two_lrs, n_boot=200)
    cosine = annealed_sweep({1e6: 6.0, 2e6: 6.0}).assign(schedule="cosine")     # two budgets, not annealed
    with pytest.raises(ValueError, match=r"differ in 'tokens'.*not annealed"):
        fit.critical_depth_from_frame(cosine, n_boot=200)
    with pytest.raises(ValueError, match="2 runs of seed 0 at D = 2"):
        fit.critical_depth_from_frame(pd.concat([runs, runs.iloc[:1]]), n_boot=200)
    own_lr = runs.assign(lr=np.where(runs.depth > 8, 1.5e-3, 3e-3))             # each depth at its own lr: one design
    assert fit.critical_depth_from_frame(own_lr, n_boot=200).n_points == len(runs)
    with pytest.raises(ValueError, match="differ in 'lr'"):
        fit.critical_depth_by_budget(pd.concat([runs, runs.assign(lr=6e-3)]), n_boot=200)


@pytest.mark.parametrize("depths, losses, kw, message", [
    ([2, 4], [3.0, 2.9], {}, "3 distinct depths"),
    ([2, 4, 8], [3.0, 2.9, 2.95], {}, "at least 4 runs"),
    ([2, 4, 8, 16], [3.0, np.nan, 2.9, 2.95], {}, "non-finite"),
    ([2, 4, 8, 16], [3.0, 3.0, 3.0, 3.0], {}, "all equal"),
    ([2, 4, 8, 16], [3.0, 2.9, 2.8, 2.85], dict(noise_sd=-0.01), "noise_sd must be a positive number"),
])
def test_critical_depth_refuses_bad_data(depths, losses, kw, message):
    with pytest.raises(ValueError, match=message):
        fit.fit_critical_depth(depths, losses, **kw)


def annealed_sweep(d_star_by_budget, seeds=3, rng=0):
    rng = np.random.default_rng(rng)
    rows = []
    for T, d_star in d_star_by_budget.items():
        for d in DEPTHS:
            for s in range(seeds):
                loss = 1.5 + 0.08 * (math.log(d) - math.log(d_star)) ** 2 - 0.05 * math.log(T / 1e6)
                rows.append(dict(run_id=f"{T}-{d}-{s}", depth=d, width=64, seed=s, tokens=T, status="complete",
                                 schedule="wsd-sqrt", val_loss=loss + rng.normal(0, 0.004)))
    return pd.DataFrame(rows)


def annealed_pair(d_min=(10.0, 10.0), right=(0.03, 0.06), left=0.1, shape="V", seeds=3, sd=0.005, seed_sd=0.01,
                  rho=0.8, rng=0):
    """Two annealed budgets (1M, 2M tokens) of one sweep, 8 depths 2–24 × `seeds`, each run at 2M a cooldown branch
    of the same trunk as at 1M: the loss falls to its minimum at d_min[k] by `left` per e-fold of depth and rises
    beyond it by right[k] ('V'; 'parabola': left·ln²(D/d_min) and right[k]·ln²). A seed's effect (sd `seed_sd`,
    its data order) is shared by every depth and both budgets; each run's own noise (sd `sd`) correlates at `rho`
    between its two budgets."""
    rng = np.random.default_rng(rng)
    luck, own = rng.normal(0, seed_sd, seeds), rng.normal(0, sd, (len(DEPTHS), seeds))
    power = 1 if shape == "V" else 2
    rows = []
    for k, T in enumerate((1e6, 2e6)):
        u = np.log(DEPTHS / d_min[k])
        curve = 1.6 - 0.05 * k + np.where(u < 0, left * np.abs(u) ** power, right[k] * np.abs(u) ** power)
        noise = own if k == 0 else rho * own + math.sqrt(1 - rho ** 2) * rng.normal(0, sd, own.shape)
        rows += [dict(run_id=f"{T:g}-{d:g}-{s}", depth=d, width=64, seed=s, tokens=T, status="complete",
                      schedule="wsd-sqrt", val_loss=curve[i] + luck[s] + noise[i, s])
                 for i, d in enumerate(DEPTHS) for s in range(seeds)]
    return pd.DataFrame(rows)


def moves_rate(sweeps, **pair):
    """Share of planted annealed pairs (`annealed_pair(**pair)`) in which the best depth is said to move."""
    return np.mean([fit.critical_depth_by_budget(annealed_pair(rng=i, **pair), n_boot=100)[1]["moves"].iloc[0]
                    for i in range(sweeps)])


def test_the_best_depth_moves_only_when_its_minimum_does():
    # the same minimum (D = 10) at both budgets, only the rise beyond it twice as steep: no movement
    assert moves_rate(20) <= 0.05
    by_budget, moves = fit.critical_depth_by_budget(annealed_pair(d_min=(4.0, 12.0), right=(0.03, 0.03)), n_boot=100)
    row = moves.iloc[0]
    assert row["moves"] and row["direction"] == "deeper" and row["best_from"] < 8 < row["best_to"]
    text = fit.verdicts.movement_sentence(by_budget, moves, 64)
    assert f"the best depth **moves deeper**: its confidence set {row['set_from']} lies below D = " in text
    with pytest.raises(ValueError, match="annealed"):
        fit.critical_depth_by_budget(annealed_sweep({1e6: 4.0}).assign(schedule="cosine"))


def test_every_budget_reports_its_best_depth_whatever_its_shape():
    # at 1M tokens the loss rises from the shallowest depth (deeper is worse there), at 2M it has a minimum at 8
    by_budget, moves = fit.critical_depth_by_budget(annealed_pair(d_min=(2.0, 8.0), right=(0.06, 0.06)), n_boot=100)
    first, second = by_budget.iloc[0], by_budget.iloc[1]
    assert first["verdict"] == "monotone increasing" and first["best_depth"] == 2 and first["set_low"] == 2
    assert second["set_low"] <= 8 <= second["set_high"]
    assert moves["moves"].iloc[0] and moves["direction"].iloc[0] == "deeper"
    text = fit.verdicts.movement_sentence(by_budget, moves, 64)
    assert "1,000,000 tokens: **monotone increasing** — deeper is worse at this budget; best depth 2" in text
    assert "no depth is measurably better" not in text


# -- gradient persistence and τ(W) -----------------------------------------------------------------

def planted_norms(depth=12, tau=6.0, noise=0.05, rng=0, repeats=1):
    rng = np.random.default_rng(rng)
    layers = np.arange(depth)
    return np.exp(-(depth - layers) / tau + rng.normal(0, noise, (repeats, depth))).squeeze()


def test_planted_gradient_decay_gives_tau_and_growth_is_a_result():
    r = fit.fit_gradient_persistence(planted_norms(), n_boot=400)
    assert r.verdict == "decays toward the input" and r.ci["tau"][0] < 6.0 < r.ci["tau"][1]
    growing = fit.fit_gradient_persistence(planted_norms(tau=-6.0), n_boot=400)
    assert growing.verdict == "grows toward the input" and growing.params["rate"] < 0


def test_gradient_persistence_averages_the_probe_steps_of_the_store_frame():
    rows = [dict(run_id="a", depth=12, width=64, step=step, layer=layer, name=f"block{layer}", norm=float(v))
            for step in (997, 998, 999, 1000, 1997, 1998, 1999, 2000)
            for layer, v in enumerate(planted_norms(rng=step))]
    r = fit.fit_gradient_persistence(pd.DataFrame(rows), n_boot=300)
    assert r.steps == (997, 998, 999, 1000) and r.n_repeats == 4
    by_width = fit.tau_by_width(pd.DataFrame(rows), n_boot=200)
    assert by_width["rate"].iloc[0] == pytest.approx(1 / 6, rel=0.2)


def test_tau_scaling_keeps_every_run_and_compares_forms_out_of_sample():
    rng = np.random.default_rng(3)
    widths = np.repeat([32, 64, 128, 256, 512, 1024], 3).astype(float)
    rates = 1 / (0.5 * widths ** 0.44) + rng.normal(0, 0.002, len(widths))
    r = fit.fit_tau_scaling(widths, rates)
    assert r.ci["gamma"][0] < 0.44 < r.ci["gamma"][1]
    assert r.preferred == "power law" and r.cv_power < r.cv_log
    narrow = fit.fit_tau_scaling(widths[3:12], rates[3:12])     # widths 64–256
    assert abs(narrow.form_correlation) > 0.99 and "cannot tell the two forms apart" in narrow.summary()
    with_zero = fit.fit_tau_scaling(widths, np.where(widths == 1024, -0.01, rates))
    assert with_zero.n_points == len(widths)          # a non-decaying run is a result, not dropped


def tau_coverage(runs=100, noise=0.05, relative=True, gamma=0.44):
    """Share of planted τ(W) sweeps (widths 32–1024 × 3 runs, rate = 1/(0.5·W^γ) with Gaussian noise,
    relative or absolute) whose 95% interval of γ holds the planted γ, and the intervals' median width."""
    w = np.repeat([32, 64, 128, 256, 512, 1024], 3).astype(float)
    truth = 1 / (0.5 * w ** gamma)
    hits, widths = 0, []
    for i in range(runs):
        e = np.random.default_rng(1000 + i).normal(0, noise, len(w))
        lo, hi = fit.fit_tau_scaling(w, truth * (1 + e) if relative else truth + e).ci["gamma"]
        hits += lo <= gamma <= hi
        widths.append(hi - lo)
    return hits / runs, float(np.median(widths))


def test_tau_scaling_interval_covers_the_planted_exponent():
    coverage, _ = tau_coverage(100)     # noise 5% of the rate: larger in absolute terms at narrow widths
    assert coverage >= 0.9


# -- laws and their health -------------------------------------------------------------------------

TRUE_CHINCHILLA = dict(E=1.7, A=400.0, B=1500.0, alpha=0.34, beta=0.30)


def planted_chinchilla(noise=0.005, rng=0):
    rng = np.random.default_rng(rng)
    N = np.repeat(np.geomspace(1e6, 1e9, 6), 6)
    T = np.tile(np.geomspace(1e8, 1e11, 6), 6)
    return N, T, fit.chinchilla_loss(TRUE_CHINCHILLA, N, T) * np.exp(rng.normal(0, noise, len(N)))


def test_planted_chinchilla_law_is_recovered_and_identified():
    N, T, L = planted_chinchilla()
    r = fit.fit_chinchilla(N, T, L, n_boot=200)
    assert r.identified and not r.health
    lo, hi = r.derived_ci["n_opt_exponent"]
    assert f"N_opt ∝ C^{r.derived['n_opt_exponent']:.3f} (95% CI {fit.fmt_ci((lo, hi))})" in r.summary()
    assert "alpha 0." in r.summary() and "wide, at most 0.5 allowed" in r.summary()
    for k in ("alpha", "beta"):
        assert r.ci[k][0] < TRUE_CHINCHILLA[k] < r.ci[k][1], k
    assert r.params["E"] == pytest.approx(TRUE_CHINCHILLA["E"], rel=0.05)


@pytest.mark.parametrize("what, reason", [("one size", "1 distinct model size"), ("one budget", "1 distinct token count")])
def test_data_that_cannot_identify_the_law_are_flagged(what, reason):
    N, T, L = planted_chinchilla()
    N, T = (np.full_like(N, 1e8), T) if what == "one size" else (N, np.full_like(T, 1e10))
    r = fit.fit_chinchilla(N, T, L, n_boot=100, grid=SMALL_GRID)
    assert not r.identified and any(reason in h for h in r.health)
    assert "Not identified" in r.summary() and "not compared with any paper" in r.summary()


def test_epoch_ai_refit_is_reproduced_and_identified():
    points = fit.read_epoch_points(EPOCH_CSV)
    assert len(points) == 240
    r = fit.fit_chinchilla(points["params"], points["tokens"], points["loss"], n_boot=1000)
    assert r.identified
    for k in ("E", "alpha", "beta"):
        assert r.params[k] == pytest.approx(fit.CHINCHILLA_EPOCH[k], abs=0.01), k
        lo, hi = fit.CHINCHILLA_EPOCH_CI[k]
        assert r.ci[k][0] == pytest.approx(lo, abs=0.01) and r.ci[k][1] == pytest.approx(hi, abs=0.01), k


TRUE_DD = dict(A=20.0, alpha=0.3, B=30.0, delta=0.3, c=0.05, kappa=0.8, gamma=0.44)


def planted_dd(params=TRUE_DD, noise=0.003, rng=0):
    rng = np.random.default_rng(rng)
    D, W, T = (a.ravel().astype(float) for a in np.meshgrid([2, 4, 6, 8, 12, 16, 24, 32], [64, 128, 256], [1e7, 4e7],
                                                          indexing="ij"))
    return D, W, T, fit.depth_width_loss(params, D, W, T) * np.exp(rng.normal(0, noise, len(D)))


def test_planted_depth_width_law_is_recovered_and_identified():
    D, W, T, L = planted_dd()
    r = fit.fit_depth_width_law(D, W, T, L, n_boot=100)
    assert r.identified, r.health
    assert r.params["gamma"] == pytest.approx(0.44, abs=0.05)
    assert r.derived["d_crit"][128.0] == pytest.approx(fit.d_crit(TRUE_DD, 128), rel=0.1)
    # two depths named apart: D_crit where the penalty starts, D* where the loss is lowest (the paper's sense)
    grid = np.exp(np.linspace(np.log(2), np.log(64), 20001))
    for w in (64.0, 128.0, 256.0):
        lowest = grid[np.argmin(fit.depth_width_loss(TRUE_DD, grid, w, 1e7))]
        assert float(fit.laws.law_d_star(TRUE_DD, w)) == pytest.approx(lowest, rel=1e-3)
        assert r.derived["d_star"][w] == pytest.approx(lowest, rel=0.05)
        assert r.derived["d_star"][w] > 1.5 * r.derived["d_crit"][w]
        assert r.derived_ci["d_star"][w][0] <= r.derived["d_star"][w] <= r.derived_ci["d_star"][w][1]
    text = r.summary()
    assert "Penalty onset D_crit: " in text and "loss-minimising depth D* of the law: " in text
    assert "the law's D*, not its penalty onset D_crit — and its 2.43·ln W gives 10.1 at W = 64" in text


@pytest.mark.parametrize("gamma, finding", [(-0.15, "the critical depth **shrinks** with width"),
                                            (0.0, "no measurable change of the critical depth with width")])
def test_a_critical_depth_that_does_not_grow_with_width_is_a_finding(gamma, finding):
    planted = dict(TRUE_DD, gamma=gamma, kappa=fit.d_crit(TRUE_DD, 128) / 128 ** gamma)   # D_crit(128) kept
    r = fit.fit_depth_width_law(*planted_dd(planted, noise=0.01), n_boot=100)
    lo, hi = r.ci["gamma"]
    assert r.identified, r.health
    assert lo <= gamma <= hi and (hi < 0) == (gamma < 0)
    assert finding in r.summary() and f"γ = {r.params['gamma']:.3f} (95% CI {lo:.3f} to {hi:.3f})" in r.summary()


def test_an_exponent_interval_wider_than_half_is_not_identified():
    polished = (np.zeros((1, 2)), np.zeros(1))
    health = lambda alpha_ci: fit.laws._health(
        dict(alpha=0.3, gamma=-0.2), dict(alpha=alpha_ci, gamma=(-0.4, -0.05)), exponents={"alpha": "N"},
        signed={"gamma": "D"}, scales={}, centred=None, polished=polished, loss_min=2.0)
    assert health((0.2, 0.4)) == []                 # a negative γ is no reason: only its interval counts
    assert any("is 0.70 wide, more than 0.5" in h for h in health((0.1, 0.8)))


def test_no_depth_penalty_in_range_is_not_identified():
    D, W, T, L = planted_dd(dict(TRUE_DD, kappa=20.0))       # D_crit ≈ 130–250: beyond every depth tried
    r = fit.fit_depth_width_law(D, W, T, L, n_boot=100)
    assert not r.identified and any("no critical depth shows in range" in h for h in r.health)
    assert "paper's 2.43" not in r.summary()


def test_shape_aware_law_is_compared_on_held_out_shapes():
    D, W, T, L = planted_dd()
    table = fit.compare_laws(D, W, T, L)
    assert table["cv_error"].iloc[1] < table["cv_error"].iloc[0]          # the depth penalty is real here
    assert "improves" in fit.laws.compare_laws_sentence(table)
    # the folds share training shapes, so the paired test's variance is corrected, never the plain t-test's
    per_shape = table.attrs["per_shape"]
    gain = per_shape[table["law"].iloc[0]] - per_shape[table["law"].iloc[1]]
    assert table["p_better"].iloc[1] > stats.ttest_1samp(gain, 0.0, alternative="greater").pvalue
    # No fold starts from an optimum that saw its held-out shape. Here no depth penalty shows except one bump
    # at D = 32, W = 64: a fit that saw it bends D_crit to it, and a fold warm-started there would keep the
    # bend (nothing else pulls D_crit back) and "predict" the bump it was never shown.
    D, W, T, L = (a[planted_dd()[1] <= 128] for a in planted_dd(dict(TRUE_DD, kappa=20.0)))    # 16 shapes: faster
    held = (D == 32) & (W == 64)
    aware = "depth–width law (shape-aware)"
    bumped = {bump: fit.compare_laws(D, W, T, L + np.where(held, bump, 0.0)) for bump in (0.2, 0.4)}
    predicted = {bump: np.exp(t.attrs["predictions"][aware][held]) - L[held] for bump, t in bumped.items()}
    # (the same up to where a batched optimiser stops on the flat ridge of an unseen penalty: ~1e-3 nats)
    assert np.abs(predicted[0.2] - predicted[0.4]).max() < 0.01 and np.abs(predicted[0.2]).max() < 0.05
    assert "does not measurably improve" in fit.laws.compare_laws_sentence(bumped[0.2])


# -- isoFLOP ---------------------------------------------------------------------------------------

def planted_isoflop(budgets=(1e15, 1e16, 1e17), rng=0, noise=0.003, seeds=1):
    """A parabola in ln N per budget with N* = 0.1·C^0.5; 7 sizes over 64×, `seeds` runs each."""
    rng = np.random.default_rng(rng)
    rows = []
    for C in budgets:
        n_opt = 0.1 * C ** 0.5           # N* = 0.1·C^0.5
        for n in n_opt * np.geomspace(1 / 8, 8, 7):
            for _ in range(seeds):
                loss = 2.0 + 0.3 * (np.log(n / n_opt)) ** 2 + rng.normal(0, noise)
                rows.append(dict(flops=C, params=n, loss=loss))
    return pd.DataFrame(rows)


def two_aspect_ratios(df, penalty=0.25):
    """Each run of a planted profile as a shallow-wide shape (D = 2) and a deep-narrow one of about the
    same size (D = 8, 1% larger) that is `penalty` nats worse."""
    wide = df.assign(depth=2, width=np.sqrt(df.params / 24))
    deep = df.assign(depth=8, width=np.sqrt(df.params / 96), params=df.params * 1.01, loss=df.loss + penalty)
    return pd.concat([wide, deep], ignore_index=True)


def lopsided_profile(rng=5, seeds=3, noise=0.002):
    """One budget whose loss rises 25× faster above N = 1e4 than below it: not a parabola."""
    rng = np.random.default_rng(rng)
    sizes = 1e4 * 2.0 ** np.arange(-3, 4)
    return pd.DataFrame([dict(flops=1e15, params=n, loss=2 + 0.02 * max(0, -math.log(n / 1e4))
                              + 0.5 * max(0, math.log(n / 1e4)) + rng.normal(0, noise))
                         for n in sizes for _ in range(seeds)])


def test_planted_isoflop_optima_and_exponents_are_recovered():
    df = planted_isoflop()
    r = fit.fit_isoflop(df.flops, df.params, df.loss, n_boot=300)
    assert r.identified
    assert r.params["params_exponent"] == pytest.approx(0.5, abs=0.03)
    assert r.params["tokens_exponent"] == pytest.approx(0.5, abs=0.03)
    assert (r.optima["params_status"] == "ok").all()
    lo, hi = r.ci["params_exponent"]
    assert f"CI {fit.fmt_ci((lo, hi))}, {hi - lo:.2f} wide)" in r.summary()
    two = planted_isoflop(budgets=(1e15, 1.3e15), noise=0.02, rng=0)        # two close budgets: a loose exponent
    loose = fit.fit_isoflop(two.flops, two.params, two.loss, n_boot=300)
    lo, hi = loose.ci["params_exponent"]
    assert 0.5 < hi - lo < 1 and not loose.identified and any("more than 0.5" in h for h in loose.health)


def test_isoflop_profile_follows_the_best_shape_of_each_size():
    """Two aspect ratios per size, the deeper one 0.25 nats worse: one parabola through both zigzags
    (the 05 cpu run did this), the frontier recovers the planted optimum and names the best shape."""
    df = planted_isoflop()
    both = two_aspect_ratios(df)
    r = fit.fit_isoflop(both.flops, both.params, both.loss, depths=both.depth, widths=both.width, n_boot=300)
    assert r.identified and (r.optima["params_status"] == "ok").all()
    assert r.params["params_exponent"] == pytest.approx(0.5, abs=0.03)
    assert (r.optima["best_depth"] == 2).all() and (r.optima["best_share"] == 1).all()
    assert r.data["frontier"].sum() == len(df)
    assert "Best shape" in r.summary() and "not graded" in r.summary()
    mixed = fit.fit_isoflop(both.flops, both.params, both.loss, n_boot=300)     # no shapes given: no frontier
    assert not (mixed.optima["params_status"] == "ok").all()


def test_isoflop_lopsided_minimum_falls_back_to_the_best_size_tried():
    """A profile far steeper on one side than the other: the local parabola's vertex lands between
    sizes with a seed-noise interval that excludes the best size tried; the optimum reported is then
    that size, bracketed by its neighbours, and the status says why."""
    df = lopsided_profile()
    r = fit.fit_isoflop(df.flops, df.params, df.loss, n_boot=300)
    row = r.optima.iloc[0]
    assert "misses the lowest-loss size" in row["params_status"]
    assert row["opt_params"] == pytest.approx(1e4) and (row["opt_params_low"], row["opt_params_high"]) == \
        pytest.approx((5e3, 2e4))


def isoflop_fallback_rate(make, trials=100):
    """Share of planted single-budget profiles whose optimum falls back to the best size tried."""
    hits = 0
    for i in range(trials):
        df = make(i)
        status = fit.fit_isoflop(df.flops, df.params, df.loss, n_boot=100).optima["params_status"].iloc[0]
        hits += "misses the lowest-loss size" in status
    return hits / trials


def test_isoflop_fallback_is_calibrated_on_planted_profiles():
    """The lack-of-fit fallback fires on ≤ 5% of true parabolas (3 seeds per size) and on ≥ 80% of
    lopsided profiles, at two noise levels."""
    for noise in (0.003, 0.01):
        assert isoflop_fallback_rate(lambda i: planted_isoflop((1e15,), rng=i, noise=noise, seeds=3)) <= 0.05
        assert isoflop_fallback_rate(lambda i: lopsided_profile(rng=i, noise=noise)) >= 0.8


def test_isoflop_unbracketed_budget_is_reported_not_imputed():
    df = planted_isoflop(budgets=(1e15, 1e16))
    df = df[~((df.flops == 1e16) & (df.params > 0.1 * 1e16 ** 0.5 * 0.9))]     # sizes stop below the optimum
    r = fit.fit_isoflop(df.flops, df.params, df.loss, n_boot=300)
    assert "not bracketed" in r.optima["params_status"].iloc[1]
    assert not r.identified and "params_exponent" not in r.params
    assert "Not identified" in r.summary()


# -- comparisons over seeds ------------------------------------------------------------------------

def test_compare_losses_detects_a_planted_gap_paired_and_not():
    rng = np.random.default_rng(4)
    seed_luck = rng.normal(0, 0.05, 5)
    a = 2.0 + seed_luck + rng.normal(0, 0.002, 5)
    b = 2.02 + seed_luck + rng.normal(0, 0.002, 5)
    paired = fit.compare_losses(a, b, seeds_a=range(5), seeds_b=range(5))
    assert paired.paired and paired.verdict == "first lower" and paired.ci["gap"][0] > 0
    welch = fit.compare_losses(a, b)            # without pairing the seeds' luck hides the gap
    assert not welch.paired and welch.verdict == "no clear difference"
    with pytest.raises(ValueError, match="at least 2 runs"):
        fit.compare_losses([2.0], [2.1, 2.2])


def test_check_monotone_on_planted_trends():
    rng = np.random.default_rng(5)
    x = np.repeat([32, 64, 128, 256], 3).astype(float)
    falling = 2.0 - 0.1 * np.log(x) + rng.normal(0, 0.005, len(x))
    assert fit.check_monotone(x, falling).verdict == "monotone, every step significant"
    bump = falling + np.where(x == 128, 0.2, 0.0)
    r = fit.check_monotone(x, bump)
    assert r.verdict == "not monotone" and "64 to 128" in r.reason and "excludes 0" in r.reason
