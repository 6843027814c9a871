"""The SLURM path: a small configuration through a real single-node SLURM gives the local values and splits.

Needs Debian's slurmctld, slurmd, slurm-client and munge (``.ci/run`` installs them) and root, to
start the test cluster with ``tests/slurm/start_cluster.sh``; skipped with the reason otherwise.
"""

import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT, start_slurm_test_cluster

pytestmark = pytest.mark.slurm_cluster


@pytest.fixture(scope="module")
def cluster():
    why_not = start_slurm_test_cluster()
    if why_not is not None:
        pytest.skip(why_not)
    return subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, check=True).stdout.split()[0].rstrip("*")


def test_small_configuration_through_slurm_equals_the_local_run(tmp_path, cluster, tiny, tiny_run, snakemake):
    """snip's seed-0 tree through SLURM: its split files and scores tables equal those of the tiny run made
    locally once for the whole suite (the same settings for this tree), so no local run is needed beside it."""
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
    tree = Path("results") / "tiny" / "snip" / "seed0"
    names = sorted(p.name for p in (tiny_run / tree).glob("split_L*.json"))
    assert names and sorted(p.name for p in (tmp_path / tree).glob("split_L*.json")) == names
    for name in names:
        assert json.loads((tmp_path / tree / name).read_text())["splits"] == json.loads(
            (tiny_run / tree / name).read_text())["splits"], name
    scores = sorted(p.name for p in (tiny_run / tree).glob("scores_L*.parquet"))
    assert scores
    for name in scores:
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / tree / name).drop(columns="seconds"),
                                      pd.read_parquet(tiny_run / tree / name).drop(columns="seconds"))


def test_profile_names_what_a_user_must_change():
    text = (ROOT / "profiles" / "slurm" / "config.yaml").read_text()
    assert text.count("CHANGE") >= 3 and "executor: slurm" in text


def rules_asking_for_a_gpu() -> set[str]:
    """The rules of workflow/rules/*.smk whose resources name a gpu."""
    found = set()
    for path in (ROOT / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^(?=rule )", path.read_text(), flags=re.M):
            name = re.match(r"rule (\w+):", block)
            if name and re.search(r"^\s+gpu=", block, flags=re.M):
                found.add(name.group(1))
    return found


def test_every_rule_that_asks_for_a_gpu_gets_the_gpu_partition():
    """A GPU job sent to the CPU partition waits for a GPU that partition does not have, or runs without one."""
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    gpu_rules = rules_asking_for_a_gpu()
    assert {"train_leaves", "pretrain_oneshot", "train_standalone", "evaluate_study"} <= gpu_rules
    partition = {rule: r.get("slurm_partition") for rule, r in profile["set-resources"].items()}
    assert {rule: partition.get(rule) for rule in gpu_rules} == {rule: "CHANGE-gpu-partition" for rule in gpu_rules}
    assert profile["default-resources"]["slurm_partition"] != "CHANGE-gpu-partition"
