"""Datasets as in-memory uint8 tensors: ``digits`` (embedded), ``fashion_mnist`` and ``cifar10`` (from disk),
and ``synthetic``.

Images are kept as (N, 3, H, W) uint8 and normalised per batch, so a whole CIFAR-10 training set
costs 150 MB and batches need no worker processes (docs/design.md §6).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fewshot_core.data_files import (
    CIFAR_TEST_FILE,
    CIFAR_TRAIN_FILES,
    FASHION_FILES,
    FASHION_HELP,
    FASHION_ROOT,
    digits_file,
    fashion_file,
    find_cifar,
)
from fewshot_core.device import to_device
from fewshot_core.errors import DataError, cut

DATASETS = ("digits", "fashion_mnist", "cifar10", "synthetic")
CIFAR_RECORD = 1 + 3 * 32 * 32


@dataclass(frozen=True)
class ImageData:
    """Training and test images (uint8, N x 3 x H x W), labels, and per-channel statistics."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def input_size(self) -> int:
        return int(self.train_x.shape[-1])


def load(name: str, root: str | os.PathLike | None, input_size: int, seed: int = 0) -> ImageData:
    """Load a dataset by name (``root``: where it lives on disk), its images resized to ``input_size``."""
    if name == "digits":
        return load_digits(input_size)
    if name == "fashion_mnist":
        return load_fashion_mnist(root, input_size)
    if name == "cifar10":
        if root is None:
            raise DataError("dataset 'cifar10' needs data.root: the directory holding CIFAR-10")
        data = load_cifar10(root)
        return data if input_size == 32 else _resized(data, input_size)
    if name == "synthetic":
        return synthetic(input_size=input_size, seed=seed)
    raise DataError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")


def _to_uint8_resized(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize float images in [0, 1] bilinearly and return uint8."""
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    xf = x.float().div_(255)
    std = xf.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(xf.mean(dim=(0, 2, 3)).tolist()), tuple(std.tolist())


def _resized(data: ImageData, size: int) -> ImageData:
    tr = _to_uint8_resized(data.train_x.float() / 255, size)
    te = _to_uint8_resized(data.test_x.float() / 255, size)
    mean, std = _channel_stats(tr)
    return ImageData(data.name, tr, data.train_y, te, data.test_y, data.num_classes, mean, std)


def read_digits(path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digits as 8x8 images (values 0-16) and labels (0-9), as ``sklearn.datasets.load_digits``
    gives them; a file of another shape or range is an error naming it."""
    path = digits_file() if path is None else path
    try:
        table = np.loadtxt(path, delimiter=",", ndmin=2)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: cannot be read as the digits table ({e}); reinstall scikit-learn") from None
    if table.shape != (1797, 65) or not np.isin(table, np.arange(17)).all() or table[:, -1].max() > 9:
        raise DataError(f"{path}: expected 1,797 rows of 64 pixels in 0-16 and a label in 0-9, found shape "
                        f"{table.shape}; reinstall scikit-learn")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


def load_digits(input_size: int, test_fraction: float = 0.2) -> ImageData:
    """scikit-learn's 8x8 handwritten digits (shipped with it), resized, as three identical channels.

    The test part is a fixed stratified-by-order slice (every fifth image), independent of seeds.
    """
    images, labels = read_digits()
    x = torch.from_numpy(images.astype(np.float32) / 16.0).unsqueeze(1).repeat(1, 3, 1, 1)
    y = torch.from_numpy(labels)
    x = _to_uint8_resized(x, input_size)
    test = torch.zeros(len(y), dtype=torch.bool)
    test[:: round(1 / test_fraction)] = True
    mean, std = _channel_stats(x[~test])
    return ImageData("digits", x[~test], y[~test], x[test], y[test], 10, mean, std)


#: An IDX file's magic number: two zero bytes, the type (0x08: unsigned bytes) and the number of dimensions.
IDX_MAGIC = {"images": b"\x00\x00\x08\x03", "labels": b"\x00\x00\x08\x01"}
def _read_bytes(path: Path, size: int = -1) -> bytes:
    """A file's first ``size`` bytes (all: -1), decompressed when its name ends in .gz."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as fh:
            return fh.read(size)
    except (OSError, EOFError, zlib.error) as e:  # a bad header: gzip.BadGzipFile (an OSError); bad data: zlib.error
        raise DataError(f"{path}: cannot be read ({e}); {FASHION_HELP}") from None


def _idx_shape(path: Path, raw: bytes, content: str) -> tuple[int, ...]:
    """The dimensions an IDX header declares, its magic number checked against ``content``."""
    magic, dims = IDX_MAGIC[content], 3 if content == "images" else 1
    if raw[:4] != magic:
        raise DataError(f"{path} is not an IDX file of {content} (magic number {raw[:4].hex() or 'missing'}, expected "
                        f"{magic.hex()}); {FASHION_HELP}")
    if len(raw) < 4 + 4 * dims:
        raise DataError(f"{path}: its header ends after {len(raw)} bytes, before its {dims} dimension(s): truncated; "
                        f"{FASHION_HELP}")
    return tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))


def read_idx_header(path: Path, content: str) -> tuple[int, ...]:
    """The dimensions an IDX file declares, read without its body (the start-up check's image count)."""
    return _idx_shape(path, _read_bytes(path, 16), content)


def read_idx(path: Path, content: str) -> np.ndarray:
    """One IDX file of Fashion-MNIST (compressed or not): (n, 28, 28) images or (n,) labels in 0-9, as uint8;
    a file of another magic number, shape or size, or a label outside 0-9, is an error naming it."""
    raw = _read_bytes(path)
    shape = _idx_shape(path, raw, content)
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * len(shape))
    if (content == "images" and shape[1:] != (28, 28)) or body.size != int(np.prod(shape)):
        raise DataError(f"{path}: the header says {content} of shape {shape}, the file holds {body.size} bytes after it "
                        f"(Fashion-MNIST's images are 28 x 28): truncated or not Fashion-MNIST; {FASHION_HELP}")
    out = body.reshape(shape)
    if content == "labels" and out.size and out.max() > 9:
        raise DataError(f"{path}: label {out.max()} outside 0-9; {FASHION_HELP}")
    return out


def _fashion_part(root: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = (read_idx(fashion_file(root, name), content)
                      for name, content in zip(FASHION_FILES[part], ("images", "labels")))
    if len(images) != len(labels) or len(images) == 0:
        raise DataError(f"Fashion-MNIST in {root}: the {part} part has {len(images)} images and {len(labels)} labels; "
                        f"{FASHION_HELP}")
    return images, labels


def load_fashion_mnist(root: str | os.PathLike | None, input_size: int) -> ImageData:
    """Fashion-MNIST (Xiao et al. 2017: 60,000 training and 10,000 test 28x28 grey images of clothes, 10
    classes) from its four IDX files, resized bilinearly to ``input_size`` as three identical channels,
    normalised by its training images' statistics; the test part is the official test set."""
    root = Path(root or FASHION_ROOT)
    parts = [_fashion_part(root, part) for part in ("train", "test")]
    grey = [_to_uint8_resized(torch.from_numpy(images.astype(np.float32) / 255).unsqueeze(1), input_size)
            for images, _ in parts]
    (mean,), (std,) = _channel_stats(grey[0])  # one channel's: the three are the same
    x = [g.repeat(1, 3, 1, 1) for g in grey]
    return ImageData("fashion_mnist", x[0], torch.from_numpy(parts[0][1].astype(np.int64)), x[1],
                     torch.from_numpy(parts[1][1].astype(np.int64)), 10, (mean,) * 3, (std,) * 3)


def download_fashion_mnist(root: str | os.PathLike) -> bool:
    """Let torchvision download Fashion-MNIST's four files into ``root`` unless they are there."""
    root = Path(root)
    try:
        for part in FASHION_FILES:
            for name in FASHION_FILES[part]:
                fashion_file(root, name)
        return False
    except DataError:
        pass
    import torchvision

    with _staged(root, "Fashion-MNIST", FASHION_BY_HAND) as stage:
        torchvision.datasets.FashionMNIST(str(stage), train=True, download=True)
    return True


#: Where to get each downloadable dataset's files, and where they go, when the download cannot be made.
FASHION_BY_HAND = ("fetch the four files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                   "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (github.com/zalandoresearch/fashion-mnist) "
                   "into {root}, or install Debian's dataset-fashion-mnist and leave data.root out")
CIFAR_BY_HAND = ("fetch cifar-10-binary.tar.gz from www.cs.toronto.edu/~kriz/cifar.html and extract it into {root} "
                 "(which then holds cifar-10-batches-bin/)")


@contextlib.contextmanager
def _staged(root: Path, name: str, by_hand: str) -> Iterator[Path]:
    """A fresh folder under ``root`` for a download to write into; its files are moved into ``root`` once the
    body has finished. A body that fails (no network, the server refusing, a file that fails its checksum)
    is a :class:`DataError` saying how to place the files by hand; a failed or interrupted body leaves nothing
    it made behind: the folder, its partial files, and ``root`` and the folders above it made for it."""
    made = [p for p in (root, *root.parents) if not p.exists()]
    root.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    try:
        yield stage
    except BaseException as err:  # what torchvision raises (URLError, HTTPError, RuntimeError, OSError), or a signal
        shutil.rmtree(stage, ignore_errors=True)
        for folder in made:  # the deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        if not isinstance(err, Exception):
            raise
        raise DataError(f"downloading {name} into {root} failed ({type(err).__name__}: {cut(err, 300)}); nothing of it was "
                        f"kept. To place the files by hand, {by_hand.format(root=root)}; then set data.download: "
                        "false") from None
    for file in sorted(p for p in stage.rglob("*") if p.is_file()):
        target = root / file.relative_to(stage)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(file, target)
    shutil.rmtree(stage)


def synthetic(n_train: int = 512, n_test: int = 128, input_size: int = 16, num_classes: int = 10,
              seed: int = 0) -> ImageData:
    """Random images and labels of any size, for tests."""
    g = torch.Generator().manual_seed(seed)
    shape = (3, input_size, input_size)
    x = torch.randint(0, 256, (n_train + n_test, *shape), generator=g, dtype=torch.uint8)
    y = torch.randint(0, num_classes, (n_train + n_test,), generator=g)
    return ImageData("synthetic", x[:n_train], y[:n_train], x[n_train:], y[n_train:], num_classes,
                     (0.5, 0.5, 0.5), (0.289, 0.289, 0.289))


def read_cifar_bin(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Parse one file of the official binary format (label byte + 3,072 pixel bytes per record)."""
    if not path.is_file():
        raise DataError(f"CIFAR-10 batch file missing: {path}. Restore it from cifar-10-binary.tar.gz.")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % CIFAR_RECORD:
        raise DataError(
            f"CIFAR-10 batch file {path} is truncated or corrupt: {raw.size} bytes is not a whole "
            f"number of {CIFAR_RECORD}-byte records. Delete it and extract it again."
        )
    rec = raw.reshape(-1, CIFAR_RECORD)
    labels = rec[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"CIFAR-10 batch file {path} is corrupt: label {labels.max()} outside 0..9")
    images = rec[:, 1:].reshape(-1, 3, 32, 32)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels)


def download(name: str, root: str | os.PathLike | None) -> bool:
    """Let torchvision download a dataset that lives on disk into ``root`` unless it is there already; True
    when it downloaded; a :class:`DataError` saying how to place the files by hand when it cannot, with
    nothing half-made left. The workflow calls it once at start (``data.download: true``), before any job."""
    if name == "cifar10":
        return download_cifar10(root)
    if name == "fashion_mnist":
        return download_fashion_mnist(root)
    return False


def download_cifar10(root: str | os.PathLike) -> bool:
    """Let torchvision download CIFAR-10's python version into ``root`` unless a layout is there already."""
    root = Path(root)
    if root.is_dir() and find_cifar(root) is not None:
        return False
    import torchvision

    with _staged(root, "CIFAR-10", CIFAR_BY_HAND) as stage:
        torchvision.datasets.CIFAR10(str(stage), train=True, download=True)
        (stage / "cifar-10-python.tar.gz").unlink(missing_ok=True)  # extracted: cifar-10-batches-py/ is what is read
    return True


def load_cifar10(root: str | os.PathLike) -> ImageData:
    """CIFAR-10 from ``root``: the official binary layout (parsed with numpy, no pickle), or the
    python layout through torchvision, whose MD5 check runs before anything is unpickled."""
    root = Path(root)
    found = find_cifar(root) if root.is_dir() else None
    if found is None:
        raise DataError(
            f"CIFAR-10 not found in {root}: expected cifar-10-batches-bin/ (the official binary "
            "version) or cifar-10-batches-py/ (the python version) there. Extract the archive into "
            "that directory, point data.root at it, or set data.download: true to let torchvision "
            "download it."
        )
    layout, path = found
    if layout == "bin":
        parts = [read_cifar_bin(path / f) for f in CIFAR_TRAIN_FILES]
        train_x = torch.cat([p[0] for p in parts])
        train_y = torch.cat([p[1] for p in parts])
        test_x, test_y = read_cifar_bin(path / CIFAR_TEST_FILE)
    else:
        import torchvision

        base = path.parent
        try:
            tr = torchvision.datasets.CIFAR10(str(base), train=True, download=False)
            te = torchvision.datasets.CIFAR10(str(base), train=False, download=False)
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted."
            raise DataError(
                f"CIFAR-10 python batches in {path} failed torchvision's MD5 check ({err}). "
                "Extract cifar-10-python.tar.gz there again, or use the binary version."
            ) from err
        train_x = torch.from_numpy(tr.data).permute(0, 3, 1, 2).contiguous()
        train_y = torch.tensor(tr.targets)
        test_x = torch.from_numpy(te.data).permute(0, 3, 1, 2).contiguous()
        test_y = torch.tensor(te.targets)
    mean, std = _channel_stats(train_x)
    return ImageData("cifar10", train_x, train_y, test_x, test_y, 10, mean, std)


def split_indices(n: int, val_fraction: float, seed: int, use: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/validation split of ``n`` training images from a seed; ``use``: split only that many
    of them, a seeded subset (``data.train_images``: what an epoch costs), all when None."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
    used = n if use is None else use
    if not 0 < used <= n:
        raise DataError(f"data.train_images: {use} must be between 1 and the dataset's {n} training images")
    n_val = int(round(used * val_fraction))
    if n_val == 0 or n_val == used:
        raise DataError(f"a validation fraction of {val_fraction} of {used} images leaves an empty split")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:used]), np.sort(perm[:n_val])


_STATS: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def normalize(x: torch.Tensor, data: ImageData) -> torch.Tensor:
    """uint8 images to normalised float (the statistics' tensors made once per device, not per batch:
    building them from Python numbers on a GPU is a copy that waits for the device)."""
    key = (data.mean, data.std, x.device)
    if key not in _STATS:
        _STATS[key] = (torch.tensor(data.mean, device=x.device).view(1, 3, 1, 1),
                       torch.tensor(data.std, device=x.device).view(1, 3, 1, 1))
    mean, std = _STATS[key]
    return (x.float().div_(255) - mean) / std


@dataclass(frozen=True)
class Draws:
    """Random choices for ``n`` images, drawn on the CPU: crop offsets and (optionally) flips."""

    dx: torch.Tensor
    dy: torch.Tensor
    flips: torch.Tensor | None


def draw_augment(n: int, generator: torch.Generator, flip: bool = True, pad: int = 4) -> Draws:
    """The crops (offsets in 0..2 ``pad``) and flips of ``n`` images, from a CPU ``generator``, so that a
    seed draws the same augmentation on every device."""
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    return Draws(dx, dy, torch.rand(n, generator=generator) < 0.5 if flip else None)


def crop_flip(x: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, flips: torch.Tensor | None, pad: int) -> torch.Tensor:
    """Images ``x`` cropped at offsets ``dx``, ``dy`` of their zero-padded copy and flipped where ``flips``;
    the draws on ``x``'s device. No step depends on a value read back from the device."""
    n, _, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = (dy.view(n, 1) + torch.arange(h, device=dev)).view(n, 1, h, 1).expand(n, 3, h, w)
    cols = (dx.view(n, 1) + torch.arange(w, device=dev)).view(n, 1, 1, w).expand(n, 3, h, w)
    out = padded[torch.arange(n, device=dev).view(n, 1, 1, 1), torch.arange(3, device=dev).view(1, 3, 1, 1), rows, cols]
    if flips is None:
        return out
    return torch.where(flips.view(n, 1, 1, 1), out.flip(-1), out)


def augment(x: torch.Tensor, generator: torch.Generator, flip: bool = True, pad: int = 4) -> torch.Tensor:
    """Random crop with zero padding and (optionally) horizontal flip, drawn from a CPU ``generator``."""
    d = draw_augment(len(x), generator, flip, pad)
    flips = None if d.flips is None else d.flips.to(x.device)
    return crop_flip(x, d.dx.to(x.device), d.dy.to(x.device), flips, pad)


@dataclass(frozen=True)
class Epoch:
    """One training epoch's random choices, drawn on the CPU: the order of the images and, with
    augmentation, each image's crop and flip (indexed by position in that order)."""

    order: torch.Tensor
    augment: Draws | None

    def to(self, device: torch.device) -> Epoch:
        """The draws on ``device``, in one copy (see :func:`fewshot_core.device.to_device`)."""
        a = self.augment
        parts = [self.order] + ([] if a is None else [a.dx, a.dy] + ([] if a.flips is None else [a.flips.long()]))
        moved = to_device(torch.cat(parts), device).split(len(self.order))
        if a is None:
            return Epoch(moved[0], None)
        return Epoch(moved[0], Draws(moved[1], moved[2], None if a.flips is None else moved[3].bool()))


def draw_epoch(n: int, batch_size: int, order: torch.Generator, augment: torch.Generator | None = None,
               flip: bool = True, pad: int = 4) -> Epoch:
    """An epoch of ``n`` images in batches of ``batch_size``: a permutation from ``order`` and, when
    ``augment`` is given, each batch's crops and flips from it, batch after batch (so a run draws the
    same numbers as drawing each batch's as it comes)."""
    if n == 0:
        raise DataError("the dataset split is empty: nothing to iterate over")
    perm = torch.randperm(n, generator=order)
    if augment is None:
        return Epoch(perm, None)
    draws = [draw_augment(min(batch_size, n - i), augment, flip, pad) for i in range(0, n, batch_size)]
    flips = None if not flip else torch.cat([d.flips for d in draws])
    return Epoch(perm, Draws(torch.cat([d.dx for d in draws]), torch.cat([d.dy for d in draws]), flips))
