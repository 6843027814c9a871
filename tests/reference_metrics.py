"""Straightforward transcriptions of the metrics' published reference code, for agreement tests.

Each follows its paper's repository step by step (module hooks, per-sample loops, monkey-patched
layers, numpy linear algebra) rather than this package's vectorised implementation:
zero-cost-proxies (Abdelfattah et al.) for gradnorm, snip, grasp and synflow; naswot (Mellor et
al.) for jacobcov (v1) and the ReLU kernel (v2); TE-NAS (Chen et al.) for ntk and linear regions.
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
