"""Per-split cost of every metric: this checkout's package against the package at an earlier git revision.

Both sides score the same split (edge 0 of a supernet whose weights and batch are made once here and
handed to both), each round in a fresh process per side, the sides' order alternating from round to
round; every metric is warmed up on edge 1 in that process first unless ``--no-warmup``. The table
holds each side's median seconds per split with its rounds' range (the noise), the speed-up of the
medians, and the largest difference between the two sides' similarity matrices (metrics whose values a
later change altered on purpose show it).

    python benchmarks/split_cost_history.py --against bc929f6 --C 16 --N 5 --size 32 --rounds 2
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def worker(package_root: str, inputs: str, warmup: bool, threads: int | None) -> None:
    """Time every metric's split with the package found at ``package_root``; print one JSON object."""
    sys.path.insert(0, package_root)
    import torch

    if threads:
        torch.set_num_threads(threads)
    from fewshot_core import metrics
    from fewshot_core.metrics import Batch
    from fewshot_core.space import Supernet

    if not Path(metrics.__file__).resolve().is_relative_to(Path(package_root).resolve()):
        sys.exit(f"fewshot_core came from {metrics.__file__}, not from {package_root}")
    saved = torch.load(inputs)
    net = Supernet(**saved["shape"])
    net.load_state_dict(saved["state"])
    batch = Batch(saved["inputs"], saved["targets"])
    ntk_batch = Batch(saved["inputs"][: saved["ntk_batch"]], saved["targets"][: saved["ntk_batch"]])
    importlib.import_module("torch._dynamo")  # what torch.func's first call imports: a job's cost, not a split's
    out = {}
    for name in sorted(set(metrics.REGISTRY) - {"random"}):
        b = ntk_batch if name == "ntk" else batch
        if warmup:
            metrics.evaluate_split(name, net, 1, [b])
        t0 = time.perf_counter()
        vals, parent = metrics.evaluate_split(name, net, 0, [b])
        seconds = time.perf_counter() - t0
        sim = metrics.similarity(metrics.get(name).kind, [v.value for v in vals], parent)
        out[name] = {"seconds": seconds, "similarity": np.asarray(sim).tolist()}
    print(json.dumps({"threads": torch.get_num_threads(), "metrics": out}))


def export(revision: str, into: Path) -> Path:
    """The package at ``revision`` (``git archive``), unpacked under ``into``; a folder holding a
    ``fewshot_core`` package (another checkout, a copy) is taken as it is."""
    if (Path(revision) / "fewshot_core").is_dir():
        return Path(revision).resolve()
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "fewshot_core"],
                         check=True, capture_output=True).stdout
    target = into / revision
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(target, filter="data")
    return target


def run_side(package_root: Path, inputs: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", str(package_root), "--inputs", str(inputs)]
    cmd += ["--no-warmup"] * args.no_warmup + (["--threads", str(args.threads)] if args.threads else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=package_root)
    if proc.returncode:
        sys.exit(f"the side at {package_root} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", help="git revision of the earlier package (a commit, tag or branch), or a "
                    "folder holding a fewshot_core package")
    ap.add_argument("--C", type=int, default=8)
    ap.add_argument("--N", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--ntk-batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, help="torch threads per side (default: torch's own choice)")
    ap.add_argument("--no-warmup", action="store_true", help="time each metric's first split in the process")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.inputs, not args.no_warmup, args.threads)
        return
    if not args.against:
        ap.error("--against REVISION is required")
    sys.path.insert(0, str(ROOT))
    import torch

    from fewshot_core import data
    from fewshot_core.space import Supernet

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        sides = {args.against: export(args.against, tmp_path), "this checkout": ROOT}
        d = data.load("digits", None, input_size=args.size)
        torch.manual_seed(0)
        shape = {"C": args.C, "N": args.N, "input_size": args.size}
        net = Supernet(**shape)
        inputs = tmp_path / "inputs.pt"
        torch.save({"shape": shape, "state": net.state_dict(), "ntk_batch": args.ntk_batch,
                    "inputs": data.normalize(d.train_x[: args.batch], d), "targets": d.train_y[: args.batch]},
                   inputs)
        results: dict[str, list[dict]] = {label: [] for label in sides}
        order = list(sides)
        for r in range(args.rounds):
            for label in order if r % 2 == 0 else order[::-1]:
                t0 = time.perf_counter()
                results[label].append(run_side(sides[label], inputs, args))
                print(f"round {r + 1}: {label} in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    old, new = (results[label] for label in order)
    names = sorted(set(old[0]["metrics"]) & set(new[0]["metrics"]))
    print(f"C={args.C} N={args.N} batch={args.batch} (ntk {args.ntk_batch}) input {args.size}x{args.size}, edge 0 "
          f"(5 variants and the parent), {new[0]['threads']} threads, "
          f"{'after a warm-up split' if not args.no_warmup else 'first split in the process'}, "
          f"median of {args.rounds} rounds alternated; seconds per split")
    print(f"| metric | {args.against} (rounds' range) | this checkout (rounds' range) | speed-up "
          f"| largest similarity difference |\n|---|---|---|---|---|")

    def cell(seconds: list[float]) -> str:
        """Three significant digits: a structural metric (convs) splits in microseconds."""
        return f"{statistics.median(seconds):.3g} ({min(seconds):.3g}-{max(seconds):.3g})"

    totals: list[list[float]] = [[0.0] * args.rounds, [0.0] * args.rounds]
    for name in names:
        per_round = [[run["metrics"][name]["seconds"] for run in side] for side in (old, new)]
        totals = [[t + x for t, x in zip(tot, rounds)] for tot, rounds in zip(totals, per_round)]
        med = [statistics.median(r) for r in per_round]
        diff = float(np.max(np.abs(np.asarray(old[0]["metrics"][name]["similarity"])
                                   - np.asarray(new[0]["metrics"][name]["similarity"]))))
        print(f"| {name} | {cell(per_round[0])} | {cell(per_round[1])} | {med[0] / med[1]:.2f}x | {diff:.1e} |")
    med = [statistics.median(t) for t in totals]
    print(f"| all | {cell(totals[0])} | {cell(totals[1])} | {med[0] / med[1]:.2f}x | |")
    only = sorted(set(old[0]["metrics"]) ^ set(new[0]["metrics"]))
    if only:
        print(f"(on one side only, not timed against each other: {', '.join(only)})")


if __name__ == "__main__":
    main()
