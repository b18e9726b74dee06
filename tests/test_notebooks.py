"""Every notebook in notebooks/ executed headless with papermill at the `smoke` preset, as CI runs them:
no error output, every expected chart written (PNG and SVG, non-empty) with visible marks, the manifest
present.

Each notebook gets the stdlib corpus, one torch thread and a store and output folder under tmp_path
(one store shared by all, as outputs/runs.sqlite is shared in real use). Wall times are printed and
written to outputs/notebook_times.json. Not marked slow: CI must run them, so the smoke preset keeps each
one near a minute on 2 cores.
"""
import io
import json
import re
import time
from pathlib import Path

import nbformat
import pytest
from chart_marks import invisible_marks

from dwlib import notebooks, presets, widgets
from dwlib.config import ModelConfig, count_params, flops_per_token, non_embedding_params

REPO = Path(__file__).resolve().parents[1]
# Charts each notebook must write (stems; .png and .svg both) — a contract with their readers.
EXPECTED_CHARTS = {
    "01_primer": ["budget_breakdown", "gradient_persistence", "race"],
    "02_baseline_sweep": ["loss_vs_depth", "critical_depth", "lr_check", "loss_curves"],
    "03_width_validation": ["loss_vs_width", "grad_norm_profiles"],
    "04_compute_matched": ["loss_gap", "loss_vs_flops", "inference_speed"],
    "05_scaling_fit": ["depth_width_law", "chinchilla_form", "isoflop"],
    "06_mobilellm_counterpoint": ["loss_vs_depth_sharing", "loss_curves"],
    "07_fair_depth": ["coord_check_width", "coord_check_depth", "lr_curves_width", "best_lr_width",
                      "lr_curves_depth", "best_lr_depth", "loss_vs_depth_three_ways", "critical_depth_three_ways"],
}
TIMES = {}


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return tmp_path_factory.mktemp("notebooks")


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    # the kernel inherits the environment: one torch / OpenMP thread, as in the rest of the suite
    for name in ("DWLIB_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, "1")


def test_every_notebook_is_listed():
    assert set(EXPECTED_CHARTS) <= set(notebooks.available())


def test_parameters_cells_are_papermill_readable():
    # papermill reads one assignment per line: a second "=" (even in a comment) hides the parameter
    for name in notebooks.available():
        source = (notebooks.notebook_dir() / f"{name}.py").read_text()
        assert 'formats: ipynb,py:percent' in source and "name: python3" in source, name
        start = source.index('# %% tags=["parameters"]')
        cell = source[start:source.index("# %%", start + 10)].splitlines()[1:]
        bad = [line for line in cell if line.strip() and line.count("=") != 1]
        assert not bad, f"{name}: parameter lines papermill cannot parse: {bad}"
        names = {line.split("=")[0].strip() for line in cell if "=" in line}
        assert {"preset", "corpus", "tokenizer", "widths", "depths", "budget", "seeds", "device", "store_path",
                "executor", "output_dir", "threads"} <= names, name


def test_runner_refuses_a_parameter_the_notebook_does_not_declare(tmp_path, capsys):
    params = dict(preset="smoke", widht=[64], store_path=str(tmp_path / "runs.sqlite"), output_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"no parameter 'widht' \(did you mean 'widths'\?\).*preset, corpus"):
        notebooks.execute("02_baseline_sweep", params)
    assert not list(tmp_path.iterdir())                          # refused before anything ran
    assert notebooks.main(["02", "-p", "preset", "smoke", "-p", "widht", "[64]"]) == 2
    err = capsys.readouterr().err
    assert "'widht'" in err and "widths" in err and "output_dir" in err
    # with several notebooks, one that lacks the parameter stops the lot before any runs
    assert notebooks.main(["01", "02", "-p", "tau", "4"]) == 2
    assert "notebook 02_baseline_sweep has no parameter 'tau'" in capsys.readouterr().err


def test_runner_output_dir_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    for output_dir in (blocker, blocker / "inside"):
        with pytest.raises(ValueError, match=f"output_dir '{blocker}.*give a folder"):
            notebooks.execute("02_baseline_sweep", dict(preset="smoke", output_dir=str(output_dir)))
    assert notebooks.main(["02", "-p", "output_dir", str(blocker)]) == 2
    assert f"error: output_dir '{blocker}' is a file" in capsys.readouterr().err


@pytest.mark.parametrize("notebook", list(presets.DESIGNS))
def test_presets_resolve_and_price_every_design(notebook, monkeypatch):
    monkeypatch.setattr(presets, "machine_speed", lambda threads=1, **_: presets.REFERENCE_SPEED)
    for preset in presets.PRESETS:
        s = presets.settings(notebook, preset)
        pairs = presets.design(s)
        assert pairs, (notebook, preset)
        cost = presets.design_cost(pairs)
        if preset == "smoke":     # CI runs every notebook at smoke: keep each one's training short
            assert cost["cpu_minutes"] < 1.0, (notebook, cost)
        if preset == "cpu":       # "well under an hour" with one single-thread worker per core
            assert cost["cpu_minutes_2_workers"] < 40, (notebook, cost)
            assert len(s.seeds) >= 3 or notebook == "01_primer", (notebook, s.seeds)
    assert presets.settings(notebook, "smoke", widths=[48]).widths == [48]
    with pytest.raises(ValueError, match="preset"):
        presets.settings(notebook, "huge")


def test_start_takes_the_parameters_cell(tmp_path, monkeypatch):
    """A notebook hands start() its namespace: the names that are settings are resolved against the preset
    (None: the preset's value), the notebook's own (01's tau) and everything else there are left alone."""
    monkeypatch.setattr(presets, "default_store_path", lambda: tmp_path / "runs.sqlite")
    cell = dict(preset="cpu", corpus="stdlib", widths=[32, 48], depths=None, factor=3.0, store_path=None,
                output_dir=str(tmp_path / "out"), threads=1, tau=8.0, math=__import__("math"), In=[])
    s = notebooks.start("04_compute_matched", cell).settings
    assert (s.preset, s.widths, s.factor, s.threads) == ("cpu", [32, 48], 3.0, 1)
    assert s.depths == presets.preset_values("04_compute_matched", "cpu")["depths"] and not hasattr(s, "tau")
    assert s.store_path == tmp_path / "runs.sqlite" and s.output_dir == tmp_path / "out"
    with pytest.raises(ValueError, match="unknown notebook parameter 'factor'"):   # 04's knob, not 02's
        presets.settings("02_baseline_sweep", "smoke", factor=3.0)


def test_calculator_readout_updates_with_the_sliders():
    calc = widgets.calculator(depth=12, width=768, context=1024, flops=1e18)
    sliders = {c.description: c for c in calc.children if hasattr(c, "description") and c.description}
    assert {"depth", "width", "context"} <= set(sliders)
    readout = next(c for c in calc.children if "dwlib-calc" in getattr(c, "_dom_classes", ()))
    expected = non_embedding_params(ModelConfig(depth=12, width=768))
    assert f"non-embedding parameters: {expected:,}" in readout.value
    sliders["depth"].value = 24
    doubled = non_embedding_params(ModelConfig(depth=24, width=768))
    assert f"non-embedding parameters: {doubled:,}" in readout.value and doubled > expected
    assert "<svg" in calc.children[-1].value       # the breakdown chart redrew as inline SVG


def test_calculator_readout_and_chart_give_one_count():
    # the readout once said 6N + 6·D·T·W while the chart's title added the head's 6·W·V
    calc = widgets.calculator(depth=16, width=512, context=1024, flops=1e19)
    readout, chart = calc.children[-2].value, calc.children[-1].value
    cfg = ModelConfig(depth=16, width=512, context=1024, vocab_size=widgets.PAPER_VOCAB)
    params, fpt = f"{count_params(cfg):,}", f"{flops_per_token(cfg):,.0f}"
    assert params == "101,811,712" and fpt == "352,422,912"
    assert f"parameters: {params}" in readout and f"parameters: {params}" in chart
    assert f"(6N + 6·D·T·W): {fpt}" in readout and f"(6N + 6·D·T·W): {fpt}" in chart
    head = f"{6 * 512 * widgets.PAPER_VOCAB:,}"
    assert f"head adds {head}" in readout and f"head adds {head}" in chart


def test_race_times_each_run_from_its_own_record(tmp_path):
    from dwlib import sweep
    from dwlib.store import Store
    store = Store(tmp_path / "runs.sqlite")
    pairs = [sweep.make_pair(ModelConfig(context=16, head_dim=16), None, depth=d, width=w, steps=6, batch_size=2,
                             eval_every=2, eval_batches=1, threads=1) for d, w in ((4, 32), (1, 64))]
    live = widgets.LiveChart()
    runs = widgets.race(pairs, ["deep", "wide"], store=store, live=live)
    for label, run in zip(["deep", "wide"], runs.itertuples()):
        record = store.get(run.run_key)["result"]
        seconds = [p["seconds"] for p in live.points if p["label"] == label]
        assert len(seconds) == 3 and seconds == sorted(seconds)
        assert seconds[-1] <= record["wall_seconds"]    # the clock starts at the run's first step, not before
    again = widgets.LiveChart()                          # a rerun finds both in the store: the same chart
    widgets.race(pairs, ["deep", "wide"], store=store, live=again)
    assert again.points == live.points and again.out.value == live.out.value


@pytest.mark.parametrize("name", list(EXPECTED_CHARTS))
def test_notebook_runs_under_papermill(name, shared, capfd):
    out = shared / name
    started = time.perf_counter()
    status = io.StringIO()       # the runner's progress lines, as `make run` shows them (not a tty: one per run)
    result = notebooks.execute(name, dict(preset="smoke", corpus="stdlib", store_path=str(shared / "runs.sqlite"),
                                          output_dir=str(out)), progress=status)
    seconds = time.perf_counter() - started
    assert "without encryption" not in capfd.readouterr().err    # the kernel talks over IPC: no TCP warning
    if name == "02_baseline_sweep":     # the sweep wrote its progress file and the runner read it
        total = len(presets.design(presets.settings(name, "smoke")))
        assert f"02_baseline_sweep · runs {total}/{total} · " in status.getvalue(), status.getvalue()
    TIMES[name] = round(seconds, 1)
    print(f"\n{name}: {seconds:.1f} s under papermill (smoke)")
    _record_times()

    executed = nbformat.read(result["path"], as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"
              or (o.get("output_type") == "stream" and o.get("name") == "stderr" and "Traceback" in o.get("text", ""))]
    assert not errors, f"{name}: error output {errors[0]}"
    for stem in EXPECTED_CHARTS[name]:
        for ext in ("png", "svg"):
            path = out / f"{stem}.{ext}"
            assert path.exists() and path.stat().st_size > 0, f"{name}: chart {path.name} missing or empty"
    for svg in sorted(out.glob("*.svg")):              # every saved chart draws marks one can see
        assert invisible_marks(svg.read_text()) == [], f"{name}: {svg.name}"
    manifest = json.loads((out / notebooks.MANIFEST).read_text())
    assert manifest["preset"] == "smoke" and set(EXPECTED_CHARTS[name]) <= set(manifest["charts"])
    # every prose sentence from nb.say is Markdown built from the run: at least one per notebook
    assert any("text/markdown" in o.get("data", {}) for c in executed.cells for o in c.get("outputs", []))


def test_status_line_reads_the_progress_file(tmp_path):
    state = dict(done=3, total=12, remaining=200.0, time=time.time(), current=["D=8 W=64 seed 1", "D=12 W=64 seed 0"])
    (tmp_path / "progress.json").write_text(json.dumps(state))
    stream = io.StringIO()
    line = notebooks._StatusLine("02_baseline_sweep", tmp_path / "progress.json", stream, every=60)
    line.stop()                                      # not a terminal: prints the last state once
    assert re.fullmatch(r"02_baseline_sweep · runs 3/12 · now D=8 W=64 seed 1, D=12 W=64 seed 0 · 0m0\ds elapsed · "
                        r"about 3m[12]\ds left in this sweep\n", stream.getvalue()), stream.getvalue()
    (tmp_path / "progress.json").write_text(json.dumps(dict(state, done=12, current=[])))
    finished = notebooks._StatusLine("02_baseline_sweep", tmp_path / "progress.json", stream, every=60)
    finished.stop()
    last = stream.getvalue().splitlines()[-1]
    assert last.startswith("02_baseline_sweep · runs 12/12 · 0m00s elapsed · sweep done"), last


def _record_times():
    path = REPO / "outputs" / "notebook_times.json"
    try:
        path.parent.mkdir(exist_ok=True)
        old = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**old, **TIMES}, indent=1))
    except OSError:   # a read-only checkout: the times are printed anyway
        pass


def test_train_button_trains_stores_and_refreshes(tmp_path):
    from dwlib import sweep
    from dwlib.store import Store
    store = Store(tmp_path / "runs.sqlite")
    refreshed = []

    def pair_for(depth, width):
        return sweep.make_pair(ModelConfig(context=16, head_dim=16), None, depth=depth, width=width, steps=4,
                               batch_size=2, eval_every=2, eval_batches=1, threads=1)

    explorer = widgets.ShapeExplorer(pair_for, {"depth": widgets.depth_slider(1), "width": widgets.width_slider(32)},
                                     store=store, on_trained=refreshed.append)
    assert "non-embedding parameters" in explorer.prediction.value
    explorer.controls["depth"].value = 2                 # the prediction follows the slider at once
    assert "D = 2" in explorer.prediction.value and not explorer.trained
    explorer.button.click()                              # what a click in JupyterLab does
    assert len(explorer.trained) == 1 and store.get(explorer.trained[0])["status"] == "complete"
    assert refreshed and refreshed[0]["run_key"] == explorer.trained[0]
    assert "<svg" in explorer.live.out.value and "complete" in explorer.status.value
    explorer.button.click()                              # the same shape again: served from the store
    assert explorer.trained[0] == explorer.trained[1] and len(store.keys()) == 1


def test_explore_redraws_the_chart_with_the_shapes_trained_here(tmp_path, monkeypatch):
    from dwlib import charts, sweep
    nb = notebooks.Session(presets.settings("03_width_validation", "smoke", store_path=tmp_path / "runs.sqlite",
                                            output_dir=tmp_path / "out"))

    def pair_for(depth, width):
        return sweep.make_pair(ModelConfig(context=16, head_dim=16), None, depth=depth, width=width, steps=4,
                               batch_size=2, eval_every=2, eval_batches=1, threads=1)

    own = sweep.run(*pair_for(1, 32), store=nb.store, progress=False)     # the notebook's own sweep
    drawn = []

    def chart(frame):
        drawn.append(frame)
        return charts.loss_vs_chart(frame, "depth", color="width")

    shown = []
    monkeypatch.setattr(widgets, "display", lambda *objs: shown.extend(objs))   # what the cell would show
    explorer = widgets.explore(nb, pair_for, {"depth": widgets.depth_slider(2), "width": widgets.width_slider(32)},
                               runs=nb.store.runs_frame(keys=[own["run_key"]]), chart=chart)
    assert shown[0] is explorer and "D = 2, W = 32" in explorer.prediction.value
    assert drawn[-1]["run_key"].tolist() == [own["run_key"]] and "<svg" in shown[1].value
    explorer.button.click()
    frame = drawn[-1]                                    # redrawn after training: the sweep plus the new shape
    assert dict(zip(frame["run_key"], frame["trained_here"])) == {own["run_key"]: False, explorer.trained[0]: True}
    assert "<svg" in shown[1].value


def test_a_speed_file_from_an_older_cost_model_is_measured_again(tmp_path, monkeypatch):
    """A cached measurement without a field the cost model needs (written before the width term) used
    to end every notebook with KeyError: it is measured again instead."""
    monkeypatch.setenv("DWLIB_CACHE", str(tmp_path))
    path = presets.speed_cache_path(1)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(dict(layer_seconds=0.001, flops_per_second=1e11)))
    import dwlib.train
    timed, real = [], dwlib.train.train     # the calibration times the trainer's own steps, not a copy of them
    monkeypatch.setattr(dwlib.train, "train", lambda m, t, **kw: timed.append((m.depth, m.width)) or real(m, t, **kw))
    speed = presets.machine_speed(1)
    assert timed == list(presets.SPEED_SHAPES)
    assert set(presets.REFERENCE_SPEED) <= set(speed)
    assert set(presets.REFERENCE_SPEED) <= set(json.loads(path.read_text()))
