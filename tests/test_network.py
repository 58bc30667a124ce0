"""Fixed-genotype networks and the genotype zoo."""
import json

import pytest
import torch

from search_spaces.darts import zoo
from search_spaces.darts.genotype import Genotype, GenotypeError
from search_spaces.darts.network import (AuxiliaryHeadCIFAR, AuxiliaryHeadImageNet, FixedCell, FixedNetwork,
                                         FixedTrunk, build_cifar_network, build_imagenet_network,
                                         build_network, build_segmentation_network, count_params, drop_path,
                                         set_drop_prob)
from search_spaces.darts.ops import Identity, Zero


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py


def _main_params(net):
    """Parameters without the auxiliary head: DARTS' count_parameters_in_MB convention."""
    return count_params(net) - count_params(net.aux_head)


def test_darts_v2_cifar10_param_count():
    # DARTS (second order) CIFAR-10: 3.3M published; DARTS counts parameters without the aux head.
    net = build_cifar_network(zoo.get("DARTS_V2"), num_classes=10, width=36, depth=20, auxiliary=True)
    assert _main_params(net) == 3_349_342
    assert round(_main_params(net) / 1e6, 1) == 3.3
    assert count_params(net.aux_head) > 0


def test_darts_v2_imagenet_mobile_param_count():
    # DARTS ImageNet mobile setting (width 48, depth 14, 1000 classes): 4.7M published, aux excluded.
    net = build_imagenet_network(zoo.get("darts_v2"), num_classes=1000, width=48, depth=14, auxiliary=True)
    assert _main_params(net) == 4_718_752
    assert round(_main_params(net) / 1e6, 1) == 4.7


def test_cifar_shapes_and_aux_train_vs_eval():
    net = build_cifar_network(zoo.get("DARTS_V2"), num_classes=7, width=8, depth=5, auxiliary=True)
    x = torch.randn(3, 3, 32, 32)
    net.train()
    logits, aux = net(x)
    assert logits.shape == (3, 7) and aux.shape == (3, 7)
    assert isinstance(net.aux_head, AuxiliaryHeadCIFAR)
    net.eval()
    out = net(x)
    assert isinstance(out, torch.Tensor) and out.shape == (3, 7)
    # aux head is fed by cell 2*depth//3 (after the second reduction: 8x8 for 32-px inputs)
    feats, aux_feats = net.trunk.forward_with_aux(x, need_aux=True)
    assert aux_feats.shape[-2:] == (8, 8) and aux_feats.shape[1] == net.trunk.aux_channels
    assert feats.shape[-2:] == (8, 8)


def test_imagenet_shapes_and_aux_head_without_final_bn():
    net = build_imagenet_network(zoo.get("DARTS_V2"), num_classes=5, width=8, depth=5, auxiliary=True)
    assert isinstance(net.aux_head, AuxiliaryHeadImageNet)
    bns = [m for m in net.aux_head.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 1  # only after the 128-channel conv
    x = torch.randn(2, 3, 64, 64)
    net.train()
    logits, aux = net(x)
    assert logits.shape == (2, 5) and aux.shape == (2, 5)
    feats = net.trunk(x)
    assert feats.shape[-2:] == (2, 2)  # stride 8 stem x 2 reductions = 32
    net.eval()
    assert net(x).shape == (2, 5)


def test_segmentation_network_output_stride_16():
    net = build_segmentation_network(zoo.get("UNNAS_CITYSCAPES_SEG"), num_classes=19, width=8, depth=4,
                                     aspp_channels=16)
    assert net.trunk.reductions == (1,)
    net.eval()
    x = torch.randn(1, 3, 65, 97)
    feats = net.trunk(x)
    assert feats.shape[-2:] == (5, 7)  # ceil(65/16), ceil(97/16)
    out = net(x)
    assert out.shape == (1, 19, 65, 97)
    aspp = net.head.aspp
    assert len(aspp.branches) == 4  # 1x1 + rates 6, 12, 18 (plus the image-pooling branch)
    assert aspp.project[0].in_channels == 16 * 5


def test_drop_path_statistics_and_identity_exempt():
    torch.manual_seed(0)
    x = torch.ones(4000, 2, 1, 1)
    y = drop_path(x, 0.3)
    kept = (y[:, 0, 0, 0] > 0).float().mean().item()
    assert abs(kept - 0.7) < 0.03
    assert torch.allclose(y[y > 0], torch.full_like(y[y > 0], 1 / 0.7))
    assert drop_path(x, 0.0) is x
    # identity edges are never dropped; eval mode never drops
    g = Genotype([("skip_connect", 0), ("skip_connect", 1)] * 1 + [("sep_conv_3x3", 0), ("skip_connect", 2)],
                 [2, 3], [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("none", 0)], [2, 3])
    cell = FixedCell(g, 4, 4, 4, reduction=False, reduction_prev=False)
    assert [isinstance(op, Identity) for op in cell.ops] == [True, True, False, True]
    assert cell._droppable == (False, False, True, False)


def test_drop_path_train_vs_eval_and_schedule():
    net = build_cifar_network(zoo.get("DARTS_V2"), num_classes=4, width=8, depth=3, auxiliary=False)
    x = torch.randn(4, 3, 16, 16)
    net.eval()
    set_drop_prob(net, 0.5)
    a, b = net(x), net(x)
    assert torch.equal(a, b)  # no drop-path in eval mode
    net.train()
    torch.manual_seed(1)
    c = net(x)
    torch.manual_seed(2)
    d = net(x)
    assert not torch.allclose(c, d)  # stochastic in training
    set_drop_prob(net, 0.0)
    torch.manual_seed(3)
    e = net(x)
    torch.manual_seed(4)
    f = net(x)
    assert torch.allclose(e, f)  # deterministic without drop-path (BN uses batch statistics)
    assert net.trunk.drop_prob == 0.0


def test_zero_edges_and_repeated_inputs():
    g = Genotype([("none", 0), ("none", 1), ("sep_conv_3x3", 1), ("sep_conv_5x5", 1),
                  ("none", 2), ("dil_conv_3x3", 3), ("skip_connect", 0), ("skip_connect", 0)], [2, 3, 4, 5],
                 [("none", 0), ("max_pool_3x3", 0), ("none", 2), ("avg_pool_3x3", 1),
                  ("skip_connect", 3), ("skip_connect", 3), ("none", 1), ("none", 4)], [2, 3, 4, 5])
    net = build_cifar_network(g, num_classes=3, width=4, depth=3, auxiliary=True)
    assert any(isinstance(m, Zero) for m in net.modules())
    net.train()
    logits, aux = net(torch.randn(2, 3, 16, 16))
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    logits.sum().backward()


@pytest.mark.parametrize("name", zoo.names())
def test_every_zoo_genotype_builds(name):
    g = zoo.get(name)
    builders = [(build_cifar_network, 8)]
    if g.steps != 4:  # the 5-node cells also through the ImageNet stem
        builders.append((build_imagenet_network, 32))
    for builder, size in builders:
        net = builder(g, num_classes=3, width=4, depth=3, auxiliary=True)
        net.train()
        logits, aux = net(torch.randn(2, 3, size, size))
        assert logits.shape == (2, 3) and aux.shape == (2, 3)
        # multiplier follows the concat (NASNet/AmoebaNet have 3 or 5 concatenated states)
        last = net.trunk.cells[-1]
        assert last.multiplier == len(g.reduce_concat if last.reduction else g.normal_concat)


def test_zoo_names_aliases_and_widths():
    assert len(zoo.names()) >= 19
    for key in ("darts_v1", "darts_v2", "pdarts", "pcdarts_c10", "pcdarts_in1k", "nas", "amoeba", "pnas",
                "unnas_imagenet_rot", "unnas_imagenet22k_col", "unnas_cityscapes_seg", "UNNAS_CITYSCAPES_JIG",
                "Darts_V2", "PC_DARTS_cifar", "PC_DARTS_image", "NASNet", "AmoebaNet"):
        assert isinstance(zoo.get(key), Genotype), key
    assert zoo.get("pcdarts_c10") == zoo.get("PC_DARTS_CIFAR")
    unnas = [n for n in zoo.names() if n.startswith("UNNAS_")]
    assert len(unnas) == 12
    cls_widths = [zoo.eval_width(n, "imagenet") for n in
                  ["DARTS_V2"] + [f"UNNAS_{d}_{t}" for d in ("IMAGENET", "IMAGENET22K") for t in ("CLS", "ROT", "COL", "JIG")]
                  + [f"UNNAS_CITYSCAPES_{t}" for t in ("SEG", "ROT", "COL", "JIG")]]
    assert cls_widths == [48, 44, 42, 46, 42, 46, 42, 42, 42, 44, 42, 54, 44]
    seg_widths = [zoo.eval_width(n, "cityscapes") for n in
                  ["DARTS_V2"] + [f"UNNAS_{d}_{t}" for d in ("IMAGENET", "IMAGENET22K") for t in ("CLS", "ROT", "COL", "JIG")]
                  + [f"UNNAS_CITYSCAPES_{t}" for t in ("SEG", "ROT", "COL", "JIG")]]
    assert seg_widths == [82, 78, 78, 80, 78, 80, 78, 78, 78, 80, 78, 86, 80]
    assert zoo.eval_width("PDARTS", "imagenet") is None
    assert zoo.eval_width("PDARTS", "cifar10") == 36


def test_zoo_spot_checks_against_published_cells():
    v2 = zoo.get("DARTS_V2")
    assert v2.normal[-1] == ("dil_conv_3x3", 2) and v2.reduce[0] == ("max_pool_3x3", 0)
    nas = zoo.get("NASNet")
    assert nas.steps == 5 and nas.reduce_concat == (4, 5, 6) and ("sep_conv_7x7", 0) in nas.reduce
    amoeba = zoo.get("AmoebaNet")
    assert amoeba.reduce[-2] == ("conv_7x1_1x7", 0) and amoeba.reduce_concat == (3, 4, 6)
    col = zoo.get("unnas_cityscapes_col")
    assert col.reduce == (("avg_pool_3x3", 1), ("avg_pool_3x3", 0)) * 3 + (("avg_pool_3x3", 1), ("skip_connect", 4))


def test_resolve_genotype_name_file_string(tmp_path):
    g = zoo.get("PDARTS")
    assert zoo.resolve_genotype("pdarts") == g
    assert zoo.resolve_genotype(g) is g
    assert zoo.resolve_genotype(repr(g)) == g
    assert zoo.resolve_genotype(g.to_json()) == g
    p = tmp_path / "g.json"
    g.save(p)
    assert zoo.resolve_genotype(str(p)) == g
    t = tmp_path / "g.txt"
    t.write_text(repr(g) + "\n")
    assert zoo.resolve_genotype(str(t)) == g
    s = tmp_path / "summary.json"
    s.write_text(json.dumps({"genotype": g.to_dict(), "task": "rot"}))
    assert zoo.resolve_genotype(str(s)) == g
    # the release's range(2, 6) concat form
    text = repr(g).replace("normal_concat=[2, 3, 4, 5]", "normal_concat=range(2, 6)")
    assert "range(2, 6)" in text and zoo.resolve_genotype(text) == g


def test_resolve_genotype_errors_list_zoo_names(tmp_path):
    with pytest.raises(GenotypeError) as e:
        zoo.resolve_genotype("DARTS_V3")
    msg = str(e.value)
    assert "DARTS_V2" in msg and "UNNAS_IMAGENET_ROT" in msg and "\n" not in msg
    with pytest.raises(GenotypeError):
        zoo.resolve_genotype("")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(GenotypeError):
        zoo.resolve_genotype(str(bad))
    with pytest.raises(GenotypeError):
        zoo.resolve_genotype("Genotype(normal=[('warp_conv', 0)], normal_concat=[2], reduce=[], reduce_concat=[])")


def test_generic_builder_with_task_head():
    from unnas.data import DataInfo
    from unnas.tasks import build_task
    info = DataInfo(num_classes=10, image_size=16, mean=(0.5,) * 3, std=(0.25,) * 3)
    task = build_task("rot", info)
    net = build_network(zoo.get("DARTS_V2"), task.build_head, task.num_outputs, task.in_channels, 4, 3, "cifar",
                        task.single_reduction, auxiliary=False)
    assert isinstance(net, FixedNetwork) and isinstance(net.trunk, FixedTrunk)
    x, y = task.make_batch(torch.randint(0, 255, (2, 3, 16, 16), dtype=torch.uint8), None, True)
    net.eval()
    assert net(x).shape == (8, 4)
