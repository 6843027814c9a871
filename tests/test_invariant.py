"""A supernet restricted to one architecture is that architecture: the same logits and the same value
of every metric as the standalone network holding the same weights (``space.extract``)."""

import random

import numpy as np
import pytest
import torch

from fewshot_core import metrics
from fewshot_core.metrics import Batch
from fewshot_core.nb201 import arch_to_mask, architectures, full_mask
from fewshot_core.space import Supernet, extract

#: Relative tolerance per metric: float32 sums in another order (a batched convolution against one per
#: edge), except where a value is an exact count (naswot's codes, lr's patterns, parameters) or float64.
RTOL = {"gm": 1e-4, "gm_nas": 1e-4, "gradnorm": 1e-5, "snip": 1e-5, "grasp": 1e-4, "synflow": 1e-9,
        "jacobcov": 1e-6, "naswot": 1e-9, "ntk": 1e-3, "lr": 0.0, "nparams": 0.0, "convs": 0.0}
#: lr counts its regions on a fresh thin twin of a supernet's mask by default (TE-NAS); ``width: None``
#: counts them on the network given, which is what this invariant compares.
SETTINGS = {"lr": {"crops": 300, "width": None}}
ARCHS = random.Random(0).sample(architectures(full_mask()), 20)


def digits(n: int, size: int):
    from fewshot_core import data

    d = data.load_digits(size)
    return Batch(data.normalize(d.train_x[:n], d), d.train_y[:n])


def both(net: Supernet, arch: str, name: str, batch: Batch):
    """The metric on the supernet whose mask keeps only ``arch``, and on ``arch``'s standalone network."""
    net.set_mask(arch_to_mask(arch), connected=False)
    standalone = extract(net, arch)
    kwargs = dict(settings=SETTINGS.get(name), seed=3, edge=0)
    return metrics.value(name, net, [batch], **kwargs), metrics.value(name, standalone, [batch], **kwargs)


def assert_same(name: str, on_supernet, on_standalone) -> None:
    if metrics.get(name).kind == "vector":  # the same gradient entries, in each network's parameter order
        a, b = on_supernet.flatten().double(), on_standalone.flatten().double()
        assert len(a) >= len(b)  # the supernet also holds the operations the architecture does not use
        b = torch.cat([b, torch.zeros(len(a) - len(b), dtype=b.dtype)])
        torch.testing.assert_close(a.sort().values, b.sort().values, rtol=RTOL[name], atol=1e-6 * a.abs().max())
    else:
        assert on_supernet == pytest.approx(on_standalone, rel=RTOL[name], abs=1e-12), name


SCORED = sorted(set(metrics.REGISTRY) - {"random"})  # random has no values, only a seeded grouping


@pytest.mark.parametrize("name", SCORED)
def test_every_metric_on_twenty_architectures_at_c8_n1(name):
    torch.manual_seed(0)
    net = Supernet(C=8, N=1, input_size=8)
    batch = digits(16, 8)
    for arch in ARCHS:
        assert_same(name, *both(net, arch, name, batch))


@pytest.mark.parametrize("name", SCORED)
def test_every_metric_on_a_few_architectures_at_c16_n5(name):
    torch.manual_seed(1)
    net = Supernet(C=16, N=5, input_size=8)
    batch = digits(8, 8)
    for arch in ARCHS[:2]:
        assert_same(name, *both(net, arch, name, batch))


def test_logits_are_equal():
    torch.manual_seed(0)
    net = Supernet(C=8, N=1, input_size=16).train()
    x = digits(8, 16).inputs
    for arch in ARCHS:
        net.set_mask(arch_to_mask(arch), connected=False)
        assert torch.equal(net(x), extract(net, arch)(x))
        assert np.array_equal(net.mask, arch_to_mask(arch))
