"""Gradient matching: ``gm`` (the paper authors' zero-cost form) and ``gm_nas`` (GM-NAS).

Hu et al., "Generalizing Few-Shot NAS with Gradient Matching", ICLR 2022. Both are vector metrics:
the similarity of two operations is the cosine of their variants' gradient vectors.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from fewshot_core.metrics.base import Batch, preserved, register, weight_layers

CITATION = "Hu et al., Generalizing Few-Shot NAS with Gradient Matching, ICLR 2022"


def _flat_grads(params: list[torch.Tensor], loss: torch.Tensor) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)])


def gm(model: nn.Module, batches: list[Batch]) -> torch.Tensor:
    """(R, D): per batch, the gradient of the summed logits w.r.t. every Conv2d/Linear weight at the
    current weights (train mode); a weight the variant does not use contributes zeros."""
    with preserved(model):
        model.train()
        params = [m.weight for m in weight_layers(model)]
        return torch.stack([_flat_grads(params, model(b.inputs).sum()).detach() for b in batches])


def gm_nas(model: nn.Module, batches: list[Batch], edge: int) -> torch.Tensor:
    """(R, D): per batch, the cross-entropy gradient w.r.t. the shared weights: every parameter of
    the cells (search cells and ResNet blocks) except the split edge's own modules, as GM-NAS's
    ``get_split_gradients`` takes them; the stem, the final batch norm and the classifier are out."""
    own = re.compile(rf"^cells\.\d+\.edges\.{edge}\.")
    with preserved(model):
        model.train()
        params = [p for n, p in model.named_parameters() if n.startswith("cells.") and not own.match(n)]
        return torch.stack([
            _flat_grads(params, F.cross_entropy(model(b.inputs), b.targets)).detach() for b in batches
        ])


register("gm", gm, CITATION + " (as a zero-cost metric, Ly-Manson et al.)")
register("gm_nas", gm_nas, CITATION, needs_edge=True)
