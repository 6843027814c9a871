"""Training throughput: fewshot_core.train.train against a plain PyTorch loop over the same network.

Both run the same supernet, data, batch size, optimizer (SGD, Nesterov, cosine schedule, clipping)
and augmentation; the project's loop adds checkpoints, generators and progress logging.
Run: ``python benchmarks/train_overhead.py [--C 8 --N 1 --size 16 --epochs 2 --rounds 3]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fewshot_core import data
from fewshot_core.checks import load_settings
from fewshot_core.settings import TrainSettings
from fewshot_core.space import Supernet
from fewshot_core.train import train


def plain_loop(net: Supernet, d: data.ImageData, idx: np.ndarray, cfg: TrainSettings, seed: int) -> float:
    """The loop a researcher would write by hand; returns images per second."""
    net.mode = cfg.mode
    o = cfg.optimizer
    opt = torch.optim.SGD(net.parameters(), lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                          weight_decay=o.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs, eta_min=o.lr_min)
    g = torch.Generator().manual_seed(seed)
    x_all, y_all = d.train_x[torch.as_tensor(idx)], d.train_y[torch.as_tensor(idx)]
    t0, seen = time.perf_counter(), 0
    for _ in range(cfg.epochs):
        net.train()
        order = torch.randperm(len(y_all), generator=g)
        for i in range(0, len(order), cfg.batch_size):
            b = order[i : i + cfg.batch_size]
            x = data.normalize(data.augment(x_all[b], g, flip=False), d)
            loss = F.cross_entropy(net(x), y_all[b])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), o.grad_clip)
            opt.step()
            seen += len(b)
        sched.step()
    return seen / (time.perf_counter() - t0)


def project_loop(net: Supernet, d: data.ImageData, idx: np.ndarray, cfg: TrainSettings, seed: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train(net, d, idx, cfg, seed, checkpoint=Path(tmp) / "ck.pt", label="bench")
        return len(idx) * cfg.epochs / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--C", type=int, default=8)
    ap.add_argument("--N", type=int, default=1)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mode", default="single_path")
    args = ap.parse_args()
    d = data.load("digits", None, input_size=args.size)
    idx = np.arange(len(d.train_y))
    defaults = load_settings({"run": "bench", "seeds": [0], "metrics": {"snip": {}}}).leaf_training  # the schema's
    cfg = dataclasses.replace(defaults, epochs=args.epochs, batch_size=64, mode=args.mode)
    rates = {"plain": [], "project": []}
    for r in range(args.rounds):  # alternate, so that machine noise hits both alike
        for name, loop in (("plain", plain_loop), ("project", project_loop)):
            torch.manual_seed(r)
            rates[name].append(loop(Supernet(C=args.C, N=args.N, input_size=args.size), d, idx, cfg, r))
    a, b = np.median(rates["plain"]), np.median(rates["project"])
    print(f"C={args.C} N={args.N} {args.size}x{args.size} {args.mode}, batch 64, {len(idx)} images x {args.epochs} "
          f"epochs, median of {args.rounds} alternated rounds, {torch.get_num_threads()} threads")
    print(f"| loop | images/s |\n|---|---|\n| plain PyTorch | {a:.0f} |\n| fewshot_core.train | {b:.0f} |")
    print(f"overhead of the project's loop: {100 * (a / b - 1):+.1f}%")


if __name__ == "__main__":
    main()
