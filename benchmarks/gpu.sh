#!/usr/bin/env bash
# The GPU figures of BENCHMARKS.md: run on a machine with a GPU, from the repository root (a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
"$PYTHON" benchmarks/gpu.py "$@"
