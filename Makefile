# `make run`: set up .venv and run the default workflow; `make test`: set up and run the tests;
# `make gpu-wheels`: the wheel folder of the GPU check (benchmarks/gpu.sh).
PYTHON ?= python3.11
VENV ?= .venv
# Test processes (pytest-xdist, a test file per process at a time, the longest files first: tests/conftest.py);
# 2 fits the 2-core machine CI runs on.
WORKERS ?= 2
BIN = $(VENV)/bin

.PHONY: setup run test gpu-wheels

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

test: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n $(WORKERS) --dist loadfile --no-loadscope-reorder

# wheels/gpu/: what the GPU check (benchmarks/gpu.sh) installs on a GPU machine that reaches no registry.
gpu-wheels: setup
	$(BIN)/python benchmarks/gpu_wheels.py
