"""The workflow's start-up check and a no-op rerun, on a finished run.

Times `fewshot_core.freshness.check` (every existing output's record against the configuration) in this
process, and the wall time of `snakemake --dry-run` and of a no-op `snakemake` on the same run, beside a
dry run of the same configuration in an empty folder (the cost of parsing the workflow without any
output to check).

    python benchmarks/startup_check.py results/default config/config.yaml
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def timed(command: list[str], cwd: Path, repeats: int) -> float:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(command, cwd=cwd, check=True, capture_output=True, env=env)
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished run's folder, e.g. results/default")
    parser.add_argument("configfile", type=Path, help="the configuration it was made with")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from fewshot_core import freshness
    from fewshot_core.checks import load_settings

    workdir = args.run_dir.resolve().parents[1]
    settings = load_settings(yaml.safe_load(args.configfile.read_text()), workdir=workdir)
    checks = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        findings = freshness.check(settings, workdir)
        checks.append(time.perf_counter() - t0)
    print(f"start-up check: {statistics.median(checks):.3f} s (median of {args.repeats}) over the "
          f"{len(settings.outputs())} outputs of {args.configfile.name}; {len(findings)} found stale")
    snake = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--cores", "2"]
    config = ["--configfile", str(args.configfile.resolve())]
    dry = timed([*snake, "--dry-run", *config], workdir, args.repeats)
    noop = timed([*snake, *config], workdir, args.repeats)
    with tempfile.TemporaryDirectory() as empty:
        fresh = timed([*snake, "--dry-run", *config], Path(empty), args.repeats)
    print(f"dry run on the finished run: {dry:.2f} s; no-op rerun: {noop:.2f} s; "
          f"dry run of the same configuration in an empty folder (nothing to check): {fresh:.2f} s")


if __name__ == "__main__":
    main()
