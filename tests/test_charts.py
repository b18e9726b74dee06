"""Charts: one per fitter, built from small fits and written as PNG and SVG offline (vl-convert), and
the sweep and teaching charts the notebooks save, each checked as a reader sees it (tests/chart_marks.py):
visible marks, a mark for every legend entry, nothing on the plot's edge, a title on every axis.
≈ 20 s (the first PNG export starts the Vega engine)."""
import math
import re

import altair as alt
import numpy as np
import pandas as pd
import pytest
from chart_marks import chart_problems, invisible_marks, legend_problems

from dwlib import charts, fit

SMALL_GRID = dict(a=np.array([0.0, 5.0]), b=np.array([5.0, 10.0]), e=np.array([0.0]),
                  alpha=np.array([0.5]), beta=np.array([0.5]))


def assert_written(paths):
    png, svg = paths
    assert png.suffix == ".png" and svg.suffix == ".svg"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000
    text = svg.read_text()
    assert "<svg" in text[:500] and len(text) > 2000


@pytest.fixture(scope="module")
def results():
    rng = np.random.default_rng(0)
    out = {}
    depths = np.repeat([2, 4, 6, 8, 12, 16, 32], 3)
    losses = 3 + 0.06 * (np.log(depths) - math.log(10)) ** 2 + rng.normal(0, 0.005, len(depths))
    out["critical_depth"] = fit.fit_critical_depth(depths, losses, seeds=np.tile([0, 1, 2], 7), width=256, n_boot=200)
    assert out["critical_depth"].verdict == "U-shaped"
    layers = np.arange(16)
    out["gradient_persistence"] = fit.fit_gradient_persistence(
        np.exp(-(16 - layers) / 5.0 + rng.normal(0, 0.05, (3, 16))), n_boot=200)
    widths = np.array([64, 128, 256, 512, 1024])
    out["tau_scaling"] = fit.fit_tau_scaling(widths, 1 / (0.5 * widths ** 0.44) * np.exp(rng.normal(0, 0.03, 5)))
    N = np.exp(rng.uniform(np.log(1e7), np.log(1e9), 40))
    T = np.exp(rng.uniform(np.log(1e9), np.log(1e11), 40))
    L = 1.8 + 400 / N ** 0.34 + 1500 / T ** 0.3
    out["chinchilla"] = fit.fit_chinchilla(N, T, L * np.exp(rng.normal(0, 0.005, 40)), n_boot=100, grid=SMALL_GRID)
    truth = dict(A=40.0, alpha=0.3, B=60.0, delta=0.3, c=0.15, kappa=1.2, gamma=0.4)
    D, W, Tk = (np.array(v, float) for v in zip(*[(d, w, t) for w in (64, 128, 256) for d in (2, 4, 8, 16, 32)
                                                    for t in (3e7, 3e8)]))
    losses = fit.depth_width_loss(truth, D, W, Tk) * np.exp(rng.normal(0, 0.003, len(D)))
    law = fit.fit_depth_width_law(D, W, Tk, losses, n_boot=30, n_polish=16)
    out["depth_width_law"] = law
    rows = []
    for C in (1e15, 1e16, 1e17):
        for k in np.linspace(-1.5, 1.5, 6):
            n = 2 * C ** 0.45 * math.exp(k)
            d = (n / (12 * 32 ** 2)) ** (1 / 3)
            rows.append(dict(flops=C, params=n, depth=d, width=32 * d, loss=4 - 0.2 * math.log10(C) + 0.05 * k * k))
    iso = pd.DataFrame(rows)
    out["isoflop"] = fit.fit_isoflop(iso.flops, iso.params, iso.loss + rng.normal(0, 0.002, len(iso)),
                                     depths=iso.depth, widths=iso.width, n_boot=200)
    return out


@pytest.mark.parametrize("kind", list(charts.FIT_CHARTS))
def test_every_fit_has_a_chart_written_as_png_and_svg(results, kind, tmp_path):
    chart = charts.fit_chart(results[kind])
    png, svg = charts.save_chart(chart, tmp_path / "sub" / kind)
    assert_written((png, svg))
    assert chart_problems(svg.read_text()) == []


def test_critical_depth_by_budget_chart(tmp_path):
    # as 02 at the cpu preset found it at W = 16: inconclusive at the smallest budget, then no rise, the best
    # depth in 8–16; and a mix with a U-shape, a rise and a budget not fitted
    by_budget = pd.DataFrame({"tokens": [499_712, 1_000_448, 1_999_872],
                              "verdict": ["inconclusive", "monotone decreasing", "monotone decreasing"],
                              "best_depth": [12.0, 16.0, 16.0], "set_low": [4.0, 8.0, 8.0], "set_high": [16.0] * 3,
                              "d_star": [np.nan] * 3, "low": [np.nan] * 3, "high": [np.nan] * 3,
                              "d_star_method": [""] * 3, "bound": ["", "D* ≥ 8", "D* ≥ 8"]})
    png, svg = charts.save_chart(charts.critical_depth_by_budget_chart(by_budget, width=16), tmp_path / "by_budget")
    assert_written((png, svg))
    text = svg.read_text()
    assert chart_problems(text) == [] and "500k" in text and re.search(r"<text[^>]*>8</text>", text)
    mixed = pd.DataFrame({"tokens": [1e6, 4e6, 1.6e7, 3.2e7],
                          "verdict": ["monotone increasing", "U-shaped", "monotone decreasing", "not fitted: too few"],
                          "best_depth": [2.0, 8.0, 16.0, np.nan], "set_low": [2.0, 6.0, 8.0, np.nan],
                          "set_high": [3.0, 12.0, 24.0, np.nan], "d_star": [np.nan, 9.0, np.nan, np.nan],
                          "low": [np.nan, 7.0, np.nan, np.nan], "high": [np.nan, 12.0, np.nan, np.nan],
                          "d_star_method": ["", "parabola", "", ""], "bound": ["D* ≤ 3", "D* = 9", "D* ≥ 8", ""]})
    assert chart_problems(charts.to_svg(charts.critical_depth_by_budget_chart(mixed, width=512))) == []
    with pytest.raises(ValueError, match="no budget"):
        charts.critical_depth_by_budget_chart(mixed.iloc[[3]])
    from test_fit import annealed_pair                       # the fitter's own frame draws too
    fitted, _ = fit.critical_depth_by_budget(annealed_pair(d_min=(2.0, 8.0), right=(0.06, 0.06)), n_boot=100)
    assert chart_problems(charts.to_svg(charts.critical_depth_by_budget_chart(fitted, width=64))) == []


def test_chart_refuses_the_wrong_result(results):
    with pytest.raises(ValueError, match="critical_depth"):
        charts.critical_depth_chart(results["tau_scaling"])


def test_paper_reference_is_drawn(results):
    spec = charts.critical_depth_chart(results["critical_depth"]).to_dict()
    text = str(spec)
    assert "2.43·ln W" in text and "(W/512)^0.44" in text
    assert "paper: tau ~ W^0.44" in str(charts.tau_scaling_chart(results["tau_scaling"]).to_dict())
    assert "Chinchilla: C^0.5" in str(charts.isoflop_chart(results["isoflop"]).to_dict())


# ---------------------------------------------------------------------------------------------
# Every chart draws visible marks (tests/chart_marks.py measures each mark in the SVG)
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sweep_frames():
    """A small store-like sweep: depths 2–16 at widths 32 and 64, two seeds, with curves and grad norms."""
    rng = np.random.default_rng(1)
    runs, curves, norms = [], [], []
    for width in (32, 64):
        for depth in (2, 4, 8, 16):
            for seed in (0, 1):
                run_id = f"r{width}-{depth}-{seed}"
                n = 12 * depth * width ** 2
                loss = 3 + 0.05 * (math.log(depth) - 1.5) ** 2 - 0.1 * math.log2(width / 32) + rng.normal(0, 0.01)
                runs.append(dict(run_id=run_id, status="complete", depth=depth, width=width, seed=seed, share=1,
                                 params=n + 2 * 256 * width, non_embedding_params=n, tokens=400_000,
                                 flops=6 * n * 400_000 * (1 + depth % 3), val_loss=loss))
                for tokens in (51_200, 102_400, 204_800, 409_600):
                    curves.append(dict(run_id=run_id, depth=depth, width=width, seed=seed, tokens=tokens,
                                       val_loss=loss + 2e4 / tokens))
                for layer in range(-1, depth + 1):
                    norms.append(dict(run_id=run_id, depth=depth, width=width, seed=seed, step=1000, layer=layer,
                                      norm=math.exp(-(depth - layer) / 4)))
    return pd.DataFrame(runs), pd.DataFrame(curves), pd.DataFrame(norms)


def _sweep_charts(runs, curves, norms):
    from dwlib.config import ModelConfig
    pair = runs[(runs["width"] == 32) & runs["depth"].isin([2, 8])]
    speed = pd.DataFrame({"depth": [2, 8], "width": [64, 32], "latency_ms": [3.0, 5.0], "latency_ms_sd": [0.1, 0.2],
                          "context": [64, 64], "device": ["cpu", "cpu"], "tokens_per_second": [9e4, 5e4],
                          "batch_size": [16, 16]})
    live = [dict(label=label, tokens=t, seconds=t / speed, val_loss=3 + 1e4 / t)
            for label, speed in (("D=8 W=32", 5e4), ("D=2 W=64", 9e4)) for t in (12_800, 25_600, 51_200)]
    return {
        "loss_vs_depth": charts.loss_vs_chart(runs, "depth"),
        "loss_vs_flops": charts.loss_vs_chart(runs, "flops", color="depth"),
        "one_seed": charts.loss_vs_chart(runs[runs["seed"] == 0], "width", color="depth"),   # no zero-length bars
        "loss_curves": charts.curves_chart(curves),
        "grad_norm_profiles": charts.grad_norm_profiles_chart(norms),
        "loss_gap": charts.loss_gap_chart(pair, dict(gap=0.01, ci=(-0.02, 0.04))),
        "inference_speed": charts.latency_chart(speed),
        "budget_breakdown": charts.budget_breakdown_chart(ModelConfig(depth=16, width=512, context=1024,
                                                                      vocab_size=50257)),
        "gradient_persistence": charts.persistence_profile_chart(24, 8.0),
        "race": charts.live_curves_chart(live),
        "isoflop_points": charts.isoflop_points_chart(runs),
        "predicted_loss": charts.predicted_loss_chart(runs.assign(trained_here=runs["depth"] == 16,
                                                                  predicted=runs["val_loss"] + 0.01)),
    }


# glyphs vl-convert's bundled sans-serif font lacks: a title holding one is drawn in a serif fallback
MISSING_GLYPHS = set("∝‖∇◆●▲")


def test_sweep_and_teaching_charts_show_what_they_promise(sweep_frames):
    for name, chart in _sweep_charts(*sweep_frames).items():
        svg = charts.to_svg(chart)
        assert chart_problems(svg) == [], name
        assert not MISSING_GLYPHS & set("".join(re.findall(r"<text[^>]*>([^<]*)</text>", svg))), name


def test_visibility_check_catches_bars_on_a_log_axis():
    # the gradient-persistence chart as it was: bars on a log axis start at 0, so each has zero height
    frame = pd.DataFrame({"layer": np.arange(1, 25), "relative_norm": np.exp(-(24 - np.arange(1, 25)) / 8.0)})
    bars = alt.Chart(frame).mark_bar().encode(
        x="layer:O", y=alt.Y("relative_norm:Q", scale=alt.Scale(type="log", domain=[0.05, 1])))
    assert invisible_marks(charts.to_svg(bars)) == ["mark-rect: 0 of 24 items are visible",
                                                    "no visible mark at all (1 mark layers)"]
    assert invisible_marks(charts.to_svg(bars.mark_bar().encode(y2=alt.datum(0.05)))) == []   # from the floor


def test_loss_vs_chart_titles_ticks_and_margins(sweep_frames):
    runs = sweep_frames[0]
    spec = charts.loss_vs_chart(runs, "depth").to_dict()
    layers = spec["layer"]
    assert {layer["encoding"]["y"]["title"] for layer in layers} == {"val loss"}   # not "val loss, low"
    x = layers[0]["encoding"]["x"]
    assert x["axis"]["values"] == [2, 4, 8, 16] and x["axis"]["format"] == "d"    # integer depths only
    lo, hi = x["scale"]["domain"]
    assert lo < 2 and hi > 16                                                       # nothing on the edges
    assert "over 2 seeds (±12.7 SE)" in str(spec["title"])
    three = pd.concat([runs, runs[runs["seed"] == 0].assign(seed=2)])
    assert "over 3 seeds'" in str(charts.loss_vs_chart(three, "depth").to_dict()["title"])


def test_count_axes_use_si_units(sweep_frames):
    x = charts.curves_chart(sweep_frames[1]).to_dict()["layer"][0]["encoding"]["x"]
    assert x["axis"]["format"] == "~s" and x["axis"]["labelOverlap"] == "greedy"


def test_coord_check_grid_fits_a_1400px_window():
    rows = [dict(parametrization=p, width=w, depth=d, site=site, layer=0, step=step,
                 delta=0.01 * step * (w / 16) ** (p == "sp"), scale=1.0)
            for p in ("sp", "mup", "completep") for w in (16, 32, 64, 128, 256) for d in (2,)
            for site in ("embedding", "residual", "attn_logits", "logits") for step in (1, 2, 3, 4)]
    svg = charts.to_svg(charts.coord_check_chart(pd.DataFrame(rows)))
    width = float(re.search(r'<svg[^>]* width="([\d.]+)"', svg).group(1))
    # a cell's output area in a 1400 px JupyterLab window with the file browser open: 968 px (measured)
    assert width <= 960, width
    assert chart_problems(svg) == []


# ---------------------------------------------------------------------------------------------
# What a reader sees (issue 21): each check catches its defect, and the charts that had it pass now
# ---------------------------------------------------------------------------------------------

def test_checks_catch_a_missing_legend_mark_an_edge_mark_and_an_untitled_axis():
    from chart_marks import edge_problems, untitled_axes
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [1.0, 2.0, 3.0], "kind": ["a", "a", "a"]})
    x, y = alt.X("x:Q", title="x"), alt.Y("y:Q", title="y")
    legend_only = alt.Chart(frame).mark_point().encode(
        x=x, y=y, color=alt.Color("kind:N", scale=alt.Scale(domain=["a", "b"])))
    assert legend_problems(charts.to_svg(legend_only)) == [
        "legend entry 'b': no visible mark in its style (colour #f58518)"]
    on_edge = alt.Chart(frame).mark_point().encode(   # the theme pads scales: this one is cut to its data
        x=alt.X("x:Q", title="x", scale=alt.Scale(domain=[0, 4])),
        y=alt.Y("y:Q", title="y", scale=alt.Scale(domain=[1, 3], padding=0)))
    assert [p.split("'")[-1] for p in edge_problems(charts.to_svg(on_edge))] == [" on or beyond the bottom edge",
                                                                                " on or beyond the top edge"]
    untitled = alt.Chart(frame).mark_point().encode(x=alt.X("x:Q", title=None), y=y)
    assert untitled_axes(charts.to_svg(untitled)) == ["axis 1 of 2 has no title"]
    unstroked = alt.Chart(frame).mark_line().encode(   # the colour field is missing: "missing: undefined"
        x=x, y=y, color=alt.Color("missing:N", scale=alt.Scale(domain=["a"], range=["red"])))
    assert invisible_marks(charts.to_svg(unstroked)) == ["mark-line: 0 of 1 items are visible",
                                                         "no visible mark at all (1 mark layers)"]
    assert chart_problems(charts.to_svg(legend_only.encode(color="kind:N").properties(width=200))) == []
    missing = alt.Chart(frame).mark_line().encode(x=x, y=y, strokeDash="share:O")    # 06's curves had no share
    assert legend_problems(charts.to_svg(missing)) == ["legend entry 'undefined': the legend's field has no value"]


def test_critical_depth_chart_draws_every_line_of_the_fit_in_its_legend_style(results):
    r = results["critical_depth"]
    svg = charts.to_svg(charts.critical_depth_chart(r))
    assert chart_problems(svg) == []                  # each legend entry (law, set, reference) has its mark
    lines = re.findall(r'aria-roledescription="line mark"[^>]*stroke="(#[0-9a-f]+)"', svg)
    assert len(set(lines)) == r.curve["law"].nunique() >= 2, (lines, r.curve["law"].unique())   # one line per law


def _lr_runs():
    rows = []
    for depth in (4, 16):
        for lr in (1.5e-3, 3e-3, 6e-3, 1.2e-2):
            for seed in (10, 11):
                loss = 2.0 + 0.1 * (math.log(lr / 4e-3)) ** 2 + (1.5 if lr == 1.5e-3 and depth == 16 else 0)
                rows.append(dict(parametrization="sp", depth=depth, width=16, lr=lr, seed=seed, status="complete",
                                 val_loss=loss + 0.001 * seed))
    return pd.DataFrame(rows)


def test_lr_curves_chart_draws_the_best_lr_it_promises_and_keeps_points_inside():
    from dwlib import transfer
    runs = _lr_runs()
    best = transfer.best_lr(runs, by=["depth"], n_boot=100)           # as notebook 02 calls it: no parametrization
    svg = charts.to_svg(charts.lr_curves_chart(runs, best, color="depth"))
    assert chart_problems(svg) == []                                  # the off-scale point is left out, not cut
    assert "best lr with its interval" in svg                         # a legend entry: its diamonds are drawn
    assert "grid's best rate (what is trained)" in svg                # and the rate a check goes on to train
    assert "standard parametrisation" in svg                          # the panel says what "sp" is
    assert "not drawn" in svg                                         # and the chart says what it left out
    bare = charts.to_svg(charts.lr_curves_chart(runs, color="depth"))
    assert "best lr" not in bare and chart_problems(bare) == []       # no promise of marks it does not draw


def test_curves_chart_tells_widths_apart_and_shows_the_cooldown():
    rows = []
    for width in (16, 32):
        for depth in (2, 8):
            for seed in (0, 1):
                for tokens in range(20_000, 400_001, 20_000):    # a wsd cooldown over the last 20%
                    rows.append(dict(run_id=f"{width}-{depth}-{seed}", width=width, depth=depth, seed=seed,
                                     tokens=tokens, lr=3e-3 if tokens <= 320_000 else 3e-4,
                                     val_loss=3 - 0.1 * math.log2(width * depth) + 2e4 / tokens))
    svg = charts.to_svg(charts.curves_chart(pd.DataFrame(rows), color="depth", facet="width", log_x=False))
    assert chart_problems(svg) == []
    # lines drawn alike (same panel, colour and dash) belong to one width
    items = re.findall(r'<g class="mark-group role-scope[^"]*"[^>]*>|aria-label="([^"]*width: (\d+)[^"]*)" '
                       r'role="graphics-symbol" aria-roledescription="line mark"[^>]*stroke="([^"]+)"', svg)
    panel, seen = -1, {}
    for _, width, stroke in items:
        if not width:
            panel += 1
            continue
        seen.setdefault((panel, stroke), set()).add(width)
    assert seen and all(len(w) == 1 for w in seen.values()), seen
    # the cooldown is shaded and spans a visible part of each panel (a log axis squeezes it to ~5%)
    bands = [float(w) for w in re.findall(r'aria-roledescription="rect mark"[^>]*d="M[-\d.]+,[-\d.]+h([\d.]+)', svg)]
    assert len(bands) == 2 and min(bands) >= 0.15 * 260, bands


def test_error_bars_mean_the_same_thing_on_every_chart(results):
    """±1 SE in critical_depth and 95% t-intervals in loss_vs_depth on the same runs, unlabelled: now both
    are 95% intervals of the depth means, and each chart says how they are computed (critical_depth: as its
    tests compare them, seed effects removed when seeds are a block)."""
    from scipy import stats
    r = results["critical_depth"]
    runs = r.data.assign(val_loss=r.data["loss"], status="complete", width=256)

    def bars(chart):
        spec = chart.to_dict()
        layer = next(lay for lay in spec["layer"] if "errorbar" in str(lay["mark"]))
        return {row["depth"]: (row["low"], row["high"]) for row in spec["datasets"][layer["data"]["name"]]}

    fitted, plain = charts.critical_depth_chart(r), charts.loss_vs_chart(runs, "depth", color=None)
    t = stats.t.ppf(0.975, r.noise_dof)
    for row in r.means.itertuples():
        assert bars(fitted)[row.depth] == pytest.approx((row.mean - t * row.se, row.mean + t * row.se))
    assert len(bars(plain)) == len(bars(fitted))
    assert "bars: 95% interval of each depth's mean, seed effects removed" in str(fitted.to_dict()["title"])
    assert "bars: 95% t-interval of the mean over 3 seeds" in str(plain.to_dict()["title"])
