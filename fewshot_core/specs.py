"""One spec per workflow stage: everything that decides what its job makes, handed to the job as one
canonical JSON parameter (docs/design.md §7), built by the run's plan (:class:`fewshot_core.plan.RunSettings`).
Torch-free: the workflow imports this module while it parses.
"""

from __future__ import annotations

from dataclasses import dataclass

from fewshot_core.settings import (
    DataSettings,
    EvalSettings,
    GroundTruthSettings,
    MetricSettings,
    Scorer,
    SupernetSettings,
    TrainSettings,
    TreeSettings,
)

# ----------------------------------------------------------------------------- the stages' specs
#
# Every spec names its run and carries ``inputs``: for each input file, its key (a list for several
# files; :func:`fewshot_core.outputs.key`). A job's spec therefore changes with anything upstream of
# it, settings or code, and its readers check that each input has exactly the key it expects.

Inputs = dict  # {input name: key, or a list of them}


@dataclass(frozen=True)
class HoldoutSpec:
    """``make_holdout``: the seeded train/validation split of the training images. ``images``: the digest of
    the dataset's files, so that replaced images rerun everything made from them."""

    run: str
    data: DataSettings
    images: str
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
    ``init``), trained as many more steps as ``budget`` leaves (all the leaves of a tree, or one)."""

    run: str
    data: DataSettings
    supernet: SupernetSettings
    train: TrainSettings
    budget: int
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
    budget: int
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
    directions: dict[str, int]  # per proxy: +1 when higher values mark a better architecture, -1 when lower
    budgets: tuple[int, ...]
    rank_by: str
    top_k: int
    bootstrap: int
    trees: dict  # per tree's metric: its leaves, factors and whether it is a control
    protocol: dict
    inputs: Inputs


@dataclass(frozen=True)
class TreesSpec:
    """``collect_leaves`` and ``compute_split_distances``: the trees of a run, for the files' order; per
    metric, its trees' levels and leaf jobs; ``controls``: the study's controls, whose splits the split
    distances leave out (they show what a split can do, not how a metric splits)."""

    run: str
    metrics: tuple[str, ...]
    seeds: tuple[int, ...]
    levels: dict[str, int]
    chunks: dict[str, int]
    controls: tuple[str, ...]
    inputs: Inputs


@dataclass(frozen=True)
class FiguresSpec:
    """``draw_figures`` and ``draw_ranking``: the run-level tables a figure is drawn from."""

    run: str
    inputs: Inputs
