"""The GPU path, shown on a CPU: what runs on a device never waits for it in the inner loops, values are
read back only through ``device.read`` (or after ``.cpu()``), every random draw comes from the CPU, and
the numerics a GPU computes with are set before any job computes.

Two stand-ins for a GPU: tensors on PyTorch's ``meta`` device (shapes only: any read of a value on the
host fails, as a read on a GPU is a wait), and :class:`DeviceOnly`, a CPU tensor that refuses to be read
on the host until it is moved to the CPU, as a GPU tensor refuses ``.numpy()``."""

from __future__ import annotations

import dataclasses
from unittest import mock

import numpy as np
import pytest
import torch

from fewshot_core import artifacts, data, metrics
from fewshot_core import device as devices
from fewshot_core import train as training
from fewshot_core.metrics import Batch
from fewshot_core.space import Supernet

META = torch.device("meta")
SHAPE = dict(C=4, N=1, input_size=8)


class DeviceOnly(torch.Tensor):
    """A tensor whose values cannot be read on the host (numpy, item, tolist, bool, float) until
    ``.cpu()`` brings it back as a plain tensor: a GPU tensor's behaviour, on the CPU."""

    REFUSED = {torch.Tensor.numpy, torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__,
               torch.Tensor.__float__, torch.Tensor.__int__, torch.Tensor.__index__, torch.Tensor.__array__}

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in cls.REFUSED:
            raise TypeError(f"{func.__name__} of a tensor on the device: move it to the CPU first")
        out = super().__torch_function__(func, types, args, kwargs or {})
        if func is torch.Tensor.cpu and isinstance(out, torch.Tensor):
            return out.as_subclass(torch.Tensor)
        return out


def tiny_data(name: str = "synthetic") -> data.ImageData:
    return dataclasses.replace(data.synthetic(n_train=96, n_test=8, input_size=8, seed=0), name=name)


@pytest.fixture
def cfg(defaults):
    return dataclasses.replace(defaults.leaf_training, epochs=2, batch_size=16)


@pytest.fixture
def reads(monkeypatch):
    """Every value read back from the device through ``device.read``, answered with zeros on ``meta``."""
    seen = []

    def read(t: torch.Tensor) -> list:
        seen.append(tuple(t.shape))
        return torch.zeros(t.shape, dtype=torch.float64).tolist() if t.device.type == "meta" else t.tolist()

    for module in (devices, metrics.base, metrics.baselines):  # the last two import it by name
        monkeypatch.setattr(module, "read", read)
    return seen


# ----------------------------------------------------------------------------- values read back


def test_vector_similarity_compares_vectors_where_they_are():
    """gm's and gm_nas's vectors come from the device; the matrix is computed there and read back once."""
    torch.manual_seed(0)
    plain = [torch.randn(2, 50) for _ in range(4)] + [torch.zeros(2, 50)]
    on_device = [v.as_subclass(DeviceOnly) for v in plain]
    with pytest.raises(TypeError, match="on the device"):
        on_device[0].numpy()
    np.testing.assert_array_equal(metrics.similarity("vector", on_device), metrics.similarity("vector", plain))


@pytest.mark.parametrize("name", ["gradnorm", "snip", "grasp", "synflow", "nparams"])
def test_a_metric_reads_its_value_once_not_once_per_layer(name, reads):
    """On ``meta`` any ``.item()`` fails: a per-layer read fails the metric; the one read is ``device.read``."""
    torch.manual_seed(0)
    net = Supernet(**SHAPE).to(META)
    batch = Batch(torch.zeros(4, 3, 8, 8, device=META), torch.zeros(4, dtype=torch.long, device=META))
    metrics.value(name, net, [batch])
    assert len(reads) == 1


# ----------------------------------------------------------------------------- training and evaluation


def test_a_training_run_reads_the_device_once_per_epoch(cfg, reads):
    """Drawing, cropping, flipping, the step and the epoch's sums never wait for the device."""
    torch.manual_seed(0)
    net = Supernet(**SHAPE)
    training.train(net, tiny_data(), np.arange(64), dataclasses.replace(cfg, mode="single_path"), 0, device=META)
    assert reads == [(2,), (2,)]


def test_evaluation_reads_the_device_once_for_all_architectures(defaults, reads):
    """Batch-norm re-estimation (no ``momentum=None``, whose update reads each module's batch count) and
    every architecture's evaluation stay on the device; the results are read together at the end."""
    torch.manual_seed(0)
    net = Supernet(**SHAPE).to(META)
    d = tiny_data()
    archs = training.sample_architectures(net.mask, 3, 0)
    images = (torch.zeros(8, 3, 8, 8, device=META), torch.zeros(8, dtype=torch.long, device=META))
    evaluation = dataclasses.replace(defaults.evaluation, batch_size=16)
    table = training.evaluate_architectures(net, d, np.arange(64), images, archs, evaluation, 0, device=META)
    assert reads == [(3, 2)] and len(table) == 3


def test_the_same_seed_draws_the_same_batches_crops_flips_and_paths_on_any_device(cfg, reads, monkeypatch):
    """Every generator is a CPU one: a run on another device draws exactly what the CPU run draws."""
    drawn: dict[str, list] = {"cpu": [], "meta": []}
    original = data.draw_epoch

    def spy(*args, **kwargs):
        epoch = original(*args, **kwargs)
        drawn[where].append(epoch)
        return epoch

    monkeypatch.setattr(training.data, "draw_epoch", spy)
    paths = {}
    for where in drawn:
        torch.manual_seed(0)
        net = Supernet(**SHAPE)
        training.train(net, tiny_data("fashion"), np.arange(64), dataclasses.replace(cfg, mode="single_path"), 3,
                       device=torch.device(where))
        paths[where] = net.path_generator.get_state()
    assert len(drawn["cpu"]) == 2
    for a, b in zip(drawn["cpu"], drawn["meta"]):
        assert torch.equal(a.order, b.order)
        assert torch.equal(a.augment.dx, b.augment.dx) and torch.equal(a.augment.flips, b.augment.flips)
    assert drawn["cpu"][0].augment.flips.any()  # this dataset's images are flipped, unlike the digits
    assert torch.equal(paths["cpu"], paths["meta"])


def test_the_epoch_draws_equal_drawing_each_batch_as_it_comes():
    """Drawing an epoch's augmentation up front is the same stream as drawing batch by batch (what the
    CPU did before the GPU path, so the CPU's results did not move)."""
    whole = data.draw_epoch(37, 16, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1), pad=2)
    g = torch.Generator().manual_seed(1)
    parts = [data.draw_augment(n, g, pad=2) for n in (16, 16, 5)]
    assert torch.equal(whole.augment.dx, torch.cat([p.dx for p in parts]))
    assert torch.equal(whole.augment.flips, torch.cat([p.flips for p in parts]))
    moved = whole.to(torch.device("cpu"))
    assert torch.equal(moved.order, whole.order) and moved.augment.flips.dtype == torch.bool


def test_the_flip_is_a_select_not_a_masked_assignment():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).view(2, 3, 4, 4)
    out = data.crop_flip(x, torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long),
                         torch.tensor([True, False]), pad=0)
    assert torch.equal(out[0], x[0].flip(-1)) and torch.equal(out[1], x[1])
    on_meta = data.crop_flip(x.to(META), torch.zeros(2, dtype=torch.long, device=META),
                             torch.zeros(2, dtype=torch.long, device=META), torch.ones(2, dtype=torch.bool, device=META), 1)
    assert on_meta.shape == x.shape


def test_batch_norm_re_estimation_equals_torchs_cumulative_average_bit_for_bit():
    """The k-th batch weighted 1/k as a float, each convolution's batch norm on its own channels: what
    ``momentum=None`` computed (which reads each module's batch count back from the device)."""
    torch.manual_seed(0)
    net = Supernet(C=4, N=2, input_size=8)
    x = torch.randn(40, 3, 8, 8)
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|nor_conv_3x3~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    reference = Supernet(C=4, N=2, input_size=8)
    reference.load_state_dict(net.state_dict())
    for m in reference.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    reference.train()
    with torch.no_grad():
        for i in range(0, 40, 16):
            reference(x[i : i + 16], arch=arch)
    training.recalibrate_bn(net, arch, x, 16)
    for (name, a), b in zip(net.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name
    assert not any(cell.separate_bn for cell in net.cells if hasattr(cell, "separate_bn"))


def test_the_mixture_scale_stays_float32_under_bfloat16_autocast():
    """A bfloat16 batch-norm weight beside float32 running statistics fails CUDA's backward."""
    from fewshot_core import space

    torch.manual_seed(0)
    net = Supernet(**SHAPE)  # every edge a mixture: scales below 1
    space._SCALES.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(torch.randn(2, 3, 8, 8))
    out.float().sum().backward()
    assert space._SCALES and all(v.dtype == torch.float32 for v in space._SCALES.values())


def test_the_evaluation_batch_changes_no_result():
    """Eval mode computes each image on its own, so a GPU may evaluate many more images per pass."""
    torch.manual_seed(0)
    net = Supernet(**SHAPE)
    d = data.synthetic(n_train=16, n_test=200, input_size=8, seed=1)
    x, y = training.test_images(d, torch.device("cpu"))
    arch = training.sample_architectures(net.mask, 1, 0)[0]
    small, large = training.validate(net, x, y, 7, arch), training.validate(net, x, y, 200, arch)
    assert small[0] == large[0] and small[1] == pytest.approx(large[1], rel=1e-6)
    assert training.eval_batch(128, torch.device("cuda")) == devices.GPU_EVAL_BATCH
    assert training.eval_batch(128, torch.device("cpu")) == 128


def test_constants_of_the_forward_pass_are_made_once_per_device():
    """The mixture's scale and the normalisation's statistics: a tensor built from Python numbers on a GPU
    is a copy the host waits for, so neither is rebuilt per batch."""
    torch.manual_seed(0)
    net = Supernet(**SHAPE)
    x = torch.randn(2, 3, 8, 8)
    net(x)
    from fewshot_core import space

    before = dict(space._SCALES)
    net(x)
    assert before and all(space._SCALES[k] is v for k, v in before.items())
    d = tiny_data()
    data.normalize(d.train_x[:2], d)
    stats = data._STATS[(d.mean, d.std, torch.device("cpu"))]
    data.normalize(d.train_x[2:4], d)
    assert data._STATS[(d.mean, d.std, torch.device("cpu"))] is stats


# ----------------------------------------------------------------------------- checkpoints across devices


class Stop(Exception):
    pass


def _interrupted(cfg, path):
    torch.manual_seed(0)

    def stop(epoch):
        raise Stop

    with pytest.raises(Stop), mock.patch.object(training, "CHECKPOINT_SECONDS", 0):
        training.train(Supernet(**SHAPE), tiny_data(), np.arange(64), cfg, 0, checkpoint=artifacts.Checkpoints(path, "k"),
                       on_epoch=stop)


def test_a_checkpoint_made_on_a_gpu_resumes_on_the_cpu(tmp_path, cfg, capsys):
    """Its generators are CPU ones, whatever device wrote it: the run goes on where it stopped."""
    ck = tmp_path / "ck.pt"
    _interrupted(cfg, ck)
    state, record = artifacts._torch_load(ck, "checkpoint", artifacts.CHECKPOINT_FORMAT)
    artifacts._torch_save({**state, "device": "cuda:0"}, ck, artifacts.CHECKPOINT_FORMAT, record)
    torch.manual_seed(0)
    history = training.train(Supernet(**SHAPE), tiny_data(), np.arange(64), cfg, 0, checkpoint=artifacts.Checkpoints(ck, "k"))
    assert [h["epoch"] for h in history] == [2]
    assert "after epoch 1 (made on cuda:0)" in capsys.readouterr().out


def test_a_checkpoint_with_a_gpu_generator_state_is_discarded_not_a_crash(tmp_path, cfg, capsys):
    """Before every draw moved to the CPU, a GPU run saved its CUDA generators' 16-byte states: such a
    checkpoint says nothing of where its draws live, and starts the run over with a line saying so."""
    ck = tmp_path / "ck.pt"
    _interrupted(cfg, ck)
    state, record = artifacts._torch_load(ck, "checkpoint", artifacts.CHECKPOINT_FORMAT)
    rng = {**state["rng"], "order": torch.zeros(16, dtype=torch.uint8)}
    old = {**record, "origin": {k: v for k, v in record["origin"].items() if k != "draws"}}
    artifacts._torch_save({**state, "rng": rng}, ck, artifacts.CHECKPOINT_FORMAT, old)
    torch.manual_seed(0)
    history = training.train(Supernet(**SHAPE), tiny_data(), np.arange(64), cfg, 0, checkpoint=artifacts.Checkpoints(ck, "k"))
    assert [h["epoch"] for h in history] == [1, 2]
    assert "discarding checkpoint" in capsys.readouterr().out


# ----------------------------------------------------------------------------- numerics


@pytest.fixture
def gpu_numerics():
    """``configure`` for a GPU (it sets flags only: no GPU is touched), undone after the test."""
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.utils.deterministic.fill_uninitialized_memory)
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    devices.configure(torch.device("cuda"))
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[0], saved[1]
    torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])
    torch.utils.deterministic.fill_uninitialized_memory = saved[4]
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


def every_tf32_flag() -> dict:
    """Every reading of torch's TF32 settings, the older flags and ``cudnn.flags()`` included (what a
    profiler, ``torch.compile`` or a user's metric may read); any of them raises when the two sets disagree."""
    found = {"cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
             "matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
             "float32_matmul_precision": torch.get_float32_matmul_precision()}
    with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled):
        found["inside cudnn.flags()"] = torch.backends.cudnn.allow_tf32
    if hasattr(torch.backends.cudnn, "conv"):  # torch >= 2.9: the newer flags, which must agree
        found["newer"] = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision,
                          torch.backends.cudnn.rnn.fp32_precision)
    return found


def test_a_gpu_computes_float32_without_tf32_and_deterministically(gpu_numerics):
    assert not torch.backends.cudnn.allow_tf32  # torch's default for convolutions is TF32
    assert not torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert torch.are_deterministic_algorithms_enabled()
    assert not devices.tf32_enabled()


def test_a_metric_called_directly_on_a_gpu_computes_without_tf32(gpu_numerics):
    """Outside the workflow's stages (which configure the device first), a metric still runs in float32."""
    gpu = torch.device("cuda")
    devices.set_tf32(True)
    with devices.exact(gpu):
        assert not devices.tf32_enabled()
    assert devices.tf32_enabled()
    with devices.exact(torch.device("cpu")):  # a CPU has no TF32: its settings are left alone
        assert devices.tf32_enabled()


def test_tf32_and_bfloat16_only_where_training_asks_for_them(gpu_numerics):
    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    with devices.tf32("tf32", gpu):
        assert devices.tf32_enabled()
    assert not devices.tf32_enabled()
    for precision in ("float32", "bfloat16"):
        with devices.tf32(precision, gpu):
            assert not devices.tf32_enabled()
    with devices.tf32("tf32", cpu):
        assert not devices.tf32_enabled()
    assert isinstance(devices.autocast("bfloat16", gpu), torch.autocast)
    assert not isinstance(devices.autocast("bfloat16", cpu), torch.autocast)
    assert not isinstance(devices.autocast("tf32", gpu), torch.autocast)


def test_every_tf32_flag_reads_without_error_after_configure_and_in_tf32_training(gpu_numerics):
    """The older flags, ``cudnn.flags()`` and the matmul precision read as they should, never raising,
    after ``configure`` and while training with ``training.precision: tf32``; the newer flags agree."""
    off = every_tf32_flag()
    assert {k: v for k, v in off.items() if k != "newer"} == {
        "cudnn.allow_tf32": False, "matmul.allow_tf32": False, "float32_matmul_precision": "highest",
        "inside cudnn.flags()": True}  # torch's flags() turns TF32 on unless told otherwise ...
    assert not devices.tf32_enabled()  # ... and restores the setting after
    if "newer" in off:
        assert "tf32" not in off["newer"]
    with devices.tf32("tf32", torch.device("cuda")):
        on = every_tf32_flag()
        assert {k: v for k, v in on.items() if k != "newer"} == {
            "cudnn.allow_tf32": True, "matmul.allow_tf32": True, "float32_matmul_precision": "high",
            "inside cudnn.flags()": True}
        assert on.get("newer", ("tf32",) * 3) == ("tf32",) * 3
        with devices.exact(torch.device("cuda")):
            assert every_tf32_flag()["cudnn.allow_tf32"] is False
        assert devices.tf32_enabled()
    assert every_tf32_flag() == off


# ----------------------------------------------------------------------------- records


def test_every_computed_file_names_its_device_and_the_summary_names_a_mixed_run(tiny_run):
    from collections import Counter

    from fewshot_core import report

    found = report.devices_of(tiny_run / "results" / "tiny")
    assert set(found) == {"cpu"} and found["cpu"] >= 40  # scores, weights, leaves, study tables
    assert report.devices_line(found).startswith("Computed on cpu (")
    mixed = report.devices_line(Counter({"cpu": 3, "cuda:0": 2}))
    assert "more than one device: cpu (3 files), cuda:0 (2 files)" in mixed
    assert "more than one" not in report.devices_line(Counter({"cuda:0": 2, "cuda:1": 1}))
