"""The sentences notebooks print: one function per kind of verdict, so every notebook words the same
evidence the same way and no notebook cell holds a decision tree of its own.

Each takes a fit result (or the frames a fitter returned) and returns Markdown. Numbers come from the
result; nothing here decides anything the fitter did not.
"""
from __future__ import annotations

import math

import pandas as pd

from .accuracy import POWER
from .stats import CHINCHILLA_TOKENS_PER_PARAM, FALLING_FAST, fmt, fmt_ci


def _count(v) -> str:
    """Two significant figures without an exponent: 0.35, 40, 640, 1,600."""
    return f"{v:.2g}" if v < 100 else f"{float(f'{v:.2g}'):,.0f}"


def _range(values) -> tuple[float, float] | None:
    values = pd.Series(values, dtype=float).replace([math.inf, -math.inf], math.nan).dropna()
    return (float(values.min()), float(values.max())) if len(values) else None


def _span(lo_hi) -> str:
    lo, hi = lo_hi
    return _count(lo) if _count(lo) == _count(hi) else f"{_count(lo)}–{_count(hi)}"


def regime_of(runs) -> dict:
    """The regime of the complete runs in a store frame, in both conventions: tokens per non-embedding
    parameter (Kaplan's N, what dwlib's budgets count) and per parameter counting the embeddings and head
    (what Chinchilla's ≈ 20 counts), and the parameter range."""
    done = runs[runs["status"] == "complete"] if "status" in runs else runs
    ratio = lambda n: _range(done["tokens"] / done[n]) if {"tokens", n} <= set(done) else None   # noqa: E731
    out = dict(tokens_per_param=ratio("non_embedding_params"), tokens_per_param_all=ratio("params"),
               params=_range(done["params"]) if "params" in done else None)
    return {k: v for k, v in out.items() if v is not None}


def regime_sentence(regime: dict) -> str:
    """Which regime a set of runs comes from: tokens per non-embedding parameter beside tokens per
    parameter counting the embeddings (the count Chinchilla's compute-optimal ≈ 20 uses, so the one it is
    compared with), and whether the best and deepest runs were still falling when training stopped — per
    doubling of tokens, between annealed budgets when there are several, else over a run's last quarter."""
    if not regime:
        return ""
    parts = []
    tpp, tpa = regime.get("tokens_per_param"), regime.get("tokens_per_param_all")
    if tpp or tpa:
        text = "Regime: " + (f"{_span(tpp)} tokens per non-embedding parameter" if tpp else "")
        if tpa:
            text += (f" ({_span(tpa)} per parameter counting embeddings and head, as Chinchilla's ≈ "
                     f"{CHINCHILLA_TOKENS_PER_PARAM:g} does)" if tpp else f"{_span(tpa)} tokens per parameter")
        if regime.get("params"):
            text += f", models of {_span([v / 1e3 for v in regime['params']])}k parameters"
        under = (tpa or tpp)[1] < CHINCHILLA_TOKENS_PER_PARAM
        if under:
            text += (f"; below the ≈ {CHINCHILLA_TOKENS_PER_PARAM:g} of compute-optimal training"
                     + ("" if tpa else " (by non-embedding parameters; counting embeddings the ratio is lower still)")
                     + ": these models are under-trained, and a comparison between them measures how fast each shape "
                       "learns at this budget more than what it can reach")
        parts.append(text)
    slopes = {k: regime[f"slope_{k}"] for k in ("best", "deepest") if f"slope_{k}" in regime}
    if slopes.get("best") == slopes.get("deepest") and len(slopes) == 2:
        slopes = {"best (and deepest)": slopes["best"]}
    where = {"annealed budgets": "between the two largest annealed budgets",
             "last quarter": "over the last quarter of training"}.get(regime.get("slope_kind"), "at the end of training")
    fast = {k: v for k, v in slopes.items() if v < FALLING_FAST}
    if fast:
        effect = regime.get("effect")
        txt = " and ".join(f"the {k} runs by {-v:.3f}" for k, v in fast.items())
        parts.append(f"{where} the loss was still falling — {txt} nats per doubling of tokens"
                     + (f", more than the {effect:.3f}-nat difference the verdict rests on" if effect and
                        max(-v for v in fast.values()) > effect else ""))
    elif slopes:
        parts.append(f"{where} the loss had levelled off (under {-FALLING_FAST:g} nats per doubling of tokens at the "
                     "best and deepest depths)")
    return "; ".join(parts) + "." if parts else ""


def _with_regime(text: str, regime) -> str:
    return " ".join(t for t in (text, regime_sentence(regime or {})) if t)


def excluded_sentence(excluded) -> str:
    if not excluded:
        return ""
    return f"Excluded from the fit ({len(excluded)}): " + "; ".join(excluded) + "."


def _noise_words(r) -> str:
    """Where the noise the tests use comes from."""
    if r.noise_source == "stated":
        return f"noise sd {r.noise_sd:.3g} per run as stated"
    if not math.isfinite(r.noise_sd):
        return ""
    how = "seed effects removed by a two-way depth + seed model" if r.seed_blocked else "spread of repeats at each depth"
    return f"{how}: residual sd {r.noise_sd:.3g} per run, {r.noise_dof:.0f} dof"


def best_set_words(r) -> str:
    """The best depth's confidence set in words: '8–16 (8, 12, 16)'."""
    s = r.best_set
    if len(s) <= 1:
        return fmt(s[0]) if s else ""
    return f"{fmt(s[0])}–{fmt(s[-1])} ({', '.join(fmt(d) for d in s)})"


def detectable_sentence(r) -> str:
    """What a negative verdict could have seen: the minimum detectable rise."""
    if not math.isfinite(r.mdr):
        return ""
    noise = ("stated" if r.noise_source == "stated" else "measured"
             + (f" (itself from only {r.noise_dof:.0f} dof, so this is rough)" if r.noise_dof < 10 else ""))
    return (f"a rise of {r.mdr:.3g} nats or more from D = {fmt(r.mdr_from)} to D = {fmt(r.depth_range[1])} (linear in "
            f"ln D above a flat plateau) would have been detected with 80% power at the noise {noise}")


def outlier_sentence(r) -> str:
    """The runs flagged as outliers among their seeds, and the verdict with them put back."""
    if not r.outliers:
        return ""
    runs = "; ".join((f"{o['run']} " if o["run"] is not None else "the run ") + f"(D = {fmt(o['depth'])}"
                     + (f", seed {o['seed']}" if o["seed"] is not None else "")
                     + f"): {o['excess']:+.3f} nats from what its depth and seed predict (t = {o['t']:.1f})"
                     for o in r.outliers)
    one = len(r.outliers) == 1
    with_them = ("the same" if r.verdict_with_outliers == r.verdict else f"**{r.verdict_with_outliers}**")
    return (f"{'An outlier' if one else f'{len(r.outliers)} outliers'} among {'its' if one else 'their'} seeds, left out "
            f"of the verdict (its stored status is unchanged): {runs}. With {'it' if one else 'them'} the verdict is "
            f"{with_them}.")


def critical_depth_text(r) -> str:
    """The summary paragraph of a critical-depth fit: data, noise, tests, verdict, D* or its bound, the
    best depth's confidence set, what a negative verdict could have detected, outliers, regime,
    exclusions, paper."""
    lo, hi = r.depth_range
    seeds = f", {r.data['seed'].nunique()} seed(s)" if "seed" in r.data else ""
    where = f" at W = {r.width:g}" if r.width is not None else ""
    noise = _noise_words(r)
    text = (f"Critical depth{where} from {r.n_points} runs ({r.data['depth'].nunique()} depths {fmt(lo)}–{fmt(hi)}"
            f"{seeds}{'; ' + noise if noise else ''}). Verdict: **{r.verdict}** — {r.reason}.")
    if r.bound:
        text += f" {r.bound}."
    if r.best_set:
        text += (f" Best depth ({r.level:.0%} confidence set: the depths not measurably worse than any other): "
                 f"{best_set_words(r)}" + ("; still improving at the deepest depth" if r.still_improving else "") + ".")
    if r.verdict in ("monotone decreasing", "inconclusive") and detectable_sentence(r):   # the negative verdicts
        text += " Power: " + detectable_sentence(r) + "."
    parts = (text, outlier_sentence(r), paper_comparison(r), regime_sentence(r.regime), excluded_sentence(r.excluded))
    return " ".join(s for s in parts if s)


def paper_comparison(r) -> str:
    """The Depth Delusion's critical depth beside ours — graded only when we found a U-shape."""
    if r.paper_log is None:
        return ""
    claim = (f"The paper's 2.43·ln W gives {r.paper_log:.1f} and its W^0.44 law (anchored at W = 512) "
             f"{r.paper_power:.1f}")
    if r.verdict == "U-shaped":
        lo, hi = r.ci["d_star"]
        inside = lambda v: "inside" if lo <= v <= hi else "outside"
        ours = "our interval" if r.d_star_method == "parabola" else f"our confidence set's range ({fmt(lo)}–{fmt(hi)})"
        return f"{claim}: {inside(r.paper_log)} and {inside(r.paper_power)} {ours} respectively."
    return f"{claim}; with no U-shape found here there is no critical depth to set beside them."


def critical_depth_sentence(r) -> str:
    """One headline sentence for a notebook: what the sweep at this width shows, in its regime, with the
    best depth's confidence set and (for a negative verdict) the minimum detectable rise."""
    w = f"At W = {r.width:g}" if r.width is not None else "Here"
    lo, hi = r.depth_range
    power = detectable_sentence(r)
    if r.verdict == "U-shaped":
        where = (f"lowest at D\\* = {fmt(r.params['d_star'])} ({r.level:.0%} CI {fmt_ci(r.ci['d_star'])}, local parabola)"
                 if r.d_star_method == "parabola" else
                 f"the best depth lies in {best_set_words(r)} ({r.level:.0%} confidence set; too flat or too far from a "
                 "parabola for a vertex)")
        head = (f"{w} the loss is **U-shaped**: {where}, and it stays higher beyond the minimum up to D = {fmt(hi)} "
                f"({r.rise:.3f} nats at worst; rise test p = {r.p_rise:.2g}). {paper_comparison(r)}")
    elif r.verdict == "monotone decreasing":
        deepest = ("; still improving at the deepest depth" if r.still_improving else
                   "; the lowest mean is at the deepest depth" if r.best_depth >= hi else "")
        head = (f"{w} **no rise is detected** up to D = {fmt(hi)} (rise test p = {r.p_rise:.2g}; {power}): the best "
                f"depth lies in {best_set_words(r)} ({r.level:.0%} confidence set), so {r.bound}{deepest}. The paper's "
                "rise beyond a critical depth is **not reproduced** at this precision.")
    elif r.verdict == "monotone increasing":
        head = (f"{w} the loss **rises from the shallowest depths tried**: the best depth lies in {best_set_words(r)} "
                f"({r.level:.0%} confidence set), so {r.bound}, and deeper is worse up to D = {fmt(hi)} "
                f"(rise test p = {r.p_rise:.2g}).")
    else:
        head = f"{w} the data are **inconclusive**: {r.reason}" + (f"; {power}" if power else "") + "."
    return " ".join(s for s in (head, outlier_sentence(r), regime_sentence(r.regime)) if s)


def movement_sentence(by_budget, moves, width=None, regime=None) -> str:
    """The best depth at every annealed budget, whatever its verdict — with its confidence set, and D* where
    a parabola fits — and whether it moves between consecutive budgets (`fit.critical_depth_by_budget`:
    only confidence sets separated by a depth tried count as a move), in the runs' `regime` (`regime_of`)."""
    w = f" at W = {width:g}" if width is not None else ""
    meaning = {"monotone increasing": " — deeper is worse at this budget",
               "monotone decreasing": " — no rise detected", "U-shaped": " — a minimum inside the range"}

    def budget(row):
        if not isinstance(row.verdict, str) or row.verdict.startswith("not fitted") or not math.isfinite(row.best_depth):
            return f"{row.tokens:,.0f} tokens: {row.verdict}"
        text = f"{row.tokens:,.0f} tokens: **{row.verdict}**{meaning.get(row.verdict, '')}; best depth {fmt(row.best_depth)}"
        if math.isfinite(row.set_low):
            text += (f" (confidence set D = {fmt(row.set_low)}" + (f"–{fmt(row.set_high)})" if row.set_high > row.set_low
                                                                   else " alone)"))
        return text + (f", {row.bound}" if row.verdict == "U-shaped" and str(row.bound).startswith("D* =") else "")

    text = f"Across annealed budgets{w} — " + "; ".join(budget(row) for row in by_budget.itertuples()) + "."
    if moves is None or moves.empty:
        return _with_regime(text + " Whether the best depth moves cannot be tested: fewer than two budgets have a "
                                   "confidence set.", regime)
    for row in moves.itertuples():
        span = f"From {row.tokens_from:,.0f} to {row.tokens_to:,.0f} tokens"
        if row.moves:
            side = ("below", "above") if row.direction == "deeper" else ("above", "below")
            text += (f" {span} the best depth **moves {row.direction}**: its confidence set {row.set_from} lies "
                     f"{side[0]} D = {fmt(row.across)} and {row.set_to} {side[1]} it.")
        else:
            text += (f" {span}: **no measurable movement** of the best depth ({fmt(row.best_from)} → {fmt(row.best_to)}: "
                     f"the confidence sets {row.set_from} and {row.set_to} are not separated by a depth tried).")
    return _with_regime(text, regime)


def isoflop_text(r) -> str:
    """The isoFLOP summary: the size optimum per budget, N*(C) and T*(C) when identified, the best
    shape per budget, and what is missing."""
    from .isoflop import PAPER_DEPTH_EXPONENT, PAPER_WIDTH_EXPONENT
    optima = r.optima
    bracketed = optima["opt_params"].notna() if "opt_params" in optima else pd.Series(False, index=optima.index)
    text = (f"IsoFLOP profiles: {len(optima)} budgets from {r.n_points} runs; the size optimum is bracketed at "
            f"{int(bracketed.sum())}.")
    per_budget = [f"C = {row.flops:.3g}: N* = {row.opt_params:,.0f} ({row.opt_params_low:,.0f}–{row.opt_params_high:,.0f}), "
                  f"T* = C/6N* = {row.opt_tokens:,.0f} ({row.opt_tokens_low:,.0f}–{row.opt_tokens_high:,.0f}) tokens, "
                  f"≈ {row.opt_tokens / row.opt_params:.0f} per non-embedding parameter"
                  + ("" if row.params_status == "ok" else f" — {row.params_status}")
                  for row in optima[bracketed].itertuples()]
    per_budget += [f"C = {row.flops:.3g}: {row.params_status}" for row in optima[~bracketed].itertuples()]
    if per_budget:
        text += " " + "; ".join(per_budget) + "."
    if r.identified:
        lo, hi = r.ci["params_exponent"]
        tlo, thi = r.ci["tokens_exponent"]
        text += (f" N* ∝ C^{r.params['params_exponent']:.3f} ({r.level:.0%} CI {fmt_ci((lo, hi))}, {hi - lo:.2f} wide), "
                 f"T* ∝ C^{r.params['tokens_exponent']:.3f} ({fmt_ci((tlo, thi))}); Chinchilla found both ≈ 0.5 and ≈ "
                 f"{CHINCHILLA_TOKENS_PER_PARAM:.0f} tokens per parameter (embeddings counted).")
    else:
        text += " **Not identified** — " + "; ".join(r.health) + ". No exponent is reported."
    if "best_depth" in optima:
        shapes = [f"{row.best_depth}×{row.best_width} at {row.flops:.3g} ({row.best_share:.0%} of resamples)"
                  for row in optima.itertuples()]
        text += (" Best shape (depth×width) per budget: " + "; ".join(shapes) + ". The design brackets size, not "
                 f"depth and width separately, so the paper's D* ∝ C^{PAPER_DEPTH_EXPONENT} and W* ∝ "
                 f"C^{PAPER_WIDTH_EXPONENT} are not graded here.")
    return text


def _overlap(r1, r2) -> bool:
    (a1, b1), (a2, b2) = r1.ci["d_star"], r2.ci["d_star"]
    return not (b1 < a2 or b2 < a1)


def arm_sentence(arm: str, r) -> str:
    """One depth sweep's verdict in a few words, for a list of arms."""
    if r.verdict == "U-shaped" and r.d_star_method == "parabola":
        return f"{arm}: **U-shaped**, D\\* = {fmt(r.params['d_star'])} ({r.level:.0%} CI {fmt_ci(r.ci['d_star'])})"
    if r.verdict == "U-shaped":
        return f"{arm}: **U-shaped**, best depth in {best_set_words(r)} ({r.level:.0%} confidence set)"
    return f"{arm}: **{r.verdict}**" + (f" ({r.bound})" if r.bound else f" — {r.reason}")


def fair_depth_text(fits: dict, regime=None) -> str:
    """Notebook 07's verdict: does what the paper-style sweep (the first arm: one fixed learning rate)
    shows about depth survive a fair learning rate (the other arms)? For a U-shape: 'moves' requires the
    two D* intervals not to overlap — a conservative test (two disjoint 95% intervals differ at well below
    5%). A loss that rises from the shallowest depth is the depth penalty itself, there from the start."""
    (name_a, a), *others = fits.items()
    others = [(k, r) for k, r in others if r is not None]
    if a is None:
        return "The paper-style sweep could not be fitted, so there is nothing to compare against."
    detail = "; ".join(arm_sentence(k, r) for k, r in [(name_a, a)] + others) + "."
    caveat = (" Read it with the intervals above: with few seeds and a short budget these are statements about "
              "this run, not about the paper's scale.")
    if a.verdict == "monotone increasing":
        shallow = fmt(a.depth_range[0])
        kept = [k for k, r in others if r.verdict == "monotone increasing"]
        gone = [k for k, r in others if r.verdict != "monotone increasing"]
        rises = f"the loss rises from D = {shallow} on — the depth penalty itself, at D ≤ {shallow} —"
        if others and not gone:
            head = (f"**The depth penalty survives a fair learning rate**: {rises} under the fixed rate and under "
                    + " and ".join(kept) + ", so no learning rate tried removes it")
        elif others:
            head = (f"**The fixed-lr depth penalty does not fully survive**: {rises} under the fixed rate, but not "
                    "under " + " and ".join(gone) + ": at this scale it is at least partly a learning-rate effect")
        else:
            head = f"Under the fixed rate {rises} but no fair sweep could be fitted to test it"
        return _with_regime(f"{head}. {detail}{caveat}", regime)
    if a.verdict != "U-shaped":
        return _with_regime(f"**Nothing to explain away at this scale**: the paper-style sweep {name_a} is {a.verdict}"
                            + (f" ({a.bound})" if a.bound else "") + ", with no rise beyond a critical depth for a "
                            f"fair learning rate to remove. {detail}{caveat}", regime)
    outcome = {}
    for k, r in others:
        outcome[k] = {"U-shaped": "survives" if _overlap(r, a) else "moves",
                      "monotone decreasing": "vanishes (the loss keeps falling with depth)",
                      "monotone increasing": "collapses to the shallowest depth"}.get(r.verdict, "cannot be told (inconclusive)")
    values = list(outcome.values())
    if values and all(v == "survives" for v in values):
        head = "**The critical depth survives a fair learning rate**: every sweep is U-shaped and the D\\* intervals overlap."
    elif any(v.startswith(("vanishes", "collapses")) for v in values):
        head = ("**The fixed-lr critical depth does not survive**: with a fair learning rate its U-shape is gone in at "
                "least one sweep — at this scale the rise beyond D\\* is at least partly a learning-rate effect.")
    elif "moves" in values:
        head = ("**A minimum remains, but it moves**: a fair sweep's D\\* interval does not overlap the fixed-lr one, "
                "so the depth measured at one fixed learning rate is biased.")
    else:
        head = "**Undecided**: at least one fair sweep cannot tell a minimum from a trend — more seeds or depths would decide it."
    return _with_regime(head + " The critical depth of the fixed-lr sweep "
                        + "; ".join(f"under {k} {v}" for k, v in outcome.items()) + f". {detail}{caveat}", regime)


def lr_check_sentence(gap, depths, lrs, tuning_seeds, rise=None, at_edge=(), extended=None, cap=None,
                      regime=None) -> str:
    """02's learning-rate check: `gap` is `compare_losses(loss at depths[0], loss at depths[1])`, each
    depth at its own best learning rate `lrs` {depth: lr} chosen on `tuning_seeds` and scored on other
    seeds; `rise` is the same difference at the sweep's fixed learning rate; `extended` {depth: rates
    added ×2 apart beyond an end of the grid} and `cap` the most allowed (`transfer.bracketed_best_lr`);
    `at_edge` the depths whose best rate is still at an end of the grid (only a bound); `regime` that of
    the scored runs."""
    return _with_regime(_lr_check(gap, depths, lrs, tuning_seeds, rise, at_edge, extended, cap), regime)


def _lr_check(gap, depths, lrs, tuning_seeds, rise, at_edge, extended, cap) -> str:
    a, b = depths
    lo, hi = gap.ci["gap"]
    chosen = ", ".join(f"{lrs[d]:.3g} at D = {d}" for d in depths)
    grown = {d: n for d, n in (extended or {}).items() if n}
    edge = ("; the grid was extended by factors of 2 at " + ", ".join(f"D = {d} ({n} more rate{'s' * (n > 1)})"
                                                                       for d, n in grown.items()) if grown else "")
    edge += (f"; at D = {', '.join(map(str, at_edge))} the best rate is still at an end of the grid"
             + (f" after the cap of {cap} more rates" if cap is not None else "")
             + ", so the true best may lie beyond it" if at_edge else "")
    head = (f"With each depth at its own best learning rate ({chosen}; chosen on seeds "
            f"{', '.join(map(str, tuning_seeds))}, scored on others{edge}), D = {b} minus D = {a} is "
            f"{gap.params['gap']:+.4f} nats ({gap.level:.0%} CI {lo:+.4f} to {hi:+.4f}, {gap.method})"
            + (f", against {rise:+.4f} at the fixed learning rate" if rise is not None else ""))
    if lo > 0:
        return head + (": **the deeper model is worse even at its best learning rate** — the rise survives a better "
                       "learning rate." if rise is not None and rise > 0 else ": **the deeper model is worse at its best "
                       "learning rate**.")
    if hi < 0:
        return head + ": **the deeper model is better at its best learning rate**."
    return head + (": **no measurable difference** — with a tuned learning rate the rise seen at the fixed rate is "
                   "not there at this precision." if rise is not None and rise > 0 else
                   ": **no measurable difference** at their best learning rates, as at the fixed rate.")


def width_trend_sentence(trend, depth, regime=None) -> str:
    """03: does widening the model at fixed `depth` lower the loss at every step (`check_monotone`)? "At
    every step" only when every step's difference is significant; when only the means fall, "on average";
    a step the other way within noise is no evidence against it: only a significantly reversed step is."""
    lo, hi = trend.ci["slope"]
    steps = trend.steps
    noisy = steps[~steps["significant"]]
    wrong = steps[~steps["expected"]]
    reversed_ = wrong[wrong["significant"]]

    def step(row):
        return f"from W = {fmt(row.x_from)} to {fmt(row.x_to)} the mean loss moves {row.diff:+.4f} nats the other way"

    if trend.verdict == "monotone, every step significant":
        how = "paired over seeds" if (steps["method"] == "paired").all() else "each interval"
        head = f"**lowered the loss at every step** tried ({how}, every step's difference excludes 0), as the paper reports"
    elif trend.verdict == "monotone":
        head = (f"**lowered the loss on average**: the mean fell at every step, but {len(noisy)} of {len(steps)} steps "
                "are within noise (" + ", ".join(f"{fmt(r.x_from)}→{fmt(r.x_to)}" for r in noisy.itertuples())
                + ": their intervals include 0), so not every step is shown to help")
    elif reversed_.empty:
        head = ("**no step is significantly reversed**: " + "; ".join(step(r) for r in wrong.itertuples())
                + " (within noise: the interval includes 0)")
    else:
        head = ("**did not lower the loss steadily**: " + "; ".join(
            f"{step(r)} ({trend.level:.0%} CI {r.low:+.4f} to {r.high:+.4f}, excluding 0)"
            for r in reversed_.itertuples()))
    return _with_regime(f"At depth {depth}, widening the model {head}. Over the whole range the loss changes by "
                        f"{trend.params['slope']:+.4f} nats per e-fold of width ({trend.level:.0%} CI {lo:+.4f} to "
                        f"{hi:+.4f}).", regime)


def persistence_sentence(taus, regime=None) -> str:
    """03: do the runs' block gradients decay toward the input (`fit.tau_by_width`'s verdicts)? Only where
    every run's do is there a persistence length τ to scale with width and set beside the paper's."""
    counts = taus["verdict"].value_counts()
    decay, grow = int(counts.get("decays toward the input", 0)), int(counts.get("grows toward the input", 0))
    text = (f"In {decay} of {len(taus)} runs the block gradients **decay** toward the input (the interval of the "
            f"decay rate 1/τ lies above zero), in {grow} they **grow** toward it, in the rest there is no clear trend")
    if decay == len(taus):
        return _with_regime(text + ": each run has a persistence length τ, and τ(W) is fitted below.", regime)
    return _with_regime(text + ". The paper's decay toward the input is **not observed** at this scale, so there is "
                        "no persistence length to scale with width: τ(W) is not fitted and the paper's τ ∝ W^0.44 "
                        "(from gradients after 1000 steps of models of 17M–7B parameters) is not graded here.",
                        regime)


PAPER_DEEP_PENALTY = 0.12   # Depth Delusion, 7B: 64 × 2816 is 0.12 nats worse than 32 × 4096 at equal compute


def compute_matched_sentence(gap, flops, regime=None) -> str:
    """04: `gap` is `compare_losses(loss at D_crit, loss of the deeper, narrower shape)` at `flops` each, in
    the runs' `regime`. The paper's figure comes with its scale; below compute-optimal training a deeper
    shape is expected to lag simply because it learns more slowly per token, which the sentence says."""
    g, (lo, hi), level = gap.params["gap"], gap.ci["gap"], f"{gap.level:.0%} CI"
    if gap.verdict == "first lower":
        claim = (f"the over-deep shape is **worse** by {g:.4f} nats ({level} {lo:.4f} to {hi:.4f}) — the direction "
                 f"the paper reports ({PAPER_DEEP_PENALTY} nats at 7B: 64 × 2816 with 6.38B parameters against "
                 f"32 × 4096 with 6.86B)")
    elif gap.verdict == "second lower":
        claim = (f"the over-deep shape is **better** by {-g:.4f} nats ({level} {-hi:.4f} to {-lo:.4f}) — the paper's "
                 f"claim (made at 7B parameters) is **not reproduced** at this scale")
    else:
        claim = (f"the two shapes are **indistinguishable** (gap {g:+.4f}, {level} {lo:+.4f} to {hi:+.4f}): at this "
                 f"scale and budget the data neither confirm nor refute the paper's penalty for depth")
    text = f"At {float(flops):.3g} training FLOPs each, {claim}."
    ratio = (regime or {}).get("tokens_per_param_all") or (regime or {}).get("tokens_per_param")
    if ratio and ratio[1] < CHINCHILLA_TOKENS_PER_PARAM and gap.verdict == "first lower":
        text += (" At so few tokens per parameter a deeper, narrower shape is expected to lag because it learns more "
                 "slowly per token, so the gap measures that as much as a limit to useful depth.")
    return _with_regime(text, regime)


MOBILELLM_REGIME = "models of 125M–350M parameters trained on about 1T tokens and scored on zero-shot accuracy"


def deep_vs_shallow_sentence(gap, deep, shallow, regime=None) -> str:
    """06: `gap` is `compare_losses(shallowest, deepest)` at equal parameters; `deep`, `shallow` are
    their (depth, width); `regime` that of the runs, set beside MobileLLM's."""
    outcome = {"second lower": f"**Deep-and-thin wins** here, as MobileLLM claims for {MOBILELLM_REGIME}.",
               "first lower": f"**Wide-and-shallow wins** here: MobileLLM's claim ({MOBILELLM_REGIME}) is "
                              "**not reproduced** at this scale.",
               }.get(gap.verdict, "The data **cannot separate** them at this scale and budget.")
    return _with_regime(f"Deepest (D = {deep[0]}, W = {deep[1]}) minus shallowest (D = {shallow[0]}, "
                        f"W = {shallow[1]}): {gap.summary()} {outcome}", regime)


def sharing_sentence(sharing, regime=None) -> str:
    """06: `sharing` has a row per depth — the shared model minus its unshared twin (`gap`) and the
    `verdict` of `compare_losses`. Reproduced when sharing lowers the loss measurably at most depths."""
    helped, hurt = (sharing[sharing["verdict"] == v] for v in ("second lower", "first lower"))
    listed = lambda rows: ", ".join(f"D = {d}" for d in rows["depth"]) or "none"   # noqa: E731
    return _with_regime(
        f"Sharing lowered the loss with an interval excluding zero at {len(helped)} of {len(sharing)} depths "
        f"({listed(helped)}) and raised it at {len(hurt)} ({listed(hurt)}); mean change {sharing['gap'].mean():+.4f} "
        f"nats. MobileLLM's sharing gain ({MOBILELLM_REGIME}) is "
        + ("**reproduced**." if len(helped) > len(sharing) / 2 else "**not clearly reproduced** at this scale."),
        regime)


def lr_grid_sentence(best, cap) -> str:
    """07: where `transfer.bracketed_best_lr` extended the grid (`best`: its frame) and where its `cap` of
    more rates per shape was hit (the best rate still at an end: a bound)."""
    grown, capped = best[best["extended"] > 0], best[best["cap_hit"]]
    shape = lambda r: f"{r.parametrization} D = {r.depth:g} W = {r.width:g}"
    text = (f"The grid was extended by factors of 2 for {len(grown)} of {len(best)} shapes (at most {cap} more rates "
            "each): " + "; ".join(f"{shape(r)} +{r.extended}" for r in grown.itertuples()) if len(grown) else
            f"Every one of the {len(best)} optima was bracketed by the grid as designed (no extension needed)")
    return text + (f". The cap was hit for {len(capped)}: " + "; ".join(map(shape, capped.itertuples()))
                   + " — their best rates are bounds, the optimum lies beyond." if len(capped) else ".")


def lr_spread_sentence(spread, over, regime=None) -> str:
    """07: how far the best learning rate moves across widths or depths (`over`), per parametrisation
    (`transfer.lr_spread`'s frame)."""
    parts = []
    for row in spread.itertuples():
        edge = (f" ({row.n_at_edge} of {row.n_sizes} optima still at an edge of the grid: bounds)" if row.n_at_edge else "")
        parts.append(f"under **{row.parametrization}** the best learning rate ranges over {row.lr_min:.2g}–"
                     f"{row.lr_max:.2g}, a factor of {row.ratio:.1f} ({row.octaves:.1f} octaves; slope "
                     f"{row.slope:+.2f} per log-{over}){edge}")
    return _with_regime(f"Across {over}s " + "; ".join(parts) + ".", regime)


def retuning_gain_sentence(gain, regime=None) -> str:
    """07: `gain` {depth: loss at the fixed lr minus loss at each depth's best lr}, shallowest first: did
    the fixed learning rate handicap the deepest model more than the shallowest?"""
    deep_more = gain.iloc[-1] > gain.iloc[0]
    return _with_regime("Re-tuning the learning rate per depth lowered SP's loss by "
            + ", ".join(f"{g:.3f} at D = {d}" for d, g in gain.items())
            + (" nats — more at the deepest depth than at the shallowest, so the fixed learning rate handicapped "
               "deep models more than shallow ones." if deep_more else
               " nats — no more at the deepest depth than at the shallowest, so the fixed learning rate did "
               "not single out deep models."), regime)


def epoch_check_sentence(epoch, n_points) -> str:
    """05: the Chinchilla fitter on Epoch AI's points against their published refit."""
    from .laws import CHINCHILLA_EPOCH_CI
    inside = [k for k in ("E", "alpha", "beta")
              if CHINCHILLA_EPOCH_CI[k][0] <= epoch.params[k] <= CHINCHILLA_EPOCH_CI[k][1]]
    return (f"On {n_points} points: E = {epoch.params['E']:.3f}, α = {epoch.params['alpha']:.3f}, "
            f"β = {epoch.params['beta']:.3f}; {len(inside)} of 3 (E, α, β) inside Epoch AI's published intervals"
            + (" — the fitter reproduces their refit." if len(inside) == 3 and epoch.identified else
               " — **check the fitter** before trusting the fits above."))


def _shape(depth, width) -> str:
    return f"D = {depth}, W = {width}"


def _arm(arm: str) -> str:
    return {"parameters": "Parameter arm (equal non-embedding parameters)",
            "flops": "FLOP arm (equal training FLOPs)"}.get(arm, f"Arm {arm}")


def accuracy_sentence(result, *, arm: str, regime=None) -> str:
    """08: `result` is `compare_accuracy(runs, shallower, deeper)` in one arm (`parameters` or `flops`):
    does the deeper shape score higher on the k-hop task? A negative verdict states what it could detect."""
    p, (lo, hi) = result.params, result.ci["gap"]
    first, second = _shape(p["depth_a"], p["width_a"]), _shape(p["depth_b"], p["width_b"])
    on = f"at {p['hops']} hop{'s' if p['hops'] != 1 else ''}" if p["hops"] else "over all hop counts"
    text = (f"{_arm(arm)}, k-hop accuracy {on}: {second} scores {p['mean_b']:.3f}, {first} "
            f"{p['mean_a']:.3f}; difference {p['gap']:+.3f} ({result.level:.0%} CI {lo:+.3f} to {hi:+.3f}; "
            f"{result.method}). ")
    if result.verdict == "second higher":
        text += "**The deeper shape reasons better** on this task."
    elif result.verdict == "first higher":
        text += "**The shallower shape reasons better** on this task: depth did not help here."
    else:
        text += (f"**No measurable difference**: a difference of {p['detectable']:.3f} or more would have been found "
                 f"with {POWER:.0%} power.")
    if result.health:
        text += " (" + "; ".join(result.health) + ".)"
    return _with_regime(text, regime)


def agreement_sentence(result, *, arm: str) -> str:
    """08: `result` is `ranking_agreement(runs)` in one arm: do text loss and k-hop accuracy rank the
    shapes alike (Kendall's τ), and is any pair of shapes ordered oppositely with both differences clear?"""
    tau, (lo, hi) = result.params["tau"], result.ci["tau"]
    head = (f"{_arm(arm)}, {result.params['shapes']} shapes: Kendall's τ between the loss ranking and the "
            f"accuracy ranking = {tau:+.2f} ({result.level:.0%} interval {lo:+.2f} to {hi:+.2f}). ")
    if result.verdict == "disagree":
        pairs = "; ".join(result.health)
        return head + (f"**The loss hides what the task shows**: {result.params['opposed']} pair(s) of shapes are "
                       f"ordered oppositely by loss and by accuracy with both differences clear (Bonferroni over the "
                       f"pairs): {pairs}.")
    if result.verdict == "agree":
        return head + ("**Loss and reasoning rank the shapes alike**: no pair is ordered oppositely with both "
                       "differences clear, and τ is above 0.")
    return head + ("**Unclear**: no pair of shapes is ordered oppositely with both differences clear, but the "
                   "rankings are too uncertain to say they agree.")


def depth_for_accuracy_sentence(result) -> str:
    """08: `result` is `depth_for_accuracy(runs, target)`: the shallowest depth reaching the target at
    each hop count, and its slope against log₂ k where three or more hop counts reach it."""
    rows = result.data
    target = result.params["target"]
    listed = "; ".join(
        f"k = {r.hops}: " + (f"D = {int(r.depth)}" + (f" (surely from D = {int(r.surely)})" if r.surely == r.surely else "")
                             if r.depth == r.depth else f"not reached (best {r.best_accuracy:.3f} at D = {r.best_depth})")
        for r in rows.itertuples())
    text = f"Shallowest depth reaching accuracy {target:g}: {listed}."
    if "slope" in result.params:
        lo, hi = result.ci["slope"]
        text += (f" Against log₂ k the needed depth grows by {result.params['slope']:+.2f} layers per doubling of k "
                 f"({result.level:.0%} CI {lo:+.2f} to {hi:+.2f}; depths are grid values, so this is a coarse reading"
                 f" of Sanford et al.'s log k).")
    else:
        text += " " + "; ".join(result.health).capitalize() + "."
    return text
