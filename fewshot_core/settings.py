"""Typed settings: one dataclass per part of the configuration, and one spec per workflow stage.

:func:`fewshot_core.checks.load_settings` builds a :class:`RunSettings` once from the validated
configuration, whose schema (``workflow/schemas/config.schema.yaml``) holds every default. Each
rule passes its stage's spec as one canonical JSON parameter, so a change reruns exactly the jobs
whose spec changed; the command line reads it back into the same dataclass (:func:`spec_from_json`).
Torch-free: the workflow imports this module while it parses.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from fewshot_core import digests
from fewshot_core.tree import leaf_names

T = TypeVar("T")


def canonical_json(obj: Any) -> str:
    """The one JSON text of ``obj`` (a dataclass or plain data): sorted keys, no spaces."""
    if dataclasses.is_dataclass(obj):
        obj = asdict(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def digest(obj: Any) -> str:
    """A short hash of ``obj``'s canonical JSON: what provenance records compare."""
    return digests.short(canonical_json(obj))


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
    """Which images, at what size, how many of the training images a run uses (a seeded subset; None: all)
    and the share of those held out for validation. (``data.download`` decides only whether missing files
    may be fetched: it is not here.)"""

    name: str
    root: str | None
    input_size: int
    val_fraction: float
    train_images: int | None


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
    """Everything that decides a training run's result, besides its seed, data and start weights.
    ``crop_pad``: the zero padding of the random crops (``data.crop_pad``; input size / 8 by default).
    ``precision``: on a GPU, float32, TF32 products or a bfloat16 forward pass (``training.precision``)."""

    epochs: int
    batch_size: int
    mode: str
    augment: bool
    crop_pad: int
    precision: str
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
class GroundTruthSettings:
    """Where the study's ground truth comes from: its own ``standalone`` trainings, or NAS-Bench-201's
    accuracies read through ``nats_bench`` from the archive at ``path`` (``dataset``, ``hp`` epochs, the
    ``accuracy`` on its validation or test set)."""

    source: str
    path: str | None
    dataset: str
    hp: str
    accuracy: str

    @property
    def benchmark(self) -> bool:
        return self.source == "nats_bench"


@dataclass(frozen=True)
class StudySettings:
    """The ranking study (docs/design.md §8): ``archs`` sampled architectures (0: no study), each trained
    from scratch for ``standalone`` epochs with ``gt_seeds`` seeds as the ground truth. ``protocol``
    says where leaves start: ``transfer`` (a one-shot supernet pretrained ``pretrain`` epochs per seed,
    Few-shot NAS's weight transfer) or ``scratch`` (a fresh initialisation, the paper's rule)."""

    archs: int
    seed: int
    standalone: int
    gt_seeds: int
    protocol: str
    pretrain: int
    archs_per_job: int
    top_k: int
    bootstrap: int
    ground_truth: GroundTruthSettings

    @property
    def transfers(self) -> bool:
        return self.protocol == "transfer"


# ----------------------------------------------------------------------------- the stages' specs
#
# Every spec names its run and carries ``inputs``: for each input file, the digest of the spec that
# made it (a list for several files). A job's spec therefore changes with anything upstream of it,
# and its readers check that each input was made by exactly the spec it expects.

Inputs = dict  # {input name: spec digest, or a list of them}
#: The one-shot baselines' budgets: as many steps as all the leaves of a tree, or as one leaf.
BUDGETS = ("tree", "leaf")


@dataclass(frozen=True)
class HoldoutSpec:
    """``make_holdout``: the seeded train/validation split of the training images."""

    run: str
    data: DataSettings
    seed: int


@dataclass(frozen=True)
class RootSpec:
    """``train_root``: a seed's root supernet, initialised and (``warmup`` not None) warmed up."""

    run: str
    data: DataSettings
    supernet: SupernetSettings
    warmup: TrainSettings | None
    seed: int
    inputs: Inputs


@dataclass(frozen=True)
class ScoreSpec:
    """``score_edges``: every edge to consider at every node of one level of one tree.

    ``own_weights``: the level's nodes were warmed up (``train_children``); otherwise every node
    is scored with the root's weights. ``code``: the digest of the metric's source (editing it reruns
    the jobs that use it, no others).
    """

    run: str
    data: DataSettings
    supernet: SupernetSettings
    metric: str
    scorer: Scorer
    code: str
    tree: TreeSettings
    own_weights: bool
    seed: int
    level: int
    inputs: Inputs


@dataclass(frozen=True)
class SplitSpec:
    """``split_nodes``: each node's edge and operation groups at one level of one tree."""

    run: str
    metric: str
    kind: str
    tree: TreeSettings
    balanced: bool
    seed: int
    level: int
    inputs: Inputs


@dataclass(frozen=True)
class ChildrenSpec:
    """``train_children``: the nodes of one level, each warmed up from its parent's weights."""

    run: str
    data: DataSettings
    supernet: SupernetSettings
    warmup: TrainSettings
    factors: tuple[int, ...]
    metric: str
    seed: int
    level: int
    inputs: Inputs


@dataclass(frozen=True)
class LeavesSpec:
    """``train_leaves``: some leaves of one tree, each starting from ``start`` (``pretrained``: the seed's
    pretrained one-shot supernet restricted to the leaf's mask; ``init``: a fresh initialisation),
    trained and evaluated."""

    run: str
    data: DataSettings
    supernet: SupernetSettings
    train: TrainSettings
    evaluation: EvalSettings
    factors: tuple[int, ...]
    metric: str
    seed: int
    chunk: int
    leaves: tuple[str, ...]
    start: str
    inputs: Inputs


@dataclass(frozen=True)
class StudySetSpec:
    """``sample_study_set``: the study's architectures, the same for every metric and seed."""

    run: str
    archs: int
    seed: int


@dataclass(frozen=True)
class StandaloneSpec:
    """``train_standalone``: some study architectures trained from scratch with ground-truth seed ``gt``
    on the study seed's training part, and evaluated on the test part."""

    run: str
    data: DataSettings
    supernet: SupernetSettings
    train: TrainSettings
    batch_size: int  # evaluation batch
    seed: int
    gt: int
    chunk: int
    archs_per_job: int
    inputs: Inputs


@dataclass(frozen=True)
class BenchmarkSpec:
    """``read_benchmark``: the study architectures' accuracies in NAS-Bench-201, trial by trial."""

    run: str
    ground_truth: GroundTruthSettings
    inputs: Inputs


@dataclass(frozen=True)
class PretrainSpec:
    """``pretrain_oneshot``: a seed's one-shot supernet, trained from its initialisation; under the
    ``transfer`` protocol every leaf of the seed's trees, and both one-shot baselines, start from it."""

    run: str
    data: DataSettings
    supernet: SupernetSettings
    train: TrainSettings
    seed: int
    inputs: Inputs


@dataclass(frozen=True)
class OneShotSpec:
    """``train_oneshot``: the one-shot baseline of a seed, from the leaves' start (``pretrained`` or
    ``init``), trained as many more steps as all the leaves of a tree (``budget`` tree) or as one leaf
    (``budget`` leaf)."""

    run: str
    data: DataSettings
    supernet: SupernetSettings
    train: TrainSettings
    budget: str
    start: str
    seed: int
    inputs: Inputs


@dataclass(frozen=True)
class StudyEvalSpec:
    """``evaluate_study``: some study architectures (``chunk``) with the weights of the leaf that holds each
    in one tree, on the test part."""

    run: str
    data: DataSettings
    evaluation: EvalSettings
    factors: tuple[int, ...]
    metric: str
    seed: int
    chunk: int
    archs_per_job: int
    inputs: Inputs


@dataclass(frozen=True)
class OneShotEvalSpec:
    """``evaluate_oneshot``: some study architectures (``chunk``) with a one-shot baseline's weights, on the
    test part."""

    run: str
    data: DataSettings
    evaluation: EvalSettings
    seed: int
    budget: str
    chunk: int
    archs_per_job: int
    inputs: Inputs


@dataclass(frozen=True)
class ZeroCostSpec:
    """``score_study``: some study architectures ranked by a metric's value at initialisation (no
    training, no split): the training-free baseline a split must beat."""

    run: str
    data: DataSettings
    supernet: SupernetSettings
    proxy: str
    metric: MetricSettings
    code: str
    seed: int
    chunk: int
    archs_per_job: int
    inputs: Inputs


@dataclass(frozen=True)
class RankingSpec:
    """``rank_study``: the ranking measures of every tree, baseline and training-free ranking, the ground
    truth's own agreement, and each metric's paired comparison with random splits and one-shot."""

    run: str
    metrics: tuple[str, ...]
    seeds: tuple[int, ...]
    source: str
    gt_seeds: int
    chunks: int
    proxies: tuple[str, ...]
    budgets: tuple[str, ...]
    top_k: int
    bootstrap: int
    protocol: dict
    inputs: Inputs


@dataclass(frozen=True)
class TreesSpec:
    """``collect_leaves`` and ``compute_split_distances``: every tree of a run, for the files' order."""

    run: str
    metrics: tuple[str, ...]
    seeds: tuple[int, ...]
    levels: int
    chunks: int
    inputs: Inputs


@dataclass(frozen=True)
class FiguresSpec:
    """``draw_figures`` and ``draw_ranking``: the run-level tables a figure is drawn from."""

    run: str
    inputs: Inputs


# ----------------------------------------------------------------------------- the run


def _memo(method):
    """Cache a spec builder per run settings object: the workflow asks for each spec many times."""

    def cached(self, *args):
        key = (method.__name__, args)
        if key not in self._cache:
            self._cache[key] = method(self, *args)
        return self._cache[key]

    cached.__name__, cached.__doc__ = method.__name__, method.__doc__
    return cached


@dataclass(frozen=True)
class RunSettings:
    """A whole run, built once from the configuration; its methods give each job's spec.

    ``device``, ``download`` and ``rerun_on_code_change`` decide how a run goes, not what it
    computes: they are in no spec, so changing them reruns nothing (docs/design.md §7).
    """

    run: str
    seeds: tuple[int, ...]
    data: DataSettings
    supernet: SupernetSettings
    device: str
    download: bool
    rerun_on_code_change: bool
    tree: TreeSettings
    balanced: bool
    metrics: dict[str, TreeMetric]
    warmup: TrainSettings
    leaf_training: TrainSettings
    evaluation: EvalSettings
    leaves_per_job: int
    study: StudySettings
    proxies: dict[str, MetricSettings]
    _cache: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    def canonical(self, spec) -> str:
        """:func:`canonical_json` of a spec this object built, computed once: the workflow asks for the
        same specs (and their digests) many thousand times while it builds the paper's DAG."""
        key = ("json", id(spec))
        if key not in self._cache:
            self._cache[key] = (spec, canonical_json(spec))  # the spec is kept: its id stays its own
        return self._cache[key][1]

    def digest_of(self, spec) -> str:
        """:func:`digest` of a spec this object built, computed once."""
        key = ("digest", id(spec))
        if key not in self._cache:
            self._cache[key] = (spec, digests.short(self.canonical(spec)))
        return self._cache[key][1]

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
        leaves = leaf_names(self.tree.factors)
        k = self.leaves_per_job
        return [tuple(leaves[i : i + k]) for i in range(0, len(leaves), k)]

    @property
    def chunks(self) -> int:
        return len(self.leaf_chunks())

    @property
    def has_study(self) -> bool:
        return self.study.archs > 0

    def study_chunks(self) -> int:
        """The study set in jobs of ``study.archs_per_job`` architectures."""
        return -(-self.study.archs // self.study.archs_per_job)

    @property
    def leaf_count(self) -> int:
        return sum(len(c) for c in self.leaf_chunks())

    def holdout_seeds(self) -> tuple[int, ...]:
        """The seeds whose holdout some job reads: the run's, and the study's."""
        return tuple(sorted({*self.seeds, *((self.study.seed,) if self.has_study else ())}))

    # ------------------------------------------------------------------------- each job's spec

    @_memo
    def holdout_spec(self, seed: int) -> HoldoutSpec:
        return HoldoutSpec(self.run, self.data, seed)

    @_memo
    def root_spec(self, seed: int) -> RootSpec:
        return RootSpec(self.run, self.data, self.supernet, self.warmup if self.warms_up else None, seed,
                        {"holdout": self.digest_of(self.holdout_spec(seed))})

    def level_weights(self, metric: str, seed: int, level: int) -> tuple[str, dict]:
        """The output a level's nodes are scored with (and its children start from): the level's own
        weights after warm-up, else the root's; as (kind, identity). Decided here only: the workflow's
        input functions and the specs' input digests both ask."""
        if self.trains_children(level):
            return "nodes", {"metric": metric, "seed": seed, "level": level}
        return "root", {"seed": seed}

    def weights_digest(self, metric: str, seed: int, level: int) -> str:
        """The digest of the spec of :meth:`level_weights`' output."""
        kind, identity = self.level_weights(metric, seed, level)
        return self.digest_of(self.spec_for(kind, identity))

    def _splits_above(self, metric: str, seed: int, level: int) -> list[str]:
        return [self.digest_of(self.split_spec(metric, seed, lv)) for lv in range(level)]

    @_memo
    def score_spec(self, metric: str, seed: int, level: int) -> ScoreSpec:
        scorer = self.metrics[metric].levels[level]
        return ScoreSpec(self.run, self.data, self.supernet, metric, scorer, scorer.code_hash(), self.tree,
                         self.trains_children(level), seed, level,
                         {"holdout": self.digest_of(self.holdout_spec(seed)), "weights": self.weights_digest(metric, seed, level),
                          "previous": self._splits_above(metric, seed, level)})

    @_memo
    def split_spec(self, metric: str, seed: int, level: int) -> SplitSpec:
        return SplitSpec(self.run, metric, self.metrics[metric].levels[level].kind, self.tree, self.balanced, seed,
                         level, {"scores": self.digest_of(self.score_spec(metric, seed, level)),
                                 "previous": self._splits_above(metric, seed, level)})

    @_memo
    def children_spec(self, metric: str, seed: int, level: int) -> ChildrenSpec:
        return ChildrenSpec(self.run, self.data, self.supernet, self.warmup, self.tree.factors, metric, seed, level,
                            {"holdout": self.digest_of(self.holdout_spec(seed)),
                             "parent_weights": self.weights_digest(metric, seed, level - 1),
                             "splits": self._splits_above(metric, seed, level)})

    @_memo
    def leaves_spec(self, metric: str, seed: int, chunk: int) -> LeavesSpec:
        inputs = {"holdout": self.digest_of(self.holdout_spec(seed)), "splits": self._splits_above(metric, seed, self.levels)}
        if self.study.transfers:
            inputs["pretrained"] = self.digest_of(self.pretrain_spec(seed))
        return LeavesSpec(self.run, self.data, self.supernet, self.leaf_training, self.evaluation, self.tree.factors, metric,
                          seed, chunk, self.leaf_chunks()[chunk], self.leaf_start, inputs)

    @property
    def leaf_start(self) -> str:
        """Where every leaf (and one-shot baseline) starts: the pretrained one-shot supernet, or an init."""
        return "pretrained" if self.study.transfers else "init"

    def trees(self) -> list[tuple[str, int]]:
        """Every tree of the run, (metric, seed), in the order of the run's tables."""
        return [(m, s) for m in self.metrics for s in self.seeds]

    @_memo
    def distances_spec(self) -> TreesSpec:
        return TreesSpec(self.run, tuple(self.metrics), self.seeds, self.levels, self.chunks,
                         {"splits": [self.digest_of(self.split_spec(m, s, lv)) for m, s in self.trees()
                                     for lv in range(self.levels)]})

    @_memo
    def collect_spec(self) -> TreesSpec:
        return TreesSpec(self.run, tuple(self.metrics), self.seeds, self.levels, self.chunks,
                         {"tables": [self.digest_of(self.leaves_spec(m, s, c)) for m, s in self.trees()
                                     for c in range(self.chunks)]})

    def figures_spec(self) -> FiguresSpec:
        d = self.digest_of(self.distances_spec())
        return FiguresSpec(self.run, {"splits": d, "distance": d})

    @_memo
    def study_set_spec(self) -> StudySetSpec:
        return StudySetSpec(self.run, self.study.archs, self.study.seed)

    @_memo
    def standalone_spec(self, gt: int, chunk: int) -> StandaloneSpec:
        train = dataclasses.replace(self.leaf_training, epochs=self.study.standalone)
        return StandaloneSpec(self.run, self.data, self.supernet, train, self.evaluation.batch_size, self.study.seed,
                              gt, chunk, self.study.archs_per_job,
                              {"study_set": self.digest_of(self.study_set_spec()),
                               "holdout": self.digest_of(self.holdout_spec(self.study.seed))})

    @_memo
    def pretrain_spec(self, seed: int) -> PretrainSpec:
        train = dataclasses.replace(self.leaf_training, epochs=self.study.pretrain)
        return PretrainSpec(self.run, self.data, self.supernet, train, seed, {"holdout": self.digest_of(self.holdout_spec(seed))})

    def budget_epochs(self, budget: str) -> int:
        """The one-shot baseline's epochs: as many steps as all the leaves of a tree, or as one leaf."""
        return self.leaf_training.epochs * (self.leaf_count if budget == "tree" else 1)

    @_memo
    def oneshot_spec(self, seed: int, budget: str) -> OneShotSpec:
        inputs = {"holdout": self.digest_of(self.holdout_spec(seed))}
        if self.study.transfers:
            inputs["pretrained"] = self.digest_of(self.pretrain_spec(seed))
        train = dataclasses.replace(self.leaf_training, epochs=self.budget_epochs(budget))
        return OneShotSpec(self.run, self.data, self.supernet, train, budget, self.leaf_start, seed, inputs)

    @_memo
    def study_eval_spec(self, metric: str, seed: int, chunk: int) -> StudyEvalSpec:
        return StudyEvalSpec(self.run, self.data, self.evaluation, self.tree.factors, metric, seed, chunk,
                             self.study.archs_per_job,
                             {"study_set": self.digest_of(self.study_set_spec()), "holdout": self.digest_of(self.holdout_spec(seed)),
                              "splits": self._splits_above(metric, seed, self.levels),
                              "leaf_weights": [self.digest_of(self.leaves_spec(metric, seed, c)) for c in range(self.chunks)]})

    @_memo
    def oneshot_eval_spec(self, seed: int, budget: str, chunk: int) -> OneShotEvalSpec:
        return OneShotEvalSpec(self.run, self.data, self.evaluation, seed, budget, chunk, self.study.archs_per_job,
                               {"study_set": self.digest_of(self.study_set_spec()), "holdout": self.digest_of(self.holdout_spec(seed)),
                                "oneshot": self.digest_of(self.oneshot_spec(seed, budget))})

    @_memo
    def benchmark_spec(self) -> BenchmarkSpec:
        return BenchmarkSpec(self.run, self.study.ground_truth, {"study_set": self.digest_of(self.study_set_spec())})

    @_memo
    def zero_cost_spec(self, proxy: str, chunk: int) -> ZeroCostSpec:
        from fewshot_core import catalog, user_metrics

        m = self.proxies[proxy]
        code = user_metrics.code_hash(m.function) if m.function else catalog.code_hash(m.name)
        return ZeroCostSpec(self.run, self.data, self.supernet, proxy, m, code, self.study.seed, chunk,
                            self.study.archs_per_job, {"study_set": self.digest_of(self.study_set_spec()),
                                                       "holdout": self.digest_of(self.holdout_spec(self.study.seed))})

    @_memo
    def ranking_spec(self) -> RankingSpec:
        chunks = range(self.study_chunks())
        gt = self.study.ground_truth
        protocol = {"protocol": self.study.protocol, "pretrain_epochs": self.study.pretrain if self.study.transfers
                    else 0, "leaf_epochs": self.leaf_training.epochs, "leaves": self.leaf_count,
                    "oneshot_epochs": {b: self.budget_epochs(b) for b in BUDGETS}, "ground_truth": gt.source,
                    "standalone_epochs": self.study.standalone, "gt_seeds": self.study.gt_seeds,
                    "benchmark": {"dataset": gt.dataset, "hp": gt.hp, "accuracy": gt.accuracy} if gt.benchmark
                    else None, "evaluated_on": "test",
                    "data": {"name": self.data.name, "input_size": self.data.input_size,
                             "train_images": self.data.train_images, "val_fraction": self.data.val_fraction},
                    "network": {"C": self.supernet.C, "N": self.supernet.N}}
        truth = ([self.digest_of(self.benchmark_spec())] if gt.benchmark else
                 [self.digest_of(self.standalone_spec(g, k)) for g in range(self.study.gt_seeds) for k in chunks])
        return RankingSpec(self.run, tuple(self.metrics), self.seeds, gt.source, self.study.gt_seeds,
                           self.study_chunks(), tuple(self.proxies), BUDGETS, self.study.top_k, self.study.bootstrap,
                           protocol,
                           {"truth": truth,
                            "studies": [self.digest_of(self.study_eval_spec(m, s, k)) for m, s in self.trees() for k in chunks],
                            "oneshots": [self.digest_of(self.oneshot_eval_spec(s, b, k)) for s in self.seeds for b in BUDGETS
                                         for k in chunks],
                            "zero_cost": [self.digest_of(self.zero_cost_spec(p, k)) for p in self.proxies for k in chunks]})

    def ranking_figure_spec(self) -> FiguresSpec:
        return FiguresSpec(self.run, {"ranking": self.digest_of(self.ranking_spec())})

    # ------------------------------------------------------------------------- every output of the run

    def outputs(self) -> list[tuple[str, dict]]:
        """Every output file the run makes: (kind, identity), in the order the DAG makes them."""
        out = [("holdout", {"seed": s}) for s in self.holdout_seeds()]
        out += [("root", {"seed": s}) for s in self.seeds]
        for m, s in self.trees():
            for lv in range(self.levels):
                out += [("scores", dict(metric=m, seed=s, level=lv)), ("splits", dict(metric=m, seed=s, level=lv))]
                if self.trains_children(lv):
                    out.append(("nodes", dict(metric=m, seed=s, level=lv)))
            for c in range(self.chunks):
                out += [("leaves", dict(metric=m, seed=s, chunk=c)), ("leaf_weights", dict(metric=m, seed=s, chunk=c))]
        out += [("splits_table", {}), ("split_distance", {}), ("leaves_table", {})]
        if self.study.transfers:
            out += [("pretrained", {"seed": s}) for s in self.seeds]
        if self.has_study:
            chunks = range(self.study_chunks())
            out.append(("study_set", {}))
            if self.study.ground_truth.benchmark:
                out.append(("benchmark", {}))
            else:
                out += [("standalone", {"gt": g, "chunk": k}) for g in range(self.study.gt_seeds) for k in chunks]
            out += [("oneshot", {"seed": s, "budget": b}) for s in self.seeds for b in BUDGETS]
            out += [("oneshot_study", {"seed": s, "budget": b, "chunk": k}) for s in self.seeds for b in BUDGETS
                    for k in chunks]
            out += [("study", {"metric": m, "seed": s, "chunk": k}) for m, s in self.trees() for k in chunks]
            out += [("zero_cost", {"proxy": p, "chunk": k}) for p in self.proxies for k in chunks]
            out += [("ranking", {}), ("study_summary", {})]
        return out

    def spec_for(self, kind: str, identity: dict):
        """The spec that makes the output ``kind`` identified by ``identity``."""
        from fewshot_core.outputs import OUTPUTS

        return getattr(self, OUTPUTS[kind].spec)(*(identity[k] for k in OUTPUTS[kind].identity))
