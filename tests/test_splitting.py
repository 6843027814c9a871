"""Splitting: exact min-cut partitions, policies, tree shape, edge selection, split records."""

import itertools

import numpy as np
import pytest

from fewshot_core import space
from fewshot_core.splitting import (
    SplitError,
    SplitRecord,
    branching_factors,
    candidate_edges,
    choose_edge,
    constant_policy,
    cut_cost,
    partition,
    random_partition,
    set_partitions,
)
from fewshot_core.tree import node_rng, tree_levels


def brute_force(sim, b, balanced=False):
    """Best cut over every assignment of labels (not only canonical ones)."""
    n = len(sim)
    best = None
    for labels in itertools.product(range(b), repeat=n):
        sizes = [labels.count(g) for g in range(b)]
        if min(sizes) == 0 or (balanced and max(sizes) - min(sizes) > 1):
            continue
        c = cut_cost(sim, labels)
        best = c if best is None else min(best, c)
    return best


def stirling2(n, k):
    if n == k or k == 1:
        return 1
    if k == 0 or k > n:
        return 0
    return k * stirling2(n - 1, k) + stirling2(n - 1, k - 1)


@pytest.mark.parametrize("n,b", [(n, b) for n in range(2, 8) for b in range(2, n + 1)])
def test_set_partitions_are_all_distinct_partitions(n, b):
    parts = set_partitions(n, b)
    assert len(parts) == stirling2(n, b) == len(set(parts))
    assert all(len(set(p)) == b for p in parts)


def random_similarity(rng, n, kind):
    if kind == "ties":
        a = rng.integers(-2, 3, size=(n, n)).astype(float)
    else:
        a = rng.normal(size=(n, n))
    return (a + a.T) / 2


@pytest.mark.parametrize("kind", ["normal", "ties"])
@pytest.mark.parametrize("balanced", [False, True])
def test_partition_is_globally_optimal(kind, balanced):
    rng = np.random.default_rng(0)
    for _ in range(60):
        n = int(rng.integers(2, 7))
        b = int(rng.integers(2, n + 1))
        sim = random_similarity(rng, n, kind)
        groups, cost = partition(sim, b, balanced=balanced)
        labels = [next(g for g, grp in enumerate(groups) if i in grp) for i in range(n)]
        assert sorted(i for g in groups for i in g) == list(range(n)) and len(groups) == b
        assert cost == pytest.approx(cut_cost(sim, labels))
        assert cost == pytest.approx(brute_force(sim, b, balanced), abs=1e-9)
        if balanced:
            sizes = [len(g) for g in groups]
            assert max(sizes) - min(sizes) <= 1


def test_partition_ties_are_deterministic_and_separate_dissimilar_ops():
    sim = np.zeros((5, 5))
    assert partition(sim, 2) == partition(sim.copy(), 2)
    sim = -np.ones((5, 5))  # everything dissimilar: with b = 2 the best cut separates as many pairs as possible
    groups, cost = partition(sim, 2)
    assert sorted(map(len, groups)) == [2, 3] and cost == -6
    sim = np.eye(5)
    sim[0, 1] = sim[1, 0] = 5.0
    groups, _ = partition(sim, 2)
    assert [0, 1] in groups or any({0, 1} <= set(g) for g in groups)


def test_scalar_cut_minimises_within_group_distance_and_can_join_the_extremes():
    """docs/design.md §3: with -|z_i - z_j| the cut minimises the summed distance within groups, so with
    b = 2 two far-apart extremes share a group when the middle values lie close; with b = 3 they do not."""
    z = np.array([-10.0, 0.0, 0.1, 0.2, 10.0])
    sim = -np.abs(z[:, None] - z[None, :])
    assert partition(sim, 2) == ([[0, 4], [1, 2, 3]], -60.0)
    assert partition(sim, 3)[0] == [[0], [1, 2, 3], [4]]


@pytest.mark.parametrize("bad,match", [
    (np.ones((3, 4)), "square"),
    (np.array([[0, np.nan], [np.nan, 0]]), "NaN"),
    (np.array([[0, 1.0], [2.0, 0]]), "symmetric"),
])
def test_bad_similarity_is_an_error(bad, match):
    with pytest.raises(SplitError, match=match):
        partition(bad, 2)


def test_b_larger_than_the_operations_is_an_error():
    with pytest.raises(SplitError, match="between 2 and"):
        partition(np.zeros((3, 3)), 4)
    mask = space.full_mask()
    assert candidate_edges(mask, [], 6) == []
    with pytest.raises(SplitError, match="no edge can be split"):
        choose_edge("mincut", candidate_edges(mask, [], 6), 0, cuts={})


@pytest.mark.parametrize("leaves,b,depth,n_leaves", [(8, 2, 3, 8), (9, 3, 2, 9), (6, 2, 2, 4), (2, 2, 1, 2)])
def test_constant_policy(leaves, b, depth, n_leaves):
    factors = constant_policy(leaves, b)
    levels = tree_levels(factors)
    assert len(factors) == depth and len(levels[-1]) == n_leaves


def test_policy_errors_and_explicit_levels():
    with pytest.raises(SplitError, match="at least 2"):
        constant_policy(8, 1)
    with pytest.raises(SplitError, match="at least b"):
        constant_policy(2, 3)
    assert branching_factors({"levels": [2, 3]}) == [2, 3]
    assert tree_levels([2, 3])[-1][:4] == ["r00", "r01", "r02", "r10"]
    with pytest.raises(SplitError):
        branching_factors({"levels": [2, 1]})
    with pytest.raises(SplitError, match="unknown policy"):
        branching_factors({"greedy": 1})


def test_tree_names_are_paths():
    assert tree_levels([2, 2]) == [["r"], ["r0", "r1"], ["r00", "r01", "r10", "r11"]]


def test_edge_selection_modes():
    mask = space.full_mask()
    cands = candidate_edges(mask, [0], 2)
    assert cands == [1, 2, 3, 4, 5]
    assert choose_edge("order", cands, 1, order=[0, 1, 2]) == 1
    with pytest.raises(SplitError, match="cannot be split"):
        choose_edge("order", cands, 0, order=[0, 1, 2])  # edge 0 was split on this path
    assert choose_edge("mincut", cands, 0, cuts={1: 0.5, 2: -1.0, 3: -1.0}) == 2
    picks = {choose_edge("random", cands, 0, rng=node_rng(s, "r", "edge")) for s in range(30)}
    assert picks <= set(cands) and len(picks) > 1
    assert choose_edge("random", cands, 0, rng=node_rng(4, "r0", "edge")) == choose_edge(
        "random", cands, 0, rng=node_rng(4, "r0", "edge"))
    with pytest.raises(SplitError, match="unknown edge selection"):
        choose_edge("greedy", cands, 0)


def test_record_children_and_validation():
    rec = SplitRecord(node="r", depth=0, edge=2, groups=[["none", "avg_pool_3x3"], ["skip_connect", "nor_conv_1x1", "nor_conv_3x3"]],
                      cut=0.1, ops=list(space.OPS), similarity=np.eye(5).tolist(), metric="snip", seed=0)
    rec.validate()
    children = rec.child_masks(space.full_mask())
    assert [c[2].tolist() for c in children] == [[True, False, False, False, True], [False, True, True, True, False]]
    assert all(c[[0, 1, 3, 4, 5]].all() for c in children)
    assert SplitRecord.from_dict(rec.to_dict()) == rec
    bad = rec.to_dict() | {"groups": [["none"], ["skip_connect", "nor_conv_1x1"]]}
    with pytest.raises(SplitError, match="not a partition"):
        SplitRecord.from_dict(bad)


def test_random_partition_is_seeded():
    ops = list(space.OPS)
    a = random_partition(ops, 2, node_rng(0, "r", "groups"))
    assert a == random_partition(ops, 2, node_rng(0, "r", "groups"))
    assert sorted(o for g in a for o in g) == sorted(ops) and len(a) == 2
