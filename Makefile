# Set-up targets. `make demo` runs the main job, `make test` the test suite; each creates
# .venv and installs everything it needs first. CUDA users: make demo TORCH_SPEC=torch PIP_TORCH_ARGS="--index-url ..."
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PIP_TORCH_ARGS ?=
RUN_DIR ?= runs/demo
BIN := $(VENV)/bin

.PHONY: demo test notebooks readme install clean gpu-check

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)" $(PIP_TORCH_ARGS)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

demo: install
	$(BIN)/interp demo --out $(RUN_DIR)

test: install
	$(BIN)/python -m pytest -q

# on a GPU machine, at most 8 minutes: tests marked cuda, bench on cuda -> bench/gpu/gpu_check.json (bench/gpu_check.py)
gpu-check: install
	PYTHON=$(BIN)/python bash bench/gpu_check.sh
	$(BIN)/python scripts/update_readme.py --only gpu

# rewrite notebooks/*.ipynb from their sources, the jupytext scripts notebooks/*.py (tests check that they match)
notebooks: install
	$(BIN)/python notebooks/build_notebooks.py

# after `make demo` (and `interp compare-weights --out runs/weights --activation-run runs/demo`,
# `python -m bench.run_all`): the README's figures and every measured table, from those runs
readme: install
	$(BIN)/interp figures $(RUN_DIR) --formats png --only results --only taskness --out $(RUN_DIR)/readme
	cp $(RUN_DIR)/readme/results.png figures/demo_results.png
	cp $(RUN_DIR)/readme/taskness.png figures/demo_taskness.png
	$(BIN)/interp figures $(RUN_DIR) --width page --only results --formats png,pdf --out $(RUN_DIR)/paper
	cp $(RUN_DIR)/paper/results.png figures/paper_results.png
	cp $(RUN_DIR)/paper/results.pdf figures/paper_results.pdf
	$(BIN)/python scripts/update_readme.py

clean:
	rm -rf $(VENV) runs .pytest_cache
