"""Datasets: the embedded digits, CIFAR-10 from its official binary files, synthetic, splits."""

import pickle

import numpy as np
import pytest
import torch

from fewshot_core import data
from fewshot_core.data import CIFAR_RECORD, DataError


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
    d = data.load("digits", input_size=16)
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
    d = data.load("cifar10", root=tmp_path)
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
        data.load("cifar10", root=tmp_path)


@pytest.mark.faults
def test_cifar10_missing_batch_file_names_the_file(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar_bin(folder)
    (folder / "data_batch_5.bin").unlink()
    with pytest.raises(DataError, match=r"missing: .*data_batch_5\.bin"):
        data.load("cifar10", root=tmp_path)


@pytest.mark.faults
def test_cifar10_missing_directory_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match=r"not found in .*nowhere.*download"):
        data.load("cifar10", root=tmp_path / "nowhere")


@pytest.mark.faults
def test_cifar10_python_layout_keeps_torchvisions_md5_check(tmp_path):
    """Python-format files that are not the official ones are refused before being unpickled."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [0]}))
    with pytest.raises(DataError, match="MD5"):
        data.load("cifar10", root=tmp_path)


def test_unknown_dataset_lists_the_allowed_names():
    with pytest.raises(DataError, match="digits, cifar10, synthetic"):
        data.load("mnist")


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
