"""Baselines: ``nparams`` (parameters a network uses), ``convs`` (convolutions in its cell) and ``random``
(a seeded random grouping)."""

from __future__ import annotations

import torch
from torch import nn

from fewshot_core.device import read
from fewshot_core.metrics.base import Batch, MetricError, preserved, register
from fewshot_core.nb201 import OPS, parse_arch


def nparams(model: nn.Module, batches: list[Batch]) -> float:
    """Number of parameter entries whose tensor the output depends on (a non-zero gradient of the
    summed logits, train mode, on the batch), so a sub-supernet counts only its enabled operations
    that reach the output. Not "has a gradient": the supernet runs the convolutions leaving a node
    as one, which gives an unused one a zero gradient where its standalone network gives none."""
    with preserved(model):
        model.train()
        model.zero_grad(set_to_none=True)
        model(batches[0].inputs).sum().backward()
        used = [p for p in model.parameters() if p.grad is not None]
        flags = read(torch.stack([p.grad.any() for p in used])) if used else []
        return float(sum(p.numel() for p, flag in zip(used, flags) if flag))


CONVOLUTIONS = ("nor_conv_1x1", "nor_conv_3x3")


def convs(model: nn.Module, batches: list[Batch]) -> float:
    """Number of convolutions on the cell's edges (1x1 and 3x3 alike), counted once per edge: for a
    (sub-)supernet, those its mask enables; for a standalone network, those of its architecture. A
    property of the structure alone, no data: a split by it puts the convolutions of the split edge apart
    from the operations without weights, the cheapest split a study can hold beside a metric's."""
    from fewshot_core.space import StandaloneNet, Supernet

    if isinstance(model, Supernet):
        return float(model.mask[:, [OPS.index(op) for op in CONVOLUTIONS]].sum())
    if isinstance(model, StandaloneNet):
        return float(sum(op in CONVOLUTIONS for op in parse_arch(model.arch)))
    raise MetricError(f"convs counts the convolutions of a NAS-Bench-201 cell; a {type(model).__name__} has none")


register("nparams", nparams, "parameter count baseline")
register("convs", convs, "convolution count baseline")
register("random", None, "random grouping baseline: no values, groups drawn by splitting.random_partition")
