"""Where each dataset's files are: what the loaders read and what a run's data key digests. Torch-free: the
workflow asks it while it parses.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from fewshot_core.errors import DataError

CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR_TEST_FILE = "test_batch.bin"
FASHION_ROOT = "/usr/share/datasets/fashion-mnist"  # where Debian's dataset-fashion-mnist puts the files
FASHION_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                 "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
FASHION_HELP = ("install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist: the files land in "
                f"{FASHION_ROOT}), point data.root at a folder holding the four IDX files, or set data.download: "
                "true (torchvision fetches them)")


def digits_file() -> Path:
    """scikit-learn's copy of the digits (``sklearn/datasets/data/digits.csv.gz``), found without importing
    scikit-learn: the import costs every job that loads the data about 1.4 s."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("data.name 'digits' needs scikit-learn, which is not installed: pip install scikit-learn")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"


def fashion_file(root: Path, name: str) -> Path:
    """``name`` or ``name.gz`` in ``root`` or in torchvision's layout under it (``FashionMNIST/raw``)."""
    for folder in (root, root / "FashionMNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise DataError(f"Fashion-MNIST file missing: {root / name}(.gz); {FASHION_HELP}")


def find_cifar(root: Path) -> tuple[str, Path] | None:
    """CIFAR-10's layout under ``root`` (``bin``: the official binary batches; ``py``: the python pickles)
    and the folder holding it; None when there is none."""
    for layout, sub in (("bin", "cifar-10-batches-bin"), ("py", "cifar-10-batches-py")):
        if (root / sub).is_dir():
            return layout, root / sub
    if (root / CIFAR_TRAIN_FILES[0]).exists() or (root / CIFAR_TEST_FILE).exists():
        return "bin", root
    if (root / "data_batch_1").exists():
        return "py", root
    return None


def data_files(name: str, root: str | os.PathLike | None) -> list[Path]:
    """The files a dataset is read from (none for the synthetic data), for the records of what it feeds."""
    if name == "digits":
        return [digits_file()]
    if name == "fashion_mnist":
        return [fashion_file(Path(root or FASHION_ROOT), f) for part in FASHION_FILES.values() for f in part]
    if name == "cifar10":
        found = find_cifar(Path(root)) if root is not None and Path(root).is_dir() else None
        if found is None:
            return []  # loading it fails first, with the message that says where it should be
        layout, folder = found
        names = ((*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE) if layout == "bin"
                 else (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"))
        return [folder / n for n in names if (folder / n).is_file()]
    return []
