"""Training: deterministic, resumable after SIGKILL, checkpoints resumed only when made by the same settings."""

import dataclasses
import os
import signal
import subprocess
import sys
import time
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch

from fewshot_core import artifacts, data
from fewshot_core import train as training
from fewshot_core.outputs import OUTPUTS, key
from fewshot_core.settings import canonical_json
from fewshot_core.space import Supernet
from fewshot_core.train import evaluate_architectures, sample_architectures, train, validation_images

SHAPE = dict(C=4, N=1, input_size=8)


@pytest.fixture
def cfg(defaults):
    """Leaf training settings from the schema's defaults, three epochs of batch 16."""
    return dataclasses.replace(defaults.leaf_training, epochs=3, batch_size=16)


def tiny_data():
    return data.synthetic(n_train=96, n_test=8, input_size=8, seed=0)


def fresh(seed=0, mask=None):
    torch.manual_seed(seed)
    return Supernet(**SHAPE, mask=mask)


def run(cfg, evaluation, seed, checkpoint=None):
    d = tiny_data()
    net = fresh(seed)
    hist = train(net, d, np.arange(64), cfg, seed, checkpoint=checkpoint)
    archs = sample_architectures(net.mask, evaluation.archs, seed)
    images = validation_images(d, np.arange(64, 96), torch.device("cpu"))
    table = evaluate_architectures(net, d, np.arange(64), images, archs, evaluation, seed=seed)
    return net, hist, table


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_same_seed_same_tables_different_seed_different(cfg, defaults):
    evaluation = dataclasses.replace(defaults.evaluation, archs=4, batch_size=16)
    a, ha, ta = run(cfg, evaluation, 0)
    b, hb, tb = run(cfg, evaluation, 0)
    c, hc, tc = run(cfg, evaluation, 1)
    assert [h["loss"] for h in ha] == [h["loss"] for h in hb]
    pd.testing.assert_frame_equal(ta, tb)
    assert same_weights(a, b)
    assert [h["loss"] for h in ha] != [h["loss"] for h in hc] and not ta.equals(tc)
    assert len(ta) == 4 and ta.val_accuracy.between(0, 1).all()


class Stop(Exception):
    pass


def stop_after_first(epoch):
    if epoch == 0:
        raise Stop


def interrupted(cfg, path, seed=0, mask=None, idx=None):
    """A run of ``cfg`` killed after its first epoch's checkpoint (a checkpoint every epoch)."""
    idx = np.arange(64) if idx is None else idx
    with pytest.raises(Stop), mock.patch.object(training, "CHECKPOINT_SECONDS", 0):
        train(fresh(seed, mask), tiny_data(), idx, cfg, seed, checkpoint=artifacts.Checkpoints(path, "k"), on_epoch=stop_after_first)


def saved_epochs(monkeypatch) -> list[int]:
    """The epochs whose checkpoint a training run writes, as it writes them."""
    saved, save = [], artifacts.Checkpoints.save
    monkeypatch.setattr(artifacts.Checkpoints, "save",
                        lambda self, state, origin: (saved.append(state["epoch"]), save(self, state, origin)))
    return saved


class Clock:
    """``time`` for train.py: each reading a millisecond on, plus what the test adds."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 1e-3
        return self.now


def test_checkpoints_are_written_at_most_once_a_minute_and_after_the_last_epoch(tmp_path, cfg, monkeypatch):
    """A checkpoint copies the whole state off the device: epochs of a few seconds are not each checkpointed."""
    saved = saved_epochs(monkeypatch)
    train(fresh(), tiny_data(), np.arange(64), cfg, 0, checkpoint=artifacts.Checkpoints(tmp_path / "fast.pt", "k"))
    assert saved == [2]  # three quick epochs: the last one only
    saved.clear()
    clock = Clock()
    monkeypatch.setattr(training, "time", clock)

    def epoch_of_25_seconds(epoch):
        clock.now += 25

    train(fresh(), tiny_data(), np.arange(64), dataclasses.replace(cfg, epochs=8), 0,
          checkpoint=artifacts.Checkpoints(tmp_path / "slow.pt", "k"), on_epoch=epoch_of_25_seconds)
    # epochs end 0, 25, 50 and 75 s after the start (saved), 100, 125 and 150 s (75 s after the last: saved), 175 s
    assert saved == [3, 6, 7]


@pytest.mark.faults
def test_resume_from_checkpoint_is_bit_identical(tmp_path, cfg, defaults):
    evaluation = dataclasses.replace(defaults.evaluation, archs=4, batch_size=16)
    full, _, full_table = run(cfg, evaluation, 0)
    interrupted(cfg, tmp_path / "ck.pt")
    again = fresh(0)  # a fresh process would start from a fresh initialisation
    history = train(again, tiny_data(), np.arange(64), cfg, 0, checkpoint=artifacts.Checkpoints(tmp_path / "ck.pt", "k"))
    assert [h["epoch"] for h in history] == [2, 3]  # resumed after the first epoch
    assert same_weights(full, again)
    archs = sample_architectures(again.mask, evaluation.archs, 0)
    images = validation_images(tiny_data(), np.arange(64, 96), torch.device("cpu"))
    table = evaluate_architectures(again, tiny_data(), np.arange(64), images, archs, evaluation, seed=0)
    pd.testing.assert_frame_equal(table, full_table)


OTHER_MASK = np.ones((6, 5), dtype=bool)
OTHER_MASK[0, 0] = False


@pytest.mark.faults
@pytest.mark.parametrize("change", ["lr", "epochs", "nesterov", "batch_size", "seed", "mask", "start weights",
                                    "train indices"])
def test_a_checkpoint_made_by_other_settings_is_never_resumed(tmp_path, cfg, capsys, change):
    """The checkpoint of one run, then a run that differs in one thing: it starts over, equal to a fresh run."""
    ck = tmp_path / "ck.pt"
    interrupted(cfg, ck)
    new_cfg, seed, mask, idx, init = cfg, 0, None, np.arange(64), 0
    if change == "lr":
        new_cfg = dataclasses.replace(cfg, optimizer=dataclasses.replace(cfg.optimizer, lr=0.05))
    elif change in ("epochs", "batch_size"):
        new_cfg = dataclasses.replace(cfg, **{change: getattr(cfg, change) + 1})
    elif change == "nesterov":
        new_cfg = dataclasses.replace(cfg, optimizer=dataclasses.replace(cfg.optimizer, nesterov=False))
    elif change == "seed":
        seed = 5
    elif change == "mask":
        mask = OTHER_MASK
    elif change == "start weights":
        init = 7
    else:
        idx = np.arange(1, 65)
    capsys.readouterr()
    net = fresh(init, mask)
    history = train(net, tiny_data(), idx, new_cfg, seed, checkpoint=artifacts.Checkpoints(ck, "k"))
    assert "discarding checkpoint" in capsys.readouterr().out
    assert history[0]["epoch"] == 1  # started over
    reference = fresh(init, mask)
    train(reference, tiny_data(), idx, new_cfg, seed)
    assert same_weights(net, reference)


@pytest.mark.faults
def test_a_checkpoint_made_for_another_key_is_discarded_with_the_field_named(tmp_path, cfg, capsys):
    """A job interrupted, its code edited (or its output's settings changed), the job restarted: its output's
    key is another, so it starts over (the record then names the code that made every epoch), saying so."""
    ck = tmp_path / "ck.pt"
    interrupted(cfg, ck)
    capsys.readouterr()
    assert train(fresh(0), tiny_data(), np.arange(64), cfg, 0, checkpoint=artifacts.Checkpoints(ck, "edited"))[0][
        "epoch"] == 1
    assert "provenance field 'key' is 'k', expected 'edited'" in capsys.readouterr().out


@pytest.mark.faults
def test_a_damaged_checkpoint_is_discarded_and_training_starts_over(tmp_path, cfg, capsys):
    ck = tmp_path / "ck.pt"
    interrupted(cfg, ck)
    ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])
    net = fresh(0)
    assert train(net, tiny_data(), np.arange(64), cfg, 0, checkpoint=artifacts.Checkpoints(ck, "k"))[0]["epoch"] == 1
    assert "is not a checkpoint this tool wrote" in capsys.readouterr().out


@pytest.mark.faults
def test_a_checkpoint_with_code_is_refused_and_nothing_runs(tmp_path, cfg):
    """weights_only loading: a pickle that would run code is discarded, and its code never runs."""
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"format": "fewshot-checkpoint/1", "payload": Evil()}, tmp_path / "evil.pt")
    assert artifacts.Checkpoints(tmp_path / "evil.pt", "k").load({}, log=lambda m: None) is None
    assert not marker.exists() and not (tmp_path / "evil.pt").exists()


def test_unknown_training_mode_is_an_error(cfg):
    with pytest.raises(ValueError, match="mode"):
        train(fresh(), tiny_data(), np.arange(64), dataclasses.replace(cfg, mode="joint"), 0)


def train_leaves_cmd(tmp_path, defaults, out_dir, epochs=6):
    """`fewshot train-leaves` on a tree of one leaf (the root) of the digits, holdout made first."""
    holdout = tmp_path / "holdout.json"
    data_settings = dataclasses.replace(defaults.data, input_size=8, val_fraction=0.25)
    holdout_spec = dataclasses.replace(defaults.holdout_spec(0), data=data_settings)
    if not holdout.exists():
        subprocess.run([sys.executable, "-m", "fewshot_core.cli", "make-holdout", "--spec",
                        canonical_json(holdout_spec), "--out", str(holdout)], check=True, capture_output=True)
    spec = dataclasses.replace(
        defaults.leaves_spec("snip", 0, 0), data=data_settings, supernet=dataclasses.replace(defaults.supernet, C=4),
        train=dataclasses.replace(defaults.leaf_training, epochs=epochs, batch_size=32), factors=(), leaves=("r",),
        evaluation=dataclasses.replace(defaults.evaluation, archs=3), start="init",
        inputs={"holdout": key(OUTPUTS["holdout"], canonical_json(holdout_spec)), "splits": []})
    every_epoch = ("import sys; from fewshot_core import cli, train; train.CHECKPOINT_SECONDS = 0; "
                   "cli.main(sys.argv[1:])")  # a checkpoint at every epoch's end: killed after one, mid-training
    return [sys.executable, "-c", every_epoch, "train-leaves", "--spec", canonical_json(spec),
            "--holdout", str(holdout), "--out-table", str(out_dir / "table.parquet"),
            "--out-weights", str(out_dir / "weights.pt"), "--checkpoints", str(out_dir / "checkpoints"),
            "--device", "cpu"]


@pytest.mark.workflow
@pytest.mark.faults
def test_sigkill_in_the_middle_then_rerun_matches_an_uninterrupted_run(tmp_path, defaults):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    subprocess.run(train_leaves_cmd(tmp_path, defaults, ref), check=True, capture_output=True)
    proc = subprocess.Popen(train_leaves_cmd(tmp_path, defaults, killed), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    checkpoint = killed / "checkpoints" / "snip" / "seed0" / "leaf_r.ckpt"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "table.parquet").exists(), "the job finished before it could be killed: give it more epochs"
    rerun = subprocess.run(train_leaves_cmd(tmp_path, defaults, killed), check=True, capture_output=True, text=True)
    assert "resuming" in rerun.stdout
    pd.testing.assert_frame_equal(pd.read_parquet(ref / "table.parquet"), pd.read_parquet(killed / "table.parquet"))
    expect = {"kind": "leaf_weights", "metric": "snip", "seed": 0}
    ref_w = artifacts.load_weights(ref / "weights.pt", expect)["nodes"]["r"]
    new_w = artifacts.load_weights(killed / "weights.pt", expect)["nodes"]["r"]
    assert all(torch.equal(ref_w[k], new_w[k]) for k in ref_w)
    assert not list(killed.rglob("*.tmp")) and not checkpoint.exists()  # the job's checkpoint went with it
