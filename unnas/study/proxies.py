"""Training-free ("zero-cost") proxies of an architecture's trained accuracy.

``compute_proxies(model, batches, loss_fn, names, seed=0, timings=None) -> {name: float}`` scores one
network; ``score_proxies(...) -> {name: ProxyScore}`` does the same but reports a failing proxy
with its error and goes on (what a study calls); ``proxies_for_genotype(genotype, batches, names,
width=..., depth=..., ...)`` builds the project's fixed network for a DARTS genotype (seeded
initialisation, no auxiliary head) and scores it. ``PROXIES`` maps every name to its function
``fn(net, inputs, targets, loss_fn, seed) -> float``, the plain definition; nothing branches on
names. Pass a dict as ``timings`` to get each proxy's wall-clock seconds (the deep copies
included: the cost per architecture).

Two paths compute the same scores. :func:`reference_proxies` runs each function of ``PROXIES`` on
its own NCHW copy with its own passes. :func:`score_proxies` (and ``compute_proxies``) shares what
can be shared without changing a number: grad_norm, snip, fisher, naswot, jacov and grasp's
gradient come from one copy and one forward of the loss with one backward (:data:`GRADIENT_PASS`;
jacov's input gradient is a second backward through the same graph, grasp's Hessian-vector
product a pass of its own on the same weights), params and l2_norm read the model without a copy,
and naswot's kernel takes one float32 product per activation block whose integer results are
exact. Its scores equal the reference's bit for bit (``tests/test_proxies.py``). Asked to run its
copies channels-last (``memory_format``), it is faster on a CPU, but the scores move by float
rounding, which a deep network at initialisation amplifies (at the release's width 16 and depth
20: grad_norm by 2%, grasp's sign; docs/rank_corr.md, "Cost"), so a study does not.

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
  and global RNG are untouched, so proxies cannot influence each other (the fast path: the
  gradient-pass proxies share one such copy, whose passes run the same whichever of them are
  asked for; params and l2_norm only read the model).
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
* naswot: codes from the input of every application of an ``nn.ReLU`` module (an in-place ReLU's
  input is already rectified when the hook runs; ``x > 0`` is the same code), also when a cell
  computes a state's ReLU once and hands it to each op reading the state through the op's
  ``after_relu`` (:func:`relu_codes`): every op's ReLU counts once, as in the textbook DARTS network
  and NASLib's; K accumulated in float64 over all ReLUs (:class:`NaswotKernel`); ``slogdet``'s
  log-absolute-determinant (``-inf`` when K is singular, e.g. repeated images).
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
from typing import Callable, Iterable, NamedTuple, Sequence

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
    return grasp_from_gradient(net, inputs, targets, loss_fn, g)


def grasp_from_gradient(net, inputs, targets, loss_fn, g: Sequence[torch.Tensor | None]) -> float:
    """grasp given ``g`` = dL/dW of every weight layer (None: unused), as ``_weight_layers(net)``:
    a second pass builds dL/dW with its graph, and ``z = sum(g * dL/dW)``'s backward leaves
    ``H g`` in the weights' ``.grad``. Train-mode BatchNorm normalises with the batch's statistics,
    so the running statistics the first pass updated change nothing here."""
    weights = [m.weight for m in _weight_layers(net)]
    net.zero_grad(set_to_none=True)
    g_f = torch.autograd.grad(loss_fn(_logits(net(inputs)), targets), weights, create_graph=True, allow_unused=True)
    z = sum((a.detach() * b).sum() for a, b in zip(g, g_f) if a is not None and b is not None)
    if not torch.is_tensor(z):
        return 0.0
    net.zero_grad(set_to_none=True)
    z.backward()                                   # w.grad = H g
    return _sum((-w.detach() * w.grad).sum() for w in weights if w.grad is not None)


class FisherProbe:
    """fisher's activation points in ``net`` (see the module doc): a forward hook keeps a copy of
    every weight layer's output (for a ``FactorizedReduce``, its BatchNorm's input) and a tensor
    hook on it adds ``0.5 mean_n (sum_hw z dL/dz)^2`` per channel when the gradient arrives.
    Remove the module hooks after the forward (:meth:`remove_forward_hooks`) and the tensor hooks
    after the loss's backward (:meth:`remove`), so that no other backward adds to the saliency."""

    def __init__(self, net: nn.Module):
        self.saliency: dict[int, torch.Tensor] = {}
        self.fan_in: dict[int, int] = {}
        self.module_handles, self.tensor_handles = [], []
        inside_reduce = set()
        for m in net.modules():
            if isinstance(m, FactorizedReduce):   # F.conv2d on conv_1/conv_2 weights: hook the BN's input
                inside_reduce.update((id(m.conv_1), id(m.conv_2)))
                self.fan_in[id(m)] = m.conv_1.weight[0].numel()
                self.module_handles.append(m.bn.register_forward_pre_hook(
                    lambda mod, inp, key=id(m): self._capture(key, inp[0])))
        for m in _weight_layers(net):
            if id(m) not in inside_reduce:
                self.fan_in[id(m)] = m.weight[0].numel()
                self.module_handles.append(m.register_forward_hook(
                    lambda mod, inp, out, key=id(m): self._capture(key, out)))

    def _capture(self, key: int, z: torch.Tensor) -> None:
        if not z.requires_grad:
            return
        act = z.detach().clone()

        def on_grad(grad):
            s = act * grad
            g_nk = s.sum(dim=tuple(range(2, s.dim()))) if s.dim() > 2 else s
            d = g_nk.pow(2).mean(0).mul(0.5)
            self.saliency[key] = d if key not in self.saliency else self.saliency[key] + d
        self.tensor_handles.append(z.register_hook(on_grad))

    def remove_forward_hooks(self) -> None:
        for h in self.module_handles:
            h.remove()
        self.module_handles = []

    def remove(self) -> None:
        self.remove_forward_hooks()
        for h in self.tensor_handles:
            h.remove()
        self.tensor_handles = []

    def score(self) -> float:
        return _sum(self.fan_in[key] * s.abs().sum() for key, s in self.saliency.items())


def fisher(net, inputs, targets, loss_fn, seed) -> float:
    probe = FisherProbe(net)
    try:
        _backward_loss(net, inputs, targets, loss_fn)
    finally:
        probe.remove()
    return probe.score()


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


def _owned_relu(m: nn.Module) -> nn.ReLU | None:
    """The ReLU module that ``m`` applies first and whose output ``m.after_relu(r)`` takes instead
    (the ops' convention in ``search_spaces/darts/ops.py``: a cell computes a state's ReLU once and
    hands it to every op reading the state); None when ``m`` has no such method."""
    if not callable(getattr(m, "after_relu", None)):
        return None
    first = m[0] if isinstance(m, nn.Sequential) and len(m) else getattr(m, "relu", None)
    return first if isinstance(first, nn.ReLU) else None


@contextlib.contextmanager
def relu_codes(net: nn.Module, record: Callable[[torch.Tensor], None]):
    """Call ``record(a)`` with the input ``a`` of every application of a ``nn.ReLU`` module of ``net``
    during the block, however the network applies it: a ReLU module called as a module, or one
    whose owner (a module with ``after_relu``, see :func:`_owned_relu`) is handed the rectified
    state ``r = relu(a)`` through ``after_relu(r)``: then ``record(r)``, which has the same code
    (``r > 0`` exactly where ``a > 0``). Each op counts its own ReLU once per application, as the
    textbook DARTS network, whose ops all call their own ``nn.ReLU`` (NASLib's networks too), so the
    score does not depend on whether the network shares one ReLU between the ops reading a state."""
    handles, wrapped = [], []
    owned = set()
    for m in net.modules():
        relu = _owned_relu(m)
        if relu is None:
            continue
        owned.add(id(relu))
        inside = [0]          # > 0 while m runs as a module: its forward's own after_relu call is the same ReLU

        def pre(mod, inp, inside=inside):
            inside[0] += 1
            record(inp[0])

        def post(mod, inp, out, inside=inside):
            inside[0] -= 1

        def after_relu(r, inside=inside, original=m.after_relu):
            if not inside[0]:
                record(r)
            return original(r)
        handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
        m.after_relu = after_relu                 # an instance attribute, deleted below
        wrapped.append(m)
    for m in net.modules():
        if isinstance(m, nn.ReLU) and id(m) not in owned:
            handles.append(m.register_forward_pre_hook(lambda mod, inp: record(inp[0])))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for m in wrapped:
            del m.after_relu


class NaswotKernel:
    """Mellor et al.'s K (float64, N x N) accumulated over ReLU applications: ``c c^T + (1 - c)(1 -
    c)^T`` for the binary codes ``c = a > 0`` of the N samples, i.e. ``N_A - Hamming(c_i, c_j)``,
    computed as ``N_A - |c_i| - |c_j| + 2 c_i . c_j`` with one float32 product: every partial sum
    is an integer below 2^24 (columns are taken in blocks of at most ``BLOCK``), so float32 holds
    it exactly and K is the same integers as the float64 products of the definition."""

    BLOCK = 1 << 23

    def __init__(self, n: int, device):
        self.n = n
        self.kernel = torch.zeros(n, n, dtype=torch.float64, device=device)

    def add(self, a: torch.Tensor) -> None:
        a = a.detach()
        if a.shape[0] != self.n:
            raise ValueError(f"naswot: a ReLU saw a batch of {a.shape[0]}, not the {self.n} inputs")
        if a.dim() == 4 and not a.is_contiguous() and a.is_contiguous(memory_format=torch.channels_last):
            a = a.permute(0, 2, 3, 1)             # a view: the order of a code's units does not matter
        codes = a.reshape(self.n, -1) > 0
        for start in range(0, codes.shape[1], self.BLOCK):
            c = codes[:, start:start + self.BLOCK].to(torch.float32)
            ones = c.sum(1, dtype=torch.float64)
            units = float(c.shape[1])
            self.kernel.add_((c @ c.t()).to(torch.float64).mul_(2.0)).add_(units)
            self.kernel.sub_(ones[:, None]).sub_(ones[None, :])

    def score(self) -> float:
        return float(np.linalg.slogdet(self.kernel.cpu().numpy())[1])


def naswot_kernel(net, inputs) -> torch.Tensor:
    """Mellor et al.'s K (float64, N x N) of ``net`` on ``inputs``: :class:`NaswotKernel` over the
    inputs of every ReLU application (:func:`relu_codes`) in one forward pass."""
    k = NaswotKernel(inputs.shape[0], inputs.device)
    with relu_codes(net, k.add), torch.no_grad():
        net(inputs)
    return k.kernel


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
def _isolated(model: nn.Module, device: torch.device, memory_format: torch.memory_format = torch.contiguous_format):
    """A train-mode deep copy with drop-path off, under a forked RNG and deterministic cuDNN, its
    4-d weights in ``memory_format``."""
    cudnn = torch.backends.cudnn
    saved = (cudnn.deterministic, cudnn.benchmark)
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        cudnn.deterministic, cudnn.benchmark = True, False
        try:
            net = copy.deepcopy(model)
            if memory_format != torch.contiguous_format:
                net.to(memory_format=memory_format)
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reference_proxies(model: nn.Module, batches: Sequence, loss_fn: LossFn, names: Iterable[str] = PROXY_NAMES,
                      seed: int = 0, timings: dict | None = None) -> dict[str, float]:
    """The plain path: every proxy of ``names`` by its own function of :data:`PROXIES` on its own
    NCHW copy of ``model``, with its own passes. :func:`compute_proxies` computes the same scores
    faster; this one is its reference (tests, ``benchmarks/proxy_costs.py --path plain``)."""
    names = _check_names(names)
    device = _device_of(model)
    inputs, targets = _joined(batches, device)
    scores: dict[str, float] = {}
    for name in names:
        t0 = time.perf_counter()
        with _isolated(model, device) as net:
            scores[name] = float(PROXIES[name](net, inputs, targets, loss_fn, seed))
            del net
        _sync(device)
        if timings is not None:
            timings[name] = time.perf_counter() - t0
    return scores


# ---------------------------------------------------------------------------------------------------
# the fast path: what several proxies share is computed once

# One forward of the loss and its backward, on one copy, serve these proxies: they all read the
# network at the same initialisation, in train mode, on the same batch (fisher's and naswot's hooks
# only read activations; jacov's input gradient is a second backward through the same graph, taken
# after the loss's; grasp's g is the loss's gradient, its Hessian-vector product a pass of its own).
GRADIENT_PASS = frozenset({"grad_norm", "snip", "fisher", "grasp", "jacov", "naswot"})
_LOSS_GRADIENT = frozenset({"grad_norm", "snip", "fisher", "grasp"})
# read from the weights or counted without running the network: no copy (flops copies by itself)
_NO_COPY = frozenset({"params", "l2_norm"})


class ProxyScore(NamedTuple):
    """One proxy's outcome: ``value`` (None when it raised), wall-clock ``seconds`` and the process's
    ``cpu_seconds`` (a pass several proxies share is divided equally among them; CPU seconds say
    what it cost on a machine shared with other work), ``error`` (``"Type: message"``) and the exception."""
    value: float | None
    seconds: float
    error: str | None = None
    exception: BaseException | None = None
    cpu_seconds: float = 0.0


def _failure(exc: Exception, elapsed: tuple[float, float]) -> ProxyScore:
    return ProxyScore(None, elapsed[0], f"{type(exc).__name__}: {' '.join(str(exc).split())}", exc, elapsed[1])


def _clock() -> tuple[float, float]:
    """(wall, process CPU) seconds, for :func:`_since`."""
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float], share: int = 1) -> tuple[float, float]:
    return (time.perf_counter() - start[0]) / share, (time.process_time() - start[1]) / share


def _gradient_pass(model, device, memory_format, inputs, targets, loss_fn, wanted: Sequence[str]) -> dict:
    """The :data:`GRADIENT_PASS` proxies of ``wanted``, from one copy of ``model``: ``{name: ProxyScore}``.
    The same passes run whichever of them are asked for, so a score does not depend on its company."""
    out: dict[str, ProxyScore] = {}
    own: dict[str, tuple[float, float]] = {}
    t0 = _clock()
    with _isolated(model, device, memory_format) as net:
        probe = kernel = None
        loss_error = None
        try:
            x = inputs.detach().clone().requires_grad_(True)   # for jacov; always, so the pass is always the same
            kernel = NaswotKernel(x.shape[0], x.device) if "naswot" in wanted else None
            probe = FisherProbe(net) if "fisher" in wanted else None
            with relu_codes(net, kernel.add) if kernel is not None else contextlib.nullcontext():
                try:
                    logits = _logits(net(x))
                finally:
                    if probe is not None:
                        probe.remove_forward_hooks()
            if _LOSS_GRADIENT.intersection(wanted):
                try:
                    loss_fn(logits, targets).backward(retain_graph="jacov" in wanted)
                except Exception as exc:   # the proxies of the loss fail; jacov and naswot need none
                    loss_error = exc
            if probe is not None:
                probe.remove()                     # jacov's backward must not add to fisher's saliency
            _sync(device)
        except Exception as exc:   # the forward failed: so did every proxy of the pass
            if probe is not None:
                probe.remove()
            return {name: _failure(exc, _since(t0, len(wanted))) for name in wanted}
        shared = _since(t0, len(wanted))
        weights = [m.weight for m in _weight_layers(net)]
        finishers = {
            "grad_norm": lambda: _sum(w.grad.norm() for w in weights if w.grad is not None),
            "snip": lambda: _sum((w.grad * w).abs().sum() for w in weights if w.grad is not None),
            "fisher": lambda: probe.score(),
            "naswot": lambda: kernel.score(),
            "jacov": lambda: jacov_score(torch.autograd.grad(logits, x, torch.ones_like(logits))[0]
                                         .reshape(x.shape[0], -1).double().cpu().numpy()),
        }
        order = [n for n in wanted if n != "grasp"] + (["grasp"] if "grasp" in wanted else [])
        for name in order:                         # grasp last: it replaces the weights' gradients
            t = _clock()
            try:
                if loss_error is not None and name in _LOSS_GRADIENT:
                    raise loss_error
                if name == "grasp":
                    g = [None if w.grad is None else w.grad.detach().clone() for w in weights]
                    del logits                     # the first graph (jacov is done): memory for the second
                    value = grasp_from_gradient(net, x.detach(), targets, loss_fn, g)
                else:
                    value = finishers[name]()
                _sync(device)
                out[name] = ProxyScore(float(value), 0.0)
            except Exception as exc:               # one proxy failing must not stop the others
                out[name] = _failure(exc, (0.0, 0.0))
            own[name] = _since(t)
    return {name: out[name]._replace(seconds=own[name][0] + shared[0], cpu_seconds=own[name][1] + shared[1])
            for name in wanted}


def score_proxies(model: nn.Module, batches: Sequence, loss_fn: LossFn, names: Iterable[str] = PROXY_NAMES,
                  seed: int = 0, on_score: Callable[[str, ProxyScore], None] | None = None,
                  memory_format: torch.memory_format | None = None) -> dict[str, ProxyScore]:
    """``{name: ProxyScore}`` of ``model`` for each proxy in ``names``: the scores of
    :func:`reference_proxies`, bit for bit, computed faster: the proxies of :data:`GRADIENT_PASS`
    share one copy and one forward/backward pass; params and l2_norm read the model without a copy.
    ``memory_format`` ``torch.channels_last`` runs the copies channels-last (faster on a CPU, but
    the scores then move by float rounding, which a deep network at initialisation amplifies:
    docs/rank_corr.md, "Cost"); default NCHW. A proxy that raises is reported with its error and the
    others go on; ``on_score(name, score)`` hears each as soon as it is known. The model, its
    gradients and the global RNG are left as they were."""
    names = _check_names(names)
    device = _device_of(model)
    inputs, targets = _joined(batches, device)
    fmt = torch.contiguous_format if memory_format is None else memory_format
    if inputs.dim() == 4:
        inputs = inputs.contiguous(memory_format=fmt)
    scores: dict[str, ProxyScore] = {}

    def report(name, score):
        scores[name] = score
        if on_score is not None:
            on_score(name, score)

    gradient = [n for n in names if n in GRADIENT_PASS]
    for name in names:
        if name in scores:
            continue
        if name in GRADIENT_PASS:
            for n, score in _gradient_pass(model, device, fmt, inputs, targets, loss_fn, gradient).items():
                report(n, score)
            continue
        t0 = _clock()
        try:
            if name in _NO_COPY or (name == "flops" and isinstance(model, FixedNetwork)):
                with torch.no_grad():
                    value = PROXIES[name](model, inputs, targets, loss_fn, seed)
            else:
                with _isolated(model, device, fmt if name != "flops" else torch.contiguous_format) as net:
                    value = PROXIES[name](net, inputs, targets, loss_fn, seed)
                    del net
            _sync(device)
            wall, cpu = _since(t0)
            report(name, ProxyScore(float(value), wall, cpu_seconds=cpu))
        except Exception as exc:                   # one proxy failing must not stop the others
            report(name, _failure(exc, _since(t0)))
    return {name: scores[name] for name in names}


def compute_proxies(model: nn.Module, batches: Sequence, loss_fn: LossFn, names: Iterable[str] = PROXY_NAMES,
                    seed: int = 0, timings: dict | None = None) -> dict[str, float]:
    """``{name: score}`` of ``model`` for each proxy in ``names`` (see the module doc), by
    :func:`score_proxies`; raises the first proxy's exception if one failed.

    ``batches``: ``(inputs, targets)`` pairs, concatenated into one batch; ``loss_fn(logits,
    targets)`` a scalar. The model is never modified. When ``timings`` is a dict, it receives
    ``{name: seconds}`` (wall clock, including the model's copy; shared passes divided equally)."""
    scores = score_proxies(model, batches, loss_fn, names, seed)
    for score in scores.values():
        if score.exception is not None:
            raise score.exception
    if timings is not None:
        timings.update({name: score.seconds for name, score in scores.items()})
    return {name: score.value for name, score in scores.items()}


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
