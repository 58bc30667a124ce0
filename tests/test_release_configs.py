"""The UnNAS release's YAML configs read as they are (unnas/release_config.py): translation key by key,
the notice, one-line errors for what has no equivalent, the RNG_SEED alias, and the tools' use of it."""
import importlib
import sys
from pathlib import Path

import pytest

from search_spaces.darts import zoo
from search_spaces.darts.genotype import Genotype
from unnas import release_config as rc
from unnas.config import ConfigError, config_diff, load_cfg
from unnas.search.config import search_defaults, validate_search_cfg
from unnas.study.config import study_defaults
from unnas.train.config import train_defaults, validate_train_cfg

ROOT = Path(__file__).resolve().parents[1]

# Release configs as shipped (reference doc sections 6.1 and 7; key order as in the release files).
SEARCH_IMAGENET_JIG = """\
MODEL:
  TYPE: nas_search
  NUM_CLASSES: 1000
NAS:
  WIDTH: 16
  DEPTH: 8
OPTIM:
  BASE_LR: 0.05
  LR_POLICY: cos
  MAX_EPOCH: 2
  MOMENTUM: 0.9
  NESTEROV: False
  WEIGHT_DECAY: 0.00003
  ITER_LR: False
  ARCH_BASE_LR: 0.00015
  ARCH_WEIGHT_DECAY: 0.001
  ARCH_EPOCH: 1.0
TRAIN:
  DATASET: imagenet
  SPLIT: train
  BATCH_SIZE: 32
  IM_SIZE: 255
  EVAL_PERIOD: 1
  PORTION: 0.5
  GRAY_PERCENTAGE: 0.3
TEST:
  BATCH_SIZE: 32
  IM_SIZE: 256
TASK: jig
NUM_GPUS: 1
DATA_LOADER:
  NUM_WORKERS: 4
CUDNN:
  BENCHMARK: True
OUT_DIR: .
"""

SEARCH_CITYSCAPES_SEG = """\
MODEL:
  TYPE: nas_search
  NUM_CLASSES: 19
  ASPP_CHANNELS: 64
  ASPP_RATES: [6]
NAS:
  WIDTH: 16
  DEPTH: 12
OPTIM:
  BASE_LR: 0.1
  LR_POLICY: cos
  MAX_EPOCH: 400
  MOMENTUM: 0.9
  NESTEROV: False
  WEIGHT_DECAY: 0.0003
  ITER_LR: False
  ARCH_BASE_LR: 0.0003
  ARCH_WEIGHT_DECAY: 0.001
TRAIN:
  DATASET: cityscapes
  SPLIT: train
  BATCH_SIZE: 32
  IM_SIZE: 321
  CHECKPOINT_PERIOD: 10
  EVAL_PERIOD: 1
  PORTION: 0.5
TEST:
  BATCH_SIZE: 32
  IM_SIZE: 512
TASK: seg
NUM_GPUS: 1
DATA_LOADER:
  NUM_WORKERS: 4
CUDNN:
  BENCHMARK: True
OUT_DIR: .
"""

EVAL_CLS_IMAGENET_ROT = """\
MODEL:
  TYPE: nas
  NUM_CLASSES: 1000
  LOSS_FUN: label_smoothed_cross_entropy
  LABEL_SMOOTHING_EPS: 0.1
NAS:
  GENOTYPE: unnas_imagenet_rot
  WIDTH: 42
  DEPTH: 14
  AUX: True
  DROP_PROB: 0.0
OPTIM:
  BASE_LR: 0.5
  LR_POLICY: cos
  MAX_EPOCH: 250
  MOMENTUM: 0.9
  NESTEROV: True
  WEIGHT_DECAY: 0.00003
  WARMUP_EPOCHS: 5
TRAIN:
  DATASET: imagenet
  SPLIT: train
  BATCH_SIZE: 1024
  IM_SIZE: 224
  CHECKPOINT_PERIOD: 10
  EVAL_PERIOD: 1
TEST:
  DATASET: imagenet
  SPLIT: val
  BATCH_SIZE: 1000
  IM_SIZE: 256
NUM_GPUS: 8
DATA_LOADER:
  NUM_WORKERS: 4
CUDNN:
  BENCHMARK: True
OUT_DIR: .
"""

CUSTOM_00004 = [
    [["avg_pool_3x3", 1], ["sep_conv_3x3", 1], ["sep_conv_5x5", 1], ["dil_conv_5x5", 1], ["none", 0],
     ["dil_conv_3x3", 2], ["dil_conv_3x3", 2], ["sep_conv_3x3", 1]], [2, 3, 4, 5],
    [["sep_conv_3x3", 0], ["dil_conv_3x3", 0], ["skip_connect", 0], ["dil_conv_3x3", 0], ["none", 1],
     ["dil_conv_5x5", 1], ["dil_conv_3x3", 4], ["skip_connect", 4]], [2, 3, 4, 5]]

SAMPLE_DARTS_CIFAR10_ROT_00004 = """\
MODEL:
  TYPE: nas
  NUM_CLASSES: 4
NAS:
  GENOTYPE: custom
  CUSTOM_GENOTYPE:
  - - [avg_pool_3x3, 1]
    - [sep_conv_3x3, 1]
    - [sep_conv_5x5, 1]
    - [dil_conv_5x5, 1]
    - [none, 0]
    - [dil_conv_3x3, 2]
    - [dil_conv_3x3, 2]
    - [sep_conv_3x3, 1]
  - [2, 3, 4, 5]
  - - [sep_conv_3x3, 0]
    - [dil_conv_3x3, 0]
    - [skip_connect, 0]
    - [dil_conv_3x3, 0]
    - [none, 1]
    - [dil_conv_5x5, 1]
    - [dil_conv_3x3, 4]
    - [skip_connect, 4]
  - [2, 3, 4, 5]
  WIDTH: 16
  DEPTH: 20
BN:
  USE_PRECISE_STATS: True
  NUM_SAMPLES_PRECISE: 1024
OPTIM:
  BASE_LR: 0.025
  LR_POLICY: cos
  MAX_EPOCH: 100
  MOMENTUM: 0.9
  NESTEROV: True
  WEIGHT_DECAY: 0.0005
TRAIN:
  DATASET: cifar10
  SPLIT: train
  BATCH_SIZE: 32
  IM_SIZE: 32
  CHECKPOINT_PERIOD: 10
  EVAL_PERIOD: 1
TEST:
  DATASET: cifar10
  SPLIT: test
  BATCH_SIZE: 50
  IM_SIZE: 32
TASK: rot
NUM_GPUS: 1
DATA_LOADER:
  NUM_WORKERS: 4
CUDNN:
  BENCHMARK: False
OUT_DIR: .
"""


@pytest.fixture(autouse=True)
def _fresh_notices():
    rc._SHOWN.clear()
    yield
    rc._SHOWN.clear()


def _write(tmp_path, text, name="release.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _leaves(cfg, keys):
    out = {}
    for k in keys:
        node = cfg
        for part in k.split("."):
            node = node[part]
        out[k] = list(node) if isinstance(node, (list, tuple)) else node
    return out


def test_detection(tmp_path):
    import yaml
    for text in (SEARCH_IMAGENET_JIG, SEARCH_CITYSCAPES_SEG, EVAL_CLS_IMAGENET_ROT, SAMPLE_DARTS_CIFAR10_ROT_00004):
        assert rc.is_release_config(yaml.safe_load(text))
    ours = yaml.safe_load((ROOT / "experiments/search/imagenet_jig.yaml").read_text())
    assert not rc.is_release_config(ours)
    assert not rc.is_release_config({"RNG_SEED": 2, "SEARCH": {"EPOCHS": 1}})   # the alias alone is not a marker


def test_search_phase_imagenet_jig(tmp_path, capsys):
    cfg = load_cfg(search_defaults(), _write(tmp_path, SEARCH_IMAGENET_JIG), [], validate_search_cfg)
    assert _leaves(cfg, [
        "TASK.NAME", "TASK.JIGSAW_GRID", "TASK.JIGSAW_NUM_PERMS", "TASK.GRAY_PROB", "MODEL.WIDTH", "MODEL.DEPTH",
        "MODEL.STEM", "OPTIM.LR", "OPTIM.LR_MIN", "OPTIM.MOMENTUM", "OPTIM.NESTEROV", "OPTIM.WEIGHT_DECAY",
        "OPTIM.ITER_LR", "ARCH.LR", "ARCH.WEIGHT_DECAY", "ARCH.OPTIMIZER", "SEARCH.ARCH_START_EPOCH",
        "SEARCH.EPOCHS", "SEARCH.BATCH_SIZE", "SEARCH.PORTION", "SEARCH.EVAL_PERIOD", "SEARCH.STEPS_PER_EPOCH",
        "SEARCH.EVAL_BATCHES", "DATA.DATASET", "DATA.IM_SIZE", "DATA.TEST_IM_SIZE", "DATA.NUM_WORKERS"]) == {
        "TASK.NAME": "jig", "TASK.JIGSAW_GRID": 3, "TASK.JIGSAW_NUM_PERMS": 1000, "TASK.GRAY_PROB": 0.3,
        "MODEL.WIDTH": 16, "MODEL.DEPTH": 8, "MODEL.STEM": "imagenet", "OPTIM.LR": 0.05, "OPTIM.LR_MIN": 0.0,
        "OPTIM.MOMENTUM": 0.9, "OPTIM.NESTEROV": False, "OPTIM.WEIGHT_DECAY": 3e-5, "OPTIM.ITER_LR": False,
        "ARCH.LR": 1.5e-4, "ARCH.WEIGHT_DECAY": 1e-3, "ARCH.OPTIMIZER": "adam", "SEARCH.ARCH_START_EPOCH": 1.0,
        "SEARCH.EPOCHS": 2, "SEARCH.BATCH_SIZE": 32, "SEARCH.PORTION": 0.5, "SEARCH.EVAL_PERIOD": 1,
        "SEARCH.STEPS_PER_EPOCH": 0, "SEARCH.EVAL_BATCHES": 0, "DATA.DATASET": "imagenet", "DATA.IM_SIZE": 255,
        "DATA.TEST_IM_SIZE": 256, "DATA.NUM_WORKERS": 4}
    err = capsys.readouterr().err
    assert "UnNAS release config (MODEL.TYPE nas_search), translated for tools/search.py:" in err
    for line in ("  OPTIM.BASE_LR 0.05 -> OPTIM.LR 0.05", "  OPTIM.ARCH_EPOCH 1.0 -> SEARCH.ARCH_START_EPOCH 1.0",
                 "  MODEL.NUM_CLASSES 1000 -> TASK.JIGSAW_NUM_PERMS 1000", "  TASK jig -> TASK.NAME jig",
                 "  TRAIN.GRAY_PERCENTAGE 0.3 -> TASK.GRAY_PROB 0.3", "  TRAIN.PORTION 0.5 -> SEARCH.PORTION 0.5"):
        assert line + "\n" in err or line + " " in err, line
    assert "release defaults for keys the file leaves out: JIGSAW_GRID 3 -> TASK.JIGSAW_GRID 3" in err
    assert "ignored (no effect here): " in err and "NUM_GPUS 1" in err and "CUDNN.BENCHMARK True" in err
    assert "OUT_DIR ." in err and "pass --data-dir" in err
    # the same recipe as our hand-written experiments/search/imagenet_jig.yaml
    ours = load_cfg(search_defaults(), str(ROOT / "experiments/search/imagenet_jig.yaml"))
    assert set(config_diff(ours, cfg)) <= {"DATA.ROOT", "OUT_DIR", "DATA.NUM_WORKERS"}


def test_search_phase_cityscapes_seg(tmp_path, capsys):
    cfg = load_cfg(search_defaults(), _write(tmp_path, SEARCH_CITYSCAPES_SEG), [], validate_search_cfg)
    assert _leaves(cfg, ["TASK.NAME", "TASK.SEG_ASPP_CHANNELS", "TASK.SEG_ASPP_RATES", "MODEL.DEPTH", "SEARCH.EPOCHS",
                         "SEARCH.BATCH_SIZE", "SEARCH.ARCH_START_EPOCH", "OPTIM.LR", "OPTIM.WEIGHT_DECAY", "ARCH.LR",
                         "DATA.DATASET", "DATA.IM_SIZE", "DATA.TEST_IM_SIZE"]) == {
        "TASK.NAME": "seg", "TASK.SEG_ASPP_CHANNELS": 64, "TASK.SEG_ASPP_RATES": [6], "MODEL.DEPTH": 12,
        "SEARCH.EPOCHS": 400, "SEARCH.BATCH_SIZE": 32, "SEARCH.ARCH_START_EPOCH": 0.0, "OPTIM.LR": 0.1,
        "OPTIM.WEIGHT_DECAY": 3e-4, "ARCH.LR": 3e-4, "DATA.DATASET": "cityscapes", "DATA.IM_SIZE": 321,
        "DATA.TEST_IM_SIZE": 512}
    err = capsys.readouterr().err
    assert "MODEL.NUM_CLASSES 19: consistent (task seg derives 19 outputs)" in err
    assert "TRAIN.CHECKPOINT_PERIOD 10 (we checkpoint every epoch)" in err
    ours = load_cfg(search_defaults(), str(ROOT / "experiments/search/cityscapes_seg.yaml"))
    assert set(config_diff(ours, cfg)) <= {"DATA.ROOT", "OUT_DIR"}


def test_eval_phase_cls(tmp_path, capsys):
    cfg = load_cfg(train_defaults(), _write(tmp_path, EVAL_CLS_IMAGENET_ROT), [], validate_train_cfg)
    assert _leaves(cfg, [
        "MODEL.GENOTYPE", "MODEL.WIDTH", "MODEL.DEPTH", "MODEL.AUX", "MODEL.AUX_WEIGHT", "MODEL.DROP_PATH",
        "OPTIM.LABEL_SMOOTHING", "OPTIM.LR", "OPTIM.SCHEDULE", "OPTIM.LR_MIN", "OPTIM.NESTEROV", "OPTIM.WEIGHT_DECAY",
        "OPTIM.WARMUP_EPOCHS", "OPTIM.WARMUP_FACTOR", "OPTIM.GRAD_CLIP", "TRAIN.EPOCHS", "TRAIN.BATCH_SIZE",
        "TRAIN.TEST_BATCH_SIZE", "TASK.NAME", "DATA.DATASET", "DATA.IM_SIZE", "DATA.TEST_IM_SIZE", "DATA.MAX_TRAIN",
        "DATA.MAX_TEST"]) == {
        "MODEL.GENOTYPE": "UNNAS_IMAGENET_ROT", "MODEL.WIDTH": 42, "MODEL.DEPTH": 14, "MODEL.AUX": True,
        "MODEL.AUX_WEIGHT": 0.4, "MODEL.DROP_PATH": 0.0, "OPTIM.LABEL_SMOOTHING": 0.1, "OPTIM.LR": 0.5,
        "OPTIM.SCHEDULE": "cos", "OPTIM.LR_MIN": 0.0, "OPTIM.NESTEROV": True, "OPTIM.WEIGHT_DECAY": 3e-5,
        "OPTIM.WARMUP_EPOCHS": 5, "OPTIM.WARMUP_FACTOR": 0.1, "OPTIM.GRAD_CLIP": 0.0, "TRAIN.EPOCHS": 250,
        "TRAIN.BATCH_SIZE": 1024, "TRAIN.TEST_BATCH_SIZE": 1000, "TASK.NAME": "cls", "DATA.DATASET": "imagenet",
        "DATA.IM_SIZE": 224, "DATA.TEST_IM_SIZE": 256, "DATA.MAX_TRAIN": 0, "DATA.MAX_TEST": 0}
    err = capsys.readouterr().err
    assert "NAS.GENOTYPE unnas_imagenet_rot -> MODEL.GENOTYPE UNNAS_IMAGENET_ROT" in err
    assert "OPTIM.GRAD_CLIP 0.0 (the release's trainer does not clip)" in err
    ours = load_cfg(train_defaults(), str(ROOT / "experiments/train/imagenet_mobile.yaml"),
                    ["MODEL.GENOTYPE", "UNNAS_IMAGENET_ROT", "MODEL.WIDTH", "42"])
    assert set(config_diff(ours, cfg)) <= {"DATA.ROOT", "OUT_DIR"}


def test_sample_based_custom_genotype_train_and_study(tmp_path, capsys):
    path = _write(tmp_path, SAMPLE_DARTS_CIFAR10_ROT_00004, "00004.yaml")
    cfg = load_cfg(train_defaults(), path, [], validate_train_cfg)
    assert zoo.resolve_genotype(cfg.MODEL.GENOTYPE) == Genotype.from_unnas_list(CUSTOM_00004)
    assert _leaves(cfg, ["TASK.NAME", "MODEL.WIDTH", "MODEL.DEPTH", "MODEL.STEM", "MODEL.AUX", "OPTIM.LR",
                         "TRAIN.EPOCHS", "TRAIN.BATCH_SIZE", "TRAIN.TEST_BATCH_SIZE", "OPTIM.WEIGHT_DECAY",
                         "OPTIM.LABEL_SMOOTHING", "DATA.DATASET"]) == {
        "TASK.NAME": "rot", "MODEL.WIDTH": 16, "MODEL.DEPTH": 20, "MODEL.STEM": "cifar", "MODEL.AUX": False,
        "OPTIM.LR": 0.025, "TRAIN.EPOCHS": 100, "TRAIN.BATCH_SIZE": 32, "TRAIN.TEST_BATCH_SIZE": 50,
        "OPTIM.WEIGHT_DECAY": 5e-4, "OPTIM.LABEL_SMOOTHING": 0.0, "DATA.DATASET": "cifar10"}
    err = capsys.readouterr().err
    assert "MODEL.NUM_CLASSES 4: consistent (task rot derives 4 outputs)" in err
    assert "NAS.GENOTYPE + NAS.CUSTOM_GENOTYPE (8 + 8 ops) -> MODEL.GENOTYPE Genotype(" in err
    assert "BN.USE_PRECISE_STATS True, BN.NUM_SAMPLES_PRECISE 1024 -> TRAIN.PRECISE_BN_IMAGES 1024" in err
    assert cfg.TRAIN.PRECISE_BN_IMAGES == 1024 and "not reproduced" not in err
    # the study: rot's per-task keys go to its recipe, RNG_SEED to STUDY.SEEDS, the genotype is ignored
    seeded = _write(tmp_path, SAMPLE_DARTS_CIFAR10_ROT_00004 + "RNG_SEED: 2\n", "00004_seed2.yaml")
    study = load_cfg(study_defaults(), seeded)
    assert study.TRAIN.PRECISE_BN_IMAGES == 1024     # every task of the study (not a per-task key)
    assert study.TASK_RECIPES.ROT.OPTIM.LR == 0.025 and study.TASK_RECIPES.ROT.TRAIN.BATCH_SIZE == 32
    assert study.TASK_RECIPES.ROT.TRAIN.TEST_BATCH_SIZE == 50
    assert study.OPTIM.LR == study_defaults().OPTIM.LR and study.TRAIN.EPOCHS == 100 and study.MODEL.DEPTH == 20
    assert list(study.STUDY.SEEDS) == [2] and study.TASK.NAME == study_defaults().TASK.NAME
    err = capsys.readouterr().err
    assert "translated for tools/rank_corr.py" in err and "the study's architectures come from STUDY.ARCHS" in err


def test_precise_bn_keys(tmp_path, capsys):
    """BN.USE_PRECISE_STATS + BN.NUM_SAMPLES_PRECISE -> TRAIN.PRECISE_BN_IMAGES (train, study); the search
    has no precise-BN pass (a notice); a file that leaves them out runs without (the release's default)."""
    sample = SAMPLE_DARTS_CIFAR10_ROT_00004.replace("NUM_SAMPLES_PRECISE: 1024", "NUM_SAMPLES_PRECISE: 512")
    assert load_cfg(train_defaults(), _write(tmp_path, sample, "a.yaml")).TRAIN.PRECISE_BN_IMAGES == 512
    assert load_cfg(study_defaults(), _write(tmp_path, sample, "b.yaml")).TRAIN.PRECISE_BN_IMAGES == 512
    only_use = SAMPLE_DARTS_CIFAR10_ROT_00004.replace("  NUM_SAMPLES_PRECISE: 1024\n", "")
    assert load_cfg(train_defaults(), _write(tmp_path, only_use, "c.yaml")).TRAIN.PRECISE_BN_IMAGES == 1024
    assert "BN.NUM_SAMPLES_PRECISE 1024 (release default) -> TRAIN.PRECISE_BN_IMAGES 1024" in capsys.readouterr().err
    off = SAMPLE_DARTS_CIFAR10_ROT_00004.replace("USE_PRECISE_STATS: True", "USE_PRECISE_STATS: False")
    assert load_cfg(train_defaults(), _write(tmp_path, off, "d.yaml")).TRAIN.PRECISE_BN_IMAGES == 0
    assert "ignored (no effect here): BN.NUM_SAMPLES_PRECISE 1024 (only used with" in capsys.readouterr().err
    # left out: the release's default (off) even over a base config that had it on
    base = load_cfg(train_defaults(), None, ["TRAIN.PRECISE_BN_IMAGES", "2048"])
    base.defrost()
    assert load_cfg(base, _write(tmp_path, EVAL_CLS_IMAGENET_ROT, "e.yaml")).TRAIN.PRECISE_BN_IMAGES == 0
    assert "BN.USE_PRECISE_STATS False -> TRAIN.PRECISE_BN_IMAGES 0" in capsys.readouterr().err
    search = load_cfg(search_defaults(), _write(tmp_path, SEARCH_CITYSCAPES_SEG + "BN: {USE_PRECISE_STATS: True}\n",
                                                "f.yaml"))
    assert "TRAIN" not in search or "PRECISE_BN_IMAGES" not in search.TRAIN
    assert "not reproduced: BN.USE_PRECISE_STATS True (no precise-BN pass in the search" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="BN.NUM_SAMPLES_PRECISE 'many': not a positive integer"):
        load_cfg(train_defaults(), _write(tmp_path, sample.replace("512", "many"), "g.yaml"))


def test_release_yaml_dir_as_study_archs(tmp_path):
    from unnas.study.archs import load_archs
    d = tmp_path / "cifar10" / "rot"
    d.mkdir(parents=True)
    (d / "00004.yaml").write_text(SAMPLE_DARTS_CIFAR10_ROT_00004)
    (d / "imagenet_rot.yaml").write_text(EVAL_CLS_IMAGENET_ROT)   # eval-phase configs name their genotype
    archs = {a.id: a.genotype for a in load_archs(tmp_path)}
    assert archs == {"00004": Genotype.from_unnas_list(CUSTOM_00004), "imagenet_rot": zoo.get("UNNAS_IMAGENET_ROT")}


@pytest.mark.parametrize("text, defaults, msg", [
    ("MODEL: {TYPE: resnet, DEPTH: 50}\nOPTIM: {BASE_LR: 0.1}\n", search_defaults,
     "MODEL.TYPE resnet has no equivalent here: only DARTS cells are implemented"),
    ("MODEL: {TYPE: nas_bench}\nNAS: {MATRIX: [[0, 1], [0, 0]], OPS: [input, output]}\n", train_defaults,
     "MODEL.TYPE nas_bench (NAS-Bench-101 cells) has no equivalent here: the search spaces are darts"),
    ("MODEL: {TYPE: nas, NUM_CLASSES: 4}\nTASK: rot\n", search_defaults,
     "MODEL.TYPE nas is an evaluation-network config"),
    (SEARCH_CITYSCAPES_SEG, train_defaults, "MODEL.TYPE nas_search is a search-phase config: run it with tools/search.py"),
    ("OPTIM: {BASE_LR: 0.1, LR_POLICY: steps, STEPS: [0, 30]}\n", train_defaults,
     "OPTIM.LR_POLICY steps has no equivalent here (only the cosine schedule, cos)"),
    ("MODEL: {TYPE: nas, NUM_CLASSES: 10}\nTASK: rot\n", train_defaults, "MODEL.NUM_CLASSES 10 contradicts task rot"),
    ("MODEL: {TYPE: nas, INPUT_CHANNELS: 3, NUM_CLASSES: 313}\nTASK: col\n", train_defaults,
     "MODEL.INPUT_CHANNELS 3 contradicts task col"),
    ("OPTIM: {BASE_LR: 0.1, BASE_LRR: 0.2}\n", train_defaults,
     "OPTIM.BASE_LRR is neither a key of the UnNAS release's config nor one of ours"),
    ("MODEL: {TYPE: nas_search, LOSS_FUN: label_smoothed_cross_entropy, LABEL_SMOOTHING_EPS: 0.1}\n", search_defaults,
     "the search has no label smoothing"),
    ("TRAIN: {DATASET: cifar10, WEIGHTS: model.pyth}\nMODEL: {TYPE: nas}\n", train_defaults,
     "TRAIN.WEIGHTS model.pyth has no equivalent here (release .pyth weights cannot be loaded"),
    ("NAS: {GENOTYPE: pdarts_v9}\nMODEL: {TYPE: nas}\n", train_defaults, "NAS.GENOTYPE 'pdarts_v9' is not a release genotype name"),
])
def test_no_equivalent_is_one_line(tmp_path, text, defaults, msg):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_cfg(defaults(), path)
    line = str(info.value)
    assert "\n" not in line and line.startswith(path + ": ") and msg in line, line


def test_ignored_value_restrictions_and_our_keys(tmp_path, capsys):
    text = SEARCH_CITYSCAPES_SEG + "BN: {EPS: 1.0e-5, MOM: 0.1}\nSEARCH: {ORDER: second}\n"
    cfg = load_cfg(search_defaults(), _write(tmp_path, text))
    assert cfg.SEARCH.ORDER == "second"   # our own key in a release file is kept as written
    err = capsys.readouterr().err
    assert "kept as written (our keys): SEARCH.ORDER second" in err and "BN.EPS 1e-05" in err
    with pytest.raises(ConfigError, match=r"BN.MOM 0.01 has no equivalent here \(our BN layers use momentum 0.1\)"):
        load_cfg(search_defaults(), _write(tmp_path, SEARCH_CITYSCAPES_SEG + "BN: {MOM: 0.01}\n", "b.yaml"))


def test_rng_seed_alias(tmp_path):
    assert load_cfg(search_defaults(), None, ["RNG_SEED", "3"]).SEED == 3
    assert load_cfg(train_defaults(), None, ["RNG_SEED", "4"]).SEED == 4
    assert list(load_cfg(study_defaults(), None, ["RNG_SEED", "2"]).STUDY.SEEDS) == [2]
    ours = _write(tmp_path, "SEARCH: {EPOCHS: 1}\nRNG_SEED: 7\n", "ours.yaml")
    cfg = load_cfg(search_defaults(), ours)
    assert cfg.SEED == 7 and cfg.SEARCH.EPOCHS == 1
    both = _write(tmp_path, "SEED: 1\nRNG_SEED: 7\n", "both.yaml")
    with pytest.raises(ConfigError, match="RNG_SEED and SEED both given"):
        load_cfg(train_defaults(), both)
    # the release README's form: --cfg <release yaml> OUT_DIR tmp RNG_SEED 2
    cfg = load_cfg(search_defaults(), _write(tmp_path, SEARCH_IMAGENET_JIG), ["OUT_DIR", "tmp", "RNG_SEED", "2"])
    assert cfg.SEED == 2 and cfg.OUT_DIR == "tmp"


def _tool(name):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "tools"))


def test_search_tool_builds_the_config(tmp_path, capsys):
    """tools/search.py --cfg <release yaml> <tiny overrides> gets past config loading (the search itself is
    the ordinary one; a 1-step run of this exact command was checked by hand)."""
    search = _tool("search")
    args = search.parse_args(["--cfg", _write(tmp_path, SEARCH_IMAGENET_JIG), "--out", str(tmp_path / "run"),
                              "DATA.DATASET", "synthetic", "DATA.IM_SIZE", "0", "DATA.TEST_IM_SIZE", "0",
                              "MODEL.STEM", "auto", "MODEL.WIDTH", "4", "MODEL.DEPTH", "2", "SEARCH.EPOCHS", "1",
                              "SEARCH.ARCH_START_EPOCH", "0.0", "SEARCH.STEPS_PER_EPOCH", "1", "RNG_SEED", "2"])
    cfg = search.build_cfg(args)
    assert (cfg.TASK.NAME, cfg.OPTIM.LR, cfg.ARCH.LR, cfg.MODEL.WIDTH, cfg.SEED) == ("jig", 0.05, 1.5e-4, 4, 2)
    assert "translated for tools/search.py" in capsys.readouterr().err


def test_train_and_info_take_the_genotype_of_a_release_yaml(tmp_path, capsys):
    sample = _write(tmp_path, SAMPLE_DARTS_CIFAR10_ROT_00004, "00004.yaml")
    evalp = _write(tmp_path, EVAL_CLS_IMAGENET_ROT, "imagenet_rot.yaml")
    # tools/train.py --genotype ID.yaml: MODEL.GENOTYPE is the path; the trainer resolves it
    train = _tool("train")
    args = train.parse_args(["--genotype", sample])
    cfg = load_cfg(train_defaults(), args.cfg, train._flags(args) + list(args.opts), validate_train_cfg)
    assert zoo.resolve_genotype(cfg.MODEL.GENOTYPE) == Genotype.from_unnas_list(CUSTOM_00004)
    assert zoo.resolve_genotype(evalp) == zoo.get("UNNAS_IMAGENET_ROT")
    from search_spaces import get_space
    from unnas.train.network import _eval_width
    assert _eval_width(get_space("darts"), evalp, "imagenet", False) == 42 and zoo.genotype_name(sample) is None
    # tools/info.py takes the genotype positionally
    info = _tool("info")
    assert info.main([sample, "--width", "4", "--depth", "2", "--json"]) == 0
    assert info.main([evalp, "--dataset", "imagenet", "--width", "4", "--depth", "2", "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert '"genotype": "Genotype(normal=[(\'avg_pool_3x3\', 1)' in out[0] and '"UNNAS_IMAGENET_ROT"' in out[1]
    search_phase = _write(tmp_path, SEARCH_IMAGENET_JIG, "jig.yaml")
    assert info.main([search_phase]) == 2
    assert "a search-phase config holds no genotype" in capsys.readouterr().err
