"""The GPU check's two parts: a comparison of one configuration's runs on two devices, and the GPU's figures.

    bash benchmarks/gpu.sh                     # the whole check on a machine with a GPU (under 5 minutes)
    python benchmarks/gpu.py compare CPU GPU   # two runs (their results/<run> folders) of one configuration
    python benchmarks/gpu.py figures           # the figures alone, on the GPU when there is one
    python benchmarks/gpu.py figures --quick --device cpu   # small sizes: that the script runs (the tests)

``compare`` expects the same edge and groups at every split, except at a near-tie: where, on either
device, the other device's choice cuts within :data:`NEAR_TIE` of its own (rounding breaks such a tie either
way); a near-tie is printed with its values and passes, and the splits below it (other supernets in each
run) are counted, not compared. Any other difference is printed with the values and similarity matrices
that decided it, and the exit status is 1. It also reports how far the metric values, the leaves' and the
study's accuracies moved. ``figures`` prints one line per figure, each beside what it is compared with in
the same run:
- the supernet's forward+backward throughput at the paper's size (C=16, N=5, 32x32, batch 64), in mixture
  and single-path mode, against xautodl's supernet with the same weights on the same device;
- each metric's split of edge 0 at the paper's size, the median of three after an unmeasured one;
- one leaf epoch (25,000 CIFAR-shaped images, single-path, batch 64) in float32 (TF32 off), TF32 and
  bfloat16 (``training.precision``);
- the host's waits for the device (torch's sync debug mode) in a training epoch's steps, in a whole
  training run, and in evaluating architectures;
- one architecture's evaluation as the ranking study does it (batch norm re-estimated on 4 batches of 128,
  then 10,000 test images), and what the paper's 1.7 million evaluations cost at that rate.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fewshot_core import data, metrics  # noqa: E402
from fewshot_core import device as devices  # noqa: E402
from fewshot_core.checks import load_settings  # noqa: E402
from fewshot_core.metrics import Batch  # noqa: E402
from fewshot_core.space import Supernet  # noqa: E402
from fewshot_core.splitting import SplitRecord, cut_cost  # noqa: E402
from fewshot_core.train import evaluate_architectures, sample_architectures, train, train_epoch  # noqa: E402

METRICS = ("gm", "gm_nas", "gradnorm", "snip", "grasp", "synflow", "jacobcov", "naswot", "ntk", "lr", "nparams")
#: The paper study's evaluations: 15,284 architectures x (90 trees + 20 one-shot baselines), README.
PAPER_EVALUATIONS = 15_284 * 110


# ----------------------------------------------------------------------------- compare


#: Two devices' rounding may decide a split differently only where it is a near-tie: where, on either
#: device, the partition (or edge) the other device chose cuts within NEAR_TIE x (1 + the summed absolute
#: similarities (or candidate cuts)) of the one this device chose; the scale on which ``splitting.partition``
#: breaks exact ties (at 1e-12). A float32 similarity moves by about 1e-6 between devices; a metric of
#: integer values (lr's region counts, naswot's kernel) ties exactly, and one ReLU's sign flipped on the other
#: device breaks such a tie the other way. Any other difference is a fault.
NEAR_TIE = 1e-4


def split_records(run: Path) -> dict[tuple[str, int, str], SplitRecord]:
    """Every split of a run, from its per-level files (which hold each candidate edge's best cut too)."""
    out = {}
    for path in sorted(run.glob("*/seed*/split_L*.json")):
        for item in json.loads(path.read_text())["splits"]:
            rec = SplitRecord.from_dict(item)
            out[rec.metric, rec.seed, rec.node] = rec
    return out


def closeness(mine: SplitRecord, other: SplitRecord) -> tuple[float, float, str] | None:
    """How near ``mine``'s device came to ``other``'s decision: (the gap between the cut of the other's
    choice and of its own, computed with ``mine``'s values; the tolerance; a line saying both), or None
    when the other's choice was not among ``mine``'s candidates (another edge not scored here)."""
    if mine.edge != other.edge:
        if other.edge not in mine.candidates:
            return None
        cuts = mine.candidates
        gap, tol = cuts[other.edge] - cuts[mine.edge], NEAR_TIE * (1.0 + sum(abs(c) for c in cuts.values()))
        return gap, tol, f"edge {mine.edge}'s best cut {cuts[mine.edge]:.9g}, edge {other.edge}'s {cuts[other.edge]:.9g}"
    if sorted(other.ops) != sorted(mine.ops):
        return None
    sim = np.asarray(mine.similarity, dtype=np.float64)

    def cost(groups: list[list[str]]) -> float:
        return cut_cost(sim, [next(i for i, g in enumerate(groups) if op in g) for op in mine.ops])

    ours, theirs = cost(mine.groups), cost(other.groups)
    tol = NEAR_TIE * (1.0 + np.abs(np.triu(sim, k=1)).sum())
    return theirs - ours, tol, f"{mine.groups} cuts {ours:.9g}, {other.groups} {theirs:.9g}"


def compare(a: Path, b: Path) -> int:
    """Print how two runs of one configuration differ; 1 when a split's edge or groups differ other than
    at a near-tie (:data:`NEAR_TIE`) or below one."""
    ra, rb = split_records(a), split_records(b)
    if set(ra) != set(rb) or not ra:
        print(f"the runs hold different splits: {len(ra)} in {a}, {len(rb)} in {b}")
        return 1
    same, ties, below, differ = 0, 0, 0, 0
    apart: set[tuple[str, int, str]] = set()  # nodes whose subtrees the two runs split differently
    for key in sorted(ra, key=lambda k: (k[0], k[1], len(k[2]), k[2])):
        x, y = ra[key], rb[key]
        if (x.edge, x.groups) == (y.edge, y.groups):
            same += 1
            continue
        if any((key[0], key[1], key[2][:k]) in apart for k in range(1, len(key[2]))):
            below += 1  # another supernet in each run: nothing to compare
            continue
        apart.add(key)
        near = [(name, found) for name, found in ((a, closeness(x, y)), (b, closeness(y, x))) if found is not None]
        tie = any(gap <= tol for _, (gap, tol, _) in near)
        ties, differ = ties + tie, differ + (not tie)
        print(f"{'/'.join(map(str, key))}: " + ("a near-tie, decided differently" if tie else "DIFFERS")
              + f": edge {x.edge} {x.groups} against edge {y.edge} {y.groups}")
        for name, (gap, tol, line) in near:
            print(f"  in {name}: {line}: the other's choice by {gap:.3g} ({'within' if gap <= tol else 'beyond'} "
                  f"{tol:.3g})")
        if not tie:
            for name, rec in ((a, x), (b, y)):
                print(f"  similarity in {name} (operations {rec.ops}):\n"
                      + np.array2string(np.asarray(rec.similarity), precision=6))
    print(f"splits: {same} of {len(ra)} identical; {ties} near-tie(s) decided differently (the other device's choice "
          f"within {NEAR_TIE:g} x (1 + the summed absolute similarities) on either device) and {differ} other "
          f"difference(s); {below} split(s) below them differ as a consequence")
    va, vb = (pd.concat([pd.read_parquet(f) for f in sorted(p.glob("*/seed*/scores_L*.parquet"))]
                        or [pd.DataFrame(columns=["metric", "seed", "node", "edge", "op", "value", "similarity"])])
              for p in (a, b))
    keys = ["metric", "seed", "node", "edge", "op"]
    both = va.merge(vb, on=keys, suffixes=("_a", "_b"))
    both[["value_a", "value_b"]] = both[["value_a", "value_b"]].astype(float)  # None (vector metrics) as NaN
    both["rel"] = (both.value_a - both.value_b).abs() / both[["value_a", "value_b"]].abs().max(axis=1).clip(lower=1e-300)
    both["sim"] = [np.abs(np.asarray(x) - np.asarray(y)).max() for x, y in zip(both.similarity_a, both.similarity_b)]
    for metric, part in both.groupby("metric"):
        values = part.rel.dropna()
        print(f"{metric}: over {len(part)} variants, similarities differ by at most {part.sim.max():.2e}"
              + (f", values by at most {values.max():.2e} relative" if len(values) else ""))
    for name, pattern, column in (("leaves", "*/seed*/leaves/chunk*.parquet", "val_accuracy"),
                                  ("study", "*/seed*/study_chunk*.parquet", "test_accuracy"),
                                  ("ground truth", "study/standalone_gt*.parquet", "test_accuracy")):
        ta, tb = (pd.concat([pd.read_parquet(f) for f in sorted(p.glob(pattern))] or [pd.DataFrame()]) for p in (a, b))
        if ta.empty or tb.empty:
            continue
        diff = (ta[column].to_numpy() - tb[column].to_numpy()) if len(ta) == len(tb) else None
        print(f"{name}: {len(ta)} accuracies, " + ("a different number of rows" if diff is None else
              f"{int((diff != 0).sum())} differ, by at most {np.abs(diff).max():.4f}"))
    return int(differ > 0)


# ----------------------------------------------------------------------------- figures


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], object], device: torch.device, rounds: int = 3) -> float:
    """The median of ``rounds`` timed calls after one unmeasured call (kernels chosen, caches warm)."""
    fn()
    times = []
    for _ in range(rounds):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def throughput(step: Callable[[], None], batch: int, seconds: float, device: torch.device) -> float:
    """Images per second of ``step`` over about ``seconds`` (after two unmeasured steps)."""
    for _ in range(2):
        step()
    sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    sync(device)
    return n * batch / (time.perf_counter() - t0)


def waits(fn: Callable[[], object], device: torch.device) -> int | None:
    """How many times ``fn`` makes the host wait for the GPU, as torch's sync debug mode counts them
    (None on a CPU, which has nothing to wait for)."""
    if device.type != "cuda":
        fn()
        return None
    sync(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def supernet_figures(C: int, N: int, size: int, seconds: float, device: torch.device) -> None:
    from supernet_throughput import step_ours, step_peer

    from tests.reference_metrics import copy_weights, xautodl_peer

    x = torch.randn(64, 3, size, size, device=device)
    for mode in ("mixture", "single_path"):
        torch.manual_seed(0)
        ours = Supernet(C=C, N=N, input_size=size, mode=mode).to(device)
        rate = throughput(partial(step_ours, ours, x), len(x), seconds, device)
        try:
            peer = xautodl_peer(C, N, mode == "single_path")
        except ImportError as err:
            print(f"supernet {mode}: {rate:.0f} images/s forward+backward, batch 64; xautodl's supernet: not "
                  f"installed ({err}; pip install --no-deps xautodl)", flush=True)
            continue
        copy_weights(ours, peer)
        peer.to(device)
        check = ours.sample_arch()
        if mode == "single_path":
            from xautodl.models.cell_searchs.genotypes import Structure

            peer.arch_cache = Structure.str2structure(check)
        torch.testing.assert_close(ours(x, arch=check if mode == "single_path" else None), peer(x)[1],
                                   rtol=1e-3, atol=1e-3)
        theirs = throughput(partial(step_peer, peer, x, mode == "single_path"), len(x), seconds, device)
        print(f"supernet {mode}: {rate:.0f} images/s forward+backward, batch 64; xautodl's supernet "
              f"{theirs:.0f} images/s on the same device ({rate / theirs:.2f}x)", flush=True)


def split_figures(C: int, N: int, size: int, device: torch.device, name: str) -> None:
    torch.manual_seed(0)
    net = Supernet(C=C, N=N, input_size=size).to(device)
    batch = Batch(torch.randn(64, 3, size, size, device=device), torch.randint(0, 10, (64,), device=device))
    small = Batch(batch.inputs[:16], batch.targets[:16])
    total = 0.0
    for m in METRICS:
        s = median_seconds(partial(metrics.evaluate_split, m, net, 0, [small if m == "ntk" else batch]), device)
        total += s
        print(f"split of edge 0 at C={C} N={N} {size}x{size}, {m}: {s:.3f} s on {name} (median of 3 after one)",
              flush=True)
    print(f"one split of every metric: {total:.2f} s on {name}", flush=True)


def training_figures(C: int, N: int, size: int, images: int, device: torch.device, name: str) -> None:
    s = load_settings({"run": "x", "seeds": [0], "metrics": {"snip": {}}, "data": {"name": "synthetic",
                                                                                   "input_size": size}})
    d = data.synthetic(n_train=images, n_test=16, input_size=size)
    for precision in ("float32", "tf32", "bfloat16"):
        cfg = dataclasses.replace(s.leaf_training, epochs=1, precision=precision)
        torch.manual_seed(0)
        leaf = Supernet(C=C, N=N, input_size=size)
        train(leaf, d, np.arange(min(images, 2048)), cfg, 0, device=device, label="warm-up")  # kernels chosen
        sync(device)
        t0 = time.perf_counter()
        train(leaf, d, np.arange(images), cfg, 0, device=device, label="leaf")
        sync(device)
        seconds = time.perf_counter() - t0
        note = "" if device.type == "cuda" or precision == "float32" else " (a CPU trains in float32 whatever is asked)"
        print(f"one leaf epoch, {images} images {size}x{size}, single-path, {precision}: {seconds:.1f} s, "
              f"{images / seconds:.0f} images/s on {name}{note}", flush=True)
    cfg = dataclasses.replace(s.leaf_training, epochs=1)
    torch.manual_seed(0)
    leaf = Supernet(C=C, N=N, input_size=size, mode="single_path").to(device)
    params = [p for p in leaf.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True)
    n = min(images, 40 * cfg.batch_size)
    x_all, y_all = d.train_x[:n].to(device), d.train_y[:n].to(device)
    g = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    draws = data.draw_epoch(n, cfg.batch_size, *g, flip=True, pad=cfg.crop_pad).to(device)
    train_epoch(leaf, opt, params, d, x_all, y_all, draws, cfg, device)  # unmeasured: kernels chosen
    steps = -(-n // cfg.batch_size)
    in_steps = waits(lambda: train_epoch(leaf, opt, params, d, x_all, y_all, draws, cfg, device), device)
    whole = waits(lambda: train(Supernet(C=C, N=N, input_size=size), d, np.arange(n),
                                dataclasses.replace(cfg, epochs=2), 0, device=device, label="waits"), device)
    print("host waits for the device: " + ("not measured (no GPU)" if in_steps is None else
          f"{in_steps} in {steps} training steps, {whole} in a whole 2-epoch training run (setup and one read an "
          "epoch)"), flush=True)


def evaluation_figures(C: int, N: int, size: int, test_images: int, device: torch.device, name: str) -> None:
    s = load_settings({"run": "x", "seeds": [0], "metrics": {"snip": {}}, "data": {"name": "synthetic",
                                                                                   "input_size": size}})
    d = data.synthetic(n_train=1024, n_test=test_images, input_size=size)
    torch.manual_seed(0)
    net = Supernet(C=C, N=N, input_size=size).to(device)
    images = (data.normalize(d.test_x, d).to(device), d.test_y.to(device))
    cfg = dataclasses.replace(s.evaluation, bn_batches=4, batch_size=128)
    archs = sample_architectures(net.mask, 6, 0)
    run = partial(evaluate_architectures, net, d, np.arange(1024), images, archs[1:], cfg, 0, device)
    evaluate_architectures(net, d, np.arange(1024), images, archs[:1], cfg, 0, device)  # kernels chosen
    sync(device)
    t0 = time.perf_counter()
    count = waits(run, device)
    sync(device)
    each = (time.perf_counter() - t0) / (len(archs) - 1)
    print(f"one architecture's evaluation (BN on 4 x 128 images, {test_images} test images) at C={C} N={N} "
          f"{size}x{size}: {each:.3f} s on {name}; the paper study's {PAPER_EVALUATIONS:,} evaluations: "
          f"{PAPER_EVALUATIONS * each / 3600:.1f} hours; host waits: "
          + ("not measured (no GPU)" if count is None else f"{count} for {len(archs) - 1} architectures"), flush=True)


def figures(args: argparse.Namespace) -> int:
    device = devices.resolve(args.device)
    C, N, size, images, test_images, seconds = ((4, 1, 8, 512, 256, 0.3) if args.quick else
                                                (16, 5, 32, 25_000, 10_000, 6.0))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}; C={C} N={N} {size}x{size}", flush=True)
    failed = 0
    for part in (partial(supernet_figures, C, N, size, seconds, device), partial(split_figures, C, N, size, device, name),
                 partial(training_figures, C, N, size, images, device, name),
                 partial(evaluation_figures, C, N, size, test_images, device, name)):
        try:
            part()
        except Exception:  # one figure's failure is reported and the others still run
            failed += 1
            print(f"FAILED: {part.func.__name__}\n{traceback.format_exc()}", flush=True)
    return int(failed > 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="two runs of one configuration (their results/<run> folders)")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    f = sub.add_parser("figures", help="the GPU's figures, each beside its peer")
    f.add_argument("--quick", action="store_true", help="small sizes, to check the script runs")
    f.add_argument("--device", default="auto")
    args = ap.parse_args()
    sys.exit(compare(args.a, args.b) if args.command == "compare" else figures(args))


if __name__ == "__main__":
    main()
