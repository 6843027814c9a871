"""Supernet forward+backward throughput against xautodl's TinyNetworkDarts / TinyNetworkRANDOM.

Run: ``python benchmarks/supernet_throughput.py`` (needs ``pip install --no-deps xautodl``).
Both networks get the same weights; the script checks their outputs agree before timing. Beside each
figure, fewshot_core's arithmetic rate (the convolutions' and matrix products' FLOPs of a step, forward and
backward, as torch.utils.flop_counter counts them) and, first, this machine's float32 matmul rate.
``--compile`` adds mixture mode under ``torch.compile`` (one compilation per mask) against eager, alternated.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fewshot_core.space import Supernet  # noqa: E402
from tests.reference_metrics import copy_weights, xautodl_peer  # noqa: E402


def throughput(step, batch: int, seconds: float) -> float:
    for _ in range(2):
        step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    return n * batch / (time.perf_counter() - t0)


def matmul_rate(n: int = 2048, rounds: int = 7) -> float:
    """GFLOP/s of an n x n float32 matrix product on torch's threads (median of ``rounds``, after three
    unmeasured ones: the first products here ran at two thirds of the rate)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / sorted(times)[rounds // 2] / 1e9


def step_flops(step, steps: int = 4) -> float:
    """FLOPs of one step, the mean over ``steps`` (single-path steps differ by the sampled architecture)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        for _ in range(steps):
            step()
    return counter.get_total_flops() / steps


def step_ours(ours: torch.nn.Module, x: torch.Tensor) -> None:
    ours.zero_grad(set_to_none=True)
    ours(x).sum().backward()


def step_peer(peer: torch.nn.Module, x: torch.Tensor, single_path: bool) -> None:
    if single_path:
        peer.random_genotype(True)
    peer.zero_grad(set_to_none=True)
    peer(x)[1].sum().backward()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--C", type=int, default=16)
    ap.add_argument("--N", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--compile", action="store_true", help="also time mixture mode under torch.compile")
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"float32 matmul 2048x2048: {matmul_rate():.0f} GFLOP/s")
    print(f"C={args.C} N={args.N} batch={args.batch}; images/s, forward+backward, train mode")
    print("| input | mode | fewshot_core | xautodl | ratio | fewshot_core GFLOP/s |\n|---|---|---|---|---|---|")
    for size in (32, 16):
        for mode in ("mixture", "single_path"):
            ours = Supernet(C=args.C, N=args.N, mode=mode)
            peer = xautodl_peer(args.C, args.N, mode == "single_path")
            copy_weights(ours, peer)
            x = torch.randn(args.batch, 3, size, size)
            arch = ours.sample_arch()
            if mode == "single_path":
                from xautodl.models.cell_searchs.genotypes import Structure

                peer.arch_cache = Structure.str2structure(arch)
            out_peer = peer(x)[1]
            torch.testing.assert_close(ours(x, arch=arch if mode == "single_path" else None), out_peer,
                                       rtol=1e-4, atol=1e-4)

            random.seed(0)
            # Alternate the two in short rounds so that machine noise hits both alike; keep the median.
            steps = (partial(step_ours, ours, x), partial(step_peer, peer, x, mode == "single_path"))
            rounds = [tuple(throughput(step, args.batch, args.seconds / 3) for step in steps) for _ in range(3)]
            a = sorted(r[0] for r in rounds)[1]
            b = sorted(r[1] for r in rounds)[1]
            rate = a / args.batch * step_flops(steps[0]) / 1e9
            print(f"| {size}x{size} | {mode} | {a:.0f} | {b:.0f} | {a / b:.2f}x | {rate:.0f} |", flush=True)
    if args.compile:
        # A fresh compilation cache: the first call's seconds are what a new mask or size costs.
        with tempfile.TemporaryDirectory(prefix="inductor-") as cache:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
            for size in (32, 16):
                compiled_against_eager(args, size)


def compiled_against_eager(args: argparse.Namespace, size: int) -> None:
    """Mixture mode (the full mask) under ``torch.compile`` against eager: the first call's seconds (the
    compilation, paid again for every other mask) and the rates, alternated, median of three rounds."""
    ours = Supernet(C=args.C, N=args.N, mode="mixture")
    x = torch.randn(args.batch, 3, size, size)
    compiled = torch.compile(ours)
    t0 = time.perf_counter()
    step_ours(compiled, x)
    first = time.perf_counter() - t0
    torch.testing.assert_close(compiled(x), ours(x), rtol=1e-4, atol=1e-4)
    steps = (partial(step_ours, ours, x), partial(step_ours, compiled, x))
    rounds = [tuple(throughput(step, args.batch, args.seconds / 3) for step in steps) for _ in range(3)]
    eager, comp = (sorted(r[i] for r in rounds)[1] for i in (0, 1))
    print(f"{size}x{size} mixture under torch.compile: {comp:.0f} images/s against eager {eager:.0f} "
          f"({comp / eager:.2f}x); its first call took {first:.1f} s", flush=True)


if __name__ == "__main__":
    main()
