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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fewshot", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, add_args, help) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help, description=help))
    args = parser.parse_args(argv)
    from fewshot_core.data import DataError
    from fewshot_core.space import MaskError

    try:
        COMMANDS[args.command][0](args)
    except (DataError, MaskError) as err:
        print(f"fewshot {args.command}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from err


if __name__ == "__main__":
    main()
