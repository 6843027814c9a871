"""Splitting a (sub-)supernet: exact min-cut partitions, edge selection, policies and split records.

docs/design.md §3. The tree's node names and shape are in :mod:`fewshot_core.tree`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from fewshot_core.errors import SplitError
from fewshot_core.nb201 import EDGES, NUM_EDGES, OPS, full_mask, reaches_output
from fewshot_core.tree import ROOT, node_rng, tree_levels

if TYPE_CHECKING:
    import pandas as pd

    from fewshot_core.settings import TreeSettings

EDGE_SELECTION = ("mincut", "order", "random")


# ----------------------------------------------------------------------------- partitions


@cache
def set_partitions(n: int, b: int) -> tuple[tuple[int, ...], ...]:
    """Every partition of ``range(n)`` into ``b`` non-empty blocks, as restricted growth strings.

    ``labels[i]`` is the block of item ``i``; blocks are numbered by first appearance, so each
    partition appears once, in lexicographic order.
    """
    out: list[tuple[int, ...]] = []

    def grow(prefix: list[int], used: int) -> None:
        i = len(prefix)
        if i == n:
            if used == b:
                out.append(tuple(prefix))
            return
        if used + (n - i) < b:
            return
        for label in range(min(used + 1, b)):
            grow(prefix + [label], max(used, label + 1))

    grow([], 0)
    return tuple(out)


def _check_similarity(similarity: np.ndarray) -> np.ndarray:
    s = np.asarray(similarity, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise SplitError(f"similarity matrix must be square, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise SplitError("similarity matrix holds NaN or infinite values")
    if not np.allclose(s, s.T, rtol=1e-9, atol=1e-12):
        raise SplitError("similarity matrix must be symmetric")
    return s


def cut_cost(similarity: np.ndarray, labels: Sequence[int]) -> float:
    """Summed similarity of the pairs that ``labels`` puts in different groups."""
    s = np.asarray(similarity, dtype=np.float64)
    lab = np.asarray(labels)
    across = lab[:, None] != lab[None, :]
    return float(np.triu(s * across, k=1).sum())


def partition(similarity: np.ndarray, b: int, balanced: bool = False) -> tuple[list[list[int]], float]:
    """The globally optimal cut of the items into ``b`` non-empty groups, and its cost.

    Exact, by enumeration. ``balanced`` keeps only group sizes differing by at most one. Ties go to
    the first partition in lexicographic label order; groups are returned ordered by smallest item.
    """
    s = _check_similarity(similarity)
    n = s.shape[0]
    if not 2 <= b <= n:
        raise SplitError(f"branching factor b={b} must be between 2 and the number of operations ({n})")
    iu = np.triu_indices(n, k=1)
    weights = s[iu]
    candidates = np.array(set_partitions(n, b), dtype=np.int64)
    if balanced:
        sizes = np.stack([(candidates == g).sum(axis=1) for g in range(b)], axis=1)
        candidates = candidates[sizes.max(axis=1) - sizes.min(axis=1) <= 1]
    costs = (candidates[:, iu[0]] != candidates[:, iu[1]]).astype(np.float64) @ weights
    tol = 1e-12 * (1.0 + np.abs(weights).sum())
    best = int(np.flatnonzero(costs <= costs.min() + tol)[0])
    labels = candidates[best]
    groups = [np.flatnonzero(labels == g).tolist() for g in range(b)]
    return sorted(groups, key=min), float(costs[best])


# ----------------------------------------------------------------------------- policies and tree


def constant_policy(n_leaves: int, b: int) -> list[int]:
    """The paper's Algorithm 1: split by ``b`` at every level while ``n x b <= N``."""
    if b < 2:
        raise SplitError(f"branching factor b must be at least 2, got {b}")
    if n_leaves < b:
        raise SplitError(f"target number of leaves N={n_leaves} must be at least b={b}")
    factors, n = [], 1
    while n * b <= n_leaves:
        factors.append(b)
        n *= b
    return factors


def branching_factors(policy: dict) -> list[int]:
    """Per-level branching factors of a policy: ``{'constant': {'leaves': N, 'b': b}}`` or
    ``{'levels': [b0, b1, ...]}``."""
    if "constant" in policy:
        return constant_policy(int(policy["constant"]["leaves"]), int(policy["constant"]["b"]))
    if "levels" in policy:
        factors = [int(b) for b in policy["levels"]]
        if not factors or min(factors) < 2:
            raise SplitError(f"policy levels must be a non-empty list of factors >= 2, got {factors}")
        if len(factors) > NUM_EDGES:
            raise SplitError(f"{len(factors)} levels exceed the {NUM_EDGES} edges (an edge splits once per path)")
        return factors
    raise SplitError(f"unknown policy {policy!r}; use 'constant' (leaves, b) or 'levels' (list)")


# ----------------------------------------------------------------------------- records


@dataclass
class SplitRecord:
    """One split: the edge chosen at a node, the operation groups and how they were found."""

    node: str
    depth: int
    edge: int
    groups: list[list[str]]
    cut: float
    ops: list[str]
    similarity: list[list[float]]
    metric: str
    seed: int
    candidates: dict[int, float] = field(default_factory=dict)

    @property
    def edge_name(self) -> str:
        return EDGES[self.edge]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SplitRecord:
        """A record from its JSON form; :class:`SplitError` naming the field for a wrong key or type."""
        if not isinstance(d, dict):
            raise SplitError(f"a split record must be an object, got {type(d).__name__}")
        fields = {"node": str, "depth": int, "edge": int, "groups": list, "cut": (int, float), "ops": list,
                  "similarity": list, "metric": str, "seed": int, "candidates": dict}
        if set(d) != set(fields):
            raise SplitError(f"a split record has the keys {sorted(d)}, expected {sorted(fields)}")
        for key, kind in fields.items():
            if not isinstance(d[key], kind) or isinstance(d[key], bool):
                raise SplitError(f"split field {key!r} is {d[key]!r}, not of the type it must have")
        if not all(isinstance(g, list) and all(isinstance(o, str) for o in g) for g in d["groups"]):
            raise SplitError(f"split field 'groups' must be lists of operation names, got {d['groups']!r}")
        try:
            candidates = {int(k): float(v) for k, v in d["candidates"].items()}
        except (TypeError, ValueError) as err:
            raise SplitError(f"split field 'candidates' must map edges to cuts ({err})") from err
        rec = cls(**{**d, "candidates": candidates})
        rec.validate()
        return rec

    def validate(self) -> None:
        """Raise :class:`SplitError` unless the groups partition the edge's operations."""
        if not 0 <= self.edge < NUM_EDGES:
            raise SplitError(f"split at {self.node}: edge index {self.edge} out of range")
        flat = [op for g in self.groups for op in g]
        if any(not g for g in self.groups) or sorted(flat) != sorted(self.ops) or len(set(flat)) != len(flat):
            raise SplitError(
                f"split at {self.node}: groups {self.groups} are not a partition of the operations {self.ops}"
            )
        unknown = set(flat) - set(OPS)
        if unknown:
            raise SplitError(f"split at {self.node}: unknown operations {sorted(unknown)}")

    def child_masks(self, parent_mask: np.ndarray) -> list[np.ndarray]:
        """The parent's mask with the split edge restricted to each group, in group order."""
        out = []
        for group in self.groups:
            m = np.array(parent_mask, dtype=bool, copy=True)
            m[self.edge] = False
            m[self.edge, [OPS.index(op) for op in group]] = True
            out.append(m)
        return out


def candidate_edges(mask: np.ndarray, split_edges: Sequence[int], b: int) -> list[int]:
    """Edges that may be split: not split before on this path and holding at least ``b`` ops."""
    m = np.asarray(mask, dtype=bool)
    return [e for e in range(NUM_EDGES) if e not in split_edges and m[e].sum() >= b]


def edge_similarity_ops(mask: np.ndarray, edge: int) -> list[str]:
    """The operations still enabled on ``edge``: the rows of its similarity matrix."""
    return [OPS[o] for o in np.flatnonzero(np.asarray(mask, dtype=bool)[edge])]


def choose_edge(
    mode: str,
    candidates: Sequence[int],
    depth: int,
    order: Sequence[int] | None = None,
    cuts: dict[int, float] | None = None,
    rng: np.random.Generator | None = None,
) -> int:
    """Pick the edge to split: ``order`` (the configured edge for this depth), ``mincut`` (lowest
    best-cut cost among ``cuts``; ties to the lowest edge index) or ``random`` (from ``rng``)."""
    if mode not in EDGE_SELECTION:
        raise SplitError(f"unknown edge selection {mode!r}; allowed: {', '.join(EDGE_SELECTION)}")
    if not candidates:
        raise SplitError("no edge can be split: every edge is split already or has too few operations")
    if mode == "order":
        if order is None or depth >= len(order):
            raise SplitError(f"edge selection 'order' needs an edge for depth {depth}; got order={order}")
        edge = int(order[depth])
        if edge not in candidates:
            raise SplitError(
                f"edge {edge} ({EDGES[edge] if 0 <= edge < NUM_EDGES else '?'}) listed for depth {depth} "
                f"cannot be split here; candidates: {list(candidates)}"
            )
        return edge
    if mode == "random":
        if rng is None:
            raise SplitError("edge selection 'random' needs a seeded generator")
        return int(candidates[int(rng.integers(len(candidates)))])
    if not cuts:
        raise SplitError("edge selection 'mincut' needs the best cut of every candidate edge")
    return min(sorted(cuts), key=lambda e: (cuts[e], e))


def random_partition(ops: Sequence[str], b: int, rng: np.random.Generator, balanced: bool = False) -> list[list[str]]:
    """The ``random`` baseline: a uniformly drawn partition of ``ops`` into ``b`` groups."""
    parts = set_partitions(len(ops), b)
    if balanced:
        parts = tuple(p for p in parts if max(p.count(g) for g in range(b)) - min(p.count(g) for g in range(b)) <= 1)
    labels = parts[int(rng.integers(len(parts)))]
    groups = [[ops[i] for i in range(len(ops)) if labels[i] == g] for g in range(b)]
    return sorted(groups, key=lambda g: OPS.index(g[0]))


# ----------------------------------------------------------------------------- a tree, level by level


def node_masks(factors: list[int], level: int, previous: list[SplitRecord]) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Mask and already-split edges of every node at ``level``, from the splits above it."""
    by_node = {r.node: r for r in previous}
    state: dict[str, tuple[np.ndarray, list[int]]] = {ROOT: (full_mask(), [])}
    levels = tree_levels(factors)
    for depth in range(level):
        nxt = {}
        for node in levels[depth]:
            if node not in by_node:
                raise SplitError(f"the split of node {node} (level {depth}) is missing")
            rec = by_node[node]
            mask, done = state[node]
            for i, child_mask in enumerate(rec.child_masks(mask)):
                nxt[f"{node}{i}"] = (child_mask, done + [rec.edge])
        state = nxt
    return {n: state[n] for n in levels[level]}


def _selection(tree: TreeSettings, metric_kind: str) -> str:
    """How a node's edge is chosen: as configured, except that a metric without values (``random``)
    cannot rank edges by their cut and draws the edge at random under ``mincut``."""
    return "random" if tree.edge_selection == "mincut" and metric_kind == "none" else tree.edge_selection


def edges_to_score(tree: TreeSettings, metric_kind: str, mask: np.ndarray, done: list[int], depth: int, seed: int,
                   node: str) -> list[int]:
    """The edges a level's scoring must cover: every candidate (``mincut``) or the one chosen."""
    b = tree.factors[depth]
    cands = candidate_edges(mask, done, b)
    mode = _selection(tree, metric_kind)
    if mode == "mincut":
        if not cands:
            raise SplitError(f"node {node}: no edge holds {b} operations and is unsplit")
        return cands
    return [choose_edge(mode, cands, depth, order=tree.edge_order, rng=node_rng(seed, node, "edge"))]


def split_level(scores: pd.DataFrame, metric: str, metric_kind: str, seed: int, level: int, tree: TreeSettings,
                balanced: bool, previous: list[SplitRecord]) -> list[SplitRecord]:
    """Choose each node's edge and groups from its level's scores (``random``: groups drawn at random)."""
    b = tree.factors[level]
    mode = _selection(tree, metric_kind)
    out = []
    for node, (mask, done) in node_masks(tree.factors, level, previous).items():
        at = scores[scores.node == node]
        if at.empty:
            raise SplitError(f"no scores for node {node} of metric {metric}, seed {seed}")
        best: dict[int, tuple[list[list[int]], float, list[str], np.ndarray]] = {}
        for edge, rows in at.groupby("edge", sort=True):
            ops = list(rows.op)
            if sorted(ops, key=OPS.index) != edge_similarity_ops(mask, int(edge)):
                raise SplitError(f"scores of node {node} edge {edge} do not cover its operations {ops}")
            sim = np.array([np.asarray(s, dtype=float) for s in rows.similarity])
            if sim.shape != (len(ops), len(ops)):
                raise SplitError(f"scores of node {node} edge {edge}: similarity rows of shape {sim.shape}, "
                                 f"expected {len(ops)} rows of {len(ops)}")
            groups, cut = partition(sim, b, balanced=balanced)
            best[int(edge)] = (groups, cut, ops, sim)
        cands = candidate_edges(mask, done, b)
        if mode == "mincut":
            edge = choose_edge("mincut", [e for e in cands if e in best], level, cuts={e: v[1] for e, v in best.items()})
        else:
            edge = choose_edge(mode, cands, level, order=tree.edge_order, rng=node_rng(seed, node, "edge"))
        if edge not in best:
            raise SplitError(f"node {node}: edge {edge} was chosen but not scored")
        groups, cut, ops, sim = best[edge]
        named = ([[ops[i] for i in g] for g in groups] if metric_kind != "none"
                 else random_partition(ops, b, node_rng(seed, node, "groups"), balanced))
        record = SplitRecord(node=node, depth=level, edge=edge, groups=named, cut=cut, ops=ops,
                             similarity=sim.tolist(), metric=metric, seed=seed,
                             candidates={e: v[1] for e, v in best.items()})
        for i, child in enumerate(record.child_masks(mask)):
            if not reaches_output(child[:, 1:].any(axis=1)):
                raise SplitError(
                    f"{metric}, seed {seed}, node {node}: the split of edge {EDGES[edge]} into {named} gives child "
                    f"{node}{i} only {named[i]} there, and with it no architecture of {node}{i} connects the cell's "
                    "input to its output. Change tree.policy (fewer groups), tree.edge_order (another edge), or "
                    "set tree.balanced: true")
        out.append(record)
    return out


def leaf_of(arch_mask: np.ndarray, leaves: dict[str, np.ndarray]) -> str:
    """The one leaf whose mask holds the architecture ``arch_mask`` (a mask with one operation per edge);
    :class:`SplitError` when none or several do (the leaves of a tree partition its architectures)."""
    holders = [leaf for leaf, mask in leaves.items() if not (arch_mask & ~np.asarray(mask, dtype=bool)).any()]
    if len(holders) != 1:
        raise SplitError(f"{len(holders)} leaves hold the architecture (expected exactly one): {holders}")
    return holders[0]
