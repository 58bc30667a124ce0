"""The per-data-set evaluation table (zoo.EVAL_SETTINGS) agrees with the paper recipes and eval_width."""
from pathlib import Path

import pytest

from search_spaces.darts import zoo
from unnas.config import load_cfg
from unnas.train import train_defaults, validate_train_cfg

ROOT = Path(__file__).resolve().parents[1]
# recipe -> the data set whose evaluation setting it is
PAPER_RECIPES = {"cifar10_darts.yaml": "cifar10", "imagenet_mobile.yaml": "imagenet",
                 "cityscapes_seg.yaml": "cityscapes"}


@pytest.mark.parametrize("recipe, dataset", PAPER_RECIPES.items())
def test_paper_recipe_agrees_with_table(recipe, dataset):
    cfg = load_cfg(train_defaults(), str(ROOT / "experiments" / "train" / recipe), [], validate_train_cfg)
    s = zoo.eval_setting(dataset)
    assert cfg.DATA.DATASET == dataset and cfg.TASK.NAME == s.task
    assert (cfg.MODEL.DEPTH, cfg.MODEL.STEM, cfg.MODEL.AUX) == (s.depth, s.stem, s.aux)
    # MODEL.WIDTH 0 means the genotype's own UnNAS width; the recipes' genotype (DARTS_V2) has the table's
    width = cfg.MODEL.WIDTH or zoo.eval_width(cfg.MODEL.GENOTYPE, dataset)
    assert width == s.width


def test_eval_width_reads_the_table():
    for name in zoo.names():
        assert zoo.eval_width(name, "cifar10") == zoo.EVAL_SETTINGS["cifar10"].width == 36
        assert zoo.eval_width(name, "cifar100") == 36
    assert zoo.eval_width("DARTS_V2", "imagenet") == zoo.EVAL_SETTINGS["imagenet"].width == 48
    assert zoo.eval_width("darts_v2", "cityscapes") == zoo.EVAL_SETTINGS["cityscapes"].width == 82
    assert zoo.eval_width("unnas_cityscapes_col", "cityscapes") == 86
    assert zoo.eval_width("PDARTS", "cityscapes") is None


def test_table_entries():
    assert sorted(zoo.EVAL_SETTINGS) == ["cifar10", "cityscapes", "imagenet"]
    c10, inet, city = (zoo.eval_setting(d) for d in ("cifar10", "imagenet", "cityscapes"))
    assert (c10.num_classes, c10.input_hw, c10.depth) == (10, (32, 32), 20)
    assert (inet.num_classes, inet.input_hw, inet.depth) == (1000, (224, 224), 14)
    assert (city.num_classes, city.input_hw, city.depth, city.aux) == (19, (1025, 2049), 12, False)
    with pytest.raises(KeyError, match="available: cifar10, imagenet, cityscapes"):
        zoo.eval_setting("mnist")
