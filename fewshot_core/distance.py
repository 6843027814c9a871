"""The split distance (docs/design.md §5) and its internal, external, by-level and between-metric tables.

For partitions A and B of the same operation set O (n = |O|), with G(o, A) the operations grouped
with o in A (o excluded):  S(A, B) = sum_o |G(o, A) symmetric-difference G(o, B)| / (2 (n - 1)).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from itertools import combinations

import pandas as pd

from fewshot_core.columns import PAIR_COLUMNS

Partition = Sequence[Iterable[Hashable]]


def _mates(partition: Partition) -> dict[Hashable, frozenset]:
    mates: dict[Hashable, frozenset] = {}
    for group in partition:
        g = frozenset(group)
        for o in g:
            if o in mates:
                raise ValueError(f"operation {o!r} appears in two groups of {partition}")
            mates[o] = g - {o}
    return mates


def split_distance(a: Partition, b: Partition) -> float:
    """How far apart two partitions of the same operations are; 0 when equal, at most n/2."""
    ga, gb = _mates(a), _mates(b)
    if set(ga) != set(gb):
        raise ValueError(f"partitions of different operation sets: {sorted(map(str, ga))} vs {sorted(map(str, gb))}")
    n = len(ga)
    if n < 2:
        return 0.0
    return sum(len(ga[o] ^ gb[o]) for o in ga) / (2 * (n - 1))


def _pair(kind: str, x: pd.Series, y: pd.Series) -> dict:
    return {
        "kind": kind, "metric_a": x.metric, "metric_b": y.metric, "seed_a": int(x.seed), "seed_b": int(y.seed),
        "node_a": x.node, "node_b": y.node, "depth_a": int(x.depth), "depth_b": int(y.depth),
        "edge_a": int(x.edge), "edge_b": int(y.edge), "same_depth": bool(x.depth == y.depth),
        "distance": split_distance(x.groups, y.groups),
    }


def pair_table(splits: pd.DataFrame) -> pd.DataFrame:
    """Every compared pair of splits, one row each.

    ``internal``: two splits of the same tree (metric, seed). ``external``: two splits of one metric's
    trees grown from different seeds. ``between_metrics``: two metrics' splits at the same seed and
    node. ``same_depth`` marks the pairs that the by-level figures keep.
    Needs columns metric, seed, node, depth, edge, groups.
    """
    rows: list[dict] = []
    splits = splits.sort_values(["metric", "seed", "depth", "node"]).reset_index(drop=True)
    for _, tree in splits.groupby(["metric", "seed"], sort=True):
        rows += [_pair("internal", x, y) for (_, x), (_, y) in combinations(tree.iterrows(), 2)]
    for _, runs in splits.groupby("metric", sort=True):
        seeds = sorted(runs.seed.unique())
        for sa, sb in combinations(seeds, 2):
            ta, tb = runs[runs.seed == sa], runs[runs.seed == sb]
            rows += [_pair("external", x, y) for _, x in ta.iterrows() for _, y in tb.iterrows()]
    for _, at in splits.groupby(["seed", "node"], sort=True):
        rows += [_pair("between_metrics", x, y) for (_, x), (_, y) in combinations(at.iterrows(), 2)]
    return pd.DataFrame(rows, columns=list(PAIR_COLUMNS))


def per_split(pairs: pd.DataFrame, by_level: bool = False) -> pd.DataFrame:
    """Each split's mean distance to the splits it is compared with, the value the paper's Figure 1
    caption defines ("the average distance of splits to other splits"): one row per kind (internal,
    external), metric, seed and node, with its depth and its number of pairs. ``by_level`` keeps the
    pairs at the same depth only (Figure 2)."""
    p = pairs[pairs.kind.isin(["internal", "external"])]
    if by_level:
        p = p[p.same_depth]
    sides = pd.concat([
        p.assign(metric=p.metric_a, seed=p.seed_a, node=p.node_a, depth=p.depth_a),
        p.assign(metric=p.metric_b, seed=p.seed_b, node=p.node_b, depth=p.depth_b),
    ])
    keys = ["kind", "metric", "seed", "node", "depth"]
    return sides.groupby(keys, sort=True).distance.agg(distance="mean", pairs="size").reset_index()


def summarise(pairs: pd.DataFrame, by_level: bool = False) -> pd.DataFrame:
    """Each seed's mean of its splits' values (:func:`per_split`) per kind and metric (and depth)."""
    keys = ["kind", "metric", "seed"] + (["depth"] if by_level else [])
    return per_split(pairs, by_level).groupby(keys, sort=True).distance.mean().reset_index()
