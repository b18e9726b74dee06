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

Each executed notebook lands beside its charts: outputs/<name>/<preset>/<name>.ipynb — a folder per preset,
and per set of parameters that changes results (`variant`): outputs/<name>/cpu-1a2b3c4d/ — or under -p
output_dir.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import hashlib
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

from . import presets

MANIFEST = "manifest.json"
STATUS_ENV = "DWLIB_STATUS"    # set by the runner: Session.run then prints each sweep's status on its terminal


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
        self.headlines: list[bool] = []     # which verdicts are headlines (listed first)
        self.training: list[tuple[float, float]] = []   # (measured, predicted) seconds of everything that trained
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
        threads = 1 if _workers(self.settings) > 1 else self.settings.threads
        self.say(f"**{cost['runs']} runs**, {cost['flops']:.3g} training FLOPs in all. Predicted time on "
                 f"this machine's {device.upper()} (before the store's cache): about **{_minutes(minutes)}** "
                 f"with the `{self.settings.executor}` executor and {threads} torch thread{'s' if threads > 1 else ''} "
                 f"per run — a rough guide from `dwlib.presets.estimate_seconds`, measured on a quiet machine; "
                 "runs the store already holds cost nothing."
                 + (presets.busy_note(minutes * 60, threads) if device == "cpu" else ""))

    def _device(self) -> str:
        import torch
        device = self.settings.device
        return "cuda" if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()) else "cpu"

    def predicted_seconds(self, pairs) -> float:
        """`presets.estimate_seconds` for these pairs with this notebook's device and executor."""
        return _predicted_seconds(self.settings, pairs, self._device())

    def run(self, pairs):
        """Train every pair the store does not hold yet, one progress bar per run; returns the store's
        frame of exactly these runs (finished ones from the cache). Under the headless runner
        ($DWLIB_STATUS set) it also prints the sweep's status on the runner's terminal (`_status_lines`)."""
        from .sweep import run_sweep
        pairs = list(dict.fromkeys(pairs))           # run_sweep's indices count distinct pairs
        status, trained = _status_lines(self, pairs) if os.environ.get(STATUS_ENV) else None, []

        def on_result(i, outcome):
            trained.extend([i] if outcome["how"] == "trained" else [])
            if status is not None:
                status(i, outcome)

        started = time.perf_counter()   # bars only in JupyterLab: under the runner its status lines are the progress
        frame = run_sweep(pairs, store=self.store, executor=self.settings.executor, on_result=on_result,
                          progress=status is None)
        self.trained(time.perf_counter() - started, [pairs[i] for i in trained])
        return frame

    def trained(self, seconds: float, pairs):
        """Note that `pairs` trained in `seconds` (by `run`, or a widget: the race, a Train button), for the
        summary `finish` prints: measured against predicted time."""
        if pairs:
            self.training.append((seconds, self.predicted_seconds(pairs)))

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

    def verdict(self, text: str, *, headline: bool = False):
        """Display a conclusion of this run (Markdown) and record it for manifest.json's `verdicts`, which
        the report's index lists (`python -m dwlib.report`): headlines first, then the rest in order."""
        i = sum(self.headlines) if headline else len(self.verdicts)
        self.verdicts.insert(i, text)
        self.headlines.insert(i, headline)
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
        name, changed = variant(s)
        manifest = dict(notebook=s.notebook, preset=s.preset, variant=name, parameters=_plain(changed),
                        charts=self.charts, verdicts=self.verdicts,
                        wall_seconds=seconds, training_seconds=measured, predicted_training_seconds=predicted,
                        store=str(s.store_path), output_dir=str(s.output_dir),
                        settings={k: _plain(v) for k, v in vars(s).items()})
        (s.output_dir / MANIFEST).write_text(json.dumps(manifest, indent=1))
        trained = (f" Training took {_minutes(measured / 60)} against {_minutes(predicted / 60)} predicted by the cost "
                   f"model calibrated on this machine (quiet) with {s.threads} torch "
                   f"thread{'s' if s.threads > 1 else ''} (`presets.machine_speed`)."
                   + presets.busy_note(predicted, s.threads)
                   if self.training else " Every run came from the store: nothing trained.")
        self.say(f"Done in {seconds:.0f} s.{trained} Charts (PNG and SVG): `{s.output_dir}`; runs: `{s.store_path}`.")
        return manifest


def start(notebook: str, parameters: dict) -> Session:
    """Begin a notebook from its parameters cell, `notebooks.start(name, locals())`: resolve the values of
    its settings (`presets.parameters`; a name of the notebook's own, such as 01's `tau`, is left to it)
    against the preset (`presets.settings`), open the store, create the output folder, size torch's
    thread pool, and let altair embed any data size."""
    import altair as alt
    import torch
    s = _settings(notebook, parameters)
    if not parameters.get("output_dir"):
        s.output_dir = default_output_dir(s)
    torch.set_num_threads(s.threads)
    alt.data_transformers.disable_max_rows()   # curves of a few dozen runs exceed altair's 5000-row guard
    return Session(s)


def _settings(notebook: str, parameters: dict) -> presets.Settings:
    """`presets.settings` from a parameters cell's values (a name of the notebook's own is left out)."""
    names = presets.parameters(notebook, parameters.get("preset", "smoke"))
    return presets.settings(notebook, **{k: v for k, v in parameters.items() if k in names})


# Settings that say where and how a notebook runs, not what it computes: they never name a folder
NOT_RESULTS = ("notebook", "preset", "store_path", "executor", "output_dir", "threads")


def variant(s: presets.Settings, extra: dict | None = None) -> tuple[str, dict]:
    """The name of what `s` computes: its preset ("cpu"), or "cpu-<8 hex digits>" when settings that change
    results differ from the preset's (those are returned too, with `extra`: parameters of the notebook's
    own that are not settings), so that outputs of different presets and parameters never share a folder."""
    base = vars(presets.settings(s.notebook, s.preset))
    changed = {k: v for k, v in vars(s).items() if k not in NOT_RESULTS and v != base.get(k)}
    changed.update(extra or {})
    if not changed:
        return s.preset, {}
    digest = hashlib.sha1(json.dumps(_plain(changed), sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{s.preset}-{digest}", changed


def default_output_dir(s: presets.Settings, extra: dict | None = None) -> Path:
    """outputs/<notebook>/<variant>/ (`variant`): e.g. outputs/02_baseline_sweep/cpu/."""
    return presets.default_output_dir(s.notebook) / variant(s, extra)[0]


def _workers(s: presets.Settings) -> int:
    """Runs trained side by side: one single-thread worker per core with the parallel executor."""
    from .config import available_cores
    return available_cores() if s.executor == "parallel" else 1


def _predicted_seconds(s: presets.Settings, pairs, device: str) -> float:
    workers = _workers(s)
    threads = 1 if workers > 1 else s.threads
    return presets.estimate_seconds(pairs, device, threads, workers=min(workers, len(pairs)))


def _minutes(m: float) -> str:
    if m < 1:
        return f"{m * 60:.0f} s"
    if m < 120:
        return f"{m:.0f} min"
    return f"{m / 60:.1f} h"


def _status_lines(nb: Session, pairs):
    """A run_sweep `on_result` for the headless runner: a line on the runner's terminal when the sweep
    starts and each time a group of runs (a trunk and its cooldown branches) trains or fails — runs done
    / total, the groups in training, elapsed time and the time left (the cost model, scaled by the
    measured pace once a group has trained) — with each distinct error of a failed run said once."""
    from .sweep import branch_groups
    groups = branch_groups(pairs)
    labels = _group_labels(pairs, groups)
    cost = [nb.predicted_seconds([pairs[i] for i in group]) for group in groups]
    workers = min(_workers(nb.settings), len(groups))
    group_of = {i: g for g, group in enumerate(groups) for i in group}
    left = [len(group) for group in groups]                 # runs of each group not reported yet
    fresh = [0] * len(groups)                               # runs of each group that trained or failed
    done, failed, errors, trained_cost, started = 0, 0, [], 0.0, time.time()

    def show(note=""):
        open_ = [g for g in range(len(groups)) if left[g]]
        # a group is trained by one worker, and the executors take groups in order: the first `workers`
        # unfinished groups are the ones in training
        pace = (time.time() - started) / trained_cost if trained_cost else 1 / workers
        parts = [nb.settings.notebook, f"runs {done}/{len(pairs)}" + (f" ({failed} failed)" if failed else "")]
        if open_:
            parts.append("now " + ", ".join(labels[g] for g in open_[:workers]))
        parts.append(f"{_clock(time.perf_counter() - nb.started)} elapsed")
        remaining = pace * sum(cost[g] for g in open_)
        parts.append(f"about {_clock(remaining)} left in this sweep" if open_ else "sweep done")
        _to_terminal(" · ".join(parts) + note + "\n")

    def on_result(i, outcome):
        nonlocal done, failed, trained_cost
        g = group_of[i]
        done, left[g] = done + 1, left[g] - 1
        fresh[g] += outcome["how"] != "cached"
        note = ""
        if outcome["status"] == "failed":
            failed += 1
            error = outcome.get("error") or "no error recorded"
            if error not in errors:   # the first run to fail this way names the error; the rest are counted
                errors.append(error)
                m, t = pairs[i]
                note = f" · D={m.depth} W={m.width} seed {t.seed} failed: {error}"
        if not left[g]:
            trained_cost += cost[g] * fresh[g] / len(groups[g])
        if note or (not left[g] and fresh[g]) or done == len(pairs):
            show(note)

    show()
    return on_result


def _group_labels(pairs, groups) -> list[str]:
    """D, W and seed of each group's runs, and the learning rate, parametrisation or block sharing where
    the design varies them (the LR check, notebooks 06 and 07), so that no two groups read alike."""
    def value(m, t, name):
        return getattr(m if hasattr(m, name) else t, name)
    firsts = [pairs[group[0]] for group in groups]
    extra = [n for n in ("lr", "parametrization", "share") if len({value(m, t, n) for m, t in firsts}) > 1]
    return [f"D={m.depth} W={m.width} seed {t.seed}" + "".join(f" {n} {value(m, t, n)}" for n in extra)
            for m, t in firsts]


def _to_terminal(text: str) -> None:
    """Write to the runner's terminal: inside a kernel, to ipykernel's copy of the original stderr, which
    the notebook does not record."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):   # a capturing stream without a file descriptor
        fd = 2
    with contextlib.suppress(OSError):   # the terminal is gone (a closed pipe): the sweep goes on without it
        os.write(fd, text.encode())


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
            progress_bar: bool = False, allow_cpu: bool = False) -> dict:
    """Execute notebooks/<name>.py with papermill and `parameters`; write the executed notebook to
    <output_dir>/<name>.ipynb. Returns {name, path, output_dir, seconds}. Raises ValueError before
    running anything for what `check_run` refuses, and papermill's PapermillExecutionError (with the
    failing cell) if a cell fails. With $DWLIB_STATUS set (the command line sets it), each sweep prints
    its status on this process's stderr (`_status_lines`)."""
    import papermill as pm
    from traitlets.config import Config
    parameters = dict(parameters or {})
    notebook, _ = check_run(name, parameters, allow_cpu=allow_cpu)
    output_dir = Path(parameters.get("output_dir") or _output_dir_for(name, notebook, parameters)).resolve()
    parameters["output_dir"] = str(output_dir)
    if parameters.get("store_path"):   # the kernel runs in notebooks/: a relative path means this folder's
        parameters["store_path"] = str(Path(parameters["store_path"]).resolve())
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:   # a file in the way: FileExistsError or NotADirectoryError
        raise ValueError(f"output_dir {str(output_dir)!r} cannot be a folder ({e.strerror}); the executed "
                         "notebook and its charts go there: give a folder") from None
    # Session.finish writes the manifest when the notebook completes: a run that fails or is killed
    # leaves none, and the report marks it, rather than showing the previous run's verdicts
    (output_dir / MANIFEST).unlink(missing_ok=True)
    target = output_dir / f"{name}.ipynb"
    # The kernel reads its connection file (ports and key) once, as it starts; removing it then leaves
    # nothing behind however this process ends (kill -9 included). The kernel's own log is silenced below
    # errors: its one warning, TCP without encryption, is about a localhost socket whose key is now gone.
    fd, connection = tempfile.mkstemp(prefix="dwlib-kernel-", suffix=".json")   # private (0600), unique
    os.close(fd)
    started = time.perf_counter()
    pm.execute_notebook(notebook, str(target), parameters=parameters, kernel_name="python3",
                        cwd=str(notebook_dir()), log_output=log_output, progress_bar=progress_bar,
                        config=Config(KernelManager=dict(connection_file=connection)),
                        extra_arguments=["--IPKernelApp.log_level=ERROR"], shutdown_kernel="immediate",
                        on_notebook_start=lambda **_: Path(connection).unlink(missing_ok=True))
    return dict(name=name, path=str(target), output_dir=str(output_dir), seconds=time.perf_counter() - started)


def _output_dir_for(name: str, notebook, parameters: dict) -> Path:
    """The folder the notebook itself would choose for these -p parameters (`default_output_dir`), its own
    parameters that are not settings (01's calculator defaults) compared with its parameters cell."""
    known = presets.parameters(name, parameters.get("preset", "smoke"))
    cell = _cell_defaults(notebook)
    extra = {k: v for k, v in parameters.items() if k not in known and v != cell.get(k)}
    return default_output_dir(_settings(name, parameters), extra)


def _cell_defaults(notebook) -> dict:
    """name -> value of each literal assignment in the notebook's parameters cell."""
    values = {}
    for cell in notebook.cells:
        if "parameters" in cell.metadata.get("tags", []):
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                    try:
                        values[node.targets[0].id] = ast.literal_eval(node.value)
                    except ValueError:
                        pass
    return values


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


def check_run(name: str, parameters: dict, *, allow_cpu: bool = False) -> tuple:
    """What can be checked before a kernel starts, each refused with a ValueError naming the value: the
    parameters (`check_parameters`) and their values (`presets.settings`: preset, threads …; the design
    they make), the corpus and tokenizer (loaded here once, so that a missing file or a failed download
    stops the run now, not each of its runs), and the device. The gpu preset on a machine without a GPU
    is refused, with its predicted time here, unless `allow_cpu`. Returns the notebook (jupytext-read)
    and its settings."""
    from .data import load_tokens
    from .train import resolve_device
    notebook = check_parameters(name, parameters)
    s = _settings(name, parameters)
    try:
        load_tokens(s.corpus, s.tokenizer)
    except (OSError, RuntimeError, ImportError) as e:   # a missing path, a failed download, no `datasets`
        raise ValueError(str(e)) from None
    device = resolve_device(s.device)   # "cuda" on a machine without one: said once, here
    pairs = presets.design(s)            # e.g. "seeds is empty"
    if s.preset == "gpu" and device.type == "cpu":
        text = (f"preset 'gpu' is sized for one GPU and would run on this machine's CPU: its {len(pairs)} runs "
                f"would take about {_minutes(_predicted_seconds(s, pairs, 'cpu') / 60)} here")
        if not allow_cpu:
            raise ValueError(f"{text}; use -p preset cpu, or give --allow-cpu to run it anyway")
        warnings.warn(text, RuntimeWarning, stacklevel=2)
    return notebook, s


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
                    "defaults to outputs/<name>/<preset>/ (outputs/<name>/<preset>-<hash>/ when other "
                    "parameters change what it computes; manifest.json lists them).",
        epilog="exit status: 0 every notebook ran; 1 a notebook failed (its cell and error are printed); "
               "2 bad input, refused before anything ran; 130 interrupted (Ctrl-C: runs resume on a rerun)")
    parser.add_argument("names", nargs="*", help="notebook names (e.g. 02_baseline_sweep, or 02), or 'all'")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="a notebook parameter; VALUE is read as a Python literal when it is one "
                             "(-p preset cpu -p widths '[64, 128]' -p budget 1e12)")
    parser.add_argument("--list", action="store_true", help="list the notebooks and stop")
    parser.add_argument("--log-output", action="store_true", help="stream the cells' output to this terminal")
    parser.add_argument("--times", default=None, help="also write {name: seconds} as JSON to this file")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="run -p preset gpu even where there is no GPU (refused by default: it takes days)")
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
    started, stores, times = time.time(), set(), {}
    try:
        try:   # refuse bad input before running anything, also in the middle of `all`
            stores = {check_run(name, parameters, allow_cpu=args.allow_cpu)[1].store_path for name in chosen}
            if args.times:
                _check_writable(args.times)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        os.environ[STATUS_ENV] = "1"   # each sweep in the kernels prints its status lines here
        for name in chosen:
            print(f"{name}: running ({', '.join(f'{k}={v!r}' for k, v in parameters.items()) or 'defaults'}) …",
                  flush=True)
            try:
                result = execute(name, parameters, log_output=args.log_output, allow_cpu=args.allow_cpu)
            except Exception as err:
                print(f"{name}: FAILED — {_failure(err)}", file=sys.stderr)
                return 1
            times[name] = round(result["seconds"], 1)
            print(f"{name}: done in {result['seconds']:.0f} s → {result['path']}", flush=True)
    except KeyboardInterrupt:
        finished, resumable = _run_counts(stores, started)
        print(f"interrupted; {finished} runs finished, {resumable} resumable", file=sys.stderr)
        return 130
    if args.times:
        Path(args.times).write_text(json.dumps(times, indent=1))
    return 0


def _failure(err: Exception) -> str:
    """A notebook's failure in one line: the failing cell and its error (the traceback is in the
    executed notebook), or the exception's last line."""
    if hasattr(err, "ename"):   # papermill's PapermillExecutionError
        return f"cell {err.exec_count}: {err.ename}: {err.evalue}"
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[-1] if text else ''}"


def _check_writable(path: str) -> None:
    """Refuse a --times file that cannot be written before anything runs, not after."""
    existed = os.path.exists(path)
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        open(path, "a").close()
    except OSError as e:
        raise ValueError(f"--times {path} cannot be written: {e.strerror or e}") from None
    if not existed:
        os.unlink(path)


def _run_counts(stores, since: float) -> tuple[int, int]:
    """Runs in these stores that finished since `since`, and those it left unfinished (they resume
    from their checkpoints on a rerun)."""
    import pandas as pd
    from .store import DONE, Store
    finished = resumable = 0
    for path in stores:
        if Path(path).exists():
            frame = Store(path, readonly=True).runs_frame()
            recent = frame[frame["updated"] >= pd.Timestamp(since, unit="s", tz="UTC")]
            finished += int(recent["status"].isin(DONE).sum())
            resumable += int(recent["status"].isin(["running", "interrupted"]).sum())
    return finished, resumable


if __name__ == "__main__":
    sys.exit(main())
