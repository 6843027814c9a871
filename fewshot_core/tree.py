"""A splitting tree's node names, their parents and children, and each node's random streams.

docs/design.md §3: node names are paths, ``r`` the root, ``r0`` and ``r1`` its children, ``r01`` ...
The tree's shape depends on the branching factors alone, so the workflow lays out its jobs before
any metric runs. Numpy only: the workflow imports this module while it parses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fewshot_core.errors import SplitError

ROOT = "r"


def tree_levels(factors: Sequence[int]) -> list[list[str]]:
    """Node names per depth, root first; the last level holds the leaves. Children are the parent's
    name plus the child index: ``r``, ``r0``, ``r1``, ``r01`` ..."""
    levels = [[ROOT]]
    for b in factors:
        levels.append([f"{node}{i}" for node in levels[-1] for i in range(b)])
    return levels


def leaf_names(factors: Sequence[int]) -> list[str]:
    """The leaves of a tree with these branching factors, in order."""
    return tree_levels(factors)[-1]


def parent_of(node: str) -> str:
    """The node one level up; :class:`SplitError` for the root or a name that is not a node."""
    if node == ROOT or not node.startswith(ROOT):
        raise SplitError(f"{node!r} has no parent")
    return node[:-1]


def node_rng(seed: int, node: str, purpose: str) -> np.random.Generator:
    """A generator fixed by the seed, the node's name and what it is for (independent streams)."""
    return np.random.default_rng([seed, *node.encode(), 0, *purpose.encode()])


def node_seed(seed: int, node: str, purpose: str) -> int:
    """An integer seed (for torch) drawn from :func:`node_rng`."""
    return int(node_rng(seed, node, purpose).integers(2**31))
