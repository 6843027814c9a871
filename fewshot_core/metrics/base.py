"""The metric registry, and the guard that leaves a scored model as the caller gave it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from fewshot_core.catalog import Kind, MetricInfo, Setting, info
from fewshot_core.device import read
from fewshot_core.errors import MetricError


@dataclass(frozen=True)
class Batch:
    """Inputs and integer targets of one scoring batch."""

    inputs: torch.Tensor
    targets: torch.Tensor


@dataclass(frozen=True)
class Metric:
    """A metric of the catalogue bound to the code that computes it.

    ``compute(model, batches, **settings)`` returns a float (scalar metrics) or a (R, D) tensor of
    R vectors (vector metrics). ``prepare(model, batches, **settings)`` does the work shared by every
    variant of a split once and returns the (model, batches) that ``compute`` then sees; a prepared
    model that is not the caller's is the metric's own copy.
    """

    info: MetricInfo
    compute: Callable[..., float | torch.Tensor] | None  # None: no values (the random baseline)
    citation: str
    prepare: Callable[..., tuple[nn.Module, list[Batch]]] | None = None
    prepare_settings: tuple[str, ...] = ()  # the settings that go to prepare(), not compute()
    needs_edge: bool = False  # compute() takes ``edge=`` (gm_nas excludes the split edge's modules)
    seeded: bool = False  # prepare() takes ``seed=``: everything the metric draws at random comes from it

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def kind(self) -> Kind:
        return self.info.kind

    @property
    def defaults(self) -> dict:
        return self.info.defaults


REGISTRY: dict[str, Metric] = {}


def register(name: str, compute: Callable[..., float | torch.Tensor] | None, citation: str,
             **options) -> Metric:
    """Bind the catalogue entry ``name`` to ``compute`` (and ``prepare``, ... in ``options``)."""
    if name in REGISTRY:
        raise ValueError(f"metric {name!r} registered twice")
    REGISTRY[name] = Metric(info(name), compute, citation, **options)
    return REGISTRY[name]


def register_user(name: str, function: str, kind: Kind) -> Metric:
    """Register the user's ``function`` (``"file.py:name"``) as the metric ``name``: its settings are
    the function's own keyword parameters, passed from the configuration as they are."""
    import inspect

    from fewshot_core import user_metrics

    fn = user_metrics.load(function)
    params = list(inspect.signature(fn).parameters.values())[2:]
    settings = {p.name: Setting(None if p.default is p.empty else p.default, object, "the user's") for p in params
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    REGISTRY[name] = Metric(MetricInfo(name, name, kind, "user", function, settings), fn, f"the user's {function}")
    return REGISTRY[name]


def get(name: str) -> Metric:
    if name not in REGISTRY:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """Conv2d and Linear modules, the layers the pruning-based metrics sum over."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


class Snapshot:
    """A module's weights, buffers, gradients, requires_grad flags and train/eval modes, to put back.

    Metrics run BN in train mode (updating running statistics), flip signs or accumulate gradients,
    and a metric of the user's may take an optimiser step: :meth:`restore` undoes all of it in place
    (one copy per tensor, no new module), so that every call sees the state the snapshot saw.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.tensors = [(v, v.detach().clone()) for v in model.state_dict(keep_vars=True).values()]
        self.params = [(p, None if p.grad is None else p.grad.detach().clone(), p.requires_grad)
                       for p in model.parameters()]
        self.modes = [(m, m.training) for m in model.modules()]

    @torch.no_grad()
    def restore(self) -> None:
        for live, saved in self.tensors:
            live.copy_(saved)
        for p, grad, flag in self.params:
            p.requires_grad_(flag)
            p.grad = None if grad is None else grad.clone()
        for m, training in self.modes:
            m.training = training


@contextlib.contextmanager
def preserved(model: nn.Module) -> Iterator[Snapshot]:
    """Restore weights, buffers, gradients, requires_grad and train/eval modes on exit; the snapshot
    is given to the body, which may restore it as often as it likes (before each variant)."""
    snapshot = Snapshot(model)
    try:
        yield snapshot
    finally:
        snapshot.restore()


def layer_sum(values: list[torch.Tensor]) -> float:
    """The sum of per-layer values (0-d tensors) read back in one copy, added in layer order in double
    precision: the value summing each ``.item()`` gives, with one wait for the device instead of one per layer."""
    return float(sum(read(torch.stack(values).double()))) if values else 0.0


def finite(name: str, value: float) -> float:
    """``value`` if finite, else a :class:`MetricError` naming the metric."""
    if value != value or value in (float("inf"), float("-inf")):
        raise MetricError(f"metric {name!r} produced a non-finite value ({value})")
    return float(value)
