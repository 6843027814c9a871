"""Fault suite: bad input and faults give clear errors and lose nothing. Run alone: pytest -m faults."""

import errno
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from fewshot_core import data, pipeline
from fewshot_core.cli import load_supernet
from fewshot_core.errors import ArtifactError, SplitError
from fewshot_core.space import Supernet
from fewshot_core.train import TrainConfig, train
from tests.test_workflow import TINY, snakemake

pytestmark = pytest.mark.faults


def with_(cfg, *path_and_value):
    """A copy of ``cfg`` with one nested key replaced."""
    *path, value = path_and_value
    out = {**cfg}
    node = out
    for key in path[:-1]:
        node[key] = {**node[key]}
        node = node[key]
    node[path[-1]] = value
    return out


@pytest.mark.parametrize("cfg,needles", [
    (with_(TINY, "metrics", {"zen": {"batch_size": 8, "batches": 1}}), ["zen", "gradnorm"]),
    (with_(TINY, "training", "leaves", "epochs", 0), ["epochs", "minimum"]),
    (with_(TINY, "training", "leaves", "epochs", -3), ["epochs", "minimum"]),
    (with_(TINY, "tree", "policy", {"constant": {"leaves": 8, "b": 1}}), ["b"]),
    (with_(TINY, "tree", "policy", {"constant": {"leaves": 2, "b": 3}}), ["tree.policy", "N=2", "b=3"]),
    (with_(TINY, "seeds", [0, 1, 1]), ["seeds", "non-unique"]),
    (with_(TINY, "data", "name", "mnist"), ["mnist", "digits", "cifar10", "synthetic"]),
    (with_(with_(TINY, "data", "name", "cifar10"), "data", "root", "no/such/dir"),
     ["data.root", "no/such/dir", "cifar-10-batches-bin"]),
    (with_(TINY, "run", "a; touch pwned"), ["run", "does not match"]),
    (with_(TINY, "tree", "edge_order", [0, 0]), ["tree.edge_order", "distinct"]),
])
def test_bad_configuration_is_rejected_before_any_job(tmp_path, cfg, needles):
    proc = snakemake(tmp_path, cfg, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    for needle in needles:
        assert needle in out, f"{needle!r} missing from:\n{out[-2000:]}"
    assert not (tmp_path / "results").exists() and not (tmp_path / "pwned").exists()


def test_unwritable_output_path_is_rejected(tmp_path):
    (tmp_path / "results").write_text("a file where the results folder should be")
    proc = snakemake(tmp_path, TINY, check=False)
    assert proc.returncode != 0 and "cannot be written" in proc.stdout + proc.stderr


def test_paths_with_spaces_quotes_and_semicolons_work_and_run_nothing_else(tmp_path):
    work = tmp_path / "a dir; with 'quotes' and \"more\" $(touch pwned)"
    work.mkdir()
    cfg = {**TINY, "seeds": [0], "metrics": {"snip": TINY["metrics"]["snip"]}, "run": "odd.name-1"}
    snakemake(work, cfg, "splits")
    assert (work / "results" / "odd.name-1" / "snip" / "seed0" / "split_L1.json").exists()
    assert not list(tmp_path.rglob("pwned")) and not (tmp_path.parent / "pwned").exists()


@pytest.fixture()
def small_run(tmp_path):
    cfg = {**TINY, "seeds": [0], "metrics": {"snip": TINY["metrics"]["snip"]}}
    snakemake(tmp_path, cfg, "splits")
    return tmp_path, cfg


def test_corrupt_parquet_is_named_and_the_workflow_recovers_once_it_is_deleted(small_run):
    work, cfg = small_run
    scores = work / "results" / "tiny" / "snip" / "seed0" / "scores_L1.parquet"
    good = pd.read_parquet(scores)
    scores.write_bytes(b"PAR1 this is not a parquet table")
    with pytest.raises(ArtifactError, match="scores_L1.parquet"):
        pipeline.read_parquet(scores)
    proc = snakemake(work, cfg, "splits", check=False)
    assert proc.returncode != 0 and "scores_L1.parquet" in proc.stdout + proc.stderr
    scores.unlink()
    snakemake(work, cfg, "splits")
    pd.testing.assert_frame_equal(pd.read_parquet(scores).drop(columns="seconds"), good.drop(columns="seconds"))


def test_hand_edited_invalid_split_is_named_and_the_workflow_recovers(small_run):
    work, cfg = small_run
    split = work / "results" / "tiny" / "snip" / "seed0" / "split_L0.json"
    good = split.read_text()
    split.write_text(good.replace('"skip_connect"', '"nor_conv_1x1"', 1))  # an op in two groups
    with pytest.raises(SplitError, match="split_L0.json.*not a partition"):
        pipeline.read_splits([split])
    proc = snakemake(work, cfg, "splits", check=False)
    assert proc.returncode != 0 and "split_L0.json" in proc.stdout + proc.stderr
    split.unlink()
    snakemake(work, cfg, "splits")
    assert split.read_text() == good


def test_sigkill_of_snakemake_then_rerun_equals_an_uninterrupted_run(tmp_path):
    cfg = {**TINY, "seeds": [0], "metrics": {"snip": TINY["metrics"]["snip"], "synflow": TINY["metrics"]["synflow"]}}
    ref = tmp_path / "ref"
    ref.mkdir()
    snakemake(ref, cfg)
    work = tmp_path / "killed"
    work.mkdir()
    (work / "config.yaml").write_text((ref / "config.yaml").read_text())
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(pytest.importorskip("tests.test_workflow").ROOT / "Snakefile"),
           "--directory", str(work), "--configfile", str(work / "config.yaml"), "--cores", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    target = work / "results" / "tiny" / "snip" / "seed0" / "split_L0.json"
    deadline = time.time() + 120
    while not target.exists() and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and every job it runs
    proc.wait()
    assert not (work / "results" / "tiny" / "leaves.parquet").exists()
    locked = snakemake(work, cfg, "--rerun-incomplete", check=False)  # Snakemake refuses a stale lock...
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr
    snakemake(work, cfg, "--unlock")  # ...which the user lifts, as its message says
    snakemake(work, cfg, "--rerun-incomplete")
    for name in ("splits.parquet", "split_distance.parquet", "leaves.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(ref / "results" / "tiny" / name),
                                      pd.read_parquet(work / "results" / "tiny" / name))


def test_sigkill_of_a_scoring_job_leaves_no_output_and_the_rerun_is_identical(tmp_path):
    data.write_split(tmp_path / "split.json", *data.split_indices(1437, 0.2, seed=0))
    subprocess.run([sys.executable, "-m", "fewshot_core.cli", "init-root", "--C", "4", "--N", "1", "--input-size",
                    "8", "--seed", "0", "--dataset", "digits", "--data-split", str(tmp_path / "split.json"),
                    "--out", str(tmp_path / "root.pt")], check=True, capture_output=True)

    def cmd(out):
        return [sys.executable, "-m", "fewshot_core.cli", "score", "--metric", "ntk", "--seed", "0", "--level", "0",
                "--factors", "2", "--edge-selection", "mincut", "--root", str(tmp_path / "root.pt"),
                "--dataset", "digits", "--data-split", str(tmp_path / "split.json"), "--batch-size", "16",
                "--device", "cpu", "--out-weights", str(out) + ".weights", "--out", str(out)]

    ref = tmp_path / "ref.parquet"
    subprocess.run(cmd(ref), check=True, capture_output=True)
    out = tmp_path / "killed.parquet"
    proc = subprocess.Popen(cmd(out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc.stdout.readline()  # the first edge is scored: the job is mid-way
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))
    subprocess.run(cmd(out), check=True, capture_output=True)
    pd.testing.assert_frame_equal(pd.read_parquet(ref).drop(columns="seconds"),
                                  pd.read_parquet(out).drop(columns="seconds"))


def test_full_disk_during_a_checkpoint_write_keeps_the_last_good_one(tmp_path, monkeypatch):
    d = data.synthetic(n_train=64, n_test=8, input_size=8, seed=0)
    cfg = TrainConfig(epochs=3, batch_size=16)

    def fresh():
        torch.manual_seed(0)
        return Supernet(C=4, N=1, input_size=8)

    reference = fresh()
    train(reference, d, np.arange(64), cfg, 0)
    ck = tmp_path / "ck.pt"
    real_fsync, calls = os.fsync, {"n": 0}

    def fsync_fails_on_second_checkpoint(fd):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(pipeline.os, "fsync", fsync_fails_on_second_checkpoint)
    with pytest.raises(OSError, match="No space left"):
        train(fresh(), d, np.arange(64), cfg, 0, checkpoint=ck)
    monkeypatch.setattr(pipeline.os, "fsync", real_fsync)
    assert torch.load(ck, weights_only=True)["epoch"] == 0  # the first epoch's checkpoint, intact
    assert not list(tmp_path.glob(".*.tmp"))
    resumed = fresh()
    train(resumed, d, np.arange(64), cfg, 0, checkpoint=ck)
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()))


@pytest.mark.parametrize("loader", ["root", "node weights"])
def test_weight_files_with_code_are_refused_and_nothing_runs(tmp_path, loader):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"config": Evil(), "state_dict": {}, "nodes": Evil()}, path)
    from fewshot_core.cli import _load_node_weights

    with pytest.raises(ArtifactError, match="evil.pt"):
        load_supernet(str(path)) if loader == "root" else _load_node_weights(str(path))
    assert not marker.exists()


def test_no_file_is_loaded_with_pickle_anywhere():
    """Every torch.load in the package passes weights_only=True; nothing calls pickle.load."""
    root = pytest.importorskip("tests.test_workflow").ROOT / "fewshot_core"
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert "pickle.load" not in text, path
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{path}: {line.strip()}"


def test_synflow_overflow_is_caught_with_node_and_edge():
    """A network whose synflow exceeds even float64's range: the error names metric, node and edge."""
    from fewshot_core import metrics
    from fewshot_core.metrics import Batch, MetricError

    torch.manual_seed(0)
    net = Supernet(C=16, N=5, input_size=8)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1e12)
    with pytest.raises(MetricError, match=r"synflow.*node r01 edge 2"):
        metrics.evaluate_split("synflow", net, 2, [Batch(torch.zeros(2, 3, 8, 8), torch.zeros(2, dtype=torch.long))],
                               where="node r01 edge 2")
