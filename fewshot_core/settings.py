"""Typed settings: one dataclass per part of the configuration, and how a dataclass goes to and from its
canonical JSON.

:func:`fewshot_core.checks.load_settings` builds the run's plan (:class:`fewshot_core.plan.RunSettings`)
once from the validated configuration, whose schema (``workflow/schemas/config.schema.yaml``) holds every
default; the parts here are what the plan and the stages' specs (:mod:`fewshot_core.specs`) are made of.
Each rule passes its stage's spec as one canonical JSON parameter, so a change reruns exactly the jobs
whose spec changed; the command line reads it back into the same dataclass (:func:`spec_from_json`).
Torch-free: the workflow imports this module while it parses.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import types
import typing
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from fewshot_core import digests

T = TypeVar("T")


def canonical_json(obj: Any) -> str:
    """The one JSON text of ``obj`` (a dataclass or plain data): sorted keys, no spaces."""
    if dataclasses.is_dataclass(obj):
        obj = asdict(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def metric_code(name: str, function: str | None = None, workdir: str | os.PathLike = ".") -> str:
    """The digest of the code that computes a metric, as parsed: a catalogue metric's own module and the
    shared metric code, or the file of the user's ``function`` and the local modules it imports. In its jobs'
    specs, so that editing one metric's code reruns the jobs that use it, no others."""
    from fewshot_core import catalog, user_metrics

    if function:
        return digests.of_sources(user_metrics.local_sources(user_metrics.source_file(function, workdir)[0], workdir))
    return digests.of_sources(catalog.info(name).sources())


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
        hints, names = _fields(tp)
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


def _as_floats(settings: Any) -> None:
    """A whole number given for a float setting (``grad_clip: 0`` turns clipping off) as a float, as a job
    reads its spec back (:func:`spec_from_json`): the key the plan gives an output and the one its job
    records are then one."""
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.type == "float" and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(settings, f.name, float(value))


@functools.cache
def _fields(cls: type) -> tuple[dict[str, Any], set[str]]:
    """A dataclass's resolved field types and its field names, once per class (resolving the annotations'
    strings is most of reading a spec back: the workflow reads every one of the paper's 3,941 back)."""
    return typing.get_type_hints(cls), {f.name for f in dataclasses.fields(cls)}


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

    def __post_init__(self) -> None:
        _as_floats(self)


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

    def __post_init__(self) -> None:
        _as_floats(self)


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
        return ",".join(metric_code(p.name, p.function) for p in self.parts)


@dataclass(frozen=True)
class TreeMetric:
    """A configured metric or control: what grows one tree per seed. ``levels`` holds the scorer of each
    level (the same one throughout, except for a schedule); ``tree`` and ``balanced`` its own shape and
    cuts (the run's ``tree`` section, unless the entry gives its own). ``control``: one of the study's
    controls (the anchors' own splits, a split by structure), ranked beside the metrics, not drawn in the
    split-distance figures."""

    name: str
    levels: tuple[Scorer, ...]
    tree: TreeSettings
    balanced: bool
    control: bool = False


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
    rank_by: str
    top_k: int
    bootstrap: int
    ground_truth: GroundTruthSettings

    @property
    def transfers(self) -> bool:
        return self.protocol == "transfer"
