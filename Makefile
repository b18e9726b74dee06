# dwlib — common jobs. `make run` and `make test` each build the environment they need.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# PyPI's Linux torch wheel is a CUDA build; on the project machines pip finds the local CPU wheel.
# Pick another build with e.g. `make run TORCH_INDEX=https://download.pytorch.org/whl/cu126`
# (or .../whl/cpu for a small CPU-only install elsewhere).
TORCH_INDEX ?=
PIP_TORCH := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),)

.PHONY: run test venv bench clean help

help:
	@echo "make run     build .venv and run the main job (a depth sweep on the embedded stdlib corpus)"
	@echo "make test    build .venv (with test extras) and run the test suite"
	@echo "make bench   throughput and fit benchmarks (prints figures)"

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(PIP_TORCH) -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

venv: $(VENV)/.installed

run: venv
	$(PY) -m dwlib train --depth 4 --width 128 --steps 200 --json

test: venv
	$(PY) -m pytest -q

bench: venv
	$(PY) bench/throughput.py

clean:
	rm -rf $(VENV) outputs/*.sqlite outputs/checkpoints
