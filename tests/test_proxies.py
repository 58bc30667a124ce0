"""Zero-cost proxies (unnas/study/proxies.py): each against a plain reference written here, their
invariances, isolation from the model and from each other, determinism; the fast path (shared
passes, channels-last) against the plain reference path and against the textbook DARTS network."""
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from search_spaces.darts.genotype import Genotype
from search_spaces.darts.network import set_drop_prob
from search_spaces.darts.ops import FactorizedReduce, ReLUConvBN, factorized_phases
from unnas.study.proxies import (GRADIENT_PASS, PROXIES, PROXY_NAMES, NaswotKernel, build_proxy_network,
                                 compute_proxies, jacov_score, naswot_kernel, proxies_for_genotype,
                                 reference_proxies, score_proxies)
from unnas.train.complexity import complexity

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from textbook_network import load_from_ours, textbook_like  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py


class Toy(nn.Module):
    """conv 3x3 (3 -> 4, bias) -> BN -> ReLU -> global average pool -> linear 4 -> 3."""

    def __init__(self, bn=True):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4) if bn else nn.Identity()
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.bn(self.conv(x)))).flatten(1))


def toy(seed=0, bn=True):
    torch.manual_seed(seed)
    net = Toy(bn)
    with torch.no_grad():                      # non-trivial BN affine and running stats
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
        if bn:
            net.bn.running_mean.uniform_(-1, 1)
            net.bn.running_var.uniform_(0.5, 2)
    return net


def data(n=8, side=8, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, side, side, generator=g), torch.randint(0, classes, (n,), generator=g)


def toy_forward(net, x, wc=None, wf=None, bn=True):
    """The toy in train mode, functionally: (conv output, ReLU input, logits)."""
    wc = net.conv.weight if wc is None else wc
    wf = net.fc.weight if wf is None else wf
    z1 = F.conv2d(x, wc, net.conv.bias, padding=1)
    h = F.batch_norm(z1, None, None, net.bn.weight, net.bn.bias, training=True) if bn else z1
    z2 = F.linear(F.relu(h).mean((2, 3)), wf, net.fc.bias)
    return z1, h, z2


def one(name, net, x, y, seed=0):
    return compute_proxies(net, [(x, y)], F.cross_entropy, [name], seed=seed)[name]


def darts(aux=False, seed=0):
    net = build_proxy_network("DARTS_V2", width=4, depth=2, image_size=8, num_classes=5, seed=seed)
    if aux:                                    # the same network with the auxiliary head (train: (logits, aux))
        from search_spaces.darts.network import build_cifar_network
        torch.manual_seed(seed)
        net = build_cifar_network(net.trunk.genotype, num_classes=5, width=4, depth=2, auxiliary=True)
    return net


# --- each proxy against a reference ----------------------------------------------------------------

def test_params_and_flops():
    net, (x, y) = toy(), data()
    assert one("params", net, x, y) == sum(p.numel() for p in net.parameters())
    plain = toy(bn=False)
    # fvcore MACs: conv (no bias term) + adaptive average pool (one per input element) + linear
    assert one("flops", plain, x, y) == 4 * 8 * 8 * 3 * 9 + 4 * 8 * 8 + 4 * 3
    d = darts(aux=True)
    c = complexity(d, x[:1])
    assert one("params", d, x, y % 5) == c["params"] == sum(p.numel() for p in d.parameters()) - c["params_aux"]
    assert one("flops", d, x, y % 5) == c["macs"]


def test_grad_norm_snip_l2_norm():
    net, (x, y) = toy(), data()
    wc, wf = net.conv.weight, net.fc.weight
    gc, gf = torch.autograd.grad(F.cross_entropy(toy_forward(net, x)[2], y), [wc, wf])
    assert one("grad_norm", net, x, y) == pytest.approx(float(gc.norm() + gf.norm()), rel=1e-5)
    assert one("l2_norm", net, x, y) == pytest.approx(float(wc.detach().norm() + wf.detach().norm()), rel=1e-6)
    # snip as NASLib: |dL/dmask| of a multiplicative mask at 1
    mc, mf = torch.ones_like(wc, requires_grad=True), torch.ones_like(wf, requires_grad=True)
    loss = F.cross_entropy(toy_forward(net, x, wc.detach() * mc, wf.detach() * mf)[2], y)
    dc, df = torch.autograd.grad(loss, [mc, mf])
    assert one("snip", net, x, y) == pytest.approx(float(dc.abs().sum() + df.abs().sum()), rel=1e-5)


def test_grasp_is_minus_theta_hessian_gradient():
    net, (x, y) = toy(), data()
    w = (net.conv.weight.detach(), net.fc.weight.detach())

    def loss(wc, wf):
        return F.cross_entropy(toy_forward(net, x, wc, wf)[2], y)

    wc, wf = w[0].clone().requires_grad_(), w[1].clone().requires_grad_()
    g = torch.autograd.grad(loss(wc, wf), [wc, wf])
    _, hg = torch.autograd.functional.hvp(loss, w, g)
    ref = float(sum((-wi * hi).sum() for wi, hi in zip(w, hg)))
    assert one("grasp", net, x, y) == pytest.approx(ref, rel=1e-4, abs=1e-7)


def test_fisher_per_output_channel_times_fan_in():
    net, (x, y) = toy(), data()
    z1, _, z2 = toy_forward(net, x)
    z1.retain_grad()
    z2.retain_grad()
    F.cross_entropy(z2, y).backward()
    conv = 0.5 * (z1.detach() * z1.grad).sum((2, 3)).pow(2).mean(0)
    fc = 0.5 * (z2.detach() * z2.grad).pow(2).mean(0)
    ref = float(conv.sum() * (3 * 3 * 3) + fc.sum() * 4)
    assert one("fisher", net, x, y) == pytest.approx(ref, rel=1e-5)


def test_fisher_sees_factorized_reduce_convs():
    class Reduce(nn.Module):
        def __init__(self):
            super().__init__()
            self.fr = FactorizedReduce(3, 4)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(self.fr(x).mean((2, 3)))

    torch.manual_seed(0)
    net, (x, y) = Reduce(), data()
    even, odd = factorized_phases(F.relu(x))
    z = torch.cat([F.conv2d(even, net.fr.conv_1.weight), F.conv2d(odd, net.fr.conv_2.weight)], 1)
    z.retain_grad()
    out = net.fc(F.batch_norm(z, None, None, net.fr.bn.weight, net.fr.bn.bias, training=True).mean((2, 3)))
    out.retain_grad()
    F.cross_entropy(out, y).backward()
    s_z = 0.5 * (z.detach() * z.grad).sum((2, 3)).pow(2).mean(0)
    s_out = 0.5 * (out.detach() * out.grad).pow(2).mean(0)
    ref = float(s_z.sum() * 3 + s_out.sum() * 4)
    assert one("fisher", net, x, y) == pytest.approx(ref, rel=1e-5)


def test_synflow_by_hand_and_independent_of_data():
    net, (x, y) = toy(), data()
    p = {k: v.detach().double().abs().requires_grad_() for k, v in net.named_parameters()}
    ones = torch.ones(1, 3, 8, 8, dtype=torch.float64)
    h = F.conv2d(ones, p["conv.weight"], p["conv.bias"], padding=1)   # BN bypassed (NASLib synflow, bn=False)
    r = F.linear(F.relu(h).mean((2, 3)), p["fc.weight"], p["fc.bias"]).sum()
    gc, gf = torch.autograd.grad(r, [p["conv.weight"], p["fc.weight"]])
    ref = float((p["conv.weight"].detach() * gc).abs().sum() + (p["fc.weight"].detach() * gf).abs().sum())
    s = one("synflow", net, x, y)
    assert s == pytest.approx(ref, rel=1e-12)
    x2, y2 = data(n=4, seed=5)
    assert one("synflow", net, x2 * 7, y2) == s
    d = darts()
    assert one("synflow", d, x, y % 5) == one("synflow", d, x2, y2 % 5)


def test_jacov():
    # uncorrelated Jacobian rows: the correlation is I, every eigenvalue 1
    rows = np.array([[1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0]])
    k = 1e-5
    assert jacov_score(rows) == pytest.approx(-2 * (math.log(1 + k) + 1 / (1 + k)), rel=1e-12)
    assert math.isnan(jacov_score(np.array([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]])))   # a constant row
    net, (x, y) = toy(), data()
    xr = x.clone().requires_grad_()
    (jac,) = torch.autograd.grad(toy_forward(net, xr)[2].sum(), [xr])
    v = torch.linalg.eigvalsh(torch.corrcoef(jac.reshape(len(x), -1).double()))
    ref = float(-(torch.log(v + k) + 1 / (v + k)).sum())
    assert one("jacov", net, x, y) == pytest.approx(ref, rel=1e-6)


def test_naswot_kernel_by_hand_and_order_invariance():
    net, (x, y) = toy(), data()
    codes = (toy_forward(net, x)[1] > 0).reshape(len(x), -1)
    n_a = codes.shape[1]
    k = torch.tensor([[n_a - int((codes[i] != codes[j]).sum()) for j in range(len(x))] for i in range(len(x))],
                     dtype=torch.float64)
    assert one("naswot", net, x, y) == pytest.approx(float(torch.linalg.slogdet(k)[1]), rel=1e-12)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    assert one("naswot", net, x[perm], y[perm]) == pytest.approx(one("naswot", net, x, y), rel=1e-12)
    d = darts()
    assert one("naswot", d, x[perm], y[perm]) == pytest.approx(one("naswot", d, x, y), rel=1e-9)


def test_zen_by_hand():
    net, (x, y) = toy(), data()
    g = torch.Generator().manual_seed(3)
    wc = torch.randn(net.conv.weight.shape, generator=g)                # draw order: weight layers, x, e
    wf = torch.randn(net.fc.weight.shape, generator=g)
    a = torch.randn(x.shape, generator=g)
    e = torch.randn(x.shape, generator=g)

    def feats(inp):
        z = F.conv2d(inp, wc, None, padding=1)                          # biases 0, BN affine 1/0
        return z, F.relu(F.batch_norm(z, None, None, None, None, training=True))

    z, f = feats(a)
    _, f_mix = feats(a + 0.01 * e)
    ref = math.log(float((f - f_mix).abs().sum((1, 2, 3)).mean())) + 0.5 * math.log(float(z.var((0, 2, 3)).mean()) + 1e-5)
    assert wf.shape == (3, 4)
    assert one("zen", net, x, y, seed=3) == pytest.approx(ref, rel=1e-5)
    assert one("zen", net, x + 1, y, seed=3) == one("zen", net, x, y, seed=3)   # only the batch's shape counts


def test_zen_of_sampled_genotypes_with_none_nodes():
    """A node of two `none` ops feeds zeros to BNs (zero variance): zen stays finite, as BN's own eps
    keeps it (it raised a math domain error on release genotype 00026); a network whose features
    ignore the input scores -inf."""
    from search_spaces.darts.genotype import Genotype

    ops = ["sep_conv_3x3", "skip_connect"] * 4
    dead_node = Genotype(normal=[("none", 0), ("none", 1), ("sep_conv_3x3", 2)] + [(o, 0) for o in ops[3:]],
                         normal_concat=[2, 3, 4, 5],   # node 3's sep_conv reads node 2's zeros
                         reduce=[(o, 1) for o in ops], reduce_concat=[2, 3, 4, 5])
    x, y = data(side=16)
    score = one("zen", build_proxy_network(dead_node, width=4, depth=2, image_size=16, num_classes=3, seed=0), x, y)
    assert math.isfinite(score)
    nothing = [("none", 0)] * 8
    dead = Genotype(normal=nothing, normal_concat=[2, 3, 4, 5], reduce=nothing, reduce_concat=[2, 3, 4, 5])
    assert one("zen", build_proxy_network(dead, width=4, depth=2, image_size=16, num_classes=3, seed=0), x, y) == -math.inf


# --- isolation, determinism, the genotype helper -----------------------------------------------------

def _snapshot(net):
    return ({k: v.clone() for k, v in net.state_dict().items()},
            {n: m.training for n, m in net.named_modules()},
            {n: (p.requires_grad, None if p.grad is None else p.grad.clone()) for n, p in net.named_parameters()})


def _same(a, b):
    (sa, ma, ga), (sb, mb, gb) = a, b
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) and sa[k].dtype == sb[k].dtype for k in sa)
    assert ma == mb
    assert ga.keys() == gb.keys()
    for k in ga:
        assert ga[k][0] == gb[k][0]
        assert (ga[k][1] is None) == (gb[k][1] is None)
        assert ga[k][1] is None or torch.equal(ga[k][1], gb[k][1])


@pytest.mark.parametrize("which", ["toy", "darts"])
def test_proxies_leave_the_model_alone_and_do_not_interact(which):
    if which == "toy":
        net, (x, y) = toy(), data()
    else:
        net, (x, y) = darts(aux=True), data(classes=5)
        set_drop_prob(net, 0.3)
    net.eval()
    net.fc.train() if which == "toy" else net.trunk.cells[0].train()      # a mixed mode to restore
    next(net.parameters()).requires_grad_(False)
    F.cross_entropy(net(x), y).backward()                                  # existing gradients stay as they are
    before = _snapshot(net)
    rng = torch.get_rng_state()
    together = compute_proxies(net, [(x[:4], y[:4]), (x[4:], y[4:])], F.cross_entropy, PROXY_NAMES, seed=1)
    _same(before, _snapshot(net))
    assert torch.equal(rng, torch.get_rng_state())
    assert all(not isinstance(v, bool) and isinstance(v, float) for v in together.values())
    alone = {name: one(name, net, x, y, seed=1) for name in reversed(PROXY_NAMES)}
    assert alone == together                                               # same values in any order, bit for bit
    if which == "darts":                                                   # drop-path is off inside, kept outside
        assert net.trunk.drop_prob == 0.3
        set_drop_prob(net, 0.0)
        assert compute_proxies(net, [(x, y)], F.cross_entropy, ["grad_norm", "naswot"], seed=1) == \
            {k: together[k] for k in ("grad_norm", "naswot")}


def test_deterministic_for_a_seed():
    net, (x, y) = darts(), data(classes=5)
    a = compute_proxies(net, [(x, y)], F.cross_entropy, PROXY_NAMES, seed=0)
    b = compute_proxies(net, [(x, y)], F.cross_entropy, PROXY_NAMES, seed=0)
    assert a.keys() == set(PROXY_NAMES) and a == b
    assert all(math.isfinite(v) for v in a.values()), a
    assert compute_proxies(net, [(x, y)], F.cross_entropy, ["zen"], seed=1)["zen"] != a["zen"]


def test_proxies_for_genotype_and_timings():
    x, y = data(n=4, side=16, classes=10)
    rng = torch.get_rng_state()
    timings = {}
    names = ["params", "synflow", "naswot", "l2_norm"]
    s = proxies_for_genotype("DARTS_V2", [(x, y)], names, width=4, depth=2, seed=0, timings=timings)
    assert torch.equal(rng, torch.get_rng_state())
    assert list(s) == names and set(timings) == set(names) and all(t > 0 for t in timings.values())
    net = build_proxy_network("DARTS_V2", width=4, depth=2, image_size=16, num_classes=10, seed=0)
    assert s["params"] == sum(p.numel() for p in net.parameters()) and net.aux_head is None
    assert net.trunk.stem_kind == "cifar"
    again = proxies_for_genotype(net.trunk.genotype, [(x, y)], names, width=4, depth=2, seed=0)
    assert again == s
    other = proxies_for_genotype("DARTS_V2", [(x, y)], ["l2_norm"], width=4, depth=2, seed=1)
    assert other["l2_norm"] != s["l2_norm"]                                # the seed initialises the network


def test_registry_and_errors():
    assert tuple(PROXIES) == PROXY_NAMES == ("params", "flops", "grad_norm", "snip", "grasp", "fisher", "synflow",
                                             "jacov", "naswot", "zen", "l2_norm")
    net, (x, y) = toy(), data()
    with pytest.raises(ValueError, match="unknown proxy 'nope'.*available: params"):
        compute_proxies(net, [(x, y)], F.cross_entropy, ["nope"])
    with pytest.raises(ValueError, match="at least one"):
        compute_proxies(net, [], F.cross_entropy, ["params"])


# --- the fast path ------------------------------------------------------------------------------------

# every op, in both cell types: Zero and FactorizedReduce at stride 2, both pools, dilated and separable
# convs, an Identity skip; a reduction cell reading a reduction's output (FactorizedReduce preprocessing)
EVERY_OP = Genotype(
    normal=[("sep_conv_5x5", 0), ("dil_conv_5x5", 1), ("none", 0), ("avg_pool_3x3", 2),
            ("max_pool_3x3", 1), ("skip_connect", 3), ("sep_conv_3x3", 4), ("dil_conv_3x3", 0)],
    normal_concat=[2, 4, 5],
    reduce=[("skip_connect", 0), ("none", 1), ("avg_pool_3x3", 0), ("max_pool_3x3", 1),
            ("dil_conv_3x3", 1), ("sep_conv_3x3", 2), ("sep_conv_5x5", 1), ("skip_connect", 4)],
    reduce_concat=[3, 4, 5])
ZERO_COST = [n for n in PROXY_NAMES if n not in ("params", "flops")]


def _rel(a, b):
    return 0.0 if a == b else abs(a - b) / max(abs(a), abs(b))


@pytest.mark.parametrize("genotype", ["DARTS_V2", EVERY_OP], ids=["darts_v2", "every_op"])
def test_fast_path_computes_the_reference_scores(genotype):
    """The fast path's shared passes give the reference path's numbers bit for bit; its
    channels-last copies move them by float rounding only (at this size); and the textbook DARTS
    network (one module per op, its own ReLU modules, NCHW) with the same weights scores the same."""
    net = build_proxy_network(genotype, width=4, depth=3, image_size=16, num_classes=5, seed=0)
    x, y = data(n=8, side=16, classes=5)
    reference = reference_proxies(net, [(x, y)], F.cross_entropy, PROXY_NAMES, seed=0)
    assert all(math.isfinite(v) for v in reference.values()), reference
    fast = score_proxies(net, [(x, y)], F.cross_entropy, PROXY_NAMES, seed=0)
    assert {n: s.value for n, s in fast.items()} == reference
    assert all(s.error is None and s.seconds > 0 and s.cpu_seconds >= 0 for s in fast.values())
    assert compute_proxies(net, [(x, y)], F.cross_entropy, PROXY_NAMES, seed=0) == reference
    channels_last = score_proxies(net, [(x, y)], F.cross_entropy, PROXY_NAMES, seed=0,
                                  memory_format=torch.channels_last)
    assert {n: _rel(channels_last[n].value, reference[n]) for n in PROXY_NAMES} == \
        pytest.approx(dict.fromkeys(PROXY_NAMES, 0.0), abs=1e-4)
    torch.manual_seed(1)
    textbook = textbook_like(net)
    load_from_ours(textbook, net)
    plain = reference_proxies(textbook, [(x, y)], F.cross_entropy, ZERO_COST, seed=0)
    assert {n: _rel(plain[n], reference[n]) for n in ZERO_COST} == pytest.approx(dict.fromkeys(ZERO_COST, 0.0),
                                                                                 abs=1e-4)


def test_naswot_counts_each_op_relu_however_the_network_applies_it():
    """A cell may compute a state's ReLU once and hand it to every op through ``after_relu``: each
    op's ReLU still counts once per application, as when the op calls its own ReLU module."""
    class TwoReaders(nn.Module):
        def __init__(self, shared):
            super().__init__()
            self.shared = shared
            self.a, self.b = ReLUConvBN(3, 4, 1, 1, 0), FactorizedReduce(3, 4)
            self.relu = nn.ReLU()                     # a plain ReLU module, counted as called

        def forward(self, x):
            if self.shared:
                r = F.relu(x)
                ya, yb = self.a.after_relu(r), self.b.after_relu(r)
            else:
                ya, yb = self.a(x), self.b(x)
            return self.relu(ya).sum((2, 3)) + yb.sum((2, 3))

    x, _ = data()
    torch.manual_seed(0)
    separate = TwoReaders(False)
    shared = TwoReaders(True)
    shared.load_state_dict(separate.state_dict())
    k_separate, k_shared = naswot_kernel(separate, x), naswot_kernel(shared, x)
    assert torch.equal(k_separate, k_shared)
    codes = (x > 0).reshape(len(x), -1).double()
    ya = separate.a(x).detach().reshape(len(x), -1) > 0
    by_hand = 2 * (codes @ codes.t() + (1 - codes) @ (1 - codes).t())     # a's and b's ReLU of x
    by_hand += ya.double() @ ya.double().t() + (~ya).double() @ (~ya).double().t()
    assert torch.equal(k_separate, by_hand)
    assert "after_relu" not in vars(shared.a) and "after_relu" not in vars(shared.b)           # unwrapped again


def test_naswot_kernel_in_blocks_is_the_float64_definition(monkeypatch):
    g = torch.Generator().manual_seed(0)
    acts = [torch.randn(6, 3, 5, 5, generator=g), torch.randn(6, 7, generator=g),
            torch.randn(6, 4, 3, 3, generator=g).contiguous(memory_format=torch.channels_last)]
    expected = torch.zeros(6, 6, dtype=torch.float64)
    for a in acts:
        c = (a.reshape(6, -1) > 0).double()
        expected += c @ c.t() + (1 - c) @ (1 - c).t()
    monkeypatch.setattr(NaswotKernel, "BLOCK", 4)       # several column blocks per activation
    k = NaswotKernel(6, "cpu")
    for a in acts:
        k.add(a)
    assert torch.equal(k.kernel, expected)
    with pytest.raises(ValueError, match="batch of 5"):
        k.add(torch.randn(5, 3))


def test_a_failing_proxy_is_reported_and_the_others_go_on(monkeypatch):
    net, (x, y) = darts(), data(classes=5)

    def broken(*args):
        raise RuntimeError("zen  broke")
    monkeypatch.setitem(PROXIES, "zen", broken)
    heard = []
    scores = score_proxies(net, [(x, y)], F.cross_entropy, PROXY_NAMES, seed=0,
                           on_score=lambda name, s: heard.append(name))
    assert sorted(heard) == sorted(PROXY_NAMES) and list(scores) == list(PROXY_NAMES)
    assert scores["zen"].value is None and scores["zen"].error == "RuntimeError: zen broke"
    assert all(s.error is None and math.isfinite(s.value) for n, s in scores.items() if n != "zen")
    with pytest.raises(RuntimeError, match="zen  broke"):
        compute_proxies(net, [(x, y)], F.cross_entropy, ["snip", "zen"])

    def no_loss(logits, targets):
        raise ValueError("no loss")
    scores = score_proxies(net, [(x, y)], no_loss, PROXY_NAMES, seed=0)   # the shared pass needs the loss
    failed = {n for n, s in scores.items() if s.error}
    assert failed == {"zen", *(GRADIENT_PASS - {"jacov", "naswot"})}
    assert all(scores[n].error == "ValueError: no loss" for n in GRADIENT_PASS - {"jacov", "naswot"})
    assert math.isfinite(scores["naswot"].value) and math.isfinite(scores["jacov"].value)
