"""Baselines: ``nparams`` (parameters a network uses) and ``random`` (a seeded random grouping)."""

from __future__ import annotations

from torch import nn

from fewshot_core.metrics.base import Batch, preserved, register


def nparams(model: nn.Module, batches: list[Batch]) -> float:
    """Number of parameter entries that take part in the forward pass (those that receive a
    gradient), so a sub-supernet counts only its enabled operations."""
    with preserved(model):
        model.zero_grad(set_to_none=True)
        model(batches[0].inputs[:2]).sum().backward()
        return float(sum(p.numel() for p in model.parameters() if p.grad is not None))


register("nparams", nparams, "parameter count baseline")
register("random", None, "random grouping baseline: no values, groups drawn by splitting.random_partition")
