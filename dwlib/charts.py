"""Altair charts for fits and results, and an offline PNG/SVG export.

Sections: export · fits (one chart per fitter in `dwlib.fit`: fitted points, curve, interval band and
the published value compared with) · sweep results and teaching charts · learning-rate transfer.

Charts take a `fit.Fit` result (or the frame a helper returned) and read its `.data`, `.curve`,
`.samples`, `.params`, `.ci`; they never refit. Colours: fits blue, the paper's claims red (dashed),
other published references grey. Titles avoid glyphs the bundled fonts lack (∝, ‖, ∇), which would
otherwise switch the whole title to a fallback font. Axes of sizes, depths and FLOPs are logarithmic.
"""
from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd

from . import fit
from .config import breakdown, paper_critical_depth, paper_critical_depth_power


@alt.theme.register("dwlib", enable=True)
def _theme():
    """altair's default look with room at the right edge: vl-convert sizes a chart with narrower text
    than a browser's sans-serif, so in JupyterLab legends at the right edge were clipped ("D=2 W=12")."""
    return alt.theme.ThemeConfig(config={"view": {"continuousWidth": 300, "continuousHeight": 300},
                                         "padding": {"left": 5, "top": 5, "right": 36, "bottom": 5},
                                         "scale": {"continuousPadding": 10}})


FIT_COLOR = "#1f77b4"
PAPER_COLOR = "#d62728"
REFERENCE_COLOR = "#7f7f7f"
WIDTH, HEIGHT = 420, 300


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------

def save_chart(chart: alt.TopLevelMixin, path_stem) -> tuple[Path, Path]:
    """Write `chart` as `<path_stem>.png` and `<path_stem>.svg` (vl-convert: no browser, no network)
    and return both paths. Parent folders are created."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png = stem.with_name(stem.name + ".png")
    svg = stem.with_name(stem.name + ".svg")
    chart.save(str(png), scale_factor=2)
    chart.save(str(svg))
    return png, svg


def _log():
    return alt.Scale(type="log", nice=False)


def _padded(values, log: bool = True, pad: float = 0.08) -> alt.Scale:
    """A scale whose domain reaches a little past the data (8% of its span on each side), so points and
    error bars at the ends are not cut by the plot's edge."""
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    if log:
        span = math.log(hi / lo) if hi > lo else math.log(2)
        return alt.Scale(type="log", nice=False, domain=[lo * math.exp(-pad * span), hi * math.exp(pad * span)])
    span = (hi - lo) or abs(hi) or 1.0
    return alt.Scale(zero=False, nice=False, domain=[lo - pad * span, hi + pad * span])


def _integer_axis(values, title=None) -> alt.Axis:
    """Ticks at the integers present (depths, widths): a log axis would otherwise label 1.5 or crowd 3–7;
    labels that would overlap are dropped."""
    return alt.Axis(values=sorted({int(v) for v in values}), format="d", labelOverlap="greedy", title=title)


def _count_axis(title=None) -> alt.Axis:
    """Token or step counts in SI units (60k, 1.2M) with few labels, so a log axis's labels never run
    together ("60,00070,000")."""
    return alt.Axis(format="~s", labelOverlap="greedy", labelSeparation=8, tickCount=6, title=title)


def _bars_caption(counts, before: str = "") -> str | None:
    """What the error bars of a chart of seed means are (`_mean_band`: one convention for every such chart),
    stated on it; with 2 seeds, that the interval is ±12.7 standard errors (very wide)."""
    n = sorted({int(c) for c in counts if c > 1})
    if not n:
        return before or None
    seeds = f"{n[0]}" if len(n) == 1 else f"{n[0]}–{n[-1]}"
    text = f"bars: 95% t-interval of the mean over {seeds} seeds" + (" (±12.7 SE)" if n[0] == 2 else "")
    return "; ".join(t for t in (before, text) if t)


def _drawable(frame: pd.DataFrame, by: str, columns=("low", "high")) -> pd.DataFrame:
    """The rows of `frame` a band or line can draw: finite `columns`, in series (`by`) of two or more
    points. A NaN band or a one-point line would be an invisible mark."""
    frame = frame.dropna(subset=list(columns))
    return frame[frame.groupby(by)[list(columns)[0]].transform("size") > 1]


def _titled(text: str, subtitle: str | list | None):
    """A title with a subtitle, both from the plot's left edge: centred, a subtitle wider than the plot was
    cut off at the left in a browser (its fonts are wider than vl-convert's)."""
    return alt.TitleParams(text, subtitle=subtitle, anchor="start") if subtitle else text


DASHES = [[6, 3], [2, 2], [8, 3, 2, 3]]


def _styled_lines(labels, colors, dashes, title=None, field="label"):
    """Colour and dash encodings for lines named by `field` (`labels`: its values, in legend order, repeats
    allowed), merged into one legend."""
    labels = list(dict.fromkeys(labels))
    return dict(color=alt.Color(f"{field}:N", title=title, scale=alt.Scale(domain=labels, range=colors)),
                strokeDash=alt.StrokeDash(f"{field}:N", title=title, scale=alt.Scale(domain=labels, range=dashes)))


def _legend_rules(frame, title="reference", dashes=DASHES, **position):
    """Reference rules with a legend: `frame` has the position column(s) (`position`: the x or y encoding)
    and a `label` column. The paper's claims are red, other references grey; each label its own dashes."""
    labels = list(dict.fromkeys(frame["label"]))
    colors = [PAPER_COLOR if "paper" in lab.lower() else REFERENCE_COLOR for lab in labels]
    return alt.Chart(frame).mark_rule(strokeWidth=2).encode(
        **_styled_lines(labels, colors, dashes[:len(labels)], title=title), **position)


# ---------------------------------------------------------------------------------------------
# Fits
# ---------------------------------------------------------------------------------------------

def critical_depth_chart(result: fit.Fit) -> alt.LayerChart:
    """Loss vs depth (log axis), as the U-test reads it: the runs (faint; outliers it flagged and left out
    as red crosses), each depth's mean with its 95% interval — seed effects removed when seeds are a block,
    the means and noise the tests compare (`result.means`) — blue where the depth is in the best depth's
    confidence set, the rise test's two lines at its strongest break (and the local parabola when D* is its
    vertex), D* with its interval when the verdict is U-shaped, and the paper's 2.43·ln W and W^0.44
    critical depths as dashed rules when the width is known. The subtitle says what the bars are and,
    for a negative verdict, the smallest rise the sweep could have detected."""
    _expect(result, "critical_depth")
    from scipy import stats as _stats
    data, curve, means = result.data.copy(), result.curve, result.means.copy()
    ok = means["se"].notna() & (means["n"] > 1)
    t = _stats.t.ppf(0.975, result.noise_dof) if math.isfinite(result.noise_dof) else 1.959963984540054
    means["low"], means["high"] = means["mean"] - t * means["se"], means["mean"] + t * means["se"]
    means["set"] = np.where(means["in_set"], "in the best depth's 95% set", "measurably worse")
    lo, hi = result.ci["d_star"]
    refs = (pd.DataFrame({"depth": [result.paper_log, result.paper_power],
                          "label": ["paper: 2.43·ln W", "paper: 15.2·(W/512)^0.44"]})
            if result.width is not None else None)
    xs = [*data["depth"], lo, hi, *([] if refs is None else refs["depth"])]
    xs = [v for v in xs if np.isfinite(v) and v > 0]
    x = alt.X("depth:Q", scale=_padded(xs), axis=_integer_axis(data["depth"], "depth D (blocks)"))
    y = partial(alt.Y, scale=alt.Scale(zero=False), title="validation loss")
    laws = list(dict.fromkeys(curve["law"]))
    palette = {"up to": (REFERENCE_COLOR, [4, 2]), "from": (FIT_COLOR, [1, 0]), "parabola": ("#2ca02c", [1, 0])}
    styles = [next(v for k, v in palette.items() if k in law) for law in laws]
    lines = alt.Chart(curve).mark_line().encode(x=x, y=y("loss:Q"), **_styled_lines(
        laws, [c for c, _ in styles], [d for _, d in styles], title="rise test", field="law"))
    kept, flagged = data[~data["outlier"]], data[data["outlier"]].assign(what="outlier, left out of the verdict")
    runs = alt.Chart(kept).mark_circle(color="black", opacity=0.3, size=25).encode(
        x=x, y=y("loss:Q"), tooltip=list(data.columns))
    kinds = list(dict.fromkeys(sorted(means["set"], reverse=True)))
    in_set = partial(alt.Color, "set:N", title="depth mean, 95% interval", scale=alt.Scale(
        domain=kinds, range=[FIT_COLOR if v.startswith("in") else "black" for v in kinds]))
    bars = alt.Chart(means[ok]).mark_errorbar().encode(x=x, y=y("low:Q"), y2="high:Q", color=in_set(legend=None))
    dots = alt.Chart(means).mark_point(filled=True, size=55, opacity=1).encode(
        x=x, y=y("mean:Q"), color=in_set(), tooltip=["depth", "n", "mean", "se", "in_set"])
    layers = [lines, runs, bars, dots]
    if len(flagged):
        layers.append(alt.Chart(flagged).mark_point(color=PAPER_COLOR, size=80, strokeWidth=2).encode(
            x=x, y=y("loss:Q"), tooltip=list(data.columns), shape=alt.Shape(
                "what:N", title=None, scale=alt.Scale(domain=[flagged["what"].iloc[0]], range=["cross"]))))
    if result.verdict == "U-shaped":
        star = pd.DataFrame({"depth": [result.params["d_star"]], "low": [lo], "high": [hi]})
        if hi > lo:
            layers.insert(0, alt.Chart(star).mark_rect(opacity=0.12, color=FIT_COLOR).encode(x="low:Q", x2="high:Q"))
        layers.append(alt.Chart(star).mark_rule(color=FIT_COLOR, strokeWidth=2).encode(x=x))
        what = "vertex of a local parabola" if result.d_star_method == "parabola" else "best depth's confidence set"
        title = f"D* = {fit.fmt(result.params['d_star'])} ({fit.fmt_ci(result.ci['d_star'])}, {what}): U-shaped"
    else:
        title = f"{result.verdict}" + (f": {result.bound}" if result.bound else "")
    if refs is not None:
        layers.append(_legend_rules(refs, x=x))
        title = f"W = {result.width:g}: " + title
    blocked = "seed effects removed" if result.seed_blocked else "over seeds"
    subtitle = [f"points: runs; bars: 95% interval of each depth's mean, {blocked} (what the tests compare)"]
    if result.verdict != "U-shaped" and math.isfinite(result.mdr):
        subtitle.append(f"a rise of {result.mdr:.2g} nats from D = {fit.fmt(result.mdr_from)} to the deepest would "
                        "have been detected (80% power)")
    return alt.layer(*layers).resolve_scale(color="independent", strokeDash="independent").properties(
        width=WIDTH, height=HEIGHT, title=_titled(title, subtitle))


BUDGET_MARKERS = {"U-shaped": ("U-shaped", "circle"), "monotone decreasing": ("no rise found", "triangle-up"),
                  "monotone increasing": ("rises from the shallowest", "triangle-down"),
                  "inconclusive": ("inconclusive", "square")}


def critical_depth_by_budget_chart(by_budget: pd.DataFrame, *, width=None) -> alt.LayerChart:
    """The best depth across annealed budgets (`fit.critical_depth_by_budget`), every budget on the x axis:
    the best depth (marker by verdict) with its confidence set as a blue bar, D*'s interval (grey, with
    ticks) where a parabola fits, a grey dotted rule at a budget with no best depth (not fitted); the
    paper's critical depth 2.43·ln W (a loss minimum) as a dashed rule when `width` is given. The legend
    lists only what is drawn."""
    frame = by_budget.copy()
    for c in ("best_depth", "set_low", "set_high", "low", "high"):
        frame[c] = frame[c] if c in frame else np.nan
    drawn, open_ = frame.dropna(subset=["best_depth"]), frame[frame["best_depth"].isna()]
    if drawn.empty:
        raise ValueError("no budget has a best depth to draw (see the verdict column)")
    kinds = [v for v in BUDGET_MARKERS if v in set(drawn["verdict"])]
    drawn = drawn.assign(marker=drawn["verdict"].map(lambda v: BUDGET_MARKERS[v][0]))
    ref = [paper_critical_depth(width)] if width is not None else []
    depths = [v for c in ("best_depth", "set_low", "set_high", "low", "high") for v in drawn[c].dropna()] + ref
    ticks = sorted({round(v) for v in depths if v >= 1})
    x = alt.X("tokens:Q", scale=_padded(frame["tokens"]),   # ticks at the budgets, rounded to whole steps
              axis=alt.Axis(values=sorted(frame["tokens"]), format=".3~s", title="training tokens T (annealed)"))
    y = partial(alt.Y, scale=_padded(depths), axis=alt.Axis(values=ticks, format="d", title="best depth"))
    spread = drawn[drawn["set_high"] > drawn["set_low"]]
    layers = [alt.Chart(spread).mark_errorbar(color=FIT_COLOR, thickness=2).encode(x=x, y=y("set_low:Q"), y2="set_high:Q"),
              alt.Chart(drawn).mark_point(size=80, filled=False, strokeWidth=2, opacity=1).encode(
                  x=x, y=y("best_depth:Q"), color=alt.value(FIT_COLOR),
                  shape=alt.Shape("marker:N", title="verdict", scale=alt.Scale(
                      domain=[BUDGET_MARKERS[k][0] for k in kinds], range=[BUDGET_MARKERS[k][1] for k in kinds])),
                  tooltip=[c for c in ("tokens", "verdict", "best_depth", "set_low", "set_high", "d_star", "bound")
                           if c in drawn])]
    vertex = drawn[drawn.get("d_star_method", pd.Series("", index=drawn.index)) == "parabola"]
    if len(vertex):       # D* where a parabola fits: its interval
        layers.append(alt.Chart(vertex).mark_errorbar(color=REFERENCE_COLOR, ticks=True).encode(
            x=x, y=y("low:Q"), y2="high:Q"))
    if len(open_):
        rules = pd.DataFrame({"tokens": open_["tokens"], "label": "no best depth (not fitted)"})
        layers.append(_legend_rules(rules, x=x, title="or", dashes=[[1, 3]]))
    if width is not None:
        refs = pd.DataFrame({"depth": ref, "label": ["paper: 2.43·ln W"]})
        layers.append(_legend_rules(refs, y=y("depth:Q")))
    title = (f"W = {width:g}: " if width is not None else "") + "best depth across annealed budgets"
    subtitle = "blue bars: the best depth's 95% confidence set" + ("; grey: D*'s interval where a parabola fits"
                                                                    if len(vertex) else "")
    return alt.layer(*layers).resolve_scale(color="independent", strokeDash="independent").properties(
        width=WIDTH, height=HEIGHT, title=_titled(title, subtitle))


def gradient_persistence_chart(result: fit.Fit) -> alt.LayerChart:
    """Per-block gradient norm (log axis) vs layer: measured norms (range over repeats when given),
    the fitted exponential with its band, τ in the title."""
    _expect(result, "gradient_persistence")
    data, curve = result.data, result.curve
    x = alt.X("layer:Q", title="block ℓ (0 = nearest the input)")
    y = partial(alt.Y, scale=_log(), title="gradient norm of block ℓ")
    band = alt.Chart(curve).mark_area(opacity=0.2, color=FIT_COLOR).encode(x=x, y=y("low:Q"), y2="high:Q")
    line = alt.Chart(curve).mark_line(color=FIT_COLOR).encode(x=x, y=y("norm:Q"))
    points = alt.Chart(data).mark_point(color="black", filled=True).encode(
        x=x, y=y("norm:Q"), tooltip=list(data.columns))
    layers = [band, line, points]
    if "low" in data.columns:
        layers.append(alt.Chart(data).mark_errorbar(color="black").encode(x=x, y=y("low:Q"), y2="high:Q"))
    tau, ci = result.params["tau"], result.ci["tau"]
    title = f"τ = {fit.fmt(tau)} layers ({fit.fmt_ci(ci)}), R² = {result.r2:.3f}: {result.verdict}"
    if result.verdict != "decays toward the input":    # no decay: no persistence length to name
        lo, hi = result.ci["rate"]
        title = f"decay rate 1/τ = {result.params['rate']:+.3f} per layer ({lo:+.3f} to {hi:+.3f}): {result.verdict}"
    return alt.layer(*layers).properties(width=WIDTH, height=HEIGHT, title=title)


def tau_scaling_chart(result: fit.Fit) -> alt.LayerChart:
    """Decay rate 1/τ vs width (log x): every run's rate (any sign), the power-law fit (τ ∝ W^γ), the
    logarithmic fit, and the paper's slope 0.44 drawn through the fitted rate at the geometric-mean width."""
    _expect(result, "tau_scaling")
    data, curve = result.data, result.curve
    w_mid = float(np.exp(np.log(data["width"]).mean()))
    rate_mid = result.params["k"] * w_mid ** -result.params["gamma"]
    rates = {f"fit: tau ~ W^{result.params['gamma']:.2f}": 1 / curve["tau"]}    # label -> rate per width
    if "tau_log_form" in curve:
        rates["fit: tau = a + b ln W"] = 1 / curve["tau_log_form"]
    rates[f"paper: tau ~ W^{fit.PAPER_TAU_EXPONENT}"] = rate_mid * (curve["width"] / w_mid) ** -fit.PAPER_TAU_EXPONENT
    lines = pd.concat([pd.DataFrame({"width": curve["width"], "rate": r, "label": lab}) for lab, r in rates.items()])
    labels = list(rates)
    x = alt.X("width:Q", scale=_log(), title="width W (d_model)")
    y = alt.Y("rate:Q", scale=alt.Scale(zero=False), title="decay rate 1/τ (per layer)")
    colors = [PAPER_COLOR if lab.startswith("paper") else "#ff7f0e" if "ln W" in lab else FIT_COLOR for lab in labels]
    dashes = [[6, 3] if lab.startswith("paper") else [4, 2] if "ln W" in lab else [1, 0] for lab in labels]
    line = alt.Chart(lines).mark_line().encode(x=x, y=y, **_styled_lines(labels, colors, dashes))
    points = alt.Chart(data).mark_point(color="black", filled=True, size=50).encode(
        x=x, y=y, tooltip=list(data.columns))
    title = (f"tau(W): gamma = {result.params['gamma']:.3f} ({fit.fmt_ci(result.ci['gamma'])}); "
             + ("widths cannot tell power from log" if abs(result.form_correlation) > 0.99 else
                f"held-out widths prefer the {result.preferred}"))
    return alt.layer(line, points).properties(width=WIDTH, height=HEIGHT, title=title)


def chinchilla_chart(result: fit.Fit) -> alt.HConcatChart:
    """Left: loss vs model size (log), points coloured by training FLOPs, the fitted law along isoFLOP
    lines with bootstrap bands. Right: the exponents α, β with their intervals beside Hoffmann et al.'s
    and Epoch AI's published values."""
    _expect(result, "chinchilla")
    data = result.data.assign(log10_flops=lambda f: np.log10(f["flops"]))
    curve = result.curve.assign(log10_flops=lambda f: np.log10(f["flops"]))
    x = alt.X("params:Q", scale=_log(), title="parameters N", axis=alt.Axis(format="~s"))
    curve = _drawable(curve[curve["loss"] <= data["loss"].max() * 1.05], "flops", ["loss"])   # where data are
    y = partial(alt.Y, scale=_log(), title="loss")
    color = alt.Color("log10_flops:Q", title="log10 FLOPs", scale=alt.Scale(scheme="viridis"))
    band = alt.Chart(_drawable(curve, "flops")).mark_area(opacity=0.2).encode(
        x=x, y=y("low:Q"), y2="high:Q", color=color, detail="flops:Q")
    line = alt.Chart(curve).mark_line().encode(x=x, y=y("loss:Q"), color=color, detail="flops:Q")
    points = alt.Chart(data).mark_circle(size=25, opacity=0.8).encode(
        x=x, y=y("loss:Q"), color=color, tooltip=["params", "tokens", "flops", "loss", "fitted"])
    left = alt.layer(band, line, points).properties(width=WIDTH, height=HEIGHT,
                                                    title=f"L = E + A/N^α + B/T^β (R² {result.r2:.3f})")
    rows = []
    for name in ("alpha", "beta"):
        lo, hi = result.ci[name]
        rows.append(dict(parameter=name, source="this fit", value=result.params[name], low=lo, high=hi))
        rows.append(dict(parameter=name, source="Hoffmann et al. 2022", value=fit.CHINCHILLA_HOFFMANN[name],
                         low=math.nan, high=math.nan))
        elo, ehi = fit.CHINCHILLA_EPOCH_CI[name]
        rows.append(dict(parameter=name, source="Epoch AI 2024", value=fit.CHINCHILLA_EPOCH[name], low=elo, high=ehi))
    params = pd.DataFrame(rows)
    sources = ["this fit", "Epoch AI 2024", "Hoffmann et al. 2022"]
    src_color = alt.Color("source:N", scale=alt.Scale(domain=sources, range=[FIT_COLOR, REFERENCE_COLOR, PAPER_COLOR]))
    y = alt.Y("source:N", sort=sources, title="source")
    panels = []
    for name, symbol in (("alpha", "α"), ("beta", "β")):
        part = params[params["parameter"] == name]
        ticks = alt.Chart(part).mark_point(filled=True, size=70).encode(
            x=alt.X("value:Q", scale=alt.Scale(zero=False), title=symbol), y=y, color=src_color,
            tooltip=["parameter", "source", "value", "low", "high"])
        bars = alt.Chart(part.dropna()).mark_rule(strokeWidth=2).encode(x="low:Q", x2="high:Q", y=y, color=src_color)
        panels.append(alt.layer(bars, ticks).properties(width=220, height=80, title=f"{symbol} (95% CI)"))
    right = alt.vconcat(*panels)
    return alt.hconcat(left, right).resolve_scale(color="independent")


def depth_width_law_chart(result: fit.Fit) -> alt.HConcatChart:
    """Left: loss vs depth (log) coloured by width — observed runs (points) and the fitted law at each
    run's own (D, W, T) (lines with bootstrap bands). Right: two depths of the fitted law with their bootstrap
    bands — D_crit(W), where its penalty starts, and D*(W), where its loss is lowest — against the paper's
    2.43·ln W and its W^0.44 law (a loss minimum, so D* is the one to compare)."""
    _expect(result, "depth_width_law")
    data = result.data.copy()
    # one line per width, or per (width, tokens) when a width has several runs at one depth
    repeats = data.groupby(["width", "depth"]).size().max() > 1
    data["series"] = data["width"].astype(str)
    if repeats:
        data["series"] += " @T=" + data["tokens"].map(lambda t: f"{t:.3g}")
    data = data.sort_values(["series", "depth"])
    x = alt.X("depth:Q", scale=_padded(data["depth"]), axis=_integer_axis(data["depth"], "depth D"))
    y = partial(alt.Y, scale=alt.Scale(zero=False), title="loss")
    color = alt.Color("width:O", title="width W", scale=alt.Scale(scheme="viridis"))
    layers = []
    if "low" in data.columns:
        layers.append(alt.Chart(_drawable(data, "series")).mark_area(opacity=0.15).encode(
            x=x, y=y("low:Q"), y2="high:Q", color=color, detail="series:N"))
    layers.append(alt.Chart(_drawable(data, "series", ["fitted"])).mark_line().encode(
        x=x, y=y("fitted:Q"), color=color, detail="series:N"))
    layers.append(alt.Chart(data).mark_point(filled=True).encode(
        x=x, y=y("loss:Q"), color=color, tooltip=list(result.data.columns)))
    left = alt.layer(*layers).properties(width=WIDTH, height=HEIGHT, title=f"fitted law, R² = {result.r2:.3f}")

    form = result.law
    widths = np.exp(np.linspace(np.log(data["width"].min()), np.log(data["width"].max()), 60))
    depths = {"law: D_crit (penalty onset)": fit.d_crit, "law: D* (loss minimum)": fit.laws.law_d_star}
    lines = pd.concat([pd.DataFrame({"width": widths, "depth": f(result.params, widths, form), "label": name})
                       for name, f in depths.items()], ignore_index=True)
    if result.samples is not None and len(result.samples):
        cols = {k: result.samples[k].to_numpy()[:, None] for k in result.samples.columns}
        q = 100 * (1 - result.level) / 2
        lines["low"], lines["high"] = np.concatenate(
            [np.percentile(f(cols, widths[None], form), [q, 100 - q], axis=0) for f in depths.values()], axis=1)
    lines = pd.concat([lines, pd.DataFrame({"width": widths, "depth": [paper_critical_depth(w) for w in widths],
                                            "label": "paper: 2.43·ln W"}),
                       pd.DataFrame({"width": widths, "depth": [paper_critical_depth_power(w) for w in widths],
                                     "label": "paper: 15.2·(W/512)^0.44"})], ignore_index=True)
    styled = _styled_lines(lines["label"], [FIT_COLOR, "#9467bd", PAPER_COLOR, PAPER_COLOR], [[1, 0], [1, 0]] + DASHES[:2],
                           title="compare the paper with D*")
    xw = alt.X("width:Q", scale=_log(), title="width W")
    yd = partial(alt.Y, scale=_log(), title="depth")
    right_layers = []
    if "low" in lines.columns:
        right_layers.append(alt.Chart(lines.dropna(subset=["low", "high"])).mark_area(opacity=0.2).encode(
            x=xw, y=yd("low:Q"), y2="high:Q", color=styled["color"]))
    right_layers.append(alt.Chart(lines).mark_line().encode(x=xw, y=yd("depth:Q"), **styled))
    form_txt = f"κ·W^γ, γ = {result.params['gamma']:.2f}" if form == "power" else "κ·ln W"
    right = alt.layer(*right_layers).properties(width=300, height=HEIGHT,
                                                title=f"D_crit = {form_txt} (onset) and D* (minimum)")
    return alt.hconcat(left, right).resolve_scale(color="independent", strokeDash="independent")


def isoflop_chart(result: fit.Fit) -> alt.HConcatChart:
    """Left: loss vs parameters per FLOP budget with the fitted parabolas (in ln N); filled points are
    each size's best shape, open ones the other shapes of that size. Right: the bracketed optima against
    C with their intervals, and — only when the exponent is identified — the power law and Chinchilla's
    C^0.5 for reference."""
    _expect(result, "isoflop")
    data = result.data.copy()
    optima = result.optima
    color = alt.Color("budget:O", title="budget (FLOPs)", scale=alt.Scale(scheme="viridis"),
                      legend=alt.Legend(format=".2e"))
    x = alt.X("params:Q", scale=_log(), title="parameters N", axis=alt.Axis(format="~s"))
    y = alt.Y("loss:Q", scale=alt.Scale(zero=False), title="loss")
    on_frontier = data["frontier"] if "frontier" in data else pd.Series(True, index=data.index)
    # Filled: the best shape of each size (the profile is fitted to these); open: other shapes of that size.
    layers = [alt.Chart(data[on_frontier]).mark_point(filled=True).encode(x=x, y=y, color=color,
                                                                          tooltip=list(data.columns))]
    if not on_frontier.all():
        layers.append(alt.Chart(data[~on_frontier]).mark_point(filled=False, opacity=0.6).encode(
            x=x, y=y, color=color, tooltip=list(data.columns)))
    if result.curve is not None:
        curve = result.curve[result.curve["coordinate"] == "params"].rename(columns={"x": "params", "flops": "budget"})
        layers.append(alt.Chart(curve).mark_line().encode(x=x, y=y, color=color))
    left = alt.layer(*layers).properties(width=WIDTH, height=HEIGHT, title="isoFLOP profiles")

    pts = optima.dropna(subset=["opt_params"]) if "opt_params" in optima else optima.iloc[:0]
    if pts.empty:
        return left
    pts = pd.DataFrame({"flops": pts["flops"], "value": pts["opt_params"], "low": pts["opt_params_low"],
                        "high": pts["opt_params_high"]})
    xc = alt.X("flops:Q", scale=_padded(pts["flops"]), title="compute C (FLOPs)", axis=alt.Axis(format=".0e"))
    n_scale = _padded(pd.concat([pts["low"], pts["high"], pts["value"]]))
    y_n = partial(alt.Y, scale=n_scale, title="optimal size N*")
    yv = y_n("value:Q", axis=alt.Axis(format="~s"))
    layers = [alt.Chart(pts).mark_errorbar(color="black").encode(x=xc, y=y_n("low:Q"), y2="high:Q"),
              alt.Chart(pts).mark_point(color="black", filled=True).encode(x=xc, y=yv, tooltip=list(pts.columns))]
    title = "N* per budget: exponent not identified"
    if result.identified:       # a line only where the exponent is an estimate
        k, a = result.params["params_coef"], result.params["params_exponent"]
        cs = np.exp(np.linspace(np.log(pts["flops"].min()), np.log(pts["flops"].max()), 40))
        c_mid = float(np.exp(np.log(cs).mean()))
        lines = pd.concat([pd.DataFrame({"flops": cs, "value": k * cs ** a, "label": f"fit: C^{a:.3f}"}),
                           pd.DataFrame({"flops": cs, "value": k * c_mid ** a * (cs / c_mid) ** 0.5,
                                         "label": "Chinchilla: C^0.5"})])
        layers.insert(0, alt.Chart(lines).mark_line().encode(
            x=xc, y=yv, **_styled_lines(lines["label"], [FIT_COLOR, PAPER_COLOR], [[1, 0], [6, 3]])))
        title = f"N* ~ C^{a:.3f} ({fit.fmt_ci(result.ci['params_exponent'])})"
    right = alt.layer(*layers).properties(width=300, height=HEIGHT, title=title)
    return alt.hconcat(left, right).resolve_scale(color="independent", strokeDash="independent")


FIT_CHARTS = {
    "critical_depth": critical_depth_chart,
    "gradient_persistence": gradient_persistence_chart,
    "tau_scaling": tau_scaling_chart,
    "chinchilla": chinchilla_chart,
    "depth_width_law": depth_width_law_chart,
    "isoflop": isoflop_chart,
}


def fit_chart(result: fit.Fit):
    """The chart that goes with any fit result (dispatch on `result.kind`)."""
    if result.kind not in FIT_CHARTS:
        raise ValueError(f"no chart for a {result.kind!r} result; known: {', '.join(FIT_CHARTS)}")
    return FIT_CHARTS[result.kind](result)


def _expect(result, kind):
    if not isinstance(result, fit.Fit) or result.kind != kind:
        got = result.kind if isinstance(result, fit.Fit) else type(result).__name__
        raise ValueError(f"expected a {kind!r} fit result, got {got!r}")


# ---------------------------------------------------------------------------------------------
# Sweep results and teaching charts (used by the notebooks and dwlib.widgets)
# ---------------------------------------------------------------------------------------------
# These take the store's frames (runs, curves, grad norms) or plain numbers, never a fit result.

def _complete_runs(runs: pd.DataFrame, loss: str) -> pd.DataFrame:
    """The complete runs with a finite `loss` (diverged runs left out); ValueError when none is left."""
    frame = runs[(runs["status"] == "complete") & np.isfinite(runs[loss].astype(float))].copy()
    if frame.empty:
        raise ValueError(f"no complete runs with a finite {loss} to chart")
    return frame


def _mean_band(runs, x, loss, by=()):
    """Mean, standard error and 95% t-interval of `loss` per x (and per `by` columns), over seeds."""
    from scipy import stats as _stats
    g = runs.groupby([x, *by], dropna=False)[loss].agg(["mean", "std", "count"]).reset_index()
    g["sem"] = (g["std"] / np.sqrt(g["count"])).fillna(0.0)
    t = np.where(g["count"] > 1, _stats.t.ppf(0.975, np.maximum(g["count"] - 1, 1)), 0.0)
    g["low"], g["high"] = g["mean"] - t * g["sem"], g["mean"] + t * g["sem"]
    return g


def loss_vs_chart(runs: pd.DataFrame, x: str = "depth", *, loss: str = "val_loss", color: str | None = "width",
                  title: str | None = None, log_x: bool = True) -> alt.LayerChart:
    """Final loss against a shape column (depth, width, params…): every run faint, the mean over seeds
    with its 95% t-interval as an error bar, one line per `color` value. Diverged runs are left out. Runs
    marked `trained_here` (an explorer's Train button: one seed of a shape) are drawn apart as black
    diamonds and kept out of the means."""
    frame = _complete_runs(runs, loss)
    here = frame["trained_here"].astype(bool) if "trained_here" in frame else pd.Series(False, index=frame.index)
    frame, extra = frame[~here], frame[here].assign(source="trained here (not in the means)")
    if frame.empty:
        raise ValueError(f"no complete runs with a finite {loss} to chart besides those trained here")
    by = [color] if color else []
    stats = _mean_band(frame, x, loss, by)
    every = pd.concat([frame[x], extra[x]])
    axis = _integer_axis(every, x) if x in ("depth", "width", "layers", "hops") else alt.Axis(title=x)
    xe = alt.X(f"{x}:Q", scale=_padded(every, log_x), axis=axis)
    y_title = loss.replace("_", " ")
    y = partial(alt.Y, scale=alt.Scale(zero=False), title=y_title)   # one title: layers' titles would merge
    enc_color = alt.Color(f"{color}:O", scale=alt.Scale(scheme="viridis")) if color else alt.value(FIT_COLOR)
    tooltip = [c for c in ("run_id", "depth", "width", "share", "seed", "params", loss) if c in frame.columns]
    points = alt.Chart(frame).mark_circle(opacity=0.35, size=22).encode(
        x=xe, y=y(f"{loss}:Q"), color=enc_color, tooltip=tooltip)
    line = alt.Chart(stats).mark_line(point=True).encode(
        x=xe, y=y("mean:Q"), color=enc_color, tooltip=[x, *by, "mean", "low", "high", "count"])
    bars = alt.Chart(stats[stats["count"] > 1]).mark_errorbar().encode(    # one seed: no interval to draw
        x=xe, y=y("low:Q"), y2="high:Q", color=enc_color)
    layers = [points, bars, line]
    if len(extra):
        layers.append(alt.Chart(extra).mark_point(color="black", size=90, strokeWidth=2).encode(
            x=xe, y=y(f"{loss}:Q"), tooltip=tooltip, shape=alt.Shape(
                "source:N", title=None, scale=alt.Scale(domain=[extra["source"].iloc[0]], range=["diamond"]))))
    title = title or f"{y_title} vs {x}"
    return alt.layer(*layers).properties(width=WIDTH, height=HEIGHT,
                                         title=_titled(title, _bars_caption(stats["count"], "dots: runs")))


def accuracy_vs_depth(runs: pd.DataFrame) -> alt.HConcatChart:
    """08: text validation loss and k-hop task accuracy against depth, from the same runs, side by side
    (each panel as `loss_vs_chart` draws it: runs faint, seed means with their 95% t-interval)."""
    done = runs.dropna(subset=["task_accuracy"])
    return alt.hconcat(loss_vs_chart(done, loss="val_loss", color=None, title="text validation loss vs depth"),
                       loss_vs_chart(done, loss="task_accuracy", color=None, title="k-hop accuracy vs depth")
                       ).resolve_scale(y="independent")


def accuracy_by_hops(runs: pd.DataFrame) -> alt.LayerChart:
    """08: k-hop accuracy against the hop count k (log₂ axis), one line per depth: runs faint, seed means
    with their 95% t-interval; an explorer's runs (`trained_here`) drawn apart, out of the means."""
    long = fit.by_hops(runs)
    return loss_vs_chart(long, "hops", loss="accuracy", color="depth", title="k-hop accuracy by hop count")


def depth_for_accuracy_chart(result: fit.Fit) -> alt.LayerChart:
    """08: the shallowest depth reaching the target accuracy at each hop count k against log₂ k; hop
    counts no depth reached drawn as hollow triangles at the deepest depth tried (a lower bound)."""
    table = result.data.assign(reached=lambda t: t["depth"].notna())
    table["shown"] = table["depth"].fillna(table["deepest"])
    table["status"] = np.where(table["reached"], "shallowest depth reaching it", "not reached (deepest tried)")
    x = alt.X("hops:Q", scale=_padded(table["hops"]), axis=_integer_axis(table["hops"], "hops k"))
    y = alt.Y("shown:Q", scale=_padded(table["shown"]), axis=_integer_axis(table["shown"], "depth"))
    shapes = {"shallowest depth reaching it": "circle", "not reached (deepest tried)": "triangle-up"}
    shown = [k for k in shapes if k in set(table["status"])]      # a legend entry only for a mark drawn
    points = alt.Chart(table).mark_point(size=90, filled=True, color=FIT_COLOR).encode(
        x=x, y=y, shape=alt.Shape("status:N", title=None, scale=alt.Scale(
            domain=shown, range=[shapes[k] for k in shown])),
        tooltip=["hops", "depth", "surely", "best_accuracy", "best_depth"])
    line = alt.Chart(table[table["reached"]]).mark_line(color=FIT_COLOR).encode(x=x, y=y)
    subtitle = (f"target accuracy {result.params['target']:g}; slope {result.params['slope']:+.2f} layers per "
                f"doubling of k" if "slope" in result.params else f"target accuracy {result.params['target']:g}")
    return alt.layer(line, points).properties(width=WIDTH, height=HEIGHT,
                                              title=_titled("depth needed per hop count", subtitle))


def curves_chart(curves: pd.DataFrame, *, color: str = "depth", x: str = "tokens", loss: str = "val_loss",
                 title: str | None = None, facet: str | None = None, dash: str | None = None,
                 log_x: bool = True) -> alt.Chart:
    """Loss curves of many runs (the store's curves frame): `loss` at each evaluation against `x`, one
    line per run coloured by `color`, dashed by `dash`, one panel per value of `facet` (e.g. width: lines
    of two widths in one colour cannot be told apart). With `log_x` off the x axis is linear and, when the
    frame has the learning rate, each panel shades the cooldown (where the rate falls below its peak at
    the end of training): on a log axis the last 20% of the tokens is a sliver."""
    frame = curves.dropna(subset=[loss])
    frame = frame[frame[x] > 0]
    if frame.empty:
        raise ValueError(f"the curves hold no {loss} values")
    missing = [c for c in (color, dash, facet) if c and c not in frame]
    if missing:
        raise ValueError(f"the curves have no column {', '.join(missing)} (merge it from the runs frame)")
    x_enc = alt.X(f"{x}:Q", scale=_log() if log_x else alt.Scale(zero=False), axis=_count_axis(x))
    line = alt.Chart().mark_line(opacity=0.7).encode(
        x=x_enc, y=alt.Y(f"{loss}:Q", scale=alt.Scale(zero=False), title=loss.replace("_", " ")),
        color=alt.Color(f"{color}:O", scale=alt.Scale(scheme="viridis")), detail="run_id:N",
        tooltip=[c for c in ("run_id", "depth", "width", "share", "seed", x, loss) if c in frame.columns],
        **({"strokeDash": alt.StrokeDash(f"{dash}:O")} if dash else {}))
    layers, subtitle = [line], None
    if not log_x and "lr" in curves:
        cooldown = _cooldowns(curves, x, facet)
        if len(cooldown):   # one frame for both layers (a facet's layers share its data), told apart by `layer`
            frame = pd.concat([frame.assign(layer="curve"), cooldown.assign(layer="cooldown")], ignore_index=True)
            line = line.transform_filter("datum.layer == 'curve'")
            layers = [alt.Chart().mark_rect(color="#999", opacity=0.15).encode(x="start:Q", x2="end:Q")
                      .transform_filter("datum.layer == 'cooldown'"), line]
            subtitle = "shaded: the cooldown, where the learning rate decays to its end"
    chart = alt.layer(*layers, data=frame).properties(width=WIDTH if facet is None else 260, height=HEIGHT)
    title = _titled(title or f"{loss.replace('_', ' ')} during training", subtitle)
    if facet is None:
        return chart.properties(title=title)
    symbol = {"width": "W", "depth": "D"}.get(facet, facet)
    header = alt.Header(labelExpr=f"'{symbol} = ' + datum.value", labelFontSize=12)
    return chart.facet(column=alt.Column(f"{facet}:O", title=None, header=header)).properties(title=title)


def _cooldowns(curves, x, facet) -> pd.DataFrame:
    """Per `facet` value, the x range over which the runs' learning rate decays after its plateau (from the
    plateau's last point; the median over runs)."""
    rows = []
    for key, runs in (curves.groupby(facet) if facet else [(None, curves)]):
        starts = []
        for _, run in runs.dropna(subset=["lr"]).sort_values(x).groupby("run_id"):
            plateau = run[run["lr"] >= 0.99 * run["lr"].max()]
            if plateau[x].max() < run[x].max():        # the rate falls after its plateau
                starts.append(plateau[x].max())
        if starts:
            rows.append({**({facet: key} if facet else {}), "start": float(np.median(starts)),
                         "end": float(runs[x].max())})
    return pd.DataFrame(rows)


def grad_norm_profiles_chart(grad_norms: pd.DataFrame, *, step: int | None = None, color: str = "width",
                             title: str | None = None) -> alt.Chart:
    """Per-block gradient norm (log axis) against block index, one line per run coloured by `color`, at
    `step` (default: each run's measurement nearest step 1000, where the paper measured)."""
    blocks = grad_norms[(grad_norms["layer"] >= 0) & (grad_norms["layer"] < grad_norms["depth"])].copy()
    if blocks.empty:
        raise ValueError("no block gradient norms to chart")
    if step is None:
        nearest = blocks.groupby("run_id")["step"].apply(lambda s: s.iloc[np.argmin(np.abs(s.to_numpy() - 1000))])
        blocks = blocks[blocks["step"] == blocks["run_id"].map(nearest)]
    else:
        blocks = blocks[blocks["step"] == step]
    blocks = blocks.groupby(["run_id", "depth", "width", "seed", "step", "layer"], as_index=False)["norm"].apply(
        lambda s: float(np.sqrt(np.sum(np.square(s)))))
    return alt.Chart(blocks).mark_line(point=True, opacity=0.8).encode(
        x=alt.X("layer:Q", axis=alt.Axis(format="d", tickMinStep=1), title="block ℓ (0 = nearest the input)"),
        y=alt.Y("norm:Q", scale=_log(), title="gradient norm of block ℓ"),
        color=alt.Color(f"{color}:O", scale=alt.Scale(scheme="viridis")), detail="run_id:N",
        tooltip=["run_id", "depth", "width", "seed", "step", "layer", "norm"],
    ).properties(width=WIDTH, height=HEIGHT, title=title or "per-block gradient norms")


def loss_gap_chart(runs: pd.DataFrame, gap: dict, *, loss: str = "val_loss") -> alt.LayerChart:
    """Two shapes' final losses: each seed's run, the means with their 95% intervals, and the gap
    (dict from `dwlib.fit.fit_loss_gap`'s params/ci) in the title."""
    frame = runs[runs["status"] == "complete"].copy()
    frame["shape"] = "D=" + frame["depth"].astype(str) + " W=" + frame["width"].astype(str)
    stats = _mean_band(frame, "shape", loss)
    shapes = list(dict.fromkeys(frame["shape"]))
    y = alt.Y("shape:N", title="shape", sort=shapes)
    x_scale = alt.Scale(zero=False)
    points = alt.Chart(frame).mark_circle(size=45, opacity=0.6, color="black").encode(
        x=alt.X(f"{loss}:Q", scale=x_scale, title=loss.replace("_", " ")), y=y,
        tooltip=["run_id", "depth", "width", "seed", "params", "tokens", "flops", loss])
    bars = alt.Chart(stats[stats["count"] > 1]).mark_rule(strokeWidth=3, color=FIT_COLOR).encode(
        x="low:Q", x2="high:Q", y=y)
    means = alt.Chart(stats).mark_tick(thickness=3, size=22, color=FIT_COLOR).encode(x="mean:Q", y=y)
    lo, hi = gap["ci"]
    title = f"{' minus '.join(shapes[::-1])}: {gap['gap']:+.4f} nats (95% CI {lo:+.4f} to {hi:+.4f})"
    return alt.layer(points, bars, means).properties(width=WIDTH, height=120,
                                                     title=_titled(title, _bars_caption(stats["count"], "dots: runs")))


def latency_chart(speed: pd.DataFrame) -> alt.HConcatChart:
    """Inference speed per shape (frame from `dwlib.train.measure_inference` rows): latency of one
    sequence (ms) and batched throughput (tokens/s), side by side."""
    frame = speed.copy()
    frame["shape"] = "D=" + frame["depth"].astype(str) + " W=" + frame["width"].astype(str)
    y = alt.Y("shape:N", title="shape", sort=list(frame["shape"]))
    left = alt.Chart(frame).mark_bar(color=FIT_COLOR).encode(
        x=alt.X("latency_ms:Q", title="latency, one sequence (ms)", scale=alt.Scale(padding=0)), y=y,
        tooltip=["shape", "latency_ms", "latency_ms_sd", "context", "device"]).properties(width=260, height=90)
    right = alt.Chart(frame).mark_bar(color="#ff7f0e").encode(
        x=alt.X("tokens_per_second:Q", title="throughput (tokens/s)", scale=alt.Scale(padding=0)), y=y,
        tooltip=["shape", "tokens_per_second", "batch_size", "device"]).properties(width=260, height=90)
    return alt.hconcat(left, right).properties(title="inference speed (forward pass over the full context)")


BREAKDOWN_COLORS = {"attention matrices": "#1f77b4", "MLP matrices": "#2ca02c", "norm gains": "#ff7f0e",
                    "attention over context": "#9467bd", "token embedding": "#7f7f7f", "output head": "#bcbd22"}


def budget_breakdown_chart(cfg) -> alt.VConcatChart:
    """Where a shape's parameters and training FLOPs per token go (`dwlib.config.breakdown`, for a
    ModelConfig). The totals in the titles are `count_params` and `flops_per_token` (6N + 6·D·T·W, what
    budgets count); the output head's 6·W·V FLOPs, which budgets leave out, are named separately."""
    parts = breakdown(cfg)
    # legend below, titles from the left: in a browser (wider fonts than vl-convert measures) text at the
    # chart's edges was clipped
    color = alt.Color("part:N", title=None, scale=alt.Scale(domain=list(BREAKDOWN_COLORS),
                                                            range=list(BREAKDOWN_COLORS.values())),
                      legend=alt.Legend(orient="bottom", columns=3, columnPadding=28, labelLimit=220))

    def bar(counts, title):
        frame = pd.DataFrame({"part": list(counts), "count": list(counts.values())})
        frame["order"] = frame["part"].map(list(BREAKDOWN_COLORS).index)
        return alt.Chart(frame).mark_bar().encode(
            x=alt.X("sum(count):Q", stack="normalize", title="share", axis=alt.Axis(format="%"),
                    scale=alt.Scale(padding=0)),    # bars start at the axis (the theme pads other scales)
            color=color, order=alt.Order("order:Q"), tooltip=["part", alt.Tooltip("count:Q", format=",.0f")],
        ).properties(width=WIDTH, height=40, title=title)

    flops = sum(parts["flops"].values())
    return alt.vconcat(
        bar(parts["params"], alt.TitleParams(f"parameters: {sum(parts['params'].values()):,}", anchor="start")),
        bar(parts["flops"], alt.TitleParams(f"training FLOPs per token (6N + 6·D·T·W): {flops:,.0f}", anchor="start",
                                            subtitle=f"the output head adds {parts['head_flops']:,.0f} "
                                                     f"(6·W·V, not counted in budgets)")),
    ).properties(title=alt.TitleParams(f"D = {cfg.depth}, W = {cfg.width}, context {cfg.context}, "
                                       f"vocab {cfg.vocab_size:,}", anchor="start"))


def persistence_profile_chart(depth: int, tau: float) -> alt.LayerChart:
    """The paper's gradient-persistence picture: relative gradient norm exp(−(D − ℓ)/τ) per block ℓ
    (log axis, so the exponential is a straight line), the blocks within one τ of the output in blue.
    Points, not bars: a bar on a log axis has no zero to start from."""
    layers = np.arange(1, depth + 1)
    frame = pd.DataFrame({"layer": layers, "relative_norm": np.exp(-(depth - layers) / tau)})
    frame["within one τ"] = np.where(depth - layers < tau, "yes", "no")
    floor = 10.0 ** math.floor(math.log10(max(1e-6, float(frame["relative_norm"].min()))))
    x = alt.X("layer:Q", title="block ℓ (1 = nearest the input)", scale=alt.Scale(domain=[0.5, depth + 0.5]),
              axis=alt.Axis(format="d", tickMinStep=1))
    y = alt.Y("relative_norm:Q", title="gradient norm, relative to block D",
              scale=alt.Scale(type="log", domain=[floor, 1.5], clamp=True))   # below 1e-6: on the axis
    line = alt.Chart(frame).mark_line(color="#c7c7c7").encode(x=x, y=y)
    points = alt.Chart(frame).mark_circle(size=60, opacity=1).encode(
        x=x, y=y, tooltip=["layer", alt.Tooltip("relative_norm:Q", format=".3g")],
        color=alt.Color("within one τ:N", scale=alt.Scale(domain=["yes", "no"], range=[FIT_COLOR, "#9a9a9a"]),
                        legend=alt.Legend(orient="top-left", fillColor="white", padding=4)))
    # the legend sits in an empty corner: at the right edge a browser's wider font clipped its title
    layers = [line, points] if depth > 1 else [points]   # a line through one point draws nothing
    return alt.layer(*layers).properties(width=WIDTH, height=220,
                                         title=f"D = {depth}, τ = {tau:g}: e^(−(D−ℓ)/τ)")


def live_curves_chart(points: list[dict], *, title: str = "validation loss") -> alt.HConcatChart:
    """Validation loss against tokens and against training seconds, one line per label (live charts
    of `dwlib.widgets.LiveChart`; `points` hold label, tokens, seconds, val_loss). Seconds are each run's
    own, counted from its first training step; points without them appear only against tokens."""
    frame = pd.DataFrame(points, columns=["label", "tokens", "seconds", "val_loss"]).dropna(subset=["val_loss"])
    tooltip = ["label", "tokens", alt.Tooltip("seconds:Q", format=".1f"), alt.Tooltip("val_loss:Q", format=".4f")]
    base = alt.Chart(frame).mark_line(point=True).encode(
        y=alt.Y("val_loss:Q", scale=alt.Scale(zero=False), title="validation loss"),
        color=alt.Color("label:N", title=None), tooltip=tooltip).properties(width=300, height=220)
    by_tokens = base.encode(x=alt.X("tokens:Q", axis=_count_axis("training tokens")))
    by_time = base.properties(data=frame.dropna(subset=["seconds"])).encode(
        x=alt.X("seconds:Q", title="training seconds (from each run's first step)"))
    return alt.hconcat(by_tokens, by_time).properties(title=title)


def isoflop_points_chart(runs: pd.DataFrame, *, loss: str = "val_loss") -> alt.Chart:
    """The isoFLOP data without a fit: final loss against non-embedding parameters (log axis), one line
    per FLOP budget (runs' FLOPs grouped to 2 significant figures), each run labelled with its shape."""
    frame = _complete_runs(runs, loss)
    frame["budget"] = frame["flops"].map(lambda f: float(f"{f:.2g}"))
    frame["shape"] = "D=" + frame["depth"].astype(str) + " W=" + frame["width"].astype(str)
    frame = frame.sort_values(["budget", "non_embedding_params"])
    return alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("non_embedding_params:Q", scale=_log(), title="non-embedding parameters N"),
        y=alt.Y(f"{loss}:Q", scale=alt.Scale(zero=False), title=loss.replace("_", " ")),
        color=alt.Color("budget:O", title="budget (FLOPs)", scale=alt.Scale(scheme="viridis"),
                        legend=alt.Legend(format=".2e")),
        detail="budget:O", tooltip=["shape", "seed", "non_embedding_params", "tokens", "flops", loss],
    ).properties(width=WIDTH, height=HEIGHT, title="isoFLOP profiles (data)")


def predicted_loss_chart(runs: pd.DataFrame) -> alt.Chart:
    """Each complete run's measured loss against its `predicted` column (a law's prediction; without the
    column, the measured loss on both axes), coloured by `trained_here`: shapes a notebook's explorer
    trained (`widgets.explore`) against the runs the law was fitted to."""
    frame = runs[runs["status"] == "complete"]
    frame = frame.assign(source=np.where(frame["trained_here"], "trained here", "fitted runs"))
    y = "predicted" if "predicted" in frame else "val_loss"
    return alt.Chart(frame).mark_point(filled=True).encode(
        x=alt.X("val_loss:Q", scale=alt.Scale(zero=False), title="measured loss"),
        y=alt.Y(f"{y}:Q", scale=alt.Scale(zero=False),
                title="predicted loss" if y == "predicted" else "measured loss (no law to predict from)"),
        color="source:N", tooltip=["run_id", "depth", "width", "tokens", "val_loss"],
    ).properties(title="measured vs predicted")


def to_svg(chart) -> str:
    """The chart as SVG markup (vl-convert, offline): for ipywidgets.HTML views, which redraw by setting
    a value instead of capturing display output (nbclient's Output-widget mimic can deadlock papermill)."""
    import vl_convert as vlc
    return vlc.vegalite_to_svg(chart.to_dict())


# ---------------------------------------------------------------------------------------------
# Learning-rate transfer (frames from dwlib.transfer: coord_check, best_lr; written for issue 6)
# ---------------------------------------------------------------------------------------------
# Colours per parametrisation: SP red (the paper's setting), μP blue, CompleteP green.

PARAMETRIZATION_COLORS = {"sp": "#d62728", "mup": "#1f77b4", "completep": "#2ca02c"}
PARAMETRIZATION_SHORT = {"sp": "SP", "mup": "μP", "completep": "CompleteP"}
PARAMETRIZATION_NAMES = {"sp": "SP (standard parametrisation)", "mup": "μP (maximal update)",
                         "completep": "CompleteP (depth and width)"}
_LR_TOOLTIP = [alt.Tooltip(f"{c}:Q", format=".3g") for c in ("best_lr", "lr_low", "lr_high")]


def _best_lr_rows(best: pd.DataFrame) -> pd.DataFrame:
    """The rows of a `dwlib.transfer.best_lr` frame with a best lr; a missing interval end becomes the
    best lr itself (no interval drawn)."""
    frame = best.dropna(subset=["best_lr"]).copy()
    frame["lr_low"] = frame["lr_low"].fillna(frame["best_lr"])
    frame["lr_high"] = frame["lr_high"].fillna(frame["best_lr"])
    return frame


def _parametrization_color(values):
    domain = [p for p in PARAMETRIZATION_COLORS if p in set(values)]
    return alt.Color("parametrization:N", title="parametrisation",
                     scale=alt.Scale(domain=domain, range=[PARAMETRIZATION_COLORS[p] for p in domain]))


def coord_check_chart(frame: pd.DataFrame, *, over: str = "width", value: str = "delta",
                      layer: str = "last") -> alt.FacetChart:
    """A coordinate check (frame from `dwlib.transfer.coord_check`): activation size (log) against
    width or depth (log), one panel per parametrisation (rows) × site (columns), one line per training
    step (darker = later). Flat lines: the parametrisation keeps every layer's activations O(1) as the
    model grows; lines rising to the right: drift. `value` 'delta' is the change since initialisation,
    'scale' the activation itself; layer-indexed sites are read at the last block or averaged over
    blocks (`layer`), as `dwlib.transfer.coord_drift` does."""
    if over not in ("width", "depth") or value not in ("delta", "scale") or layer not in ("last", "mean"):
        raise ValueError(f"over must be width|depth, value delta|scale, layer last|mean; got {over!r}, "
                         f"{value!r}, {layer!r}")
    data = frame[frame["step"] > 0] if value == "delta" else frame
    if layer == "last":
        last = data.groupby(["parametrization", "width", "depth", "site"])["layer"].transform("max")
        data = data[data["layer"] == last]
    other = "depth" if over == "width" else "width"
    data = data.groupby(["parametrization", "site", over, other, "step"], as_index=False)[value].mean()
    data = data[data[value] > 0]
    if data.empty:
        raise ValueError("nothing to chart: the frame has no positive activation sizes")
    sites = [s for s in ("embedding", "residual", "attn_logits", "logits") if s in set(data["site"])]
    what = "mean |x_t − x_0|" if value == "delta" else "mean |x_t|"
    data["parametrisation"] = data["parametrization"].map(PARAMETRIZATION_SHORT)
    # narrow panels with a short y title (the chart's title says it in full): the 3 × 4 grid fits a 1400 px
    # browser window
    return alt.Chart(data).mark_line(point=True).encode(
        x=alt.X(f"{over}:Q", scale=_padded(data[over]), axis=_integer_axis(data[over], over)),
        y=alt.Y(f"{value}:Q", scale=_log(), axis=alt.Axis(format="~g", labelOverlap="greedy",
                                                          title="|Δx|" if value == "delta" else "|x|")),
        color=alt.Color("step:O", scale=alt.Scale(scheme="blues"), title="step"),
        detail=f"{other}:O",
        tooltip=["parametrization", "site", over, other, "step", alt.Tooltip(f"{value}:Q", format=".3g")],
    ).properties(width=130, height=110).facet(
        row=alt.Row("parametrisation:N", sort=list(PARAMETRIZATION_SHORT.values()), title=None),
        column=alt.Column("site:N", sort=sites, title=None),
    ).resolve_scale(y="independent").properties(title=f"coordinate check: {what} per site vs {over}")


def lr_curves_chart(runs: pd.DataFrame, best: pd.DataFrame | None = None, *, loss: str = "val_loss",
                    color: str = "width", y_max: float | None = None) -> alt.HConcatChart:
    """Loss against learning rate (log axis), one panel per parametrisation, one line per shape coloured
    by `color` (width or depth); with `best` (from `dwlib.transfer.best_lr`) each shape's best lr is
    marked with its interval (a diamond, in the legend). Where the marks line up vertically the learning
    rate transfers. Diverged runs are left out; means above `y_max` (default: a little above the region
    of the minima, so divergent learning rates do not flatten the curves) are not drawn, and the subtitle
    says how many."""
    frame = _complete_runs(runs, loss)
    means = frame.groupby(["parametrization", "depth", "width", "lr"], as_index=False)[loss].mean()
    lo = float(means[loss].min())
    if y_max is None:
        y_max = min(float(means[loss].max()), lo + 4 * (float(means[loss].median()) - lo) + 1e-3)
    off_scale = int((means[loss] > y_max).sum())
    means = means[means[loss] <= y_max]
    x = alt.X("lr:Q", scale=_padded(frame["lr"]),      # ticks at the rates tried: a log axis crowds 0.005–0.007
              axis=alt.Axis(values=sorted(set(frame["lr"])), format="~g", title="learning rate"))
    y = partial(alt.Y, scale=alt.Scale(zero=False), title=loss.replace("_", " "))
    enc_color = alt.Color(f"{color}:O", scale=alt.Scale(scheme="viridis"), title=color)
    if best is not None:
        best = _best_lr_rows(best)
        if "parametrization" not in best:          # best_lr by depth or width only: one parametrisation
            best["parametrization"] = means["parametrization"].iloc[0]
        best = best[best["best_loss"] <= y_max].assign(what="best lr with its interval")
    panels = []
    for parametrization in [p for p in PARAMETRIZATION_COLORS if p in set(means["parametrization"])]:
        m = means[means["parametrization"] == parametrization]
        layers = [alt.Chart(m).mark_line(point=True).encode(
            x=x, y=y(f"{loss}:Q"), color=enc_color,
            detail="shape:N", tooltip=["depth", "width", "lr", alt.Tooltip(f"{loss}:Q", format=".4f")],
        ).transform_calculate(shape="datum.depth + 'x' + datum.width")]
        if best is not None:
            b = best[best["parametrization"] == parametrization]
            layers.append(alt.Chart(b[b["lr_high"] > b["lr_low"]]).mark_rule(strokeWidth=2).encode(
                x="lr_low:Q", x2="lr_high:Q", y=y("best_loss:Q"), color=enc_color))
            # the vertex (an interpolation) and the grid's best rate (what a check trains next) can differ
            marks = {"best lr with its interval": "diamond", "grid's best rate (what is trained)": "circle"}
            shape = alt.Shape("what:N", title=None, scale=alt.Scale(domain=list(marks), range=list(marks.values())))
            layers.append(alt.Chart(b).mark_point(size=90, filled=True, opacity=1).encode(
                x="best_lr:Q", y=y("best_loss:Q"), color=enc_color, shape=shape,
                tooltip=[c for c in ("depth", "width") if c in b] + [*_LR_TOOLTIP, "at_edge", "method"]))
            layers.append(alt.Chart(b.assign(what=list(marks)[1])).mark_point(
                size=160, filled=False, strokeWidth=2, opacity=1).encode(
                x="grid_lr:Q", y=y("grid_loss:Q"), color=enc_color, shape=shape))
        panels.append(alt.layer(*layers).properties(width=260, height=220,
                                                    title=PARAMETRIZATION_NAMES[parametrization]))
    note = f"{off_scale} mean(s) above {y_max:.3g} not drawn (learning rates far from the best)" if off_scale else None
    return alt.hconcat(*panels).resolve_scale(color="shared").properties(
        title=_titled(f"{loss.replace('_', ' ')} vs learning rate (mean over seeds)", note))


def best_lr_chart(best: pd.DataFrame, *, over: str = "width") -> alt.LayerChart:
    """The best learning rate (log) against width or depth (log), one line per parametrisation, with
    the intervals from `dwlib.transfer.best_lr`; hollow marks are optima at the edge of the sweep
    (bounds, not estimates). A flat line is a learning rate that transfers."""
    if over not in ("width", "depth"):
        raise ValueError(f"over must be 'width' or 'depth', got {over!r}")
    frame = _best_lr_rows(best)
    if frame.empty:
        raise ValueError("no best learning rates to chart")
    frame["estimate"] = np.where(frame["at_edge"], "edge of sweep (bound)", "interior optimum")
    x = alt.X(f"{over}:Q", scale=_padded(frame[over]), axis=_integer_axis(frame[over], over))
    y_lr = partial(alt.Y, scale=_log(), title="best learning rate")
    y = y_lr("best_lr:Q")
    color = _parametrization_color(frame["parametrization"])
    line = alt.Chart(frame).mark_line().encode(x=x, y=y, color=color)
    bars = alt.Chart(frame[frame["lr_high"] > frame["lr_low"]]).mark_errorbar().encode(   # bounds: no bar
        x=x, y=y_lr("lr_low:Q"), y2="lr_high:Q", color=color)
    tooltip = ["parametrization", "depth", "width", *_LR_TOOLTIP, "estimate"]
    interior = alt.Chart(frame[~frame["at_edge"].astype(bool)]).mark_point(size=60, filled=True).encode(
        x=x, y=y, color=color, tooltip=tooltip)
    edge = alt.Chart(frame[frame["at_edge"].astype(bool)]).mark_point(size=60, filled=False).encode(
        x=x, y=y, color=color, tooltip=tooltip)
    return alt.layer(line, bars, interior, edge).properties(width=WIDTH, height=HEIGHT,
                                                    title=f"best learning rate vs {over}")

