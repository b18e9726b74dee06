"""Every notebook in notebooks/ executed headless with papermill at the `smoke` preset, as CI runs them:
no error output, every expected chart written (PNG and SVG, non-empty) showing what it promises (visible
marks, a mark for every legend entry, none on the plot's edge, titled axes), the manifest present.

Each notebook gets the stdlib corpus, one torch thread and a store and output folder under tmp_path
(one store shared by all, as outputs/runs.sqlite is shared in real use). Wall times are printed and
written to outputs/notebook_times.json. Not marked slow: CI must run them, so the smoke preset keeps each
one near a minute on 2 cores.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from chart_marks import chart_problems

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
    "08_depth_reasoning": ["accuracy_vs_depth_parameters", "accuracy_vs_depth_flops", "accuracy_by_hops"],
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


def test_outputs_of_different_presets_and_parameters_never_share_a_folder(tmp_path, monkeypatch):
    """02 in JupyterLab at its default smoke preset once wrote its charts and manifest over `make run`'s cpu
    results: each preset, and each set of parameters that changes results, has its own folder — the same
    one whether the runner or the notebook itself (JupyterLab: no output_dir) chooses it."""
    name = "02_baseline_sweep"
    monkeypatch.setattr(presets, "default_output_dir", lambda notebook: tmp_path / notebook)   # start creates it
    root = presets.default_output_dir(name)

    def runner(**params):
        return notebooks._output_dir_for(name, notebooks.check_parameters(name, params), params)

    def kernel(**params):     # what the notebook's own cell does: start(name, locals()) with no output_dir
        cell = dict(preset="smoke", store_path=str(tmp_path / "runs.sqlite"), output_dir=None, widths=None)
        return notebooks.start(name, {**cell, **params}).settings.output_dir

    assert runner(preset="cpu", executor="parallel") == kernel(preset="cpu", executor="parallel") == root / "cpu"
    assert runner() == kernel(preset="smoke") == root / "smoke"
    assert runner(preset="cpu", widths=[16, 32]) == root / "cpu"            # the preset's own widths
    wide = runner(preset="cpu", widths=[64, 128])
    assert wide == kernel(preset="cpu", widths=[64, 128]) and wide.name.startswith("cpu-") and wide != runner(
        preset="cpu", widths=[64])
    assert notebooks.variant(presets.settings(name, "cpu", widths=[64, 128])) == (wide.name, {"widths": [64, 128]})
    primer = notebooks._output_dir_for("01_primer", notebooks.check_parameters("01_primer", {"tau": 4.0}), {"tau": 4.0})
    assert primer.parent == tmp_path / "01_primer" and primer.name.startswith("smoke-")


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


def test_the_race_counts_as_training_in_the_notebooks_summary(tmp_path, monkeypatch):
    """01 ended with "Every run came from the store: nothing trained" after its race trained two runs."""
    from dwlib import sweep
    nb = notebooks.Session(presets.settings("01_primer", "smoke", store_path=tmp_path / "runs.sqlite",
                                            output_dir=tmp_path / "out"))
    said = []
    monkeypatch.setattr(nb, "say", said.append)
    pairs = [sweep.make_pair(ModelConfig(context=16, head_dim=16), None, depth=d, width=w, steps=4, batch_size=2,
                             eval_every=2, eval_batches=1, threads=1) for d, w in ((2, 32), (1, 64))]
    widgets.race(pairs, ["deep", "wide"], live=widgets.LiveChart(), session=nb)
    assert len(nb.training) == 2 and all(measured > 0 for measured, _ in nb.training)
    nb.finish()
    assert "Training took" in said[-1] and "nothing trained" not in said[-1], said[-1]
    again = notebooks.Session(nb.settings)             # a rerun: both races come from the store
    monkeypatch.setattr(again, "say", said.append)
    widgets.race(pairs, ["deep", "wide"], live=widgets.LiveChart(), session=again)
    again.finish()
    assert "nothing trained" in said[-1]


@pytest.mark.parametrize("name", list(EXPECTED_CHARTS))
def test_notebook_runs_under_papermill(name, shared, capfd, monkeypatch):
    out = shared / name
    started = time.perf_counter()
    monkeypatch.setenv(notebooks.STATUS_ENV, "1")     # the sweeps' status lines, as `make run` shows them
    result = notebooks.execute(name, dict(preset="smoke", corpus="stdlib", store_path=str(shared / "runs.sqlite"),
                                          output_dir=str(out)))
    seconds = time.perf_counter() - started
    err = capfd.readouterr().err
    assert "without encryption" not in err and "Traceback" not in err     # no kernel log on the terminal
    if name == "02_baseline_sweep":     # the kernel printed the sweep's status on the runner's stderr
        total = len(presets.design(presets.settings(name, "smoke")))
        assert f"02_baseline_sweep · runs {total}/{total} · " in err, err
    if name in ("02_baseline_sweep", "03_width_validation", "04_compute_matched", "06_mobilellm_counterpoint"):
        # the explorer's sliders start at a swept shape: its Train button trains exactly the sweep's run
        state = json.dumps(nbformat.read(result["path"], as_version=4).metadata.get("widgets", {}))
        assert "the store holds this run (complete)" in state, f"{name}: the explorer's run is not the sweep's"
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
    for svg in sorted(out.glob("*.svg")):              # every saved chart shows what it promises (chart_marks)
        assert chart_problems(svg.read_text()) == [], f"{name}: {svg.name}"
    manifest = json.loads((out / notebooks.MANIFEST).read_text())
    assert manifest["preset"] == "smoke" and set(EXPECTED_CHARTS[name]) <= set(manifest["charts"])
    # every prose sentence from nb.say is Markdown built from the run: at least one per notebook
    assert any("text/markdown" in o.get("data", {}) for c in executed.cells for o in c.get("outputs", []))


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


def test_a_prediction_made_on_a_busy_machine_says_how_much_longer_it_will_take(monkeypatch):
    """In JupyterLab beside 14 other busy processes on 2 cores the race took 19 s against 2 s predicted (a
    quiet machine's figure): the prediction says so."""
    import os
    monkeypatch.setattr("dwlib.config.available_cores", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (14.8, 14.0, 12.0))
    assert presets.contention(1) == pytest.approx(7.9)
    assert presets.busy_note(2.0) == (" The machine is busy now (load 14.8 on 2 cores): with the cores shared fairly "
                                      "that is about 8× longer, 16 s.")
    monkeypatch.setattr(os, "getloadavg", lambda: (0.3, 0.2, 0.1))
    assert presets.contention(1) == 1.0 and presets.busy_note(2.0) == ""


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


# -- the headless runner as a user runs it: `python -m dwlib.notebooks` in its own process ----------------

# notebook 02 at a tiny size: 2 shapes × 2 annealed budgets, one seed; a few seconds of training
TINY_02 = ["02", "-p", "preset", "smoke", "-p", "widths", "[16]", "-p", "depths", "[1, 2]", "-p", "seeds", "[0]",
           "-p", "budget", "2048", "-p", "tuning_seeds", "[10]", "-p", "lr_factors", "[1]"]
# the same with runs long enough (~5 s each) to be interrupted while one trains
LONG_02 = TINY_02 + ["-p", "depths", "[1, 2, 3, 4]", "-p", "budget", "200000"]
STATUS = re.compile(r"^02_baseline_sweep · runs (\d+)/(\d+)(?: \(\d+ failed\))?(?: · now (.+?))? · "
                    r"\d+m\d\ds elapsed · (?:about \d+m\d\ds left in this sweep|sweep done)", re.M)


def runner(args, tmp: Path) -> subprocess.Popen:
    """The runner in a subprocess of its own (a session, as a terminal starts it), on this checkout, one
    thread, with a private TMPDIR, outside pytest's environment (ipykernel captures output differently
    under pytest); store and outputs under `tmp` unless `args` name others."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env.update(PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1",
               DWLIB_THREADS="1", TMPDIR=str(tmp / "tmp"))
    (tmp / "tmp").mkdir(parents=True, exist_ok=True)
    paths = ["-p", "store_path", str(tmp / "runs.sqlite"),
             "-p", "output_dir", str(tmp / "outputs" / "02_baseline_sweep")]
    # Ctrl-C interrupts, as in a terminal, even when pytest runs in the background (which ignores SIGINT)
    return subprocess.Popen([sys.executable, "-m", "dwlib.notebooks", args[0], *paths, *args[1:]], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def leftovers(tmp: Path, before: set) -> list:
    """Files a runner left: new entries in notebooks/ (once kernel-ipc-N sockets) and anything in its
    TMPDIR (once the kernel's connection file and a progress folder); torch's own compile cache aside."""
    new = sorted(set(os.listdir(notebooks.notebook_dir())) - before)
    return new + sorted(p for p in os.listdir(tmp / "tmp") if not p.startswith("torchinductor"))


def finish(proc, timeout: float = 600) -> tuple[str, str]:
    """The runner's (stdout, stderr) once it exits; killed (and the test failed) after `timeout` s."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise


def until_status(proc) -> str:
    """Read the runner's stderr up to its first status line (the sweep has started); what was read."""
    read = ""
    for line in proc.stderr:
        read += line
        if STATUS.match(line):
            return read
    raise AssertionError(f"the runner ended (rc {proc.wait()}) before a sweep started:\n{read}")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Notebook 02 at a tiny size, run once by the runner with the parallel executor (as `make run`)."""
    tmp = tmp_path_factory.mktemp("tiny02")
    before = set(os.listdir(notebooks.notebook_dir()))
    proc = runner(TINY_02 + ["-p", "executor", "parallel"], tmp)
    out, err = finish(proc)
    return dict(tmp=tmp, rc=proc.returncode, out=out, err=err, left=leftovers(tmp, before))


def test_runner_prints_one_status_line_per_finished_group(tiny_run):
    """What `make run` shows: runs done / total, the groups in training, elapsed and time left; each
    group once (a trunk and its cooldown branch once read 'D=1 W=16 seed 0, D=1 W=16 seed 0', and
    queued groups were listed as running), and nothing of it written into the executed notebook."""
    assert tiny_run["rc"] == 0, tiny_run["err"]
    lines = STATUS.findall(tiny_run["err"])
    from dwlib.config import available_cores
    training = ", ".join(["D=1 W=16 seed 0", "D=2 W=16 seed 0"][:available_cores()])   # one group per worker
    assert lines[0] == ("0", "4", training), tiny_run["err"]
    for done, total, now in lines:
        names = now.split(", ") if now else []
        assert len(names) == len(set(names)) <= 2, tiny_run["err"]
    assert ("4", "4", "") in lines and "sweep done" in tiny_run["err"]
    executed = (tiny_run["tmp"] / "outputs" / "02_baseline_sweep" / "02_baseline_sweep.ipynb").read_text()
    assert "runs 0/4" not in executed and "Traceback" not in tiny_run["err"]
    assert tiny_run["left"] == []


def test_a_failed_rerun_leaves_no_stale_verdicts_in_the_report(tiny_run, tmp_path):
    """A rerun into the same output_dir that fails part-way (here every run fails: its corpus is too short
    for one validation window) once left the old manifest, and the report showed the old verdicts beside
    the failed notebook; now the folder is marked as failed."""
    outputs = tmp_path / "outputs"
    shutil.copytree(tiny_run["tmp"] / "outputs", outputs)
    folder = outputs / "02_baseline_sweep"
    old = json.loads((folder / notebooks.MANIFEST).read_text())["verdicts"]
    assert old
    (tmp_path / "tiny.txt").write_text("too short " * 20)
    proc = runner(TINY_02 + ["-p", "corpus", f"file:{tmp_path / 'tiny.txt'}", "-p", "output_dir", str(folder)],
                  tmp_path)
    _, err = finish(proc)
    assert proc.returncode == 1 and not (folder / notebooks.MANIFEST).exists(), err
    report = subprocess.run([sys.executable, "-m", "dwlib.report", "--outputs", str(outputs), "--to",
                             str(tmp_path / "report")], capture_output=True, text=True, cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert report.returncode == 3 and "02_baseline_sweep is marked" in report.stderr, report.stderr
    index = (tmp_path / "report" / "index.html").read_text()
    assert "Not reported" in index and "failed or was stopped" in index
    assert not any(v[:40] in index for v in old)       # none of the old verdicts
    assert re.search(r"02_baseline_sweep: FAILED — cell \d+: ValueError: no complete runs", err), err


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path):
    """Ctrl-C (SIGINT to the terminal's process group) while a run trains: one line saying what finished
    and what will resume, exit 130, no traceback, nothing left behind; the run resumes later."""
    before = set(os.listdir(notebooks.notebook_dir()))
    proc = runner(LONG_02, tmp_path)
    started = until_status(proc)      # the sweep has started: a run is in training
    time.sleep(3)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = finish(proc, 120)
    assert proc.returncode == 130, started + err
    assert re.fullmatch(r"interrupted; \d+ runs finished, [1-9]\d* resumable", err.splitlines()[-1]), err
    assert "Traceback" not in out + err and len(err.splitlines()) <= 3, err
    from dwlib.store import Store
    status = Store(tmp_path / "runs.sqlite", readonly=True).runs_frame()["status"]
    assert "interrupted" in set(status), status
    assert leftovers(tmp_path, before) == []


def test_a_killed_runner_leaves_nothing_behind(tmp_path):
    """kill -9 of the runner while a run trains once left kernel-ipc-N sockets in notebooks/ (which then
    broke `--corpus file:notebooks/`), a /tmp/dwlib-progress-* folder and a /tmp/tmp*.json."""
    before = set(os.listdir(notebooks.notebook_dir()))
    proc = runner(LONG_02, tmp_path)
    until_status(proc)
    proc.kill()
    proc.wait()
    time.sleep(3)                     # the orphaned kernel notices its parent is gone within a second
    assert leftovers(tmp_path, before) == []


@pytest.mark.parametrize("args, message", [
    (TINY_02 + ["-p", "corpus", "file:/nonexistent"], "error: corpus path '/nonexistent' does not exist"),
    (TINY_02 + ["-p", "threads", "0"],
     "error: threads must be a positive integer (None: $DWLIB_THREADS or all cores); got 0"),
    (TINY_02 + ["-p", "threads", "-1"], "got -1"),
    (TINY_02 + ["-p", "seeds", "[]"], "error: seeds is empty"),
    (TINY_02 + ["--times", "{tmp}/a_file/times.json"], "error: --times {tmp}/a_file/times.json cannot be written"),
    (TINY_02 + ["-p", "device", "cuda"], "error: device 'cuda' asked for, but this torch build sees no CUDA GPU"),
    (["02", "-p", "preset", "gpu"], "error: preset 'gpu' is sized for one GPU and would run on this machine's CPU"),
], ids=["missing-corpus", "threads-0", "threads-minus-1", "no-seeds", "times-unwritable", "cuda-without-gpu",
        "gpu-preset-on-cpu"])
def test_runner_refuses_bad_input_before_any_kernel_starts(args, message, tmp_path, capsys):
    """Each once started the notebook: a missing corpus failed every run (the cause only inside the .ipynb),
    threads 0 silently meant all cores, -1 was torch's error, no seeds failed in a cell, --times was checked
    after the run, CUDA on a CPU machine failed every run, the gpu preset started a sweep of thousands of hours.
    (In this process: the command line's own code, without a second start of torch for each case.)"""
    import torch
    if torch.cuda.is_available() and ("cuda" in args or "gpu" in args):
        pytest.skip("this machine has a GPU")
    (tmp_path / "a_file").write_text("x")
    folder = tmp_path / "outputs" / "02_baseline_sweep"
    argv = [args[0], "-p", "store_path", str(tmp_path / "runs.sqlite"), "-p", "output_dir", str(folder),
            *(a.format(tmp=tmp_path) for a in args[1:])]
    assert notebooks.main(argv) == 2
    out, err = capsys.readouterr()
    assert message.format(tmp=tmp_path) in err and "running" not in out, err
    assert not (tmp_path / "outputs").exists()        # nothing ran
    if "gpu" in args:
        assert re.search(r"its \d+ runs would take about [\d.]+ h here; use -p preset cpu, or give --allow-cpu", err)


def test_allow_cpu_runs_the_gpu_preset_with_a_warning(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.warns(RuntimeWarning, match=r"preset 'gpu' is sized for one GPU .* about [\d.]+ h here"):
        _, s = notebooks.check_run("02_baseline_sweep", dict(preset="gpu", store_path=str(tmp_path / "runs.sqlite")),
                                   allow_cpu=True)
    assert s.preset == "gpu"


def test_failed_runs_print_their_first_distinct_error(tmp_path):
    """Runs that fail (here: a corpus too short for the context) once printed nothing of their error on
    the terminal; now the first run that fails a way says it, once, then the notebook's failure."""
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("too short for a window of 65 tokens in its validation split " * 5)
    proc = runner(TINY_02 + ["-p", "corpus", f"file:{corpus}"], tmp_path)
    _, err = finish(proc)
    assert proc.returncode == 1, err
    said = re.findall(r"D=\d+ W=16 seed 0 failed: ValueError: the validation split has \d+ tokens", err)
    assert len(said) == 1 and "runs 4/4 (4 failed)" in err, err
    assert re.search(r"FAILED — cell \d+: ValueError: no complete runs", err.splitlines()[-1]), err
