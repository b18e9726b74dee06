"""Charts: one per fitter, built from small fits and written as PNG and SVG offline (vl-convert).
≈ 15 s (the first PNG export starts the Vega engine)."""
import math

import numpy as np
import pandas as pd
import pytest

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
    out["tau_scaling"] = fit.fit_tau_scaling(widths, 1 / (0.5 * widths ** 0.44) * np.exp(rng.normal(0, 0.03, 5)), n_boot=100)
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
    assert_written(charts.save_chart(chart, tmp_path / "sub" / kind))


def test_critical_depth_by_budget_chart(tmp_path):
    by_budget = pd.DataFrame({"tokens": [1e6, 4e6, 1.6e7], "verdict": ["monotone decreasing", "U-shaped", "inconclusive"],
                              "d_star": [np.nan, 9.0, np.nan], "low": [np.nan, 7.0, np.nan], "high": [np.nan, 12.0, np.nan],
                              "bound": ["D* ≥ 8", "", ""], "bound_depth": [8.0, None, None]})
    chart = charts.critical_depth_by_budget_chart(by_budget, width=512)
    assert_written(charts.save_chart(chart, tmp_path / "by_budget"))
    with pytest.raises(ValueError, match="no budget"):
        charts.critical_depth_by_budget_chart(by_budget.iloc[[2]])


def test_chart_refuses_the_wrong_result(results):
    with pytest.raises(ValueError, match="critical_depth"):
        charts.critical_depth_chart(results["tau_scaling"])


def test_paper_reference_is_drawn(results):
    spec = charts.critical_depth_chart(results["critical_depth"]).to_dict()
    text = str(spec)
    assert "2.43·ln W" in text and "(W/512)^0.44" in text
    assert "paper: tau ~ W^0.44" in str(charts.tau_scaling_chart(results["tau_scaling"]).to_dict())
    assert "paper: C^0.12" in str(charts.isoflop_chart(results["isoflop"]).to_dict())
