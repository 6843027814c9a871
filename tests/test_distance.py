"""The split distance is a metric on partitions; the pair table follows docs/design.md §5."""

import itertools

import numpy as np
import pandas as pd
import pytest

from fewshot_core.distance import pair_table, split_distance, summarise

OPS5 = ["a", "b", "c", "d", "e"]


def random_partition(rng, items):
    labels = rng.integers(0, rng.integers(1, len(items) + 1), size=len(items))
    return [[o for o, label in zip(items, labels) if label == g] for g in set(labels.tolist())]


def test_known_values():
    assert split_distance([["a", "b"], ["c"]], [["a", "b"], ["c"]]) == 0
    # {a,b}{c} vs {a}{b,c}: a loses b, b loses a and gains c, c gains b -> 4 / (2 * 2)
    assert split_distance([["a", "b"], ["c"]], [["a"], ["b", "c"]]) == 1.0
    # maximum n / 2: everything together vs everything apart
    assert split_distance([OPS5], [[o] for o in OPS5]) == 2.5


def test_is_a_metric_on_partitions():
    rng = np.random.default_rng(0)
    parts = [random_partition(rng, OPS5) for _ in range(40)]
    for a, b in itertools.product(parts, repeat=2):
        d = split_distance(a, b)
        assert d >= 0 and d == split_distance(b, a)
        same = sorted(map(sorted, a)) == sorted(map(sorted, b))
        assert (d == 0) == same
    for a, b, c in itertools.combinations(parts, 3):
        assert split_distance(a, c) <= split_distance(a, b) + split_distance(b, c) + 1e-12


def test_different_operation_sets_are_an_error():
    with pytest.raises(ValueError, match="different operation sets"):
        split_distance([["a"], ["b"]], [["a"], ["c"]])


def make_splits():
    rows = []
    for metric, seed in itertools.product(["snip", "ntk"], [0, 1]):
        for depth, node in [(0, "r"), (1, "r0"), (1, "r1")]:
            groups = [["a", "b"], ["c", "d", "e"]] if (metric == "snip" or node != "r1") else [["a", "e"], ["b", "c", "d"]]
            if seed == 1 and metric == "ntk" and node == "r":
                groups = [["a"], ["b", "c", "d", "e"]]
            rows.append(dict(metric=metric, seed=seed, node=node, depth=depth, edge=depth, groups=groups))
    return pd.DataFrame(rows)


def test_pair_table_counts_and_summaries():
    pairs = pair_table(make_splits())
    counts = pairs.kind.value_counts().to_dict()
    assert counts == {"internal": 2 * 2 * 3, "external": 2 * 9, "between_metrics": 2 * 3}
    assert (pairs[pairs.metric_a == "snip"].distance == 0).all()
    s = summarise(pairs)
    assert set(s.kind) == {"internal", "external"} and (s[s.metric == "snip"].distance == 0).all()
    by = summarise(pairs, by_level=True)
    assert set(by.depth) == {0, 1}


def test_each_metric_against_random_splits_seed_by_seed():
    """snip splits alike everywhere (0); random moves one operation between two of a tree's three splits in
    seeds 0 and 2 (2/3) and none in seed 1: snip is 4/9 below random, in two seeds, the third a tie."""
    from fewshot_core.report import against_baseline

    rows = []
    for metric, seed in itertools.product(["snip", "random"], [0, 1, 2]):
        for depth, node in [(0, "r"), (1, "r0"), (1, "r1")]:
            moved = metric == "random" and seed != 1 and node == "r1"
            groups = [["a"], ["b", "c", "d", "e"]] if moved else [["a", "b"], ["c", "d", "e"]]
            rows.append(dict(metric=metric, seed=seed, node=node, depth=depth, edge=depth, groups=groups))
    pairs = pair_table(pd.DataFrame(rows))
    versus = against_baseline(pairs)
    assert list(versus.index) == ["snip"]
    snip = versus.loc["snip"]
    assert snip.difference == pytest.approx(-4 / 9)
    assert snip.std_error == pytest.approx(np.std([-2 / 3, 0, -2 / 3], ddof=1) / np.sqrt(3))
    assert (snip.seeds_below, snip.seeds) == (2, 3)
    assert against_baseline(pair_table(make_splits())) is None  # no random splits in that run
