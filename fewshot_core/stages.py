"""The workflow's stages: one function per rule, a typed spec and file paths in, files out.

Each stage reads its inputs through :mod:`fewshot_core.artifacts`, which checks that every file is
what the job expects (kind, run, identity, the key the stage's own spec names for it, and its bytes),
and writes its outputs atomically with a provenance record (:func:`fewshot_core.artifacts.record`).
The command line's options are each stage's parameters (:mod:`fewshot_core.cli`). A stage imports the
science it uses inside its function: its outputs' code is what the function reaches
(:mod:`fewshot_core.dependencies`). Training stages keep their checkpoints under the run's
``checkpoints/`` folder while they run, resume one only when it was made for the same output key and
origin, and delete them once their outputs are written.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from fewshot_core import artifacts, digests
from fewshot_core.artifacts import record
from fewshot_core.columns import (
    BENCHMARK_COLUMNS,
    LEAF_COLUMNS,
    RANKING_COLUMNS,
    SCORE_COLUMNS,
    SPLIT_COLUMNS,
    STANDALONE_COLUMNS,
    STUDY_COLUMNS,
    SUMMARY_COLUMNS,
    ZERO_COST_COLUMNS,
)
from fewshot_core.errors import ArtifactError, DataError, SplitError
from fewshot_core.outputs import OUTPUTS, checkpoint, key
from fewshot_core.settings import DataSettings, MetricSettings, SupernetSettings, canonical_json
from fewshot_core.specs import (
    BenchmarkSpec,
    ChildrenSpec,
    FiguresSpec,
    HoldoutSpec,
    LeavesSpec,
    OneShotEvalSpec,
    OneShotSpec,
    PretrainSpec,
    RankingSpec,
    RootSpec,
    ScoreSpec,
    SplitSpec,
    StandaloneSpec,
    StudyEvalSpec,
    StudySetSpec,
    TreesSpec,
    ZeroCostSpec,
)

Log = Callable[[str], None]


def _log(message: str) -> None:
    print(message, flush=True)


def _expect(kind: str, spec, key: str, index: int | None = None, **identity) -> dict:
    """What the record of input ``key`` (item ``index`` of a list of files) must say: made by the spec
    whose digest ``spec.inputs`` names for it, for this run, with this identity."""
    want = spec.inputs[key] if index is None else spec.inputs[key][index]
    return artifacts.expect(OUTPUTS[kind], spec.run, want, **identity)


# ----------------------------------------------------------------------------- split files


def read_splits(path: Path, expected: dict) -> list:
    """The split records of one level of one tree (``expected`` names its metric, seed and level, and
    what else its record must say); every record must belong to that tree and level."""
    from fewshot_core.splitting import SplitRecord

    obj = artifacts.read_json(path, expected)
    metric, seed, level = expected["metric"], expected["seed"], expected["level"]
    items = obj.get("splits")
    if not isinstance(items, list) or not items:
        raise ArtifactError(f"{path}: no split records; {artifacts.REMEDY}")
    out = []
    for item in items:
        try:
            rec = SplitRecord.from_dict(item)
        except (SplitError, ValueError, TypeError, KeyError, AttributeError) as err:
            raise ArtifactError(f"{path}: {err}; {artifacts.REMEDY}") from err
        found = {"metric": rec.metric, "seed": rec.seed, "depth": rec.depth}
        want = {"metric": metric, "seed": seed, "depth": level}
        if found != want:
            raise ArtifactError(f"{path}: the split of node {rec.node} says {found}, expected {want}: it belongs "
                                f"to another tree; {artifacts.REMEDY}")
        out.append(rec)
    return out


def read_tree_splits(paths: list[Path], expected: list[dict]) -> list:
    """Every level's split records of one tree, ``paths`` and ``expected`` in level order."""
    if len(paths) != len(expected):
        raise ArtifactError(f"expected {len(expected)} split files, one per level above, got {len(paths)}")
    return [r for p, want in zip(paths, expected) for r in read_splits(p, want)]


def _tree_splits(spec, key: str, paths: list[Path], metric: str, seed: int, first: int = 0) -> list:
    """The split records of one tree's levels read from ``paths`` (inputs ``spec.inputs[key][first:]``)."""
    return read_tree_splits(paths, [_expect("splits", spec, key, first + i, metric=metric, seed=seed, level=i)
                                              for i in range(len(paths))])


def _load_data(spec: DataSettings, holdout: Path, expected: dict):
    """The dataset and the seed's checked train/validation indices."""
    from fewshot_core import data

    d = data.load(spec.name, root=spec.root, input_size=spec.input_size)
    train_idx, val_idx = artifacts.read_holdout(holdout, expected, len(d.train_y))
    changed = digests.changed_files((artifacts.read_record(holdout, "json") or {}).get("data_files") or {})
    if changed:
        raise DataError(f"{changed[0]} has changed since {holdout} was made from it: rerun the workflow, which "
                        "remakes everything the data feeds")
    return d, train_idx, val_idx


def _holdout(spec, holdout: Path, seed: int | None = None):
    """:func:`_load_data` for a stage whose ``inputs`` name the holdout of ``seed`` (its own by default)."""
    return _load_data(spec.data, holdout, _expect("holdout", spec, "holdout", seed=spec.seed if seed is None else seed))


def _checkpoints(kind: str, spec, folder: Path, name: str, **fields) -> artifacts.Checkpoints:
    """Where a training stage keeps the checkpoint ``name`` of a run, resumed only for its output of ``kind``
    made by this spec and code (its key)."""
    return artifacts.Checkpoints(checkpoint(folder, name, **fields), key(OUTPUTS[kind], canonical_json(spec)))


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
    from fewshot_core.data_files import data_files

    d = data.load(spec.data.name, root=spec.data.root, input_size=spec.data.input_size)
    files = data_files(spec.data.name, spec.data.root)
    if digests.of_files(files) != spec.images:
        raise DataError(f"the files of {spec.data.name} ({', '.join(map(str, files))}) changed since the workflow "
                        "started: rerun it, which remakes everything made from them")
    train_idx, val_idx = data.split_indices(len(d.train_y), spec.data.val_fraction, spec.seed, spec.data.train_images)
    artifacts.write_holdout(out, train_idx, val_idx, record(
        OUTPUTS["holdout"], spec, n_images=len(d.train_y), data_files=digests.of_data_files(files)))
    log(f"{d.name}: {len(train_idx)} training and {len(val_idx)} validation images of {len(d.train_y)} -> {out}")


def train_root(spec: RootSpec, holdout: Path, out: Path, checkpoints: Path, device: str, log: Log = _log) -> None:
    """A seed's root supernet, shared by every metric: initialised from the seed, then warmed up."""
    import torch

    from fewshot_core.device import resolve
    from fewshot_core.train import train
    from fewshot_core.tree import ROOT

    d, train_idx, _ = _holdout(spec, holdout)
    shape = _shape(spec.supernet, spec.data, d.num_classes)
    torch.manual_seed(spec.seed)
    net = _supernet(shape)
    ckpt = _checkpoints("root", spec, checkpoints, "root", seed=spec.seed)
    dev = resolve(device) if spec.warmup is not None else torch.device("cpu")  # initialised on the CPU
    if spec.warmup is not None:
        train(net, d, train_idx, spec.warmup, spec.seed, checkpoint=ckpt, device=dev,
              label=f"root warm-up, seed {spec.seed}")
        net.cpu()
    artifacts.save_weights(out, shape, {ROOT: net.state_dict()}, {ROOT: net.mask}, record(
        OUTPUTS["root"], spec, device=str(dev)))
    ckpt.path.unlink(missing_ok=True)
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
    from fewshot_core.device import resolve
    from fewshot_core.splitting import edge_similarity_ops, edges_to_score, node_masks
    from fewshot_core.tree import ROOT, node_seed

    scorer, kind = spec.scorer, spec.scorer.kind
    for part in scorer.parts:
        if part.function is not None:
            metrics.register_user(part.name, part.function, part.kind)
    d, train_idx, _ = _holdout(spec, holdout)
    expected = (_expect("nodes", spec, "weights", metric=spec.metric, seed=spec.seed, level=spec.level)
                if spec.own_weights else _expect("root", spec, "weights", seed=spec.seed))
    w = _load_nodes(weights, expected, _shape(spec.supernet, spec.data, d.num_classes))
    dev = resolve(device)
    net = _supernet(w["supernet"]).to(dev)
    batches = {p.name: _scoring_batches(p, spec.seed, d, train_idx, dev) for p in scorer.parts}
    records = _tree_splits(spec, "previous", previous, spec.metric, spec.seed)
    rows = []
    for node, (mask, done) in node_masks(spec.tree.factors, spec.level, records).items():
        state = w["nodes"].get(node if spec.own_weights else ROOT)
        if state is None:
            raise ArtifactError(f"{weights}: no weights for node {node}; {artifacts.REMEDY}")
        net.load_state_dict(state)
        net.mask = mask
        draws = node_seed(spec.seed, node, "metric")  # what the metric draws at random
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
                                                      where=f"node {node} edge {edge}", seed=draws, say=log)
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
    artifacts.write_table(pd.DataFrame(rows, columns=list(SCORE_COLUMNS)), out, record(
        OUTPUTS["scores"], spec, device=str(dev)))


def split_nodes(spec: SplitSpec, scores: Path, previous: list[Path], out: Path, log: Log = _log) -> None:
    """Each node's edge and operation groups, by min-cut over its level's scores."""
    from fewshot_core.splitting import split_level

    table = artifacts.read_table(scores, _expect("scores", spec, "scores", metric=spec.metric, seed=spec.seed,
                                                 level=spec.level), columns=SCORE_COLUMNS)
    records = split_level(table, spec.metric, spec.kind, spec.seed, spec.level, spec.tree, spec.balanced,
                          _tree_splits(spec, "previous", previous, spec.metric, spec.seed))
    artifacts.write_splits(records, out, record(
        OUTPUTS["splits"], spec))
    for r in records:
        log(f"{r.metric} seed {r.seed} node {r.node}: edge {r.edge_name} -> {r.groups} (cut {r.cut:.4g})")


def train_children(spec: ChildrenSpec, holdout: Path, parent_weights: Path, splits: list[Path], out: Path,
                   checkpoints: Path, device: str, log: Log = _log) -> None:
    """The nodes of one level, each starting from its parent's weights and warmed up on its own mask."""
    from fewshot_core.device import resolve
    from fewshot_core.splitting import node_masks
    from fewshot_core.train import train
    from fewshot_core.tree import node_seed, parent_of

    d, train_idx, _ = _holdout(spec, holdout)
    parent_level = spec.level - 1
    expected = (_expect("root", spec, "parent_weights", seed=spec.seed) if parent_level == 0
                else _expect("nodes", spec, "parent_weights", metric=spec.metric, seed=spec.seed, level=parent_level))
    parents = _load_nodes(parent_weights, expected, _shape(spec.supernet, spec.data, d.num_classes))
    records = _tree_splits(spec, "splits", splits, spec.metric, spec.seed)
    dev = resolve(device)
    states, masks, used = {}, {}, []
    for node, (mask, _) in node_masks(spec.factors, spec.level, records).items():
        parent = parents["nodes"].get(parent_of(node))
        if parent is None:
            raise ArtifactError(f"{parent_weights}: no weights for node {parent_of(node)}; {artifacts.REMEDY}")
        net = _supernet(parents["supernet"], parent, mask)
        ckpt = _checkpoints("nodes", spec, checkpoints, "warmup", metric=spec.metric, seed=spec.seed, node=node)
        train(net, d, train_idx, spec.warmup, node_seed(spec.seed, node, "warmup"), checkpoint=ckpt, device=dev,
              label=f"{spec.metric} seed {spec.seed} warm-up {node}")
        states[node], masks[node] = net.cpu().state_dict(), mask
        used.append(ckpt)
    artifacts.save_weights(out, parents["supernet"], states, masks, record(
        OUTPUTS["nodes"], spec, device=str(dev)))
    for ckpt in used:
        ckpt.path.unlink(missing_ok=True)
    log(f"{spec.metric} seed {spec.seed}: {len(states)} nodes of level {spec.level} warmed up -> {out}")


def _start_weights(spec, pretrained: Path | None, shape: dict) -> dict | None:
    """The one-shot supernet a job starts from (``spec.start`` pretrained), checked; None for an init."""
    from fewshot_core.tree import ROOT

    if spec.start != "pretrained":
        return None
    if pretrained is None:
        raise ArtifactError("the transfer protocol starts from the seed's pretrained one-shot supernet: give "
                            "--pretrained")
    return _load_nodes(pretrained, _expect("pretrained", spec, "pretrained", seed=spec.seed), shape)["nodes"][ROOT]


def train_leaves(spec: LeavesSpec, holdout: Path, splits: list[Path], out_table: Path, out_weights: Path,
                 checkpoints: Path, device: str, pretrained: Path | None = None, log: Log = _log) -> None:
    """Some leaves of one tree, each starting from the pretrained one-shot supernet restricted to its mask
    (or from a fresh initialisation), trained on its mask, then its architectures evaluated."""
    import torch

    from fewshot_core.device import resolve
    from fewshot_core.splitting import node_masks
    from fewshot_core.train import (
        evaluate_architectures,
        sample_architectures,
        state_digest,
        train,
        training_steps,
        validation_images,
    )
    from fewshot_core.tree import node_seed

    d, train_idx, val_idx = _holdout(spec, holdout)
    masks = node_masks(spec.factors, len(spec.factors), _tree_splits(spec, "splits", splits, spec.metric, spec.seed))
    dev = resolve(device)
    shape = _shape(spec.supernet, spec.data, d.num_classes)
    start = _start_weights(spec, pretrained, shape)
    images = validation_images(d, val_idx, dev)
    tables, states, starts, used = [], {}, {}, []
    for leaf in spec.leaves:
        if leaf not in masks:
            raise ArtifactError(f"{leaf} is not a leaf of this tree; its leaves: {sorted(masks)}")
        init_seed = node_seed(spec.seed, leaf, "init")
        torch.manual_seed(init_seed)
        net = _supernet(shape, start, masks[leaf][0])
        starts[leaf] = state_digest(net)
        ckpt = _checkpoints("leaf_weights", spec, checkpoints, "leaf", metric=spec.metric, seed=spec.seed, node=leaf)
        train(net, d, train_idx, spec.train, init_seed, checkpoint=ckpt, device=dev,
              label=f"{spec.metric} seed {spec.seed} leaf {leaf}")
        archs = sample_architectures(masks[leaf][0], spec.evaluation.archs, init_seed)
        table = evaluate_architectures(net, d, train_idx, images, archs, spec.evaluation, init_seed, device=dev)
        tables.append(table.assign(metric=spec.metric, seed=spec.seed, leaf=leaf))
        states[leaf] = net.cpu().state_dict()
        used.append(ckpt)
    out = pd.concat(tables, ignore_index=True)[list(LEAF_COLUMNS)]
    extra = dict(steps=len(spec.leaves) * training_steps(spec.train, len(train_idx)), start=spec.start, device=str(dev),
                 start_weights=starts)
    artifacts.save_weights(out_weights, shape, states, {leaf: masks[leaf][0] for leaf in spec.leaves},
                           record(OUTPUTS["leaf_weights"], spec, **extra))
    artifacts.write_table(out, out_table, record(OUTPUTS["leaves"], spec, **extra))
    for ckpt in used:
        ckpt.path.unlink(missing_ok=True)
    best = out.loc[out.val_accuracy.idxmax()]
    log(f"best of {len(out)} architectures: {best.arch} in {best.leaf}: {best.val_accuracy:.4f}")


# ----------------------------------------------------------------------------- the ranking study


def sample_study_set(spec: StudySetSpec, out: Path, log: Log = _log) -> None:
    """The study's architectures: a seeded sample of those whose cell connects input to output."""
    from fewshot_core.nb201 import study_set

    archs, excluded = study_set(spec.archs, spec.seed)
    artifacts.write_json({"provenance": record(OUTPUTS["study_set"], spec), "archs": archs, "excluded": excluded}, out)
    log(f"{len(archs)} study architectures; {excluded} of all 15625 are cut off (no path from input to output) "
        "and left out")


def _study_set(path: Path, expected: dict) -> list[str]:
    """The study's architectures: distinct, each a valid architecture string."""
    from fewshot_core.errors import MaskError
    from fewshot_core.nb201 import format_arch, parse_arch

    obj = artifacts.read_json(path, expected)
    archs = obj.get("archs")
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise ArtifactError(f"{path}: 'archs' must be a list of architecture strings; {artifacts.REMEDY}")
    for a in archs:
        try:
            if format_arch(parse_arch(a)) != a:
                raise MaskError(f"{a!r} is not written as the benchmark writes it")
        except MaskError as err:
            raise ArtifactError(f"{path}: {err}; {artifacts.REMEDY}") from err
    counts = Counter(archs)
    repeated = sorted(a for a, n in counts.items() if n > 1)
    if repeated:
        raise ArtifactError(f"{path}: the architecture {repeated[0]} is listed {counts[repeated[0]]} times (a "
                            f"study set holds each once); {artifacts.REMEDY}")
    return archs


def _chunk(archs: list[str], chunk: int, per_job: int) -> list[str]:
    return archs[chunk * per_job : (chunk + 1) * per_job]


def _evaluated_on(d, images) -> dict:
    """What a study table's accuracies were measured on: the test part, named by a digest of its images."""
    return {"part": "test", "images": len(images[1]),
            "digest": digests.short([d.test_x.numpy().tobytes(), d.test_y.numpy().tobytes()])}


def standalone_result(spec: StandaloneSpec, arch: str, d, train_idx: np.ndarray, images, device,
                      ckpt: artifacts.Checkpoints | None = None) -> tuple[float, float]:
    """One study architecture trained from scratch with the spec's ground-truth seed: its test accuracy and
    loss (``images``: the test part, normalised, on ``device``). The workflow's ground truth, and what
    ``benchmarks/ground_truth.py`` measures alone."""
    import torch

    from fewshot_core.space import standalone
    from fewshot_core.train import train, validate
    from fewshot_core.tree import node_seed

    init_seed = node_seed(spec.seed, arch, f"standalone{spec.gt}")
    torch.manual_seed(init_seed)
    net = standalone(arch, spec.supernet.C, spec.supernet.N, d.num_classes, spec.data.input_size)
    train(net, d, train_idx, spec.train, init_seed, checkpoint=ckpt, device=device,
          label=f"standalone {arch}, ground-truth seed {spec.gt}")
    return validate(net, *images, spec.batch_size)


def train_standalone(spec: StandaloneSpec, study_set: Path, holdout: Path, out: Path, checkpoints: Path, device: str,
                     log: Log = _log) -> None:
    """Some study architectures trained from scratch as standalone networks with one ground-truth seed, on the
    study seed's training part, and evaluated on the test part: the ground truth."""
    from fewshot_core.device import resolve
    from fewshot_core.settings import digest
    from fewshot_core.train import test_images

    d, train_idx, _ = _holdout(spec, holdout)
    archs = _chunk(_study_set(study_set, _expect("study_set", spec, "study_set")), spec.chunk, spec.archs_per_job)
    dev = resolve(device)
    images = test_images(d, dev)
    rows, used = [], []
    for arch in archs:
        ckpt = _checkpoints("standalone", spec, checkpoints, "standalone", gt=spec.gt, arch=digest(arch))
        accuracy, loss = standalone_result(spec, arch, d, train_idx, images, dev, ckpt)
        rows.append({"arch": arch, "gt": spec.gt, "test_accuracy": accuracy, "test_loss": loss,
                     "epochs": spec.train.epochs})
        used.append(ckpt)
        log(f"{arch}: test accuracy {accuracy:.4f}")
    artifacts.write_table(pd.DataFrame(rows, columns=list(STANDALONE_COLUMNS)), out, record(
        OUTPUTS["standalone"], spec, device=str(dev), evaluated_on=_evaluated_on(d, images)))
    for ckpt in used:
        ckpt.path.unlink(missing_ok=True)


def pretrain_oneshot(spec: PretrainSpec, holdout: Path, out: Path, checkpoints: Path, device: str,
                     log: Log = _log) -> None:
    """A seed's one-shot supernet trained from its initialisation: where the transfer protocol's leaves and
    one-shot baselines start (Few-shot NAS's weight transfer)."""
    import torch

    from fewshot_core.device import resolve
    from fewshot_core.train import train, training_steps
    from fewshot_core.tree import ROOT, node_seed

    d, train_idx, _ = _holdout(spec, holdout)
    shape = _shape(spec.supernet, spec.data, d.num_classes)
    torch.manual_seed(node_seed(spec.seed, ROOT, "pretrain"))
    net = _supernet(shape)
    ckpt = _checkpoints("pretrained", spec, checkpoints, "pretrain", seed=spec.seed)
    dev = resolve(device)
    train(net, d, train_idx, spec.train, node_seed(spec.seed, ROOT, "pretrain"), checkpoint=ckpt,
          device=dev, label=f"pretrained one-shot supernet, seed {spec.seed}")
    steps = training_steps(spec.train, len(train_idx))
    artifacts.save_weights(out, shape, {ROOT: net.cpu().state_dict()}, {ROOT: net.mask}, record(
        OUTPUTS["pretrained"], spec, steps=steps, device=str(dev)))
    ckpt.path.unlink(missing_ok=True)
    log(f"pretrained one-shot supernet, seed {spec.seed}: {steps} steps ({spec.train.epochs} epochs) -> {out}")


def train_oneshot(spec: OneShotSpec, holdout: Path, out: Path, checkpoints: Path, device: str,
                  pretrained: Path | None = None, log: Log = _log) -> None:
    """A one-shot baseline: the whole supernet, from where the leaves start, trained as many steps as
    ``budget`` leaves (all the leaves of a tree, or one)."""
    import torch

    from fewshot_core.device import resolve
    from fewshot_core.labels import oneshot_name
    from fewshot_core.train import state_digest, train, training_steps
    from fewshot_core.tree import ROOT, node_seed

    d, train_idx, _ = _holdout(spec, holdout)
    shape = _shape(spec.supernet, spec.data, d.num_classes)
    init_seed = node_seed(spec.seed, ROOT, f"oneshot_{spec.budget}")
    torch.manual_seed(init_seed)
    net = _supernet(shape, _start_weights(spec, pretrained, shape))
    start = state_digest(net)
    ckpt = _checkpoints("oneshot", spec, checkpoints, "oneshot", seed=spec.seed, budget=spec.budget)
    dev = resolve(device)
    train(net, d, train_idx, spec.train, init_seed, checkpoint=ckpt, device=dev,
          label=f"{oneshot_name(spec.budget)}, seed {spec.seed}")
    steps = training_steps(spec.train, len(train_idx))
    artifacts.save_weights(out, shape, {ROOT: net.cpu().state_dict()}, {ROOT: net.mask}, record(
        OUTPUTS["oneshot"], spec, steps=steps, start=spec.start, start_weights=start, device=str(dev)))
    ckpt.path.unlink(missing_ok=True)
    log(f"{oneshot_name(spec.budget)}, seed {spec.seed}: {steps} more steps from {spec.start} -> {out}")


def read_benchmark(spec: BenchmarkSpec, study_set: Path, out: Path, log: Log = _log) -> None:
    """The study architectures' accuracies in NAS-Bench-201, one row per trial, read through nats_bench from
    the archive the configuration names (docs/design.md §8)."""
    from fewshot_core import benchmark

    g = spec.ground_truth
    archs = _study_set(study_set, _expect("study_set", spec, "study_set"))
    table = benchmark.read(g.path, archs, g.dataset, g.hp, g.accuracy)
    artifacts.write_table(table, out, record(
        OUTPUTS["benchmark"], spec,
        data_files=digests.of_data_files(benchmark.files(g.path, table["index"].tolist()))))
    log(f"{len(archs)} architectures, {len(table)} trials: {g.dataset}, {g.hp} epochs, {g.accuracy} accuracy")


def evaluate_study(spec: StudyEvalSpec, study_set: Path, holdout: Path, splits: list[Path], leaf_weights: list[Path],
                   out: Path, device: str, log: Log = _log) -> None:
    """Some study architectures with the weights of the leaf that holds each in one tree, BN statistics
    re-estimated for it on the tree's training images, evaluated on the test part."""
    from fewshot_core.device import resolve
    from fewshot_core.nb201 import arch_to_mask
    from fewshot_core.splitting import leaf_of, node_masks
    from fewshot_core.train import evaluate_architectures, test_images
    from fewshot_core.tree import node_seed

    d, train_idx, _ = _holdout(spec, holdout)
    archs = _chunk(_study_set(study_set, _expect("study_set", spec, "study_set")), spec.chunk, spec.archs_per_job)
    dev = resolve(device)
    images = test_images(d, dev)
    records = _tree_splits(spec, "splits", splits, spec.metric, spec.seed)
    leaves = {leaf: mask for leaf, (mask, _) in node_masks(spec.factors, len(spec.factors), records).items()}
    states, shape = {}, {}
    for c, path in enumerate(leaf_weights):
        w = artifacts.load_weights(path, _expect("leaf_weights", spec, "leaf_weights", c, metric=spec.metric,
                                                 seed=spec.seed, chunk=c))
        states.update(w["nodes"])
        shape = w["supernet"]
    by_leaf: dict[str, list[str]] = {}
    for arch in archs:
        by_leaf.setdefault(leaf_of(arch_to_mask(arch), leaves), []).append(arch)
    tables = []
    for leaf, held in by_leaf.items():
        if leaf not in states:
            raise ArtifactError(f"no weights for leaf {leaf} of {spec.metric}, seed {spec.seed}; {artifacts.REMEDY}")
        net = _supernet(shape, states[leaf], leaves[leaf]).to(dev)
        table = evaluate_architectures(net, d, train_idx, images, held, spec.evaluation,
                                       node_seed(spec.seed, leaf, "study"), device=dev, prefix="test")
        tables.append(table.assign(metric=spec.metric, seed=spec.seed, leaf=leaf))
    artifacts.write_table(pd.concat(tables, ignore_index=True)[list(STUDY_COLUMNS)], out, record(
        OUTPUTS["study"], spec, device=str(dev), evaluated_on=_evaluated_on(d, images)))
    log(f"{spec.metric} seed {spec.seed}: {len(archs)} study architectures in {len(by_leaf)} leaves")


def evaluate_oneshot(spec: OneShotEvalSpec, study_set: Path, holdout: Path, oneshot: Path, out: Path, device: str,
                     log: Log = _log) -> None:
    """Some study architectures with a one-shot baseline's weights, evaluated as the leaves' are."""
    from fewshot_core.device import resolve
    from fewshot_core.labels import oneshot_name
    from fewshot_core.train import evaluate_architectures, test_images
    from fewshot_core.tree import ROOT, node_seed

    d, train_idx, _ = _holdout(spec, holdout)
    archs = _chunk(_study_set(study_set, _expect("study_set", spec, "study_set")), spec.chunk, spec.archs_per_job)
    dev = resolve(device)
    images = test_images(d, dev)
    w = artifacts.load_weights(oneshot, _expect("oneshot", spec, "oneshot", seed=spec.seed, budget=spec.budget))
    net = _supernet(w["supernet"], w["nodes"][ROOT]).to(dev)
    table = evaluate_architectures(net, d, train_idx, images, archs, spec.evaluation,
                                   node_seed(spec.seed, ROOT, "study"), device=dev, prefix="test")
    name = oneshot_name(spec.budget)
    artifacts.write_table(table.assign(metric=name, seed=spec.seed, leaf=ROOT)[list(STUDY_COLUMNS)], out, record(
        OUTPUTS["oneshot_study"], spec, device=str(dev), evaluated_on=_evaluated_on(d, images)))
    log(f"{name}, seed {spec.seed}: {len(archs)} study architectures")


def score_study(spec: ZeroCostSpec, study_set: Path, holdout: Path, out: Path, device: str, log: Log = _log) -> None:
    """Some study architectures scored by one metric at initialisation: the supernet of the study seed
    restricted to each architecture (a standalone network of it, docs/design.md §1), on the metric's own
    batches; no split and no training."""
    import torch

    from fewshot_core import metrics
    from fewshot_core.device import resolve
    from fewshot_core.nb201 import arch_to_mask
    from fewshot_core.tree import ROOT, node_seed

    m = spec.metric
    if m.function is not None:
        metrics.register_user(m.name, m.function, m.kind)
    d, train_idx, _ = _holdout(spec, holdout)
    archs = _chunk(_study_set(study_set, _expect("study_set", spec, "study_set")), spec.chunk, spec.archs_per_job)
    dev = resolve(device)
    torch.manual_seed(node_seed(spec.seed, ROOT, "zero-cost"))
    net = _supernet(_shape(spec.supernet, spec.data, d.num_classes)).to(dev)
    batches = _scoring_batches(m, spec.seed, d, train_idx, dev)
    rows = []
    for arch in archs:
        net.set_mask(arch_to_mask(arch), connected=False)
        draws = node_seed(spec.seed, arch, "zero-cost")
        torch.manual_seed(draws)
        value = metrics.value(m.name, net, batches, m.settings, seed=draws, where=f"architecture {arch}", say=log)
        rows.append({"proxy": m.name, "arch": arch, "score": float(value)})
    artifacts.write_table(pd.DataFrame(rows, columns=list(ZERO_COST_COLUMNS)), out, record(
        OUTPUTS["zero_cost"], spec, device=str(dev)))
    log(f"{m.name}: {len(rows)} study architectures scored at initialisation")


def rank_study(spec: RankingSpec, truth: list[Path], studies: list[Path], oneshots: list[Path], zero_cost: list[Path],
               out: Path, out_summary: Path, log: Log = _log) -> None:
    """Every ranking of the study against the ground truth (the mean of its seeds, or of the benchmark's
    trials): each tree, each one-shot baseline, each training-free ranking, and the ground truth's seeds
    against each other (the ceiling); then per metric the mean over trees with its interval, and its
    paired comparison with random splits and with one-shot, all on the same resamples of architectures
    and seeds."""
    from fewshot_core.ranking import study_tables

    chunks = range(spec.chunks)
    if spec.source == "nats_bench":
        bench = artifacts.read_table(truth[0], _expect("benchmark", spec, "truth", 0), columns=BENCHMARK_COLUMNS)
        gt = bench.rename(columns={"trial": "gt"})[["arch", "gt", "accuracy", "loss"]]
    else:
        ids = [(g, k) for g in range(spec.gt_seeds) for k in chunks]
        gt = pd.concat([artifacts.read_table(p, _expect("standalone", spec, "truth", i, gt=g, chunk=k),
                                             columns=STANDALONE_COLUMNS) for i, (p, (g, k)) in enumerate(zip(truth, ids))],
                       ignore_index=True).rename(columns={"test_accuracy": "accuracy", "test_loss": "loss"})
    trees = [(m, s, k) for m in spec.metrics for s in spec.seeds for k in chunks]
    baselines = [(s, b, k) for s in spec.seeds for b in spec.budgets for k in chunks]
    inherited = pd.concat(
        [artifacts.read_table(p, _expect("study", spec, "studies", i, metric=m, seed=s, chunk=k), columns=STUDY_COLUMNS)
         for i, (p, (m, s, k)) in enumerate(zip(studies, trees))]
        + [artifacts.read_table(p, _expect("oneshot_study", spec, "oneshots", i, seed=s, budget=b, chunk=k),
                                columns=STUDY_COLUMNS) for i, (p, (s, b, k)) in enumerate(zip(oneshots, baselines))],
        ignore_index=True)
    proxies = [(p, k) for p in spec.proxies for k in chunks]
    scores = pd.concat([artifacts.read_table(p, _expect("zero_cost", spec, "zero_cost", i, proxy=name, chunk=k),
                                             columns=ZERO_COST_COLUMNS) for i, (p, (name, k)) in enumerate(zip(zero_cost, proxies))],
                       ignore_index=True)
    measured = [*studies, *oneshots, *(truth if spec.source == "standalone" else [])]
    evaluated = {json.dumps(artifacts.read_record(p, "parquet").get("evaluated_on"), sort_keys=True) for p in measured}
    if len(evaluated) != 1:
        raise ArtifactError(f"the study's accuracies were measured on different images ({sorted(evaluated)}); "
                            f"{artifacts.REMEDY}")
    table, summary = study_tables(gt, inherited, scores, spec.directions, spec.top_k, spec.bootstrap, spec.trees,
                                  spec.rank_by)
    extra = dict(evaluated_on=json.loads(evaluated.pop()))
    artifacts.write_table(table, out, record(OUTPUTS["ranking"], spec, **extra))
    artifacts.write_table(summary, out_summary, record(OUTPUTS["study_summary"], spec, **extra))
    log(summary.round(3).to_string(index=False))


# ----------------------------------------------------------------------------- the whole run


def _trees(spec: TreesSpec) -> list[tuple[str, int]]:
    return [(m, s) for m in spec.metrics for s in spec.seeds]


def collect_leaves(spec: TreesSpec, tables: list[Path], out: Path, log: Log = _log) -> None:
    """Every evaluated architecture of the run, in one table; ``tables`` in (metric, seed, chunk) order."""
    expected = [dict(metric=m, seed=s, chunk=c) for m, s in _trees(spec) for c in range(spec.chunks[m])]
    if len(tables) != len(expected):
        raise ArtifactError(f"expected {len(expected)} leaf tables, got {len(tables)}")
    parts = [artifacts.read_table(p, _expect("leaves", spec, "tables", i, **ident), columns=LEAF_COLUMNS)
             for i, (p, ident) in enumerate(zip(tables, expected))]
    table = pd.concat(parts, ignore_index=True)
    artifacts.write_table(table, out, record(OUTPUTS["leaves_table"], spec))
    best = table.loc[table.groupby(["metric", "seed"]).val_accuracy.idxmax()]
    log("best architecture per tree (across its leaves):")
    log(best.to_string(index=False))


def compute_split_distances(spec: TreesSpec, splits: list[Path], out_splits: Path, out_distance: Path,
                            log: Log = _log) -> None:
    """Every split of the run and every compared pair's split distance (the study's controls' splits listed,
    not compared); ``splits`` in (metric, seed, level) order."""
    from fewshot_core.distance import pair_table, summarise

    expected = [dict(metric=m, seed=s, level=level) for m, s in _trees(spec) for level in range(spec.levels[m])]
    if len(splits) != len(expected):
        raise ArtifactError(f"expected {len(expected)} split files, got {len(splits)}")
    records = [r for i, (p, ident) in enumerate(zip(splits, expected))
               for r in read_splits(p, _expect("splits", spec, "splits", i, **ident))]
    table = pd.DataFrame([{**r.to_dict(), "edge_name": r.edge_name} for r in records])[list(SPLIT_COLUMNS)]
    pairs = pair_table(table[~table.metric.isin(spec.controls)])
    artifacts.write_table(table, out_splits, record(OUTPUTS["splits_table"], spec))
    artifacts.write_table(pairs, out_distance, record(OUTPUTS["split_distance"], spec))
    summary = summarise(pairs).groupby(["kind", "metric"]).distance.agg(["mean", "std", "count"]).reset_index()
    log(summary.to_string(index=False))


def draw_figures(spec: FiguresSpec, splits: Path, distance: Path, out_dir: Path, log: Log = _log) -> None:
    """The paper's figures and the ones beyond it, as PNG and PDF."""
    from fewshot_core.report import draw_all, read_run_tables

    for f in draw_all(*read_run_tables(splits, distance, {"run": spec.run, "key": spec.inputs["splits"]}), out_dir):
        _figure_record(f, spec)
        log(str(f))


def draw_ranking(spec: FiguresSpec, ranking: Path, summary: Path, out: Path, log: Log = _log) -> None:
    """The ranking study's figure (PNG, PDF and the study's summary table as CSV)."""
    from fewshot_core.report import draw

    table = artifacts.read_table(ranking, _expect("ranking", spec, "ranking"), columns=RANKING_COLUMNS)
    means = artifacts.read_table(summary, _expect("study_summary", spec, "summary"), columns=SUMMARY_COLUMNS)
    for f in draw("ranking", out.parent, ranking=table, summary=means,
                  protocol=table.attrs["provenance"]["settings"]["protocol"]):
        _figure_record(f, spec)
        log(str(f))


def _figure_record(path: Path, spec: FiguresSpec) -> None:
    """A PNG figure's record: the keys of the tables it was drawn from (what the report checks)."""
    if path.suffix == ".png":
        artifacts.write_figure_record(path, artifacts.provenance("figure", run=spec.run, made_from=spec.inputs))
