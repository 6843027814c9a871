"""Small Fashion-MNIST folders in the official IDX format, written by the tests themselves."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

NAMES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic 0x0000 08 <dims>, each dimension as 4 big-endian bytes, the data."""
    head = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return head + array.astype(np.uint8).tobytes()


def write_fashion(folder: Path, n_train: int = 60, n_test: int = 20, compressed: bool = True, seed: int = 0) -> dict:
    """The four files in ``folder`` (gzip-compressed as Debian ships them, or not); returns the arrays."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for part, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        for name, array in zip(NAMES[part], (images, labels)):
            raw = idx_bytes(array)
            path = folder / (f"{name}.gz" if compressed else name)
            path.write_bytes(gzip.compress(raw) if compressed else raw)
            arrays[name] = array
    return arrays
