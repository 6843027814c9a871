"""Metrics agree with their reference code, leave models untouched, never hand on NaN, and split."""

import numpy as np
import pytest
import torch

from fewshot_core import data, metrics
from fewshot_core.metrics import Batch, MetricError
from fewshot_core.metrics.tenas import lr_prepare
from fewshot_core.space import Supernet, standalone
from tests import reference_metrics as ref

ARCHS = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_1x1~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_3x3~1|nor_conv_1x1~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|none~0|nor_conv_3x3~1|skip_connect~2|",
]
SCALARS = ["gradnorm", "snip", "grasp", "synflow", "jacobcov", "naswot", "ntk", "lr", "nparams"]


def digits_batch(n=16, size=16, offset=0):
    d = data.load("digits", None, input_size=size)
    return data.normalize(d.train_x[offset : offset + n], d), d.train_y[offset : offset + n]


def fresh(arch, seed=0):
    torch.manual_seed(seed)
    return standalone(arch, C=8, N=1).train()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name,reference", [
    ("gradnorm", ref.gradnorm_ref), ("snip", ref.snip_ref), ("grasp", ref.grasp_ref),
])
def test_saliency_metrics_match_zero_cost_proxies(arch, name, reference):
    x, y = digits_batch()
    ours = metrics.score(name, fresh(arch), x, y)
    assert ours == pytest.approx(reference(fresh(arch), x, y), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_synflow_matches_reference_and_is_float64(arch):
    x, y = digits_batch()
    assert metrics.score("synflow", fresh(arch), x, y) == pytest.approx(ref.synflow_ref(fresh(arch), x), rel=1e-9)


@pytest.mark.parametrize("arch", ARCHS)
def test_mellor_metrics_match_naswot_code(arch):
    x, y = digits_batch()
    assert metrics.score("jacobcov", fresh(arch), x, y) == pytest.approx(ref.jacobcov_ref(fresh(arch), x), rel=1e-4)
    ours = metrics.score("naswot", fresh(arch), x, y)
    assert ours == pytest.approx(ref.naswot_ref(fresh(arch), x, by_class_name=False), rel=1e-9)
    # The reference accumulates K over two identical passes: log|det 2K| = log|det K| + n log 2.
    two = ref.naswot_ref(fresh(arch), x, passes=2, by_class_name=False)
    assert two == pytest.approx(ours + len(x) * np.log(2), rel=1e-9)


def test_relu_kernel_equals_its_float64_definition_bit_for_bit():
    """The kernel's counts from one float32 product and the row sums are the two float64 products' counts,
    on a supernet (shared ReLUs counted once per convolution they feed) and on a standalone network."""
    from fewshot_core.metrics.mellor import relu_kernel

    def by_definition(model, x):
        K = torch.zeros(len(x), len(x), dtype=torch.float64)

        def hook(module, inputs, _output):
            c = (inputs[0].detach().reshape(len(x), -1) > 0).double()
            uses = getattr(module, "consumers", 1)
            K.add_(c @ c.T, alpha=uses).add_((1 - c) @ (1 - c).T, alpha=uses)

        handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.ReLU)]
        with torch.no_grad():
            model(x)
        for h in handles:
            h.remove()
        return K.numpy()

    x, _ = digits_batch()
    torch.manual_seed(0)
    for model in (Supernet(C=8, N=2, input_size=16).train(), fresh(ARCHS[1]).train()):
        got, want = relu_kernel(model, x), by_definition(model, x)
        assert want.max() > 1000 and np.array_equal(got, want)


@pytest.mark.parametrize("arch", ARCHS)
def test_tenas_metrics_match_reference(arch):
    x, y = digits_batch(n=8)
    assert metrics.score("ntk", fresh(arch), x, y) == pytest.approx(ref.ntk_ref(fresh(arch), x), rel=1e-3)
    net = fresh(arch)
    _, (crops,) = lr_prepare(net, [Batch(x, y)], crops=300, crop_size=4, seed=1, width=None)
    ours = metrics.score("lr", net, x, y, crops=300, crop_size=4, seed=1, width=None)
    assert ours == pytest.approx(ref.lr_ref(fresh(arch), crops.inputs), rel=1e-6)


def sub_supernet(seed=0):
    """A C=4, N=1 supernet at depth two: edge 2 already split to {skip_connect, nor_conv_3x3},
    edge 4 to {none, avg_pool_3x3}."""
    torch.manual_seed(seed)
    net = Supernet(C=4, N=1, input_size=16)
    mask = net.mask
    mask[2] = [False, True, False, True, False]
    mask[4] = [True, False, False, False, True]
    net.mask = mask
    return net


@pytest.mark.parametrize("edge", [0, 5])
@pytest.mark.parametrize("depth", ["root", "sub"])
def test_gradient_matching_matches_gm_nas_and_the_authors_code(edge, depth):
    """gm_nas against GM-NAS's split_supernet, gm against the authors' gradient collector, both on
    xautodl's supernet (every operation its own module) holding the same weights."""
    pytest.importorskip("xautodl")
    net = sub_supernet() if depth == "sub" else Supernet(C=4, N=1, input_size=16)
    peer = ref.xautodl_peer(4, 1)
    ref.copy_weights(net, peer)
    batches = [digits_batch(n=16, offset=16 * r) for r in range(2)]
    vals, _ = metrics.evaluate_split("gm_nas", net, edge, [Batch(x, y) for x, y in batches])
    ours = 1 - metrics.similarity("vector", [v.value for v in vals])
    np.testing.assert_allclose(ours, ref.gm_nas_ref(peer, net.mask, edge, batches).numpy(), atol=2e-5)
    vals, _ = metrics.evaluate_split("gm", net, edge, [Batch(*batches[0])])
    ours = metrics.similarity("vector", [v.value for v in vals])
    np.testing.assert_allclose(ours, ref.gm_ref(peer, net.mask, edge, batches[0][0]).numpy(), atol=2e-5)


@pytest.mark.parametrize("name", SCALARS)
def test_score_leaves_the_model_as_it_was(name):
    net = fresh(ARCHS[1]).eval()
    x, y = digits_batch(n=8)
    net(x).sum().backward()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    metrics.score(name, net, x, y)
    assert not net.training and all(not m.training for m in net.modules())
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    for n, p in net.named_parameters():
        assert torch.equal(p.grad, grads[n]) and p.requires_grad


def test_unknown_metric_and_setting_are_errors():
    with pytest.raises(KeyError, match="unknown metric 'zen'"):
        metrics.get("zen")
    with pytest.raises(ValueError, match="no setting"):
        metrics.score("lr", fresh(ARCHS[0]), *digits_batch(4), crop=3)
    with pytest.raises(ValueError, match="vector metric"):
        metrics.score("gm", fresh(ARCHS[0]), *digits_batch(4))


def split_values(name, net, edge, batch, settings=None):
    vals, parent = metrics.evaluate_split(name, net, edge, [batch], settings, where=f"node r edge {edge}")
    return vals, parent


@pytest.mark.parametrize("name", sorted(set(metrics.REGISTRY) - {"random"}))
def test_split_variants_differ_and_similarity_is_valid(name):
    torch.manual_seed(0)
    net = Supernet(C=8, N=1, input_size=16)
    x, y = digits_batch(n=32)
    vals, parent = split_values(name, net, 0, Batch(x, y))
    assert [v.op for v in vals] == list(metrics.OPS)
    kind = metrics.get(name).kind
    if kind == "scalar":
        values = [v.value for v in vals]
        assert len(set(values)) > 1, f"{name} gives every variant the same value {values}"
    sim = metrics.similarity(kind, [v.value for v in vals], parent)
    assert sim.shape == (5, 5) and np.isfinite(sim).all() and np.allclose(sim, sim.T)
    if name == "convs":  # two-valued by design: a convolution on the split edge or not
        conv = np.array([op in ("nor_conv_1x1", "nor_conv_3x3") for op in metrics.OPS])
        same = conv[:, None] == conv[None, :]
        assert (sim[same] == 0).all() and (sim[~same] < 0).all()
    else:
        assert len(np.unique(sim.round(12))) > 2


def test_split_is_deterministic_bit_for_bit():
    x, y = digits_batch(n=16)
    results = []
    for _ in range(2):
        torch.manual_seed(3)
        net = Supernet(C=8, N=1, input_size=16)
        results.append({n: [float(v.value) if metrics.get(n).kind == "scalar" else v.value.sum().item()
                            for v in split_values(n, net, 1, Batch(x, y))[0]] for n in ("gradnorm", "ntk", "gm", "lr")})
    assert results[0] == results[1]


def test_split_restores_mask_and_mode():
    net = Supernet(C=4, N=1, input_size=16, mode="single_path")
    mask = net.mask
    mask[2, 0] = False
    net.mask = mask
    split_values("snip", net, 2, Batch(*digits_batch(8)))
    assert np.array_equal(net.mask, mask) and net.mode == "single_path"


@pytest.mark.faults
def test_non_finite_value_names_metric_node_and_edge():
    torch.manual_seed(0)
    net = Supernet(C=4, N=1, input_size=16)
    with torch.no_grad():
        net.classifier.weight[0, 0] = float("nan")
    with pytest.raises(MetricError, match=r"'gradnorm'.*node r edge 3"):
        split_values("gradnorm", net, 3, Batch(*digits_batch(8)))


def test_disconnected_variant_gets_a_documented_finite_jacobcov():
    """All-'none' variants: the output no longer depends on the input."""
    net = Supernet(C=4, N=1, input_size=16)
    mask = net.mask
    mask[[0, 1, 2, 4, 5]] = [True, False, False, False, False]  # only edge 3 (3<-0) can carry signal
    net.mask = mask
    vals, _ = split_values("jacobcov", net, 3, Batch(*digits_batch(8)))
    assert np.isfinite([v.value for v in vals]).all()


@pytest.mark.parametrize("name", SCALARS)
def test_no_nan_or_inf_on_the_full_size_supernet(name):
    """C=16, N=5 (the paper's supernet), the default configuration's batch (64; ntk 16): synflow
    would overflow float32 here."""
    torch.manual_seed(0)
    net = Supernet(C=16, N=5, input_size=16)
    x, y = digits_batch(n=16 if name == "ntk" else 64)
    assert np.isfinite(metrics.score(name, net, x, y))


@pytest.mark.parametrize("name", ["gm", "gm_nas"])
def test_gradient_vectors_are_finite_on_the_full_size_supernet(name):
    torch.manual_seed(0)
    net = Supernet(C=16, N=5, input_size=16)
    vals, _ = metrics.evaluate_split(name, net, 0, [Batch(*digits_batch(n=64))])
    assert all(torch.isfinite(v.value).all() and v.value.abs().sum() > 0 for v in vals)
