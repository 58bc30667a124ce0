"""Config system: fvcore ``CfgNode`` (yacs) defaults per tool + YAML file + ``KEY VALUE`` overrides.

Each tool owns its defaults (``unnas/search/config.py`` ...) and builds them from the shared
nodes below, so a data set or task option means the same thing in every tool. Models never read
the config: tools turn it into explicit arguments.
"""
from __future__ import annotations

from ast import literal_eval
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
    cfg.DATA.TRAIN_OFFSET = 0        # skip the first N training images (with MAX_TRAIN: a disjoint subset)
    cfg.DATA.SPLIT_SEED = 0          # seed of the shuffle before the weight/arch split
    cfg.DATA.SYNTHETIC = CN()
    cfg.DATA.SYNTHETIC.NUM_TRAIN = 10000
    cfg.DATA.SYNTHETIC.NUM_TEST = 2000
    cfg.DATA.SYNTHETIC.SEED = 0


def add_task_cfg(cfg: CN) -> None:
    cfg.TASK = CN()
    cfg.TASK.NAME = "rot"            # cls | rot | jig | col | seg | inpaint | ... (docs/tasks.md; long names accepted)
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
    cfg.TASK.DECODER_CHANNELS = 64   # inpaint/superres: channels of the decoder head (halved per upsampling stage)
    cfg.TASK.INPAINT_SIZE = 0.5      # inpaint: side of the central square hole, fraction of the image side
    cfg.TASK.INPAINT_CENTER = True   # inpaint: hide the central square
    cfg.TASK.INPAINT_BLOCKS = 0      # inpaint: also hide this many random square blocks
    cfg.TASK.INPAINT_BLOCK_SIZE = 0.25  # inpaint: side of each random block, fraction of the image side
    cfg.TASK.INPAINT_OVERLAP = 0     # inpaint: px of the centre square left visible but in the loss (Pathak: 4)
    cfg.TASK.INPAINT_OVERLAP_WEIGHT = 10.0  # inpaint: loss weight of that visible ring (Pathak: 10)
    cfg.TASK.SUPERRES_FACTOR = 2     # superres: downsampling factor of the input, 2 or 4
    cfg.TASK.SIMCLR_TEMPERATURE = 0.5  # simclr: NT-Xent temperature (SimCLR: 0.5 CIFAR-10, 0.1 ImageNet)
    cfg.TASK.SIMCLR_PROJ_DIM = 128   # simclr: output size of the projection MLP
    cfg.TASK.SIMCLR_CROP_SCALE = 0.08  # simclr: smallest area fraction of the random resized crop
    cfg.TASK.SIMCLR_JITTER = 0.5     # simclr: colour-jitter strength s (SimCLR: 0.5 CIFAR-10, 1.0 ImageNet)
    cfg.TASK.SIMCLR_JITTER_PROB = 0.8  # simclr: probability of the colour jitter
    cfg.TASK.SIMCLR_GRAY_PROB = 0.2  # simclr: probability of greyscale
    cfg.TASK.SIMCLR_BLUR_PROB = 0.5  # simclr: probability of the Gaussian blur (sigma scaled to the image side)
    cfg.TASK.COUNT_DIM = 1000        # count: length of the ReLU count vector (Noroozi et al.: 1000)
    cfg.TASK.COUNT_MARGIN = 10.0     # count: margin M of the contrastive term (Noroozi et al.: 10)
    cfg.TASK.COUNT_RANDOM_RESIZE = False  # count: downsample each image with a random kernel (else 2x2 area)
    cfg.TASK.SPLITBRAIN_L_BINS = 50  # splitbrain: uniform L bins over [0, 100] the ab sub-network predicts
    cfg.TASK.MULTI = CN()            # multi: several tasks on one trunk, a head each (docs/tasks.md, docs/elo.md)
    cfg.TASK.MULTI.TASKS = ["rot", "col", "jig"]   # the tasks combined (each reads the other TASK.* options)
    cfg.TASK.MULTI.WEIGHTS = []      # their loss weights, relative (divided by their sum); [] = equal


def task_options(cfg: CN) -> dict:
    """TASK.* keys (except NAME) as lower-case keyword arguments for ``build_task``; a nested key
    joins its path with ``_`` (TASK.MULTI.WEIGHTS -> ``multi_weights``)."""
    def flat(node: CN, prefix: str = "") -> dict:
        out = {}
        for k, v in node.items():
            out.update(flat(v, f"{prefix}{k.lower()}_") if isinstance(v, CN) else {f"{prefix}{k.lower()}": v})
        return out
    return {k: v for k, v in flat(cfg.TASK).items() if k != "name"}


def _one_line(exc: Exception) -> str:
    msg = str(exc.args[0]) if exc.args else str(exc)
    return " ".join(msg.split())


def yaml_problem(exc: Exception) -> str:
    """What is wrong in a YAML file, and where (a parser error's first line reads only 'while parsing ...')."""
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    if not problem:
        return " ".join(str(exc).split())
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_float(v) -> bool:
    return isinstance(v, float)


def _leaf(cfg: CN, key: str):
    node = cfg
    for part in key.split("."):
        if not isinstance(node, CN) or part not in node:
            return None
        node = node[part]
    return node


def coerce_ints(cfg: CN, opts: Sequence) -> list:
    """``KEY VALUE`` pairs with an integer VALUE for a float KEY of ``cfg`` written as floats
    (``OPTIM.LR 1`` -> ``1.0``); yacs refuses int for float. Only int -> float; other type checks stay."""
    out = list(opts)
    for k in range(0, len(out) - 1, 2):
        if not isinstance(out[k], str) or not _is_float(_leaf(cfg, out[k])):
            continue
        v = out[k + 1]
        if isinstance(v, str):
            try:
                v = literal_eval(v)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
        if _is_int(v):
            out[k + 1] = repr(float(v)) if isinstance(out[k + 1], str) else float(v)
    return out


def _coerce_ints_tree(cfg: CN, loaded: dict) -> dict:
    """The same for a loaded YAML mapping: an int where ``cfg`` holds a float becomes a float."""
    out = {}
    for k, v in loaded.items():
        old = cfg.get(k) if isinstance(cfg, CN) else None
        if isinstance(v, dict) and isinstance(old, CN):
            v = _coerce_ints_tree(old, v)
        elif _is_int(v) and _is_float(old):
            v = float(v)
        out[k] = v
    return out


def merge_file(cfg: CN, path: str) -> None:
    """``cfg.merge_from_file(path)`` (with ``_BASE_``), but an int for a float key is taken as a float."""
    loaded = cfg.load_yaml_with_base(path, allow_unsafe=False)
    if isinstance(loaded, dict):
        from unnas.release_config import as_our_keys   # an UnNAS release YAML -> our keys; RNG_SEED -> SEED
        loaded = _coerce_ints_tree(cfg, as_our_keys(cfg, loaded, path))
    cfg.merge_from_other_cfg(type(cfg)(loaded))


def merge_overrides(cfg: CN, opts: Sequence[str]) -> None:
    """Merge ``KEY VALUE`` pairs into ``cfg``; a wrong key, value or count is one ConfigError line.
    An integer for a float key is taken as a float (``OPTIM.LR 1``)."""
    if len(opts) % 2:
        raise ConfigError(f"overrides must be KEY VALUE pairs; got an odd number: {' '.join(opts)}")
    from unnas.release_config import command_line_aliases   # the release's RNG_SEED n -> SEED n
    opts = command_line_aliases(cfg, opts)
    try:
        cfg.merge_from_list(coerce_ints(cfg, opts))
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
            merge_file(cfg, str(path))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{cfg_file}: not valid YAML ({yaml_problem(exc)}); fix the file") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{cfg_file}: not a text (UTF-8) file; pass a YAML config to --cfg") from exc
        except (AttributeError, TypeError) as exc:   # fvcore on a document that is not a mapping
            raise ConfigError(f"{cfg_file}: does not hold a mapping of config keys (KEY: value lines); pass a "
                              "YAML config to --cfg (see experiments/)") from exc
        except (KeyError, ValueError, AssertionError) as exc:
            raise ConfigError(f"{cfg_file}: {_one_line(exc)}") from exc
    merge_overrides(cfg, opts)
    if validate is not None:
        validate(cfg)
    cfg.freeze()
    return cfg


def _flat(cfg: CN, prefix: str = "") -> dict:
    out = {}
    for k, v in cfg.items():
        if isinstance(v, CN):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_diff(a: CN, b: CN) -> dict:
    """``{key: (value in a, value in b)}`` for every leaf key whose values differ."""
    fa, fb = _flat(a), _flat(b)
    return {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}


def resume_cfg(defaults: CN, stored: str, cfg_file: str | None, opts: Sequence[str],
               validate: Callable[[CN], None] | None, safe_keys: Sequence[str]) -> tuple[CN, dict]:
    """The config of a resumed run: the run's own stored config (a YAML dump, e.g. a checkpoint's
    ``cfg``) is the base, and ``cfg_file``/``opts`` may change only ``safe_keys`` (e.g. more epochs,
    threads); any other difference is one ConfigError line naming the keys. Returns the config and
    the ``{key: (old, new)}`` changes it applied."""
    base = defaults.clone()
    try:
        base.merge_from_other_cfg(CN.load_cfg(stored))
    except (KeyError, ValueError, AssertionError, yaml.YAMLError) as exc:
        why = yaml_problem(exc) if isinstance(exc, yaml.YAMLError) else _one_line(exc)
        raise ConfigError(f"the run's stored config does not fit this version: {why}; "
                          "start a new run with another --out") from exc
    cfg = load_cfg(base, cfg_file, opts, validate)
    changes = config_diff(base, cfg)
    refused = {k: v for k, v in changes.items() if k not in safe_keys}
    if refused:
        listed = ", ".join(f"{k} ({old!r} -> {new!r})" for k, (old, new) in refused.items())
        raise ConfigError(f"--resume continues the run with its stored config, but {listed} {'differs' if len(refused) == 1 else 'differ'} from it; "
                          f"on resume only {', '.join(safe_keys)} may change; drop the other overrides, or start "
                          "a new run with another --out")
    return cfg, changes


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def save_cfg(cfg: CN, path: str | Path) -> None:
    from unnas.utils.io import atomic_write_text
    atomic_write_text(path, cfg.dump())
