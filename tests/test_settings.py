"""The typed settings: the catalogue agrees with the registry, every schema key reaches a setting,
specs survive their JSON, and the configuration's checks name the key."""

import dataclasses
import inspect

import pytest
import yaml

from fewshot_core import catalog, metrics, settings, specs
from fewshot_core.checks import SCHEMA, load_settings
from fewshot_core.errors import ConfigError
from fewshot_core.settings import metric_code
from tests.conftest import ROOT

MINIMAL = {"run": "t", "seeds": [0], "metrics": {"snip": {}}}


def test_the_catalogue_and_the_registry_hold_the_same_metrics_and_settings():
    assert set(metrics.REGISTRY) == set(catalog.CATALOG)
    for name, m in metrics.REGISTRY.items():
        assert m.info is catalog.CATALOG[name]
        assert (m.compute is None) == (m.kind == "none")
        declared = set(m.info.settings)
        takes = set()
        for fn in (m.compute, m.prepare):
            if fn is not None:
                takes |= set(list(inspect.signature(fn).parameters)[2:])
        assert takes - {"seed", "edge"} == declared, name  # each setting the functions take is declared
        assert ("seed" in takes) == m.seeded and ("edge" in takes) == m.needs_edge


def test_code_hash_follows_the_metrics_own_module():
    assert metric_code("snip") == metric_code("gradnorm")  # one module
    assert metric_code("snip") != metric_code("ntk")


def schema_leaves(schema, prefix=""):
    """Dotted keys of every setting the schema documents (the values of free-form maps excluded)."""
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        if sub.get("type") == "object" and "properties" in sub:
            yield from schema_leaves(sub, path + ".")
        else:
            yield path


def test_every_setting_the_schema_documents_reaches_the_run_settings():
    """Change each key from its default: the run's settings (what the jobs get) must change too."""
    schema = yaml.safe_load(SCHEMA.read_text())
    base = load_settings(MINIMAL)
    changes = {"data.name": "synthetic", "data.root": "somewhere", "data.download": True, "data.input_size": 32,
               "data.val_fraction": 0.3, "data.train_images": 100, "supernet.C": 16, "supernet.N": 5, "device": "cpu",
               "training.precision": "bfloat16",
               "tree.policy": {"levels": [2, 3]}, "tree.edge_selection": "random", "tree.edge_order": [2, 1, 0],
               "tree.balanced": True, "training.optimizer.lr": 0.1, "training.optimizer.lr_min": 0.0,
               "training.optimizer.momentum": 0.5, "training.optimizer.nesterov": False,
               "training.optimizer.weight_decay": 0.0, "training.optimizer.grad_clip": 0.0,
               "training.warmup.epochs": 3, "training.warmup.batch_size": 32, "training.warmup.mode": "mixture",
               "training.warmup.augment": False, "training.leaves.epochs": 3, "training.leaves.batch_size": 32,
               "training.leaves.mode": "mixture", "training.leaves.augment": False, "training.leaves.archs": 9,
               "training.leaves.bn_batches": 2, "training.leaves.eval_batch_size": 64,
               "training.leaves.leaves_per_job": 1, "run": "u", "seeds": [1], "metrics": {"ntk": {}},
               "study.archs": 10, "study.seed": 3, "study.standalone": 2, "study.archs_per_job": 4,
               "study.top_k": 3, "study.bootstrap": 200, "study.rank_by": "accuracy", "study.gt_seeds": 3, "study.protocol": "scratch",
               "study.pretrain": 4, "data.crop_pad": 1, "study.ground_truth.path": "x", "controls": ["gmnas"],
               "study.ground_truth.dataset": "cifar10", "study.ground_truth.hp": 12, "study.ground_truth.accuracy": "test"}
    resources = {"training.gpus", "training.warmup.runtime_min", "training.leaves.runtime_min",
                 "study.runtime_min", "user_metric_time_limit",  # not settings: what a job or a call may take
                 "study.ground_truth.source"}  # needs a benchmark archive: tests/test_benchmark.py
    documented = set(schema_leaves(schema))
    assert documented - resources == set(changes), "a schema key without a test of where it goes"
    for key, value in changes.items():
        cfg = {**MINIMAL}
        if key == "tree.edge_selection":
            cfg["tree"] = {"edge_selection": value}
        else:
            from tests.conftest import edited

            cfg = edited(MINIMAL, key, value)
        assert load_settings(cfg) != base, key


def test_specs_survive_their_json(defaults):
    s = load_settings({**MINIMAL, "metrics": {"lr": {"settings": {"crops": 10}}, "mix": {"combine": {"lr": 1, "ntk": 2}},
                                              "late": {"schedule": ["ntk", "mix", "lr"]}}})
    for spec in (s.holdout_spec(1), s.root_spec(0), s.score_spec("lr", 0, 2), s.split_spec("lr", 0, 1),
                 s.score_spec("mix", 0, 0), s.score_spec("late", 0, 1), s.split_spec("late", 0, 1),
                 s.children_spec("lr", 0, 1), s.leaves_spec("lr", 0, 0), s.distances_spec(), s.collect_spec(), s.study_set_spec(),
                 s.standalone_spec(1, 0), s.pretrain_spec(1), s.oneshot_spec(1, 8),
                 s.oneshot_eval_spec(1, 1, 0), s.study_eval_spec("lr", 1, 0), s.zero_cost_spec("nparams", 0),
                 s.benchmark_spec(), s.ranking_spec(), s.figures_spec(),
                 s.ranking_figure_spec()):
        text = settings.canonical_json(spec)
        assert settings.spec_from_json(type(spec), text) == spec
    with pytest.raises(ValueError, match="expected int"):
        settings.spec_from_json(specs.HoldoutSpec, settings.canonical_json(s.holdout_spec(1)).replace(
            '"seed":1', '"seed":"1"'))


def test_defaults_live_in_the_schema(defaults):
    """A configuration that sets nothing gets the schema's values (read from it here, not restated), and no
    settings class has a default of its own."""
    props = yaml.safe_load(SCHEMA.read_text())["properties"]
    training = props["training"]["properties"]
    assert defaults.leaf_training.optimizer.nesterov == training["optimizer"]["properties"]["nesterov"]["default"]
    assert defaults.evaluation.bn_batches == training["leaves"]["properties"]["bn_batches"]["default"]
    assert list(defaults.metrics["snip"].tree.edge_order) == props["tree"]["properties"]["edge_order"]["default"]
    assert defaults.metrics["snip"].levels[0].parts[0].batch_size == \
        props["metrics"]["additionalProperties"]["properties"]["batch_size"]["default"]
    assert defaults.data.input_size == props["data"]["properties"]["input_size"]["default"]
    assert all(f.default is dataclasses.MISSING for cls in (settings.TrainSettings, settings.OptimizerSettings,
                                                           settings.EvalSettings, settings.DataSettings)
               for f in dataclasses.fields(cls))


def test_only_the_warmed_up_levels_have_their_own_weights(defaults):
    warm = dataclasses.replace(defaults, warmup=dataclasses.replace(defaults.warmup, epochs=2))
    assert [warm.trains_children(level) for level in range(3)] == [False, True, True]
    assert not any(defaults.trains_children(level) for level in range(3))
    assert defaults.root_spec(0).warmup is None  # so warm-up settings do not rerun a run without warm-up


@pytest.mark.parametrize("key,value,needle", [
    ("metrics.ntk.settings", {"crops": 3}, "metrics.ntk.settings.crops"),
    ("metrics.lr.settings", {"crops": "many"}, "metrics.lr.settings.crops"),
    ("metrics.lr.settings", {"crops": 10.5}, "metrics.lr.settings.crops"),
    ("training.leaves.epochs", 1.0, "training.leaves.epochs"),
    ("training.optimizer.lr", float("nan"), "training.optimizer.lr"),
    ("training.optimizer.grad_clip", float("inf"), "training.optimizer.grad_clip"),
    ("seeds", [0.0, 1.0], "seeds.0"),
    ("data.input_size", 10, "data.input_size"),
    ("run", "..", "run"),
    ("tree.edge_selection", "mincut", "tree.edge_order"),
])
def test_bad_values_are_named(key, value, needle):
    from tests.conftest import edited

    cfg = edited({**MINIMAL, "tree": {"edge_order": [0, 1, 2]}}, key, value)
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_settings(cfg)


def restated_defaults(config: dict, schema: dict, prefix: str = "") -> list[str]:
    """Keys of ``config`` whose value is the schema's default (or a metric's setting its catalogue default)."""
    from fewshot_core.catalog import CATALOG

    found = []
    for key, value in config.items():
        path = f"{prefix}{key}"
        sub = schema.get("properties", {}).get(key)
        if sub is None and isinstance(schema.get("additionalProperties"), dict):
            sub = schema["additionalProperties"]
        if sub is None:
            continue
        if "default" in sub and value == sub["default"]:
            found.append(path)
        elif isinstance(value, dict) and sub.get("type") == "object":
            found += restated_defaults(value, sub, path + ".")
        if prefix == "metrics." and key == "settings" and isinstance(value, dict):
            metric = path.split(".")[1]
            defaults = {k: s.default for k, s in CATALOG[metric].settings.items()} if metric in CATALOG else {}
            found += [f"{path}.{k}" for k, v in value.items() if k in defaults and v == defaults[k]]
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "config").rglob("*.yaml")), ids=lambda p: p.name)
def test_no_shipped_configuration_restates_a_default(path):
    """Defaults live in the schema (and the catalogue, for a metric's settings): a configuration says what it
    changes, so that a default changed once reaches every configuration that does not choose otherwise."""
    schema = yaml.safe_load(SCHEMA.read_text())
    config = yaml.safe_load(path.read_text())
    metrics = config.get("metrics", {})
    found = restated_defaults({k: v for k, v in config.items() if k != "metrics"}, schema)
    for name, entry in (metrics or {}).items():
        found += restated_defaults({name: entry}, {"properties": {name: schema["properties"]["metrics"][
            "additionalProperties"]}}, "metrics.")
    assert not found, f"{path.name} restates defaults: {found}"


def test_a_tree_of_its_own_changes_that_trees_specs_alone():
    """``metrics.<name>.tree`` over the run's tree section reaches that tree's split and scoring specs, its
    leaves and its one-shot budget; the other trees keep the run's, and a control takes its own shape."""
    base = {**MINIMAL, "metrics": {"snip": {}, "wide": {"metric": "snip", "tree": {"policy": {"levels": [3, 2]},
                                                                                   "balanced": True}}},
            "controls": ["fewshot_nas"], "study": {"archs": 5}}
    s = load_settings(base)
    assert s.split_spec("wide", 0, 0).balanced and not s.split_spec("snip", 0, 0).balanced
    assert s.score_spec("wide", 0, 1).tree.factors == (3, 2) and s.score_spec("snip", 0, 1).tree.factors == (2, 2, 2)
    assert s.score_spec("wide", 0, 0).scorer == s.score_spec("snip", 0, 0).scorer  # the same metric, another tree
    assert (s.leaf_count("wide"), s.leaf_count("snip"), s.leaf_count("fewshot_nas")) == (6, 8, 5)
    assert s.budgets() == (8, 6, 5, 1) and s.levels("fewshot_nas") == 1
    assert s.split_spec("fewshot_nas", 0, 0).tree.edge_order == (0,) and s.metrics["fewshot_nas"].control
    plain = load_settings({**base, "metrics": {"snip": {}}, "controls": []})
    assert plain.split_spec("snip", 0, 2) == s.split_spec("snip", 0, 2)


def test_precision_on_a_cpu_is_in_no_spec_and_with_device_auto_without_a_gpu_the_start_says_so(monkeypatch, capsys):
    """A CPU trains in float32 whatever training.precision says: with device: cpu every spec is the float32
    one (changing it reruns nothing); device: auto cannot know where a job will run, so there it stays in the
    training specs, and a start on a machine without a GPU says it has no effect there and what it reruns."""
    from fewshot_core import checks

    def specs_of(s):
        return [s.root_spec(0), s.leaves_spec("snip", 0, 0), s.pretrain_spec(0), s.oneshot_spec(0, 8),
                s.standalone_spec(0, 0)]

    cpu = {**MINIMAL, "device": "cpu", "study": {"archs": 4, "archs_per_job": 4}}
    float32 = load_settings(cpu)
    for precision in ("tf32", "bfloat16"):
        assert specs_of(load_settings({**cpu, "training": {"precision": precision}})) == specs_of(float32)
    auto = {**cpu, "device": "auto", "training": {"precision": "bfloat16"}}
    assert load_settings(auto).leaf_training.precision == "bfloat16"
    monkeypatch.setattr(checks, "cuda_devices", lambda: 0)
    checks.load_settings_or_exit(auto, [])
    note = capsys.readouterr().err
    assert note.startswith("training.precision: bfloat16 has no effect on this machine, which has no GPU")
    assert "reruns the warm-up, leaf, one-shot and ground-truth training" in note
    for config, local, gpus in ((auto, False, 0), (auto, True, 1), (cpu, True, 0), ({**auto, "training": {}}, True, 0)):
        monkeypatch.setattr(checks, "cuda_devices", lambda gpus=gpus: gpus)
        assert checks.precision_note(checks.validated(config), local) is None


def test_a_job_computes_the_key_the_plan_gives_its_output_whatever_the_numbers_look_like():
    """A float setting written as a whole number (``grad_clip: 0`` turns clipping off) reaches the job as
    ``0.0``: the plan keys every spec as its job reads it back, so the key the job records is the one every
    reader and the start-up check expect."""
    from fewshot_core import artifacts
    from fewshot_core.outputs import OUTPUTS

    config = {**MINIMAL, "training": {"optimizer": {"grad_clip": 0, "lr_min": 0}}}
    plan = load_settings(config)
    for kind, identity in plan.outputs():
        spec = plan.spec_for(kind, identity)
        as_read = settings.spec_from_json(type(spec), plan.canonical(spec))  # what the job's command line builds
        assert artifacts.record(OUTPUTS[kind], as_read)["key"] == plan.key(kind, *identity.values()), kind
