# Set-up targets. `make demo` runs the main job, `make test` the test suite; each creates
# .venv and installs everything it needs first. CUDA users: make demo TORCH_SPEC=torch PIP_TORCH_ARGS="--index-url ..."
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PIP_TORCH_ARGS ?=
RUN_DIR ?= runs/demo
BIN := $(VENV)/bin

.PHONY: demo test notebooks install clean

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

# rewrite notebooks/*.ipynb from their sources, the jupytext scripts notebooks/*.py (tests check that they match)
notebooks: install
	$(BIN)/python notebooks/build_notebooks.py

clean:
	rm -rf $(VENV) runs .pytest_cache
