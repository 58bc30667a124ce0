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

from unnas.config import ConfigError, check

RECIPE_TASKS = ("CLS", "ROT", "COL", "JIG", "SEG", "INPAINT", "SUPERRES", "SIMCLR", "COUNT", "SPLITBRAIN")
# Recipe nodes added after studies existed (issue 15's tasks): empty, as they are by default, they are
# left out of the fingerprint, as if they did not exist (so are nodes whose keys all hold their
# _NEUTRAL_WHEN values). A default recipe that changes training must not be added this way: a store
# made before it would share the fingerprint of one made after, with jobs trained differently.
_ADDED_NODES = ("TASK_RECIPES.INPAINT", "TASK_RECIPES.SUPERRES", "TASK_RECIPES.SIMCLR", "TASK_RECIPES.COUNT",
                "TASK_RECIPES.SPLITBRAIN")
# Keys that do not change what a job trains (so changing them never invalidates a store). COMPILE computes
# the same network function (float rounding moves, as with NUM_THREADS or DEVICE), so a study may be
# continued compiled on a GPU.
_NON_TRAINING = {
    "OUT_DIR", "DEVICE", "SEED", "DATA.ROOT", "DATA.NUM_WORKERS", "DATA.DOWNLOAD", "STUDY", "LOG_PERIOD", "NUM_THREADS",
    "COMPILE",
}


# Keys added after studies existed, with the value that means "as before the key existed": a key at
# that value is left out of the fingerprint, so upgrading the toolkit does not orphan a study's store.
# Every training key added from now on goes here with its neutral value.
_NEUTRAL_WHEN = {"TRAIN.PRECISE_BN_IMAGES": 0, "DATA.TRAIN_OFFSET": 0,
                 "MODEL.NUM_STACKS": 3, "MODEL.MODULES_PER_STACK": 3,   # nasbench101's shape; DARTS never reads them
                 # options of the tasks of issue 15 (no earlier task reads them)
                 "TASK.DECODER_CHANNELS": 64, "TASK.INPAINT_SIZE": 0.5, "TASK.INPAINT_CENTER": True,
                 "TASK.INPAINT_BLOCKS": 0, "TASK.INPAINT_BLOCK_SIZE": 0.25, "TASK.INPAINT_OVERLAP": 0,
                 "TASK.INPAINT_OVERLAP_WEIGHT": 10.0, "TASK.SUPERRES_FACTOR": 2,
                 "TASK.SIMCLR_TEMPERATURE": 0.5, "TASK.SIMCLR_PROJ_DIM": 128, "TASK.SIMCLR_CROP_SCALE": 0.08,
                 "TASK.SIMCLR_JITTER": 0.5, "TASK.SIMCLR_JITTER_PROB": 0.8, "TASK.SIMCLR_GRAY_PROB": 0.2,
                 "TASK.SIMCLR_BLUR_PROB": 0.5, "TASK.COUNT_DIM": 1000, "TASK.COUNT_MARGIN": 10.0,
                 "TASK.COUNT_RANDOM_RESIZE": False, "TASK.SPLITBRAIN_L_BINS": 50,
                 # the multi task and the ELo fitness (issue 16; a node whose keys all hold these is left out)
                 "TASK.MULTI.TASKS": ["rot", "col", "jig"], "TASK.MULTI.WEIGHTS": [],
                 "FITNESS.ENABLED": False, "FITNESS.CLUSTERS": 10, "FITNESS.ZIPF_S": 1.0, "FITNESS.IMAGES": 0,
                 "FITNESS.SEED": 0}


# Trainer keys that make no sense inside a study (the genotype comes from the job).
_DROPPED = (("MODEL", "GENOTYPE"), ("TRAIN", "INIT_FROM"), ("TRAIN", "LINEAR_PROBE"))


def study_defaults() -> CN:
    """The fixed-genotype trainer's config (unnas/train/config.py) with study-sized defaults (its
    ``MODEL.SPACE`` picks the architectures' space), plus ``TASK_RECIPES`` and ``STUDY``. A job's config is handed to the trainer key by key,
    so every trainer option (OPTIM.SCHEDULE, TRAIN.CUTOUT, AMP, ...) is available in a study."""
    from unnas.train.config import train_defaults

    cfg = train_defaults()
    for node, key in _DROPPED:
        del cfg[node][key]
    cfg.DATA.SYNTHETIC.NUM_TRAIN = 640
    cfg.DATA.SYNTHETIC.NUM_TEST = 320
    cfg.TASK.NAME = "cls"            # set per job from STUDY.TASKS

    cfg.MODEL.WIDTH = 4              # initial channels C (release sample-based CIFAR-10: 16; nasbench101: 128)
    cfg.MODEL.DEPTH = 3              # cells (release: 20); reductions at DEPTH//3 and 2*DEPTH//3
    cfg.MODEL.AUX = False            # release sample-based configs: no auxiliary head, no drop-path
    cfg.MODEL.DROP_PATH = 0.0

    # SGD, cosine to 0 (release: Nesterov, momentum 0.9, wd 5e-4, no clipping, no warm-up)
    cfg.OPTIM.LR = 0.1
    cfg.OPTIM.LR_MIN = 0.0
    cfg.OPTIM.MOMENTUM = 0.9
    cfg.OPTIM.NESTEROV = True
    cfg.OPTIM.WEIGHT_DECAY = 5e-4
    cfg.OPTIM.GRAD_CLIP = 0.0

    cfg.TRAIN.EPOCHS = 2
    cfg.TRAIN.BATCH_SIZE = 64        # images per step before the task expands them (rot x4, jig x4 tiles)
    cfg.TRAIN.TEST_BATCH_SIZE = 128
    cfg.LOG_PERIOD = 50
    cfg.NUM_THREADS = 1              # torch threads per worker; parallelise a study with --workers instead

    # Per-task recipes; defaults follow the release (cls/col: the base OPTIM.LR and TRAIN.BATCH_SIZE;
    # rot/jig: lr 0.025 and a smaller batch: a quarter in the release, half in the small default).
    # Recipe nodes accept any base key from a YAML file; on the command line only keys present.
    cfg.TASK_RECIPES = CN()
    for t in RECIPE_TASKS:
        cfg.TASK_RECIPES[t] = CN(new_allowed=True)
    for t in ("ROT", "JIG"):
        cfg.TASK_RECIPES[t].OPTIM = CN({"LR": 0.025}, new_allowed=True)
        cfg.TASK_RECIPES[t].TRAIN = CN({"BATCH_SIZE": 32}, new_allowed=True)
    cfg.TASK_RECIPES.JIG.TASK = CN({"JIGSAW_GRID": 2}, new_allowed=True)

    cfg.STUDY = CN()
    cfg.STUDY.ARCHS = ""             # architecture list (JSON, text, or a dir of UnNAS YAML); '' = sample
    cfg.STUDY.NUM_ARCHS = 0          # archs to sample, or the first N of STUDY.ARCHS; 0 = 6 sampled / the whole list
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
    cfg.STUDY.EPOCH_LOG = True       # print each job's per-epoch line (lr, loss, test metric, time)
    cfg.STUDY.FAKE_SECONDS = 0.0     # fake trainer: seconds per job (tests and demos of the engine); > 0: it
    #                                  checkpoints each "epoch" in the job dir and resumes like the real trainer
    cfg.STUDY.FAKE_TABLE = ""        # fake trainer: JSON {task: {arch_id: accuracy}} to return exactly
    cfg.STUDY.FAKE_LOG = ""          # fake trainer: append "start|resume|end key pid" lines here (audit in tests)
    cfg.STUDY.KEEP_CHECKPOINTS = False  # keep each job's checkpoints after it is done (paper scale: ~10 MB/job)
    # Where jobs run (unnas/study/executors/, docs/rank_corr.md §1): local worker processes claiming from
    # the store, or a driver (the store's only writer) submitting them to a Ray cluster or to SLURM.
    cfg.STUDY.EXECUTOR = "local"     # local | ray | slurm
    cfg.STUDY.JOBS_PER_DEVICE = 0    # local: worker processes per visible CUDA device (replaces --workers; a small
    #                                  network can leave a GPU idle between kernels); 0 = --workers, round robin
    #                                  over the GPUs; ignored without a GPU (docs/rank_corr.md §1)
    cfg.STUDY.MAX_IN_FLIGHT = 0      # ray/slurm: jobs claimed and submitted at once; 0 = ray 2x the cluster's
    #                                  slots, slurm all (submitit's local cluster: SLURM.ARRAY_PARALLELISM)
    cfg.STUDY.RAY = CN()
    cfg.STUDY.RAY.ADDRESS = ""       # "" = ray.init()'s default (RAY_ADDRESS, or a new local instance); auto; host:port
    cfg.STUDY.RAY.MAX_RETRIES = 3    # Ray's retries of a task whose worker or node died (then the job counts as lost)
    cfg.STUDY.RAY.GPUS_PER_JOB = -1.0  # -1: 1 when the cluster has GPUs, else 0 (a fraction packs small jobs)
    cfg.STUDY.SLURM = CN()
    cfg.STUDY.SLURM.CLUSTER = "slurm"  # slurm | local (submitit's local processes: tests and dry runs) | debug
    cfg.STUDY.SLURM.PARTITION = ""
    cfg.STUDY.SLURM.GPUS_PER_JOB = 0
    cfg.STUDY.SLURM.TIME = 240       # minutes per array task; at the limit the job is requeued and resumes
    cfg.STUDY.SLURM.ARRAY_PARALLELISM = 256
    cfg.STUDY.SLURM.MAX_ARRAY_SIZE = 1000  # tasks per array (SLURM's MaxArraySize is 1001 by default)
    cfg.STUDY.SLURM.EXTRA = []       # more sbatch options, "KEY=VALUE" or "FLAG" (e.g. account=nas, qos=low)
    cfg.STUDY.SLURM.POLL_SECONDS = 30.0  # how often the driver looks for finished jobs
    # Training-free proxies (unnas/study/proxy_study.py): scored once per architecture at initialisation
    # on the reference task's network, cached in the store; `rank_corr.py proxies RUN` computes them.
    from .proxies import PROXY_NAMES
    cfg.STUDY.PROXIES = list(PROXY_NAMES)   # [] = none (params/macs baselines stay)
    cfg.STUDY.PROXY_BATCH_SIZE = 64  # training images in the proxies' one batch (NASLib's default)
    cfg.STUDY.PROXY_SEED = 0         # network initialisation, the batch's draw and zen's Gaussian draws
    cfg.STUDY.PROXY_ANALYZE_SECONDS = 60.0  # analyze computes missing proxies for at most this long (0: never)

    cfg.OUT_DIR = "runs/rank_corr"   # SEED is set per job from STUDY.SEEDS
    return cfg


def trainer_cfg(job: CN, genotype, out_dir) -> CN:
    """A job's config as the fixed-genotype trainer's config (same keys; study-only keys dropped)."""
    from unnas.train.config import train_defaults, validate_train_cfg

    out = train_defaults()

    def copy(dst, src):
        for k in dst:
            if k not in src:
                continue
            if isinstance(dst[k], CN):
                copy(dst[k], src[k])
            else:
                dst[k] = src[k]
    copy(out, job)
    out.MODEL.GENOTYPE = genotype if isinstance(genotype, str) else repr(genotype)
    out.OUT_DIR = str(out_dir)
    validate_train_cfg(out)
    out.freeze()
    return out


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
    def added(name):
        return any(name == a or name.startswith(a + ".") for a in _ADDED_NODES)

    def strip(node, prefix=""):
        """(training keys of ``node``, whether it only holds keys added later at their neutral values)."""
        out, as_before = {}, bool(node) or added(prefix[:-1])
        for k, v in node.items():
            name = f"{prefix}{k}"
            if name in _NEUTRAL_WHEN and v == _NEUTRAL_WHEN[name]:
                continue
            as_before = False if not isinstance(v, CN) else as_before
            if name in _NON_TRAINING:
                continue
            if isinstance(v, CN):
                sub, sub_as_before = strip(v, name + ".")
                if sub_as_before:
                    continue    # a node added later, every key at its neutral value: as before it existed
                as_before = False
                out[k] = sub
            else:
                out[k] = v
        return out, as_before
    d = strip(cfg)[0]
    d["STUDY_TRAINER"] = cfg.STUDY.TRAINER
    return hashlib.sha1(repr(_sorted(d)).encode()).hexdigest()[:16]


def _trains(key: str) -> bool:
    """Whether a leaf key is part of the fingerprint (changes what a job trains)."""
    if key == "STUDY.TRAINER":
        return True
    parts = key.split(".")
    return not any(".".join(parts[:i]) in _NON_TRAINING for i in range(1, len(parts) + 1))


def describe_training_change(stored: str, cfg: CN) -> str:
    """The training keys that differ between a study's stored config (YAML) and ``cfg``, as
    ``KEY old -> new`` items on one line (what makes the fingerprints differ)."""
    from unnas.config import config_diff

    old = study_defaults()
    try:
        old.merge_from_other_cfg(CN.load_cfg(stored))
    except Exception:   # a stored config from another version: say so instead of a diff
        return "its stored config cannot be compared with this version's keys"
    diff = {k: v for k, v in config_diff(old, cfg).items() if _trains(k)}
    if not diff:
        return "no key differs; the store was made by another version of the fingerprint"
    return ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in diff.items())


DEFAULT_SAMPLED_ARCHS = 6   # a sampled study's size when STUDY.NUM_ARCHS is 0 (a small demo)


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
    check(s.ARCHS or s.NUM_ARCHS == 0 or s.NUM_ARCHS >= 2,
          "a sampled study needs STUDY.NUM_ARCHS >= 2 (correlations need two archs)")
    check(s.METRIC in ("best", "final"), f"STUDY.METRIC must be best or final, got {s.METRIC!r}")
    check(s.JOURNAL in ("wal", "delete"), f"STUDY.JOURNAL must be wal or delete, got {s.JOURNAL!r}")
    check(s.LEASE_SECONDS > 0 and 0 < s.HEARTBEAT_SECONDS < s.LEASE_SECONDS,
          f"need 0 < STUDY.HEARTBEAT_SECONDS ({s.HEARTBEAT_SECONDS}) < STUDY.LEASE_SECONDS ({s.LEASE_SECONDS})")
    check(s.MAX_ATTEMPTS >= 1, "STUDY.MAX_ATTEMPTS must be >= 1")
    check(s.BOOTSTRAP >= 0, "STUDY.BOOTSTRAP must be >= 0")
    from .executors import validate_executor_cfg
    validate_executor_cfg(cfg)
    check(s.PROXY_BATCH_SIZE >= 2, f"STUDY.PROXY_BATCH_SIZE must be >= 2, got {s.PROXY_BATCH_SIZE}")
    from .proxy_study import proxy_names
    cfg.STUDY.PROXIES = proxy_names(cfg)   # raises on an unknown name
    for t in cfg.TASK_RECIPES:
        check(t in RECIPE_TASKS, f"TASK_RECIPES.{t}: unknown task; recipes exist for {', '.join(RECIPE_TASKS)}")
    for t in tasks:   # every task's effective recipe must be a valid trainer config
        try:
            trainer_cfg(job_cfg(cfg, t, 1), "DARTS_V2", cfg.OUT_DIR)
        except ConfigError as exc:
            raise ConfigError(f"task {t} (TASK_RECIPES.{t.upper()} over the base config): {exc.args[0]}") from None
    try:
        reference = canonical_task_name(str(s.SUPERVISED))
    except KeyError as exc:
        raise ConfigError(f"STUDY.SUPERVISED: {exc.args[0]}") from None
    if s.SUPERVISED_TABLE:
        from pathlib import Path
        check(Path(s.SUPERVISED_TABLE).is_file(), f"supervised table {s.SUPERVISED_TABLE} not found")
    else:
        check(reference in tasks, f"the reference task {reference} is not in STUDY.TASKS {tasks}: add it to --tasks "
                                  "or pass --supervised-table")
    # canonical, lower-case task names from here on
    cfg.STUDY.TASKS = tasks
    cfg.STUDY.SUPERVISED = reference
