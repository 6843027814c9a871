"""The ``fewshot`` command line: one subcommand per workflow stage.

Heavy modules (torch) are imported inside the subcommands that use them, so ``fewshot --help``
and light stages start fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], None], Callable[[argparse.ArgumentParser], None], str]] = {}


def command(name: str, help: str, add_args: Callable[[argparse.ArgumentParser], None]):
    """Register a subcommand: the decorated function runs it, ``add_args`` declares its options."""

    def register(run: Callable[[argparse.Namespace], None]) -> Callable[[argparse.Namespace], None]:
        COMMANDS[name] = (run, add_args, help)
        return run

    return register


def _split_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="digits, cifar10 or synthetic")
    p.add_argument("--root", default=None, help="directory holding the dataset (cifar10)")
    p.add_argument("--download", action="store_true", help="let torchvision download CIFAR-10")
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True, help="JSON file of train and validation indices")


@command("split-data", "write the seeded train/validation split of a dataset's training images", _split_data_args)
def split_data(args: argparse.Namespace) -> None:
    from fewshot_core import data

    d = data.load(args.dataset, root=args.root or None, input_size=args.input_size, download=args.download)
    train_idx, val_idx = data.split_indices(len(d.train_y), args.val_fraction, args.seed)
    data.write_split(args.out, train_idx, val_idx)
    print(f"{d.name}: {len(train_idx)} training and {len(val_idx)} validation images -> {args.out}")


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()] if text else []


def _supernet_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--C", type=int, required=True, help="channels of the first stage")
    p.add_argument("--N", type=int, required=True, help="cells per stage")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--input-size", type=int, required=True)


def _warmup_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--warmup-epochs", type=int, default=0, help="0: metrics at initialisation")
    p.add_argument("--warmup-batch-size", type=int, default=64)
    p.add_argument("--warmup-mode", default="single_path")
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-root", default="")
    p.add_argument("--data-split", required=True, help="split-data's JSON for this seed")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")
    p.add_argument("--work-dir", default=None, help="warm-up checkpoints (resumed when a job restarts)")


def _warmup_config(args: argparse.Namespace):
    from fewshot_core.train import TrainConfig

    return TrainConfig(epochs=args.warmup_epochs, batch_size=args.warmup_batch_size, mode=args.warmup_mode)


def _save_supernet(net, path: str, extra: dict | None = None) -> None:
    import io

    import torch

    from fewshot_core.pipeline import atomic_write_bytes

    buf = io.BytesIO()
    torch.save({"config": {"C": net.C, "N": net.N, "num_classes": net.num_classes, "input_size": net.input_size},
                "state_dict": net.state_dict(), **(extra or {})}, buf)
    atomic_write_bytes(path, buf.getvalue())


def _init_root_args(p: argparse.ArgumentParser) -> None:
    _supernet_args(p)
    _warmup_args(p)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True, help="weights file (a state dict, read back with weights_only)")


@command("init-root", "initialise (and warm up) a seed's root supernet, shared by every metric", _init_root_args)
def init_root(args: argparse.Namespace) -> None:
    import json
    from pathlib import Path

    import torch

    from fewshot_core import data
    from fewshot_core.space import Supernet
    from fewshot_core.train import resolve_device, train

    torch.manual_seed(args.seed)
    net = Supernet(C=args.C, N=args.N, num_classes=args.num_classes, input_size=args.input_size)
    if args.warmup_epochs > 0:
        d = data.load(args.dataset, root=args.data_root or None, input_size=args.input_size)
        split = json.loads(Path(args.data_split).read_text())
        work = Path(args.work_dir or Path(args.out).parent / "warmup")
        train(net, d, split["train"], _warmup_config(args), args.seed, checkpoint=work / "root.ckpt",
              device=resolve_device(args.device), label=f"root warm-up, seed {args.seed}")
        net.cpu()
    _save_supernet(net, args.out, {"warmup_epochs": args.warmup_epochs})
    print(f"root supernet, seed {args.seed}: {sum(p.numel() for p in net.parameters())} parameters, "
          f"{args.warmup_epochs} warm-up epochs -> {args.out}")


def load_supernet(path: str):
    """A supernet from an ``init-root`` file; never unpickles code (``weights_only=True``)."""
    import torch

    from fewshot_core.errors import ArtifactError
    from fewshot_core.space import Supernet

    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        net = Supernet(**blob["config"])
        net.load_state_dict(blob["state_dict"])
    except Exception as err:  # unpickling refusals, truncated archives, missing keys: all mean "damaged"
        raise ArtifactError(f"{path}: not a readable supernet checkpoint ({err}); delete it and rerun") from err
    return net


def _tree_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metric", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--level", type=int, required=True)
    p.add_argument("--factors", type=_ints, required=True, help="branching factor per level, e.g. 2,2,2")
    p.add_argument("--edge-selection", default="order", help="mincut, order or random")
    p.add_argument("--edge-order", type=_ints, default=[], help="edge per level for 'order', e.g. 0,1,2")
    p.add_argument("--previous", nargs="*", default=[], help="split files of the levels above")
    p.add_argument("--out", required=True)


def _score_args(p: argparse.ArgumentParser) -> None:
    _tree_args(p)
    _warmup_args(p)
    p.add_argument("--settings", default="{}", help="the metric's settings as JSON")
    p.add_argument("--root", required=True, help="the seed's root supernet (init-root)")
    p.add_argument("--parent-weights", default=None, help="the level above's node weights (warm-up only)")
    p.add_argument("--out-weights", required=True, help="this level's node weights after warm-up")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=1)


@command("score", "score every edge to consider at one level of one metric's tree (parquet)", _score_args)
def score(args: argparse.Namespace) -> None:
    import json

    import torch

    from fewshot_core import data
    from fewshot_core.metrics import Batch
    from fewshot_core.pipeline import read_splits, score_level, write_parquet

    from fewshot_core.train import resolve_device

    device = resolve_device(args.device)
    net = load_supernet(args.root).to(device)
    d = data.load(args.dataset, root=args.data_root or None, input_size=net.input_size)
    train_idx = json.loads(open(args.data_split).read())["train"]
    g = torch.Generator().manual_seed(args.seed)
    need = args.batch_size * args.batches
    if need > len(train_idx):
        raise data.DataError(f"{args.batches} batches of {args.batch_size} need {need} images; "
                             f"the training split has {len(train_idx)}")
    pick = torch.tensor(train_idx)[torch.randperm(len(train_idx), generator=g)[:need]]
    x = data.normalize(d.train_x[pick], d).to(device)
    y = d.train_y[pick].to(device)
    batches = [Batch(x[i : i + args.batch_size], y[i : i + args.batch_size]) for i in range(0, need, args.batch_size)]
    prepare_node, node_states = None, {}
    if args.warmup_epochs > 0 and args.level > 0:
        from pathlib import Path

        from fewshot_core.splitting import node_rng, parent_of
        from fewshot_core.train import train

        parents = (_load_node_weights(args.parent_weights) if args.level > 1
                   else {"r": {k: v.detach().clone() for k, v in net.state_dict().items()}})
        work = Path(args.work_dir or Path(args.out).parent / "warmup")
        cfg = _warmup_config(args)

        def prepare_node(node, mask):
            net.load_state_dict(parents[parent_of(node)])
            net.mask = mask
            train(net, d, train_idx, cfg, int(node_rng(args.seed, node, "warmup").integers(2**31)),
                  checkpoint=work / f"{node}.ckpt", device=device, label=f"{args.metric} warm-up {node}")
            node_states[node] = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}

    table = score_level(args.metric, json.loads(args.settings), args.seed, args.level, args.factors, net, batches,
                        args.edge_selection, args.edge_order or None, read_splits(args.previous),
                        log=lambda m: print(m, flush=True), prepare_node=prepare_node)
    _save_node_weights(node_states, args.out_weights)
    write_parquet(table, args.out)


def _save_node_weights(states: dict, path: str) -> None:
    """The nodes' weights after warm-up (empty without warm-up: every node keeps the root's)."""
    import io

    import torch

    from fewshot_core.pipeline import atomic_write_bytes

    buf = io.BytesIO()
    torch.save({"nodes": states}, buf)
    atomic_write_bytes(path, buf.getvalue())


def _load_node_weights(path: str) -> dict:
    import torch

    from fewshot_core.errors import ArtifactError

    try:
        return torch.load(path, map_location="cpu", weights_only=True)["nodes"]
    except Exception as err:
        raise ArtifactError(f"{path}: not a readable node-weights file ({err}); delete it and rerun") from err


def _split_args(p: argparse.ArgumentParser) -> None:
    _tree_args(p)
    p.add_argument("--scores", required=True)
    p.add_argument("--balanced", action="store_true")


@command("split", "choose each node's edge and operation groups from a level's scores (JSON)", _split_args)
def split(args: argparse.Namespace) -> None:
    from fewshot_core.pipeline import read_parquet, read_splits, split_level, write_splits

    records = split_level(read_parquet(args.scores), args.metric, args.seed, args.level, args.factors,
                          args.edge_selection, args.edge_order or None, args.balanced, read_splits(args.previous))
    write_splits(records, args.out)
    for r in records:
        print(f"{r.metric} seed {r.seed} node {r.node}: edge {r.edge_name} -> {r.groups} (cut {r.cut:.4g})")


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.025)
    p.add_argument("--lr-min", type=float, default=0.001)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--grad-clip", type=float, default=5.0)
    p.add_argument("--mode", default="single_path", help="single_path or mixture")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")


def _train_config(args: argparse.Namespace):
    from fewshot_core.train import TrainConfig

    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_min=args.lr_min,
                       momentum=args.momentum, weight_decay=args.weight_decay, grad_clip=args.grad_clip,
                       mode=args.mode, augment=not args.no_augment)


def _train_leaves_args(p: argparse.ArgumentParser) -> None:
    _supernet_args(p)
    _train_args(p)
    p.add_argument("--metric", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--leaves", nargs="+", required=True, help="leaf node names, e.g. r000 r001")
    p.add_argument("--factors", type=_ints, required=True)
    p.add_argument("--splits", nargs="*", default=[], help="every level's split file of the tree")
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-root", default="")
    p.add_argument("--data-split", required=True)
    p.add_argument("--archs", type=int, default=20, help="architectures sampled per leaf for evaluation")
    p.add_argument("--work-dir", required=True, help="per-leaf checkpoints, weights and tables")
    p.add_argument("--out", required=True, help="table of every evaluated architecture (parquet)")


@command("train-leaves", "train leaves from scratch (resumable) and evaluate their architectures", _train_leaves_args)
def train_leaves(args: argparse.Namespace) -> None:
    import io
    import json
    from pathlib import Path

    import pandas as pd
    import torch

    from fewshot_core import data
    from fewshot_core.pipeline import atomic_write_bytes, node_masks, read_parquet, read_splits, write_parquet
    from fewshot_core.space import Supernet
    from fewshot_core.splitting import node_rng
    from fewshot_core.train import evaluate_architectures, resolve_device, train

    cfg = _train_config(args)
    device = resolve_device(args.device)
    d = data.load(args.dataset, root=args.data_root or None, input_size=args.input_size)
    split = json.loads(Path(args.data_split).read_text())
    masks = node_masks(args.factors, len(args.factors), read_splits(args.splits))
    tables = []
    for leaf in args.leaves:
        if leaf not in masks:
            raise ValueError(f"{leaf} is not a leaf of this tree; leaves: {sorted(masks)}")
        folder = Path(args.work_dir) / leaf
        table_path, weights_path = folder / "archs.parquet", folder / "weights.pt"
        if not (table_path.exists() and weights_path.exists()):
            init_seed = int(node_rng(args.seed, leaf, "init").integers(2**31))
            torch.manual_seed(init_seed)
            net = Supernet(C=args.C, N=args.N, num_classes=d.num_classes, input_size=args.input_size,
                           mask=masks[leaf][0])
            train(net, d, split["train"], cfg, init_seed, checkpoint=folder / "checkpoint.pt", device=device,
                  label=f"{args.metric} seed {args.seed} leaf {leaf}")
            table = evaluate_architectures(net, d, split["train"], split["val"], args.archs, init_seed, device=device)
            table.insert(0, "leaf", leaf)
            buf = io.BytesIO()
            torch.save(net.state_dict(), buf)
            atomic_write_bytes(weights_path, buf.getvalue())
            write_parquet(table, table_path)
        tables.append(read_parquet(table_path))
    out = pd.concat(tables, ignore_index=True)
    out.insert(0, "seed", args.seed)
    out.insert(0, "metric", args.metric)
    write_parquet(out, args.out)
    best = out.loc[out.val_accuracy.idxmax()]
    print(f"best of {len(out)} architectures: {best.arch} in {best.leaf}: {best.val_accuracy:.4f}")


def _aggregate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--splits", nargs="+", required=True, help="every split file of the run")
    p.add_argument("--out-splits", required=True)
    p.add_argument("--out-distance", required=True)


@command("aggregate", "gather a run's splits and compute every split distance (parquet)", _aggregate_args)
def aggregate(args: argparse.Namespace) -> None:
    import pandas as pd

    from fewshot_core.distance import pair_table, summarise
    from fewshot_core.pipeline import read_splits, write_parquet

    records = read_splits(args.splits)
    splits = pd.DataFrame([{**r.to_dict(), "edge_name": r.edge_name} for r in records]).drop(columns="candidates")
    pairs = pair_table(splits)
    write_parquet(splits, args.out_splits)
    write_parquet(pairs, args.out_distance)
    table = summarise(pairs).groupby(["kind", "metric"]).distance.agg(["mean", "std", "count"]).reset_index()
    print(table.to_string(index=False))


def _collect_leaves_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tables", nargs="+", required=True, help="train-leaves tables")
    p.add_argument("--out", required=True)


@command("collect-leaves", "gather every evaluated architecture; report the best per leaf and overall", _collect_leaves_args)
def collect_leaves(args: argparse.Namespace) -> None:
    import pandas as pd

    from fewshot_core.pipeline import read_parquet, write_parquet

    table = pd.concat([read_parquet(t) for t in args.tables], ignore_index=True)
    write_parquet(table, args.out)
    best_leaf = table.loc[table.groupby(["metric", "seed", "leaf"]).val_accuracy.idxmax()]
    print("best architecture per leaf:")
    print(best_leaf.to_string(index=False))
    best = table.loc[table.groupby(["metric", "seed"]).val_accuracy.idxmax()]
    print("\nbest architecture per tree (across its leaves):")
    print(best.to_string(index=False))


def _figures_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--splits", required=True, help="splits.parquet of a run")
    p.add_argument("--distance", required=True, help="split_distance.parquet of a run")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--seed", type=int, default=None, help="the seed whose trees are drawn (default: the first)")


@command("figures", "draw the paper's figures and the others from a run's tables (PNG and PDF)", _figures_args)
def figures(args: argparse.Namespace) -> None:
    from pathlib import Path

    from fewshot_core.pipeline import read_parquet
    from fewshot_core.report import draw_all

    for f in draw_all(read_parquet(args.splits), read_parquet(args.distance), Path(args.out_dir), args.seed):
        print(f)


def _summary_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run's results folder, e.g. results/default")


@command("summary", "print a run's splits and split distances as tables", _summary_args)
def summary(args: argparse.Namespace) -> None:
    from pathlib import Path

    from fewshot_core.errors import ArtifactError
    from fewshot_core.pipeline import read_parquet
    from fewshot_core.report import summary_text

    run = Path(args.run_dir)
    for name in ("splits.parquet", "split_distance.parquet"):
        if not (run / name).exists():
            raise ArtifactError(f"{run / name} does not exist: run the workflow (snakemake splits) first")
    print(summary_text(read_parquet(run / "splits.parquet"), read_parquet(run / "split_distance.parquet")))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fewshot", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, add_args, help) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help, description=help))
    args = parser.parse_args(argv)
    from fewshot_core.errors import ArtifactError, DataError, MaskError, MetricError, SplitError

    try:
        COMMANDS[args.command][0](args)
    except (ArtifactError, DataError, MaskError, MetricError, SplitError) as err:
        print(f"fewshot {args.command}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from err


if __name__ == "__main__":
    main()
