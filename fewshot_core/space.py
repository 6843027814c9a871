"""The NAS-Bench-201 search space: operations, edges, masks, the supernet and standalone networks.

A sub-supernet is the one :class:`Supernet` module plus a boolean mask of shape (6 edges, 5 ops);
disabling an operation changes the mask, never the module (docs/design.md §1).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fewshot_core.nb201 import (  # noqa: F401  (re-exported: the space's vocabulary)
    CONV_OPS,
    EDGE_NODES,
    EDGES,
    NUM_EDGES,
    NUM_OPS,
    OPS,
    MaskError,
    arch_to_mask,
    architectures,
    format_arch,
    full_mask,
    mask_to_arch,
    parse_arch,
    validate_mask,
)

ForwardMode = Literal["mixture", "single_path"]


# ----------------------------------------------------------------------------- building blocks


class ReLUConvBN(nn.Module):
    """ReLU, convolution (no bias), batch norm: the benchmark's ``nor_conv_kxk`` and ResNet halves."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, affine: bool = True) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.relu(x)))


class ResNetBasicBlock(nn.Module):
    """The benchmark's stride-2 reduction block between stages."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


_POOL_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def avg_pool_3x3(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``scale`` times the 3x3, stride-1 average with padding excluded from the count.

    Computed as a depthwise convolution with a ones kernel times the reciprocal of the count:
    several times faster on the CPU than ``F.avg_pool2d(..., count_include_pad=False)``, same values.
    """
    c, h, w = x.shape[1:]
    key = (c, h, w, x.device, x.dtype, scale)
    if key not in _POOL_CACHE:
        if len(_POOL_CACHE) > 64:
            _POOL_CACHE.clear()
        ones = torch.ones(1, 1, h, w, device=x.device, dtype=x.dtype)
        count = F.conv2d(ones, torch.ones(1, 1, 3, 3, device=x.device, dtype=x.dtype), padding=1)
        _POOL_CACHE[key] = (torch.ones(c, 1, 3, 3, device=x.device, dtype=x.dtype), scale / count)
    kernel, inv_count = _POOL_CACHE[key]
    return F.conv2d(x, kernel, padding=1, groups=c) * inv_count


class AvgPool(nn.Module):
    """``avg_pool_3x3``: stride 1, padding 1, padding excluded from the average."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return avg_pool_3x3(x)


class Zero(nn.Module):
    """``none``: zeros of the input's shape that do not depend on it (the benchmark's ``x.mul(0)``
    keeps a zero gradient path; here, as in the supernet, where ``none`` adds nothing, the layers
    whose only way to the output is a ``none`` edge take no part: ``nparams`` does not count them)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class _Skeleton(nn.Module):
    """The benchmark's macro skeleton; subclasses supply the search cells."""

    def __init__(self, C: int, N: int, num_classes: int, input_size: int) -> None:
        super().__init__()
        if C < 1 or N < 1 or num_classes < 2:
            raise ValueError(f"need C >= 1, N >= 1, num_classes >= 2; got C={C}, N={N}, num_classes={num_classes}")
        self.C, self.N, self.num_classes, self.input_size = C, N, num_classes, input_size
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        cells: list[nn.Module] = []
        c_prev = C
        for stage, c in enumerate((C, 2 * C, 4 * C)):
            if stage > 0:
                cells.append(ResNetBasicBlock(c_prev, c))
            cells.extend(self._make_cell(c) for _ in range(N))
            c_prev = c
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU())
        self.classifier = nn.Linear(c_prev, num_classes)

    def _make_cell(self, C: int) -> nn.Module:
        raise NotImplementedError

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.lastact(x).mean(dim=(2, 3)))


# ----------------------------------------------------------------------------- standalone network


class InferCell(nn.Module):
    """One cell of a single architecture; ``edges[e]`` is the operation on edge ``EDGES[e]``."""

    def __init__(self, ops: Sequence[str], C: int, affine: bool = True) -> None:
        super().__init__()
        self.op_names = tuple(ops)
        self.edges = nn.ModuleList(_make_op(op, C, affine) for op in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for dst in (1, 2, 3):
            nodes.append(sum(self.edges[e](nodes[src]) for e, (d, src) in enumerate(EDGE_NODES) if d == dst))
        return nodes[3]


def _make_op(op: str, C: int, affine: bool) -> nn.Module:
    if op == "none":
        return Zero()
    if op == "skip_connect":
        return nn.Identity()
    if op == "avg_pool_3x3":
        return AvgPool()
    return ReLUConvBN(C, C, 1 if op == "nor_conv_1x1" else 3, affine=affine)


class StandaloneNet(_Skeleton):
    """The benchmark's network for one architecture (BN affine everywhere, as in NAS-Bench-201;
    ``cell_affine=False`` drops the cells' BN affine parameters, as the supernet's cells have none)."""

    def __init__(self, arch: str, C: int = 16, N: int = 5, num_classes: int = 10, input_size: int = 32,
                 cell_affine: bool = True) -> None:
        self.arch = format_arch(parse_arch(arch))
        self.cell_affine = cell_affine
        super().__init__(C, N, num_classes, input_size)

    def _make_cell(self, C: int) -> nn.Module:
        return InferCell(parse_arch(self.arch), C, self.cell_affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self._head(x)


def standalone(arch: str, C: int = 16, N: int = 5, num_classes: int = 10, input_size: int = 32) -> StandaloneNet:
    """Build the single network an architecture string names."""
    return StandaloneNet(arch, C=C, N=N, num_classes=num_classes, input_size=input_size)


# ----------------------------------------------------------------------------- supernet


class SharedReLU(nn.ReLU):
    """The ReLU of a source node, run once for every convolution leaving it (a standalone network
    has one per convolution). ``consumers`` says how many convolutions read its output in the
    current call, so that what counts ReLUs (``naswot``'s codes) counts it as the standalone
    network of the same architecture would."""

    consumers: int = 1


class ConvBN(nn.Module):
    """Convolution and non-affine BN of one ``nor_conv_kxk`` in a search cell; the ReLU is shared."""

    def __init__(self, C: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(C, C, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(C, affine=False)


class SearchCell(nn.Module):
    """A cell holding every operation of every edge.

    The forward pass groups work by source node: the ReLU, the pooling and the convolutions of all
    edges leaving one node run once, as one batched convolution per kernel size and one batch norm.
    """

    #: Run each convolution's batch norm on its own channels rather than one over all of them (batch-norm
    #: re-estimation sets it: its running statistics then round as each module's alone would).
    separate_bn: bool = False

    def __init__(self, C: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(
            nn.ModuleDict({op: ConvBN(C, 1 if op == "nor_conv_1x1" else 3) for op in CONV_OPS})
            for _ in EDGES
        )
        # One ReLU module per source node (0, 1, 2): the input of every conv leaving that node.
        self.relus = nn.ModuleList(SharedReLU() for _ in range(3))

    def _convs(self, x: torch.Tensor, src: int, convs: list[tuple[ConvBN, float]], kernel: int) -> torch.Tensor:
        """Run ConvBNs that all read ``x`` as one convolution and one batch norm.

        Each module's output is scaled by its mixture weight inside the batch norm (as its affine
        weight), so the mixture costs no extra pass over the activations.
        """
        mods = [m for m, _ in convs]
        weight = mods[0].conv.weight if len(mods) == 1 else torch.cat([m.conv.weight for m in mods])
        relu = self.relus[src]
        relu.consumers = len(mods)
        y = F.conv2d(relu(x), weight, padding=kernel // 2)
        bns = [m.bn for m in mods]
        bn0, C = bns[0], mods[0].conv.out_channels
        scale = None
        if any(w != 1.0 for _, w in convs):
            # never below float32: under bfloat16 autocast the batch norm keeps float32 statistics, and
            # CUDA's kernel takes a bfloat16 weight as saying they are bfloat16 too
            scale = _mixture_scale(tuple(w for _, w in convs), C, torch.promote_types(y.dtype, torch.float32), y.device)
        if not isinstance(bn0, nn.BatchNorm2d):  # batch norm removed (synflow's copy)
            return y if scale is None else y * scale.view(1, -1, 1, 1)
        if self.separate_bn or bn0.momentum is None:  # each module's statistics on its own, as alone
            out = torch.cat([b(c) for b, c in zip(bns, y.chunk(len(bns), dim=1))], dim=1) if len(bns) > 1 else bn0(y)
            return out if scale is None else out * scale.view(1, -1, 1, 1)
        tracking = bn0.running_mean is not None
        if len(bns) == 1 or not tracking:
            rm, rv = bn0.running_mean, bn0.running_var
        else:
            rm = torch.cat([b.running_mean for b in bns])
            rv = torch.cat([b.running_var for b in bns])
        use_batch_stats = self.training or not tracking
        out = F.batch_norm(y, rm, rv, scale, None, use_batch_stats, bn0.momentum, bn0.eps)
        if self.training and tracking:
            with torch.no_grad():
                for i, b in enumerate(bns):
                    if len(bns) > 1:
                        b.running_mean.copy_(rm[i * C : (i + 1) * C])
                        b.running_var.copy_(rv[i * C : (i + 1) * C])
                    b.num_batches_tracked.add_(1)
        return out

    def forward(self, x: torch.Tensor, weights: list[list[tuple[int, float]]]) -> torch.Tensor:
        """``weights[e]`` lists (op index, weight) of the operations that run on edge ``e``."""
        acc: list[torch.Tensor | None] = [x, None, None, None]
        for src in (0, 1, 2):
            h = acc[src]
            if h is None:  # nothing reached this node: it holds zeros, which still flow through BN
                h = torch.zeros_like(x)
            out_edges = _OUT_EDGES[src]
            terms: list[tuple[int, torch.Tensor]] = []  # (target node, weighted term)
            for op_idx in (2, 3):
                sel = [(e, w) for e in out_edges for o, w in weights[e] if o == op_idx]
                if sel:
                    mods = [(self.edges[e][OPS[op_idx]], w) for e, w in sel]
                    y = self._convs(h, src, mods, 1 if op_idx == 2 else 3)
                    chunks = y.chunk(len(sel), dim=1) if len(sel) > 1 else (y,)
                    terms.extend((EDGE_NODES[e][0], chunk) for (e, _), chunk in zip(sel, chunks))
            for e in out_edges:
                for op_idx, w in weights[e]:
                    if op_idx == 1:
                        terms.append((EDGE_NODES[e][0], h if w == 1.0 else h * w))
                    elif op_idx == 4:
                        terms.append((EDGE_NODES[e][0], avg_pool_3x3(h, w)))
            for dst, term in terms:
                acc[dst] = term if acc[dst] is None else acc[dst] + term
        return acc[3] if acc[3] is not None else torch.zeros_like(x)


_SCALES: dict[tuple, torch.Tensor] = {}


def _mixture_scale(weights: tuple[float, ...], C: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The mixture weights of convolutions run as one, one per output channel: made once per set of
    weights and device (a tensor built from Python numbers on a GPU is a copy the host waits for)."""
    key = (weights, C, dtype, device)
    if key not in _SCALES:
        if len(_SCALES) > 256:
            _SCALES.clear()
        _SCALES[key] = torch.tensor(weights, dtype=dtype, device=device).repeat_interleave(C)
    return _SCALES[key]


_OUT_EDGES: tuple[tuple[int, ...], ...] = tuple(
    tuple(e for e, (_, s) in enumerate(EDGE_NODES) if s == src) for src in range(3)
)


class Supernet(_Skeleton):
    """Every NAS-Bench-201 architecture in one module, restricted by a (6, 5) boolean mask.

    ``mixture`` mode averages each edge's enabled operations (the authors' joint mode);
    ``single_path`` draws one enabled operation per edge per forward call, shared by all cells.
    """

    def __init__(
        self,
        C: int = 16,
        N: int = 5,
        num_classes: int = 10,
        input_size: int = 32,
        mode: ForwardMode = "mixture",
        mask: np.ndarray | None = None,
    ) -> None:
        super().__init__(C, N, num_classes, input_size)
        self.mode: ForwardMode = mode
        self.mask = full_mask() if mask is None else validate_mask(mask)
        self.path_generator = torch.Generator().manual_seed(0)

    def _make_cell(self, C: int) -> nn.Module:
        return SearchCell(C)

    @property
    def mask(self) -> np.ndarray:
        return self._mask.copy()

    @mask.setter
    def mask(self, mask: np.ndarray) -> None:
        self._mask = validate_mask(mask)

    def set_mask(self, mask: np.ndarray, connected: bool = True) -> None:
        """Set the mask; ``connected=False`` also accepts masks whose every architecture leaves the
        cell's output unreachable (the variants of a split that metrics must still score)."""
        if connected:
            self.mask = mask
            return
        m = np.asarray(mask, dtype=bool)
        if m.shape != (NUM_EDGES, NUM_OPS) or not m.any(axis=1).all():
            validate_mask(m)  # raises with the reason
        self._mask = m.copy()

    @property
    def mode(self) -> ForwardMode:
        return self._mode

    @mode.setter
    def mode(self, mode: ForwardMode) -> None:
        if mode not in ("mixture", "single_path"):
            raise ValueError(f"forward mode must be 'mixture' or 'single_path', got {mode!r}")
        self._mode = mode

    def sample_arch(self, generator: torch.Generator | None = None) -> str:
        """Draw one architecture of the mask uniformly (one enabled op per edge)."""
        gen = self.path_generator if generator is None else generator
        ops = []
        for row in self._mask:
            enabled = np.flatnonzero(row)
            ops.append(OPS[int(enabled[torch.randint(len(enabled), (1,), generator=gen).item()])])
        return format_arch(ops)

    def edge_weights(self, arch: str | None = None) -> list[list[tuple[int, float]]]:
        """Per edge, the (op index, weight) pairs the forward pass runs for the mask or one arch."""
        m = self._mask if arch is None else arch_to_mask(arch)
        if arch is not None and (m & ~self._mask).any():
            raise MaskError(f"architecture {arch} is not inside the supernet's mask")
        return [[(int(o), 1.0 / row.sum()) for o in np.flatnonzero(row)] for row in m]

    def forward(self, x: torch.Tensor, arch: str | None = None) -> torch.Tensor:
        """Logits; ``arch`` runs one architecture of the mask, whatever the mode."""
        if arch is None and self._mode == "single_path":
            arch = self.sample_arch()
        weights = self.edge_weights(arch)
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x, weights) if isinstance(cell, SearchCell) else cell(x)
        return self._head(x)


def extract(net: Supernet, arch: str) -> StandaloneNet:
    """The standalone network of ``arch`` holding the supernet's weights: the same logits as the
    supernet running ``arch`` (its cells' batch norms without affine parameters, like the supernet's)."""
    ops = parse_arch(arch)
    if (arch_to_mask(arch) & ~net.mask).any():
        raise MaskError(f"architecture {arch} is not inside the supernet's mask")
    out = StandaloneNet(arch, net.C, net.N, net.num_classes, net.input_size, cell_affine=False)
    source = net.state_dict()
    state = {}
    for name in out.state_dict():
        cell = re.fullmatch(r"cells\.(\d+)\.edges\.(\d)\.(.+)", name)  # an operation of a search cell
        if cell is not None:
            k, e, rest = cell.groups()
            state[name] = source[f"cells.{k}.edges.{e}.{ops[int(e)]}.{rest}"]
        else:
            state[name] = source[name]
    out.load_state_dict(state)
    return out.to(next(net.parameters()).device).train(net.training)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
