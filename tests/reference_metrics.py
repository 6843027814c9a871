"""Straightforward transcriptions of the metrics' published reference code, for agreement tests.

Each follows its paper's repository step by step (module hooks, per-sample loops, monkey-patched
layers, numpy linear algebra) rather than this package's vectorised implementation:
zero-cost-proxies (Abdelfattah et al.) for gradnorm, snip, grasp and synflow; naswot (Mellor et
al.) for jacobcov (v1) and the ReLU kernel (v2); TE-NAS (Chen et al.) for ntk and linear regions;
GM-NAS (Hu et al.) for gm_nas and the paper authors' gradient collector for gm, both on xautodl's
NAS-Bench-201 supernet (the one GM-NAS copies), given this package's weights.
"""

import copy
import types

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def layers(net):
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def gradnorm_ref(net, x, y):
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()
    return sum(float(m.weight.grad.norm()) if m.weight.grad is not None else 0.0 for m in layers(net))


def snip_ref(net, x, y):
    def conv_forward(self, inp):
        return F.conv2d(inp, self.weight * self.weight_mask, self.bias, self.stride, self.padding,
                        self.dilation, self.groups)

    def linear_forward(self, inp):
        return F.linear(inp, self.weight * self.weight_mask, self.bias)

    for m in layers(net):
        m.weight_mask = nn.Parameter(torch.ones_like(m.weight))
        m.weight.requires_grad = False
        m.forward = types.MethodType(conv_forward if isinstance(m, nn.Conv2d) else linear_forward, m)
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()
    return sum(float(m.weight_mask.grad.abs().sum()) for m in layers(net) if m.weight_mask.grad is not None)


def grasp_ref(net, x, y, T=1):
    weights = [m.weight for m in layers(net)]
    net.zero_grad()
    grad_w = list(torch.autograd.grad(F.cross_entropy(net(x) / T, y), weights, allow_unused=True))
    outputs = net(x) / T
    grad_f = torch.autograd.grad(F.cross_entropy(outputs, y), weights, create_graph=True, allow_unused=True)
    z = 0
    for gw, gf in zip(grad_w, grad_f):
        if gw is not None:
            z += (gw.data * gf).sum()
    z.backward()
    return sum(float((-m.weight.data * m.weight.grad).sum()) for m in layers(net) if m.weight.grad is not None)


def synflow_ref(net, x):
    net = copy.deepcopy(net)
    for module in list(net.modules()):  # the zero-cost-proxies models are rebuilt with bn=False
        for name, child in list(module.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                setattr(module, name, nn.Identity())
    with torch.no_grad():
        for _, p in net.state_dict().items():
            p.abs_()
    net.zero_grad()
    net.double()
    out = net(torch.ones([1] + list(x[0].shape)).double())
    torch.sum(out).backward()
    return sum(float((m.weight * m.weight.grad).abs().sum().detach()) for m in layers(net) if m.weight.grad is not None)


def jacobcov_ref(net, x):
    net.zero_grad()
    x = x.clone().requires_grad_(True)
    yv = net(x)
    yv.backward(torch.ones_like(yv))
    jacob = x.grad.detach().reshape(len(x), -1).numpy()
    corrs = np.corrcoef(jacob)
    v, _ = np.linalg.eig(corrs)
    k = 1e-5
    return float(np.real(-np.sum(np.log(v + k) + 1.0 / (v + k))))


def naswot_ref(net, x, passes=1, by_class_name=True):
    """``by_class_name`` hooks every module whose class name contains 'ReLU', as the published code
    does: on NAS-Bench-201 that includes ReLUConvBN, whose input codes are then counted twice."""
    K = np.zeros((len(x), len(x)))

    def counting_forward_hook(module, inp, out):
        inp = inp[0].view(inp[0].size(0), -1)
        c = (inp > 0).float()
        nonlocal K
        K = K + (c @ c.t()).numpy() + ((1.0 - c) @ (1.0 - c.t())).numpy()

    hooks = [m.register_forward_hook(counting_forward_hook) for m in net.modules()
             if ("ReLU" in str(type(m)) if by_class_name else isinstance(m, nn.ReLU))]
    with torch.no_grad():
        for _ in range(passes):
            net(x)
    for h in hooks:
        h.remove()
    return float(np.linalg.slogdet(K)[1])


def ntk_ref(net, x):
    net.zero_grad()
    logit = net(x)
    grads = []
    for i in range(len(x)):
        logit[i : i + 1].backward(torch.ones_like(logit[i : i + 1]), retain_graph=True)
        grads.append(torch.cat([W.grad.view(-1).detach() for name, W in net.named_parameters()
                                if "weight" in name and W.grad is not None], -1))
        net.zero_grad()
    g = torch.stack(grads, 0)
    ntk = torch.einsum("nc,mc->nm", [g, g])
    eig = torch.linalg.eigvalsh(ntk)
    return float(eig[-1] / eig[0])


def lr_ref(net, x):
    feats = []

    def hook(module, inp, out):
        feats.append(out.detach())

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    act = torch.sign(torch.cat([f.view(len(x), -1) for f in feats], 1)).double()
    res = act @ (1 - act).T
    res = res + res.T
    res = 1 - torch.sign(res)
    return float((1.0 / res.sum(1)).sum())


# ----------------------------------------------------------------------------- reference supernet


def xautodl_peer(C, N, single_path=False, num_classes=10):
    """xautodl's supernet (``pip install --no-deps xautodl``): every operation its own module."""
    from xautodl.models.cell_searchs.search_model_darts import TinyNetworkDarts
    from xautodl.models.cell_searchs.search_model_random import TinyNetworkRANDOM

    from fewshot_core.space import OPS

    cls = TinyNetworkRANDOM if single_path else TinyNetworkDarts
    net = cls(C, N, 4, num_classes, list(OPS), False, True)
    if not single_path:
        with torch.no_grad():
            net.arch_parameters.zero_()  # uniform weights: the average of the five operations
    return net


def copy_weights(ours, peer):
    """Give ``peer`` our weights (its redundant conv biases before BN are set to zero)."""
    from fewshot_core.space import EDGES, OPS

    src = ours.state_dict()
    state = {}
    for name, value in peer.state_dict().items():
        p = name.split(".")
        if name == "arch_parameters":
            state[name] = value
        elif p[0] == "cells" and p[2] == "edges":  # cells.k.edges.<i<-j>.<op>.op.<1|2>.x
            op = OPS[int(p[4])]
            kind = {"1": "conv", "2": "bn"}[p[6]]
            if p[-1] == "bias" and kind == "conv":
                state[name] = torch.zeros_like(value)
            else:
                state[name] = src[f"cells.{p[1]}.edges.{EDGES.index(p[3])}.{op}.{kind}.{p[-1]}"]
        elif p[0] == "cells" and p[3] == "op":  # ResNet block: conv_a.op.1.weight
            state[name] = src[".".join(p[:3] + [{"1": "conv", "2": "bn"}[p[4]]] + p[5:])]
        else:
            state[name] = src[name]
    peer.load_state_dict(state)


def gmnas_thetas(mask, edge):
    """GM-NAS's split: the parent's weights (uniform over each edge's enabled operations), the
    split edge set to one operation at a time (``hard=1``)."""
    mask = torch.as_tensor(np.asarray(mask), dtype=torch.float32)
    theta = mask / mask.sum(dim=1, keepdim=True)
    theta[edge] = 0
    out = []
    for opid in torch.nonzero(mask[edge]).flatten().tolist():
        theta_op = theta.clone()
        theta_op[edge, opid] = 1
        out.append(theta_op)
    return out


def gmnas_forward(peer, x, theta):
    """TinyNetworkWS.forward of GM-NAS with an explicit theta."""
    from xautodl.models.cell_searchs.search_cells import NAS201SearchCell

    feature = peer.stem(x)
    for cell in peer.cells:
        feature = cell(feature, theta) if isinstance(cell, NAS201SearchCell) else cell(feature)
    out = peer.global_pooling(peer.lastact(feature))
    return peer.classifier(out.view(out.size(0), -1))


class ThetaNet(nn.Module):
    """xautodl's supernet run as GM-NAS runs it, with one fixed theta: a whole network that the
    reference metric functions above can score."""

    def __init__(self, peer, theta):
        super().__init__()
        self.peer = peer
        self.register_buffer("theta", theta)

    def forward(self, x):
        return gmnas_forward(self.peer, x, self.theta)


def gm_nas_ref(peer, mask, edge, batches):
    """GM-NAS ``split_supernet`` (split_crit grad, dis_metric cos): per batch and operation, the
    cross-entropy gradients of ``get_split_gradients`` (every parameter of every search-cell edge
    but the split one, every parameter of the ResNet blocks); distance 1 - cos, averaged over
    batches. Returns the distance matrix."""
    from xautodl.models.cell_searchs.search_cells import NAS201SearchCell

    from fewshot_core.space import EDGES

    peer.train()
    thetas = gmnas_thetas(mask, edge)
    dist_avg = torch.zeros(len(thetas), len(thetas))
    for x, y in batches:
        split_op_grads = []
        for theta_op in thetas:
            peer.zero_grad()
            F.cross_entropy(gmnas_forward(peer, x, theta_op), y).backward()
            params = []
            for cell in peer.cells:
                if isinstance(cell, NAS201SearchCell):
                    for eid in range(len(cell.edges)):
                        if eid != edge:
                            params += list(cell.edges[EDGES[eid]].parameters())
                else:
                    params += list(cell.parameters())
            split_op_grads.append([p.grad.clone().detach() for p in params if p.grad is not None])
        dist_mat = torch.zeros(len(thetas), len(thetas))
        for i, gi in enumerate(split_op_grads):
            for j, gj in enumerate(split_op_grads):
                a = torch.cat([g.reshape(-1) for g in gi])
                b = torch.cat([g.reshape(-1) for g in gj])
                dist_mat[i, j] = 1 - torch.sum(a * b) / (torch.norm(a) * torch.norm(b) + 0.000001)
        dist_avg += dist_mat
    return dist_avg / len(batches)


def gm_ref(peer, mask, edge, x):
    """The paper authors' ``GradientCollector`` and ``GradientMatching``: per variant, the summed
    logits' gradient of every Conv2d/Linear weight (zeros where none), each viewed as (C, -1) and
    concatenated; the similarity of two variants is the cosine of the flattened vectors."""
    peer.train()
    vectors = []
    for theta_op in gmnas_thetas(mask, edge):
        peer.zero_grad()
        logit = gmnas_forward(peer, x, theta_op)
        logit.backward(torch.ones_like(logit), retain_graph=True)
        grad = []
        for layer in peer.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                w = layer.weight
                grad.append(w.grad if w.grad is not None else torch.zeros_like(w))
        vectors.append(torch.cat([g.view(peer._C, -1).detach() for g in grad], -1).view(1, -1))
    n = len(vectors)
    sim = torch.zeros(n, n)
    for m in range(n):
        for m_ in range(n):
            sim[m, m_] = torch.mean(F.cosine_similarity(vectors[m], vectors[m_]))
    return sim
