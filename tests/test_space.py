"""The search space: architecture strings, masks, the supernet and standalone networks."""

import pytest
import torch

from fewshot_core import space
from fewshot_core.space import OPS, MaskError, Supernet, count_parameters, standalone

ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
MIXED = "|nor_conv_1x1~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_3x3~1|nor_conv_1x1~2|"
POOL_1X1 = "|avg_pool_3x3~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_1x1~2|"
SKIP_ONLY = "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"

# Parameter counts of xautodl's TinyNetwork (the benchmark's reference definition) for the same
# architectures and sizes, read from xautodl 1.0.0.
REFERENCE_COUNTS = {
    (ALL_3X3, 16, 5, 10): 1_531_546,
    (ALL_3X3, 8, 1, 100): 94_956,
    (MIXED, 16, 5, 10): 372_346,
    (MIXED, 8, 1, 100): 36_828,
    (SKIP_ONLY, 16, 5, 10): 73_306,
    (SKIP_ONLY, 8, 1, 100): 21_708,
    (POOL_1X1, 16, 5, 10): 213_306,
    (POOL_1X1, 8, 1, 100): 28_988,
}


@pytest.mark.parametrize("key", list(REFERENCE_COUNTS))
def test_standalone_parameter_counts_match_benchmark(key):
    arch, C, N, classes = key
    assert count_parameters(standalone(arch, C=C, N=N, num_classes=classes)) == REFERENCE_COUNTS[key]


def test_parameter_counts_against_xautodl_when_installed():
    tiny = pytest.importorskip("xautodl.models.cell_infers.tiny_network")
    geno = pytest.importorskip("xautodl.models.cell_searchs.genotypes")
    for arch in (ALL_3X3, MIXED, POOL_1X1):
        ref = tiny.TinyNetwork(8, 2, geno.Structure.str2structure(arch), 10)
        assert count_parameters(standalone(arch, C=8, N=2)) == sum(p.numel() for p in ref.parameters())


@pytest.mark.parametrize("arch", [ALL_3X3, MIXED, POOL_1X1, SKIP_ONLY])
def test_arch_mask_round_trip(arch):
    mask = space.arch_to_mask(arch)
    assert mask.sum() == 6
    assert space.mask_to_arch(mask) == arch
    assert space.architectures(mask) == [arch]


def test_architectures_enumerates_the_mask():
    mask = space.full_mask()
    mask[0] = [False, False, True, True, False]
    archs = space.architectures(mask)
    assert len(archs) == 2 * 5**5 and len(set(archs)) == len(archs)


@pytest.mark.parametrize(
    "bad",
    ["", "|nor_conv_3x3~0|", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
     "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|"],
)
def test_bad_arch_strings_are_errors(bad):
    with pytest.raises(MaskError):
        space.arch_to_mask(bad)


def test_empty_edge_is_an_error_naming_the_edge():
    mask = space.full_mask()
    mask[2] = False
    with pytest.raises(MaskError, match="2<-1"):
        Supernet(C=4, N=1, mask=mask)


def test_disconnected_output_is_an_error():
    mask = space.full_mask()
    mask[[3, 4, 5]] = [True, False, False, False, False]  # every edge into node 3 is 'none'
    with pytest.raises(MaskError, match="disconnects"):
        Supernet(C=4, N=1, mask=mask)
    with pytest.raises(MaskError, match="disconnects"):
        Supernet(C=4, N=1).mask = space.arch_to_mask("|none~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|")


def test_disabling_an_operation_changes_the_mask_not_the_module():
    net = Supernet(C=4, N=1)
    params = {n: p for n, p in net.named_parameters()}
    mask = net.mask
    mask[0, OPS.index("nor_conv_3x3")] = False
    net.mask = mask
    assert {n: p for n, p in net.named_parameters()} == params  # the very same tensors
    assert not net.mask[0, 3]
    with pytest.raises(MaskError, match="not inside"):
        net(torch.zeros(1, 3, 8, 8), arch=ALL_3X3)


def copy_supernet_to_standalone(net: Supernet, single: space.StandaloneNet) -> None:
    """Load the supernet's weights of ``single``'s architecture into it (BN affine left at 1, 0)."""
    state = {}
    for name, value in single.state_dict().items():
        parts = name.split(".")
        if parts[0] == "cells" and parts[2] == "edges":  # cells.k.edges.e.{conv,bn}.x
            op = single.cells[int(parts[1])].op_names[int(parts[3])]
            if parts[4] == "bn" and parts[5] in ("weight", "bias"):
                state[name] = value
                continue
            name_in_supernet = ".".join(parts[:4] + [op] + parts[4:])
        else:
            name_in_supernet = name
        state[name] = net.state_dict()[name_in_supernet]
    single.load_state_dict(state)


@pytest.mark.parametrize("arch", [ALL_3X3, MIXED, POOL_1X1, SKIP_ONLY])
@pytest.mark.parametrize("train", [True, False])
def test_single_path_supernet_equals_standalone(arch, train):
    torch.manual_seed(0)
    net = Supernet(C=8, N=2, mode="single_path")
    if arch != SKIP_ONLY:
        net.mask = space.arch_to_mask(arch)
    net(torch.randn(16, 3, 16, 16), arch=arch)  # move BN running statistics off their init
    single = standalone(arch, C=8, N=2)
    copy_supernet_to_standalone(net, single)
    net.train(train), single.train(train)
    x = torch.randn(8, 3, 16, 16)
    out_net = net(x) if arch != SKIP_ONLY else net(x, arch=arch)
    torch.testing.assert_close(out_net, single(x), rtol=1e-5, atol=1e-5)


def test_mixture_averages_the_enabled_operations():
    """With one edge kept to two ops, the mixture equals the mean of the two single paths' cells."""
    torch.manual_seed(0)
    net = Supernet(C=4, N=1).eval()
    mask = space.arch_to_mask(ALL_3X3)
    mask[5, OPS.index("skip_connect")] = True
    net.mask = mask
    cell = net.cells[0]
    x = torch.randn(2, 4, 8, 8)
    w_mix = net.edge_weights()
    assert w_mix[5] == [(1, 0.5), (3, 0.5)]
    a = cell(x, net.edge_weights(ALL_3X3))
    b = cell(x, net.edge_weights(ALL_3X3.replace("nor_conv_3x3~2", "skip_connect~2")))
    torch.testing.assert_close(cell(x, w_mix), (a + b) / 2)


def test_single_path_samples_only_enabled_ops_and_is_seeded():
    net = Supernet(C=4, N=1, mode="single_path")
    mask = space.full_mask()
    mask[1] = [False, True, False, False, True]
    net.mask = mask
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    draws = [net.sample_arch(g1) for _ in range(50)]
    assert draws == [net.sample_arch(g2) for _ in range(50)]
    assert {space.parse_arch(a)[1] for a in draws} == {"skip_connect", "avg_pool_3x3"}


def test_configurable_size_classes_and_input():
    net = Supernet(C=4, N=1, num_classes=7, input_size=12)
    assert net(torch.randn(3, 3, 12, 12)).shape == (3, 7)
    with pytest.raises(ValueError, match="forward mode"):
        net.mode = "joint"


def test_gradients_reach_every_enabled_conv_and_running_stats_update():
    net = Supernet(C=4, N=1).train()
    net(torch.randn(4, 3, 8, 8)).sum().backward()
    cell = net.cells[0]
    for e in range(6):
        for op in space.CONV_OPS:
            mod = cell.edges[e][op]
            assert mod.conv.weight.grad is not None and mod.conv.weight.grad.abs().sum() > 0
            assert mod.bn.num_batches_tracked.item() == 1
            assert not torch.equal(mod.bn.running_mean, torch.zeros(4))
