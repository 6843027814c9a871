"""The GPU figures, in one run of a few minutes on a machine with a GPU (the CPU when there is none).

Prints one line per figure, each with what it is compared against in the same run:
- the supernet's forward+backward throughput at the paper's size (C=16, N=5, 32x32, batch 64), in
  mixture and single-path mode, against xautodl's supernet on the same device (when installed);
- one split of every metric at the paper's size (5 variants and the parent; ntk on 16 images), against
  the same split on the CPU (first metrics only, when the budget allows);
- one leaf epoch on CIFAR-10-shaped data (25,000 training images, 32x32, single-path, batch 64), in
  float32 and in mixed precision (bfloat16, `training.mixed_precision`).

    python benchmarks/gpu.py            # on the GPU when there is one
    python benchmarks/gpu.py --quick    # small sizes: checks that the script runs (CI, a CPU)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fewshot_core import data, metrics  # noqa: E402
from fewshot_core.checks import load_settings  # noqa: E402
from fewshot_core.metrics import Batch  # noqa: E402
from fewshot_core.space import Supernet  # noqa: E402
from fewshot_core.train import resolve_device, train  # noqa: E402

METRICS = ("gm", "gm_nas", "gradnorm", "snip", "grasp", "synflow", "jacobcov", "naswot", "ntk", "lr", "nparams")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def throughput(net: torch.nn.Module, x: torch.Tensor, seconds: float, device: torch.device) -> float:
    """Images per second of forward+backward passes over ``seconds`` (after two warm-up steps)."""
    def step():
        net.zero_grad(set_to_none=True)
        net(x).sum().backward()

    for _ in range(2):
        step()
    sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    sync(device)
    return n * len(x) / (time.perf_counter() - t0)


def split_seconds(name: str, net: Supernet, batch: Batch, device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    metrics.evaluate_split(name, net, 0, [batch])
    sync(device)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the script runs")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--splits-only", action="store_true", help="only the split of every metric")
    args = ap.parse_args()
    device = resolve_device(args.device)
    C, N, size, images, seconds = (4, 1, 8, 512, 0.5) if args.quick else (16, 5, 32, 25000, 8.0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}; C={C} N={N} {size}x{size}")
    torch.manual_seed(0)
    x = torch.randn(64, 3, size, size, device=device)
    for mode in () if args.splits_only else ("mixture", "single_path"):
        net = Supernet(C=C, N=N, input_size=size, mode=mode).to(device)
        ours = throughput(net, x, seconds, device)
        peer = "xautodl's supernet: not installed"
        try:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.reference_metrics import copy_weights, xautodl_peer

            other = xautodl_peer(C, N, mode == "single_path")
            copy_weights(net, other)
            theirs = throughput(other.to(device), x, seconds, device)
            peer = f"xautodl's supernet {theirs:.0f} images/s ({ours / theirs:.2f}x)"
        except Exception as err:  # the peer is optional: say why it is missing
            peer = f"xautodl's supernet: not measured ({type(err).__name__}: {err})"
        print(f"supernet {mode}: {ours:.0f} images/s forward+backward, batch 64; {peer}")
    torch.manual_seed(0)
    net = Supernet(C=C, N=N, input_size=size).to(device)
    batch = Batch(torch.randn(64, 3, size, size, device=device), torch.randint(0, 10, (64,), device=device))
    small = Batch(batch.inputs[:16], batch.targets[:16])
    total = 0.0
    for m in METRICS:
        s = split_seconds(m, net, small if m == "ntk" else batch, device)
        total += s
        print(f"split of edge 0 at C={C} N={N}, {m}: {s:.2f} s on {name}")
    print(f"one split of every metric: {total:.1f} s on {name} (the CPU's, this machine's 2 cores: BENCHMARKS.md)")
    if args.splits_only:
        return
    s = load_settings({"run": "x", "seeds": [0], "metrics": {"snip": {}}, "data": {"name": "synthetic",
                                                                                   "input_size": size}})
    d = data.synthetic(n_train=images, n_test=16, input_size=size)
    for amp in (False, True):
        cfg = dataclasses.replace(s.leaves, epochs=1, mixed_precision=amp)
        torch.manual_seed(0)
        leaf = Supernet(C=C, N=N, input_size=size)
        t0 = time.perf_counter()
        train(leaf, d, np.arange(images), cfg, 0, device=device, label="leaf")
        sync(device)
        print(f"one leaf epoch, {images} images, single-path, {'bfloat16' if amp else 'float32'}: "
              f"{time.perf_counter() - t0:.1f} s on {name}" + ("" if device.type == "cuda" or not amp else
                                                              " (mixed precision applies on a GPU only)"))


if __name__ == "__main__":
    main()
