"""Datasets: the embedded digits, Fashion-MNIST and CIFAR-10 from their official files, synthetic, splits."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from fewshot_core import data
from fewshot_core.data import CIFAR_RECORD, DataError
from tests.fashion import write_fashion


def write_cifar_bin(directory, n_per_file=7, seed=0):
    """Small files in the official binary format: one label byte then 3,072 pixel bytes per record."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    records = {}
    for name in (*data.CIFAR_TRAIN_FILES, data.CIFAR_TEST_FILE):
        rec = rng.integers(0, 256, size=(n_per_file, CIFAR_RECORD), dtype=np.uint8)
        rec[:, 0] = rng.integers(0, 10, size=n_per_file)
        rec.tofile(directory / name)
        records[name] = rec
    return records


def test_digits_is_embedded_resized_and_three_channel():
    d = data.load("digits", None, input_size=16)
    assert d.train_x.shape[1:] == (3, 16, 16) and d.train_x.dtype == torch.uint8
    assert len(d.train_y) + len(d.test_y) == 1797
    assert set(d.train_y.tolist()) == set(range(10))
    assert torch.equal(d.train_x[:, 0], d.train_x[:, 2])
    x = data.normalize(d.train_x[:64], d)
    assert abs(x.mean().item()) < 0.5 and x.dtype == torch.float32


def test_digits_read_without_scikit_learn_equal_its_loader():
    from sklearn.datasets import load_digits

    images, labels = data.read_digits()
    reference = load_digits()
    np.testing.assert_array_equal(images, reference.images)
    np.testing.assert_array_equal(labels, reference.target)


@pytest.mark.faults
def test_a_damaged_digits_file_is_named(tmp_path):
    bad = tmp_path / "digits.csv.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(DataError, match="digits.csv.gz.*reinstall scikit-learn"):
        data.read_digits(bad)
    short = tmp_path / "short.csv"
    short.write_text("0," * 64 + "3\n")
    with pytest.raises(DataError, match="short.csv: expected 1,797 rows"):
        data.read_digits(short)


def test_cifar10_binary_layout_is_parsed_without_pickle(tmp_path):
    records = write_cifar_bin(tmp_path / "cifar-10-batches-bin")
    d = data.load("cifar10", root=tmp_path, input_size=32)
    assert d.train_x.shape == (35, 3, 32, 32) and d.test_x.shape == (7, 3, 32, 32)
    first = records["data_batch_1.bin"][0]
    assert d.train_y[0].item() == first[0]
    assert np.array_equal(d.train_x[0].numpy().reshape(-1), first[1:])  # channel-major, row-major pixels
    assert torch.equal(d.test_y, torch.from_numpy(records["test_batch.bin"][:, 0].astype(np.int64)))


@pytest.mark.faults
def test_cifar10_truncated_file_names_the_file(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar_bin(folder)
    raw = (folder / "data_batch_3.bin").read_bytes()
    (folder / "data_batch_3.bin").write_bytes(raw[:-100])
    with pytest.raises(DataError, match=r"data_batch_3\.bin is truncated"):
        data.load("cifar10", root=tmp_path, input_size=32)


@pytest.mark.faults
def test_cifar10_missing_batch_file_names_the_file(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar_bin(folder)
    (folder / "data_batch_5.bin").unlink()
    with pytest.raises(DataError, match=r"missing: .*data_batch_5\.bin"):
        data.load("cifar10", root=tmp_path, input_size=32)


@pytest.mark.faults
def test_cifar10_missing_directory_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match=r"not found in .*nowhere.*download"):
        data.load("cifar10", root=tmp_path / "nowhere", input_size=32)


@pytest.mark.faults
def test_cifar10_python_layout_keeps_torchvisions_md5_check(tmp_path):
    """Python-format files that are not the official ones are refused before being unpickled."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [0]}))
    with pytest.raises(DataError, match="MD5"):
        data.load("cifar10", root=tmp_path, input_size=32)


def test_unknown_dataset_lists_the_allowed_names():
    with pytest.raises(DataError, match="digits, fashion_mnist, cifar10, synthetic"):
        data.load("mnist", None, 16)


def test_split_is_deterministic_disjoint_and_seeded():
    a_train, a_val = data.split_indices(100, 0.2, seed=1)
    b_train, b_val = data.split_indices(100, 0.2, seed=1)
    c_train, _ = data.split_indices(100, 0.2, seed=2)
    assert np.array_equal(a_train, b_train) and np.array_equal(a_val, b_val)
    assert not np.array_equal(a_train, c_train)
    assert len(a_val) == 20 and not set(a_train) & set(a_val)


@pytest.mark.parametrize("fraction", [0.0, 1.0, 0.001])
def test_empty_split_is_an_error(fraction):
    with pytest.raises(DataError):
        data.split_indices(100, fraction, seed=0)


@pytest.mark.faults
def test_empty_dataset_split_is_an_error():
    with pytest.raises(DataError, match="empty"):
        data.draw_epoch(0, 4, torch.Generator().manual_seed(0))


def test_synthetic_any_shape_and_seeded():
    a, b = data.synthetic(n_train=10, n_test=2, input_size=12, seed=3), data.synthetic(10, 2, 12, seed=3)
    assert a.train_x.shape == (10, 3, 12, 12) and torch.equal(a.train_x, b.train_x)


def test_augment_crops_and_flips_deterministically():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    a = data.augment(x, torch.Generator().manual_seed(0))
    b = data.augment(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    assert torch.equal(data.augment(x, torch.Generator().manual_seed(0), flip=False, pad=0), x)


# ----------------------------------------------------------------------------- Fashion-MNIST

REAL_FASHION = Path(data.FASHION_ROOT)


@pytest.mark.parametrize("compressed", [True, False])
def test_fashion_mnist_from_its_idx_files_resized_grey_to_three_channels(tmp_path, compressed):
    arrays = write_fashion(tmp_path, compressed=compressed)
    d = data.load("fashion_mnist", root=tmp_path, input_size=16)
    assert d.name == "fashion_mnist" and d.num_classes == 10
    assert d.train_x.shape == (60, 3, 16, 16) and d.test_x.shape == (20, 3, 16, 16) and d.train_x.dtype == torch.uint8
    assert torch.equal(d.train_x[:, 0], d.train_x[:, 2])
    assert d.train_y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    full = data.load("fashion_mnist", root=tmp_path, input_size=28)
    assert np.array_equal(full.test_x[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])  # no resize: the bytes
    assert d.mean[0] == pytest.approx(float(d.train_x.float().mean() / 255), rel=1e-5)


def test_fashion_mnist_in_torchvisions_layout_is_found(tmp_path):
    write_fashion(tmp_path / "FashionMNIST" / "raw")
    assert len(data.load("fashion_mnist", root=tmp_path, input_size=8).train_y) == 60


@pytest.mark.faults
@pytest.mark.parametrize("damage, words", [
    ("missing", ["Fashion-MNIST file missing", "t10k-labels-idx1-ubyte", "dataset-fashion-mnist", "data.download"]),
    ("magic", ["not an IDX file of labels", "t10k-labels-idx1-ubyte"]),
    ("truncated", ["truncated", "t10k-images-idx3-ubyte"]),
    ("label", ["label 12 outside 0-9", "t10k-labels-idx1-ubyte"]),
    ("gzip", ["cannot be read", "train-images-idx3-ubyte.gz"]),
    ("gzip data", ["cannot be read", "train-images-idx3-ubyte.gz"]),
    ("short header", ["header ends after 6 bytes", "t10k-labels-idx1-ubyte"]),
])
def test_a_damaged_or_missing_fashion_mnist_file_is_one_line_naming_it(tmp_path, damage, words):
    write_fashion(tmp_path, compressed=False)
    write_fashion(tmp_path / "gz")
    labels, images = tmp_path / "t10k-labels-idx1-ubyte", tmp_path / "t10k-images-idx3-ubyte"
    root = tmp_path
    if damage == "missing":
        labels.unlink()
    elif damage == "magic":
        labels.write_bytes(b"\x00\x00\x08\x03" + labels.read_bytes()[4:])
    elif damage == "truncated":
        images.write_bytes(images.read_bytes()[:-100])
    elif damage == "label":
        labels.write_bytes(labels.read_bytes()[:-1] + bytes([12]))
    elif damage == "short header":
        labels.write_bytes(labels.read_bytes()[:6])
    else:
        root = tmp_path / "gz"
        gz = root / "train-images-idx3-ubyte.gz"
        if damage == "gzip":
            gz.write_bytes(b"\x1f\x8b\x08 damaged")
        else:  # a sound gzip header, then compressed data zlib cannot decode (zlib.error, not an OSError)
            raw = bytearray(gz.read_bytes())
            raw[12:52] = b"\xff" * 40
            gz.write_bytes(bytes(raw))
    with pytest.raises(DataError) as err:
        data.load("fashion_mnist", root=root, input_size=8)
    assert all(w in str(err.value) for w in words) and "\n" not in str(err.value)


@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason=f"Debian's dataset-fashion-mnist is not installed ({REAL_FASHION})")
def test_the_real_fashion_mnist_files_where_debian_installs_them():
    d = data.load("fashion_mnist", None, input_size=16)
    assert len(d.train_y) == 60000 and len(d.test_y) == 10000
    assert np.bincount(d.test_y.numpy()).tolist() == [1000] * 10
    assert 0.2 < d.mean[0] < 0.4  # Fashion-MNIST's mean pixel is about 0.286


def test_train_images_is_a_seeded_subset_split_before_the_holdout():
    whole = data.split_indices(100, 0.2, seed=3)
    assert np.array_equal(whole[0], data.split_indices(100, 0.2, seed=3, use=100)[0])
    train, val = data.split_indices(100, 0.2, seed=3, use=30)
    assert len(train) == 24 and len(val) == 6 and not set(train) & set(val) and max(train.max(), val.max()) < 100
    assert np.array_equal(val, np.sort(np.random.default_rng(3).permutation(100)[:6]))
    with pytest.raises(DataError, match="train_images"):
        data.split_indices(100, 0.2, seed=3, use=101)
