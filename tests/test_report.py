"""The hand-out report (`python -m dwlib.report`): executed notebooks → self-contained HTML pages and an
index with each notebook's preset, verdicts, wall time and charts. Built here from a small executed
notebook written with nbformat (no kernel); tests/test_browser.py opens a real one in Chromium."""
import json
import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from dwlib import charts, report
from dwlib.config import ModelConfig


@pytest.fixture
def outputs(tmp_path):
    """outputs/ with one executed notebook: prose with TeX, a chart, a widget, a Markdown verdict."""
    folder = tmp_path / "outputs" / "02_baseline_sweep"
    folder.mkdir(parents=True)
    chart = charts.budget_breakdown_chart(ModelConfig(depth=2, width=64))
    charts.save_chart(chart, folder / "budget_breakdown")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Baseline\n\nParameters: $$N = 12\\,D\\,W^2,$$ and inline $\\tau(W)$."),
        nbformat.v4.new_code_cell("nb.figure(chart, 'budget_breakdown')", outputs=[
            nbformat.v4.new_output("display_data", data={"image/svg+xml": charts.to_svg(chart), "text/plain": "chart"}),
            nbformat.v4.new_output("display_data", data={"text/markdown": "D\\* = 4.3 with $\\ln W$"})]),
        nbformat.v4.new_code_cell("widgets.calculator()", outputs=[nbformat.v4.new_output(
            "display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2,
                                                                              "version_minor": 0},
                                  "text/plain": "VBox(children=(IntSlider(value=12),))"})]),
    ]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2,
                                                                            "version_minor": 0}}
    nbformat.write(nb, str(folder / "02_baseline_sweep.ipynb"))
    (folder / "manifest.json").write_text(json.dumps(dict(
        notebook="02_baseline_sweep", preset="cpu", charts=["budget_breakdown"], wall_seconds=1285.0,
        verdicts=["At W = 64 the loss is **U-shaped**: D\\* = 4.3 (3.4–4.9)."])))
    return tmp_path / "outputs"


def test_report_pages_are_self_contained(outputs, tmp_path):
    index = report.build(outputs, tmp_path / "report")
    page = (tmp_path / "report" / "02_baseline_sweep.html").read_text()
    home = index.read_text()
    for text in (page, home):
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), "loads something from the network"
        assert "<script src" not in text
    assert 'alt="D = 2, W = 64, context 128, vocab 256" src="data:image/svg+xml;base64,' in page   # the chart
    assert "<math" in page and "$$" not in page                                                # math as MathML
    assert "open the notebook in JupyterLab" in page and "VBox(children" not in page    # a widget, said so
    assert "preset <b>cpu</b>" in home and "21.4 min" in home
    assert "<strong>U-shaped</strong>" in home and "02_baseline_sweep.html" in home
    assert home.count("data:image/svg+xml;base64,") == 1                                # the saved chart


def test_report_says_what_is_missing(tmp_path, capsys):
    with pytest.raises(ValueError, match="no executed notebooks"):
        report.build(tmp_path, tmp_path / "report")
    assert report.main(["--outputs", str(tmp_path)]) == 2
    assert "make smoke" in capsys.readouterr().err


def test_math_becomes_mathml_and_dollars_in_code_stay():
    html = report.mathml("cost $6N$ per token; $$N = 12 D W^2$$ and a price of \\$5")
    assert html.count("<math") == 2 and 'display="block"' in html and "\\$5" in html


def report_cli(outputs, target, limit_bytes=None):
    """`python -m dwlib.report` in a subprocess; `limit_bytes` caps the size of any file it writes (as a
    full disk would stop it mid-page: a write past the cap fails with EFBIG)."""
    def cap():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    repo = Path(report.__file__).resolve().parents[1]
    return subprocess.run([sys.executable, "-m", "dwlib.report", "--outputs", str(outputs), "--to", str(target)],
                          capture_output=True, text=True, cwd=repo, env=dict(os.environ, PYTHONPATH=str(repo)),
                          preexec_fn=cap if limit_bytes else None, timeout=300)


def test_one_bad_notebook_is_marked_and_the_others_reported(outputs, tmp_path):
    """A manifest without a key was a KeyError traceback; a truncated .ipynb or manifest stopped the whole
    report (exit 2) without naming the file. Now each is marked on the index, named on stderr, and the
    good notebook is reported as before."""
    good = outputs / "02_baseline_sweep"
    for name in ("03_width_validation", "04_compute_matched", "05_scaling_fit"):
        folder = outputs / name
        folder.mkdir()
        text = (good / "02_baseline_sweep.ipynb").read_text()
        manifest = json.loads((good / "manifest.json").read_text())
        (folder / f"{name}.ipynb").write_text(text[:len(text) // 2] if name == "04_compute_matched" else text)
        manifest.update(notebook=name, verdicts=[f"the old verdict of {name}"])
        if name == "03_width_validation":
            del manifest["preset"]
        manifest = json.dumps(manifest)
        (folder / "manifest.json").write_text(manifest[:20] if name == "05_scaling_fit" else manifest)
    done = report_cli(outputs, tmp_path / "report")
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stderr
    assert f"{outputs}/03_width_validation/manifest.json lacks preset" in done.stderr
    assert f"{outputs}/04_compute_matched/04_compute_matched.ipynb cannot be read" in done.stderr
    assert f"{outputs}/05_scaling_fit/manifest.json cannot be read" in done.stderr
    assert "(1 reported, 3 marked)" in done.stdout
    home = (tmp_path / "report" / "index.html").read_text()
    assert "<strong>U-shaped</strong>" in home and home.count("Not reported") == 3
    assert "the old verdict" not in home


def test_an_unwritable_or_full_report_folder_is_one_error_and_no_partial_page(outputs, tmp_path):
    """An unwritable or full folder was a traceback and left a truncated .html behind."""
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    done = report_cli(outputs, blocker / "report")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: cannot write the report to {blocker}/report"), done.stderr
    full = tmp_path / "full"
    done = report_cli(outputs, full, limit_bytes=100_000)   # the page is larger: its write fails part-way
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"error: cannot write the report to {full}: File too large"), done.stderr
    assert list(full.iterdir()) == []                        # nothing half-written
    if Path("/sys/kernel").is_dir():   # Linux: a folder no one may create there, not even root
        done = report_cli(outputs, Path("/sys/dwlib-report"))
        assert done.returncode == 2 and done.stderr.startswith("error: cannot write the report to /sys/dwlib-report")
