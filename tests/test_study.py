"""The ranking study: measures equal scipy's, each architecture is evaluated in its one leaf, the one-shot
baseline trains as many steps as a tree's leaves, and study settings rerun the study alone."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fewshot_core import artifacts, ranking
from fewshot_core.nb201 import arch_to_mask, architectures, full_mask
from fewshot_core.splitting import SplitRecord, leaf_of, node_masks
from fewshot_core.tree import tree_levels


def test_tau_and_rho_equal_scipys_on_the_run(tiny_run):
    run = tiny_run / "results" / "tiny"
    table = pd.read_parquet(run / "ranking.parquet")
    truth = pd.concat([pd.read_parquet(p) for p in sorted((run / "study").glob("standalone_chunk*.parquet"))])
    truth = truth.set_index("arch").val_accuracy
    studies = pd.concat([pd.read_parquet(run / "study" / f"seed{s}.parquet") for s in (0, 1)])
    assert set(table.metric) == {"snip", "synflow", ranking.ONESHOT} and len(table) == 3 * 2
    for r in table.itertuples():
        part = studies[(studies.metric == r.metric) & (studies.seed == r.seed)].set_index("arch").val_accuracy
        x, y = part.reindex(truth.index), truth
        assert r.tau == pytest.approx(stats.kendalltau(x, y).statistic)
        assert r.rho == pytest.approx(stats.spearmanr(x, y).statistic)
        assert r.regret == pytest.approx(y.max() - y[x.idxmax()])
        assert r.tau_lo <= r.tau <= r.tau_hi or np.isclose(r.tau_lo, r.tau_hi)


@pytest.mark.parametrize("n", [2, 7, 30])
def test_resampled_tau_equals_scipys_on_every_resample(n):
    """The vectorised bootstrap of a tree's tau gives scipy's tau-b on each resample, ties included."""
    rng = np.random.default_rng(n)
    x, y = rng.integers(0, 4, n).astype(float), rng.normal(size=n).round(1)
    draws, seed = 50, 3
    idx = np.random.default_rng(seed).integers(0, n, (draws, n))
    expected = [stats.kendalltau(x[i], y[i]).statistic for i in idx]
    expected = np.nan_to_num(expected, nan=0.0)  # a constant resample: tau undefined, counted as 0
    np.testing.assert_allclose(ranking.kendall_tau_resampled(x, y, draws, seed, chunk=16), expected, atol=1e-12)


def test_each_study_architecture_is_evaluated_in_the_leaf_that_holds_it(tiny_run):
    run = tiny_run / "results" / "tiny"
    studies = pd.concat([pd.read_parquet(run / "study" / f"seed{s}.parquet") for s in (0, 1)])
    archs = artifacts.read_json(run / "study" / "archs.json", {"kind": "study_set"})["archs"]
    for (metric, seed), part in studies[studies.metric != ranking.ONESHOT].groupby(["metric", "seed"]):
        records = artifacts.read_tree_splits([run / metric / f"seed{seed}" / f"split_L{lv}.json" for lv in (0, 1)],
                                             [{"kind": "splits", "metric": metric, "seed": seed, "level": lv}
                                              for lv in (0, 1)])
        masks = {leaf: m for leaf, (m, _) in node_masks((2, 2), 2, records).items()}
        assert sorted(part.arch) == sorted(archs)  # every study architecture once per tree
        for r in part.itertuples():
            holders = [leaf for leaf, m in masks.items() if not (arch_to_mask(r.arch) & ~m).any()]
            assert holders == [r.leaf]


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


def test_the_oneshot_budget_equals_the_leaves_total_in_steps(tiny_run):
    run = tiny_run / "results" / "tiny"
    for seed in (0, 1):
        oneshot = artifacts.load_weights(run / f"seed{seed}" / "oneshot.pt", {"kind": "oneshot", "seed": seed})
        for metric in ("snip", "synflow"):
            leaves = artifacts.load_weights(run / metric / f"seed{seed}" / "leaves" / "chunk0.pt",
                                            {"kind": "leaf_weights", "metric": metric, "seed": seed})
            assert oneshot["provenance"]["steps"] == leaves["provenance"]["steps"] > 0


def test_training_takes_the_steps_its_budget_says(defaults):
    import dataclasses

    import torch

    from fewshot_core import data
    from fewshot_core.space import Supernet
    from fewshot_core.train import train, training_steps

    d = data.synthetic(n_train=100, n_test=4, input_size=8)
    cfg = dataclasses.replace(defaults.leaves, epochs=3, batch_size=32)
    torch.manual_seed(0)
    history = train(Supernet(C=4, N=1, input_size=8), d, np.arange(100), cfg, 0)
    assert sum(h["steps"] for h in history) == training_steps(cfg, 100) == 3 * 4


def test_study_settings_rerun_the_study_alone(tiny_run, scenario, snakemake, edit):
    proc = snakemake(tiny_run, edit(scenario("tiny"), "study.top_k", 3), "--dry-run")
    text = proc.stdout + proc.stderr
    assert "rule rank_study" in text
    for rule in ("score_edges", "split_nodes", "train_leaves", "train_root", "train_oneshot", "train_standalone"):
        assert f"rule {rule}:" not in text, rule
    proc = snakemake(tiny_run, edit(scenario("tiny"), "study.standalone", 2), "--dry-run")
    text = proc.stdout + proc.stderr
    assert "rule train_standalone" in text and "rule score_edges" not in text and "rule train_leaves" not in text


def test_the_study_set_is_seeded_and_leaves_out_cut_off_cells():
    a, excluded = ranking.study_set(30, seed=1)
    assert a == ranking.study_set(30, seed=1)[0] != ranking.study_set(30, seed=2)[0]
    assert len(set(a)) == 30 and excluded > 0
    from fewshot_core.nb201 import reaches_output

    assert all(reaches_output(arch_to_mask(x)[:, 1:].any(axis=1)) for x in a)
