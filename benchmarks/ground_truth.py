"""The ranking study's ground truth alone: how well standalone trainings of each architecture agree.

    python benchmarks/ground_truth.py --data fashion_mnist --C 8 --N 1 --size 16 --epochs 12 --train-images 10000 \
        --study-seed 7 --seeds 3

Trains the study's architectures (``study_set(--archs, --study-seed)``, with that seed's holdout) exactly as
the workflow's ``train_standalone`` does (the leaves' training settings with ``--epochs``, each
architecture's seed per ground-truth seed, the test part), with ``--seeds`` ground-truth seeds, on
``--workers`` processes of one thread each, and prints: the budget; Kendall's tau between two seeds (the
mean over pairs of seeds: the study's ceiling) with its 95% bootstrap interval over architectures, on test
accuracy and on test loss; with three seeds or more, the tau between the mean of all seeds but one and the
one left out (the mean over which is left out: how much better a ground truth of more seeds agrees with a
fresh training), on both; the accuracies' range and median; tau between the parameter count and the mean
accuracy (what a ranking gets for free); and the seconds one training takes on one thread. ``--table``
writes every training's result as CSV, ``--from-table`` reads such a file instead of training.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fewshot_core.checks import load_settings  # noqa: E402
from fewshot_core.nb201 import study_set  # noqa: E402
from fewshot_core.ranking import kendall_tau, kendall_tau_resampled  # noqa: E402

_WORK: dict = {}


def configuration(args: argparse.Namespace) -> dict:
    return {"run": "ground_truth", "seeds": [0], "metrics": {"snip": {}},
            "data": {"name": args.data, "input_size": args.size, "train_images": args.train_images},
            "supernet": {"C": args.C, "N": args.N}, "training": {"leaves": {"batch_size": args.batch_size}},
            "study": {"archs": args.archs, "standalone": args.epochs, "gt_seeds": args.seeds, "seed": args.study_seed}}


def _start(config: dict) -> None:
    """A worker: one torch thread, the data loaded once."""
    import torch

    from fewshot_core import data
    from fewshot_core.train import test_images

    torch.set_num_threads(1)
    s = load_settings(config)
    d = data.load(s.data.name, root=s.data.root, input_size=s.data.input_size)
    train_idx, _ = data.split_indices(len(d.train_y), s.data.val_fraction, s.study.seed, s.data.train_images)
    _WORK.update(settings=s, data=d, train_idx=train_idx, images=test_images(d, torch.device("cpu")))


def _train(task: tuple[str, int]) -> dict:
    import contextlib
    import io

    import torch

    from fewshot_core.stages import standalone_result

    arch, gt = task
    w = _WORK
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the epoch lines
        accuracy, loss = standalone_result(w["settings"].standalone_spec(gt, 0), arch, w["data"], w["train_idx"],
                                           w["images"], torch.device("cpu"))
    return {"arch": arch, "gt": gt, "accuracy": accuracy, "loss": loss, "seconds": time.perf_counter() - t0}


def agreement(pairs: list[tuple[np.ndarray, np.ndarray]], draws: int = 2000) -> str:
    """The mean Kendall tau over ``pairs`` of rankings, with its 95% bootstrap interval over architectures
    (the same resamples for every pair)."""
    n = len(pairs[0][0])
    idx = np.random.default_rng(0).integers(0, n, size=(draws, n))
    tau = np.mean([kendall_tau(x, y) for x, y in pairs])
    lo, hi = np.quantile(np.mean([kendall_tau_resampled(x, y, idx) for x, y in pairs], axis=0), [0.025, 0.975])
    return f"{tau:.3f} ({lo:.3f} to {hi:.3f})"


def agreements(values: pd.DataFrame) -> tuple[str, str | None]:
    """Two seeds against each other (mean over pairs); and, with three seeds or more, the mean of all but one
    against the one left out (mean over which is left out)."""
    from itertools import combinations

    seeds = list(values.columns)
    single = agreement([(values[a].to_numpy(), values[b].to_numpy()) for a, b in combinations(seeds, 2)])
    if len(seeds) < 3:
        return single, None
    rest = [(values.drop(columns=[g]).mean(axis=1).to_numpy(), values[g].to_numpy()) for g in seeds]
    return single, agreement(rest)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="fashion_mnist", choices=("digits", "fashion_mnist"))
    ap.add_argument("--C", type=int, default=8)
    ap.add_argument("--N", type=int, default=1)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--train-images", type=int, default=None, help="data.train_images (default: all)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--archs", type=int, default=60)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--study-seed", type=int, default=0, help="study.seed: draws the architectures and the holdout")
    ap.add_argument("--seeds", type=int, default=2, help="ground-truth seeds (study.gt_seeds)")
    ap.add_argument("--table", type=Path, help="write every training's result here (CSV)")
    ap.add_argument("--from-table", type=Path, help="read the trainings from such a CSV instead of training")
    args = ap.parse_args()
    config = configuration(args)
    settings = load_settings(config)  # the configuration's checks, before any training
    archs, _ = study_set(args.archs, settings.study.seed)
    from fewshot_core.space import count_parameters, standalone

    wall = 0.0
    if args.from_table:
        table = pd.read_csv(args.from_table)
    else:
        tasks = [(a, gt) for a in archs for gt in range(args.seeds)]
        t0 = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(args.workers, _start, (config,)) as pool:
            rows = pool.map(_train, tasks, chunksize=1)
        wall = time.perf_counter() - t0
        table = pd.DataFrame(rows)
    if args.table:
        table.to_csv(args.table, index=False)
    acc = table.pivot(index="arch", columns="gt", values="accuracy").loc[archs]
    loss = -table.pivot(index="arch", columns="gt", values="loss").loc[archs]  # higher: better, as accuracy
    (acc_two, acc_rest), (loss_two, loss_rest) = agreements(acc), agreements(loss)
    params = [count_parameters(standalone(a, args.C, args.N, 10, args.size)) for a in archs]
    mean = acc.mean(axis=1).to_numpy()
    used = settings.data.train_images or "all"
    rest = (f"; the mean of {acc.shape[1] - 1} seeds against the one left out: accuracy {acc_rest}, loss {loss_rest}"
            if acc_rest else "")
    print(f"{args.data} {args.size}x{args.size}, C={args.C} N={args.N}, {args.epochs} epochs, {used} training images "
          f"(val_fraction {settings.data.val_fraction}), batch {args.batch_size}, {len(archs)} architectures of study "
          f"seed {settings.study.seed} x {acc.shape[1]} seeds: two seeds' tau on accuracy {acc_two}, on loss "
          f"{loss_two}{rest}; accuracy {mean.min():.3f}-{mean.max():.3f} (median {np.median(mean):.3f}); #params vs "
          f"accuracy tau {kendall_tau(params, mean):.3f}; one training {statistics.median(table.seconds):.1f} s "
          f"(median, 1 thread); {wall / 60:.1f} min wall on {args.workers} workers", flush=True)


if __name__ == "__main__":
    main()
