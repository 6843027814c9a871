"""Beyond the paper: metrics combined, a metric per level, and the user's own metric."""


import pytest

from fewshot_core import artifacts, stages
from fewshot_core.checks import load_settings
from fewshot_core.errors import ConfigError
from fewshot_core.settings import metric_code

BASE = {"run": "custom", "seeds": [0, 1], "device": "cpu", "data": {"input_size": 8}, "supernet": {"C": 4},
        "tree": {"policy": {"levels": [2, 2]}, "edge_selection": "mincut"}}


def quiet(_message: str) -> None:
    pass


def grow(s, metric: str, seed: int, work) -> list:
    """One tree grown in this process through the stages the workflow runs; its split records."""
    holdout, root = work / f"holdout{seed}.json", work / f"root{seed}.pt"
    if not root.exists():
        stages.make_holdout(s.holdout_spec(seed), holdout, log=quiet)
        stages.train_root(s.root_spec(seed), holdout, root, work / "ck", "cpu", log=quiet)
    previous = []
    for level in range(s.levels(metric)):
        scores, split = work / f"{metric}{seed}_scores{level}.parquet", work / f"{metric}{seed}_split{level}.json"
        stages.score_edges(s.score_spec(metric, seed, level), holdout, root, previous, scores, "cpu", log=quiet)
        stages.split_nodes(s.split_spec(metric, seed, level), scores, previous, split, log=quiet)
        previous.append(split)
    return stages.read_tree_splits(previous, [{"kind": "splits", "metric": metric, "seed": seed, "level": lv}
                                                 for lv in range(len(previous))])


def shape(records) -> list:
    return [(r.node, r.edge, r.groups) for r in records]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_combination_of_one_component_gives_that_components_splits(tmp_path, seed):
    """Under mincut, so that the edges a node compares are scaled alike too."""
    s = load_settings({**BASE, "metrics": {"gradnorm": {"batch_size": 16}, "synflow": {"batch_size": 16},
                                           "just_gn": {"combine": {"gradnorm": 1.0}},
                                           "gn_sf": {"combine": {"gradnorm": 1.0, "synflow": 2.0}}}})
    assert shape(grow(s, "just_gn", seed, tmp_path)) == shape(grow(s, "gradnorm", seed, tmp_path))
    assert len(grow(s, "gn_sf", seed, tmp_path)) == 3  # and two components make a tree of their own


def test_a_schedule_of_one_metric_gives_that_metrics_tree(tmp_path):
    s = load_settings({**BASE, "metrics": {"snip": {"batch_size": 16}, "synflow": {"batch_size": 16},
                                           "same": {"schedule": ["snip", "snip"]},
                                           "late": {"schedule": ["synflow", "snip"]}}})
    assert shape(grow(s, "same", 0, tmp_path)) == shape(grow(s, "snip", 0, tmp_path))
    late = grow(s, "late", 0, tmp_path)
    assert shape(late)[0] == shape(grow(s, "synflow", 0, tmp_path))[0]  # its root split is synflow's


def test_combined_similarity_scales_each_component_without_shifting():
    import numpy as np

    from fewshot_core.metrics import combine

    a = [np.array([[0, -2.0], [-2.0, 0]]), np.array([[0, -4.0], [-4.0, 0]])]
    b = [np.array([[1, 0.5], [0.5, 1]]), np.array([[1, -1.0], [-1.0, 1]])]
    out = combine([a, b], (1.0, 3.0))
    assert out[1][0, 1] == pytest.approx((1 * -1.0 + 3 * -1.0) / 4)  # a / 4, b / 1
    assert out[0][0, 1] == pytest.approx((1 * -0.5 + 3 * 0.5) / 4)


USER_METRIC = '''"""A metric of my own: the mean absolute logit, raised to a power."""
from my_helpers import powered


def score(model, batches, power=1.0):
    """The mean absolute logit over the first batch, to the power ``power``."""
    logits = model(batches[0].inputs)
    return powered(float(logits.abs().mean()), power)
'''
HELPERS = '''"""A module beside the metric file, which it imports."""


def powered(x, power):
    return x**power
'''


@pytest.fixture
def user_run(tmp_path, tiny):
    (tmp_path / "my_metrics.py").write_text(USER_METRIC)
    (tmp_path / "my_helpers.py").write_text(HELPERS)
    cfg = {**tiny, "seeds": [0], "study": {}, "metrics": {
        "snip": tiny["metrics"]["snip"],
        "mine": {"function": "my_metrics.py:score", "kind": "scalar", "batch_size": 16, "settings": {"power": 2.0}}}}
    return tmp_path, cfg


def test_a_user_metric_runs_end_to_end_and_its_edits_rerun_its_jobs_alone(user_run, snakemake):
    work, cfg = user_run
    snakemake(work, cfg, "splits")
    run = work / "results" / "tiny"
    records = stages.read_tree_splits([run / "mine" / "seed0" / f"split_L{lv}.json" for lv in (0, 1)],
                                         [{"kind": "splits", "metric": "mine", "seed": 0, "level": lv} for lv in (0, 1)])
    assert len(records) == 3
    scores = artifacts.read_table(run / "mine" / "seed0" / "scores_L0.parquet", {"kind": "scores", "metric": "mine"})
    assert scores.value.notna().all() and (scores.value > 0).all()
    assert "Nothing to be done" in snakemake(work, cfg, "splits", "--dry-run").stdout
    edits = {work / "my_metrics.py": USER_METRIC.replace("abs().mean()", "abs().max()"),
             work / "my_helpers.py": HELPERS.replace("x**power", "abs(x) ** power")}
    for path, text in edits.items():  # the metric's own file, then the module it imports, each alone
        original = path.read_text()
        path.write_text(text)
        out = snakemake(work, cfg, "splits", "--dry-run").stdout
        assert "metric=mine" in out and "metric=snip" not in out
        assert "rule make_holdout" not in out and "rule train_root" not in out
        path.write_text(original)  # the code's digest, not the file's time, decides: back to the run's code
    for path, text in edits.items():
        path.write_text(text)
    snakemake(work, cfg, "splits")  # the edited code runs (both edits at once: one run for the two)


#: Mistakes in a metric of the user's (the folder, the configuration) and what stops the run says.
BAD_USER_METRICS = [
    (lambda w, c: (w / "my_metrics.py").unlink(), "metrics.mine.function: the file 'my_metrics.py' does not exist"),
    (lambda w, c: c["metrics"]["mine"].update(function="my_metrics.py:scor"), "defines no top-level function 'scor'"),
    (lambda w, c: (w / "my_metrics.py").write_text("def score(model):\n    return 1.0\n"),
     "metrics.mine.function: score(model) must take (model, batches, **settings)"),
    (lambda w, c: [(w / "my_metrics.py").write_text("def score(model, batches, power):\n    return 1.0\n"),
                   c["metrics"]["mine"].update(settings={})], "metrics.mine.function: score needs ['power']"),
    (lambda w, c: c["metrics"]["mine"].update(settings={"gamma": 1.0}), "metrics.mine.settings: score takes no"),
    (lambda w, c: c["metrics"]["mine"].pop("kind"), "metrics.mine.kind"),
    (lambda w, c: c["metrics"].update(mix={"combine": {"mine": 1.0, "random": 1.0}}), "metrics.mix.combine.random"),
    (lambda w, c: c["metrics"].update(late={"schedule": ["snip"]}), "metrics.late.schedule: 1 entries"),
]


def test_a_bad_user_metric_stops_the_run_before_any_job_naming_it(user_run, snakemake):
    """Through Snakemake, one mistake: no job runs, one message. Every mistake, through the check the
    Snakefile makes: the next test."""
    work, cfg = user_run
    change, needle = BAD_USER_METRICS[0]
    change(work, cfg)
    proc = snakemake(work, cfg, check=False)
    assert proc.returncode != 0 and needle in proc.stderr, proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr and not (work / "results").exists()


@pytest.mark.parametrize("change,needle", BAD_USER_METRICS)
def test_every_bad_user_metric_is_refused_by_the_check_before_any_job(user_run, change, needle):
    """The check the Snakefile makes before any job, in the workflow's folder, in this process
    (:func:`tests.conftest.refusal`): one Snakemake start less each."""
    from tests.conftest import refusal

    work, cfg = user_run
    change(work, cfg)
    assert needle in refusal(work, cfg)


def test_the_default_configuration_grows_a_combination_and_a_schedule():
    import yaml

    from tests.conftest import ROOT

    s = load_settings(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    kinds = {name: [sc.combined for sc in m.levels] for name, m in s.metrics.items()}
    assert any(all(k) for k in kinds.values())  # a combined metric
    assert any(len({repr(sc) for sc in m.levels}) > 1 for m in s.metrics.values())  # a schedule


def test_checks_without_running_user_code(tmp_path):
    """The check parses the file; its top-level code (here, one that would fail) never runs."""
    (tmp_path / "m.py").write_text("raise SystemExit('ran')\n\ndef score(model, batches):\n    return 1.0\n")
    s = load_settings({**BASE, "metrics": {"m": {"function": "m.py:score", "kind": "scalar"}}}, workdir=tmp_path)
    assert s.metrics["m"].levels[0].parts[0].function == "m.py:score"
    with pytest.raises(ConfigError, match="metrics.m.kind"):
        load_settings({**BASE, "metrics": {"m": {"function": "m.py:score"}}}, workdir=tmp_path)


def test_the_readme_metric_passes_the_check_and_scores_a_split(tmp_path, monkeypatch):
    """The complete metric the README shows is valid as it stands: checked, loaded and run on one split."""
    import math
    import re

    import torch

    from fewshot_core import metrics, user_metrics
    from fewshot_core.metrics import REGISTRY, Batch
    from fewshot_core.space import Supernet
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    source = re.search(r"A complete metric\s+of your own.*?```python\n(.*?)```", readme, re.S).group(1)
    (tmp_path / "my_metrics.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    user_metrics.check("mine", "my_metrics.py:score", {"power": 2.0}, tmp_path)
    monkeypatch.setitem(REGISTRY, "mine", None)  # the registration below is undone after the test
    metrics.register_user("mine", "my_metrics.py:score", "scalar")
    torch.manual_seed(0)
    net = Supernet(C=4, N=1, input_size=8)
    batch = Batch(torch.randn(4, 3, 8, 8), torch.zeros(4, dtype=torch.long))
    values, parent = metrics.evaluate_split("mine", net, 0, [batch], {"power": 2.0})
    assert len(values) == 5 and all(math.isfinite(v.value) and v.value > 0 for v in values)
    assert math.isfinite(parent)



HARMFUL = {  # metrics that change the model they are given, each in its own way
    "accumulates gradients": "def score(model, batches):\n"
                             "    model(batches[0].inputs).sum().backward()  # no zero_grad first\n"
                             "    return float(sum(p.grad.abs().sum() for p in model.parameters() if p.grad is not None))\n",
    "steps an optimiser": "import torch\n\n\ndef score(model, batches):\n"
                          "    opt = torch.optim.SGD(model.parameters(), lr=0.5)\n"
                          "    model(batches[0].inputs).pow(2).mean().backward()\n    opt.step()\n"
                          "    return float(model(batches[0].inputs).abs().mean())\n",
    "changes batch-norm statistics": "def score(model, batches):\n    model.train()\n    model(batches[0].inputs * 3 + 1)\n"
                                     "    model.eval()\n    return float(model(batches[0].inputs).abs().mean())\n",
}


@pytest.mark.parametrize("harm", HARMFUL)
def test_each_variant_of_a_harmful_metric_gets_the_value_it_gets_alone(tmp_path, monkeypatch, harm):
    import copy

    import numpy as np
    import torch

    from fewshot_core import metrics, user_metrics
    from fewshot_core.metrics import REGISTRY, Batch
    from fewshot_core.nb201 import OPS
    from fewshot_core.space import Supernet

    (tmp_path / "harm.py").write_text(HARMFUL[harm])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(REGISTRY, "harm", None)
    metrics.register_user("harm", "harm.py:score", "scalar")
    torch.manual_seed(0)
    net = Supernet(C=4, N=1, input_size=8)
    batch = Batch(torch.randn(8, 3, 8, 8), torch.arange(8) % 10)
    pristine = copy.deepcopy(net)
    values, parent = metrics.evaluate_split("harm", net, 0, [batch])
    fn = user_metrics.load("harm.py:score")
    for v in values:
        alone = copy.deepcopy(pristine)
        mask = alone.mask
        mask[0] = False
        mask[0, OPS.index(v.op)] = True
        alone.set_mask(mask, connected=False)
        assert v.value == pytest.approx(fn(alone, [batch]), rel=1e-6), v.op
    assert len({round(v.value, 9) for v in values}) > 1  # the variants differ, so the test can tell them apart
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), pristine.state_dict().values()))
    assert np.array_equal(net.mask, pristine.mask) and all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("body,needle", [
    ("return torch.ones(2)", "returned a tensor of shape (2,)"),
    ("return None", "returned NoneType"),
    ("return 'high'", "returned str"),
])
def test_a_user_metric_of_the_wrong_form_is_named_with_its_function(tmp_path, monkeypatch, body, needle):
    import torch

    from fewshot_core import metrics
    from fewshot_core.errors import MetricError
    from fewshot_core.metrics import REGISTRY, Batch
    from fewshot_core.space import Supernet

    (tmp_path / "odd.py").write_text(f"import torch\n\n\ndef score(model, batches):\n    {body}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(REGISTRY, "odd", None)
    metrics.register_user("odd", "odd.py:score", "scalar")
    net = Supernet(C=4, N=1, input_size=8)
    with pytest.raises(MetricError, match=r"metric 'odd' \(the user's odd.py:score\) " + needle.replace("(", r"\(")
                       .replace(")", r"\)") + ".* at node r edge 0"):
        metrics.evaluate_split("odd", net, 0, [Batch(torch.randn(4, 3, 8, 8), torch.zeros(4, dtype=torch.long))],
                               where="node r edge 0")


def test_a_user_metric_returning_a_tensor_that_requires_grad_is_taken_as_its_number(tmp_path, monkeypatch):
    import torch

    from fewshot_core import metrics
    from fewshot_core.metrics import REGISTRY, Batch
    from fewshot_core.space import Supernet

    (tmp_path / "t.py").write_text("def score(model, batches):\n    return model(batches[0].inputs).abs().mean()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(REGISTRY, "t", None)
    metrics.register_user("t", "t.py:score", "scalar")
    values, parent = metrics.evaluate_split("t", Supernet(C=4, N=1, input_size=8), 0,
                                            [Batch(torch.randn(4, 3, 8, 8), torch.zeros(4, dtype=torch.long))])
    assert isinstance(parent, float) and all(isinstance(v.value, float) for v in values)


def test_a_metric_given_as_a_module_resolves_in_the_check_and_in_the_job_alike(tmp_path, monkeypatch):
    """`function: "mymod:score"` names a module beside the run, which the check and the job both find there."""
    from fewshot_core import user_metrics

    (tmp_path / "mymod.py").write_text("from myhelp import k\n\n\ndef score(model, batches, power=1.0):\n"
                                       "    return k * power\n")
    (tmp_path / "myhelp.py").write_text("k = 2.0\n")
    s = load_settings({**BASE, "metrics": {"m": {"function": "mymod:score", "kind": "scalar"}}}, workdir=tmp_path)
    assert s.metrics["m"].levels[0].parts[0].function == "mymod:score"
    monkeypatch.chdir(tmp_path)
    assert user_metrics.load("mymod:score")(None, []) == 2.0
    (tmp_path / "mymod.py").write_text("import nosuchmodule\n\n\ndef score(model, batches):\n    return 1.0\n")
    with pytest.raises(ConfigError, match="metrics.m.function: .*mymod.py imports 'nosuchmodule', which is neither"):
        load_settings({**BASE, "metrics": {"m": {"function": "mymod:score", "kind": "scalar"}}}, workdir=tmp_path)


def test_a_split_whose_child_holds_no_connected_cell_fails_in_its_split_job_naming_the_node(tmp_path, monkeypatch):
    """A metric that sets `none` apart on edges 3, 4 and 5 cuts every path of leaf r000: known only once
    the metric has spoken, so the split job says which tree, node and edge, and what to change."""
    from fewshot_core.errors import SplitError
    from fewshot_core.metrics import REGISTRY

    (tmp_path / "apart.py").write_text("def score(model, batches):\n"
                                       "    return float(model.mask[:, 0].sum())  # none's own variant stands out\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(REGISTRY, "apart", None)  # the registration the scoring stage makes is undone after the test
    s = load_settings({**BASE, "seeds": [0], "tree": {"policy": {"levels": [2, 2, 2]}, "edge_order": [3, 4, 5]},
                       "metrics": {"apart": {"function": "apart.py:score", "kind": "scalar", "batch_size": 4}}},
                      workdir=tmp_path)
    with pytest.raises(SplitError, match=r"apart, seed 0, node r00: the split of edge 3<-2 into \[\['none'\], "
                                         r".*child r000 only \['none'\].*Change tree.policy"):
        grow(s, "apart", 0, tmp_path)


def test_train_images_known_before_any_job_match_the_data():
    from fewshot_core import data
    from fewshot_core.checks import TRAIN_IMAGES

    for name in ("digits", "synthetic"):
        assert TRAIN_IMAGES[name] == len(data.load(name, None, input_size=8).train_y)


def test_every_module_of_the_users_a_metric_imports_is_in_its_code_hash_whatever_the_form(tmp_path):
    """A metric in a sub-folder importing the workflow folder's module, and one in a package of the user's
    importing its sibling absolutely: editing the imported module changes the hash; an installed package's
    module (numpy) is not the user's."""
    from fewshot_core import user_metrics

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.py").write_text("import numpy\nimport helper\n\ndef score(model, batches):\n    return 1.0\n")
    (tmp_path / "helper.py").write_text("K = 1\n")
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "metric.py").write_text("from mypkg import util\n\ndef score(model, batches):\n    return 1.0\n")
    (tmp_path / "mypkg" / "util.py").write_text("K = 1\n")
    for function, imported in (("sub/m.py:score", "helper.py"), ("mypkg.metric:score", "mypkg/util.py")):
        sources = user_metrics.local_sources(user_metrics.source_file(function, tmp_path)[0], tmp_path)
        assert tmp_path / imported in sources and not any("numpy" in str(p) for p in sources)
        before = metric_code("mine", function, tmp_path)
        (tmp_path / imported).write_text("K = 2\n")
        assert metric_code("mine", function, tmp_path) != before
        (tmp_path / imported).write_text("K = 1\n")


def test_two_user_metrics_with_same_named_helpers_each_get_their_own(tmp_path, monkeypatch):
    from fewshot_core import user_metrics

    for name, value in (("a", 1.0), ("b", 2.0)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "m.py").write_text("from helper import K\n\ndef score(model, batches):\n"
                                              "    import helper  # an import inside the function finds its own\n"
                                              "    return helper.K\n")
        (tmp_path / name / "helper.py").write_text(f"K = {value}\n")
    monkeypatch.chdir(tmp_path)
    first, second = user_metrics.load("a/m.py:score"), user_metrics.load("b/m.py:score")
    assert (first(None, []), second(None, []), first(None, [])) == (1.0, 2.0, 1.0)


def test_a_user_metric_that_fails_to_load_is_one_error_naming_it(tmp_path, monkeypatch):
    from fewshot_core import user_metrics
    from fewshot_core.errors import MetricError

    (tmp_path / "m.py").write_text("import helper\n\ndef score(model, batches):\n    return 1.0\n")
    (tmp_path / "helper.py").write_text("raise ImportError('no GPU library here')\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MetricError, match=r"m.py:score: loading it failed \(ImportError: no GPU library here\)"):
        user_metrics.load("m.py:score")


def test_a_sibling_module_that_is_not_python_is_named_before_any_job(tmp_path):
    (tmp_path / "m.py").write_text("import helper\n\ndef score(model, batches):\n    return 1.0\n")
    (tmp_path / "helper.py").write_text("def broken(:\n")
    with pytest.raises(ConfigError, match=r"metrics.m.function: .*helper.py, which it imports, cannot be parsed"):
        load_settings({**BASE, "metrics": {"m": {"function": "m.py:score", "kind": "scalar"}}}, workdir=tmp_path)


def test_better_orients_a_user_metrics_training_free_ranking_and_only_a_user_scalar_takes_it(tmp_path):
    (tmp_path / "m.py").write_text("def score(model, batches):\n    return 1.0\n")
    mine = {"function": "m.py:score", "kind": "scalar"}
    directions = [load_settings({**BASE, "metrics": {"m": {**mine, **better}}}, workdir=tmp_path).directions["m"]
                  for better in ({}, {"better": "higher"}, {"better": "lower"})]
    assert directions == [1, 1, -1]
    with pytest.raises(ConfigError, match="metrics.snip.better is only for a metric of your own"):
        load_settings({**BASE, "metrics": {"snip": {"better": "lower"}}}, workdir=tmp_path)
    with pytest.raises(ConfigError, match="metrics.m.better: a vector metric"):
        load_settings({**BASE, "metrics": {"m": {**mine, "kind": "vector", "better": "lower"}}}, workdir=tmp_path)
