#!/usr/bin/env bash
# The GPU check (BENCHMARKS.md, "The GPU check"), from the repository root of an installed checkout on a
# machine with a GPU; under 5 minutes on one GPU:
#   1. the tests' tiny workflow with every metric (.test/config/every_metric.yaml), leaves and study, run
#      on the CPU and with device: cuda; their splits must be identical (benchmarks/gpu.py compare);
#   2. the GPU's figures, each beside its peer (benchmarks/gpu.py figures).
# PYTHON picks the interpreter (default .venv/bin/python, else python3); CORES the workflow's cores;
# OUT a folder for the logs (default a new temporary one). Exit status: 1 when any part failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
CORES="${CORES:-$(nproc)}"
OUT="${OUT:-$(mktemp -d)}"
export PATH="$(dirname "$(command -v "$PYTHON")"):$PATH"
export PYTHONUNBUFFERED=1
if ! command -v fewshot >/dev/null; then  # the rules call the package's command line
  "$PYTHON" -m pip install --quiet --no-deps --no-build-isolation -e . || { echo "cannot install fewshot"; exit 1; }
fi
"$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no GPU visible to torch")' || exit 1
status=0
for device in cpu cuda; do
  mkdir -p "$OUT/$device"
  sed "s/^device: cpu$/device: $device/" .test/config/every_metric.yaml > "$OUT/$device/config.yaml"
  start=$(date +%s)
  if "$PYTHON" -m snakemake -s Snakefile --directory "$OUT/$device" --cores "$CORES" \
       --configfile "$OUT/$device/config.yaml" > "$OUT/workflow_$device.log" 2>&1; then
    echo "every-metric tiny workflow on $device: $(( $(date +%s) - start )) s ($OUT/workflow_$device.log)"
  else
    echo "every-metric tiny workflow on $device FAILED; the end of $OUT/workflow_$device.log:"
    tail -40 "$OUT/workflow_$device.log"
    status=1
  fi
done
if [ $status -eq 0 ]; then
  "$PYTHON" benchmarks/gpu.py compare "$OUT/cpu/results/every_metric" "$OUT/cuda/results/every_metric" || status=1
fi
"$PYTHON" benchmarks/gpu.py figures "$@" || status=1
exit $status
