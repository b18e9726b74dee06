"""Notebook plumbing: what every notebook in notebooks/ calls, and a runner that executes them.

Inside a notebook (after its papermill parameters cell):

    nb = notebooks.start("02_baseline_sweep", locals())   # the parameters cell → settings, store, output dir
    s = nb.settings                # the resolved parameters: s.widths, s.budget, s.seeds …
    pairs = nb.design()            # the runs this notebook trains at this preset (dwlib.presets)
    nb.show_design(pairs)          # what will run, and its predicted cost
    runs = nb.run(pairs)           # train what the store lacks (tqdm progress), the frame of those runs
    nb.figure(chart, "loss_vs_depth")   # display a chart and save it as PNG + SVG under the output dir
    nb.say(f"D* = {…}")            # a Markdown sentence whose numbers come from this run
    nb.verdict(f"…")               # a conclusion: shown like say, and listed in the report's index
    nb.finish()                    # manifest.json: charts written, verdicts, settings, wall time

From a shell (papermill needs .ipynb, so the runner converts the jupytext source in memory):

    python -m dwlib.notebooks 02_baseline_sweep -p preset cpu -p widths "[64, 128]"
    python -m dwlib.notebooks all -p preset smoke        # every notebook, in order

Each executed notebook lands beside its charts: outputs/<name>/<name>.ipynb (or under -p output_dir).
"""
from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import presets

MANIFEST = "manifest.json"
PROGRESS_ENV = "DWLIB_PROGRESS"    # the runner's progress file, which Session.run writes


# ---------------------------------------------------------------------------------------------
# Inside a notebook
# ---------------------------------------------------------------------------------------------

class Session:
    """One notebook execution: its resolved settings (`nb.settings`: widths, budget … — a notebook reads
    them as `s = nb.settings`), the results store, and the charts and verdicts written so far."""

    def __init__(self, s: presets.Settings):
        from .store import Store
        self.settings = s
        self.store = Store(s.store_path)
        s.output_dir.mkdir(parents=True, exist_ok=True)
        self.charts: list[str] = []
        self.verdicts: list[str] = []
        self.training: list[tuple[float, float]] = []   # (measured, predicted) seconds of each run() that trained
        self.started = time.perf_counter()

    # -- runs ---------------------------------------------------------------------------------

    def design(self) -> list[tuple]:
        """The (ModelConfig, TrainConfig) pairs this notebook trains with its settings."""
        return presets.design(self.settings)

    def show_design(self, pairs):
        """Display the design — one row per distinct shape with its runs, seeds (as ranges: "0–2") and,
        when they vary, learning rates — and its predicted cost."""
        from IPython.display import display
        from .sweep import design_frame
        frame = design_frame(pairs)
        keys = [c for c in ("depth", "width", "heads", "params", "non_embedding_params", "flops_per_token",
                            "steps", "tokens", "flops") if c in frame]
        groups = frame.groupby(keys, sort=False, dropna=False)
        table = groups.size().reset_index(name="runs")
        table["seeds"] = groups["seed"].apply(_ranges).to_numpy()
        if frame["lr"].nunique() > 1:
            table["lrs"] = groups["lr"].apply(lambda s: f"{s.nunique()} ({s.min():g}–{s.max():g})"
                                              if s.nunique() > 1 else f"{s.iloc[0]:g}").to_numpy()
        cost = presets.design_cost(pairs)
        display(table)
        device = self._device()
        minutes = self.predicted_seconds(pairs) / 60
        self.say(f"**{cost['runs']} runs**, {cost['flops']:.3g} training FLOPs in all. Predicted time on "
                 f"this machine's {device.upper()} (before the store's cache): about **{_minutes(minutes)}** "
                 f"with the `{self.settings.executor}` executor — a rough guide from `dwlib.presets.estimate_seconds`; "
                 f"runs the store already holds cost nothing.")

    def _device(self) -> str:
        import torch
        device = self.settings.device
        return "cuda" if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()) else "cpu"

    def workers(self) -> int:
        """Runs trained side by side: one single-thread worker per core with the parallel executor."""
        from .config import available_cores
        return available_cores() if self.settings.executor == "parallel" else 1

    def predicted_seconds(self, pairs) -> float:
        """`presets.estimate_seconds` for these pairs with this notebook's device and executor."""
        workers = self.workers()
        threads = 1 if workers > 1 else self.settings.threads
        return presets.estimate_seconds(pairs, self._device(), threads, workers=min(workers, len(pairs)))

    def run(self, pairs):
        """Train every pair the store does not hold yet, one progress bar per run; returns the store's
        frame of exactly these runs (finished ones from the cache). Under the headless runner each run
        also updates the progress file it shows in the terminal ($DWLIB_PROGRESS)."""
        from .sweep import run_sweep
        pairs = list(dict.fromkeys(pairs))           # run_sweep's indices count distinct pairs
        progress, trained = self._progress_writer(pairs), []

        def on_result(i, outcome):
            trained.extend([i] if outcome["how"] == "trained" else [])
            if progress is not None:
                progress(i, outcome)

        started = time.perf_counter()
        frame = run_sweep(pairs, store=self.store, executor=self.settings.executor, on_result=on_result)
        if trained:   # measured against predicted, for the summary (finish)
            self.training.append((time.perf_counter() - started, self.predicted_seconds([pairs[i] for i in trained])))
        return frame

    def _progress_writer(self, pairs):
        """A run_sweep `on_result` that writes the sweep's progress as JSON to $DWLIB_PROGRESS (the runner
        sets it and polls the file): runs done and total, the shapes in training, seconds elapsed and an
        estimate of those left. None when the variable is unset (JupyterLab, plain papermill)."""
        path = os.environ.get(PROGRESS_ENV)
        if not path:
            return None
        cost = [self.predicted_seconds([p]) for p in pairs]
        workers = min(self.workers(), len(pairs))
        done, started, trained_cost = set(), time.time(), 0.0

        def write(i=None, outcome=None):
            nonlocal trained_cost
            if i is not None:
                done.add(i)
                trained_cost += cost[i] if outcome["how"] == "trained" else 0.0
            left = [j for j in range(len(pairs)) if j not in done]
            # measured seconds per predicted second once a run has trained; the cost model before
            pace = (time.time() - started) / trained_cost if trained_cost else 1.0 / workers
            state = dict(done=len(done), total=len(pairs), remaining=pace * sum(cost[j] for j in left),
                         time=time.time(), current=[_label(*pairs[j]) for j in left[:workers]])
            Path(path + ".tmp").write_text(json.dumps(state))
            os.replace(path + ".tmp", path)

        write()
        return write

    def store_runs(self, like):
        """Every complete run in the store comparable with the runs in `like`: same corpus fingerprint,
        tokenizer, context, batch size, learning rate, schedule and block design (MLP, norm, sharing,
        parametrisation) — e.g. other notebooks' runs that a scaling law may be fitted to as well."""
        frame = self.store.runs_frame()
        frame = frame[frame["status"] == "complete"]
        for col in ("corpus_fingerprint", "tokenizer", "context", "batch_size", "lr", "schedule", "mlp", "norm",
                    "share", "parametrization"):
            frame = frame[frame[col].isin(like[col].unique())]
        return frame.reset_index(drop=True)

    def curves(self, runs):
        """Loss curves (long format) of the runs in a frame."""
        return self.store.curves_frame(keys=list(runs["run_key"]))

    def grad_norms(self, runs):
        """Per-layer gradient norms (long format) of the runs in a frame."""
        return self.store.grad_norms_frame(keys=list(runs["run_key"]))

    # -- output -------------------------------------------------------------------------------

    def figure(self, chart, name: str) -> None:
        """Display `chart` in this cell and save it as <output_dir>/<name>.png and .svg."""
        from IPython.display import display
        from .charts import save_chart
        save_chart(chart, self.settings.output_dir / name)
        self.charts.append(name)
        display(chart)

    def say(self, text: str):
        """Display Markdown (use f-strings so the numbers come from this run)."""
        from IPython.display import Markdown, display
        display(Markdown(text))

    def verdict(self, text: str):
        """Display a conclusion of this run (Markdown) and record it for manifest.json's `verdicts`, which
        the report's index lists (`python -m dwlib.report`)."""
        self.verdicts.append(text)
        self.say(text)

    @staticmethod
    def attempt(fn, *args, **kwargs):
        """(fn(*args, **kwargs), None), or (None, the reason) when the fitter refuses the data with a
        ValueError — so a notebook can say in prose why a fit was not made instead of stopping."""
        try:
            return fn(*args, **kwargs), None
        except ValueError as err:
            return None, str(err)

    def finish(self) -> dict:
        """Write <output_dir>/manifest.json (charts, verdicts, settings, wall time) and say where outputs are."""
        seconds = time.perf_counter() - self.started
        s = self.settings
        measured, predicted = (sum(t[i] for t in self.training) for i in (0, 1))
        manifest = dict(notebook=s.notebook, preset=s.preset, charts=self.charts, verdicts=self.verdicts,
                        wall_seconds=seconds, training_seconds=measured, predicted_training_seconds=predicted,
                        store=str(s.store_path), output_dir=str(s.output_dir),
                        settings={k: _plain(v) for k, v in vars(s).items()})
        (s.output_dir / MANIFEST).write_text(json.dumps(manifest, indent=1))
        trained = (f" Training took {_minutes(measured / 60)} against {_minutes(predicted / 60)} predicted by the cost "
                   "model calibrated on this machine (`presets.machine_speed`)." if self.training else
                   " Every run came from the store: nothing trained.")
        self.say(f"Done in {seconds:.0f} s.{trained} Charts (PNG and SVG): `{s.output_dir}`; runs: `{s.store_path}`.")
        return manifest


def start(notebook: str, parameters: dict) -> Session:
    """Begin a notebook from its parameters cell, `notebooks.start(name, locals())`: resolve the values of
    its settings (`presets.parameters`; a name of the notebook's own, such as 01's `tau`, is left to it)
    against the preset (`presets.settings`), open the store, create the output folder, size torch's
    thread pool, and let altair embed any data size."""
    import altair as alt
    import torch
    names = presets.parameters(notebook, parameters.get("preset", "smoke"))
    s = presets.settings(notebook, **{k: v for k, v in parameters.items() if k in names})
    torch.set_num_threads(s.threads)
    alt.data_transformers.disable_max_rows()   # curves of a few dozen runs exceed altair's 5000-row guard
    return Session(s)


def _minutes(m: float) -> str:
    if m < 1:
        return f"{m * 60:.0f} s"
    if m < 120:
        return f"{m:.0f} min"
    return f"{m / 60:.1f} h"


def _label(m, t) -> str:
    return f"D={m.depth} W={m.width} seed {t.seed}"


def _ranges(values) -> str:
    """Distinct integers as ranges, e.g. seeds [0, 0, 1, 2, 5, 1] → "0–2, 5"."""
    parts, values = [], sorted(set(int(v) for v in values))
    start = values[0]
    for prev, v in zip(values, values[1:] + [None]):
        if v is None or v != prev + 1:     # a range ends at prev
            parts.append(f"{start}" if start == prev else f"{start}–{prev}")
            start = v
    return ", ".join(parts)


def _plain(v):
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


# ---------------------------------------------------------------------------------------------
# Running notebooks headless (papermill)
# ---------------------------------------------------------------------------------------------

def notebook_dir() -> Path:
    return presets.repo_root() / "notebooks"


def available() -> list[str]:
    """Notebook names (jupytext sources notebooks/NN_name.py), in order."""
    return sorted(p.stem for p in notebook_dir().glob("[0-9][0-9]_*.py"))


def execute(name: str, parameters: dict | None = None, *, log_output: bool = False,
            progress_bar: bool = False, progress=None) -> dict:
    """Execute notebooks/<name>.py with papermill and `parameters`; write the executed notebook to
    <output_dir>/<name>.ipynb. Returns {name, path, output_dir, seconds}. Raises ValueError before
    running anything for a parameter the notebook does not declare or an output_dir that cannot be a
    folder (see `check_parameters`), and papermill's PapermillExecutionError (with the failing cell)
    if a cell fails. `progress`: a text stream (e.g. sys.stderr) on which a status line shows the
    sweep's runs done / total, the shape in training, and elapsed and remaining time while it runs."""
    import papermill as pm
    parameters = dict(parameters or {})
    notebook = check_parameters(name, parameters)
    output_dir = Path(parameters.get("output_dir") or presets.default_output_dir(name)).resolve()
    parameters["output_dir"] = str(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:   # a file in the way: FileExistsError or NotADirectoryError
        raise ValueError(f"output_dir {str(output_dir)!r} cannot be a folder ({e.strerror}); the executed "
                         "notebook and its charts go there: give a folder") from None
    target = output_dir / f"{name}.ipynb"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dwlib-progress-") as folder:
        progress_file = Path(folder) / "progress.json"
        status = _StatusLine(name, progress_file, progress) if progress is not None else None
        try:
            pm.execute_notebook(notebook, str(target), parameters=parameters, kernel_name="python3",
                                cwd=str(notebook_dir()), log_output=log_output, progress_bar=progress_bar,
                                kernel_manager_class=_kernel_manager({PROGRESS_ENV: str(progress_file)}))
        finally:
            if status is not None:
                status.stop()
    return dict(name=name, path=str(target), output_dir=str(output_dir), seconds=time.perf_counter() - started)


def check_parameters(name: str, parameters: dict):
    """The notebook (jupytext-read) if every parameter is one its parameters cell assigns; ValueError
    naming the others and listing the declared ones if not. Papermill only warns and runs on the
    default, so a misspelt `-p widht` would quietly sweep the preset's widths. Also refuses an
    output_dir that is an existing file."""
    import jupytext
    source = notebook_dir() / f"{name}.py"
    if not source.exists():
        raise ValueError(f"no notebook {name!r}; available: {', '.join(available())}")
    notebook = jupytext.read(source)
    declared = []
    for cell in notebook.cells:
        if "parameters" in cell.metadata.get("tags", []):
            for node in ast.parse(cell.source).body:   # `name = value` (or `name: type = value`) lines
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                declared += [t.id for t in targets if isinstance(t, ast.Name)]
    unknown = []
    for key in parameters:
        if key not in declared:
            close = difflib.get_close_matches(key, declared, 1)
            unknown.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    if unknown:
        raise ValueError(f"notebook {name} has no parameter {', '.join(unknown)}; its parameters are: "
                         f"{', '.join(declared)}")
    output_dir = parameters.get("output_dir")
    if output_dir is not None and Path(output_dir).exists() and not Path(output_dir).is_dir():
        raise ValueError(f"output_dir {str(output_dir)!r} is a file; the executed notebook and its charts "
                         "go there: give a folder")
    return notebook


def _kernel_manager(env: dict):
    """A kernel manager class for papermill that adds `env` to the kernel's environment and, on POSIX,
    talks to the kernel over IPC (socket files in Jupyter's private runtime folder) rather than TCP
    ports: nothing else on the machine can connect, and ipykernel has no "running over TCP without
    encryption" warning to print on every start."""
    from jupyter_client.manager import AsyncKernelManager

    class RunnerKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(**{"transport": "ipc" if os.name == "posix" else "tcp", **kwargs})

        async def _async_pre_start_kernel(self, **kwargs):
            kwargs["env"] = {**(kwargs.get("env") or os.environ), **env}
            return await super()._async_pre_start_kernel(**kwargs)

    return RunnerKernelManager


class _StatusLine:
    """A thread that shows a notebook's progress on `stream` once a second while it runs: rewritten in
    place on a terminal, one line per finished run (and one a minute) otherwise (logs, CI)."""

    def __init__(self, name: str, progress_file: Path, stream, every: float = 1.0):
        self.name, self.file, self.stream, self.every = name, progress_file, stream, every
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.started, self.last, self.printed = time.monotonic(), None, time.monotonic()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"dwlib-status-{name}", daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.done.wait(self.every):
            self.show()

    def read(self) -> tuple:
        """(runs done and total or None, the status text)."""
        elapsed = time.monotonic() - self.started
        try:
            state = json.loads(self.file.read_text())
        except (OSError, ValueError):   # no sweep yet (kernel starting, plain cells), or mid-write
            return None, f"{self.name} · {_clock(elapsed)} elapsed"
        key, runs = (state["done"], state["total"]), f"runs {state['done']}/{state['total']}"
        if state["done"] == state["total"]:
            return key, f"{self.name} · {runs} · {_clock(elapsed)} elapsed · sweep done, running the next cells"
        left = max(0.0, state["remaining"] - (time.time() - state["time"]))
        return key, (f"{self.name} · {runs} · now {', '.join(state['current'])} · {_clock(elapsed)} elapsed · "
                     f"about {_clock(left)} left in this sweep")

    def show(self):
        key, text = self.read()
        if self.tty:
            self.stream.write("\r" + text[:200] + "\x1b[K")
        elif key != self.last or time.monotonic() - self.printed > 60:
            self.stream.write(text + "\n")    # a run finished, or a minute passed
            self.printed = time.monotonic()
        self.stream.flush()
        self.last = key

    def stop(self):
        self.done.set()
        self.thread.join()
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
        else:
            self.show()   # the last state, however short the notebook


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def parse_value(text: str):
    """A -p value: a Python literal (3, 1e12, [64, 128], None, True) when it reads as one, else the text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dwlib.notebooks",
        description="Execute dwlib's notebooks headless with papermill (jupytext sources converted in "
                    "memory). Each lands at <output_dir>/<name>.ipynb beside its charts; output_dir "
                    "defaults to outputs/<name>/.")
    parser.add_argument("names", nargs="*", help="notebook names (e.g. 02_baseline_sweep, or 02), or 'all'")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="a notebook parameter; VALUE is read as a Python literal when it is one "
                             "(-p preset cpu -p widths '[64, 128]' -p budget 1e12)")
    parser.add_argument("--list", action="store_true", help="list the notebooks and stop")
    parser.add_argument("--log-output", action="store_true", help="stream the cells' output to this terminal")
    parser.add_argument("--times", default=None, help="also write {name: seconds} as JSON to this file")
    args = parser.parse_args(argv)
    names = available()
    if args.list or not args.names:
        print("\n".join(names))
        return 0
    chosen = []
    for n in args.names:
        match = names if n == "all" else [x for x in names if x == n or x.split("_")[0] == n]
        if not match:
            print(f"error: no notebook {n!r}; available: {', '.join(names)}", file=sys.stderr)
            return 2
        chosen += [m for m in match if m not in chosen]
    parameters = {k: parse_value(v) for k, v in args.parameter}
    if "output_dir" in parameters and len(chosen) > 1:
        print("error: -p output_dir names one folder; give it for one notebook at a time", file=sys.stderr)
        return 2
    try:   # refuse a misspelt parameter before running anything, also in the middle of `all`
        for name in chosen:
            check_parameters(name, parameters)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    times = {}
    for name in chosen:
        print(f"{name}: running ({', '.join(f'{k}={v!r}' for k, v in parameters.items()) or 'defaults'}) …",
              flush=True)
        try:
            result = execute(name, parameters, log_output=args.log_output, progress=sys.stderr)
        except Exception as err:   # papermill's error names the failing cell; keep it short here
            print(f"{name}: FAILED — {type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}",
                  file=sys.stderr)
            return 1
        times[name] = round(result["seconds"], 1)
        print(f"{name}: done in {result['seconds']:.0f} s → {result['path']}", flush=True)
    if args.times:
        Path(args.times).parent.mkdir(parents=True, exist_ok=True)
        Path(args.times).write_text(json.dumps(times, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
