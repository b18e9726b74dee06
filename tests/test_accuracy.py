"""fit.accuracy on planted accuracies: the seed-paired comparison, the loss-vs-accuracy ranking and the
depth each hop count needs (bench/accuracy_calibration.py measures the rates at scale, from the same
generator)."""
import numpy as np
import pandas as pd
import pytest

from dwlib import charts, fit

SCORED = 256 * 63          # the khop validation set's answer positions at its defaults (val=256, length=63)
SHAPES = [(1, 128), (2, 96), (4, 64), (8, 48), (16, 32)]


def planted_runs(accuracy: dict, loss: dict | None = None, *, seeds=(0, 1, 2), seed_sd=0.02, run_sd=0.01,
                 loss_seed_sd=0.01, loss_sd=0.005, scored=SCORED, tails="normal", outlier=None, rng=None,
                 hops=(1, 2, 4, 8)) -> pd.DataFrame:
    """A runs frame like the store's for planted shapes: `accuracy` {(depth, width): true accuracy, or
    {k: accuracy} per hop count}; each run's accuracy is the truth + its seed's effect (shared by every
    shape, sd `seed_sd`) + its own (sd `run_sd`, Student-t with 3 dof when `tails='t3'`), scored as a
    binomial over `scored` positions split evenly across hop counts; `loss` likewise (lower is better).
    `outlier` (shape, seed, shift) moves one run's accuracy by `shift`."""
    rng = rng or np.random.default_rng(0)
    seed_acc = {s: rng.normal(0, seed_sd) for s in seeds}
    seed_loss = {s: rng.normal(0, loss_seed_sd) for s in seeds}
    noise = (lambda: rng.standard_t(3) / np.sqrt(3)) if tails == "t3" else rng.standard_normal
    rows = []
    for shape, truth in accuracy.items():
        per_hop = truth if isinstance(truth, dict) else {k: truth for k in hops}
        for s in seeds:
            shift = seed_acc[s] + run_sd * noise()
            if outlier and outlier[0] == shape and outlier[1] == s:
                shift += outlier[2]
            n = scored // len(per_hop)
            by = {str(k): dict(accuracy=float(rng.binomial(n, np.clip(p + shift, 0, 1)) / n), scored=n)
                  for k, p in per_hop.items()}
            true_loss = (loss or {}).get(shape, 2.0)
            rows.append(dict(run_id=len(rows), run_key=f"k{len(rows)}", status="complete", depth=shape[0],
                             width=shape[1], seed=s, params=100_000, non_embedding_params=200_000, tokens=1_000_000,
                             val_loss=true_loss + seed_loss[s] + loss_sd * rng.standard_normal(),
                             task_accuracy=float(np.mean([v["accuracy"] for v in by.values()])),
                             task_scored=n * len(by), task_accuracy_by_hops=by))
    return pd.DataFrame(rows)


def _false_rate(trials, make, test):
    rng = np.random.default_rng(1)
    return np.mean([test(make(rng)) for _ in range(trials)])


def test_comparison_finds_a_planted_gain_and_not_a_shared_seed_effect():
    runs = planted_runs({(1, 128): 0.40, (16, 32): 0.50}, rng=np.random.default_rng(3))
    r = fit.compare_accuracy(runs, (1, 128), (16, 32))
    assert r.verdict == "second higher" and r.paired and r.ci["gap"][0] < 0.10 < r.ci["gap"][1]
    assert "deeper shape reasons better" in fit.verdicts.accuracy_sentence(r, arm="parameters")
    # a seed effect of 0.05 shared by both shapes cancels in the pairs: no false gain in 100 sweeps (rate ≤ 0.10; bench: 0.05)
    false = _false_rate(100, lambda g: planted_runs({(1, 128): 0.5, (16, 32): 0.5}, seed_sd=0.05, rng=g),
                        lambda f: fit.compare_accuracy(f, (1, 128), (16, 32)).verdict != "no clear difference")
    assert false <= 0.10


def test_comparison_never_narrower_than_the_validation_sets_binomial_noise():
    # three seeds whose differences agree exactly (+0.01 each): the spread over seeds is 0, but 200 scored
    # positions per run cannot resolve 0.01 — the binomial floor keeps the verdict open
    runs = planted_runs({(1, 128): 0.5, (2, 96): 0.5}, seed_sd=0, run_sd=0, scored=200, hops=(1,))
    runs["task_accuracy"] = [0.50, 0.52, 0.51, 0.51, 0.53, 0.52]
    r = fit.compare_accuracy(runs, (1, 128), (2, 96))
    assert r.params["se"] == pytest.approx(np.sqrt(np.mean([p * (1 - p) for p in (0.50, 0.52, 0.51)]) / 200 / 3
                                                   + np.mean([p * (1 - p) for p in (0.51, 0.53, 0.52)]) / 200 / 3))
    assert r.verdict == "no clear difference" and "binomial" in fit.verdicts.accuracy_sentence(r, arm="parameters")


def test_negative_verdict_states_what_it_could_detect_and_refuses_single_runs():
    runs = planted_runs({(1, 128): 0.5, (16, 32): 0.5}, rng=np.random.default_rng(2))
    r = fit.compare_accuracy(runs, (1, 128), (16, 32))
    if r.verdict == "no clear difference":
        assert f"{r.params['detectable']:.3f} or more would have been found" in fit.verdicts.accuracy_sentence(r, arm="flops")
    assert 0.01 < r.params["detectable"] < 0.3
    with pytest.raises(ValueError, match="D=4 W=64"):
        fit.compare_accuracy(runs, (1, 128), (4, 64))
    one_hop = fit.compare_accuracy(runs, (1, 128), (16, 32), hops=8)
    assert one_hop.params["hops"] == 8 and one_hop.params["se"] > r.params["se"] * 0.9   # a quarter of the positions
    with pytest.raises(ValueError, match="hop count 3"):
        fit.compare_accuracy(runs, (1, 128), (16, 32), hops=3)


def test_explorer_runs_stay_out_of_the_statistics():
    runs = planted_runs({(1, 128): 0.4, (16, 32): 0.5}, rng=np.random.default_rng(4))
    extra = runs.iloc[[0]].assign(run_key="here", seed=7, task_accuracy=0.99, trained_here=True)
    both = pd.concat([runs.assign(trained_here=False), extra], ignore_index=True)
    assert fit.compare_accuracy(both, (1, 128), (16, 32)).params == fit.compare_accuracy(runs, (1, 128), (16, 32)).params
    assert fit.accuracy_table(both)["runs"].tolist() == [3, 3]


def test_ranking_agreement_agrees_disagrees_and_says_unclear():
    rising = {s: 0.3 + 0.08 * np.log2(s[0]) for s in SHAPES}
    falling_loss = {s: 2.0 - 0.02 * np.log2(s[0]) for s in SHAPES}
    rising_loss = {s: 2.0 + 0.02 * np.log2(s[0]) for s in SHAPES}
    agree = fit.ranking_agreement(planted_runs(rising, falling_loss, rng=np.random.default_rng(1)), n_boot=500)
    assert agree.verdict == "agree" and agree.params["tau"] > 0.5 and agree.ci["tau"][0] > 0
    hidden = fit.ranking_agreement(planted_runs(rising, rising_loss, rng=np.random.default_rng(1)), n_boot=500)
    assert hidden.verdict == "disagree" and hidden.params["opposed"] >= 1 and hidden.params["tau"] < 0
    assert "The loss hides what the task shows" in fit.verdicts.agreement_sentence(hidden, arm="parameters")
    flat = fit.ranking_agreement(planted_runs({s: 0.5 for s in SHAPES}, rng=np.random.default_rng(1)), n_boot=500)
    assert flat.verdict == "unclear" and flat.ci["tau"][0] < 0 < flat.ci["tau"][1]
    with pytest.raises(ValueError, match="at least 3 shapes"):
        fit.ranking_agreement(planted_runs({s: 0.5 for s in SHAPES[:2]}), n_boot=500)


def test_depth_for_accuracy_reads_the_shallowest_depth_per_hop_count():
    # planted: depth d reaches k hops (accuracy 0.95) when d ≥ 2·log2(k) + 1, else 0.3; k = 16 by no depth
    truth = {s: {k: 0.95 if s[0] >= 2 * np.log2(k) + 1 and k < 16 else 0.3 for k in (1, 2, 4, 8, 16)} for s in SHAPES}
    result = fit.depth_for_accuracy(planted_runs(truth, rng=np.random.default_rng(2), hops=(1, 2, 4, 8, 16)), 0.9)
    table = result.data.set_index("hops")
    assert table["depth"].tolist()[:4] == [1, 4, 8, 8] and np.isnan(table.loc[16, "depth"])
    assert result.identified and 1.5 < result.params["slope"] < 3.5
    sentence = fit.verdicts.depth_for_accuracy_sentence(result)
    assert "k = 16: not reached" in sentence and "layers per doubling of k" in sentence
    with pytest.raises(ValueError, match="target"):
        fit.depth_for_accuracy(planted_runs(truth), 1.5)


def test_accuracy_charts_draw_what_their_legends_list(tmp_path):
    truth = {s: {k: 0.95 if s[0] >= 2 * np.log2(k) + 1 else 0.3 for k in (1, 2, 4, 8)} for s in SHAPES}
    runs = planted_runs(truth, rng=np.random.default_rng(2))
    reached = fit.depth_for_accuracy(runs, 0.9)
    spec = charts.depth_for_accuracy_chart(reached).to_dict()
    shapes = [layer["encoding"]["shape"]["scale"]["domain"] for layer in spec["layer"] if "shape" in layer.get("encoding", {})]
    assert shapes == [["shallowest depth reaching it"]]        # every hop count reached: no "not reached" entry
    for chart, name in [(charts.accuracy_vs_depth(runs), "avd"), (charts.accuracy_by_hops(runs), "abh")]:
        png, svg = charts.save_chart(chart, tmp_path / name)
        assert png.stat().st_size > 5_000 and "accuracy" in svg.read_text()
