"""What it costs to give every metric call the same model state: restoring a snapshot in place
(`fewshot_core.metrics.base.Snapshot`, what `evaluate_split` does before each call) against a deep copy
of the supernet per call, the cheapest way around it otherwise, and against one split's metric time; and
what the check of hooks, torch's settings, folder, generators and structure after each call costs
(`fewshot_core.metrics.base.CallState`, what `isolated` does around each call), with its spread.

    python benchmarks/restore_cost.py --C 16 --N 5 --size 32
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from fewshot_core.metrics.base import Batch, CallState, Snapshot
from fewshot_core.space import Supernet


def times_of(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median_time(fn, repeats: int) -> float:
    return statistics.median(times_of(fn, repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--C", type=int, default=16)
    parser.add_argument("--N", type=int, default=5)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    net = Supernet(C=args.C, N=args.N, input_size=args.size)
    x = torch.randn(64, 3, args.size, args.size)
    net(x).sum().backward()  # gradients present, as after a metric's call
    snapshot = Snapshot(net)
    restore = median_time(snapshot.restore, args.repeats)
    deep = median_time(lambda: copy.deepcopy(net), args.repeats)
    forward = median_time(lambda: net(x).sum().backward(), max(3, args.repeats // 4))
    batches = [Batch(x, torch.zeros(64, dtype=torch.long))]
    checks = times_of(lambda: CallState(net, batches).settle(), args.repeats)
    params = sum(p.numel() for p in net.parameters())
    print(f"C={args.C} N={args.N} {args.size}x{args.size}, {params} parameters: restore {restore * 1e3:.1f} ms per call; "
          f"deep copy {deep * 1e3:.1f} ms per call ({deep / restore:.1f}x); one forward-backward of 64 images "
          f"{forward * 1e3:.0f} ms; the state check around a call {statistics.median(checks) * 1e3:.1f} ms "
          f"(range {min(checks) * 1e3:.1f}-{max(checks) * 1e3:.1f} over {args.repeats}, {len(list(net.modules()))} "
          "modules)")


if __name__ == "__main__":
    main()
