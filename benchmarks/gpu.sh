#!/usr/bin/env bash
# The GPU check (BENCHMARKS.md, "GPU"), from the repository root, on a machine with a GPU; under 5 minutes:
#   1. the tests' tiny workflow with every metric (.test/config/every_metric.yaml), leaves and study, run
#      on the CPU and with device: cuda; their splits must agree but for near-ties (benchmarks/gpu.py compare);
#   2. the GPU's figures, each beside its peer (benchmarks/gpu.py figures).
#
# On a machine that reaches no package registry (a lent GPU machine whose image holds Python 3.12, torch,
# torchvision, numpy, pandas, pyarrow, scipy, seaborn, matplotlib and pyyaml, but not Snakemake): first,
# where PyPI is reachable, build the wheel folder of what such an image lacks, wheels/gpu/ (ignored by git;
# 61 wheels, 38.7 MiB with Snakemake 9.27.1, which with the working tree's 0.9 MiB is under the 64 MiB a
# command may take along; the builder checks it):
#   python benchmarks/gpu_wheels.py          (or: make gpu-wheels)
# then send the working tree with wheels/gpu to the GPU machine and run there, with a limit of 540 s:
#   bash benchmarks/gpu.sh
# (that is: command "bash benchmarks/gpu.sh", carried paths ["wheels/gpu"], time limit 540 s).
# This script installs from wheels/gpu, with no index, what that machine's Python lacks (pip's own resolver,
# against what is installed there, decides which) into a scratch folder on its import path after the
# checkout; where Snakemake, scikit-learn and the fewshot command are already there (a workstation's .venv),
# nothing.
#
# PYTHON picks the interpreter (default .venv/bin/python, else python3); CORES the workflow's cores; WORK a
# folder for the runs and logs (default a new temporary one); WHEELS the wheel folder (default wheels/gpu).
# Exit status: 1 when any part failed. `source benchmarks/gpu.sh` defines the functions and runs nothing.

# install_wheels WHEELS SITE: what $PYTHON lacks of this package's dependencies, and xautodl, from the wheel
# folder WHEELS into the folder SITE (pip --target), with no index; pip runs from the folder's own pip wheel.
install_wheels() {
  local wheels=$1 site=$2 runner needed
  runner=$(compgen -G "$wheels/pip-*.whl" | head -1)
  if [ -z "$runner" ]; then
    echo "no pip wheel in $wheels: build the folder where PyPI is reachable (python benchmarks/gpu_wheels.py)"
    return 1
  fi
  local pip=("$PYTHON" "$runner/pip" --isolated --disable-pip-version-check)
  mkdir -p "$site"
  "${pip[@]}" install --quiet --dry-run --no-index --find-links "$wheels" --report "$site.report.json" fewshot-core ||
    { echo "the wheels in $wheels do not give this Python what fewshot-core needs (above)"; return 1; }
  needed=$("$PYTHON" -c 'import json, sys, urllib.parse, urllib.request
for item in json.load(open(sys.argv[1]))["install"]:
    print(urllib.request.url2pathname(urllib.parse.urlparse(item["download_info"]["url"]).path))' "$site.report.json") ||
    return 1
  # shellcheck disable=SC2086  # wheel paths hold no spaces
  "${pip[@]}" install --quiet --no-index --no-deps --no-compile --target "$site" $needed "$wheels"/xautodl-*.whl ||
    return 1
  echo "installed from $wheels into $site: $(grep -c . <<<"$needed") wheels and xautodl"
}

# use_site SITE: the checkout first on the import path (the code that runs is its own), then SITE; SITE's
# commands (fewshot) on the PATH.
use_site() {
  export PYTHONPATH="$PWD:$1${PYTHONPATH:+:$PYTHONPATH}"
  export PATH="$1/bin:$PATH"
}

main() {
  set -uo pipefail
  cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
  PYTHON="${PYTHON:-.venv/bin/python}"
  [ -x "$PYTHON" ] || PYTHON=python3
  CORES="${CORES:-$(nproc)}"
  WORK="${WORK:-$(mktemp -d)}"
  WHEELS="${WHEELS:-wheels/gpu}"
  export PATH="$(dirname "$(command -v "$PYTHON")"):$PATH"
  export PYTHONUNBUFFERED=1
  if ! { "$PYTHON" -c 'import snakemake, sklearn' 2>/dev/null && command -v fewshot >/dev/null; }; then
    local start=$SECONDS
    install_wheels "$WHEELS" "$WORK/site" || exit 1
    use_site "$WORK/site"
    echo "install: $((SECONDS - start)) s"
  fi
  "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no GPU visible to torch")' || exit 1
  local status=0 device start
  for device in cpu cuda; do
    mkdir -p "$WORK/$device"
    sed "s/^device: cpu$/device: $device/" .test/config/every_metric.yaml > "$WORK/$device/config.yaml"
    start=$SECONDS
    if "$PYTHON" -m snakemake -s Snakefile --directory "$WORK/$device" --cores "$CORES" \
         --configfile "$WORK/$device/config.yaml" > "$WORK/workflow_$device.log" 2>&1; then
      echo "every-metric tiny workflow on $device: $((SECONDS - start)) s ($WORK/workflow_$device.log)"
    else
      echo "every-metric tiny workflow on $device FAILED; the end of $WORK/workflow_$device.log:"
      tail -40 "$WORK/workflow_$device.log"
      status=1
    fi
  done
  if [ $status -eq 0 ]; then
    "$PYTHON" benchmarks/gpu.py compare "$WORK/cpu/results/every_metric" "$WORK/cuda/results/every_metric" || status=1
  fi
  "$PYTHON" benchmarks/gpu.py figures "$@" || status=1
  exit $status
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
