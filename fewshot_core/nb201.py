"""NAS-Bench-201's operations, edges, masks and architecture strings (numpy only, no torch).

Kept apart from :mod:`fewshot_core.space` so that light workflow stages start without importing torch.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from fewshot_core.errors import MaskError

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES: tuple[str, ...] = ("1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2")
#: (target node, source node) of each edge, in edge order.
EDGE_NODES: tuple[tuple[int, int], ...] = tuple(
    (int(e.split("<-")[0]), int(e.split("<-")[1])) for e in EDGES
)
NUM_EDGES, NUM_OPS = len(EDGES), len(OPS)
CONV_OPS: tuple[str, ...] = ("nor_conv_1x1", "nor_conv_3x3")


# ----------------------------------------------------------------------------- masks


def full_mask() -> np.ndarray:
    """The root supernet's mask: every operation enabled on every edge."""
    return np.ones((NUM_EDGES, NUM_OPS), dtype=bool)


def reaches_output(edge_alive: Sequence[bool]) -> bool:
    """True when node 3 is reachable from node 0 through edges flagged alive."""
    reached = {0}
    for (dst, src), alive in zip(EDGE_NODES, edge_alive):  # edges are in topological order
        if alive and src in reached:
            reached.add(dst)
    return 3 in reached


def validate_mask(mask) -> np.ndarray:
    """Return ``mask`` as a (6, 5) bool array, or raise :class:`MaskError` saying what is wrong.

    Every edge needs at least one enabled operation, and at least one architecture of the mask
    must connect the cell's input to its output through operations other than ``none``.
    """
    m = np.asarray(mask.cpu() if hasattr(mask, "cpu") else mask)
    if m.shape != (NUM_EDGES, NUM_OPS):
        raise MaskError(f"mask must have shape ({NUM_EDGES}, {NUM_OPS}), got {m.shape}")
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise MaskError("mask must be boolean (or 0/1)")
        m = m.astype(bool)
    empty = [EDGES[e] for e in range(NUM_EDGES) if not m[e].any()]
    if empty:
        raise MaskError(f"edge(s) {', '.join(empty)} have every operation disabled")
    if not reaches_output(m[:, 1:].any(axis=1)):
        raise MaskError(
            "mask disconnects the cell's output: no architecture it holds links node 0 to node 3 "
            "through an operation other than 'none'"
        )
    return m.copy()


def arch_to_mask(arch: str) -> np.ndarray:
    """The one-operation-per-edge mask of an architecture string (no connectivity check)."""
    ops = parse_arch(arch)
    m = np.zeros((NUM_EDGES, NUM_OPS), dtype=bool)
    for e, op in enumerate(ops):
        m[e, OPS.index(op)] = True
    return m


def mask_to_arch(mask: np.ndarray) -> str:
    """The architecture string of a single-path mask; error if an edge has not exactly one op."""
    m = np.asarray(mask, dtype=bool)
    counts = m.sum(axis=1)
    if m.shape != (NUM_EDGES, NUM_OPS) or (counts != 1).any():
        raise MaskError(f"not a single-path mask (enabled ops per edge: {counts.tolist()})")
    return format_arch([OPS[int(np.flatnonzero(row)[0])] for row in m])


def parse_arch(arch: str) -> list[str]:
    """The six operations, in edge order, of a benchmark string ``|op~0|+|op~0|op~1|+|...|``."""
    nodes = arch.strip().split("+")
    if len(nodes) != 3:
        raise MaskError(f"architecture {arch!r} must have 3 nodes separated by '+'")
    by_edge: dict[str, str] = {}
    for dst, node in enumerate(nodes, start=1):
        items = [t for t in node.split("|") if t]
        if len(items) != dst:
            raise MaskError(f"architecture {arch!r}: node {dst} needs {dst} inputs, got {len(items)}")
        for item in items:
            op, _, src = item.partition("~")
            if op not in OPS:
                raise MaskError(f"architecture {arch!r}: unknown operation {op!r}; known: {OPS}")
            if not src.isdigit() or int(src) >= dst:
                raise MaskError(f"architecture {arch!r}: bad input {item!r} for node {dst}")
            by_edge[f"{dst}<-{int(src)}"] = op
    if set(by_edge) != set(EDGES):
        raise MaskError(f"architecture {arch!r} does not name every edge once")
    return [by_edge[e] for e in EDGES]


def format_arch(ops: Sequence[str]) -> str:
    """The benchmark string of six operations given in edge order."""
    nodes = []
    for dst in (1, 2, 3):
        items = [f"{ops[e]}~{src}" for e, (d, src) in enumerate(EDGE_NODES) if d == dst]
        nodes.append("|" + "|".join(items) + "|")
    return "+".join(nodes)


def architectures(mask: np.ndarray) -> list[str]:
    """Every architecture string a mask holds, in lexicographic op-index order."""
    m = np.asarray(mask, dtype=bool)
    choices = [[OPS[o] for o in np.flatnonzero(row)] for row in m]
    return [format_arch(ops) for ops in itertools.product(*choices)]


def study_set(n: int, seed: int) -> tuple[list[str], int]:
    """``n`` architectures drawn uniformly without replacement from those whose cell connects its input to
    its output (the others give chance accuracy everywhere), and how many of all 5^6 are cut off."""
    all_ops = np.array(np.meshgrid(*[range(NUM_OPS)] * NUM_EDGES, indexing="ij")).reshape(NUM_EDGES, -1).T
    connected = [row for row in all_ops if reaches_output([OPS[o] != "none" for o in row])]
    if n > len(connected):
        raise ValueError(f"study.archs: {n} exceeds the {len(connected)} connected architectures")
    picks = np.random.default_rng([seed, 201]).choice(len(connected), size=n, replace=False)
    return [format_arch([OPS[o] for o in connected[i]]) for i in sorted(picks)], len(all_ops) - len(connected)
