# dwlib — common jobs. `make run` and `make test` each build the environment they need.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# PyPI's Linux torch wheel is a CUDA build; on the project machines pip finds the local CPU wheel.
# Pick another build with e.g. `make run TORCH_INDEX=https://download.pytorch.org/whl/cu126`
# (or .../whl/cpu for a small CPU-only install elsewhere).
TORCH_INDEX ?=
PIP_TORCH := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),)

.PHONY: run test venv bench clean help lab notebooks smoke report

help:
	@echo "make run     build .venv and run the main job (a depth sweep on the embedded stdlib corpus)"
	@echo "make test    build .venv (with test extras) and run the test suite"
	@echo "make bench   throughput and fit benchmarks (prints figures)"
	@echo "make lab        JupyterLab with the notebooks/*.py opening as notebooks"
	@echo "make notebooks  execute every notebook with the cpu preset (papermill) into outputs/<name>/cpu/"
	@echo "make smoke      execute every notebook with the smoke preset (what CI runs), ~1 min each"
	@echo "make report     the executed notebooks in outputs/ as self-contained HTML: outputs/report/index.html"

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(PIP_TORCH) -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

# Ray and submitit (the cluster executors) are optional for users; the tests exercise them, so `make test`
# adds them.
$(VENV)/.installed-clusters: $(VENV)/.installed requirements-ray.txt requirements-slurm.txt
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-ray.txt -r requirements-slurm.txt
	touch $@

venv: $(VENV)/.installed

# The main job: the baseline depth sweep notebook, cpu preset, on the embedded stdlib corpus, executed
# by papermill into outputs/02_baseline_sweep/cpu/ (executed notebook + PNG/SVG charts; runs in outputs/runs.sqlite).
run: venv
	$(PY) -m dwlib.notebooks 02_baseline_sweep -p preset cpu -p executor parallel

test: venv $(VENV)/.installed-clusters
	$(PY) -m pytest -q

bench: venv
	$(PY) bench/throughput.py

clean:
	rm -rf $(VENV) outputs/*.sqlite outputs/checkpoints

# -- notebooks (dwlib/notebooks.py runs them through papermill; jupytext sources need no .ipynb) -------
# JupyterLab as root needs --allow-root; the labconfig in .jupyter/ makes .py notebooks open as notebooks.
# One torch thread per run, as `make smoke` and the browser test use (and the parallel executor's workers):
# two threads per kernel beside the lab server and a browser oversubscribe 2 cores ~10-50x, and the
# notebooks' predicted times are made for the threads actually used.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: venv
	DWLIB_THREADS=1 OMP_NUM_THREADS=1 JUPYTER_CONFIG_DIR=$(CURDIR)/.jupyter $(VENV)/bin/jupyter lab --ServerApp.root_dir=$(CURDIR) \
		--LabApp.default_url=/lab/tree/notebooks $(ALLOW_ROOT)

notebooks: venv
	$(PY) -m dwlib.notebooks all -p preset cpu -p executor parallel --times outputs/notebook_times_cpu.json

smoke: venv
	DWLIB_THREADS=1 OMP_NUM_THREADS=1 $(PY) -m dwlib.notebooks all -p preset smoke --times outputs/notebook_times_smoke.json

# A report to hand out: every executed notebook in outputs/ as a static HTML page (charts and math inline,
# nothing loaded from the network) and an index with each notebook's preset, verdicts and wall time.
report: venv
	$(PY) -m dwlib.report
