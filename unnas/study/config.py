"""Defaults and validation for ``tools/rank_corr.py`` (the sample-based rank-correlation study).

The defaults are a *small* study on the embedded synthetic data (a few archs, tiny networks, a
few hundred optimisation steps per job) that completes in minutes on 2 CPU cores. The release's
CIFAR-10 recipe is ``experiments/study/cifar10_darts.yaml``.

Per-task training recipes: ``TASK_RECIPES.<TASK>`` holds a partial config (any of the ``TRAIN``,
``OPTIM``, ``TASK``, ``DATA`` and ``MODEL`` keys) merged over the base config for jobs of that
task, e.g. ``TASK_RECIPES.ROT.OPTIM.LR 0.025``. A key that does not exist in the base config is an error.
"""
from __future__ import annotations

import hashlib

from fvcore.common.config import CfgNode as CN

from unnas.config import ConfigError, add_data_cfg, add_task_cfg, check

RECIPE_TASKS = ("CLS", "ROT", "COL", "JIG", "SEG")
# Keys that do not change what a job trains (so changing them never invalidates a store).
_NON_TRAINING = {
    "OUT_DIR", "DEVICE", "SEED", "DATA.ROOT", "DATA.NUM_WORKERS", "DATA.DOWNLOAD", "STUDY",
}


def study_defaults() -> CN:
    cfg = CN()
    add_data_cfg(cfg)
    add_task_cfg(cfg)
    cfg.DATA.SYNTHETIC.NUM_TRAIN = 1280
    cfg.DATA.SYNTHETIC.NUM_TEST = 512

    # MODEL, OPTIM and TRAIN use the names of the fixed-genotype trainer's config
    # (unnas/train/config.py): a job's config is handed to it key by key.
    cfg.MODEL = CN()
    cfg.MODEL.SPACE = "darts"
    cfg.MODEL.WIDTH = 4              # initial channels C (release sample-based CIFAR-10: 16)
    cfg.MODEL.DEPTH = 3              # cells (release: 20); reductions at DEPTH//3 and 2*DEPTH//3
    cfg.MODEL.STEM = "auto"          # auto | cifar | imagenet
    cfg.MODEL.AUX = False            # auxiliary head (release sample-based configs: off)
    cfg.MODEL.AUX_WEIGHT = 0.4
    cfg.MODEL.DROP_PATH = 0.0

    cfg.OPTIM = CN()                 # SGD, cosine schedule (release: Nesterov, momentum 0.9, wd 5e-4, to 0)
    cfg.OPTIM.LR = 0.1
    cfg.OPTIM.LR_MIN = 0.0
    cfg.OPTIM.MOMENTUM = 0.9
    cfg.OPTIM.NESTEROV = True
    cfg.OPTIM.WEIGHT_DECAY = 5e-4
    cfg.OPTIM.GRAD_CLIP = 0.0        # 0 = off (release sample-based: off)

    cfg.TRAIN = CN()                 # one job's training
    cfg.TRAIN.EPOCHS = 2
    cfg.TRAIN.BATCH_SIZE = 64        # images per step before the task expands them (rot x4, jig x4 tiles)
    cfg.TRAIN.TEST_BATCH_SIZE = 128
    cfg.TRAIN.STEPS_PER_EPOCH = 0    # cap on steps per epoch (0 = a full pass)
    cfg.TRAIN.EVAL_BATCHES = 0       # cap on test batches (0 = the whole test split)
    cfg.TRAIN.EVAL_PERIOD = 1        # evaluate every N epochs (and always after the last)

    # Per-task recipes; defaults follow the release (cls/col: the base OPTIM.LR and TRAIN.BATCH_SIZE;
    # rot/jig: lr 0.025 and a quarter of the batch), scaled down for the small default study.
    # Recipe nodes accept any base key from a YAML file; on the command line only keys present.
    cfg.TASK_RECIPES = CN()
    for t in RECIPE_TASKS:
        cfg.TASK_RECIPES[t] = CN(new_allowed=True)
    for t in ("ROT", "JIG"):
        cfg.TASK_RECIPES[t].OPTIM = CN({"LR": 0.025}, new_allowed=True)
        cfg.TASK_RECIPES[t].TRAIN = CN({"BATCH_SIZE": 16}, new_allowed=True)
    cfg.TASK_RECIPES.JIG.TASK = CN({"JIGSAW_GRID": 2}, new_allowed=True)

    cfg.STUDY = CN()
    cfg.STUDY.ARCHS = ""             # architecture list (JSON, text, or a dir of UnNAS YAML); '' = sample
    cfg.STUDY.NUM_ARCHS = 6          # sampled archs (or the first N of STUDY.ARCHS; 0 = all of the list)
    cfg.STUDY.SAMPLE_SEED = 0
    cfg.STUDY.ALLOW_NONE = True      # sampled ops may be 'none' (as the UnNAS sample)
    cfg.STUDY.DISTINCT_INPUTS = False  # False: a node may read the same input twice (as the UnNAS sample)
    cfg.STUDY.TASKS = ["cls", "rot", "col", "jig"]
    cfg.STUDY.SUPERVISED = "cls"     # the reference task the others are correlated with
    cfg.STUDY.SUPERVISED_TABLE = ""  # JSON/CSV of arch id or genotype -> accuracy, used instead of training cls
    cfg.STUDY.SEEDS = [1]
    cfg.STUDY.METRIC = "best"        # best (max over evaluated epochs, as the paper) | final
    cfg.STUDY.TRAINER = "default"    # default | fake | package.module:function
    cfg.STUDY.LEASE_SECONDS = 900.0  # a running job silent this long is re-claimed by another worker
    cfg.STUDY.HEARTBEAT_SECONDS = 30.0
    cfg.STUDY.MAX_ATTEMPTS = 3       # claims of one job before it is marked failed (killed workers)
    cfg.STUDY.JOURNAL = "wal"        # wal (one host) | delete (network file systems shared by machines)
    cfg.STUDY.BOOTSTRAP = 1000       # bootstrap resamples for the 95% intervals (0 = none)
    cfg.STUDY.BOOTSTRAP_SEED = 0
    cfg.STUDY.THREADS = 0            # torch threads per worker (0 = cores / workers)
    cfg.STUDY.FAKE_SECONDS = 0.0     # fake trainer: seconds per job (tests and demos of the engine)
    cfg.STUDY.FAKE_TABLE = ""        # fake trainer: JSON {task: {arch_id: accuracy}} to return exactly
    cfg.STUDY.FAKE_LOG = ""          # fake trainer: append "start|end key pid" lines here (audit in tests)

    cfg.SEED = 1                     # set per job from STUDY.SEEDS
    cfg.OUT_DIR = "runs/rank_corr"
    cfg.DEVICE = "auto"              # auto | cpu | cuda | cuda:N
    return cfg


def job_cfg(cfg: CN, task: str, seed: int) -> CN:
    """The config of one job: base <- TASK_RECIPES.<TASK> <- TASK.NAME, SEED."""
    out = cfg.clone()
    out.defrost()
    recipe = cfg.TASK_RECIPES.get(task.upper())
    if recipe is not None and len(recipe):
        try:
            out.merge_from_other_cfg(CN({k: v for k, v in recipe.items()}))
        except (KeyError, AssertionError, ValueError) as exc:
            raise ConfigError(f"TASK_RECIPES.{task.upper()}: {' '.join(str(exc.args[0] if exc.args else exc).split())}") from None
    out.TASK.NAME = task
    out.SEED = int(seed)
    out.freeze()
    return out


def fingerprint(cfg: CN) -> str:
    """Hash of everything that changes what a job trains (not paths, study size or scheduling)."""
    def strip(node, prefix=""):
        out = {}
        for k, v in node.items():
            name = f"{prefix}{k}"
            if name in _NON_TRAINING:
                continue
            out[k] = strip(v, name + ".") if isinstance(v, CN) else v
        return out
    d = strip(cfg)
    d["STUDY_TRAINER"] = cfg.STUDY.TRAINER
    return hashlib.sha1(repr(_sorted(d)).encode()).hexdigest()[:16]


def _sorted(d):
    if isinstance(d, dict):
        return tuple((k, _sorted(d[k])) for k in sorted(d))
    if isinstance(d, (list, tuple)):
        return tuple(_sorted(x) for x in d)
    return d


def validate_study_cfg(cfg: CN) -> None:
    from search_spaces import SPACES
    from unnas.tasks import canonical_task_name

    s = cfg.STUDY
    check(cfg.MODEL.SPACE in SPACES, f"MODEL.SPACE {cfg.MODEL.SPACE!r} unknown; available: {SPACES.names()}")
    check(cfg.MODEL.STEM in ("auto", "cifar", "imagenet"), f"MODEL.STEM must be auto, cifar or imagenet, got {cfg.MODEL.STEM!r}")
    check(cfg.MODEL.WIDTH >= 1, f"MODEL.WIDTH must be >= 1, got {cfg.MODEL.WIDTH}")
    check(cfg.MODEL.DEPTH >= 1, f"MODEL.DEPTH must be >= 1, got {cfg.MODEL.DEPTH}")
    check(len(s.TASKS) >= 1, "STUDY.TASKS is empty; give at least one task, e.g. --tasks cls,rot")
    tasks = []
    for t in s.TASKS:
        try:
            tasks.append(canonical_task_name(str(t)))
        except KeyError as exc:
            raise ConfigError(str(exc.args[0])) from None
    check(len(set(tasks)) == len(tasks), f"STUDY.TASKS lists a task twice: {list(s.TASKS)}")
    check(len(s.SEEDS) >= 1 and len(set(s.SEEDS)) == len(s.SEEDS), f"STUDY.SEEDS must be distinct integers, got {list(s.SEEDS)}")
    check(all(isinstance(x, int) for x in s.SEEDS), f"STUDY.SEEDS must be integers, got {list(s.SEEDS)}")
    check(s.NUM_ARCHS >= 0, f"STUDY.NUM_ARCHS must be >= 0, got {s.NUM_ARCHS}")
    check(s.ARCHS or s.NUM_ARCHS >= 2, "a sampled study needs STUDY.NUM_ARCHS >= 2 (correlations need two archs)")
    check(s.METRIC in ("best", "final"), f"STUDY.METRIC must be best or final, got {s.METRIC!r}")
    check(s.JOURNAL in ("wal", "delete"), f"STUDY.JOURNAL must be wal or delete, got {s.JOURNAL!r}")
    check(s.LEASE_SECONDS > 0 and 0 < s.HEARTBEAT_SECONDS < s.LEASE_SECONDS,
          f"need 0 < STUDY.HEARTBEAT_SECONDS ({s.HEARTBEAT_SECONDS}) < STUDY.LEASE_SECONDS ({s.LEASE_SECONDS})")
    check(s.MAX_ATTEMPTS >= 1, "STUDY.MAX_ATTEMPTS must be >= 1")
    check(s.BOOTSTRAP >= 0, "STUDY.BOOTSTRAP must be >= 0")
    check(cfg.TRAIN.EPOCHS >= 1, f"TRAIN.EPOCHS must be >= 1, got {cfg.TRAIN.EPOCHS}")
    check(cfg.OPTIM.LR > 0 and 0 <= cfg.OPTIM.LR_MIN <= cfg.OPTIM.LR, "need OPTIM.LR > 0 and 0 <= OPTIM.LR_MIN <= OPTIM.LR")
    check(cfg.TRAIN.BATCH_SIZE >= 1 and cfg.TRAIN.TEST_BATCH_SIZE >= 1, "batch sizes must be >= 1")
    check(cfg.DATA.MAX_TRAIN >= 0 and cfg.DATA.MAX_TEST >= 0, "DATA.MAX_TRAIN/MAX_TEST must be >= 0")
    for t in cfg.TASK_RECIPES:
        check(t in RECIPE_TASKS, f"TASK_RECIPES.{t}: unknown task; recipes exist for {', '.join(RECIPE_TASKS)}")
    for t in tasks:
        j = job_cfg(cfg, t, 1)
        check(j.TRAIN.BATCH_SIZE >= 1 and j.OPTIM.LR > 0, f"TASK_RECIPES.{t.upper()}: batch size and lr must be positive")
    # canonical, lower-case task names from here on
    cfg.STUDY.TASKS = tasks
