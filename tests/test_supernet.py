import torch

from search_spaces import get_space
from search_spaces.darts.stems import choose_stem, reduction_layers
from search_spaces.darts.supernet import SearchModel
from unnas.data import DataInfo
from unnas.tasks import build_task

INFO = DataInfo(num_classes=10, image_size=32, mean=(0.5,) * 3, std=(0.25,) * 3)


def _model(stem="cifar", depth=3, width=4, task="cls", single=False):
    space = get_space("darts")
    t = build_task(task, INFO)
    trunk = space.build_supernet(t.in_channels, width, depth, stem, single)
    return SearchModel(trunk, t.build_head(trunk.out_channels)), space.new_arch_parameters(), t


def test_stem_choice_and_reductions():
    assert choose_stem("auto", 32) == "cifar" and choose_stem("auto", 224) == "imagenet"
    assert reduction_layers(8) == (2, 5) and reduction_layers(12, single_reduction=True) == (4,)


def test_supernet_output_shapes_both_stems():
    model, arch, _ = _model("cifar", depth=3)
    assert model.trunk.cells[1].reduction and model.trunk.cells[2].reduction
    feats = model.trunk(torch.randn(2, 3, 32, 32), arch.weights())
    assert feats.shape == (2, 4 * 4 * 4, 8, 8)  # width 4 doubled twice, 4 nodes, /4 resolution
    assert model(torch.randn(2, 3, 32, 32), arch.weights()).shape == (2, 10)
    model, arch, _ = _model("imagenet", depth=3)
    feats = model.trunk(torch.randn(2, 3, 64, 64), arch.weights())
    assert feats.shape == (2, 64, 2, 2)  # stride 8 stem, two reductions -> /32
    model, arch, _ = _model("imagenet", depth=6, single=True)
    assert [i for i, c in enumerate(model.trunk.cells) if c.reduction] == [2]
    assert model.trunk(torch.randn(1, 3, 64, 64), arch.weights()).shape[-1] == 4  # output stride 16


def test_alphas_shape_init_and_separate_from_weights():
    model, arch, _ = _model()
    assert arch.alpha_normal.shape == (14, 8) and arch.alpha_reduce.shape == (14, 8)
    assert arch.alpha_normal.abs().max() < 1e-2 and arch.alpha_normal.std() > 1e-4
    weight_ids = {id(p) for p in model.parameters()}
    assert not any(id(p) in weight_ids for p in arch.parameters())
    # non-affine BN everywhere in the cells
    for m in model.trunk.cells.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert not m.affine
    assert sum(g.m for g in model.trunk.cells[0].groups) == 14  # edges, grouped by input state


def test_gradients_reach_both_alpha_tensors():
    for task in ("cls", "rot"):
        model, arch, t = _model(task=task)
        x, y = t.make_batch(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8), torch.tensor([1, 2]), True)
        t.loss(model(x, arch.weights()), y).backward()
        assert arch.alpha_normal.grad.abs().sum() > 0
        assert arch.alpha_reduce.grad.abs().sum() > 0
