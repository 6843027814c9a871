"""Every metric's randomness comes from the tree's seed and the node: root values differ between seeds
(unless a metric has no randomness and the same inputs) and repeat for the same seed."""

import dataclasses

import pandas as pd
import pytest

from fewshot_core import artifacts, catalog, stages
from fewshot_core.checks import load_settings

#: Metrics whose root values are the same for every seed, and why.
DETERMINISTIC = {"nparams": "counts the parameters a variant uses: a function of the mask alone",
                 "convs": "counts the convolutions a variant's mask enables: a function of the mask alone"}
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Every metric's root scores for three seeds, and for seed 0 once more, through the stages themselves."""
    work = tmp_path_factory.mktemp("seeds")
    names = [m for m, info in catalog.CATALOG.items() if info.kind != "none"]
    s = load_settings({"run": "seeds", "seeds": list(SEEDS), "device": "cpu",
                       "data": {"input_size": 8}, "supernet": {"C": 4},
                       "metrics": {m: {"batch_size": 16, "settings": {"crops": 200} if m == "lr" else {}}
                                   for m in names}})
    tables = {}
    for seed in SEEDS:
        holdout, root = work / f"holdout{seed}.json", work / f"root{seed}.pt"
        stages.make_holdout(s.holdout_spec(seed), holdout, log=lambda m: None)
        stages.train_root(s.root_spec(seed), holdout, root, work / "ck", "cpu", log=lambda m: None)
        for m in names:
            runs = 2 if seed == 0 else 1
            for k in range(runs):
                out = work / f"{m}_{seed}_{k}.parquet"
                stages.score_edges(s.score_spec(m, seed, 0), holdout, root, [], out, "cpu", log=lambda m: None)
                tables[m, seed, k] = artifacts.read_table(out, {"kind": "scores", "metric": m, "seed": seed})
    return names, tables


def values(table: pd.DataFrame) -> list:
    return [tuple(v) for v in table.similarity] + list(table.value.fillna(0.0))


def test_every_metric_repeats_for_the_same_seed(roots):
    names, tables = roots
    for m in names:
        assert values(tables[m, 0, 0]) == values(tables[m, 0, 1]), m


def test_root_values_differ_between_seeds_unless_deterministic(roots):
    names, tables = roots
    for m in names:
        distinct = {tuple(values(tables[m, seed, 0])) for seed in SEEDS}
        if m in DETERMINISTIC:
            assert len(distinct) == 1, f"{m}: {DETERMINISTIC[m]}"
        else:
            assert len(distinct) == len(SEEDS), f"{m}: the same root values for different seeds"


def test_lr_draws_its_twin_and_crops_from_the_tree(roots):
    """lr counts regions on a fresh thin twin: with it seeded by the tree, seeds give other counts."""
    _, tables = roots
    counts = [tuple(tables["lr", seed, 0].value) for seed in SEEDS]
    assert len(set(counts)) == len(SEEDS)
    assert tuple(tables["lr", 0, 1].value) == counts[0]


def test_random_grouping_under_mincut_draws_its_edge(tmp_path):
    """random has no cut to rank edges by: under mincut its root edge is drawn from the seed."""
    from fewshot_core.splitting import split_level

    s = load_settings({"run": "r", "seeds": [0], "metrics": {"random": {}},
                       "tree": {"edge_selection": "mincut", "policy": {"levels": [2]}}})
    edges = set()
    for seed in range(8):
        spec = dataclasses.replace(s.score_spec("random", seed, 0))
        from fewshot_core.splitting import edges_to_score, node_masks

        (mask, done), = node_masks(spec.tree.factors, 0, []).values()
        (edge,) = edges_to_score(spec.tree, "none", mask, done, 0, seed, "r")
        table = pd.DataFrame([dict(node="r", edge=edge, op=op, similarity=[0.0] * 5)
                              for op in ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")])
        (rec,) = split_level(table, "random", "none", seed, 0, spec.tree, False, [])
        assert rec.edge == edge
        edges.add(edge)
    assert len(edges) > 1  # not always the lowest-numbered edge
