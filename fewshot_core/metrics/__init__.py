"""Zero-cost metrics: whole-network values, per-split variant values, and similarity matrices.

docs/design.md §2. ``score(name, model, inputs, targets)`` gives any scalar metric of any classifier;
:func:`evaluate_split` scores every variant of one split of a supernet; :func:`similarity` turns the
values into the matrix that the min-cut partitions.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from fewshot_core.device import exact
from fewshot_core.metrics import baselines, gradient_matching, mellor, saliency, synflow, tenas  # noqa: F401  (registration)
from fewshot_core.metrics.base import (
    REGISTRY,
    Batch,
    Metric,
    MetricError,
    Snapshot,
    get,
    isolated,
    preserved,
    register_user,
)
from fewshot_core.space import OPS, Supernet

__all__ = ["REGISTRY", "Batch", "Metric", "MetricError", "VariantValue", "combine", "evaluate_split", "get",
           "register_user", "score", "similarity", "value"]

def _arguments(metric: Metric, settings: dict | None, seed: int) -> tuple[dict, dict]:
    """The keyword arguments of ``prepare`` and of ``compute``: the catalogue's defaults, overridden by
    ``settings``; a metric that draws random numbers gets ``seed`` in ``prepare``."""
    unknown = set(settings or {}) - set(metric.defaults)
    if unknown:
        raise ValueError(f"metric {metric.name!r} has no setting(s) {sorted(unknown)}; "
                         f"its settings: {sorted(metric.defaults) or 'none'}")
    cfg = {**metric.defaults, **(settings or {})}
    prep = {k: cfg.pop(k) for k in metric.prepare_settings}
    if metric.seeded:
        prep["seed"] = seed
    return prep, cfg


def value(name: str, model: torch.nn.Module, batches: list[Batch], settings: dict | None = None, seed: int = 0,
          edge: int | None = None, where: str = "", say: Callable[[str], None] | None = None) -> float | torch.Tensor:
    """A metric's value on any classifier: a float (scalar metrics) or an (R, D) tensor (vector
    metrics); the model is left as the caller gave it, and the process as the metric found it
    (:func:`~fewshot_core.metrics.base.isolated`; ``say`` tells what was put back). ``seed`` fixes what the
    metric draws at random (``lr``'s crops and thin twin); ``edge`` is the split edge of ``gm_nas``;
    ``where`` names the network in messages. A metric of the user's is checked for its form (:func:`_form`)."""
    metric = get(name)
    if metric.kind == "none":
        raise ValueError(f"metric {name!r} has no values: it groups operations at random")
    prep, cfg = _arguments(metric, settings, seed)
    if metric.needs_edge:
        if edge is None:
            raise ValueError(f"metric {name!r} leaves the split edge's own modules out: give edge=")
        cfg["edge"] = edge
    who = _who(metric)
    with preserved(model), exact(_device_of(model)), _at(where):
        if metric.prepare is not None:
            with isolated(who, model, batches, where, say):
                model, batches = metric.prepare(model, batches, **prep)
        with isolated(who, model, batches, where, say):
            out = metric.compute(model, batches, **cfg)
    return _form(metric, batches, out, where) if metric.info.family == "user" else out


def score(name: str, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor, seed: int = 0,
          **settings) -> float:
    """The value of a scalar metric on any classifier and one batch; the model is left as the caller gave it."""
    if get(name).kind != "scalar":
        raise ValueError(f"metric {name!r} is a {get(name).kind} metric: it has no single value per network")
    return float(value(name, model, [Batch(inputs, targets)], settings, seed))


@dataclass
class VariantValue:
    """The value of one variant (the parent with the split edge restricted to ``op``)."""

    op: str
    value: float | torch.Tensor
    seconds: float


def evaluate_split(name: str, net: Supernet, edge: int, batches: list[Batch], settings: dict | None = None,
                   where: str = "", seed: int = 0, say: Callable[[str], None] | None = None,
                   ) -> tuple[list[VariantValue], float | None]:
    """Every variant's value on one split, and the parent's value (scalar metrics; else None).

    Variants share the supernet (masks, not copies), its weights and the batches; the work that
    does not depend on the variant (a metric's ``prepare``) runs once. Every call (the parent's and
    each variant's) starts from the same state: weights, buffers, gradients and modes are put back
    before it (:class:`~fewshot_core.metrics.base.Snapshot`), so a metric that accumulates gradients,
    steps an optimiser or updates batch-norm statistics gives each variant the value it would give it
    alone; hooks, torch's settings, the working folder and the random generators are put back after it
    (:func:`~fewshot_core.metrics.base.isolated`, which ``say`` tells). Runs in mixture mode. A
    non-finite value, or a value of the wrong form, raises :class:`MetricError` naming the metric and
    ``where`` (node and edge). ``seed`` fixes what the
    metric draws at random; the workflow derives it from the tree's seed and the node.
    """
    metric = get(name)
    if metric.kind == "none":
        return [], None
    prep, compute_cfg = _arguments(metric, settings, seed)
    if metric.needs_edge:
        compute_cfg["edge"] = edge
    parent_mask = net.mask
    parent_mode = net.mode
    who = _who(metric)
    with preserved(net), exact(_device_of(net)):
        net.mode = "mixture"
        t0 = time.perf_counter()
        model, prepared = net, batches
        if metric.prepare is not None:
            with isolated(who, net, batches, where, say):
                model, prepared = metric.prepare(net, batches, **prep)
        shared = time.perf_counter() - t0
        ops = [OPS[o] for o in np.flatnonzero(parent_mask[edge])]
        fresh = Snapshot(model)

        def call(mask: np.ndarray, at: str):
            fresh.restore()
            model.set_mask(mask, connected=False)
            if model is net:
                net.mode = "mixture"
            with isolated(who, model, prepared, at, say):
                out = metric.compute(model, prepared, **compute_cfg)
            return _form(metric, batches, out, at)

        try:
            with _at(where):
                parent = call(parent_mask, f"{where} (parent)") if metric.kind == "scalar" else None
                out = []
                for op in ops:
                    m = parent_mask.copy()
                    m[edge] = False
                    m[edge, OPS.index(op)] = True
                    t0 = time.perf_counter()
                    value = call(m, f"{where} op {op}")
                    out.append(VariantValue(op, value, time.perf_counter() - t0 + shared / len(ops)))
        finally:
            model.set_mask(parent_mask, connected=False)
            net.mask = parent_mask
            net.mode = parent_mode
    return out, parent


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters(), torch.empty(0)).device


@contextlib.contextmanager
def _at(where: str) -> Iterator[None]:
    """A :class:`MetricError` from the body says ``where`` it happened (once)."""
    try:
        yield
    except MetricError as err:
        if where and where not in str(err):
            raise MetricError(f"{err} at {where}") from err
        raise


def _who(metric: Metric) -> str:
    """How messages name a metric: its name and its code."""
    return f"metric {metric.name!r} ({metric.citation})"


def _form(metric: Metric, batches: list[Batch], value, where: str) -> float | torch.Tensor:
    """A metric's value checked for its kind: one finite number (scalar) or a finite (batches, D) tensor
    (vector); anything else is a :class:`MetricError` naming the metric, its code, and what was expected."""
    who = _who(metric)
    if metric.kind == "scalar":
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise MetricError(f"{who} returned a tensor of shape {tuple(value.shape)} at {where}: a scalar metric "
                                  "returns one number (or declare kind: vector and return a (batches, D) tensor)")
            value = value.detach().item()
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise MetricError(f"{who} returned {type(value).__name__} at {where}: a scalar metric returns one number")
        if not np.isfinite(float(value)):
            raise MetricError(f"{who} produced a non-finite value ({float(value)}) at {where}")
        return float(value)
    if not isinstance(value, torch.Tensor) or value.ndim != 2 or value.shape[0] != len(batches):
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise MetricError(f"{who} returned {shape} at {where}: a vector metric returns a ({len(batches)}, D) tensor, "
                          "one row per batch (or declare kind: scalar and return one number)")
    value = value.detach()
    if not torch.isfinite(value).all():
        raise MetricError(f"{who} produced non-finite values at {where}")
    return value


def combine(parts: list[list[np.ndarray]], weights: tuple[float, ...]) -> list[np.ndarray]:
    """The weighted mean of several metrics' similarity matrices over one node's edges (``parts[i][e]``:
    metric i at edge e), each metric's matrices first divided by its largest absolute off-diagonal
    entry over the node's edges.

    Scaling, never shifting (docs/design.md §9): the min-cut's optimum is unchanged by a positive
    factor, and one factor per node keeps the comparison between the node's edges that ``mincut``
    edge selection makes; a shift would favour 1|4 or 2|3 cuts. So one component of weight 1 gives
    exactly that component's splits. A metric whose matrices are all zero off the diagonal adds zeros.
    """
    total = float(sum(weights))
    out = [np.zeros_like(m, dtype=np.float64) for m in parts[0]]
    for matrices, weight in zip(parts, weights):
        scale = max((np.abs(m[~np.eye(len(m), dtype=bool)]).max(initial=0.0) for m in matrices), default=0.0)
        for acc, m in zip(out, matrices):
            acc += (weight / total) * (m / scale if scale > 0 else np.zeros_like(m, dtype=np.float64))
    return out


def similarity(kind: str, values: list[float | torch.Tensor], parent: float | None = None) -> np.ndarray:
    """The operations' similarity matrix: the mean over batches of the cosine of the variants' vectors
    (vector metrics), or -|z_i - z_j| with z = (m - m_parent) / |m_parent| (scalar metrics; when
    the parent's value is 0 the differences are left unnormalised). Vectors are compared where they are
    (a GPU's stay there); only the n x n result is read back."""
    n = len(values)
    if kind == "vector":
        v = torch.stack([torch.as_tensor(x).to(torch.float64) for x in values])  # (n, R, D)
        norms = v.norm(dim=2)
        unit = v / norms.unsqueeze(2).clamp_min(1e-300)
        both = torch.cat([torch.einsum("ird,jrd->ijr", unit, unit).mean(dim=2), (norms == 0).any(dim=1).double()[:, None]],
                         dim=1).cpu().numpy()
        sim, zero = both[:, :n].copy(), both[:, n] > 0
        sim[zero, :] = 0.0
        sim[:, zero] = 0.0
        np.fill_diagonal(sim, 1.0)
        return (sim + sim.T) / 2
    if kind == "scalar":
        m = np.asarray(values, dtype=np.float64)
        scale = abs(parent) if parent not in (None, 0.0) else 1.0
        z = (m - (parent or 0.0)) / scale
        return -np.abs(z[:, None] - z[None, :])
    return np.zeros((n, n))
