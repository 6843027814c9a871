"""Training: deterministic, resumable after SIGKILL, checkpoints read safely, leaves evaluated."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from fewshot_core import data
from fewshot_core.errors import ArtifactError
from fewshot_core.space import Supernet
from fewshot_core.train import TrainConfig, evaluate_architectures, load_checkpoint, train

TINY = dict(C=4, N=1, input_size=8)


def tiny_data():
    return data.synthetic(n_train=96, n_test=8, input_size=8, seed=0)


def run(seed, tmp_path=None, epochs=2):
    d = tiny_data()
    torch.manual_seed(seed)
    net = Supernet(**TINY)
    hist = train(net, d, np.arange(64), TrainConfig(epochs=epochs, batch_size=16), seed,
                 checkpoint=None if tmp_path is None else tmp_path / "ck.pt")
    table = evaluate_architectures(net, d, np.arange(64), np.arange(64, 96), n_archs=4, seed=seed, batch_size=16)
    return net, hist, table


def test_same_seed_same_tables_different_seed_different():
    a, ha, ta = run(0)
    b, hb, tb = run(0)
    c, hc, tc = run(1)
    assert [h["loss"] for h in ha] == [h["loss"] for h in hb]
    pd.testing.assert_frame_equal(ta, tb)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert [h["loss"] for h in ha] != [h["loss"] for h in hc] and not ta.equals(tc)
    assert len(ta) == 4 and ta.val_accuracy.between(0, 1).all()


@pytest.mark.faults
def test_resume_from_checkpoint_is_bit_identical(tmp_path):
    full, _, full_table = run(0, epochs=3)
    d = tiny_data()
    torch.manual_seed(0)
    net = Supernet(**TINY)

    class Stop(Exception):
        pass

    def stop_after_first(epoch):
        if epoch == 0:
            raise Stop

    with pytest.raises(Stop):
        train(net, d, np.arange(64), TrainConfig(epochs=3, batch_size=16), 0, checkpoint=tmp_path / "ck.pt",
              on_epoch=stop_after_first)
    torch.manual_seed(0)
    again = Supernet(**TINY)  # a fresh process would start from a fresh initialisation
    train(again, d, np.arange(64), TrainConfig(epochs=3, batch_size=16), 0, checkpoint=tmp_path / "ck.pt")
    assert all(torch.equal(x, y) for x, y in zip(full.state_dict().values(), again.state_dict().values()))
    table = evaluate_architectures(again, d, np.arange(64), np.arange(64, 96), n_archs=4, seed=0, batch_size=16)
    pd.testing.assert_frame_equal(table, full_table)


@pytest.mark.faults
def test_damaged_or_mismatched_checkpoint_is_an_error_naming_the_file(tmp_path):
    run(0, tmp_path, epochs=1)
    path = tmp_path / "ck.pt"
    with pytest.raises(ArtifactError, match="width"):
        load_checkpoint(path, Supernet(C=8, N=1, input_size=8))
    other = Supernet(**TINY)
    mask = other.mask
    mask[0, 0] = False
    other.mask = mask
    with pytest.raises(ArtifactError, match="another mask"):
        load_checkpoint(path, other)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ArtifactError, match=r"ck\.pt is truncated or corrupt"):
        load_checkpoint(path, Supernet(**TINY))


@pytest.mark.faults
def test_checkpoint_with_code_is_refused(tmp_path):
    """weights_only loading: a pickle that would run code is rejected, and nothing runs."""
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"version": 1, "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ArtifactError, match="evil.pt"):
        load_checkpoint(tmp_path / "evil.pt", Supernet(**TINY))
    assert not marker.exists()


def test_bad_training_settings_are_errors():
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=-1)
    with pytest.raises(ValueError, match="mode"):
        TrainConfig(epochs=1, mode="joint")


def train_leaves_cmd(tmp_path, work, out, epochs=6):
    split = tmp_path / "split.json"
    if not split.exists():
        data.write_split(split, *data.split_indices(360, 0.25, seed=0))
    return [sys.executable, "-m", "fewshot_core.cli", "train-leaves", "--C", "4", "--N", "1", "--input-size", "8",
            "--epochs", str(epochs), "--batch-size", "32", "--metric", "snip", "--seed", "0", "--leaves", "r",
            "--factors", "", "--dataset", "digits", "--data-split", str(split), "--archs", "3",
            "--work-dir", str(work), "--out", str(out), "--device", "cpu"]


@pytest.mark.faults
def test_sigkill_in_the_middle_then_rerun_matches_an_uninterrupted_run(tmp_path):
    ref_out, killed_out = tmp_path / "ref.parquet", tmp_path / "killed.parquet"
    subprocess.run(train_leaves_cmd(tmp_path, tmp_path / "ref", ref_out), check=True, capture_output=True)
    work = tmp_path / "killed"
    proc = subprocess.Popen(train_leaves_cmd(tmp_path, work, killed_out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    checkpoint = work / "r" / "checkpoint.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not killed_out.exists(), "the job finished before it could be killed: give it more epochs"
    rerun = subprocess.run(train_leaves_cmd(tmp_path, work, killed_out), check=True, capture_output=True, text=True)
    assert "resuming" in rerun.stdout
    pd.testing.assert_frame_equal(pd.read_parquet(ref_out), pd.read_parquet(killed_out))
    ref_w = torch.load(tmp_path / "ref" / "r" / "weights.pt", weights_only=True)
    new_w = torch.load(work / "r" / "weights.pt", weights_only=True)
    assert all(torch.equal(ref_w[k], new_w[k]) for k in ref_w)
    assert not list(work.rglob("*.tmp"))
