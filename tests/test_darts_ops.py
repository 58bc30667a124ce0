import pytest
import torch

from search_spaces.darts.ops import PRIMITIVES, FactorizedReduce, build_op


def test_primitives_canonical_order():
    assert PRIMITIVES == ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                          "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")


@pytest.mark.parametrize("name", PRIMITIVES + ("sep_conv_7x7", "conv_7x1_1x7"))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [8, 7])
def test_op_shapes(name, stride, size):
    op = build_op(name, 6, stride, affine=False, pool_bn=True)
    y = op(torch.randn(2, 6, size, size))
    out = -(-size // stride)
    assert y.shape == (2, 6, out, out)


def test_op_definitions():
    sep = build_op("sep_conv_3x3", 4, 2, affine=True)
    convs = [m for m in sep.modules() if isinstance(m, torch.nn.Conv2d)]
    # two stacked (depthwise, pointwise) pairs, only the first depthwise is strided
    assert [c.groups for c in convs] == [4, 1, 4, 1]
    assert [c.stride for c in convs] == [(2, 2), (1, 1), (1, 1), (1, 1)]
    dil = build_op("dil_conv_5x5", 4, 1)
    dw = [m for m in dil.modules() if isinstance(m, torch.nn.Conv2d)][0]
    assert dw.dilation == (2, 2) and dw.kernel_size == (5, 5) and dw.padding == (4, 4)
    assert isinstance(build_op("skip_connect", 4, 2), FactorizedReduce)
    pool = build_op("max_pool_3x3", 4, 1, affine=False, pool_bn=True)
    bn = [m for m in pool.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bn) == 1 and not bn[0].affine
    for m in build_op("sep_conv_5x5", 4, 1, affine=False).modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert not m.affine


def test_none_is_zero_and_odd_channels_rejected():
    assert build_op("none", 3, 2)(torch.randn(1, 3, 5, 5)).abs().sum() == 0
    with pytest.raises(ValueError):
        FactorizedReduce(4, 5)


def _plain_phases(x):
    h, w = x.shape[-2:]
    return x[:, :, ::2, ::2], torch.nn.functional.pad(x[:, :, 1::2, 1::2], (0, w % 2, 0, h % 2))


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (3, 2, 7, 9)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_factorized_phases_match_plain_slicing(shape, channels_last):
    from search_spaces.darts.ops import factorized_phases
    x = torch.randn(*shape, dtype=torch.double, generator=torch.Generator().manual_seed(0))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = x.contiguous(memory_format=fmt).requires_grad_()
    ours, plain = factorized_phases(x), _plain_phases(x)
    for a, b in zip(ours, plain):
        assert torch.equal(a, b) and a.is_contiguous(memory_format=fmt)
    grads = [torch.randn_like(a) for a in ours]
    g_ours = torch.autograd.grad(ours, x, grads)[0]
    assert torch.equal(g_ours, torch.autograd.grad(plain, x, grads)[0])
    assert g_ours.is_contiguous(memory_format=fmt)
    assert torch.autograd.gradgradcheck(factorized_phases, (x,))   # grasp differentiates twice


def test_grad_channels_last_hands_on_gradients_in_the_input_format():
    from search_spaces.darts.ops import cat_channels, grad_channels_last
    x = torch.randn(2, 4, 5, 5, dtype=torch.double).contiguous(memory_format=torch.channels_last).requires_grad_()
    seen = {}
    y = x * 2
    y.register_hook(lambda g: seen.setdefault("grad", g))
    out = cat_channels([y, torch.randn(2, 3, 5, 5, dtype=torch.double).contiguous(memory_format=torch.channels_last)])
    out.backward(torch.ones_like(out))
    # plain torch.cat would hand y a strided channel slice of the gradient
    assert seen["grad"].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x.grad, torch.full_like(x, 2.0))
    nchw = torch.randn(2, 4, 5, 5)
    assert grad_channels_last(nchw) is nchw                 # nothing added for NCHW tensors
    assert torch.autograd.gradgradcheck(lambda t: cat_channels([t * t, t]), (x,))


@pytest.mark.parametrize("name", ["sep_conv_3x3", "dil_conv_5x5", "conv_7x1_1x7", "skip_connect"])
def test_after_relu_equals_forward(name):
    torch.manual_seed(0)
    op = build_op(name, 4, 2)
    x = torch.randn(2, 4, 9, 9)
    torch.testing.assert_close(op.after_relu(torch.relu(x)), op(x), rtol=0, atol=0)
