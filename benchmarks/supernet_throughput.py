"""Supernet forward+backward throughput against xautodl's TinyNetworkDarts / TinyNetworkRANDOM.

Run: ``python benchmarks/supernet_throughput.py`` (needs ``pip install --no-deps xautodl``).
Both networks get the same weights; the script checks their outputs agree before timing.
"""

from __future__ import annotations

import argparse
import platform
import random
import time

import torch

from fewshot_core.space import EDGES, OPS, Supernet


def xautodl_peer(C: int, N: int, single_path: bool) -> torch.nn.Module:
    from xautodl.models.cell_searchs.search_model_darts import TinyNetworkDarts
    from xautodl.models.cell_searchs.search_model_random import TinyNetworkRANDOM

    cls = TinyNetworkRANDOM if single_path else TinyNetworkDarts
    net = cls(C, N, 4, 10, list(OPS), False, True)
    if not single_path:
        with torch.no_grad():
            net.arch_parameters.zero_()  # uniform weights: the average of the five operations
    return net


def copy_weights(ours: Supernet, peer: torch.nn.Module) -> None:
    """Give ``peer`` our weights (its redundant conv biases before BN are set to zero)."""
    src = ours.state_dict()
    state = {}
    for name, value in peer.state_dict().items():
        p = name.split(".")
        if name == "arch_parameters":
            state[name] = value
        elif p[0] == "cells" and p[2] == "edges":  # cells.k.edges.<i<-j>.<op>.op.<1|2>.x
            op = OPS[int(p[4])]
            kind = {"1": "conv", "2": "bn"}[p[6]]
            if p[-1] == "bias" and kind == "conv":
                state[name] = torch.zeros_like(value)
            else:
                state[name] = src[f"cells.{p[1]}.edges.{EDGES.index(p[3])}.{op}.{kind}.{p[-1]}"]
        elif p[0] == "cells" and p[3] == "op":  # ResNet block: conv_a.op.1.weight
            state[name] = src[".".join(p[:3] + [{"1": "conv", "2": "bn"}[p[4]]] + p[5:])]
        else:
            state[name] = src[name]
    peer.load_state_dict(state)


def throughput(step, batch: int, seconds: float) -> float:
    for _ in range(2):
        step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    return n * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--C", type=int, default=16)
    ap.add_argument("--N", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"C={args.C} N={args.N} batch={args.batch}; images/s, forward+backward, train mode")
    print("| input | mode | fewshot_core | xautodl | ratio |\n|---|---|---|---|---|")
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

            def step_ours() -> None:
                ours.zero_grad(set_to_none=True)
                ours(x).sum().backward()

            def step_peer() -> None:
                if mode == "single_path":
                    peer.random_genotype(True)
                peer.zero_grad(set_to_none=True)
                peer(x)[1].sum().backward()

            random.seed(0)
            # Alternate the two in short rounds so that machine noise hits both alike; keep the median.
            rounds = [(throughput(step_ours, args.batch, args.seconds / 3),
                       throughput(step_peer, args.batch, args.seconds / 3)) for _ in range(3)]
            a = sorted(r[0] for r in rounds)[1]
            b = sorted(r[1] for r in rounds)[1]
            print(f"| {size}x{size} | {mode} | {a:.0f} | {b:.0f} | {a / b:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
