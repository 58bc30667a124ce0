"""Training-free ("zero-cost") proxies of an architecture's trained accuracy.

``compute_proxies(model, batches, loss_fn, names, seed=0, timings=None) -> {name: float}`` scores one
network; ``proxies_for_genotype(genotype, batches, names, width=..., depth=..., ...)`` builds the
project's fixed network for a DARTS genotype (seeded initialisation, no auxiliary head) and scores
it. ``PROXIES`` maps every name to its function ``fn(net, inputs, targets, loss_fn, seed) -> float``;
nothing branches on names. Pass a dict as ``timings`` to get each proxy's wall-clock seconds (the
deep copy included: the cost per architecture).

Definitions follow the papers and NASLib's implementations (``naslib/predictors/utils/pruners/
measures/<file>.py``, automl/NASLib, which takes grad_norm, snip, grasp, fisher, synflow and jacov
from Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021). "Weight layers" are
every ``nn.Conv2d`` and ``nn.Linear`` (NASLib's ``get_layer_metric_array``); NASLib's per-weight
arrays are summed (its ``find_measures``):

============  ==================================================================  ==============
name          score                                                               NASLib file
============  ==================================================================  ==============
params        parameter count (without an ``aux_head``, DARTS' convention)        (model_stats)
flops         MACs of one network input, fvcore (``unnas.train.complexity``)      (model_stats)
grad_norm     sum over weight layers of ||dL/dW||_2 (per-layer norms, summed)     grad_norm.py
snip          sum |W * dL/dW| (= |dL/dmask| at mask 1)                            snip.py
grasp         sum -W * (H g), g = dL/dW, H the Hessian of L in the weights        grasp.py
fisher        sum over activations z = outputs of weight layers and channels k    fisher.py
              of 0.5 mean_n (sum_hw z dL/dz)^2, times the weights per channel
synflow       sum |W * dR/dW|, R = sum(f(1)) with |theta|, BN bypassed, float64   synflow.py
jacov         -sum_i log(l_i + k) + 1/(l_i + k), l = eig(corr(dsum f/dx)), k=1e-5 jacov.py
naswot        log|det K|, K_ij = N_A - Hamming(c_i, c_j), c = ReLU input > 0      nwot.py
zen           log E_n|f(x) - f(x + 0.01 e)|_1 + sum_BN log sqrt(mean_c var_c)    zen.py
l2_norm       sum over weight layers of ||W||_2                                   l2_norm.py
============  ==================================================================  ==============

Choices (each proxy as NASLib unless said here):

* Every proxy runs on a deep copy of the model (NASLib's ``get_prunable_copy``) in train mode
  (NASLib's networks are scored in train mode; fisher sets ``net.train()`` itself), with drop-path
  off and every parameter requiring gradients, under ``torch.random.fork_rng`` and deterministic
  cuDNN: the caller's weights, BN buffers, gradients, ``requires_grad`` flags, train/eval mode
  and global RNG are untouched, so proxies cannot influence each other.
* ``batches`` are concatenated into one batch (NASLib's ``get_some_data``) and moved to the
  model's device. A model that returns ``(logits, aux)`` (a ``FixedNetwork`` with an auxiliary
  head, in train mode) is scored on ``logits``.
* synflow: as NASLib's ``synflow`` (not ``synflow_bn``): every BatchNorm's forward is replaced by
  the identity (``bn=False``), the network and a ``(1, C, H, W)`` all-ones input are float64, every
  floating tensor of the state dict is made absolute (the copy is discarded, which restores the
  signs). Only the input's shape is read.
* snip is computed as ``|W * dL/dW|``, equal to NASLib's ``|dL/dmask|`` for a mask multiplying W; it
  also covers weights used through ``F.conv2d`` (``FactorizedReduce``), where NASLib's patched
  module forward would never see the mask.
* fisher: NASLib hooks an identity after every Conv2d/Linear; here a forward hook keeps a copy of
  each weight layer's output and a tensor hook on it its gradient (the same quantities, safe when
  a later op works in place). ``FactorizedReduce`` calls ``F.conv2d`` with its convs' weights, so
  its activation point is the input of its BatchNorm (the two convs' outputs, concatenated). The
  per-channel values are broadcast to the channel's weights as NASLib's ``reshape_elements``, so
  a layer adds ``fan_in * sum_k fisher_k`` (fan_in = weights per output channel). The activation
  points are the weight layers' outputs, as NASLib, not cell outputs or ReLUs. A layer called
  more than once adds every call's saliency (NASLib keeps one activation per layer).
* jacov: eigenvalues by ``numpy.linalg.eigvalsh`` (the correlation matrix is symmetric; NASLib
  calls ``eig``); NaN when the correlation is undefined (a constant Jacobian row), where NASLib
  prints the exception and returns NaN.
* naswot: codes from the input of every ``nn.ReLU`` module (an in-place ReLU's input is already
  rectified when the hook runs; ``x > 0`` is the same code); K accumulated in float64 over all
  ReLUs; ``slogdet``'s log-absolute-determinant (``-inf`` when K is singular, e.g. repeated images).
* zen: weights redrawn as Zen-NAS (Conv2d/Linear weights N(0, 1), biases 0, BatchNorm2d/GroupNorm
  affine 1/0) from ``torch.Generator(seed)`` on the device, which then draws the Gaussian input x
  and the perturbation e (the batch supplies only the shape); f is the feature map before global
  pooling: ``model.forward_before_global_avg_pool(x)`` when defined (NASLib), else
  ``model.trunk(x)`` (our networks), else the input of the model's only ``nn.AdaptiveAvgPool2d``.
  Deviation: sigma_i is each BatchNorm2d's per-channel mini-batch variance (unbiased, as BN's
  running_var) in the pass on x, the paper's definition; NASLib/Zen-NAS read ``running_var`` after
  the two passes with momentum 0.1, which mixes in the stored running statistics (1 for a fresh
  network). BatchNorms the feature pass never calls add nothing. Each BN's term is
  ``log sqrt(mean_c var_c + eps)`` (BN's own eps), so a BN fed only zeros (a node of two ``none``
  ops, common in sampled genotypes) stays finite; a network whose features ignore the input
  scores ``-inf``.
* grad_norm, l2_norm: per-layer norms of the weight-layer weights, summed (NASLib), not the norm
  of all parameters. params/flops: plain counts (NASLib divides by 1e6).
* Raw scores are returned: no log of synflow and no NaN/inf -> -1e8 (NASLib's ``ZeroCost.query``
  does both; the study decides). Sign conventions as NASLib: grasp is ``-theta H g``, jacov is
  higher for less correlated Jacobians.
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from search_spaces.darts import zoo
from search_spaces.darts.network import FixedNetwork, build_network, count_params, set_drop_prob
from search_spaces.darts.ops import FactorizedReduce
from search_spaces.darts.stems import choose_stem
from unnas.tasks.base import ClassifierHead
from unnas.train.complexity import _macs, complexity

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ProxyFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, LossFn, int], float]

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
JACOV_K = 1e-5
ZEN_MIXUP_GAMMA = 1e-2


# ---------------------------------------------------------------------------------------------------
# helpers

def _logits(out):
    """The logits of a model that may return ``(logits, aux_logits)``."""
    return out[0] if isinstance(out, (tuple, list)) else out


def _weight_layers(net: nn.Module) -> list[nn.Module]:
    """Every Conv2d and Linear, in ``modules()`` order (NASLib's ``get_layer_metric_array``)."""
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _backward_loss(net, inputs, targets, loss_fn) -> None:
    net.zero_grad(set_to_none=True)
    loss_fn(_logits(net(inputs)), targets).backward()


def _sum(values: Iterable[torch.Tensor]) -> float:
    return float(sum(float(v.detach()) if torch.is_tensor(v) else float(v) for v in values))


def _passthrough(x):
    return x


# ---------------------------------------------------------------------------------------------------
# the proxies: fn(net, inputs, targets, loss_fn, seed) -> float; ``net`` is a private train-mode copy

def params(net, inputs, targets, loss_fn, seed) -> float:
    return float(count_params(net) - count_params(getattr(net, "aux_head", None)))


def flops(net, inputs, targets, loss_fn, seed) -> float:
    sample = inputs[:1]
    if isinstance(net, FixedNetwork):
        return float(complexity(net, sample)["macs"])
    with torch.no_grad():
        return float(_macs(net.float().eval().cpu(), (sample.detach().float().cpu(),)))


def grad_norm(net, inputs, targets, loss_fn, seed) -> float:
    _backward_loss(net, inputs, targets, loss_fn)
    return _sum(m.weight.grad.norm() for m in _weight_layers(net) if m.weight.grad is not None)


def snip(net, inputs, targets, loss_fn, seed) -> float:
    _backward_loss(net, inputs, targets, loss_fn)
    return _sum((m.weight.grad * m.weight).abs().sum() for m in _weight_layers(net) if m.weight.grad is not None)


def grasp(net, inputs, targets, loss_fn, seed) -> float:
    weights = [m.weight for m in _weight_layers(net)]
    net.zero_grad(set_to_none=True)
    g = torch.autograd.grad(loss_fn(_logits(net(inputs)), targets), weights, allow_unused=True)
    g_f = torch.autograd.grad(loss_fn(_logits(net(inputs)), targets), weights, create_graph=True, allow_unused=True)
    z = sum((a.detach() * b).sum() for a, b in zip(g, g_f) if a is not None and b is not None)
    if not torch.is_tensor(z):
        return 0.0
    net.zero_grad(set_to_none=True)
    z.backward()                                   # w.grad = H g
    return _sum((-w.detach() * w.grad).sum() for w in weights if w.grad is not None)


def fisher(net, inputs, targets, loss_fn, seed) -> float:
    saliency: dict[int, torch.Tensor] = {}
    fan_in: dict[int, int] = {}
    handles = []

    def capture(key: int, z: torch.Tensor) -> None:
        if not z.requires_grad:
            return
        act = z.detach().clone()

        def on_grad(grad):
            s = act * grad
            g_nk = s.sum(dim=tuple(range(2, s.dim()))) if s.dim() > 2 else s
            d = g_nk.pow(2).mean(0).mul(0.5)
            saliency[key] = d if key not in saliency else saliency[key] + d
        z.register_hook(on_grad)

    inside_reduce = set()
    for m in net.modules():
        if isinstance(m, FactorizedReduce):       # F.conv2d on conv_1/conv_2 weights: hook the BN's input
            inside_reduce.update((id(m.conv_1), id(m.conv_2)))
            fan_in[id(m)] = m.conv_1.weight[0].numel()
            handles.append(m.bn.register_forward_pre_hook(lambda mod, inp, key=id(m): capture(key, inp[0])))
    for m in _weight_layers(net):
        if id(m) not in inside_reduce:
            fan_in[id(m)] = m.weight[0].numel()
            handles.append(m.register_forward_hook(lambda mod, inp, out, key=id(m): capture(key, out)))
    try:
        _backward_loss(net, inputs, targets, loss_fn)
    finally:
        for h in handles:
            h.remove()
    return _sum(fan_in[key] * s.abs().sum() for key, s in saliency.items())


def synflow(net, inputs, targets, loss_fn, seed) -> float:
    for m in net.modules():
        if isinstance(m, _BATCHNORMS):
            m.forward = _passthrough               # NASLib synflow: copy with bn=False
    net.double()
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.abs_()
    net.zero_grad(set_to_none=True)
    ones = torch.ones((1,) + tuple(inputs.shape[1:]), dtype=torch.float64, device=inputs.device)
    _logits(net(ones)).sum().backward()
    return _sum((m.weight * m.weight.grad).abs().sum() for m in _weight_layers(net) if m.weight.grad is not None)


def jacov_score(jacobians: np.ndarray, k: float = JACOV_K) -> float:
    """NASLib's ``eval_score``: ``-sum(log(l + k) + 1 / (l + k))`` over the eigenvalues ``l`` of the
    correlation matrix of the rows (one flattened input Jacobian per sample)."""
    with np.errstate(all="ignore"):
        corr = np.atleast_2d(np.corrcoef(jacobians))
        if not np.all(np.isfinite(corr)):
            return math.nan
        v = np.linalg.eigvalsh(corr)
        return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))


def jacov(net, inputs, targets, loss_fn, seed) -> float:
    x = inputs.detach().clone().requires_grad_(True)
    net.zero_grad(set_to_none=True)
    y = _logits(net(x))
    y.backward(torch.ones_like(y))
    return jacov_score(x.grad.reshape(x.shape[0], -1).double().cpu().numpy())


def naswot_kernel(net, inputs) -> torch.Tensor:
    """Mellor et al.'s K (float64, N x N): sum over ReLU modules of ``c c^T + (1 - c)(1 - c)^T``,
    ``c`` the binary code ``input > 0`` of each sample, i.e. ``N_A - Hamming(c_i, c_j)``."""
    n = inputs.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64, device=inputs.device)

    def hook(module, inp, out):
        a = inp[0].detach()
        if a.shape[0] != n:
            raise ValueError(f"naswot: a ReLU saw a batch of {a.shape[0]}, not the {n} inputs")
        c = (a.reshape(n, -1) > 0).to(torch.float64)
        kernel.add_(c @ c.t()).add_((1.0 - c) @ (1.0 - c).t())

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            net(inputs)
    finally:
        for h in handles:
            h.remove()
    return kernel


def naswot(net, inputs, targets, loss_fn, seed) -> float:
    return float(np.linalg.slogdet(naswot_kernel(net, inputs).cpu().numpy())[1])


def features_before_pool(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The feature map before global average pooling (zen's f)."""
    method = getattr(net, "forward_before_global_avg_pool", None)
    if callable(method):
        return method(x)
    trunk = getattr(net, "trunk", None)
    if isinstance(trunk, nn.Module):
        return trunk(x)
    seen = []
    handles = [m.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
               for m in net.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    try:
        net(x)
    finally:
        for h in handles:
            h.remove()
    if len(seen) != 1:
        raise ValueError("zen needs the feature map before global pooling: give the model a trunk, a "
                         "forward_before_global_avg_pool method or exactly one nn.AdaptiveAvgPool2d")
    return seen[0]


def zen_gaussian_init(net: nn.Module, generator: torch.Generator) -> None:
    """Zen-NAS' ``network_weight_gaussian_init``, drawing from ``generator`` in ``modules()`` order."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = m.weight
                w.copy_(torch.randn(w.shape, generator=generator, device=w.device, dtype=w.dtype))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
                m.weight.fill_(1.0)
                m.bias.zero_()


def zen(net, inputs, targets, loss_fn, seed, mixup_gamma: float = ZEN_MIXUP_GAMMA) -> float:
    gen = torch.Generator(device=inputs.device).manual_seed(int(seed))
    with torch.no_grad():
        zen_gaussian_init(net, gen)
        x = torch.randn(inputs.shape, generator=gen, device=inputs.device, dtype=torch.float32)
        e = torch.randn(inputs.shape, generator=gen, device=inputs.device, dtype=torch.float32)
        variances: dict[int, torch.Tensor] = {}

        def record(module, inp):
            a = inp[0]
            variances[id(module)] = (a.var(dim=[d for d in range(a.dim()) if d != 1], unbiased=True), module.eps)

        handles = [m.register_forward_pre_hook(record) for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
        try:
            f = features_before_pool(net, x)
        finally:
            for h in handles:
                h.remove()
        f_mix = features_before_pool(net, x + mixup_gamma * e)
        delta = (f - f_mix).abs().sum(dim=tuple(range(1, f.dim()))).mean()
        # + eps, as BN itself divides by sqrt(var + eps): a BN fed only zeros (a node of two `none`
        # ops) then scales by 1/sqrt(eps) instead of making the score log(0)
        log_bn = sum(0.5 * math.log(float(v.mean()) + eps) for v, eps in variances.values())
        delta = float(delta)
        return (math.log(delta) if delta > 0 else -math.inf) + log_bn   # -inf: output ignores the input


def l2_norm(net, inputs, targets, loss_fn, seed) -> float:
    return _sum(m.weight.detach().norm() for m in _weight_layers(net))


PROXIES: dict[str, ProxyFn] = {
    "params": params, "flops": flops, "grad_norm": grad_norm, "snip": snip, "grasp": grasp, "fisher": fisher,
    "synflow": synflow, "jacov": jacov, "naswot": naswot, "zen": zen, "l2_norm": l2_norm,
}
PROXY_NAMES = tuple(PROXIES)


# ---------------------------------------------------------------------------------------------------
# entry points

@contextlib.contextmanager
def _isolated(model: nn.Module, device: torch.device):
    """A train-mode deep copy with drop-path off, under a forked RNG and deterministic cuDNN."""
    cudnn = torch.backends.cudnn
    saved = (cudnn.deterministic, cudnn.benchmark)
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        cudnn.deterministic, cudnn.benchmark = True, False
        try:
            net = copy.deepcopy(model)
            net.train()
            set_drop_prob(net, 0.0)
            net.requires_grad_(True)
            net.zero_grad(set_to_none=True)
            with torch.enable_grad():
                yield net
        finally:
            cudnn.deterministic, cudnn.benchmark = saved


def _device_of(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    return torch.device("cpu")


def _joined(batches: Sequence, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    batches = list(batches)
    if not batches:
        raise ValueError("compute_proxies needs at least one (inputs, targets) batch")
    inputs = torch.cat([b[0].detach() for b in batches]).to(device)
    targets = torch.cat([b[1].detach() for b in batches]).to(device)
    return inputs, targets


def _check_names(names) -> list[str]:
    names = list(dict.fromkeys([names] if isinstance(names, str) else names))
    unknown = [n for n in names if n not in PROXIES]
    if unknown:
        raise ValueError(f"unknown proxy {', '.join(map(repr, unknown))}; available: {', '.join(PROXIES)}")
    return names


def compute_proxies(model: nn.Module, batches: Sequence, loss_fn: LossFn, names: Iterable[str] = PROXY_NAMES,
                    seed: int = 0, timings: dict | None = None) -> dict[str, float]:
    """``{name: score}`` of ``model`` for each proxy in ``names`` (see the module doc).

    ``batches``: ``(inputs, targets)`` pairs, concatenated into one batch; ``loss_fn(logits,
    targets)`` a scalar. The model is never modified. When ``timings`` is a dict, it receives
    ``{name: seconds}`` (wall clock, including the model's copy)."""
    names = _check_names(names)
    device = _device_of(model)
    inputs, targets = _joined(batches, device)
    scores: dict[str, float] = {}
    for name in names:
        t0 = time.perf_counter()
        with _isolated(model, device) as net:
            scores[name] = float(PROXIES[name](net, inputs, targets, loss_fn, seed))
            del net
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if timings is not None:
            timings[name] = time.perf_counter() - t0
    return scores


def build_proxy_network(genotype, *, width: int, depth: int, stem: str = "auto", image_size: int = 32,
                        num_classes: int = 10, in_channels: int = 3, single_reduction: bool = False, task=None,
                        seed: int = 0) -> FixedNetwork:
    """The project's fixed network for ``genotype`` (a ``Genotype`` or anything ``zoo.resolve_genotype``
    reads), initialised from ``seed`` without touching the global RNG, no auxiliary head. With
    ``task`` its head, output count, input channels and output stride replace ``num_classes``,
    ``in_channels`` and ``single_reduction``."""
    g = zoo.resolve_genotype(genotype)
    stem = choose_stem(stem, image_size)
    if task is not None:
        head, outputs = task.build_head, task.num_outputs
        in_channels, single_reduction = task.in_channels, task.single_reduction
    else:
        head, outputs = (lambda c: ClassifierHead(c, num_classes)), num_classes
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(int(seed))
        return build_network(g, head, outputs, in_channels, width, depth, stem, single_reduction, False)


def proxies_for_genotype(genotype, batches: Sequence, names: Iterable[str] = PROXY_NAMES, *, width: int, depth: int,
                         stem: str = "auto", num_classes: int = 10, in_channels: int = 3,
                         single_reduction: bool = False, task=None, loss_fn: LossFn | None = None, seed: int = 0,
                         device=None, timings: dict | None = None) -> dict[str, float]:
    """Build :func:`build_proxy_network` (``stem`` ``auto`` resolved from the batches' image side)
    on ``device`` (default: the batches') and return :func:`compute_proxies` of it. ``loss_fn``
    defaults to ``task.loss`` with a task, else cross-entropy."""
    batches = list(batches)
    if not batches:
        raise ValueError("proxies_for_genotype needs at least one (inputs, targets) batch")
    image_size = int(max(batches[0][0].shape[-2:]))
    net = build_proxy_network(genotype, width=width, depth=depth, stem=stem, image_size=image_size,
                              num_classes=num_classes, in_channels=in_channels, single_reduction=single_reduction,
                              task=task, seed=seed)
    net.to(torch.device(device) if device is not None else batches[0][0].device)
    if loss_fn is None:
        loss_fn = task.loss if task is not None else F.cross_entropy
    return compute_proxies(net, batches, loss_fn, names, seed=seed, timings=timings)
