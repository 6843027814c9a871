"""Checks of a configuration that its schema cannot express, run before the workflow starts a job.

Light on purpose (no torch): the workflow calls :func:`check_config` while it parses.
"""

from __future__ import annotations

import os
from pathlib import Path

from fewshot_core.errors import SplitError
from fewshot_core.splitting import EDGE_SELECTION, branching_factors

CIFAR_LAYOUTS = ("cifar-10-batches-bin", "cifar-10-batches-py")


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key and what is allowed."""


def _writable(path: Path) -> bool:
    """True when ``path`` can be created or written: its nearest existing ancestor is writable."""
    p = path.resolve()
    while not p.exists():
        p = p.parent
    return p.is_dir() and os.access(p, os.W_OK | os.X_OK)


def check_config(config: dict, workdir: str | os.PathLike = ".") -> list[int]:
    """Raise :class:`ConfigError` for a configuration that would fail later; return the branching factors."""
    try:
        factors = branching_factors(config["tree"]["policy"])
    except SplitError as err:
        raise ConfigError(f"tree.policy: {err}") from err
    tree = config["tree"]
    if tree["edge_selection"] not in EDGE_SELECTION:
        raise ConfigError(f"tree.edge_selection: {tree['edge_selection']!r}; allowed: {', '.join(EDGE_SELECTION)}")
    if tree["edge_selection"] == "order":
        order = tree.get("edge_order") or []
        if len(order) < len(factors) or len(set(order[: len(factors)])) < len(factors):
            raise ConfigError(f"tree.edge_order: {order} must name {len(factors)} distinct edges (0-5), one per "
                              f"level, for edge_selection 'order' (an edge splits once along a path)")
    elif tree.get("edge_order"):
        raise ConfigError(f"tree.edge_order is only used with edge_selection 'order', not {tree['edge_selection']!r}")
    for name, m in config["metrics"].items():
        if "random" == name and m.get("settings"):
            raise ConfigError("metrics.random takes no settings")
    data = config["data"]
    if data["name"] == "cifar10" and not data.get("download"):
        root = Path(workdir, data.get("root") or "")
        if not data.get("root") or not any((root / d).is_dir() for d in CIFAR_LAYOUTS):
            raise ConfigError(
                f"data.root: CIFAR-10 not found in {str(root)!r}: expected {' or '.join(CIFAR_LAYOUTS)} there; "
                "extract the archive into it or set data.download: true")
    results = Path(workdir, "results", config["run"])
    if not _writable(results):
        raise ConfigError(f"run: the output directory {results} cannot be written")
    return factors

