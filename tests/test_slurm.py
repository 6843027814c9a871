"""The SLURM path: a small configuration through a real single-node SLURM gives the stored local values and splits.

Needs Debian's slurmctld, slurmd, slurm-client and munge (``.ci/run`` installs them) and root, to
start the test cluster with ``tests/slurm/start_cluster.sh``; skipped with the reason otherwise.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slurm_cluster


@pytest.fixture(scope="module")
def cluster():
    missing = [t for t in ("slurmctld", "slurmd", "sbatch", "munged") if not shutil.which(t) and
               not Path("/usr/sbin", t).exists()]
    if missing:
        pytest.skip(f"SLURM test cluster not available: {', '.join(missing)} not installed "
                    "(apt-get install slurmctld slurmd slurm-client munge)")
    if os.geteuid() != 0:
        pytest.skip("starting the SLURM test cluster needs root")
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="snakemake-executor-plugin-slurm not installed")
    proc = subprocess.run(["bash", str(ROOT / "tests" / "slurm" / "start_cluster.sh")], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"the SLURM test cluster did not start: {proc.stderr.strip()[-500:]}")
    return subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, check=True).stdout.split()[0].rstrip("*")


def test_small_configuration_through_slurm_equals_the_stored_reference(tmp_path, cluster, tiny, snakemake):
    """snip's seed-0 tree through SLURM: every value and split equal the tiny scenario's stored reference
    (tests/data/tiny_reference.json, the same settings run locally), so no local run is needed beside it."""
    cfg = {**tiny, "seeds": [0], "metrics": {"snip": tiny["metrics"]["snip"]}}
    # The repository's profile, with this test cluster's partition and small requests in place of the
    # values a user edits; squeue answers for job status (no accounting database here).
    proc = snakemake(
        tmp_path, cfg, "splits", "--profile", str(ROOT / "profiles" / "slurm"), "--jobs", "4",
        "--default-resources", f"slurm_partition={cluster}", "mem_mb=1000", "runtime=10",
        "--set-resources", f"score_edges:slurm_partition={cluster}", "score_edges:mem_mb=1000",
        f"train_leaves:slurm_partition={cluster}", "train_leaves:mem_mb=1000",
        "--slurm-no-account", "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
        "--seconds-between-status-checks", "2", "--latency-wait", "5",
    )
    assert "submitted with SLURM jobid" in proc.stdout + proc.stderr
    reference = json.loads((ROOT / "tests" / "data" / "tiny_reference.json").read_text())
    run = tmp_path / "results" / "tiny" / "snip" / "seed0"
    splits = [r for p in sorted(run.glob("split_L*.json")) for r in json.loads(p.read_text())["splits"]]
    want = {s["node"]: (s["edge"], s["groups"]) for s in reference["splits"] if (s["metric"], s["seed"]) == ("snip", 0)}
    assert want and {r["node"]: (r["edge"], r["groups"]) for r in splits} == want
    scores = pd.concat([pd.read_parquet(p) for p in sorted(run.glob("scores_L*.parquet"))])
    got = {(r.node, int(r.edge), r.op): r for r in scores.itertuples()}
    rows = [w for w in reference["scores"] if (w["metric"], w["seed"]) == ("snip", 0)]
    assert rows and len(got) == len(rows)
    for w in rows:
        r = got[w["node"], w["edge"], w["op"]]
        assert (r.value, r.parent_value) == pytest.approx((w["value"], w["parent_value"]), rel=1e-6, abs=1e-9), w
        assert list(r.similarity) == pytest.approx(w["similarity"], rel=1e-6, abs=1e-9)


def test_profile_names_what_a_user_must_change():
    text = (ROOT / "profiles" / "slurm" / "config.yaml").read_text()
    assert text.count("CHANGE") >= 3 and "executor: slurm" in text
