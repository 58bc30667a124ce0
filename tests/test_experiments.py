"""Every shipped search config loads and validates (catches renamed keys and typos)."""
from pathlib import Path

import pytest

from unnas.config import load_cfg
from unnas.search.config import search_defaults, validate_search_cfg

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "experiments" / "search").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_search_config_loads(path):
    import yaml
    from unnas.tasks import TASKS
    task = yaml.safe_load(path.read_text())["TASK"]["NAME"]
    if task not in TASKS:
        pytest.skip(f"task {task} is not registered in this checkout")
    cfg = load_cfg(search_defaults(), str(path), [], validate_search_cfg)
    assert cfg.TASK.NAME in path.stem


def test_paper_hyper_parameters():
    cfg = load_cfg(search_defaults(), str(CONFIGS[0].parent / "imagenet_jig.yaml"), [], validate_search_cfg)
    assert (cfg.MODEL.WIDTH, cfg.MODEL.DEPTH, cfg.SEARCH.EPOCHS, cfg.SEARCH.ARCH_START_EPOCH) == (16, 8, 2, 1.0)
    assert (cfg.DATA.IM_SIZE, cfg.TASK.JIGSAW_GRID, cfg.SEARCH.BATCH_SIZE) == (255, 3, 32)
    cfg = load_cfg(search_defaults(), str(CONFIGS[0].parent / "cityscapes_rot.yaml"), [], validate_search_cfg)
    assert (cfg.MODEL.DEPTH, cfg.DATA.IM_SIZE, cfg.SEARCH.EPOCHS) == (12, 321, 400)


PAPER_SCALE = ["train/cifar10_darts.yaml", "train/imagenet_mobile.yaml", "train/cityscapes_seg.yaml",
               "study/cifar10_darts.yaml"]


@pytest.mark.parametrize("name", PAPER_SCALE)
def test_paper_scale_recipes_use_every_image(name):
    """The train and study defaults keep small image budgets (DATA.MAX_TRAIN 2048, MAX_TEST 1024) for
    quick runs; a paper-scale recipe that forgot to reset them trained on 2,048 images."""
    from unnas.study.config import study_defaults
    from unnas.train.config import train_defaults

    cfg = study_defaults() if name.startswith("study/") else train_defaults()
    cfg.merge_from_file(str(Path(__file__).resolve().parents[1] / "experiments" / name))
    assert cfg.DATA.MAX_TRAIN == 0 and cfg.DATA.MAX_TEST == 0, name
