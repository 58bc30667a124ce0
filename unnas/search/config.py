"""Defaults and validation for ``tools/search.py``.

The defaults are a *small* search that finishes in minutes on 2 CPU cores on the embedded data;
paper-scale settings (width 16, depth 8, DARTS/UnNAS budgets) live in ``experiments/search/``.
"""
from __future__ import annotations

from pathlib import Path

from fvcore.common.config import CfgNode as CN

from unnas.config import ConfigError, add_data_cfg, add_task_cfg, check


def search_defaults() -> CN:
    cfg = CN()
    add_data_cfg(cfg)
    add_task_cfg(cfg)

    cfg.MODEL = CN()
    cfg.MODEL.SPACE = "darts"
    cfg.MODEL.WIDTH = 8              # initial channels C (UnNAS/DARTS search: 16)
    cfg.MODEL.DEPTH = 5              # cells (UnNAS/DARTS search: 8)
    cfg.MODEL.STEM = "auto"          # auto | cifar | imagenet (auto: cifar stem for images <= 64 px)

    cfg.SEARCH = CN()
    cfg.SEARCH.ALGO = "darts"
    cfg.SEARCH.ORDER = "first"       # first | second (unrolled, finite-difference Hessian-vector product)
    cfg.SEARCH.EPOCHS = 3
    cfg.SEARCH.BATCH_SIZE = 16       # per optimisation step, over all processes
    cfg.SEARCH.PORTION = 0.5         # fraction of the training split for the weights; the rest drives alphas
    cfg.SEARCH.ARCH_START_EPOCH = 0.0  # warm-up: alphas are frozen before this (fractional) epoch
    cfg.SEARCH.STEPS_PER_EPOCH = 10  # cap on weight steps per epoch (0 = a full pass over the weight half)
    cfg.SEARCH.EVAL_PERIOD = 1       # evaluate on the held-out (architecture) half every N epochs
    cfg.SEARCH.EVAL_BATCHES = 4      # cap on evaluation batches (0 = the whole half)
    cfg.SEARCH.EVAL_BN = "batch"     # batch | running: BN statistics used for the held-out evaluation
    cfg.SEARCH.PARTIAL_CHANNELS = 1  # PC-DARTS K (1 = plain DARTS)
    cfg.SEARCH.EDGE_NORM = False     # PC-DARTS edge normalisation
    cfg.SEARCH.CHANNELS_LAST = True  # supernet memory format: same values, oneDNN depthwise convs ~4x faster on CPU
    cfg.SEARCH.AMP = "none"          # none | bf16: autocast the forward passes (GPU; bf16 on CPU works but is slow)
    cfg.SEARCH.ALPHA_LOG_STEPS = 0   # also record softmax(alpha) every N steps (alpha_history.json "steps",
                                     # alphas_*.png); 0 = after every epoch only
    cfg.SEARCH.NUM_THREADS = 0       # torch CPU threads (0 = auto: the cores not busy with other work, see engine.setup.auto_threads)

    cfg.OPTIM = CN()                 # network weights
    cfg.OPTIM.LR = 0.025
    cfg.OPTIM.LR_MIN = 0.001         # cosine floor (DARTS 0.001; UnNAS 0.0)
    cfg.OPTIM.MOMENTUM = 0.9
    cfg.OPTIM.NESTEROV = False
    cfg.OPTIM.WEIGHT_DECAY = 3e-4
    cfg.OPTIM.GRAD_CLIP = 5.0
    cfg.OPTIM.ITER_LR = True         # update the cosine LR every step (False: once per epoch, as pycls)

    cfg.ARCH = CN()                  # architecture parameters
    cfg.ARCH.OPTIMIZER = "adam"      # adam | sgd
    cfg.ARCH.LR = 3e-4
    cfg.ARCH.BETAS = [0.5, 0.999]
    cfg.ARCH.WEIGHT_DECAY = 1e-3
    cfg.ARCH.UNROLL_LR = 0.0         # xi of the second-order step (0 = the current weight LR, as DARTS)

    cfg.OUT_DIR = ""                 # run directory; "" = runs/search/<task>_<dataset>[_N] (see run_dir)
    cfg.SEED = 1
    cfg.DEVICE = "auto"              # auto | cpu | cuda | cuda:N
    cfg.LOG_PERIOD = 10              # steps between JSON-lines / TensorBoard scalars
    cfg.CHECKPOINT_STEPS = 0         # also checkpoint every N steps inside an epoch (0 = end of epoch only)
    cfg.DETERMINISTIC = True         # torch.use_deterministic_algorithms where the backend allows
    return cfg


def run_dir(cfg: CN, resume: bool = False) -> Path:
    """``OUT_DIR``, or when it is empty ``runs/search/<task>_<dataset>``, numbered ``_2``, ``_3``, ...
    when that one already holds a search (``resume``: the latest that does)."""
    if cfg.OUT_DIR:
        return Path(cfg.OUT_DIR)
    from unnas.engine.rundir import numbered_run_dir
    from unnas.tasks import canonical_task_name
    return numbered_run_dir("runs/search", f"{canonical_task_name(cfg.TASK.NAME)}_{cfg.DATA.DATASET}",
                            "checkpoint.pt", resume)


# Keys that --resume may change: they do not alter what the finished steps computed.
RESUME_SAFE_KEYS = ("SEARCH.EPOCHS", "SEARCH.NUM_THREADS", "SEARCH.ALPHA_LOG_STEPS", "DATA.NUM_WORKERS", "DATA.ROOT",
                    "LOG_PERIOD", "CHECKPOINT_STEPS", "DEVICE", "OUT_DIR")


def describe_algorithm(cfg: CN) -> str:
    """The search algorithm as logs and summaries name it, e.g. 'first-order PC-DARTS (K=4, edge norm)'."""
    k, edge_norm = cfg.SEARCH.PARTIAL_CHANNELS, cfg.SEARCH.EDGE_NORM
    if k == 1 and not edge_norm:
        return f"{cfg.SEARCH.ORDER}-order DARTS"
    parts = ([f"K={k}"] if k > 1 else []) + (["edge norm"] if edge_norm else [])
    return f"{cfg.SEARCH.ORDER}-order PC-DARTS ({', '.join(parts)})"


def validate_search_cfg(cfg: CN) -> None:
    from search_spaces import SPACES
    from unnas.tasks import canonical_task_name

    check(cfg.SEARCH.ORDER in ("first", "second"),
          f"SEARCH.ORDER must be 'first' or 'second', got {cfg.SEARCH.ORDER!r}")
    check(cfg.MODEL.SPACE in SPACES, f"MODEL.SPACE {cfg.MODEL.SPACE!r} unknown; available: {SPACES.names()}")
    check(cfg.MODEL.STEM in ("auto", "cifar", "imagenet"), f"MODEL.STEM must be auto, cifar or imagenet, got {cfg.MODEL.STEM!r}")
    check(cfg.MODEL.WIDTH >= 2 and cfg.MODEL.WIDTH % 2 == 0, f"MODEL.WIDTH must be an even number >= 2, got {cfg.MODEL.WIDTH}")
    check(cfg.MODEL.DEPTH >= 1, f"MODEL.DEPTH must be >= 1, got {cfg.MODEL.DEPTH}")
    check(0.0 < cfg.SEARCH.PORTION < 1.0, f"SEARCH.PORTION must be strictly between 0 and 1, got {cfg.SEARCH.PORTION}")
    check(cfg.SEARCH.EPOCHS >= 1, f"SEARCH.EPOCHS must be >= 1, got {cfg.SEARCH.EPOCHS}")
    check(cfg.SEARCH.BATCH_SIZE >= 1, f"SEARCH.BATCH_SIZE must be >= 1, got {cfg.SEARCH.BATCH_SIZE}")
    check(cfg.SEARCH.ARCH_START_EPOCH >= 0, "SEARCH.ARCH_START_EPOCH must be >= 0")
    check(cfg.SEARCH.ARCH_START_EPOCH < cfg.SEARCH.EPOCHS,
          f"SEARCH.ARCH_START_EPOCH ({cfg.SEARCH.ARCH_START_EPOCH}) >= SEARCH.EPOCHS ({cfg.SEARCH.EPOCHS}): "
          "the architecture would never be updated")
    check(cfg.SEARCH.PARTIAL_CHANNELS >= 1, "SEARCH.PARTIAL_CHANNELS must be >= 1")
    k = cfg.SEARCH.PARTIAL_CHANNELS
    check(k == 1 or (cfg.MODEL.WIDTH % k == 0 and (cfg.MODEL.WIDTH // k) % 2 == 0),
          f"SEARCH.PARTIAL_CHANNELS {k} must divide MODEL.WIDTH {cfg.MODEL.WIDTH} into an even number of channels")
    check(cfg.SEARCH.AMP in ("none", "bf16"), f"SEARCH.AMP must be none or bf16, got {cfg.SEARCH.AMP!r}")
    check(cfg.SEARCH.ALPHA_LOG_STEPS >= 0,
          f"SEARCH.ALPHA_LOG_STEPS must be >= 0 (0 = per epoch only), got {cfg.SEARCH.ALPHA_LOG_STEPS}")
    check(cfg.SEARCH.NUM_THREADS >= 0, "SEARCH.NUM_THREADS must be >= 0 (0 = auto)")
    check(cfg.SEARCH.EVAL_BN in ("batch", "running"), f"SEARCH.EVAL_BN must be batch or running, got {cfg.SEARCH.EVAL_BN!r}")
    check(cfg.ARCH.OPTIMIZER in ("adam", "sgd"), f"ARCH.OPTIMIZER must be adam or sgd, got {cfg.ARCH.OPTIMIZER!r}")
    check(len(cfg.ARCH.BETAS) == 2 and all(0 <= b < 1 for b in cfg.ARCH.BETAS), "ARCH.BETAS must be two numbers in [0, 1)")
    check(cfg.OPTIM.LR > 0 and 0 <= cfg.OPTIM.LR_MIN <= cfg.OPTIM.LR,
          f"need OPTIM.LR > 0 and 0 <= OPTIM.LR_MIN <= OPTIM.LR, got {cfg.OPTIM.LR} and {cfg.OPTIM.LR_MIN}")
    check(cfg.OPTIM.GRAD_CLIP >= 0, "OPTIM.GRAD_CLIP must be >= 0 (0 disables clipping)")
    check(cfg.DATA.MAX_TRAIN >= 0 and cfg.DATA.MAX_TEST >= 0, "DATA.MAX_TRAIN/MAX_TEST must be >= 0")
    check(cfg.DATA.TRAIN_OFFSET >= 0, f"DATA.TRAIN_OFFSET must be >= 0, got {cfg.DATA.TRAIN_OFFSET}")
    check(cfg.LOG_PERIOD >= 1, "LOG_PERIOD must be >= 1")
    try:
        canonical_task_name(cfg.TASK.NAME)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None
