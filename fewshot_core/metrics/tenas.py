"""ntk (condition number of the neural tangent kernel) and lr (number of linear regions).

Chen, Gong, Wang. "Neural Architecture Search on ImageNet in Four GPU Hours: A Theoretically
Inspired Perspective" (TE-NAS), ICLR 2021.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vjp, vmap

from fewshot_core.device import read
from fewshot_core.metrics.base import Batch, finite, preserved, register
from fewshot_core.space import Supernet

CITATION = "Chen et al., TE-NAS, ICLR 2021"


def per_sample_gradients(model: nn.Module, x: torch.Tensor, max_bytes: int = 2**28) -> torch.Tensor:
    """G[i] = d(sum_k f_k(x_i))/d theta over every parameter named ``weight`` (BN gamma included).

    One batched forward in the model's current mode (train-mode BN couples the samples, as in
    TE-NAS), then the rows' backward passes batched: ``vmap`` over the one-hot output cotangents of
    one ``vjp``. TE-NAS runs one backward per sample instead; the rows are the same. Rows go in
    chunks of about ``max_bytes`` / (bytes of all module outputs in the forward): on the CPU that
    is all 16 rows at once at C=8, N=1, 16x16 (2.0x the loop per split, BENCHMARKS.md) and three
    at a time at C=16, N=5, 32x32, where chunks of 1 to 8 rows and the loop all took 4-7 s (no
    difference beyond the machine's noise) and all 16 at once was 1.8x slower. Buffers are
    passed as copies (BN running statistics are left untouched). A weight the output does not
    depend on gets a zero column, which changes no entry of G G^T.
    """
    named = dict(model.named_parameters())
    names = [n for n, p in named.items() if n.endswith("weight") and p.requires_grad]
    fixed = {n: p.detach() for n, p in named.items() if n not in names}
    buffers = dict(model.named_buffers())

    def logit_sums(weights: dict[str, torch.Tensor]) -> torch.Tensor:
        state = {**weights, **fixed, **{n: b.clone() for n, b in buffers.items()}}
        return functional_call(model, state, (x,)).sum(dim=1)

    outputs = 0  # bytes of every module's output in the forward: a proxy for what backward touches

    def count(_m: nn.Module, _inp: tuple, out: object) -> None:
        nonlocal outputs
        if isinstance(out, torch.Tensor):
            outputs += out.numel() * out.element_size()

    handles = [m.register_forward_hook(count) for m in model.modules()]
    try:
        _, pullback = vjp(logit_sums, {n: named[n].detach() for n in names})
    finally:
        for h in handles:
            h.remove()
    eye = torch.eye(len(x), dtype=x.dtype, device=x.device)
    (grads,) = vmap(pullback, chunk_size=max(1, min(len(x), max_bytes // max(outputs, 1))))(eye)
    return torch.cat([grads[n].reshape(len(x), -1) for n in names], dim=1)


def ntk(model: nn.Module, batches: list[Batch]) -> float:
    """lambda_max / lambda_min of Theta = G G^T (train mode), mean over batches.

    TE-NAS replaces a NaN condition number by 1e5; here a non-finite one is an error.
    """
    with preserved(model):
        model.train()
        conds = []
        for b in batches:
            g = per_sample_gradients(model, b.inputs).double()
            lam = torch.linalg.eigvalsh(g @ g.T)
            conds.append(lam[-1] / lam[0])
        return finite("ntk", float(np.mean(read(torch.stack(conds)))))


def linear_regions(model: nn.Module, batches: list[Batch]) -> float:
    """The number of distinct on/off patterns of all ReLU outputs over every input of the batches.

    TE-NAS computes sum_i 1 / #{j : pattern_j == pattern_i}, which equals this count.
    """
    codes: list[torch.Tensor] = []

    def hook(_m: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        codes.append(out.detach().reshape(len(out), -1) > 0)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    patterns = []
    try:
        with preserved(model), torch.no_grad():
            model.train()
            for b in batches:
                codes.clear()
                model(b.inputs)
                patterns.append(torch.cat(codes, dim=1))
    finally:
        for h in handles:
            h.remove()
    allp = torch.cat(patterns).cpu().numpy()  # one copy back, after the last batch
    packed = np.packbits(allp, axis=1)
    return float(len(np.unique(packed, axis=0)))


def thin_twin(net: Supernet, width: int, seed: int) -> Supernet:
    """A freshly initialised one-cell-per-stage supernet of ``width`` channels with ``net``'s mask,
    as TE-NAS counts linear regions on a thin network (C=1, N=1) beside the one it prunes."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        twin = Supernet(C=width, N=1, num_classes=net.num_classes, input_size=net.input_size)
    twin.set_mask(net.mask, connected=False)
    return twin.to(next(net.parameters()).device)


def lr_prepare(model: nn.Module, batches: list[Batch], crops: int, crop_size: int, seed: int,
               width: int | None) -> tuple[nn.Module, list[Batch]]:
    """TE-NAS's protocol: many small random crops of the batch images, so that patterns repeat,
    through a thin twin of a supernet (``width`` channels; ``None`` measures the model as given,
    and so does any classifier that is not a :class:`Supernet`). ``seed`` draws the twin's
    weights and the crops; the workflow derives it from the tree's seed and the node."""
    if isinstance(model, Supernet) and width:
        model = thin_twin(model, width, seed)
    x = torch.cat([b.inputs for b in batches])
    g = torch.Generator().manual_seed(seed)
    n, _, h, w = x.shape
    idx = torch.randint(0, n, (crops,), generator=g)  # drawn on the CPU: the same crops on every device
    top = torch.randint(0, h - crop_size + 1, (crops,), generator=g)
    left = torch.randint(0, w - crop_size + 1, (crops,), generator=g)
    rows = (top.view(-1, 1) + torch.arange(crop_size)).view(crops, 1, crop_size, 1)
    cols = (left.view(-1, 1) + torch.arange(crop_size)).view(crops, 1, 1, crop_size)
    at = [t.to(x.device) for t in (idx.view(-1, 1, 1, 1), torch.arange(x.shape[1]).view(1, -1, 1, 1), rows, cols)]
    return model, [Batch(x[tuple(at)], torch.zeros(crops, dtype=torch.long, device=x.device))]


register("ntk", ntk, CITATION)
register("lr", linear_regions, CITATION, prepare=lr_prepare, prepare_settings=("crops", "crop_size", "width"),
         seeded=True)
