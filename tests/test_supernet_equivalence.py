"""Our fast supernet computes exactly the textbook DARTS (and PC-DARTS) supernet.

``benchmarks/textbook_supernet.py`` is the plain formulation (one module per edge and op, ``none``
included, fp32, NCHW). From the same weights both must give the same outputs, the same gradients
for every weight and both alpha (and beta) tensors, the same BN running statistics, and the same
eval-mode outputs afterwards.
"""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from search_spaces.darts.supernet import ArchParameters, SupernetTrunk  # noqa: E402
from textbook_supernet import TextbookTrunk, load_from_ours, textbook_state_from_ours  # noqa: E402

def _close(a, b, what):
    """Equal up to float32 summation-order noise, relative to the tensor's scale (gradients of
    early layers reach the hundreds, where 1e-4 absolute is below float resolution)."""
    scale = float(b.abs().max()) + 1.0
    err = float((a.float() - b.float()).abs().max())
    assert err <= 1e-4 * scale + 1e-5, f"{what}: max |diff| {err:.3g} at scale {scale:.3g}"


def _pair(width, depth, stem="cifar", single_reduction=False, partial=1, channels_last=False, in_ch=3):
    torch.manual_seed(0)
    ours = SupernetTrunk(in_ch, width, depth, stem, single_reduction, partial_channels=partial)
    textbook = TextbookTrunk(in_ch, width, depth, stem, single_reduction, partial_channels=partial)
    load_from_ours(textbook, ours.state_dict())
    if channels_last:
        ours.use_channels_last()
    return ours, textbook


def _run(model, arch, x):
    arch.zero_grad(set_to_none=True)
    model.zero_grad(set_to_none=True)
    y = model(x, arch.weights())
    probe = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))   # a generic upstream gradient
    (y * probe).sum().backward()
    return y.detach(), {n: p.grad.clone() for n, p in arch.named_parameters()}


def _check(ours, textbook, arch, x):
    y_t, ga_t = _run(textbook, arch, x)
    y_o, ga_o = _run(ours, arch, x)
    _close(y_o, y_t, "output")
    for name in ga_t:
        _close(ga_o[name], ga_t[name], f"gradient of {name}")
    # every weight gradient, mapped into the textbook layout
    our_grads = textbook_state_from_ours({n: p.grad for n, p in ours.named_parameters()})
    tb_grads = {n: p.grad for n, p in textbook.named_parameters()}
    assert set(our_grads) == set(tb_grads)
    for name, g in tb_grads.items():
        _close(our_grads[name], g, f"gradient of {name}")
    # running statistics (both ran the same forwards) and then eval-mode outputs
    ours_state = textbook_state_from_ours(ours.state_dict())
    for name, t in textbook.state_dict().items():
        _close(ours_state[name], t, name)
    ours.eval(), textbook.eval()
    with torch.no_grad():
        _close(ours(x, arch.weights()), textbook(x, arch.weights()), "eval-mode output")


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("stem,single_reduction,size", [("cifar", False, 16), ("imagenet", True, 32)])
def test_darts_supernet_matches_textbook(channels_last, stem, single_reduction, size):
    ours, textbook = _pair(4, 3, stem, single_reduction, channels_last=channels_last)
    arch = ArchParameters(generator=torch.Generator().manual_seed(3))
    with torch.no_grad():                     # spread the alphas so every op matters differently
        arch.alpha_normal.normal_(0, 1), arch.alpha_reduce.normal_(0, 1)
    _check(ours, textbook, arch, torch.randn(3, 3, size, size))


def test_odd_input_size_matches_textbook():
    # strided dilated convs are computed on the even pixels: odd sizes must still agree
    ours, textbook = _pair(4, 3)
    _check(ours, textbook, ArchParameters(), torch.randn(2, 3, 15, 15))


@pytest.mark.parametrize("channels_last", [False, True])
def test_pc_darts_matches_textbook(channels_last):
    ours, textbook = _pair(8, 3, partial=4, channels_last=channels_last)
    arch = ArchParameters(edge_normalization=True, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        for p in arch.parameters():
            p.normal_(0, 1)
    _check(ours, textbook, arch, torch.randn(3, 3, 16, 16))


def test_channels_last_is_faithful_to_an_expanded_bn_scale():
    # torch's channels-last batch_norm backward gets grad_weight wrong for a stride-0 (expanded)
    # weight; our per-edge BN scale must therefore be materialised. Guard it directly.
    x = torch.randn(4, 3, 5, 5).contiguous(memory_format=torch.channels_last)
    w = torch.tensor(0.7, requires_grad=True)
    y = torch.nn.functional.batch_norm(x, None, None, w.expand(3).contiguous(), None, True)
    (y * torch.arange(y.numel()).view_as(y)).sum().backward()
    ref_w = torch.tensor(0.7, requires_grad=True)
    y_ref = torch.nn.functional.batch_norm(x.contiguous(), None, None, ref_w.expand(3).contiguous(), None, True)
    (y_ref * torch.arange(y.numel()).view_as(y)).sum().backward()
    torch.testing.assert_close(w.grad, ref_w.grad)


def test_edge_normalisation_weights_derivation():
    arch = ArchParameters(edge_normalization=True)
    with torch.no_grad():
        arch.alpha_normal.zero_()
        arch.alpha_normal[:, 4] = 1.0             # sep_conv_3x3 leads on every edge ...
        arch.alpha_normal[2, 7] = 5.0             # ... but node 1 <- s0 (row 2) has the strongest op
        arch.beta_normal.zero_()
        arch.beta_normal[2] = -10.0               # and edge normalisation almost switches that edge off
    w = arch.weights()
    torch.testing.assert_close(w.normal_edges[:2].sum(), torch.tensor(1.0))     # softmax per node
    torch.testing.assert_close(w.normal_edges[2:5].sum(), torch.tensor(1.0))
    assert {j for _, j in arch.genotype().normal[2:4]} == {1, 2}
    plain = ArchParameters()
    with torch.no_grad():
        plain.alpha_normal.copy_(arch.alpha_normal)
    assert plain.genotype().normal[2] == ("dil_conv_5x5", 0)
