"""gradnorm, snip and grasp as zero-cost proxies.

Abdelfattah, Mehrotra, Dudziak, Lane. "Zero-Cost Proxies for Lightweight NAS", ICLR 2021
(the pruning saliencies come from Lee et al. 2019, SNIP, and Wang et al. 2020, GraSP).
All three: cross-entropy (mean over the batch) on the given batch, BN in train mode (batch
statistics), float32, summed over the weights of every Conv2d and Linear layer (biases and BN
parameters excluded); a layer that receives no gradient contributes zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewshot_core.metrics.base import Batch, layer_sum, preserved, register, weight_layers

CITATION = "Abdelfattah et al., Zero-Cost Proxies for Lightweight NAS, ICLR 2021"


def _weight_grads(model: nn.Module, batches: list[Batch]) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """(weight, d loss / d weight) of every Conv2d/Linear layer, loss summed over the batches."""
    layers = weight_layers(model)
    weights = [m.weight for m in layers]
    model.train()
    model.zero_grad(set_to_none=True)
    for b in batches:
        F.cross_entropy(model(b.inputs), b.targets).backward()
    return [(w, w.grad) for w in weights]


def gradnorm(model: nn.Module, batches: list[Batch]) -> float:
    """Sum over Conv2d/Linear layers of the L2 norm of the loss gradient w.r.t. the layer's weight."""
    with preserved(model):
        return layer_sum([g.norm() for _, g in _weight_grads(model, batches) if g is not None])


def snip(model: nn.Module, batches: list[Batch]) -> float:
    """Sum over Conv2d/Linear weights of |W * dL/dW| (the connection sensitivity of SNIP)."""
    with preserved(model):
        return layer_sum([(w.detach() * g).abs().sum() for w, g in _weight_grads(model, batches) if g is not None])


def grasp(model: nn.Module, batches: list[Batch], temperature: float) -> float:
    """-Sum over Conv2d/Linear weights of W * (H g), g = dL/dW detached, logits divided by
    ``temperature``. The reference code runs the forward pass twice (once for g, once for the graph
    of g); one forward with ``create_graph`` gives the same g and the same H g (train-mode batch norm
    uses the batch's statistics both times), so it runs once here."""
    with preserved(model):
        weights = [m.weight for m in weight_layers(model)]
        model.train()
        hg: list[torch.Tensor | None] = [None] * len(weights)
        graphs = []
        for b in batches:
            loss = F.cross_entropy(model(b.inputs) / temperature, b.targets)
            graphs.append(torch.autograd.grad(loss, weights, create_graph=True, allow_unused=True))
        g = [None if all(gr[i] is None for gr in graphs) else sum(gr[i].detach() for gr in graphs if gr[i] is not None)
             for i in range(len(weights))]
        for grad_f in graphs:
            z = sum((gi * fi).sum() for gi, fi in zip(g, grad_f) if gi is not None and fi is not None)
            if not isinstance(z, torch.Tensor) or not z.requires_grad:
                continue  # no weight influences the loss twice: H g is zero
            part = torch.autograd.grad(z, weights, allow_unused=True)
            hg = [p if acc is None else (acc if p is None else acc + p) for acc, p in zip(hg, part)]
        return 0.0 - layer_sum([(w.detach() * h).sum() for w, h in zip(weights, hg) if h is not None])


register("gradnorm", gradnorm, CITATION)
register("snip", snip, CITATION + "; Lee et al., SNIP, ICLR 2019")
register("grasp", grasp, CITATION + "; Wang et al., GraSP, ICLR 2020")
