"""jacobcov (NASWOT v1) and naswot (NASWOT v2).

Mellor, Turner, Storkey, Crowley. "Neural Architecture Search without Training", ICML 2021
(v1 of the preprint scored the correlation of input Jacobians; the published version scores
the kernel of ReLU binary codes). Both in train mode (batch statistics), float32 forward, float64
linear algebra.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fewshot_core.metrics.base import Batch, finite, preserved, register

CITATION = "Mellor et al., Neural Architecture Search without Training, ICML 2021"


def jacobian_codes(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Per-sample J_i = d(sum_k logits_k)/dx_i, flattened: one backward of the summed logits."""
    x = x.detach().clone().requires_grad_(True)
    out = model(x).sum()
    (grad,) = torch.autograd.grad(out, x, allow_unused=True) if out.requires_grad else (None,)
    if grad is None:  # the output does not depend on the input (a cut-off cell)
        grad = torch.zeros_like(x)
    return grad.reshape(len(x), -1).double().cpu().numpy()


def jacobcov(model: nn.Module, batches: list[Batch], k: float) -> float:
    """-sum over eigenvalues lambda of corrcoef(J) of [log(lambda + k) + 1 / (lambda + k)].

    A sample whose Jacobian is constant (zero variance, e.g. an output that does not depend on the
    input) is taken as perfectly correlated with every sample: it carries no information. This is
    the documented value for variants whose cell output is cut off, where corrcoef is undefined.
    """
    with preserved(model):
        model.train()
        scores = []
        for b in batches:
            j = jacobian_codes(model, b.inputs)
            centred = j - j.mean(axis=1, keepdims=True)
            norms = np.linalg.norm(centred, axis=1)
            flat = norms <= 1e-12 * max(1.0, float(np.abs(j).max(initial=0.0)))
            unit = np.divide(centred, norms[:, None], out=np.zeros_like(centred), where=~flat[:, None])
            corr = unit @ unit.T
            corr[flat, :] = 1.0
            corr[:, flat] = 1.0
            lam = np.linalg.eigvalsh(corr)
            scores.append(-np.sum(np.log(np.clip(lam, 0, None) + k) + 1.0 / (np.clip(lam, 0, None) + k)))
        return finite("jacobcov", float(np.mean(scores)))


def relu_kernel(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """K = sum over ReLU modules of c c^T + (1 - c)(1 - c)^T, c the binary code (ReLU input > 0).

    Both terms are counts. c c^T is one product of 0/1 codes, exact in float32 below 2^24 units per
    sample; (1 - c)(1 - c)^T = units - s_i - s_j + (c c^T)_ij, s the codes' row sums; K adds both in
    float64: the same numbers as two float64 products, at a fraction of the cost.
    """
    n = len(x)
    K = torch.zeros(n, n, dtype=torch.float64, device=x.device)

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
        c = inputs[0].detach().reshape(n, -1) > 0
        units = c.shape[1]
        codes = c.to(torch.float32 if units < 2**24 else torch.float64)
        on = (codes @ codes.T).double()
        s = codes.sum(dim=1, dtype=torch.float64)
        uses = getattr(module, "consumers", 1)  # a supernet's shared ReLU counts once per convolution it feeds
        K.add_(on, alpha=uses).add_(units - s[:, None] - s[None, :] + on, alpha=uses)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return K.cpu().numpy()


def naswot(model: nn.Module, batches: list[Batch]) -> float:
    """log |det K| of the ReLU-code kernel (one forward pass per batch; mean over batches).

    Two departures from the published code, both constant or redundant: it accumulates K over two
    forward passes of the same batch (2K, adding n log 2 to every value), and it hooks every module
    whose class name contains "ReLU", which on NAS-Bench-201 includes ReLUConvBN and so counts the
    convolutions' input codes twice. Here: one pass, ``nn.ReLU`` modules only (docs/design.md §2).
    """
    with preserved(model):
        model.train()
        values = []
        for b in batches:
            _, logdet = np.linalg.slogdet(relu_kernel(model, b.inputs))
            values.append(logdet)
        return finite("naswot", float(np.mean(values)))


register("jacobcov", jacobcov, CITATION + " (v1, arXiv:2006.04647v1)")
register("naswot", naswot, CITATION)
