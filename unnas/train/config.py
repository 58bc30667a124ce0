"""Defaults and validation for retraining a fixed genotype (``tools/train.py``, ``unnas.train.train``).

The defaults are a *small* run that finishes in minutes on 2 CPU cores on the embedded synthetic
data; the paper-scale recipes (DARTS CIFAR-10, UnNAS ImageNet mobile and Cityscapes
segmentation) live in ``experiments/train/``.
"""
from __future__ import annotations

from pathlib import Path

from fvcore.common.config import CfgNode as CN

from unnas.config import ConfigError, add_data_cfg, add_task_cfg, check


def train_defaults() -> CN:
    cfg = CN()
    add_data_cfg(cfg)
    add_task_cfg(cfg)
    cfg.TASK.NAME = "cls"            # retraining is supervised by default; pretext tasks work too
    cfg.DATA.MAX_TRAIN = 2048        # small default budget (recipes in experiments/train/ reset it to 0 = all)
    cfg.DATA.MAX_TEST = 1024

    cfg.MODEL = CN()
    cfg.MODEL.SPACE = "darts"        # search space of the genotype: darts | nasbench101 (search_spaces.SPACES)
    cfg.MODEL.GENOTYPE = "DARTS_V2"  # zoo name, genotype file, or a Genotype(...) string; nasbench101: a spec
                                     # {"matrix": [[...]], "ops": [...]} as JSON text or file, or a release ID.yaml
    cfg.MODEL.WIDTH = 16             # initial channels C (DARTS CIFAR 36; ImageNet per genotype, 48 for DARTS_V2);
                                     # 0 = the zoo genotype's UnNAS eval width (ImageNet cls / Cityscapes seg)
    cfg.MODEL.DEPTH = 8              # cells (DARTS CIFAR 20; ImageNet 14; Cityscapes 12); not read by nasbench101
    cfg.MODEL.NUM_STACKS = 3         # nasbench101: stacks of modules, max-pool and twice the channels between them
    cfg.MODEL.MODULES_PER_STACK = 3  # nasbench101: modules (cells) per stack (release: CIFAR-10 3, ImageNet 4)
    cfg.MODEL.STEM = "auto"          # auto | cifar | imagenet (auto: cifar stem for images <= 64 px)
    cfg.MODEL.AUX = False            # auxiliary classifier after cell 2*DEPTH//3 (per-image tasks only)
    cfg.MODEL.AUX_WEIGHT = 0.4
    cfg.MODEL.DROP_PATH = 0.0        # final drop-path probability; linear ramp from 0 over the epochs

    cfg.OPTIM = CN()                 # SGD with momentum
    cfg.OPTIM.LR = 0.05
    cfg.OPTIM.LR_MIN = 0.0           # cosine floor (DARTS 0; pycls 0)
    cfg.OPTIM.SCHEDULE = "cos"       # cos | const
    cfg.OPTIM.WARMUP_EPOCHS = 0      # linear warm-up (pycls): factor WARMUP_FACTOR -> 1 over these epochs
    cfg.OPTIM.WARMUP_FACTOR = 0.1
    cfg.OPTIM.MOMENTUM = 0.9
    cfg.OPTIM.NESTEROV = True
    cfg.OPTIM.WEIGHT_DECAY = 3e-4
    cfg.OPTIM.GRAD_CLIP = 5.0        # global grad-norm clip (DARTS 5); 0 disables
    cfg.OPTIM.LABEL_SMOOTHING = 0.0  # eps: 1-eps on the target, eps/(K-1) on every other class (UnNAS)
    cfg.OPTIM.ITER_LR = False        # update the LR every step (False: once per epoch, as DARTS/pycls)

    cfg.TRAIN = CN()
    cfg.TRAIN.EPOCHS = 6
    cfg.TRAIN.BATCH_SIZE = 64        # per optimisation step, over all processes
    cfg.TRAIN.TEST_BATCH_SIZE = 0    # 0 = BATCH_SIZE
    cfg.TRAIN.CUTOUT = 0             # cutout square side on the network input (DARTS CIFAR: 16); 0 = off
    cfg.TRAIN.STEPS_PER_EPOCH = 0    # cap on steps per epoch (0 = a full pass)
    cfg.TRAIN.EVAL_PERIOD = 1        # evaluate on the test split every N epochs (and at the end)
    cfg.TRAIN.EVAL_BATCHES = 0       # cap on evaluation batches (0 = the whole test split)
    cfg.TRAIN.PRECISE_BN_IMAGES = 0  # before each evaluation, recompute BN statistics on this many training
                                     # images (release sample-based: 1024, pycls BN.NUM_SAMPLES_PRECISE); 0 = off
    cfg.TRAIN.INIT_FROM = ""         # checkpoint of an earlier run (e.g. a pretext task): initialise the trunk
    cfg.TRAIN.LINEAR_PROBE = False   # with INIT_FROM: freeze the trunk, train only a new linear head

    cfg.FITNESS = CN()               # ELo's unsupervised fitness of the trunk at every evaluation (docs/elo.md)
    cfg.FITNESS.ENABLED = False      # adds test_fitness: KL of the held-out features' k-means cluster sizes to Zipf
    cfg.FITNESS.CLUSTERS = 10        # k of the k-means (docs/elo.md: why 10)
    cfg.FITNESS.ZIPF_S = 1.0         # exponent s of the Zipf prior q(c_i) = (1 / i^s) / H_{k,s} (Zipf's law: 1)
    cfg.FITNESS.IMAGES = 0           # test-split images clustered; 0 = the run's whole test split (DATA.MAX_TEST)
    cfg.FITNESS.SEED = 0             # k-means initialisation

    cfg.AMP = "none"                 # none | bf16 | fp16 (fp16 uses a GradScaler; CUDA only)
    cfg.CHANNELS_LAST = True         # channels-last network and inputs: the same values, 1.7-1.9x the NCHW textbook step on a
                                     # CPU (docs/benchmarks.md); unnas.utils.memory_format.use_channels_last decides where it applies
    cfg.COMPILE = "none"             # none | default | reduce-overhead | max-autotune: torch.compile of the network's
                                     # forward (unnas.engine.compilation; the first steps pay the compilation)
    cfg.OUT_DIR = ""                 # run directory; "" = runs/train/<genotype>_<task>_<dataset>[_N] (see run_dir)
    cfg.SEED = 1
    cfg.DEVICE = "auto"              # auto | cpu | cuda | cuda:N
    cfg.NUM_THREADS = 0              # CPU threads for torch (0 = auto: the cores not busy with other work, see engine.setup.auto_threads)
    cfg.LOG_PERIOD = 20              # steps between JSON-lines / TensorBoard step scalars
    cfg.DETERMINISTIC = True         # torch.use_deterministic_algorithms where the backend allows
    return cfg


def _genotype_label(spec: str) -> str:
    """A short name for a genotype setting: the zoo name, a file's stem (a search's
    ``RUN/genotype.json``: the search's folder name), else 'custom'."""
    spec = str(spec).strip()
    if "(" in spec or "{" in spec or "[" in spec or len(spec) > 80:
        return "custom"
    name = spec
    if "/" in spec or spec.endswith((".json", ".yaml", ".yml", ".txt")):
        name = Path(spec).stem
        if name == "genotype" and Path(spec).parent.name:   # a search's genotype.json: name the search
            name = Path(spec).parent.name
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "custom"


def run_dir(cfg: CN, resume: bool = False) -> Path:
    """``OUT_DIR``, or when it is empty ``runs/train/<genotype>_<task>_<dataset>`` (prefixed ``probe_``
    or ``finetune_`` for runs from TRAIN.INIT_FROM), numbered ``_2``, ``_3``, ... when that one
    already holds a training run (``resume``: the latest that does)."""
    if cfg.OUT_DIR:
        return Path(cfg.OUT_DIR)
    from unnas.engine.rundir import numbered_run_dir
    from unnas.tasks import canonical_task_name
    what = _genotype_label(cfg.MODEL.GENOTYPE)
    if cfg.TRAIN.INIT_FROM:   # the network comes from the checkpoint: name the run it comes from
        what = f"{'probe' if cfg.TRAIN.LINEAR_PROBE else 'finetune'}_{Path(cfg.TRAIN.INIT_FROM).resolve().parent.name}"
    name = f"{what}_{canonical_task_name(cfg.TASK.NAME)}_{cfg.DATA.DATASET}"
    return numbered_run_dir("runs/train", name, "checkpoint_last.pt", resume)


# Keys that --resume may change: they do not alter what the finished epochs computed.
# COMPILE: the same network function, compiled or not (as threads or the device, it moves float rounding only).
RESUME_SAFE_KEYS = ("TRAIN.EPOCHS", "NUM_THREADS", "DATA.NUM_WORKERS", "DATA.ROOT", "LOG_PERIOD", "DEVICE", "OUT_DIR",
                    "COMPILE")


def validate_train_cfg(cfg: CN) -> None:
    from unnas.tasks import canonical_task_name

    check(cfg.MODEL.STEM in ("auto", "cifar", "imagenet"),
          f"MODEL.STEM must be auto, cifar or imagenet, got {cfg.MODEL.STEM!r}")
    check(cfg.MODEL.WIDTH == 0 or (cfg.MODEL.WIDTH >= 2 and cfg.MODEL.WIDTH % 2 == 0),
          f"MODEL.WIDTH must be an even number >= 2 (or 0 = the genotype's eval width), got {cfg.MODEL.WIDTH}")
    check(cfg.TRAIN.PRECISE_BN_IMAGES >= 0, f"TRAIN.PRECISE_BN_IMAGES must be >= 0, got {cfg.TRAIN.PRECISE_BN_IMAGES}")
    check(cfg.TRAIN.PRECISE_BN_IMAGES == 0 or cfg.TRAIN.PRECISE_BN_IMAGES >= cfg.TRAIN.BATCH_SIZE,
          f"TRAIN.PRECISE_BN_IMAGES {cfg.TRAIN.PRECISE_BN_IMAGES} is less than one batch (TRAIN.BATCH_SIZE "
          f"{cfg.TRAIN.BATCH_SIZE}): set it to 0 (off) or at least {cfg.TRAIN.BATCH_SIZE}")
    check(cfg.MODEL.DEPTH >= 1, f"MODEL.DEPTH must be >= 1, got {cfg.MODEL.DEPTH}")
    from search_spaces import SPACES
    check(cfg.MODEL.SPACE in SPACES, f"MODEL.SPACE {cfg.MODEL.SPACE!r} unknown; available: {', '.join(SPACES.names())}")
    check(cfg.MODEL.NUM_STACKS >= 1 and cfg.MODEL.MODULES_PER_STACK >= 1,
          f"MODEL.NUM_STACKS and MODEL.MODULES_PER_STACK must be >= 1, got {cfg.MODEL.NUM_STACKS} and "
          f"{cfg.MODEL.MODULES_PER_STACK}")
    check(cfg.MODEL.AUX_WEIGHT >= 0, f"MODEL.AUX_WEIGHT must be >= 0, got {cfg.MODEL.AUX_WEIGHT}")
    check(0.0 <= cfg.MODEL.DROP_PATH < 1.0, f"MODEL.DROP_PATH must be in [0, 1), got {cfg.MODEL.DROP_PATH}")
    check(cfg.OPTIM.LR > 0 and 0 <= cfg.OPTIM.LR_MIN <= cfg.OPTIM.LR,
          f"need OPTIM.LR > 0 and 0 <= OPTIM.LR_MIN <= OPTIM.LR, got {cfg.OPTIM.LR} and {cfg.OPTIM.LR_MIN}")
    check(cfg.OPTIM.SCHEDULE in ("cos", "const"), f"OPTIM.SCHEDULE must be cos or const, got {cfg.OPTIM.SCHEDULE!r}")
    check(cfg.OPTIM.WARMUP_EPOCHS >= 0, "OPTIM.WARMUP_EPOCHS must be >= 0")
    check(0 < cfg.OPTIM.WARMUP_FACTOR <= 1, f"OPTIM.WARMUP_FACTOR must be in (0, 1], got {cfg.OPTIM.WARMUP_FACTOR}")
    check(cfg.OPTIM.WARMUP_EPOCHS < cfg.TRAIN.EPOCHS or cfg.OPTIM.WARMUP_EPOCHS == 0,
          f"OPTIM.WARMUP_EPOCHS ({cfg.OPTIM.WARMUP_EPOCHS}) must be below TRAIN.EPOCHS ({cfg.TRAIN.EPOCHS})")
    check(0 <= cfg.OPTIM.MOMENTUM < 1, f"OPTIM.MOMENTUM must be in [0, 1), got {cfg.OPTIM.MOMENTUM}")
    check(not cfg.OPTIM.NESTEROV or cfg.OPTIM.MOMENTUM > 0, "OPTIM.NESTEROV needs OPTIM.MOMENTUM > 0")
    check(cfg.OPTIM.WEIGHT_DECAY >= 0, "OPTIM.WEIGHT_DECAY must be >= 0")
    check(cfg.OPTIM.GRAD_CLIP >= 0, "OPTIM.GRAD_CLIP must be >= 0 (0 disables clipping)")
    check(0 <= cfg.OPTIM.LABEL_SMOOTHING < 1, f"OPTIM.LABEL_SMOOTHING must be in [0, 1), got {cfg.OPTIM.LABEL_SMOOTHING}")
    check(cfg.TRAIN.EPOCHS >= 1, f"TRAIN.EPOCHS must be >= 1, got {cfg.TRAIN.EPOCHS}")
    check(cfg.TRAIN.BATCH_SIZE >= 1, f"TRAIN.BATCH_SIZE must be >= 1, got {cfg.TRAIN.BATCH_SIZE}")
    check(cfg.TRAIN.TEST_BATCH_SIZE >= 0, "TRAIN.TEST_BATCH_SIZE must be >= 0 (0 = TRAIN.BATCH_SIZE)")
    check(cfg.TRAIN.CUTOUT >= 0, "TRAIN.CUTOUT must be >= 0 (0 disables cutout)")
    check(cfg.TRAIN.STEPS_PER_EPOCH >= 0 and cfg.TRAIN.EVAL_BATCHES >= 0,
          "TRAIN.STEPS_PER_EPOCH and TRAIN.EVAL_BATCHES must be >= 0 (0 = no cap)")
    check(cfg.TRAIN.EVAL_PERIOD >= 1, "TRAIN.EVAL_PERIOD must be >= 1")
    check(not cfg.TRAIN.LINEAR_PROBE or cfg.TRAIN.INIT_FROM,
          "TRAIN.LINEAR_PROBE needs TRAIN.INIT_FROM (the checkpoint whose trunk is probed)")
    check(cfg.AMP in ("none", "bf16", "fp16"), f"AMP must be none, bf16 or fp16, got {cfg.AMP!r}")
    from unnas.engine.compilation import check_compile_mode
    check_compile_mode("COMPILE", cfg.COMPILE)
    f = cfg.FITNESS
    check(f.CLUSTERS >= 2, f"FITNESS.CLUSTERS must be >= 2, got {f.CLUSTERS}")
    check(f.ZIPF_S >= 0, f"FITNESS.ZIPF_S must be >= 0 (0 = a uniform prior), got {f.ZIPF_S}")
    check(f.IMAGES == 0 or f.IMAGES >= f.CLUSTERS,
          f"FITNESS.IMAGES {f.IMAGES} is fewer than FITNESS.CLUSTERS {f.CLUSTERS}; cluster more images (0 = all)")
    check(cfg.DATA.MAX_TRAIN >= 0 and cfg.DATA.MAX_TEST >= 0, "DATA.MAX_TRAIN/MAX_TEST must be >= 0")
    check(cfg.DATA.TRAIN_OFFSET >= 0, f"DATA.TRAIN_OFFSET must be >= 0, got {cfg.DATA.TRAIN_OFFSET}")
    check(cfg.LOG_PERIOD >= 1, "LOG_PERIOD must be >= 1")
    check(cfg.NUM_THREADS >= 0, "NUM_THREADS must be >= 0 (0 = auto)")
    check(bool(str(cfg.MODEL.GENOTYPE).strip()) or bool(cfg.TRAIN.INIT_FROM),
          "MODEL.GENOTYPE is empty; give a zoo name (e.g. DARTS_V2), a genotype file or a Genotype(...) string")
    try:
        canonical_task_name(cfg.TASK.NAME)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None
