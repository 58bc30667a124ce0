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
