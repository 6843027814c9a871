"""Per-split cost of every metric: fewshot_core against a straightforward implementation.

The straightforward one deep-copies the supernet once per variant, repeats every metric's shared
preparation per variant, computes ntk with the per-sample backward loop of TE-NAS's code and grasp
with the two forward passes of the zero-cost-proxies code.
Both must give the same values; the script checks that, then prints seconds per split, each side
warmed up by one split of another edge first.
Run: ``python benchmarks/split_cost.py [--C 8 --N 1 --batch 64 --size 16]``.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fewshot_core import data, metrics  # noqa: E402
from fewshot_core.metrics import Batch  # noqa: E402
from fewshot_core.space import Supernet  # noqa: E402
from tests.reference_metrics import grasp_ref, ntk_ref  # noqa: E402


def reference_value(name: str, net: Supernet, batch: Batch) -> float:
    """ntk and grasp as their reference codes compute them (per-sample loop; two forward passes)."""
    if name == "ntk":
        return ntk_ref(net.train(), batch.inputs)
    if name == "grasp":
        return grasp_ref(net.train(), batch.inputs, batch.targets)
    return metrics.score(name, net, batch.inputs, batch.targets)


def straightforward(name: str, net: Supernet, edge: int, batch: Batch) -> list:
    """The parent (scalar metrics need it to normalise) and every variant, each on its own copy."""
    metric = metrics.get(name)
    out = []
    if metric.kind == "scalar":
        out.append(reference_value(name, copy.deepcopy(net), batch))
    for o in np.flatnonzero(net.mask[edge]):
        variant = copy.deepcopy(net)
        m = variant.mask
        m[edge] = False
        m[edge, o] = True
        variant.set_mask(m, connected=False)
        if metric.kind == "scalar":
            out.append(reference_value(name, variant, batch))
        else:
            kw = {"edge": edge} if metric.needs_edge else {}
            out.append(metric.compute(variant, [batch], **kw))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--C", type=int, default=8)
    ap.add_argument("--N", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--ntk-batch", type=int, default=16, help="TE-NAS's batch for ntk (the default config's too)")
    ap.add_argument("--size", type=int, default=16)
    args = ap.parse_args()
    d = data.load("digits", input_size=args.size)
    batch = Batch(data.normalize(d.train_x[: args.batch], d), d.train_y[: args.batch])
    torch.manual_seed(0)
    net = Supernet(C=args.C, N=args.N, input_size=args.size)
    print(f"C={args.C} N={args.N} batch={args.batch} (ntk {args.ntk_batch}) input {args.size}x{args.size}, edge 0 (5 variants), "
          f"{torch.get_num_threads()} threads; seconds per split")
    print("| metric | fewshot_core | straightforward | speed-up |\n|---|---|---|---|")
    tot_a = tot_b = 0.0
    ntk_batch = Batch(batch.inputs[: args.ntk_batch], batch.targets[: args.ntk_batch])
    t0 = time.perf_counter()
    metrics.score("ntk", net, ntk_batch.inputs, ntk_batch.targets)
    print(f"(one-time, not in the table: the first vectorised ntk in a process {time.perf_counter() - t0:.2f} s, "
          "most of it torch.func's first import of torch._dynamo)")
    for name in sorted(set(metrics.REGISTRY) - {"random"}):
        b_in = ntk_batch if name == "ntk" else batch
        metrics.evaluate_split(name, net, 1, [b_in])  # warm both sides' code paths (edge 1: not the timed edge)
        straightforward(name, net, 1, b_in)
        t0 = time.perf_counter()
        vals, parent = metrics.evaluate_split(name, net, 0, [b_in])
        a = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = straightforward(name, net, 0, b_in)
        b = time.perf_counter() - t0
        if parent is not None:
            assert abs(parent - ref[0]) <= 1e-3 * abs(ref[0]) + 1e-6, (name, parent, ref[0])
            ref = ref[1:]
        for v, r in zip(vals, ref):
            if isinstance(r, torch.Tensor):
                torch.testing.assert_close(v.value, r, rtol=1e-4, atol=1e-6)
            else:
                assert abs(float(v.value) - r) <= 1e-3 * abs(r) + 1e-6, (name, v.value, r)
        tot_a, tot_b = tot_a + a, tot_b + b
        print(f"| {name} | {a:.2f} | {b:.2f} | {b / a:.1f}x |", flush=True)
    print(f"| all | {tot_a:.2f} | {tot_b:.2f} | {tot_b / tot_a:.1f}x |")


if __name__ == "__main__":
    main()
