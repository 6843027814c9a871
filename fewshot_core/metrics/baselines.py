"""Baselines: ``nparams`` (parameters a network uses) and ``random`` (a seeded random grouping)."""

from __future__ import annotations

import torch
from torch import nn

from fewshot_core.device import read
from fewshot_core.metrics.base import Batch, preserved, register


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


register("nparams", nparams, "parameter count baseline")
register("random", None, "random grouping baseline: no values, groups drawn by splitting.random_partition")
