"""The workflow's stages as functions: root weights, scoring one tree level, splitting it, and
gathering every split into tables. The command line (``fewshot``) wraps each one.

Every output is written under a temporary name and renamed, so a killed job never leaves a file
that looks complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fewshot_core.errors import ArtifactError
from fewshot_core.splitting import (
    SplitError, SplitRecord, candidate_edges, choose_edge, edge_similarity_ops, node_rng, partition,
    random_partition, tree_levels,
)
from fewshot_core.nb201 import OPS, full_mask

METRICS_DIR = Path(__file__).resolve().parent / "metrics"
SCORE_COLUMNS = ["metric", "seed", "node", "depth", "edge", "op", "value", "parent_value", "similarity", "seconds"]


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> None:
    """Write ``payload`` to a temporary file beside ``path``, fsync it, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def read_parquet(path: str | os.PathLike) -> pd.DataFrame:
    """Read a table, turning a damaged file into an error that names it and says what to do."""
    try:
        return pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for damaged files
        raise ArtifactError(f"{path} is not a readable parquet table ({err}); delete it and rerun") from err


def read_splits(paths: list[str | os.PathLike]) -> list[SplitRecord]:
    """Split records from JSON files; a hand-edited invalid partition is an error naming the file."""
    out = []
    for p in paths:
        try:
            items = json.loads(Path(p).read_text())
            out += [SplitRecord.from_dict(d) for d in items]
        except (ValueError, TypeError, KeyError) as err:
            raise SplitError(f"{p}: {err}; delete the file and rerun to recompute it") from err
    return out


def metric_code_hash(name: str) -> str:
    """A hash of the source that computes ``name``: its own module plus the shared metric code.

    Found by reading the sources (no torch import), so the workflow can put it in a rule's params
    and rerun one metric's jobs when its code changes.
    """
    pattern = re.compile(rf"register\(\s*Metric\(\s*\"{re.escape(name)}\"")
    own = [p for p in sorted(METRICS_DIR.glob("*.py")) if pattern.search(p.read_text())]
    if len(own) != 1:
        raise SplitError(f"metric {name!r} is registered in {len(own)} modules of {METRICS_DIR}")
    h = hashlib.sha256()
    for path in (own[0], METRICS_DIR / "base.py", METRICS_DIR / "__init__.py"):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def node_masks(factors: list[int], level: int, previous: list[SplitRecord]) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Mask and already-split edges of every node at ``level``, from the splits above it."""
    by_node = {r.node: r for r in previous}
    state: dict[str, tuple[np.ndarray, list[int]]] = {"r": (full_mask(), [])}
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


def edges_to_score(mode: str, mask: np.ndarray, done: list[int], b: int, depth: int, order: list[int] | None,
                   seed: int, node: str) -> list[int]:
    """The edges a level's scoring must cover: every candidate (``mincut``) or the one chosen."""
    cands = candidate_edges(mask, done, b)
    if mode == "mincut":
        if not cands:
            raise SplitError(f"node {node}: no edge holds {b} operations and is unsplit")
        return cands
    return [choose_edge(mode, cands, depth, order=order, rng=node_rng(seed, node, "edge"))]


def score_level(metric: str, settings: dict, seed: int, level: int, factors: list[int], net, batches,
                selection: str, order: list[int] | None, previous: list[SplitRecord], log=print,
                prepare_node=None) -> pd.DataFrame:
    """Score every edge to consider at every node of one level; one row per (node, edge, op).

    ``prepare_node(node, mask)``, when given, sets the node's weights first (warm-up).
    """
    from fewshot_core import metrics

    kind = metrics.get(metric).kind
    rows = []
    b = factors[level]
    for node, (mask, done) in node_masks(factors, level, previous).items():
        net.mask = mask
        if prepare_node is not None:
            prepare_node(node, mask)
        for edge in edges_to_score(selection, mask, done, b, level, order, seed, node):
            t0 = time.perf_counter()
            ops = edge_similarity_ops(mask, edge)
            if kind == "none":
                values, parent, sim = [None] * len(ops), None, np.zeros((len(ops), len(ops)))
                seconds = [0.0] * len(ops)
            else:
                vals, parent = metrics.evaluate_split(metric, net, edge, batches, settings,
                                                      where=f"node {node} edge {edge}")
                values = [float(v.value) if kind == "scalar" else None for v in vals]
                sim = metrics.similarity(kind, [v.value for v in vals], parent)
                seconds = [v.seconds for v in vals]
            for i, op in enumerate(ops):
                rows.append(dict(metric=metric, seed=seed, node=node, depth=level, edge=edge, op=op,
                                 value=values[i], parent_value=parent, similarity=sim[i].tolist(),
                                 seconds=seconds[i]))
            log(f"{metric} seed {seed} node {node} edge {edge}: {time.perf_counter() - t0:.2f}s")
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def split_level(scores: pd.DataFrame, metric: str, seed: int, level: int, factors: list[int], selection: str,
                order: list[int] | None, balanced: bool, previous: list[SplitRecord]) -> list[SplitRecord]:
    """Choose each node's edge and groups from its level's scores."""
    b = factors[level]
    out = []
    for node, (mask, done) in node_masks(factors, level, previous).items():
        at = scores[scores.node == node]
        if at.empty:
            raise SplitError(f"no scores for node {node} of metric {metric}, seed {seed}")
        best: dict[int, tuple[list[list[int]], float, list[str], np.ndarray]] = {}
        for edge, rows in at.groupby("edge", sort=True):
            ops = list(rows.op)
            if sorted(ops, key=OPS.index) != edge_similarity_ops(mask, int(edge)):
                raise SplitError(f"scores of node {node} edge {edge} do not cover its operations {ops}")
            sim = np.array([np.asarray(s, dtype=float) for s in rows.similarity])
            groups, cut = partition(sim, b, balanced=balanced)
            best[int(edge)] = (groups, cut, ops, sim)
        cands = candidate_edges(mask, done, b)
        if selection == "mincut":
            edge = choose_edge("mincut", [e for e in cands if e in best], level, cuts={e: v[1] for e, v in best.items()})
        else:
            edge = choose_edge(selection, cands, level, order=order, rng=node_rng(seed, node, "edge"))
        if edge not in best:
            raise SplitError(f"node {node}: edge {edge} was chosen but not scored")
        groups, cut, ops, sim = best[edge]
        named = ([[ops[i] for i in g] for g in groups] if metric != "random"
                 else random_partition(ops, b, node_rng(seed, node, "groups"), balanced))
        out.append(SplitRecord(node=node, depth=level, edge=edge, groups=named, cut=cut, ops=ops,
                               similarity=sim.tolist(), metric=metric, seed=seed,
                               candidates={e: v[1] for e, v in best.items()}))
    return out


def write_splits(records: list[SplitRecord], path: str | os.PathLike) -> None:
    atomic_write_bytes(path, json.dumps([r.to_dict() for r in records], indent=1).encode())
