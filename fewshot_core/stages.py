"""The workflow's stages: one function per rule, a typed spec and file paths in, files out.

Each stage reads its inputs through :mod:`fewshot_core.artifacts`, which checks that every file is
what the job expects, and writes its outputs atomically with a provenance record: the stage, the
metric, seed and level or leaves, the digest of the spec, and the digests of the inputs. Training
stages keep their checkpoints under the run's ``checkpoints/`` folder while they run, resume one
only when it was made by the same settings, and delete them once their outputs are written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from fewshot_core import artifacts
from fewshot_core.artifacts import provenance
from fewshot_core.errors import ArtifactError, DataError
from fewshot_core.ranking import ONESHOT
from fewshot_core.settings import (
    ChildrenSpec,
    DataSettings,
    HoldoutSpec,
    LeavesSpec,
    MetricSettings,
    OneShotSpec,
    RankingSpec,
    RootSpec,
    ScoreSpec,
    SplitSpec,
    StandaloneSpec,
    StudyEvalSpec,
    StudySetSpec,
    SupernetSettings,
    TreesSpec,
    digest,
)
from fewshot_core.splitting import edge_similarity_ops, edges_to_score, node_masks, node_rng, split_level

SCORE_COLUMNS = ["metric", "seed", "node", "depth", "edge", "op", "value", "parent_value", "similarity", "seconds"]
LEAF_COLUMNS = ["metric", "seed", "leaf", "arch", "val_accuracy", "val_loss"]
Log = Callable[[str], None]


def _log(message: str) -> None:
    print(message, flush=True)


def _load_data(spec: DataSettings, holdout: Path, seed: int):
    """The dataset and the seed's checked train/validation indices."""
    from fewshot_core import data

    d = data.load(spec.name, root=spec.root, input_size=spec.input_size, download=spec.download)
    train_idx, val_idx = artifacts.read_holdout(holdout, {"seed": seed, "data": asdict(spec)}, len(d.train_y))
    return d, train_idx, val_idx


def _shape(supernet: SupernetSettings, data: DataSettings, num_classes: int = 10) -> dict:
    return {"C": supernet.C, "N": supernet.N, "num_classes": num_classes, "input_size": data.input_size}


def _load_nodes(path: Path, expected: dict, shape: dict) -> dict:
    """A weights file whose provenance and supernet shape are what the job expects."""
    w = artifacts.load_weights(path, expected)
    if w["supernet"] != shape:
        raise ArtifactError(f"{path}: a supernet of shape {w['supernet']}, expected {shape}: it was made by other "
                            f"settings; {artifacts.REMEDY}")
    return w


def _supernet(shape: dict, state: dict | None = None, mask: np.ndarray | None = None):
    from fewshot_core.space import Supernet

    net = Supernet(**shape, mask=mask)
    if state is not None:
        net.load_state_dict(state)
    return net


# ----------------------------------------------------------------------------- per seed


def make_holdout(spec: HoldoutSpec, out: Path, log: Log = _log) -> None:
    """The seeded train/validation split of the dataset's training images."""
    from fewshot_core import data

    d = data.load(spec.data.name, root=spec.data.root, input_size=spec.data.input_size, download=spec.data.download)
    train_idx, val_idx = data.split_indices(len(d.train_y), spec.data.val_fraction, spec.seed)
    artifacts.write_holdout(out, train_idx, val_idx, provenance(
        "holdout", seed=spec.seed, data=asdict(spec.data), spec=digest(spec), n_images=len(d.train_y)))
    log(f"{d.name}: {len(train_idx)} training and {len(val_idx)} validation images -> {out}")


def train_root(spec: RootSpec, holdout: Path, out: Path, checkpoints: Path, device: str, log: Log = _log) -> None:
    """A seed's root supernet, shared by every metric: initialised from the seed, then warmed up."""
    import torch

    from fewshot_core.train import resolve_device, train

    d, train_idx, _ = _load_data(spec.data, holdout, spec.seed)
    shape = _shape(spec.supernet, spec.data, d.num_classes)
    torch.manual_seed(spec.seed)
    net = _supernet(shape)
    checkpoint = checkpoints / "root.ckpt"
    if spec.warmup is not None:
        train(net, d, train_idx, spec.warmup, spec.seed, checkpoint=checkpoint, device=resolve_device(device),
              label=f"root warm-up, seed {spec.seed}")
        net.cpu()
    artifacts.save_weights(out, shape, {"r": net.state_dict()}, {"r": net.mask}, provenance(
        "root", seed=spec.seed, spec=digest(spec), inputs=artifacts.inputs_record({"holdout": holdout})))
    checkpoint.unlink(missing_ok=True)
    epochs = 0 if spec.warmup is None else spec.warmup.epochs
    log(f"root supernet, seed {spec.seed}: {sum(p.numel() for p in net.parameters())} parameters, "
        f"{epochs} warm-up epochs -> {out}")


# ----------------------------------------------------------------------------- per tree and level


def _scoring_batches(m: MetricSettings, seed: int, d, train_idx: np.ndarray, device):
    """A metric's batches: drawn from the training part by the seed, the same for every level."""
    import torch

    from fewshot_core import data
    from fewshot_core.metrics import Batch

    need = m.batch_size * m.batches
    if need > len(train_idx):
        raise DataError(f"metrics.{m.name}: {m.batches} batches of {m.batch_size} need {need} images; "
                        f"the training part has {len(train_idx)}")
    g = torch.Generator().manual_seed(seed)
    pick = torch.as_tensor(train_idx)[torch.randperm(len(train_idx), generator=g)[:need]]
    x = data.normalize(d.train_x[pick], d).to(device)
    y = d.train_y[pick].to(device)
    return [Batch(x[i : i + m.batch_size], y[i : i + m.batch_size]) for i in range(0, need, m.batch_size)]


def score_edges(spec: ScoreSpec, holdout: Path, weights: Path, previous: list[Path], out: Path, device: str,
                log: Log = _log) -> None:
    """Score every edge to consider at every node of one level; one row per (node, edge, operation).

    A combined scorer values each edge with every component, then takes the weighted mean of their
    similarity matrices, each divided by its largest absolute off-diagonal entry over the node's edges
    (:func:`fewshot_core.metrics.combine`); its rows carry no value, only the similarity.
    """
    import torch

    from fewshot_core import metrics
    from fewshot_core.train import resolve_device

    scorer, kind = spec.scorer, spec.scorer.kind
    for part in scorer.parts:
        if part.function is not None:
            metrics.register_user(part.name, part.function, part.kind)
    d, train_idx, _ = _load_data(spec.data, holdout, spec.seed)
    expected = (provenance("nodes", metric=spec.metric, seed=spec.seed, level=spec.level) if spec.own_weights
                else provenance("root", seed=spec.seed))
    w = _load_nodes(weights, expected, _shape(spec.supernet, spec.data, d.num_classes))
    dev = resolve_device(device)
    net = _supernet(w["supernet"]).to(dev)
    batches = {p.name: _scoring_batches(p, spec.seed, d, train_idx, dev) for p in scorer.parts}
    records = artifacts.read_tree_splits(previous, spec.metric, spec.seed)
    rows = []
    for node, (mask, done) in node_masks(spec.tree.factors, spec.level, records).items():
        state = w["nodes"].get(node if spec.own_weights else "r")
        if state is None:
            raise ArtifactError(f"{weights}: no weights for node {node}; {artifacts.REMEDY}")
        net.load_state_dict(state)
        net.mask = mask
        draws = int(node_rng(spec.seed, node, "metric").integers(2**31))  # what the metric draws at random
        torch.manual_seed(draws)  # and what a metric of the user's draws from torch's own generator
        edges = edges_to_score(spec.tree, kind, mask, done, spec.level, spec.seed, node)
        found = {}  # edge -> (its operations, per part: (values, parent value, similarity, seconds))
        for edge in edges:
            t0 = time.perf_counter()
            ops = edge_similarity_ops(mask, edge)
            parts = []
            for p in scorer.parts:
                if p.kind == "none":
                    parts.append(([None] * len(ops), None, np.zeros((len(ops), len(ops))), [0.0] * len(ops)))
                    continue
                vals, parent = metrics.evaluate_split(p.name, net, edge, batches[p.name], p.settings,
                                                      where=f"node {node} edge {edge}", seed=draws)
                parts.append(([float(v.value) if p.kind == "scalar" else None for v in vals], parent,
                              metrics.similarity(p.kind, [v.value for v in vals], parent), [v.seconds for v in vals]))
            found[edge] = (ops, parts)
            log(f"{spec.metric} seed {spec.seed} node {node} edge {edge}: {time.perf_counter() - t0:.2f}s")
        combined = (metrics.combine([[found[e][1][i][2] for e in edges] for i in range(len(scorer.parts))],
                                    scorer.weights) if scorer.combined else None)
        for k, edge in enumerate(edges):
            ops, parts = found[edge]
            values, parent, sim, _ = parts[0] if not scorer.combined else ([None] * len(ops), None, combined[k], None)
            seconds = [sum(p[3][i] for p in parts) for i in range(len(ops))]
            rows += [dict(metric=spec.metric, seed=spec.seed, node=node, depth=spec.level, edge=edge, op=op,
                          value=values[i], parent_value=parent, similarity=sim[i].tolist(), seconds=seconds[i])
                     for i, op in enumerate(ops)]
    artifacts.write_table(pd.DataFrame(rows, columns=SCORE_COLUMNS), out, provenance(
        "scores", metric=spec.metric, seed=spec.seed, level=spec.level, spec=digest(spec),
        inputs=artifacts.inputs_record({"holdout": holdout, "weights": weights, "previous": previous})))


def split_nodes(spec: SplitSpec, scores: Path, previous: list[Path], out: Path, log: Log = _log) -> None:
    """Each node's edge and operation groups, by min-cut over its level's scores."""
    table = artifacts.read_table(scores, provenance("scores", metric=spec.metric, seed=spec.seed, level=spec.level),
                                 columns=SCORE_COLUMNS)
    records = split_level(table, spec.metric, spec.kind, spec.seed, spec.level, spec.tree, spec.balanced,
                          artifacts.read_tree_splits(previous, spec.metric, spec.seed))
    artifacts.write_splits(records, out, provenance(
        "splits", metric=spec.metric, seed=spec.seed, level=spec.level, spec=digest(spec),
        inputs=artifacts.inputs_record({"scores": scores, "previous": previous})))
    for r in records:
        log(f"{r.metric} seed {r.seed} node {r.node}: edge {r.edge_name} -> {r.groups} (cut {r.cut:.4g})")


def train_children(spec: ChildrenSpec, holdout: Path, parent_weights: Path, splits: list[Path], out: Path,
                   checkpoints: Path, device: str, log: Log = _log) -> None:
    """The nodes of one level, each starting from its parent's weights and warmed up on its own mask."""
    from fewshot_core.train import resolve_device, train

    d, train_idx, _ = _load_data(spec.data, holdout, spec.seed)
    parent_level = spec.level - 1
    expected = (provenance("root", seed=spec.seed) if parent_level == 0
                else provenance("nodes", metric=spec.metric, seed=spec.seed, level=parent_level))
    parents = _load_nodes(parent_weights, expected, _shape(spec.supernet, spec.data, d.num_classes))
    records = artifacts.read_tree_splits(splits, spec.metric, spec.seed)
    dev = resolve_device(device)
    states, masks, used = {}, {}, []
    for node, (mask, _) in node_masks(spec.factors, spec.level, records).items():
        parent = parents["nodes"].get(node[:-1])
        if parent is None:
            raise ArtifactError(f"{parent_weights}: no weights for node {node[:-1]}; {artifacts.REMEDY}")
        net = _supernet(parents["supernet"], parent, mask)
        ckpt = checkpoints / f"warmup_{node}.ckpt"
        seed = int(node_rng(spec.seed, node, "warmup").integers(2**31))
        train(net, d, train_idx, spec.warmup, seed, checkpoint=ckpt, device=dev,
              label=f"{spec.metric} seed {spec.seed} warm-up {node}")
        states[node], masks[node] = net.cpu().state_dict(), mask
        used.append(ckpt)
    artifacts.save_weights(out, parents["supernet"], states, masks, provenance(
        "nodes", metric=spec.metric, seed=spec.seed, level=spec.level, spec=digest(spec),
        inputs=artifacts.inputs_record({"holdout": holdout, "parent_weights": parent_weights, "splits": splits})))
    for ckpt in used:
        ckpt.unlink(missing_ok=True)
    log(f"{spec.metric} seed {spec.seed}: {len(states)} nodes of level {spec.level} warmed up -> {out}")


def train_leaves(spec: LeavesSpec, holdout: Path, splits: list[Path], out_table: Path, out_weights: Path,
                 checkpoints: Path, device: str, log: Log = _log) -> None:
    """Some leaves of one tree, each trained from scratch on its mask, then its architectures evaluated."""
    import torch

    from fewshot_core.train import evaluate_architectures, resolve_device, sample_architectures, train, training_steps

    d, train_idx, val_idx = _load_data(spec.data, holdout, spec.seed)
    masks = node_masks(spec.factors, len(spec.factors), artifacts.read_tree_splits(splits, spec.metric, spec.seed))
    dev = resolve_device(device)
    shape = _shape(spec.supernet, spec.data, d.num_classes)
    tables, states, used = [], {}, []
    for leaf in spec.leaves:
        if leaf not in masks:
            raise ArtifactError(f"{leaf} is not a leaf of this tree; its leaves: {sorted(masks)}")
        init_seed = int(node_rng(spec.seed, leaf, "init").integers(2**31))
        torch.manual_seed(init_seed)
        net = _supernet(shape, mask=masks[leaf][0])
        ckpt = checkpoints / f"leaf_{leaf}.ckpt"
        train(net, d, train_idx, spec.train, init_seed, checkpoint=ckpt, device=dev,
              label=f"{spec.metric} seed {spec.seed} leaf {leaf}")
        archs = sample_architectures(masks[leaf][0], spec.evaluation.archs, init_seed)
        table = evaluate_architectures(net, d, train_idx, val_idx, archs, spec.evaluation, init_seed, device=dev)
        tables.append(table.assign(metric=spec.metric, seed=spec.seed, leaf=leaf))
        states[leaf] = net.cpu().state_dict()
        used.append(ckpt)
    out = pd.concat(tables, ignore_index=True)[LEAF_COLUMNS]
    record = dict(metric=spec.metric, seed=spec.seed, leaves=list(spec.leaves), spec=digest(spec),
                  steps=len(spec.leaves) * training_steps(spec.train, len(train_idx)),
                  inputs=artifacts.inputs_record({"holdout": holdout, "splits": splits}))
    artifacts.save_weights(out_weights, shape, states, {leaf: masks[leaf][0] for leaf in spec.leaves},
                           provenance("leaf_weights", **record))
    artifacts.write_table(out, out_table, provenance("leaves", **record))
    for ckpt in used:
        ckpt.unlink(missing_ok=True)
    best = out.loc[out.val_accuracy.idxmax()]
    log(f"best of {len(out)} architectures: {best.arch} in {best.leaf}: {best.val_accuracy:.4f}")


# ----------------------------------------------------------------------------- the ranking study


STUDY_COLUMNS = ["metric", "seed", "arch", "leaf", "val_accuracy", "val_loss"]
STANDALONE_COLUMNS = ["arch", "val_accuracy", "val_loss", "epochs"]


def sample_study_set(spec: StudySetSpec, out: Path, log: Log = _log) -> None:
    """The study's architectures: a seeded sample of those whose cell connects input to output."""
    from fewshot_core.ranking import study_set

    archs, excluded = study_set(spec.archs, spec.seed)
    artifacts.write_json({"provenance": provenance("study_set", spec=digest(spec), seed=spec.seed),
                          "archs": archs, "excluded": excluded}, out)
    log(f"{len(archs)} study architectures; {excluded} of all 15625 are cut off (no path from input to output) "
        "and left out")


def _study_set(path: Path, spec_seed: int) -> list[str]:
    obj = artifacts.read_json(path, {"kind": "study_set", "seed": spec_seed})
    archs = obj.get("archs")
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise ArtifactError(f"{path}: 'archs' must be a list of architecture strings; {artifacts.REMEDY}")
    return archs


def train_standalone(spec: StandaloneSpec, study_set: Path, holdout: Path, out: Path, checkpoints: Path, device: str,
                     log: Log = _log) -> None:
    """Some study architectures trained from scratch as standalone networks and evaluated: the ground truth."""
    import torch

    from fewshot_core.space import standalone
    from fewshot_core.train import resolve_device, train, validate, validation_images

    d, train_idx, val_idx = _load_data(spec.data, holdout, spec.seed)
    archs = _study_set(study_set, spec.seed)[spec.chunk * spec.archs_per_job : (spec.chunk + 1) * spec.archs_per_job]
    dev = resolve_device(device)
    x_val, y_val = validation_images(d, val_idx, dev)
    rows, used = [], []
    for arch in archs:
        init_seed = int(node_rng(spec.seed, arch, "standalone").integers(2**31))
        torch.manual_seed(init_seed)
        net = standalone(arch, spec.supernet.C, spec.supernet.N, d.num_classes, spec.data.input_size)
        ckpt = checkpoints / f"standalone_{digest(arch)}.ckpt"
        train(net, d, train_idx, spec.train, init_seed, checkpoint=ckpt, device=dev, label=f"standalone {arch}")
        accuracy, loss = validate(net, x_val, y_val, spec.batch_size)
        rows.append({"arch": arch, "val_accuracy": accuracy, "val_loss": loss, "epochs": spec.train.epochs})
        used.append(ckpt)
        log(f"{arch}: validation accuracy {accuracy:.4f}")
    artifacts.write_table(pd.DataFrame(rows, columns=STANDALONE_COLUMNS), out, provenance(
        "standalone", seed=spec.seed, chunk=spec.chunk, spec=digest(spec),
        inputs=artifacts.inputs_record({"study_set": study_set, "holdout": holdout})))
    for ckpt in used:
        ckpt.unlink(missing_ok=True)


def train_oneshot(spec: OneShotSpec, holdout: Path, out: Path, checkpoints: Path, device: str, log: Log = _log) -> None:
    """The one-shot baseline: the whole supernet trained from scratch for as many steps as a tree's leaves."""
    import torch

    from fewshot_core.train import resolve_device, train, training_steps

    d, train_idx, _ = _load_data(spec.data, holdout, spec.seed)
    shape = _shape(spec.supernet, spec.data, d.num_classes)
    init_seed = int(node_rng(spec.seed, "r", "oneshot").integers(2**31))
    torch.manual_seed(init_seed)
    net = _supernet(shape)
    checkpoint = checkpoints / "oneshot.ckpt"
    train(net, d, train_idx, spec.train, init_seed, checkpoint=checkpoint, device=resolve_device(device),
          label=f"one-shot supernet, seed {spec.seed}")
    steps = training_steps(spec.train, len(train_idx))
    artifacts.save_weights(out, shape, {"r": net.cpu().state_dict()}, {"r": net.mask}, provenance(
        "oneshot", seed=spec.seed, spec=digest(spec), steps=steps,
        inputs=artifacts.inputs_record({"holdout": holdout})))
    checkpoint.unlink(missing_ok=True)
    log(f"one-shot supernet, seed {spec.seed}: {steps} steps ({spec.train.epochs} epochs) -> {out}")


def evaluate_study(spec: StudyEvalSpec, study_set: Path, holdout: Path, splits: list[Path], leaf_weights: list[Path],
                   oneshot: Path, out: Path, device: str, log: Log = _log) -> None:
    """Every study architecture with the weights of the leaf that holds it in each of the seed's trees
    (``splits`` and ``leaf_weights`` in metric order, levels and chunks within), and with the one-shot
    supernet; BN statistics re-estimated for each architecture, as the leaves' own evaluation does."""
    from fewshot_core.nb201 import arch_to_mask
    from fewshot_core.splitting import leaf_of
    from fewshot_core.train import evaluate_architectures, resolve_device

    d, train_idx, val_idx = _load_data(spec.data, holdout, spec.seed)
    archs = _study_set(study_set, spec.study_seed)
    dev = resolve_device(device)
    levels = len(spec.factors)
    tables = []
    for i, metric in enumerate(spec.metrics):
        records = artifacts.read_tree_splits(splits[i * levels : (i + 1) * levels], metric, spec.seed)
        leaves = {leaf: mask for leaf, (mask, _) in node_masks(spec.factors, levels, records).items()}
        states, shape = {}, {}
        for path in leaf_weights[i * spec.chunks : (i + 1) * spec.chunks]:
            w = artifacts.load_weights(path, {"kind": "leaf_weights", "metric": metric, "seed": spec.seed})
            states.update(w["nodes"])
            shape = w["supernet"]
        by_leaf: dict[str, list[str]] = {}
        for arch in archs:
            by_leaf.setdefault(leaf_of(arch_to_mask(arch), leaves), []).append(arch)
        for leaf, held in by_leaf.items():
            if leaf not in states:
                raise ArtifactError(f"no weights for leaf {leaf} of {metric}, seed {spec.seed}; {artifacts.REMEDY}")
            net = _supernet(shape, states[leaf], leaves[leaf]).to(dev)
            seed = int(node_rng(spec.seed, leaf, "study").integers(2**31))
            table = evaluate_architectures(net, d, train_idx, val_idx, held, spec.evaluation, seed, device=dev)
            tables.append(table.assign(metric=metric, seed=spec.seed, leaf=leaf))
        log(f"{metric} seed {spec.seed}: {len(archs)} study architectures in {len(by_leaf)} leaves")
    w = artifacts.load_weights(oneshot, {"kind": "oneshot", "seed": spec.seed})
    net = _supernet(w["supernet"], w["nodes"]["r"]).to(dev)
    seed = int(node_rng(spec.seed, "r", "study").integers(2**31))
    table = evaluate_architectures(net, d, train_idx, val_idx, archs, spec.evaluation, seed, device=dev)
    tables.append(table.assign(metric=ONESHOT, seed=spec.seed, leaf="r"))
    artifacts.write_table(pd.concat(tables, ignore_index=True)[STUDY_COLUMNS], out, provenance(
        "study", seed=spec.seed, spec=digest(spec), inputs=artifacts.inputs_record(
            {"study_set": study_set, "holdout": holdout, "splits": splits, "leaf_weights": leaf_weights,
             "oneshot": oneshot})))


def rank_study(spec: RankingSpec, standalone: list[Path], studies: list[Path], out: Path, log: Log = _log) -> None:
    """Per tree and per one-shot supernet: Kendall tau, Spearman rho, top-1 regret and top-k overlap."""
    from fewshot_core.ranking import metric_intervals, ranking_table

    truth = pd.concat([artifacts.read_table(p, {"kind": "standalone", "chunk": k}, columns=STANDALONE_COLUMNS)
                       for k, p in enumerate(standalone)], ignore_index=True)
    inherited = pd.concat([artifacts.read_table(p, {"kind": "study", "seed": s}, columns=STUDY_COLUMNS)
                           for p, s in zip(studies, spec.seeds)], ignore_index=True)
    table = ranking_table(truth, inherited, spec.top_k, spec.bootstrap)
    artifacts.write_table(table, out, provenance("ranking", spec=digest(spec), inputs=artifacts.inputs_record(
        {"standalone": standalone, "studies": studies})))
    log(metric_intervals(table, spec.bootstrap).round(3).to_string(index=False))


# ----------------------------------------------------------------------------- the whole run


def _trees(spec: TreesSpec) -> list[tuple[str, int]]:
    return [(m, s) for m in spec.metrics for s in spec.seeds]


def collect_leaves(spec: TreesSpec, tables: list[Path], out: Path, log: Log = _log) -> None:
    """Every evaluated architecture of the run, in one table; ``tables`` in (metric, seed, chunk) order."""
    expected = [(m, s) for m, s in _trees(spec) for _ in range(spec.chunks)]
    if len(tables) != len(expected):
        raise ArtifactError(f"expected {len(expected)} leaf tables, got {len(tables)}")
    parts = [artifacts.read_table(p, {"kind": "leaves", "metric": m, "seed": s}, columns=LEAF_COLUMNS)
             for p, (m, s) in zip(tables, expected)]
    table = pd.concat(parts, ignore_index=True)
    artifacts.write_table(table, out, provenance("leaves_table", spec=digest(spec),
                                                 inputs=artifacts.inputs_record({"tables": tables})))
    best = table.loc[table.groupby(["metric", "seed"]).val_accuracy.idxmax()]
    log("best architecture per tree (across its leaves):")
    log(best.to_string(index=False))


def compute_split_distances(spec: TreesSpec, splits: list[Path], out_splits: Path, out_distance: Path,
                            log: Log = _log) -> None:
    """Every split of the run and every compared pair's split distance; ``splits`` in (metric, seed, level) order."""
    from fewshot_core.distance import pair_table, summarise

    expected = [(m, s, level) for m, s in _trees(spec) for level in range(spec.levels)]
    if len(splits) != len(expected):
        raise ArtifactError(f"expected {len(expected)} split files, got {len(splits)}")
    records = [r for p, (m, s, level) in zip(splits, expected) for r in artifacts.read_splits(p, m, s, level)]
    table = pd.DataFrame([{**r.to_dict(), "edge_name": r.edge_name} for r in records]).drop(columns="candidates")
    pairs = pair_table(table)
    record = dict(spec=digest(spec), inputs=artifacts.inputs_record({"splits": splits}))
    artifacts.write_table(table, out_splits, provenance("splits_table", **record))
    artifacts.write_table(pairs, out_distance, provenance("split_distance", **record))
    summary = summarise(pairs).groupby(["kind", "metric"]).distance.agg(["mean", "std", "count"]).reset_index()
    log(summary.to_string(index=False))


def read_run_tables(splits: Path, distance: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A run's split table and split-distance table, checked."""
    from fewshot_core.distance import PAIR_COLUMNS

    return (artifacts.read_table(splits, {"kind": "splits_table"}, columns=["metric", "seed", "node", "groups"]),
            artifacts.read_table(distance, {"kind": "split_distance"}, columns=PAIR_COLUMNS))


def draw_figures(splits: Path, distance: Path, out_dir: Path, log: Log = _log) -> None:
    """The paper's figures and the ones beyond it, as PNG and PDF."""
    from fewshot_core.report import draw_all

    for f in draw_all(*read_run_tables(splits, distance), out_dir):
        log(str(f))


def draw_ranking(ranking: Path, out: Path, log: Log = _log) -> None:
    """The ranking study's figure (PNG, PDF and the plotted values as CSV)."""
    from fewshot_core.ranking import RANKING_COLUMNS
    from fewshot_core.report import figure_ranking

    for f in figure_ranking(artifacts.read_table(ranking, {"kind": "ranking"}, columns=RANKING_COLUMNS),
                            out.with_suffix("")):
        log(str(f))


def summary(run_dir: Path) -> str:
    """A finished run's splits and split distances as text, and its ranking study when it has one."""
    from fewshot_core.ranking import RANKING_COLUMNS
    from fewshot_core.report import ranking_text, summary_text

    files = [run_dir / "splits.parquet", run_dir / "split_distance.parquet"]
    for f in files:
        if not f.exists():
            raise ArtifactError(f"{f} does not exist: run the workflow (snakemake splits) first")
    text = summary_text(*read_run_tables(*files))
    if (run_dir / "ranking.parquet").exists():
        ranking = artifacts.read_table(run_dir / "ranking.parquet", {"kind": "ranking"}, columns=RANKING_COLUMNS)
        text += "\n\n" + ranking_text(ranking)
    return text
