"""ipywidgets explorers for the notebooks: a parameter/FLOP calculator, the gradient-persistence picture,
a live training chart, a deep-vs-wide race, and a shape explorer whose Train button adds a run to a sweep.

Patterns that work both live in JupyterLab and headless under papermill:
- controls' defaults come from the notebook's parameters;
- derived views are `ipywidgets.HTML` widgets whose value (text, or a chart as inline SVG) is set again on
  every change (`view(draw, controls)`). Not `interactive_output`: it captures display output into an
  Output widget, and nbclient's Output-widget mimic answers each captured output with a message on the
  shell channel, which intermittently deadlocks a papermill run (observed here on this project's
  notebooks; nbclient issue #312). Setting a widget's value sends only kernel-to-frontend updates;
- nothing trains from a slider: training sits behind a Train button (papermill never clicks it), or in a
  plain cell (the race) whose final chart is also shown outside any widget;
- charts inside widgets exist only in widget state, so notebooks show key figures in plain cells too.
"""
from __future__ import annotations

import html
import math
import time

import ipywidgets as widgets
from IPython.display import display

from . import charts, presets
from .config import (ModelConfig, breakdown, count_params, embedding_params, flops_per_token,
                     non_embedding_params, paper_critical_depth, paper_critical_depth_power, steps_for_budget,
                     tokens_per_step)

PAPER_VOCAB = 50257          # GPT-2's vocabulary, which the Depth Delusion's parameter counts imply
SLIDER_LAYOUT = widgets.Layout(width="420px")
SLIDER_STYLE = {"description_width": "90px"}
_SLIDER = dict(continuous_update=False, layout=SLIDER_LAYOUT, style=SLIDER_STYLE)   # redraw on release only


def depth_slider(value: int, *, low: int = 1, high: int = 64, description: str = "depth") -> widgets.IntSlider:
    """An IntSlider for a depth; redraws on release (continuous_update off) so nothing heavy runs mid-drag."""
    return widgets.IntSlider(value=value, min=low, max=max(high, value), step=1, description=description, **_SLIDER)


def width_slider(value: int, *, step: int = 16, low: int | None = None, high: int = 512,
                 description: str = "width") -> widgets.IntSlider:
    """An IntSlider for a width in multiples of `step` (the head size, so every value is a valid shape)."""
    return widgets.IntSlider(value=value, min=low if low is not None else step, max=max(high, value), step=step,
                             description=description, **_SLIDER)


def choice_slider(values, *, near: float, description: str) -> widgets.SelectionSlider:
    """A slider over a few given values (e.g. a learning-rate grid), starting at the one nearest `near`
    on a log scale."""
    return widgets.SelectionSlider(options=[(f"{v:g}", v) for v in values], description=description,
                                   value=min(values, key=lambda v: abs(math.log(v / near))), **_SLIDER)


def view(draw, controls: dict) -> widgets.VBox:
    """Controls plus a view that redraws on every change: `draw(**values)` returns an altair chart, an
    HTML string, or a list of them (shown one below the other). The safe replacement for
    `interactive_output` + `display` under papermill (see the module docstring)."""
    out = widgets.HTML()

    def update(_=None):
        out.value = render(draw(**{name: c.value for name, c in controls.items()}))

    for c in controls.values():
        c.observe(update, names="value")
    update()
    return widgets.VBox(list(controls.values()) + [out])


def render(item) -> str:
    """HTML for a view: an altair chart becomes inline SVG, a string passes as HTML, a list stacks."""
    if item is None:
        return ""
    if isinstance(item, (list, tuple)):
        return "".join(f"<div>{render(i)}</div>" for i in item)
    if isinstance(item, str):
        return item
    return charts.to_svg(item)


def flops_slider(value: float, *, low: float = 1e8, high: float = 1e20,
                 description: str = "FLOPs") -> widgets.FloatLogSlider:
    """A log-scale slider for a FLOP budget (quarter-decade steps)."""
    return widgets.FloatLogSlider(value=value, base=10, min=math.log10(low), max=math.log10(max(high, value)),
                                  step=0.25, description=description, readout_format=".2e", **_SLIDER)


# ---------------------------------------------------------------------------------------------
# Calculator: where parameters and FLOPs go
# ---------------------------------------------------------------------------------------------

def shape_facts(depth: int, width: int, context: int, flops: float, vocab_size: int = PAPER_VOCAB,
                head_dim: int = 64) -> dict:
    """Numbers the calculator shows for one shape (plain data, also handy in prose). FLOPs per token are
    `flops_per_token` (6N + 6·D·T·W), the definition budgets use, so `tokens` is what `flops` buys;
    `head_flops_per_token` is the output head's 6·W·V on top, which budgets leave out."""
    cfg = ModelConfig(depth=depth, width=width, context=context, vocab_size=vocab_size, head_dim=head_dim)
    parts = breakdown(cfg)
    fpt = flops_per_token(cfg)
    tokens = flops / fpt
    n = non_embedding_params(cfg)
    return dict(depth=depth, width=width, context=context, non_embedding_params=n,
                embedding_params=embedding_params(cfg), params=count_params(cfg), flops_per_token=fpt,
                head_flops_per_token=parts["head_flops"],
                attention_flops_share=parts["flops"]["attention over context"] / fpt, budget=flops, tokens=tokens,
                tokens_per_param=tokens / n, tokens_per_param_all=tokens / count_params(cfg),
                d_crit_log=paper_critical_depth(width),
                d_crit_power=paper_critical_depth_power(width), aspect_ratio=width / depth)


def calculator_html(f: dict) -> str:
    """The calculator's readout (HTML). Its first line is "non-embedding parameters: 1,234,567"; its
    totals are the breakdown chart's (`budget_breakdown_chart`) titles."""
    over = f["depth"] > f["d_crit_log"]
    verdict = (f"<b style='color:#d62728'>deeper</b> than the paper's critical depth: it predicts extra layers "
               f"here raise the loss" if over else
               f"<b style='color:#1f77b4'>within</b> the paper's critical depth: it predicts depth still helps")
    return (
        f"<div style='font-family:sans-serif;line-height:1.5'>"
        f"<b>non-embedding parameters: {f['non_embedding_params']:,}</b> "
        f"(12·D·W² = {12 * f['depth'] * f['width'] ** 2:,} plus norm gains)<br>"
        f"parameters: {f['params']:,} with untied embeddings (vocab {PAPER_VOCAB:,}: embedding + head "
        f"{f['embedding_params']:,})<br>"
        f"training FLOPs per token (6N + 6·D·T·W): {f['flops_per_token']:,.0f} (attention over the context "
        f"is {f['attention_flops_share']:.0%} of it); the output head adds {f['head_flops_per_token']:,.0f} "
        f"(6·W·V), which budgets do not count<br>"
        f"tokens a budget of {f['budget']:.3g} FLOPs buys: {f['tokens']:,.0f} "
        f"({f['tokens_per_param']:.1f} per non-embedding parameter, {f['tokens_per_param_all']:.1f} per parameter "
        f"counting embeddings and head — the count Chinchilla's optimum of ≈ 20 uses)<br>"
        f"aspect ratio W/D = {f['aspect_ratio']:.1f}; the paper's critical depth at W = {f['width']:,}: "
        f"2.43·ln W = {f['d_crit_log']:.1f} (its W^0.44 law: {f['d_crit_power']:.1f}) — "
        f"D = {f['depth']} is {verdict}</div>")


def calculator(depth: int = 12, width: int = 768, context: int = 1024, flops: float = 1e19,
               *, head_dim: int = 64, chart: bool = True) -> widgets.VBox:
    """Sliders "depth", "width", "context" and a FLOP budget; the readout (an HTML widget with CSS class
    `dwlib-calc`) updates on every change, and so does a chart of where parameters and FLOPs go."""
    style = {"description_width": "110px"}    # "budget (FLOPs)" fits
    d = depth_slider(depth, high=128)
    w = width_slider(width, step=head_dim, low=head_dim, high=8192)
    c = widgets.IntSlider(value=context, min=64, max=max(8192, context), step=64, description="context", **_SLIDER)
    b = widgets.FloatLogSlider(value=flops, base=10, min=15, max=25, step=0.25, description="budget (FLOPs)",
                               readout_format=".2e", **_SLIDER)
    readout = widgets.HTML()
    readout.add_class("dwlib-calc")
    picture = widgets.HTML()

    def update(_=None):
        readout.value = calculator_html(shape_facts(d.value, w.value, c.value, b.value, head_dim=head_dim))
        if chart:
            cfg = ModelConfig(depth=d.value, width=w.value, context=c.value, vocab_size=PAPER_VOCAB, head_dim=head_dim)
            picture.value = render(charts.budget_breakdown_chart(cfg))

    for s in (d, w, c, b):
        s.style = style
        s.observe(update, names="value")
    update()
    return widgets.VBox([d, w, c, b, readout, picture])


# ---------------------------------------------------------------------------------------------
# Gradient persistence: ‖∇_ℓ‖ ≈ ‖∇_D‖·exp(−(D − ℓ)/τ)
# ---------------------------------------------------------------------------------------------

def persistence_explorer(depth: int = 24, tau: float = 8.0) -> widgets.VBox:
    """Sliders for depth D and persistence length τ; the per-layer gradient profile and how much of the
    top layer's gradient reaches the first block redraw on every change."""
    d = depth_slider(depth, high=96, description="layers D")
    t = widgets.FloatSlider(value=tau, min=0.5, max=64.0, step=0.5, description="τ (layers)", **_SLIDER)

    def draw(depth, tau):
        text = (f"<div style='font-family:sans-serif'>The first block receives "
                f"<b>{math.exp(-(depth - 1) / tau):.1%}</b> of the last block's gradient "
                f"(e<sup>−(D−1)/τ</sup>); {min(depth, math.ceil(tau))} of {depth} blocks lie within one τ "
                f"of the output.</div>")
        return [text, charts.persistence_profile_chart(depth, tau)]

    return view(draw, {"depth": d, "tau": t})


# ---------------------------------------------------------------------------------------------
# Live training chart and the race
# ---------------------------------------------------------------------------------------------

class LiveChart:
    """A view (`.out`, an HTML widget: display it) that redraws a loss-vs-tokens and vs-seconds chart as
    evaluations arrive. `callback(label)` gives a trainer `on_eval` function; `points` is the tidy list
    of what was drawn. Seconds are each run's own training seconds since its first step (the trainer's
    `seconds`), never this chart's clock, so setup before a run does not count against it."""

    def __init__(self, title: str = "validation loss", min_interval: float = 0.5):
        self.out = widgets.HTML()
        self.points: list[dict] = []
        self.title = title
        self.min_interval = min_interval   # seconds between redraws: rendering an SVG costs ~0.1 s
        self._last = 0.0

    def callback(self, label: str):
        def on_eval(point: dict):
            # a point without the trainer's seconds is drawn against tokens only, until add_record
            self.points.append(dict(label=label, tokens=point["tokens"], step=point["step"],
                                    val_loss=point["val_loss"], train_loss=point["train_loss"],
                                    seconds=point.get("seconds")))
            if time.perf_counter() - self._last >= self.min_interval:
                self.redraw()
        return on_eval

    def add_record(self, label: str, record: dict):
        """Draw a finished run from its stored record, replacing its live points, so a run drawn live and
        the same run served from the store later give the same chart. Curve rows without `seconds` get
        the run's training seconds pro rata by step."""
        per_step = (record.get("train_seconds") or 0.0) / max(1, record.get("steps") or 1)
        self.points = [p for p in self.points if p["label"] != label]
        for c in record.get("curve", []):
            if c.get("val_loss") is not None:
                seconds = c.get("seconds")
                self.points.append(dict(label=label, tokens=c["tokens"], step=c["step"], val_loss=c["val_loss"],
                                        train_loss=c["train_loss"],
                                        seconds=c["step"] * per_step if seconds is None else seconds))

    def chart(self):
        return charts.live_curves_chart(self.points, title=self.title)

    def redraw(self):
        self._last = time.perf_counter()
        if not self.points:
            return
        self.out.value = render(self.chart())


def race(pairs, labels, *, store=None, live: LiveChart | None = None, session=None):
    """Train each (ModelConfig, TrainConfig) pair through the store (`session.store` when `store` is not
    given), one after another, drawing their validation losses live; each finished run is then redrawn
    from its stored record, so a rerun that finds the runs in the store draws the same chart at once.
    `session` (a notebook's `notebooks.Session`) is told what trained and how long it took, for its
    summary. Returns the store's frame of the runs. Display `live.out` before calling to watch it."""
    from . import sweep
    store = store if store is not None else session.store
    live = live or LiveChart()
    keys = []
    for (m, t), label in zip(pairs, labels):
        tokens = sweep.load_tokens(t.corpus, t.tokenizer)
        keys.append(sweep.key_for(m, t, tokens))
        stored = store.get(keys[-1])
        if stored is None or stored["status"] not in ("complete", "diverged"):
            started = time.perf_counter()
            sweep.run(m, t, store=store, on_eval=live.callback(label), tokens=tokens, progress=False)
            if session is not None:
                session.trained(time.perf_counter() - started, [(m, t)])
            stored = store.get(keys[-1])
        live.add_record(label, stored["result"])
        live.redraw()
    return store.runs_frame(keys=keys)


# ---------------------------------------------------------------------------------------------
# Shape explorer: choose a shape, see predictions at once, train it on request
# ---------------------------------------------------------------------------------------------

class ShapeExplorer:
    """Controls (sliders) → `pair_for(**values)` → (ModelConfig, TrainConfig). Every change redraws
    `predict(model, train)` (an HTML/Markdown string, or None) above the shape's size, its training
    settings, whether the store holds that run and, if not, its predicted time on `threads` torch threads
    (the threads it trains with); the Train button trains it with a live loss chart (or shows it from the
    store), remembers its key in `trained`, tells `session` (a `notebooks.Session`) what trained, and
    calls `on_trained(record)` (e.g. to redraw the sweep's chart with it)."""

    def __init__(self, pair_for, controls: dict, *, store, predict=None, on_trained=None, threads: int = 1,
                 session=None):
        self.pair_for, self.controls, self.store = pair_for, controls, store
        self.predict, self.on_trained, self.threads, self.session = predict, on_trained, threads, session
        self.trained: list[str] = []
        self.button = widgets.Button(description="Train", button_style="primary", icon="play",
                                     tooltip="train this shape (stored; re-running finds it in the store)")
        self.status = widgets.HTML()
        self.live = LiveChart("this shape, live")
        self.prediction = widgets.HTML()
        for c in controls.values():
            c.observe(self._show, names="value")
        self._show()
        self.button.on_click(self._train)

    def widget(self) -> widgets.VBox:
        return widgets.VBox(list(self.controls.values()) + [self.prediction, widgets.HBox([self.button, self.status]),
                                                            self.live.out])

    def _ipython_display_(self):
        display(self.widget())

    def _pair(self):
        """The controls' pair, trained on this explorer's threads unless it names its own."""
        from dataclasses import replace
        m, t = self.pair_for(**{name: c.value for name, c in self.controls.items()})
        return m, (t if t.threads is not None else replace(t, threads=self.threads))

    def _show(self, _change=None):
        from . import sweep
        try:
            m, t = self._pair()
        except ValueError as err:
            self.prediction.value = f"<span style='color:#d62728'>{html.escape(str(err))}</span>"
            return
        lines = []
        if self.predict is not None:
            text = self.predict(m, t)
            if text:
                lines.append(text)
        steps = steps_for_budget(m, t)
        tokens = steps * tokens_per_step(m, t)
        stored = self.store.get(sweep.key_for(m, t))
        seconds = presets.estimate_seconds([(m, t)], "cpu", t.threads)
        state = (f"the store holds this run ({stored['status']}): Train shows it at once" if stored else
                 f"not in the store yet: about {seconds:.0f} s to train on {t.threads} CPU thread"
                 f"{'s' if t.threads > 1 else ''} (the cost model's figure for this machine, quiet)")
        if not stored and presets.busy_note(seconds, t.threads):
            state += "." + presets.busy_note(seconds, t.threads).rstrip(".")
        lines.append(f"D = {m.depth}, W = {m.width}" + (f", each block applied {m.share}×" if m.share > 1 else "")
                     + f": {non_embedding_params(m):,} non-embedding parameters, {steps:,} steps "
                     f"({tokens:,} tokens, {flops_per_token(m) * tokens:.3g} FLOPs). The paper's D_crit at this width: "
                     f"{paper_critical_depth(m.width):.1f}.")
        lines.append(f"Trained as the notebook's runs are: schedule {t.schedule}"
                     + (f", warmup {t.warmup} steps" if t.warmup is not None else "")
                     + (f", cooldown over the last {t.cooldown:.0%}" if t.schedule.startswith("wsd") else "")
                     + f", lr {t.lr:g}, batch {t.batch_size}, seed {t.seed}; {state}.")
        self.prediction.value = "<div style='font-family:sans-serif'>" + "<br>".join(lines) + "</div>"

    def _train(self, _button=None):
        from . import sweep
        m, t = self._pair()
        self.button.disabled = True
        self.status.value = "training…"
        self.live.points.clear()
        try:
            label = f"D={m.depth} W={m.width}" + (f" ×{m.share}" if m.share > 1 else "")
            fresh = self.store.get(sweep.key_for(m, t)) is None
            started = time.perf_counter()
            record = sweep.run(m, t, store=self.store, on_eval=self.live.callback(label), progress=False)
            if fresh and self.session is not None:
                self.session.trained(time.perf_counter() - started, [(m, t)])
            self.live.add_record(label, record)
            self.live.redraw()
            self.trained.append(record["run_key"])
            self.status.value = (f"{record['status']}: validation loss {record['val_loss']:.4f}"
                                 if record.get("val_loss") is not None else record["status"])
            if record.get("task_accuracy_by_hops"):     # a k-hop task in the corpus: its score per hop count
                self.status.value += "; k-hop accuracy " + ", ".join(
                    f"{k} hop{'s' if k != '1' else ''} {v['accuracy']:.3f} ({v['scored']:,} scored)"
                    for k, v in sorted(record["task_accuracy_by_hops"].items(), key=lambda kv: int(kv[0])))
            if self.on_trained is not None:
                self.on_trained(record)
            self._show()
        except Exception as err:   # show it beside the button; the notebook keeps working
            self.status.value = f"<span style='color:#d62728'>{type(err).__name__}: {html.escape(str(err))}</span>"
        finally:
            self.button.disabled = False


def explore(nb, pair_for, controls: dict, *, runs, chart, predict=None) -> ShapeExplorer:
    """A notebook's "explore a shape" block: a `ShapeExplorer` of `pair_for(**controls)` with its
    `predict` line and Train button, above `chart(frame)` — the store's frame of `runs` plus every shape
    trained here that is not one of them (column `trained_here`: charts draw those apart, out of the
    means) — which redraws after each training; a chart that refuses its data (ValueError: too few runs)
    shows the reason instead. `pair_for` should train with the notebook's own settings (schedule, warmup,
    budget), so that a swept shape is the sweep's run. `nb` is the notebook's `notebooks.Session` (its
    store, thread count and training summary). Displays both and returns the explorer."""
    view = widgets.HTML()
    own = set(runs["run_key"])

    def redraw(_record=None):
        frame = nb.store.runs_frame(keys=list(runs["run_key"]) + explorer.trained)
        here = frame["run_key"].isin(explorer.trained) & ~frame["run_key"].isin(own)
        try:
            view.value = render(chart(frame.assign(trained_here=here)))
        except ValueError as err:
            view.value = f"<i>{html.escape(str(err))}</i>"

    explorer = ShapeExplorer(pair_for, controls, store=nb.store, predict=predict, on_trained=redraw,
                             threads=nb.settings.threads, session=nb)
    redraw()
    display(explorer, view)
    return explorer
