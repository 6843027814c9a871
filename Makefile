# `make run`: set up .venv and run the default workflow; `make lint test`: set up, lint, run the tests
# (what CI runs); `make test-fast`: the tests that run no workflow (the inner loop); `make figure`: the
# README's figure from the default run; `make gpu-wheels`: the wheel folder of the GPU check (benchmarks/gpu.sh).
PYTHON ?= python3.11
VENV ?= .venv
# Test processes (pytest-xdist, a test file per process at a time, the longest files first: tests/conftest.py);
# 2 fits the 2-core machine CI runs on.
WORKERS ?= 2
BIN = $(VENV)/bin

.PHONY: setup run lint test test-fast figure gpu-wheels

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# Benchmark and test peer (the NAS-Bench-201 authors' code), not a dependency.
	$(BIN)/python -m pip install --quiet --no-deps xautodl
	touch $@

run: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores 2

# The field's habits: ruff on the code, snakefmt and Snakemake's own lint on the workflow.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check Snakefile workflow
	@out=$$(PATH="$(CURDIR)/$(BIN):/usr/bin:/bin" $(BIN)/python -m snakemake --lint 2>&1); status=$$?; \
		echo "$$out" | tail -3; test $$status -eq 0 && ! echo "$$out" | grep -q "Lints for"

test: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n $(WORKERS) --dist loadfile --no-loadscope-reorder

test-fast: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n $(WORKERS) -m "not workflow"

# docs/fig1_default.png, the README's figure: the default run's Figure 1, drawn by `snakemake report`.
figure: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores 2 report
	cp results/default/figures/fig1_split_distance.png docs/fig1_default.png

# wheels/gpu/: what the GPU check (benchmarks/gpu.sh) installs on a GPU machine that reaches no registry.
gpu-wheels: setup
	$(BIN)/python benchmarks/gpu_wheels.py
