"""Fault suite: bad configurations, kills, full disks and unsafe files give clear errors and lose nothing.
Damaged and foreign outputs: test_faults_files.py. Run both alone: pytest -m faults."""

import dataclasses
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

from fewshot_core import artifacts, data
from fewshot_core import train as training
from fewshot_core.errors import ArtifactError
from fewshot_core.settings import canonical_json
from fewshot_core.space import Supernet
from fewshot_core.train import train
from tests.conftest import ROOT, edited, load_scenario, refusal

pytestmark = pytest.mark.faults
TINY = load_scenario("tiny")


#: Each bad configuration and what its message must say.
BAD_CONFIGURATIONS = [
    (edited(TINY, "metrics", {"zen": {"batch_size": 8}}), ["metrics.zen", "gradnorm"]),
    (edited(TINY, "training.leaves.epochs", 0), ["training.leaves.epochs", "minimum"]),
    (edited(TINY, "training.leaves.epochs", -3), ["training.leaves.epochs", "minimum"]),
    (edited(TINY, "tree.policy", {"constant": {"leaves": 8, "b": 1}}), ["tree.policy"]),
    (edited(TINY, "tree.policy", {"constant": {"leaves": 2, "b": 3}}), ["tree.policy", "N=2", "b=3"]),
    (edited(TINY, "seeds", [0, 1, 1]), ["seeds", "non-unique"]),
    (edited(TINY, "data.name", "mnist"), ["data.name", "digits", "fashion_mnist", "cifar10", "synthetic"]),
    (edited(edited(TINY, "data.name", "cifar10"), "data.root", "no/such/dir"),
     ["data.root", "no/such/dir", "cifar-10-batches-bin"]),
    (edited(edited(TINY, "data.name", "fashion_mnist"), "data.root", "no/such/dir"),
     ["data.root", "Fashion-MNIST file missing", "no/such/dir", "dataset-fashion-mnist"]),
    (edited(edited(TINY, "data.name", "fashion_mnist"), "data.download", True), ["data.root", "data.download"]),
    (edited(TINY, "data.train_images", 5000), ["data.train_images", "5000", "1437", "digits"]),
    (edited(TINY, "data.train_images", 1), ["data.train_images", "minimum"]),
    (edited(TINY, "run", "a; touch pwned"), ["run", "does not match"]),
    (edited(TINY, "tree.edge_order", [0, 0]), ["tree.edge_order", "distinct"]),
    (edited(TINY, "training.optimizer.lr", float("nan")), ["training.optimizer.lr", "not a finite number"]),
    (edited(TINY, "training.optimizer.grad_clip", float("nan")), ["training.optimizer.grad_clip", "finite"]),
    (edited(TINY, "seeds", [0.0, 1.0]), ["seeds.0", "not an integer"]),
    (edited(TINY, "training.leaves.epochs", 1.0), ["training.leaves.epochs", "not an integer"]),
    (edited(TINY, "metrics.snip.settings", {"temperature": 2.0}), ["metrics.snip.settings.temperature", "no such"]),
    (edited(TINY, "metrics", {"lr": {"settings": {"crops": "many"}}}), ["metrics.lr.settings.crops", "int"]),
    (edited(TINY, "metrics", {"lr": {"settings": {"crops": 0}}}), ["metrics.lr.settings.crops: 0 must be at least 2"]),
    (edited(TINY, "metrics", {"lr": {"settings": {"crop_size": 32}}}),
     ["metrics.lr.settings.crop_size: 32 must be at most the images' side, data.input_size 8"]),
    (edited(TINY, "metrics", {"lr": {"settings": {"crop_size": 5}}}), ["metrics.lr.settings.crop_size: 5 must be even"]),
    (edited(TINY, "metrics", {"grasp": {"settings": {"temperature": 0}}}),
     ["metrics.grasp.settings.temperature: 0 must be greater than 0"]),
    (edited(TINY, "metrics", {"jacobcov": {"settings": {"k": -1}}}), ["metrics.jacobcov.settings.k: -1 must be greater"]),
    (edited(TINY, "study.archs", 15284), ["study.archs: 15284 would train every architecture from scratch"]),
    (edited(TINY, "study.archs", 20000), ["study.archs: 20000 is more than the 15284 architectures"]),
    (edited(TINY, "data.input_size", 9), ["data.input_size", "multiple of 4"]),
    (edited(TINY, "data.input_size", 100000), ["data.input_size", "maximum"]),
    (edited(TINY, "tree.policy", {"levels": [6]}), ["tree.policy"]),
    (edited(TINY, "tree.policy", {"levels": [2, 2, 2, 2, 2, 2, 2]}), ["tree.policy"]),
    (edited(TINY, "device", "cuda:7"), ["device", "GPU"]),
    (edited(TINY, "run", ".."), ["run", "does not match"]),
    (edited(TINY, "training.leaves.archs", "all"), ["training.leaves.archs", "integer"]),
    (edited(TINY, "metrics.snip", {"combine": {"synflow": 1}}), ["metrics.snip: a combine needs a name of its own"]),
    (edited(TINY, "metrics.mix", {"combine": {"snip": 1}, "batch_size": 8}),
     ["metrics.mix.batch_size: a combine takes only combine:"]),
    (edited(TINY, "metrics.late", {"schedule": ["snip", "synflow"], "settings": {"bogus": 1}}),
     ["metrics.late.settings: a schedule takes only schedule:"]),
    (edited(TINY, "study.archs", 1), ["study.archs: 1 architectures cannot be ranked", "at least 3"]),
    (edited(TINY, "study.archs", 2), ["study.archs: 2 architectures cannot be ranked"]),
    (edited(TINY, "data.val_fraction", 0.9999), ["data.val_fraction: 0.9999", "leaves no training image"]),
    (edited(TINY, "data.val_fraction", 0.995), ["metrics.snip.batch_size: 1 batch(es) of 16 need 16 images",
                                               "training part of digits has 7 (data.val_fraction 0.995)"]),
    (edited(TINY, "metrics.snip.batch_size", 5000), ["metrics.snip.batch_size: 1 batch(es) of 5000 need 5000 images",
                                                     "training part of digits has 1150"]),
    (edited(edited(TINY, "tree.policy", {"levels": [5, 5, 5]}), "tree.edge_order", [3, 4, 5]),
     ["tree.policy: 5 groups on edges 3<-0, 3<-1, 3<-2", "'none'", "fewer groups"]),
    (edited(TINY, "metrics.bal", {"metric": "snip", "tree": {"edge_order": [0, 0]}}),
     ["metrics.bal.tree.edge_order", "distinct"]),
    (edited(TINY, "metrics.bal", {"metric": "snip", "tree": {"edge_selection": "mincut", "edge_order": [0, 1]}}),
     ["metrics.bal.tree.edge_order is only used with edge_selection 'order'"]),
    (edited(TINY, "metrics.bal", {"metric": "zen"}), ["metrics.bal.metric: 'zen' is not a metric of the catalogue"]),
    (edited(TINY, "metrics.snip", {"metric": "synflow"}), ["metrics.snip: a metric needs a name of its own"]),
    (edited(TINY, "metrics.bal", {"metric": "snip", "tree": {"policy": {"levels": [9]}}}), ["metrics.bal.tree.policy"]),
    (edited(TINY, "controls", ["fewshot"]), ["controls.0", "fewshot_nas"]),
    (edited(edited(TINY, "metrics.gmnas", {"metric": "gm_nas"}), "controls", ["gmnas"]),
     ["controls: 'gmnas' is also a metric's name"]),
]
#: Those also run through Snakemake (the first case whose message starts so): a shell-unsafe run name, a schema
#: bound, a rule between keys, a missing folder.
THROUGH_SNAKEMAKE = [next(case for case in BAD_CONFIGURATIONS if case[1][0].startswith(start)) for start in
                     ("run", "training.leaves.epochs", "metrics.snip.batch_size: 1 batch(es) of 16", "data.root")]


@pytest.mark.parametrize("cfg,needles", BAD_CONFIGURATIONS)
def test_bad_configuration_is_rejected_naming_the_key(tmp_path, cfg, needles):
    """The check the workflow makes before any job, in this process (:func:`tests.conftest.refusal`)."""
    message = refusal(tmp_path, cfg)
    for needle in needles:
        assert needle in message, f"{needle!r} missing from:\n{message}"


@pytest.mark.parametrize("cfg,needles", THROUGH_SNAKEMAKE)
def test_bad_configuration_is_rejected_before_any_job(tmp_path, snakemake, cfg, needles):
    proc = snakemake(tmp_path, cfg, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    for needle in needles:
        assert needle in out, f"{needle!r} missing from:\n{out[-2000:]}"
    assert "Traceback" not in out and 'File "' not in out
    assert not (tmp_path / "results").exists() and not (tmp_path / "pwned").exists()


def test_a_list_given_with_config_says_to_use_a_file(tmp_path, snakemake, tiny):
    proc = snakemake(tmp_path, tiny, "--config", "seeds=[0]", check=False)
    assert proc.returncode != 0 and "seeds" in proc.stderr and "A --config override is read as text" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.workflow
def test_a_key_given_twice_in_a_configuration_file_is_named_with_both_lines(tmp_path):
    import yaml

    text = yaml.safe_dump(TINY, sort_keys=False) + "metrics:\n  gm: {}\n"
    (tmp_path / "twice.yaml").write_text(text)
    line = text.splitlines().index("metrics:") + 1
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path), "--cores",
           "1", "--configfile", str(tmp_path / "twice.yaml")]
    from tests.conftest import ENV

    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    assert proc.returncode != 0 and "twice.yaml: the key 'metrics' is given twice, on lines " \
        f"{line} and {len(text.splitlines()) - 1}" in proc.stderr, proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "results").exists()


def test_unwritable_output_path_is_rejected(tmp_path, snakemake, tiny):
    (tmp_path / "results").write_text("a file where the results folder should be")
    proc = snakemake(tmp_path, tiny, check=False)
    assert proc.returncode != 0 and "cannot be written" in proc.stdout + proc.stderr


def test_paths_with_spaces_quotes_and_semicolons_work_and_run_nothing_else(tmp_path, snakemake, tiny):
    work = tmp_path / "a dir; with 'quotes' and \"more\" $(touch pwned)"
    work.mkdir()
    cfg = {**tiny, "seeds": [0], "metrics": {"snip": tiny["metrics"]["snip"]}, "run": "odd.name-1"}
    snakemake(work, cfg, "splits")
    assert (work / "results" / "odd.name-1" / "snip" / "seed0" / "split_L1.json").exists()
    assert not list(tmp_path.rglob("pwned")) and not (tmp_path.parent / "pwned").exists()


def test_a_full_disk_is_one_message_without_a_traceback(tmp_path, monkeypatch, capsys, defaults):
    from fewshot_core import cli

    def full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(artifacts.os, "fsync", full)
    with pytest.raises(SystemExit) as stop:
        cli.main(["make-holdout", "--spec", canonical_json(defaults.holdout_spec(0)), "--out",
                  str(tmp_path / "h.json")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "No space left on device" in err and "free space" in err
    assert "Traceback" not in err and not list(tmp_path.iterdir())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_write_leaves_no_temporary_file(tmp_path, sig):
    """The command line turns SIGTERM and SIGINT into exceptions, so the temporary file is removed."""
    script = (
        "import os, signal, time\n"
        "from fewshot_core import artifacts, cli\n"
        "signal.signal(signal.SIGTERM, cli._terminate)\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"  # a background job inherits SIGINT ignored
        "artifacts.os.fsync = lambda fd: time.sleep(60)\n"
        f"artifacts.atomic_write_bytes({str(tmp_path / 'out.bin')!r}, b'x' * 1000)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not list(tmp_path.glob(".*.tmp")) and time.time() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.glob(".*.tmp")), "the write never started"
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert proc.returncode != 0
    assert not list(tmp_path.iterdir())  # neither the output nor its temporary file


def test_sigkill_of_snakemake_then_rerun_equals_an_uninterrupted_run(tmp_path, snakemake, tiny, tiny_run):
    """One tree of the tiny scenario (snip, seed 0), its settings those of the session's tiny run: killed with
    every job once its first split is written, unlocked and rerun, every file of the tree equals the tiny
    run's, which ran uninterrupted."""
    import json

    import yaml

    cfg = {**tiny, "seeds": [0], "metrics": {"snip": tiny["metrics"]["snip"]}}
    work = tmp_path / "killed"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(work),
           "--cores", "2", "splits", "leaves", "--configfile", str(work / "config.yaml")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    target = work / "results" / "tiny" / "snip" / "seed0" / "split_L0.json"
    deadline = time.time() + 120
    while not target.exists() and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and every job it runs
    proc.wait()
    assert not (work / "results" / "tiny" / "leaves.parquet").exists()
    locked = snakemake(work, cfg, "splits", "leaves", "--rerun-incomplete", check=False)  # a stale lock refused...
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr
    snakemake(work, cfg, "--unlock")  # ...which the user lifts, as its message says
    snakemake(work, cfg, "splits", "leaves", "--rerun-incomplete")
    tree = "results/tiny/snip/seed0"
    for name in ("split_L0.json", "split_L1.json"):
        assert json.loads((work / tree / name).read_text())["splits"] == json.loads(
            (tiny_run / tree / name).read_text())["splits"], name
    for name in ("scores_L0.parquet", "scores_L1.parquet", "leaves/chunk0.parquet"):
        ours, theirs = pd.read_parquet(work / tree / name), pd.read_parquet(tiny_run / tree / name)
        pd.testing.assert_frame_equal(ours.drop(columns="seconds", errors="ignore"),
                                      theirs.drop(columns="seconds", errors="ignore"))
    leaves = pd.read_parquet(tiny_run / "results" / "tiny" / "leaves.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(work / "results" / "tiny" / "leaves.parquet"),
                                  leaves[(leaves.metric == "snip") & (leaves.seed == 0)].reset_index(drop=True))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "fewshot_core.cli", *args]


@pytest.mark.workflow
def test_sigkill_of_a_scoring_job_leaves_no_output_and_the_rerun_is_identical(tmp_path, defaults):
    """The job killed is a `fewshot score-edges` process; what it reads, the uninterrupted run it is compared
    with and its rerun are made by the same stages in this process (what the command calls)."""
    from fewshot_core import stages
    from fewshot_core.checks import load_settings

    s = load_settings({"run": "x", "seeds": [0], "data": {"input_size": 8}, "supernet": {"C": 4},
                       "tree": {"policy": {"levels": [2]}, "edge_selection": "mincut"},
                       "metrics": {"ntk": {"batch_size": 16}}})
    holdout, root = tmp_path / "holdout.json", tmp_path / "root.pt"
    stages.make_holdout(s.holdout_spec(0), holdout, log=print)
    stages.train_root(s.root_spec(0), holdout, root, tmp_path / "ck", "cpu", log=print)

    def score(out):
        stages.score_edges(s.score_spec("ntk", 0, 0), holdout, root, [], out, "cpu", log=print)

    ref = tmp_path / "ref.parquet"
    score(ref)
    out = tmp_path / "killed.parquet"
    proc = subprocess.Popen(_cli("score-edges", "--spec", canonical_json(s.score_spec("ntk", 0, 0)), "--holdout",
                                 str(holdout), "--weights", str(root), "--device", "cpu", "--out", str(out)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc.stdout.readline()  # the first edge is scored: the job is mid-way
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))
    score(out)
    pd.testing.assert_frame_equal(pd.read_parquet(ref).drop(columns="seconds"),
                                  pd.read_parquet(out).drop(columns="seconds"))


def test_full_disk_during_a_checkpoint_write_keeps_the_last_good_one(tmp_path, monkeypatch, defaults):
    d = data.synthetic(n_train=64, n_test=8, input_size=8, seed=0)
    cfg = dataclasses.replace(defaults.leaf_training, epochs=3, batch_size=16)

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

    monkeypatch.setattr(artifacts.os, "fsync", fsync_fails_on_second_checkpoint)
    monkeypatch.setattr(training, "CHECKPOINT_SECONDS", 0)  # a checkpoint every epoch
    with pytest.raises(OSError, match="No space left"):
        train(fresh(), d, np.arange(64), cfg, 0, checkpoint=artifacts.Checkpoints(ck, "k"))
    monkeypatch.setattr(artifacts.os, "fsync", real_fsync)
    state, _ = artifacts._torch_load(ck, "checkpoint", artifacts.CHECKPOINT_FORMAT)
    assert state["epoch"] == 0  # the first epoch's checkpoint, intact
    assert not list(tmp_path.glob(".*.tmp"))
    resumed = fresh()
    train(resumed, d, np.arange(64), cfg, 0, checkpoint=artifacts.Checkpoints(ck, "k"))
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()))


def test_weight_files_with_code_are_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    import io
    import json
    import zipfile

    from fewshot_core import digests

    path = tmp_path / "evil.pt"
    torch.save({"format": artifacts.WEIGHTS_FORMAT, "supernet": Evil(), "nodes": Evil()}, path)
    with pytest.raises(ArtifactError, match="evil.pt.*must not be loaded") as err:
        artifacts.load_weights(path, {"kind": "root"})
    assert "weights_only=False" not in str(err.value)  # never the advice to load it anyway
    tensors = io.BytesIO()  # the same pickle inside this tool's own container, with a record that looks right
    torch.save({"supernet": Evil(), "nodes": Evil()}, tensors)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("format", artifacts.WEIGHTS_FORMAT)
        z.writestr("provenance.json", json.dumps({"kind": "root", "content": digests.short(tensors.getvalue())}))
        z.writestr("tensors.pt", tensors.getvalue())
    with pytest.raises(ArtifactError, match="evil.pt.*must not be loaded"):
        artifacts.load_weights(path, {"kind": "root"})
    assert not marker.exists()


def test_no_file_is_loaded_with_pickle_anywhere():
    """Every torch.load in the package passes weights_only=True; nothing calls pickle.load."""
    for path in (ROOT / "fewshot_core").rglob("*.py"):
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


def test_a_job_that_imports_another_copy_of_the_package_stops_naming_both(tmp_path, monkeypatch, capsys, defaults):
    """The workflow names its package in the jobs' environment; a job whose `fewshot` imports another copy (a
    second clone installed in the environment) would record this checkout's code beside the other's results."""
    from fewshot_core import cli

    other = tmp_path / "clone" / "fewshot_core"
    other.mkdir(parents=True)
    monkeypatch.setenv(cli.PACKAGE_VARIABLE, str(other))
    with pytest.raises(SystemExit) as stop:
        cli.main(["make-holdout", "--spec", canonical_json(defaults.holdout_spec(0)), "--out", str(tmp_path / "h.json")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and str(cli.PACKAGE) in err and str(other) in err and "pip install -e" in err
    assert "Traceback" not in err and not (tmp_path / "h.json").exists()
    monkeypatch.setenv(cli.PACKAGE_VARIABLE, str(ROOT / "fewshot_core"))
    cli.main(["make-holdout", "--spec", canonical_json(defaults.holdout_spec(0)), "--out", str(tmp_path / "h.json")])
    assert (tmp_path / "h.json").exists()
