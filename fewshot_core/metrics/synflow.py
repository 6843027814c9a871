"""synflow as a zero-cost proxy.

Tanaka et al., "Pruning neural networks without any data by iteratively conserving synaptic flow",
NeurIPS 2020; used as a NAS proxy by Abdelfattah et al., ICLR 2021. Computed on a copy of the
model: batch norm replaced by identity (as the zero-cost-proxies code does with ``bn=False``),
float64, every parameter and buffer made non-negative, one all-ones input image, R = sum of the
logits; the value is the sum over Conv2d/Linear weights of |W * dR/dW|. Float64 because values reach
1e46 on NAS-Bench-201 networks, past float32's range.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from fewshot_core.metrics.base import Batch, finite, layer_sum, register, weight_layers


def linearised_copy(model: nn.Module) -> nn.Module:
    """A float64 copy of ``model`` with batch norms replaced by identity and all values made >= 0."""
    twin = copy.deepcopy(model)
    for _, module in list(twin.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(module, child_name, nn.Identity())
    twin.double().eval()
    with torch.no_grad():
        for t in twin.state_dict().values():
            if t.is_floating_point():
                t.abs_()
    for p in twin.parameters():
        p.requires_grad_(True)
    return twin


def prepare(model: nn.Module, batches: list[Batch]) -> tuple[nn.Module, list[Batch]]:
    """The linearised copy, and the all-ones image of the batches' input shape."""
    x = batches[0].inputs
    ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)
    return linearised_copy(model), [Batch(ones, batches[0].targets[:1])]


def synflow_on_prepared(twin: nn.Module, batches: list[Batch]) -> float:
    """The synflow value of a model already passed through :func:`prepare`."""
    twin.zero_grad(set_to_none=True)
    twin(batches[0].inputs).sum().backward()
    total = layer_sum([(m.weight * m.weight.grad).abs().sum() for m in weight_layers(twin) if m.weight.grad is not None])
    twin.zero_grad(set_to_none=True)
    return finite("synflow", total)


def synflow(model: nn.Module, batches: list[Batch]) -> float:
    """synflow of ``model`` (left untouched: the work happens on a copy)."""
    return synflow_on_prepared(*prepare(model, batches))


register("synflow", synflow_on_prepared, "Tanaka et al., SynFlow, NeurIPS 2020; Abdelfattah et al., ICLR 2021",
         prepare=prepare)
