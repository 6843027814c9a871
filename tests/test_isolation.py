"""A metric of the user's beside others: it cannot change their values, hang its job or hide its failure."""

import os
import signal
import subprocess
import sys

import pytest
import torch

from fewshot_core import metrics, stages
from fewshot_core.checks import load_settings
from fewshot_core.errors import MetricError
from fewshot_core.metrics import REGISTRY, Batch, base
from fewshot_core.space import Supernet
from tests.conftest import ROOT

pytestmark = pytest.mark.faults

#: What a careless metric leaves behind, each in its own way; it then returns a constant.
MISBEHAVIOURS = {
    "forward hook": "model.register_forward_hook(lambda m, i, o: o * 0)",
    "forward pre-hook on every module": "for m in model.modules():\n        m.register_forward_pre_hook(lambda m, i: None)",
    "backward hook": "model.register_full_backward_hook(lambda m, gi, go: tuple(None if g is None else g * 0 for g in gi))",
    "hook on the weights' gradients": "for p in model.parameters():\n        p.register_hook(lambda g: g * 0)",
    "global module hook": "torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: o * 0)",
    "grad mode": "torch.set_grad_enabled(False)",
    "default dtype": "torch.set_default_dtype(torch.float64)",
    "torch threads": "torch.set_num_threads(torch.get_num_threads() + 1)",
    "working folder": "os.chdir('/')",
}
HEAD = "import os\n\nimport torch\n\n\ndef score(model, batches):\n    "


@pytest.fixture
def user(tmp_path, monkeypatch):
    """Register ``name`` as the user's metric ``source``'s ``score`` (undone after the test), each change it
    leaves said afresh."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(base, "_SAID", set())

    def register(name: str, source: str, kind: str = "scalar") -> None:
        (tmp_path / f"{name}.py").write_text(source)
        monkeypatch.setitem(REGISTRY, name, None)
        metrics.register_user(name, f"{name}.py:score", kind)

    return register


def network() -> tuple[Supernet, list[Batch]]:
    torch.manual_seed(0)
    return Supernet(C=4, N=1, input_size=8), [Batch(torch.randn(8, 3, 8, 8), torch.arange(8) % 10)]


def process_state() -> tuple:
    return (torch.is_grad_enabled(), torch.get_default_dtype(), torch.get_num_threads(), os.getcwd())


@pytest.mark.parametrize("harm", MISBEHAVIOURS)
def test_a_metric_that_leaves_something_changed_changes_no_other_metrics_values(user, harm):
    user("careless", f"{HEAD}{MISBEHAVIOURS[harm]}\n    return 1.0\n")
    net, batches = network()
    state = process_state()
    alone = [v.value for v in metrics.evaluate_split("snip", net, 0, batches)[0]]
    said = []
    values, parent = metrics.evaluate_split("careless", net, 0, batches, where="node r edge 0", say=said.append)
    assert parent == 1.0 and all(v.value == 1.0 for v in values)
    beside = [v.value for v in metrics.evaluate_split("snip", net, 0, batches)[0]]
    assert beside == alone and process_state() == state
    assert not any(vars(m)[t] for m in net.modules() for t in base.MODULE_HOOKS)
    assert not torch.nn.modules.module._global_forward_hooks
    assert len(said) == 1 and said[0].startswith("metric 'careless' (the user's careless.py:score) left changed after "
                                                 "its call at node r edge 0 (parent): "), said  # once, not per call
    assert "Put back" in said[0]


def test_a_metric_in_a_combination_leaves_the_other_components_split_as_it_is_alone(user, tmp_path):
    """The issue's case: a constant metric that leaves hooks, grad mode, dtype, threads and folder changed,
    combined with snip, gives snip's splits (a constant's similarity is all zeros)."""
    user("careless", HEAD + "\n    ".join(MISBEHAVIOURS.values()) + "\n    return 1.0\n")
    s = load_settings({"run": "iso", "seeds": [0], "device": "cpu", "data": {"input_size": 8}, "supernet": {"C": 4},
                       "tree": {"policy": {"levels": [2, 2]}, "edge_selection": "mincut"},
                       "metrics": {"snip": {"batch_size": 16}, "careless": {"function": "careless.py:score",
                                                                             "kind": "scalar", "batch_size": 16},
                                   "mix": {"combine": {"careless": 1.0, "snip": 1.0}}}}, workdir=tmp_path)
    holdout, root = tmp_path / "holdout.json", tmp_path / "root.pt"
    stages.make_holdout(s.holdout_spec(0), holdout, log=lambda _: None)
    stages.train_root(s.root_spec(0), holdout, root, tmp_path / "ck", "cpu", log=lambda _: None)
    said, trees = [], {}
    for metric in ("snip", "mix"):
        previous = []
        for level in range(s.levels(metric)):
            scores, split = tmp_path / f"{metric}_scores{level}.parquet", tmp_path / f"{metric}_split{level}.json"
            stages.score_edges(s.score_spec(metric, 0, level), holdout, root, previous, scores, "cpu", log=said.append)
            stages.split_nodes(s.split_spec(metric, 0, level), scores, previous, split, log=lambda _: None)
            previous.append(split)
        trees[metric] = [(r.node, r.edge, r.groups) for r in stages.read_tree_splits(
            previous, [{"kind": "splits", "metric": metric, "seed": 0, "level": lv} for lv in range(s.levels(metric))])]
    assert trees["mix"] == trees["snip"] and len(trees["snip"]) == 3
    assert [line for line in said if "left changed" in line] and os.getcwd() == str(tmp_path)


def test_a_metric_file_whose_top_level_code_changes_the_process_leaves_it_as_it_found_it(user, capsys):
    state = process_state()
    user("top", "import os\n\nimport torch\n\ntorch.set_default_dtype(torch.float64)\nos.chdir('/')\n\n\n"
                "def score(model, batches):\n    return 1.0\n")
    assert process_state() == state
    assert "metric 'top' (the user's top.py:score) left changed after loading it: default dtype torch.float32 -> " \
           "torch.float64; working folder" in capsys.readouterr().err


def test_every_call_of_a_metric_starts_from_the_same_random_state(user):
    """A metric may draw from torch's, numpy's and Python's generators: each call starts from the state the
    first found (every variant draws the same numbers), the draws are not said, and the caller's generators
    go on as if the metric had not run."""
    user("draws", "import random\n\nimport numpy as np\nimport torch\n\n\ndef score(model, batches):\n"
                  "    return float(torch.rand(1)) + float(np.random.rand()) + random.random()\n")
    net, batches = network()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    said = []
    values, parent = metrics.evaluate_split("draws", net, 0, batches, say=said.append)
    assert all(v.value == parent for v in values) and not said
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("body,needle", [
    ("model.stem = torch.nn.Identity()", "replaced, added or removed a part of the network (module stem)"),
    ("batches[0].inputs.mul_(0)", "changed batch 0's inputs in place"),
])
def test_a_metric_that_changes_what_cannot_be_put_back_is_stopped_naming_it(user, body, needle):
    user("rebuilds", f"{HEAD}{body}\n    return 1.0\n")
    net, batches = network()
    with pytest.raises(MetricError, match=r"^metric 'rebuilds' \(the user's rebuilds.py:score\) " +
                       needle.replace("(", r"\(").replace(")", r"\)") + ".* at node r edge 0"):
        metrics.evaluate_split("rebuilds", net, 0, batches, where="node r edge 0")


FAILING = {
    "an exception in a module it imports": ("from helper import divide\n\n\ndef score(model, batches):\n"
                                            "    return divide(1, 0)\n",
                                            r"raised ZeroDivisionError \(division by zero\) in .*helper.py, line 2, "
                                            r"in divide at node r edge 0"),
    "sys.exit(0)": ("import sys\n\n\ndef score(model, batches):\n    sys.exit(0)\n",
                    r"called sys.exit\(0\) \(a metric returns its value; it must not end the job\) in .*failing.py, "
                    r"line 5, in score at node r edge 0"),
    "a long message": ("def score(model, batches):\n    raise ValueError('x' * 100000)\n",
                       r"raised ValueError \(x{300}… \(100,000 characters in all\)\) in .*failing.py, line 2"),
}


@pytest.mark.parametrize("case", FAILING)
def test_a_failing_metric_is_one_error_naming_it_its_line_and_the_exception(user, tmp_path, case):
    source, needle = FAILING[case]
    (tmp_path / "helper.py").write_text("def divide(a, b):\n    return a / b\n")
    user("failing", source)
    net, batches = network()
    with pytest.raises(MetricError, match=r"^metric 'failing' \(the user's failing.py:score\) " + needle) as err:
        metrics.evaluate_split("failing", net, 0, batches, where="node r edge 0")
    assert "\n" not in str(err.value) and len(str(err.value)) < 700


@pytest.mark.parametrize("body,needle", [("return None", r"returned NoneType at architecture A"),
                                         ("raise KeyError('k')", r"raised KeyError \('k'\) in .*failing.py, line 2, in "
                                                                 r"score at architecture A$")])
def test_a_failing_metric_ranking_the_study_names_the_architecture(user, body, needle):
    user("failing", f"def score(model, batches):\n    {body}\n")
    net, batches = network()
    with pytest.raises(MetricError, match=r"^metric 'failing' \(the user's failing.py:score\) " + needle):
        metrics.value("failing", net, batches, where="architecture A")


@pytest.mark.parametrize("loop", ["pass", "try:\n            sum(range(1000))\n        except Exception:\n            pass"])
def test_a_metric_that_never_returns_ends_at_its_time_limit(user, monkeypatch, loop):
    """Even one that catches every Exception: the limit's is not one."""
    monkeypatch.setenv("FEWSHOT_METRIC_TIME_LIMIT", "0.3")
    user("endless", f"def score(model, batches):\n    while True:\n        {loop}\n")
    net, batches = network()
    handler, (left, interval) = signal.getsignal(signal.SIGALRM), signal.getitimer(signal.ITIMER_REAL)
    with pytest.raises(MetricError, match=r"^metric 'endless' \(the user's endless.py:score\) ran past its time limit "
                       r"of 0.3 s per call \(user_metric_time_limit: make it faster, or raise the limit\) in "
                       r".*endless.py, line \d, in score at node r edge 0"):
        metrics.evaluate_split("endless", net, 0, batches, where="node r edge 0")
    # an enclosing alarm (pytest-timeout's, when it runs) is back with what it had left
    assert signal.getsignal(signal.SIGALRM) == handler
    now = signal.getitimer(signal.ITIMER_REAL)
    assert (0 < now[0] <= left and now[1] == interval) if left else now == (0.0, 0.0)


def test_a_metric_that_swallows_its_time_limit_ends_its_job_with_one_line(tmp_path):
    (tmp_path / "stubborn.py").write_text("def score(model, batches):\n    while True:\n        try:\n"
                                          "            sum(range(1000))\n        except BaseException:\n"
                                          "            pass\n")
    code = ("from fewshot_core import user_metrics\n"
            "user_metrics.load('stubborn.py:score', name='stubborn', limit=0.2)(None, [])\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and proc.stderr == (
        "metric 'stubborn' (the user's stubborn.py:score) ran past its time limit of 0.2 s per call "
        "(user_metric_time_limit) and went on after it: the job ends here\n")


def test_through_the_workflow_a_longest_name_runs_and_a_call_past_the_limit_ends_its_job_in_one_line(
        tmp_path, snakemake, tiny):
    """The one workflow run of these tests: the longest run and metric names the schema allows make every file
    their trees and their training-free ranking write (the ranking's file name is the longest a metric's name
    goes into), and ``user_metric_time_limit`` reaches the job, whose log then holds one line."""
    from fewshot_core.outputs import LOG, OUTPUTS

    (tmp_path / "mine.py").write_text("import time\n\n\ndef score(model, batches):\n    return 1.0\n\n\n"
                                      "def slow(model, batches):\n    while True:\n        time.sleep(0.01)\n")
    run, long = "r" * 255, ("long_" + "abcdefghijklmnopqrstuvwxyz" * 8)[:200]
    cfg = {**tiny, "run": run, "seeds": [0], "user_metric_time_limit": 1, "metrics": {
        long: {"function": "mine.py:score", "kind": "scalar", "batch_size": 16},
        "slow": {"function": "mine.py:slow", "kind": "scalar", "batch_size": 16}}}
    results = f"results/{run}"
    ranking = OUTPUTS["zero_cost"].path(results, proxy=long, chunk=0)
    proc = snakemake(tmp_path, cfg, "--keep-going", "splits", ranking, check=False)
    assert proc.returncode != 0
    for level in (0, 1):
        assert (tmp_path / OUTPUTS["splits"].path(results, metric=long, seed=0, level=level)).is_file()
    assert (tmp_path / ranking).is_file()
    log = (tmp_path / results / LOG.format(rule="score_edges", name="slow/seed0_L0")).read_text()
    assert log.strip().splitlines()[-1] == (
        "fewshot score-edges: error: metric 'slow' (the user's mine.py:slow) ran past its time limit of 1 s per call "
        f"(user_metric_time_limit: make it faster, or raise the limit) in {tmp_path / 'mine.py'}, line 10, in slow at "
        "node r edge 0"), log
    assert "Traceback" not in log
