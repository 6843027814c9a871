"""Typed settings: one dataclass per part of the configuration, and one spec per workflow stage.

:func:`fewshot_core.checks.load_settings` builds a :class:`RunSettings` once from the validated
configuration, whose schema (``workflow/schemas/config.schema.yaml``) holds every default. Each
rule passes its stage's spec as one canonical JSON parameter, so a change reruns exactly the jobs
whose spec changed; the command line reads it back into the same dataclass (:func:`spec_from_json`).
Torch-free: the workflow imports this module while it parses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

T = TypeVar("T")


def canonical_json(obj: Any) -> str:
    """The one JSON text of ``obj`` (a dataclass or plain data): sorted keys, no spaces."""
    if dataclasses.is_dataclass(obj):
        obj = asdict(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def digest(obj: Any) -> str:
    """A short hash of ``obj``'s canonical JSON: what provenance records compare."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:16]


def _build(tp: Any, value: Any, where: str) -> Any:
    """``value`` (parsed JSON) as an instance of the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        (inner,) = [t for t in options if t is not type(None)]
        return _build(inner, value, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object, got {value!r}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        if set(value) != names:
            raise ValueError(f"{where}: keys {sorted(value)} are not {sorted(names)}")
        return tp(**{k: _build(hints[k], v, f"{where}.{k}") for k, v in value.items()})
    if origin is tuple:
        (inner, _) = typing.get_args(tp)
        return tuple(_build(inner, v, where) for v in value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ValueError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def spec_from_json(cls: type[T], text: str) -> T:
    """Read a spec written by :func:`canonical_json` back into ``cls``; a mismatch is a ``ValueError``."""
    return _build(cls, json.loads(text), cls.__name__)


# ----------------------------------------------------------------------------- the configuration's parts


@dataclass(frozen=True)
class DataSettings:
    """Which images, at what size, and the share of the training images held out for validation."""

    name: str
    root: str | None
    download: bool
    input_size: int
    val_fraction: float


@dataclass(frozen=True)
class SupernetSettings:
    """The supernet's width (channels of the first stage) and depth (cells per stage)."""

    C: int
    N: int


@dataclass(frozen=True)
class OptimizerSettings:
    """SGD with a cosine schedule (docs/design.md §4: GM-NAS's settings)."""

    lr: float
    lr_min: float
    momentum: float
    nesterov: bool
    weight_decay: float
    grad_clip: float


@dataclass(frozen=True)
class TrainSettings:
    """Everything that decides a training run's result, besides its seed, data and start weights."""

    epochs: int
    batch_size: int
    mode: str
    augment: bool
    optimizer: OptimizerSettings


@dataclass(frozen=True)
class EvalSettings:
    """How a leaf's architectures are evaluated: how many, and the batch-norm re-estimation."""

    archs: int
    bn_batches: int
    batch_size: int


@dataclass(frozen=True)
class TreeSettings:
    """The tree's shape and how each node's edge is chosen."""

    factors: tuple[int, ...]
    edge_selection: str
    edge_order: tuple[int, ...]


@dataclass(frozen=True)
class MetricSettings:
    """One way of valuing a split's variants: a metric of the catalogue, or the user's ``function``
    (``"file.py:name"`` or ``"module:name"``), with its batches and its own settings (defaults filled in)."""

    name: str
    kind: str
    batch_size: int
    batches: int
    settings: dict
    function: str | None


@dataclass(frozen=True)
class Scorer:
    """How one level of a tree values a split: one metric, or several ``combined`` into the weighted
    mean of their similarity matrices, each scaled by its largest absolute off-diagonal entry over
    the node's edges (docs/design.md §9)."""

    parts: tuple[MetricSettings, ...]
    weights: tuple[float, ...]
    combined: bool

    @property
    def kind(self) -> str:
        """``combined`` for several metrics; else the metric's own: ``scalar``, ``vector``, or ``none``
        for a grouping without values (``random``)."""
        return "combined" if self.combined else self.parts[0].kind

    def code_hash(self) -> str:
        """A hash of the source of every part (a catalogue module or the user's file): the scoring
        rule's parameter, so that editing one metric's code reruns the jobs that use it, no others."""
        from fewshot_core import catalog, user_metrics

        return ",".join(user_metrics.code_hash(p.function) if p.function else catalog.code_hash(p.name)
                        for p in self.parts)


@dataclass(frozen=True)
class TreeMetric:
    """A configured metric: what grows one tree per seed. ``levels`` holds the scorer of each level
    (the same one throughout, except for a schedule)."""

    name: str
    levels: tuple[Scorer, ...]


@dataclass(frozen=True)
class StudySettings:
    """The ranking study: ``archs`` sampled architectures (0: no study), each trained from scratch for
    ``standalone`` epochs as the ground truth (docs/design.md §8)."""

    archs: int
    seed: int
    standalone: int
    archs_per_job: int
    top_k: int
    bootstrap: int


# ----------------------------------------------------------------------------- the stages' specs


@dataclass(frozen=True)
class HoldoutSpec:
    """``make_holdout``: the seeded train/validation split of the training images."""

    data: DataSettings
    seed: int


@dataclass(frozen=True)
class RootSpec:
    """``train_root``: a seed's root supernet, initialised and (``warmup`` not None) warmed up."""

    data: DataSettings
    supernet: SupernetSettings
    warmup: TrainSettings | None
    seed: int


@dataclass(frozen=True)
class ScoreSpec:
    """``score_edges``: every edge to consider at every node of one level of one tree.

    ``own_weights``: the level's nodes were warmed up (``train_children``); otherwise every node
    is scored with the root's weights.
    """

    data: DataSettings
    supernet: SupernetSettings
    metric: str
    scorer: Scorer
    tree: TreeSettings
    own_weights: bool
    seed: int
    level: int


@dataclass(frozen=True)
class SplitSpec:
    """``split_nodes``: each node's edge and operation groups at one level of one tree."""

    metric: str
    kind: str
    tree: TreeSettings
    balanced: bool
    seed: int
    level: int


@dataclass(frozen=True)
class ChildrenSpec:
    """``train_children``: the nodes of one level, each warmed up from its parent's weights."""

    data: DataSettings
    supernet: SupernetSettings
    warmup: TrainSettings
    factors: tuple[int, ...]
    metric: str
    seed: int
    level: int


@dataclass(frozen=True)
class StudySetSpec:
    """``sample_study_set``: the study's architectures, the same for every metric and seed."""

    archs: int
    seed: int


@dataclass(frozen=True)
class StandaloneSpec:
    """``train_standalone``: some study architectures trained from scratch, on the study seed's holdout."""

    data: DataSettings
    supernet: SupernetSettings
    train: TrainSettings
    batch_size: int  # evaluation batch
    seed: int
    chunk: int
    archs_per_job: int


@dataclass(frozen=True)
class OneShotSpec:
    """``train_oneshot``: the one-shot supernet of a seed, trained for as many steps as a tree's leaves."""

    data: DataSettings
    supernet: SupernetSettings
    train: TrainSettings
    leaves: int
    seed: int


@dataclass(frozen=True)
class StudyEvalSpec:
    """``evaluate_study``: every study architecture with the weights of its leaf in each of a seed's
    trees, and with the seed's one-shot supernet."""

    data: DataSettings
    evaluation: EvalSettings
    factors: tuple[int, ...]
    metrics: tuple[str, ...]
    chunks: int
    seed: int
    study_seed: int


@dataclass(frozen=True)
class RankingSpec:
    """``rank_study``: the ranking measures of every tree and of the one-shot baseline."""

    metrics: tuple[str, ...]
    seeds: tuple[int, ...]
    standalone_chunks: int
    top_k: int
    bootstrap: int


@dataclass(frozen=True)
class TreesSpec:
    """``collect_leaves`` and ``compute_split_distances``: every tree of a run, for the files' order."""

    metrics: tuple[str, ...]
    seeds: tuple[int, ...]
    levels: int
    chunks: int


@dataclass(frozen=True)
class LeavesSpec:
    """``train_leaves``: some leaves of one tree, trained from scratch and evaluated."""

    data: DataSettings
    supernet: SupernetSettings
    train: TrainSettings
    evaluation: EvalSettings
    factors: tuple[int, ...]
    metric: str
    seed: int
    leaves: tuple[str, ...]


# ----------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class RunSettings:
    """A whole run, built once from the configuration; its methods give each job's spec."""

    run: str
    seeds: tuple[int, ...]
    data: DataSettings
    supernet: SupernetSettings
    device: str
    tree: TreeSettings
    balanced: bool
    metrics: dict[str, TreeMetric]
    warmup: TrainSettings
    leaves: TrainSettings
    evaluation: EvalSettings
    leaves_per_job: int
    study: StudySettings

    @property
    def levels(self) -> int:
        return len(self.tree.factors)

    @property
    def warms_up(self) -> bool:
        return self.warmup.epochs > 0

    def trains_children(self, level: int) -> bool:
        """Whether the nodes of ``level`` get their own weights (warm-up from their parent's) or are
        scored with the root's: the inheritance rule, written once."""
        return self.warms_up and level > 0

    def leaf_chunks(self) -> list[tuple[str, ...]]:
        """The leaves of a tree, ``leaves_per_job`` to a job."""
        from fewshot_core.splitting import tree_levels

        leaves = tree_levels(self.tree.factors)[-1]
        k = self.leaves_per_job
        return [tuple(leaves[i : i + k]) for i in range(0, len(leaves), k)]

    def holdout_spec(self, seed: int) -> HoldoutSpec:
        return HoldoutSpec(self.data, seed)

    def root_spec(self, seed: int) -> RootSpec:
        return RootSpec(self.data, self.supernet, self.warmup if self.warms_up else None, seed)

    def score_spec(self, metric: str, seed: int, level: int) -> ScoreSpec:
        return ScoreSpec(self.data, self.supernet, metric, self.metrics[metric].levels[level], self.tree,
                         self.trains_children(level), seed, level)

    def split_spec(self, metric: str, seed: int, level: int) -> SplitSpec:
        return SplitSpec(metric, self.metrics[metric].levels[level].kind, self.tree, self.balanced, seed, level)

    def children_spec(self, metric: str, seed: int, level: int) -> ChildrenSpec:
        return ChildrenSpec(self.data, self.supernet, self.warmup, self.tree.factors, metric, seed, level)

    def trees_spec(self) -> TreesSpec:
        return TreesSpec(tuple(self.metrics), self.seeds, self.levels, len(self.leaf_chunks()))

    @property
    def studies(self) -> bool:
        return self.study.archs > 0

    def standalone_chunks(self) -> int:
        return -(-self.study.archs // self.study.archs_per_job)

    @property
    def leaf_count(self) -> int:
        return sum(len(c) for c in self.leaf_chunks())

    def oneshot_train(self) -> TrainSettings:
        """The leaves' training with as many epochs as all the leaves of a tree together: the same steps
        (same data and batch size), on the whole search space."""
        return dataclasses.replace(self.leaves, epochs=self.leaves.epochs * self.leaf_count)

    def study_set_spec(self) -> StudySetSpec:
        return StudySetSpec(self.study.archs, self.study.seed)

    def standalone_spec(self, chunk: int) -> StandaloneSpec:
        train = dataclasses.replace(self.leaves, epochs=self.study.standalone)
        return StandaloneSpec(self.data, self.supernet, train, self.evaluation.batch_size, self.study.seed, chunk,
                              self.study.archs_per_job)

    def oneshot_spec(self, seed: int) -> OneShotSpec:
        return OneShotSpec(self.data, self.supernet, self.oneshot_train(), self.leaf_count, seed)

    def study_eval_spec(self, seed: int) -> StudyEvalSpec:
        return StudyEvalSpec(self.data, self.evaluation, self.tree.factors, tuple(self.metrics),
                             len(self.leaf_chunks()), seed, self.study.seed)

    def ranking_spec(self) -> RankingSpec:
        return RankingSpec(tuple(self.metrics), self.seeds, self.standalone_chunks(), self.study.top_k,
                           self.study.bootstrap)

    def leaves_spec(self, metric: str, seed: int, chunk: int) -> LeavesSpec:
        return LeavesSpec(self.data, self.supernet, self.leaves, self.evaluation, self.tree.factors, metric, seed,
                          self.leaf_chunks()[chunk])
