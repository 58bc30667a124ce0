"""Config system: fvcore ``CfgNode`` (yacs) defaults per tool + YAML file + ``KEY VALUE`` overrides.

Each tool owns its defaults (``unnas/search/config.py`` ...) and builds them from the shared
nodes below, so a data set or task option means the same thing in every tool. Models never read
the config: tools turn it into explicit arguments.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import yaml
from fvcore.common.config import CfgNode as CN


class ConfigError(ValueError):
    """An invalid configuration; the message is one line naming the key and the fix."""


def add_data_cfg(cfg: CN) -> None:
    cfg.DATA = CN()
    cfg.DATA.DATASET = "synthetic"   # registered name: synthetic, cifar10, cifar100, imagenet, ...
    cfg.DATA.ROOT = ""               # data set folder ('' for the embedded synthetic set)
    cfg.DATA.IM_SIZE = 0             # training crop side; 0 = the data set's default
    cfg.DATA.TEST_IM_SIZE = 0        # resize side before the centre crop at test time; 0 = default
    cfg.DATA.NUM_WORKERS = 2         # loader processes for file-backed data sets
    cfg.DATA.DOWNLOAD = False        # opt-in download (CIFAR through torchvision)
    cfg.DATA.MAX_TRAIN = 0           # use only the first N training images (0 = all)
    cfg.DATA.MAX_TEST = 0            # use only the first N test images (0 = all)
    cfg.DATA.SPLIT_SEED = 0          # seed of the shuffle before the weight/arch split
    cfg.DATA.SYNTHETIC = CN()
    cfg.DATA.SYNTHETIC.NUM_TRAIN = 10000
    cfg.DATA.SYNTHETIC.NUM_TEST = 2000
    cfg.DATA.SYNTHETIC.SEED = 0


def add_task_cfg(cfg: CN) -> None:
    cfg.TASK = CN()
    cfg.TASK.NAME = "rot"            # cls | rot | jig | col | seg (long names accepted)
    cfg.TASK.JIGSAW_GRID = 0         # 0 = 2 for images <= 64 px, else 3
    cfg.TASK.JIGSAW_NUM_PERMS = 1000 # permutation-set size for grid 3 (grid 2 always uses all 24)
    cfg.TASK.JIGSAW_PERMS_FILE = ""  # optional .npy (N, G*G) permutation set
    cfg.TASK.JIGSAW_SEED = 0         # seed of the greedy maximal-Hamming permutation set
    cfg.TASK.GRAY_PROB = 0.3         # jigsaw: fraction of training images turned grey first
    cfg.TASK.COL_SOFT_ENCODING = False
    cfg.TASK.COL_REBALANCE = False
    cfg.TASK.COL_PRIOR_FILE = ""     # colorization rebalancing: (313,) .npy bin prior ('' = running estimate)
    cfg.TASK.SEG_ASPP_CHANNELS = 256
    cfg.TASK.SEG_ASPP_RATES = [6, 12, 18]


def task_options(cfg: CN) -> dict:
    """TASK.* keys (except NAME) as lower-case keyword arguments for ``build_task``."""
    return {k.lower(): v for k, v in cfg.TASK.items() if k != "NAME"}


def _one_line(exc: Exception) -> str:
    msg = str(exc.args[0]) if exc.args else str(exc)
    return " ".join(msg.split())


def merge_overrides(cfg: CN, opts: Sequence[str]) -> None:
    """Merge ``KEY VALUE`` pairs into ``cfg``; a wrong key, value or count is one ConfigError line."""
    if len(opts) % 2:
        raise ConfigError(f"overrides must be KEY VALUE pairs; got an odd number: {' '.join(opts)}")
    try:
        cfg.merge_from_list(list(opts))
    except (KeyError, ValueError, AssertionError) as exc:
        raise ConfigError(f"command-line override: {_one_line(exc)}") from exc


def load_cfg(defaults: CN, cfg_file: str | None = None, opts: Sequence[str] = (),
             validate: Callable[[CN], None] | None = None) -> CN:
    """Defaults <- YAML file <- command-line ``KEY VALUE`` pairs, validated and frozen."""
    cfg = defaults.clone()
    if cfg_file:
        path = Path(cfg_file)
        if not path.is_file():
            raise ConfigError(f"config file {cfg_file} not found; pass an existing YAML file to --cfg")
        try:
            cfg.merge_from_file(str(path))
        except (KeyError, ValueError, AssertionError, yaml.YAMLError) as exc:
            raise ConfigError(f"{cfg_file}: {_one_line(exc)}") from exc
    merge_overrides(cfg, opts)
    if validate is not None:
        validate(cfg)
    cfg.freeze()
    return cfg


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def save_cfg(cfg: CN, path: str | Path) -> None:
    from unnas.utils.io import atomic_write_text
    atomic_write_text(path, cfg.dump())
