"""The ranking study: its protocol (where leaves and baselines start, their steps, one set of test images),
its measures (scipy's, against the mean of the ground truth's seeds), its ceiling and paired comparisons,
and which settings rerun which of its jobs."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fewshot_core import artifacts, labels, nb201, ranking, stages
from fewshot_core.checks import load_settings
from fewshot_core.nb201 import arch_to_mask, architectures, full_mask
from fewshot_core.splitting import SplitRecord, leaf_of, node_masks
from fewshot_core.tree import tree_levels
from tests.conftest import edited, load_scenario

TREES = [(m, s) for m in ("snip", "synflow") for s in (0, 1)]


def tree_tables(run, metric, seed):
    """A tree's study tables, one per chunk of the study set."""
    return sorted((run / metric / f"seed{seed}").glob("study_chunk*.parquet"))


def run_tables(run):
    truth = pd.concat([pd.read_parquet(p) for p in sorted((run / "study").glob("standalone_gt*_chunk*.parquet"))])
    studies = pd.concat([pd.read_parquet(p) for m, s in TREES for p in tree_tables(run, m, s)]
                        + [pd.read_parquet(p) for p in sorted((run / "study").glob("oneshot_*_seed*.parquet"))])
    return truth, studies


def test_every_ranking_equals_scipys_against_the_mean_of_the_ground_truths_seeds(tiny_run):
    run = tiny_run / "results" / "tiny"
    table = pd.read_parquet(run / "ranking.parquet")
    truth, studies = run_tables(run)
    gt = truth.groupby("arch")[["test_accuracy", "test_loss"]].mean()
    assert set(table[table.kind == "tree"].name) == {"snip", "synflow"}
    assert set(table[table.kind == "one-shot"].name) == {"one-shot (4 leaves)", "one-shot (1 leaf)"}
    assert set(table[table.kind == "zero-cost"].name) == {"snip", "synflow", "nparams"}
    for r in table[table.kind.isin(["tree", "one-shot"])].itertuples():  # ranked by the mean loss (study.rank_by)
        part = studies[(studies.metric == r.name) & (studies.seed == r.seed)].set_index("arch")
        x, y = part.test_loss.reindex(gt.index), gt.test_loss
        assert r.tau == r.tau_loss == pytest.approx(stats.kendalltau(x, y).statistic)
        accuracy = part.test_accuracy.reindex(gt.index)
        assert r.tau_accuracy == pytest.approx(stats.kendalltau(accuracy, gt.test_accuracy).statistic)
        assert r.rho == pytest.approx(stats.spearmanr(x, y).statistic)
        assert r.regret == pytest.approx(gt.test_accuracy.max() - gt.test_accuracy[x.idxmin()])
        assert r.tau_lo <= r.tau <= r.tau_hi or np.isclose(r.tau_lo, r.tau_hi)


def test_the_ceiling_is_scipys_tau_between_the_ground_truths_seeds(tiny_run):
    run = tiny_run / "results" / "tiny"
    truth, _ = run_tables(run)
    acc = truth.pivot(index="arch", columns="gt", values="test_accuracy")
    loss = truth.pivot(index="arch", columns="gt", values="test_loss")
    ceiling = pd.read_parquet(run / "ranking.parquet").query("kind == 'ceiling'").iloc[0]
    assert ceiling.tau_accuracy == pytest.approx(stats.kendalltau(acc[0], acc[1]).statistic)
    assert ceiling.tau == ceiling.tau_loss == pytest.approx(stats.kendalltau(loss[0], loss[1]).statistic)
    summary = pd.read_parquet(run / "study_summary.parquet").query("kind == 'ceiling'").iloc[0]
    assert summary.tau == pytest.approx(ceiling.tau)


def test_a_training_free_ranking_is_the_metrics_own_value_oriented_by_its_catalogue_direction(tiny_run):
    run = tiny_run / "results" / "tiny"
    truth, _ = run_tables(run)
    gt = truth.groupby("arch")[["test_accuracy", "test_loss"]].mean()
    table = pd.read_parquet(run / "ranking.parquet").query("kind == 'zero-cost'").set_index("name")
    for proxy in ("snip", "nparams"):
        scores = pd.concat([pd.read_parquet(p) for p in sorted((run / "study" / "zero_cost").glob(f"{proxy}_*"))])
        x = scores.set_index("arch").score.reindex(gt.index)
        assert table.loc[proxy].tau == pytest.approx(stats.kendalltau(x, -gt.test_loss).statistic)
        assert table.loc[proxy].tau_accuracy == pytest.approx(stats.kendalltau(x, gt.test_accuracy).statistic)
    directions = load_settings(edited(load_scenario("tiny"), "metrics.ntk", {})).directions
    assert directions["ntk"] == -1 and directions["snip"] == directions["nparams"] == 1


def test_paired_differences_use_the_same_resamples_on_both_sides():
    """A metric whose every inherited accuracy equals random splits' differs by 0 in every resample: the
    interval collapses to 0 and it wins none; the two are resampled together, architectures and seeds."""
    rng = np.random.default_rng(0)
    archs = [f"a{i}" for i in range(12)]
    truth = pd.DataFrame([{"arch": a, "gt": g, "accuracy": rng.random(), "loss": rng.random()}
                          for g in (0, 1) for a in archs])
    rows = []
    for s in (0, 1, 2):
        acc = rng.random(len(archs))
        for name in ("same", "random"):
            rows += [{"metric": name, "seed": s, "arch": a, "leaf": "r0", "test_accuracy": x, "test_loss": 1 - x}
                     for a, x in zip(archs, acc)]
        rows += [{"metric": "one-shot (8 leaves)", "seed": s, "arch": a, "leaf": "r", "test_accuracy": x,
                  "test_loss": 1 - x} for a, x in zip(archs, rng.random(len(archs)))]
    scores = pd.DataFrame({"proxy": "nparams", "arch": archs, "score": rng.random(len(archs))})
    table, summary = ranking.study_tables(truth, pd.DataFrame(rows), scores, {"nparams": 1}, k=3, draws=200)
    same = summary.set_index("name").loc["same"]
    assert same.vs_random == 0 and same.vs_random_lo == 0 and same.vs_random_hi == 0 and same.vs_random_wins == 0
    assert same.vs_oneshot_lo < same.vs_oneshot_hi  # against another ranking, the resamples spread
    assert same.tau_lo < same.tau < same.tau_hi


def test_tau_within_and_across_leaves_split_the_pairs():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    y = np.array([1.0, 2.0, 3.0, 6.0, 5.0, 4.0])
    leaves = np.array(["a", "a", "a", "b", "b", "b"])
    within, pairs = ranking.pair_tau(x, y, leaves, True)
    across, _ = ranking.pair_tau(x, y, leaves, False)
    assert pairs == 6 and within == pytest.approx(0.0) and across == pytest.approx(1.0)  # a: +3, b: -3; across: +9
    one, _ = ranking.pair_tau(x, y, np.zeros(6), True)
    assert one == pytest.approx(stats.kendalltau(x, y).statistic)


def test_tau_same_params_is_scipys_within_each_parameter_count_pooled():
    """What a ranking knows beyond the parameter count: tau-b over the pairs of equal count, pooled over the
    groups (concordant minus discordant over the untied pairs), the same by the per-group and the pairwise
    computation; the parameter count itself knows nothing there (0: it ties every such pair)."""
    rng = np.random.default_rng(5)
    x, y, params = rng.normal(size=40), rng.normal(size=40), rng.integers(0, 6, 40).astype(float)
    pooled, pairs = ranking.pair_tau(x, y, params, True)
    num = den_x = den_y = 0.0
    for g in np.unique(params):
        at = params == g
        m = at.sum()
        if m < 2:
            continue
        tau = stats.kendalltau(x[at], y[at]).statistic
        num, den_x, den_y = num + tau * m * (m - 1) / 2, den_x + m * (m - 1) / 2, den_y + m * (m - 1) / 2
    assert pooled == pytest.approx(num / np.sqrt(den_x * den_y))
    assert ranking.tau_within_groups(x, y, params) == pytest.approx(pooled)
    assert ranking.pair_tau(params, y, params, True)[0] == 0.0 and pairs == sum(
        int((params == g).sum() * ((params == g).sum() - 1) / 2) for g in np.unique(params))
    idx = np.random.default_rng(3).integers(0, 40, (30, 40))
    expected = [ranking.tau_within_groups(x[i], y[i], params[i]) for i in idx]
    np.testing.assert_allclose(ranking.kendall_tau_resampled(x, y, idx, params, chunk=8), expected, atol=1e-12)


def test_each_tree_meets_the_oneshot_of_its_own_steps_and_random_splits_of_its_shape():
    """A control of 5 leaves is compared with the one-shot baseline of 5 leaves' steps, not 8, and with no
    random splits (theirs have another shape); a metric's tree of the run's shape with both, and with the
    half-width of the difference's interval beside it."""
    rng = np.random.default_rng(1)
    archs = [f"a{i}" for i in range(10)]
    truth = pd.DataFrame([{"arch": a, "gt": g, "accuracy": rng.random(), "loss": rng.random()}
                          for g in (0, 1) for a in archs])
    rows = []
    for s in (0, 1):
        for name in ("snip", "random", "fewshot_nas", labels.oneshot_name(8), labels.oneshot_name(5)):
            rows += [{"metric": name, "seed": s, "arch": a, "leaf": "r0", "test_accuracy": x, "test_loss": 1 - x}
                     for a, x in zip(archs, rng.random(len(archs)))]
    same_as_five = [r for r in rows if r["metric"] == labels.oneshot_name(5)]
    rows += [{**r, "metric": "copy_of_five"} for r in same_as_five]
    trees = {"snip": {"leaves": 8, "factors": [2, 2, 2], "control": False},
             "random": {"leaves": 8, "factors": [2, 2, 2], "control": False},
             "fewshot_nas": {"leaves": 5, "factors": [5], "control": True},
             "copy_of_five": {"leaves": 5, "factors": [5], "control": True}}
    scores = pd.DataFrame({"proxy": "nparams", "arch": archs, "score": rng.integers(0, 3, len(archs)).astype(float)})
    table, summary = ranking.study_tables(truth, pd.DataFrame(rows), scores, {"nparams": 1}, k=3, draws=200,
                                          trees=trees)
    s = summary.set_index("name")
    assert s.loc["fewshot_nas", "kind"] == "control" and np.isnan(s.loc["fewshot_nas", "vs_random"])
    assert s.loc["copy_of_five", "vs_oneshot"] == 0 and s.loc["copy_of_five", "vs_oneshot_detectable"] == 0
    assert np.isfinite(s.loc["snip", "vs_random"]) and s.loc["snip", "vs_oneshot_detectable"] > 0
    assert s.loc["snip", "vs_oneshot_detectable"] == pytest.approx((s.loc["snip", "vs_oneshot_hi"]
                                                                    - s.loc["snip", "vs_oneshot_lo"]) / 2)
    assert table[table.name == "nparams"].tau_same_params.iloc[0] == 0.0


@pytest.mark.parametrize("n", [2, 7, 30])
def test_resampled_tau_equals_scipys_on_every_resample(n):
    """The vectorised bootstrap of a tree's tau gives scipy's tau-b on each resample, ties included."""
    rng = np.random.default_rng(n)
    x, y = rng.integers(0, 4, n).astype(float), rng.normal(size=n).round(1)
    idx = np.random.default_rng(3).integers(0, n, (50, n))
    expected = np.nan_to_num([stats.kendalltau(x[i], y[i]).statistic for i in idx], nan=0.0)  # constant: 0
    np.testing.assert_allclose(ranking.kendall_tau_resampled(x, y, idx, chunk=16), expected, atol=1e-12)


def test_each_study_architecture_is_evaluated_in_the_leaf_that_holds_it(tiny_run):
    run = tiny_run / "results" / "tiny"
    archs = artifacts.read_json(run / "study" / "archs.json", {"kind": "study_set"})["archs"]
    for metric, seed in TREES:
        part = pd.concat([pd.read_parquet(p) for p in tree_tables(run, metric, seed)])
        records = stages.read_tree_splits([run / metric / f"seed{seed}" / f"split_L{lv}.json" for lv in (0, 1)],
                                             [{"kind": "splits", "metric": metric, "seed": seed, "level": lv}
                                              for lv in (0, 1)])
        masks = {leaf: m for leaf, (m, _) in node_masks((2, 2), 2, records).items()}
        assert sorted(part.arch) == sorted(archs)  # every study architecture once per tree
        for r in part.itertuples():
            holders = [leaf for leaf, m in masks.items() if not (arch_to_mask(r.arch) & ~m).any()]
            assert holders == [r.leaf]


def test_a_leaf_under_transfer_starts_from_the_pretrained_supernet_on_its_mask(tiny_run):
    from fewshot_core.space import Supernet
    from fewshot_core.train import state_digest

    run = tiny_run / "results" / "tiny"
    for metric, seed in TREES:
        pre = artifacts.load_weights(run / f"seed{seed}" / "pretrained.pt", {"kind": "pretrained", "seed": seed})
        net = Supernet(**pre["supernet"])
        net.load_state_dict(pre["nodes"]["r"])
        leaves = artifacts.load_weights(run / metric / f"seed{seed}" / "leaves" / "chunk0.pt",
                                        {"kind": "leaf_weights", "metric": metric, "seed": seed})
        record = leaves["provenance"]
        assert record["start"] == "pretrained" and set(record["start_weights"]) == set(leaves["nodes"])
        assert all(d == state_digest(net) for d in record["start_weights"].values())
        records = stages.read_tree_splits([run / metric / f"seed{seed}" / f"split_L{lv}.json" for lv in (0, 1)],
                                             [{"kind": "splits", "metric": metric, "seed": seed, "level": lv}
                                              for lv in (0, 1)])
        for leaf, (mask, _) in node_masks((2, 2), 2, records).items():
            assert np.array_equal(leaves["masks"][leaf], mask)  # the pretrained weights, restricted to the leaf


def test_the_oneshot_baselines_take_a_trees_and_a_leafs_steps_from_the_leaves_start(tiny_run):
    run = tiny_run / "results" / "tiny"
    for seed in (0, 1):
        start = artifacts.read_record(run / f"seed{seed}" / "pretrained.pt", "weights")
        for metric in ("snip", "synflow"):
            leaves = artifacts.read_record(run / metric / f"seed{seed}" / "leaves" / "chunk0.pt", "weights")
            per_leaf = leaves["steps"] // len(leaves["settings"]["leaves"])
            tree = artifacts.read_record(run / f"seed{seed}" / "oneshot_4leaves.pt", "weights")
            leaf = artifacts.read_record(run / f"seed{seed}" / "oneshot_1leaves.pt", "weights")
            assert tree["steps"] == leaves["steps"] == 4 * per_leaf > 0 and leaf["steps"] == per_leaf
        for budget in (4, 1):
            record = artifacts.read_record(run / f"seed{seed}" / f"oneshot_{budget}leaves.pt", "weights")
            assert record["start"] == "pretrained" and record["settings"]["inputs"]["pretrained"] == start["key"]


def test_every_accuracy_of_the_study_is_measured_on_the_test_images(tiny_run):
    import hashlib

    from fewshot_core import data

    run = tiny_run / "results" / "tiny"
    d = data.load("digits", None, input_size=8)
    want = {"part": "test", "images": len(d.test_y),
            "digest": hashlib.sha256(d.test_x.numpy().tobytes() + d.test_y.numpy().tobytes()).hexdigest()[:16]}
    tables = [*(run / "study").glob("standalone_*.parquet"), *(run / "study").glob("oneshot_*.parquet"),
              *(p for m, s in TREES for p in tree_tables(run, m, s))]
    assert len(tables) == 2 * 2 + 2 * 2 * 2 + 4 * 2  # ground truth; one-shot; trees: 2 chunks each
    for path in tables:
        assert artifacts.read_record(path, "parquet")["evaluated_on"] == want, path
    assert artifacts.read_record(run / "ranking.parquet", "parquet")["evaluated_on"] == want
    # the test part is no training image: the digits keep every fifth image apart, before any holdout
    assert len(d.train_y) + len(d.test_y) == 1797 and len(d.test_y) == 360


def test_every_architecture_lies_in_exactly_one_leaf_of_a_depth_three_tree():
    rng = np.random.default_rng(0)
    ops = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
    records = []
    for depth, nodes in enumerate(tree_levels((2, 2, 2))[:3]):
        for node in nodes:  # each node splits edge `depth` into two random groups
            labels = np.r_[0, 1, rng.integers(0, 2, 3)]
            rng.shuffle(labels)
            groups = [[o for o, g in zip(ops, labels) if g == k] for k in (0, 1)]
            records.append(SplitRecord(node, depth, depth, groups, 0.0, ops, [[0.0] * 5] * 5, "m", 0))
    leaves = {leaf: m for leaf, (m, _) in node_masks((2, 2, 2), 3, records).items()}
    assert len(leaves) == 8
    counts = dict.fromkeys(leaves, 0)
    for arch in architectures(full_mask()):
        counts[leaf_of(arch_to_mask(arch), leaves)] += 1
    assert sum(counts.values()) == 5**6 and all(counts.values())
    for leaf, mask in leaves.items():  # and each leaf's own architectures come back to it
        for arch in architectures(mask)[:50]:
            assert leaf_of(arch_to_mask(arch), leaves) == leaf


def test_training_takes_the_steps_its_budget_says(defaults):
    import dataclasses

    import torch

    from fewshot_core import data
    from fewshot_core.space import Supernet
    from fewshot_core.train import train, training_steps

    d = data.synthetic(n_train=100, n_test=4, input_size=8)
    cfg = dataclasses.replace(defaults.leaf_training, epochs=3, batch_size=32)
    torch.manual_seed(0)
    history = train(Supernet(C=4, N=1, input_size=8), d, np.arange(100), cfg, 0)
    assert sum(h["steps"] for h in history) == training_steps(cfg, 100) == 3 * 4


def dry(tiny_run, snakemake, edit, key, value):
    proc = snakemake(tiny_run, edit(load_scenario("tiny"), key, value), "--dry-run")
    return proc.stdout + proc.stderr


def test_study_settings_rerun_the_study_alone(tiny_run, snakemake, edit):
    text = dry(tiny_run, snakemake, edit, "study.top_k", 3)
    assert "rule rank_study" in text
    for rule in ("score_edges", "split_nodes", "train_leaves", "train_root", "train_oneshot", "train_standalone",
                 "evaluate_study", "score_study"):
        assert f"rule {rule}:" not in text, rule
    text = dry(tiny_run, snakemake, edit, "study.standalone", 2)
    assert "rule train_standalone" in text and "rule score_edges" not in text and "rule train_leaves" not in text
    text = dry(tiny_run, snakemake, edit, "study.pretrain", 2)  # where the leaves start: they retrain, unsplit
    assert "rule pretrain_oneshot" in text and "rule train_leaves" in text and "rule split_nodes" not in text


def test_one_metrics_setting_reruns_that_metrics_study_evaluation_alone(tiny_run, snakemake, edit):
    text = dry(tiny_run, snakemake, edit, "metrics.synflow.batch_size", 8)
    assert "rule evaluate_study" in text and "metric=synflow" in text and "metric=snip" not in text
    for rule in ("evaluate_oneshot", "train_oneshot", "train_standalone", "pretrain_oneshot"):
        assert f"rule {rule}:" not in text, rule
    assert "proxy=synflow" in text and "proxy=snip" not in text  # its training-free ranking, too
    assert "rule rank_study" in text and "rule draw_ranking" in text


def test_the_study_set_is_seeded_and_leaves_out_cut_off_cells():
    a, excluded = nb201.study_set(30, seed=1)
    assert a == nb201.study_set(30, seed=1)[0] != nb201.study_set(30, seed=2)[0]
    assert len(set(a)) == 30 and excluded > 0
    from fewshot_core.nb201 import reaches_output

    assert all(reaches_output(arch_to_mask(x)[:, 1:].any(axis=1)) for x in a)


def test_a_study_with_the_three_controls_grows_each_tree_by_its_own_policy(tmp_path, snakemake, scenario):
    """Few-shot NAS's split is one level of five single operations on edge 1<-0, trained as five leaves and
    met by the one-shot baseline of five leaves' steps; GM-NAS's cuts 2|3 on the edge of the lowest cut;
    the split by structure puts the convolutions apart; a control that took the run's tree would fail each."""
    snakemake(tmp_path, scenario("controls"))
    run = tmp_path / "results" / "controls"
    def splits(tree, level):
        return stages.read_splits(run / tree / "seed0" / f"split_L{level}.json",
                                     {"kind": "splits", "metric": tree, "seed": 0, "level": level})

    (few,) = splits("fewshot_nas", 0)
    assert few.edge == 0 and few.groups == [[op] for op in nb201.OPS]
    assert not (run / "fewshot_nas" / "seed0" / "split_L1.json").exists()
    leaves = artifacts.read_record(run / "fewshot_nas" / "seed0" / "leaves" / "chunk0.pt", "weights")
    assert len(leaves["settings"]["leaves"]) == 5
    five = artifacts.read_record(run / "seed0" / "oneshot_5leaves.pt", "weights")
    four = artifacts.read_record(run / "seed0" / "oneshot_4leaves.pt", "weights")
    assert five["steps"] == leaves["steps"] == 5 * four["steps"] // 4
    for level in (0, 1):
        for r in splits("gmnas", level):
            assert sorted(len(g) for g in r.groups) == [2, 3] and len(r.candidates) > 1  # balanced; mincut
        for r in splits("structure", level):
            assert r.edge == level and r.groups == [["none", "skip_connect", "avg_pool_3x3"],
                                                    ["nor_conv_1x1", "nor_conv_3x3"]]
    summary = pd.read_parquet(run / "study_summary.parquet").set_index("name")
    assert set(summary[summary.kind == "control"].index) == {"fewshot_nas", "gmnas", "structure"}
    assert np.isnan(summary.loc["fewshot_nas", "vs_random"]) and np.isfinite(summary.loc["gmnas", "vs_random"])
    trees = summary[summary.kind.isin(["tree", "control"])]
    assert np.isfinite(trees.loc["snip", "vs_structure"]) and np.isnan(trees.loc["structure", "vs_structure"])
    assert np.isnan(summary.loc["fewshot_nas", "vs_structure"])  # another shape
    assert {"one-shot (5 leaves)", "one-shot (4 leaves)", "one-shot (1 leaf)"} <= set(summary.index)
    distances = pd.read_parquet(run / "split_distance.parquet")
    assert not {"fewshot_nas", "gmnas", "structure"} & (set(distances.metric_a) | set(distances.metric_b))
