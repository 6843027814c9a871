"""A job's fixed cost: the wall time of each scoring job minus the metric seconds it records.

Runs the same workflow target twice in fresh folders, once with every job a fresh process
(FEWSHOT_NO_SERVER=1) and once forked from the workflow's warm server (the default), and prints, for
each, the scoring jobs' fixed cost (Snakemake's benchmark record of the job's wall time, minus the
`seconds` column summed over the job's scores table) and the run's wall time.

    python benchmarks/job_overhead.py                      # the default configuration, target `splits`
    python benchmarks/job_overhead.py --configfile config/paper_cpu.yaml --target splits
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]


def run(config: Path, target: str, cores: int, server: bool) -> tuple[float, list[float]]:
    """The run's wall time and each scoring job's fixed cost."""
    work = Path(tempfile.mkdtemp(prefix="overhead-"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("FEWSHOT_SERVER", None)
    if not server:
        env["FEWSHOT_NO_SERVER"] = "1"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(work),
                    "--cores", str(cores), target, "--configfile", str(config)], check=True, env=env,
                   capture_output=True)
    wall = time.perf_counter() - t0
    run_dir = work / "results" / yaml.safe_load(config.read_text())["run"]
    costs = []
    for bench in sorted((run_dir / "benchmarks" / "score_edges").rglob("*.tsv")):
        metric, name = bench.parent.name, bench.stem  # <metric>/seed<s>_L<l>
        seed, level = name.removeprefix("seed").split("_L")
        scores = pd.read_parquet(run_dir / metric / f"seed{seed}" / f"scores_L{level}.parquet")
        costs.append(float(pd.read_csv(bench, sep="\t").s.iloc[0]) - float(scores.seconds.sum()))
    shutil.rmtree(work)
    return wall, costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", type=Path, default=ROOT / "config" / "config.yaml")
    parser.add_argument("--target", default="splits")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    for label, server in (("fresh process per job", False), ("forked from the warm server", True)):
        wall, costs = run(args.configfile.resolve(), args.target, args.cores, server)
        print(f"{label}: `{args.target}` of {args.configfile.name} in {wall:.1f} s wall; scoring job fixed cost "
              f"median {statistics.median(costs):.2f} s, mean {statistics.mean(costs):.2f} s, max {max(costs):.2f} s "
              f"over {len(costs)} jobs")


if __name__ == "__main__":
    main()
