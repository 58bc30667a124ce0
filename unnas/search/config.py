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
    cfg.SEARCH.COMPILE = "none"      # none | default | reduce-overhead | max-autotune: torch.compile of the supernet's
                                     # forward (unnas.engine.compilation; the first steps pay the compilation)
    cfg.SEARCH.ALPHA_LOG_STEPS = 0   # also record softmax(alpha) every N steps (alpha_history.json "steps",
                                     # alphas_*.png); 0 = after every epoch only
    cfg.SEARCH.NUM_THREADS = 0       # torch CPU threads (0 = auto: the cores not busy with other work, see engine.setup.auto_threads)
    add_robust_cfg(cfg)
    add_pdarts_cfg(cfg)

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


def add_robust_cfg(cfg: CN) -> None:
    """Robust-DARTS remedies and collapse diagnostics (unnas/search/regularizers.py, diagnostics.py;
    docs/search.md "Searches that do not collapse"). All off by default."""
    cfg.SEARCH.BETA_DARTS = CN()            # beta-DARTS (Ye et al., CVPR 2022)
    cfg.SEARCH.BETA_DARTS.WEIGHT = 0.0      # lambda of the beta-decay term mean_edges logsumexp(alpha) (paper: 50); 0 = off
    cfg.SEARCH.BETA_DARTS.SCHEDULE = "linear"  # linear: lambda = WEIGHT * epoch / EPOCHS (official code) | constant
    cfg.SEARCH.AUX_SKIP = CN()              # DARTS- (Chu et al., ICLR 2021)
    cfg.SEARCH.AUX_SKIP.ENABLED = False     # auxiliary skip connection on every edge, outside the softmax mixture
    cfg.SEARCH.AUX_SKIP.BETA = 1.0          # its initial weight (DARTS- --skip_beta)
    cfg.SEARCH.AUX_SKIP.DECAY = "linear"    # linear | cosine | none: decay of the weight over the epochs (--decay)
    cfg.SEARCH.SDARTS = CN()                # SDARTS-RS (Chen & Hsieh, ICML 2020)
    cfg.SEARCH.SDARTS.EPSILON = 0.0         # U[-eps, eps] noise on softmax(alpha) in the weight step (paper: 0.3); 0 = off
    cfg.SEARCH.SDARTS.EPSILON_START = 0.03  # linear schedule: eps ramps EPSILON_START -> EPSILON over the epochs
    cfg.SEARCH.SDARTS.SCHEDULE = "linear"   # linear | constant (eps = EPSILON throughout)
    cfg.SEARCH.HESSIAN = CN()               # largest eigenvalue of the arch-loss Hessian w.r.t. alpha (RobustDARTS)
    cfg.SEARCH.HESSIAN.PERIOD = 0           # after every N-th epoch (epochs 0, N, 2N, ... and the last); 0 = off
    cfg.SEARCH.HESSIAN.BATCHES = 1          # held-out (architecture-half) batches of the loss
    cfg.SEARCH.HESSIAN.ITERS = 20           # power iterations (Hessian-vector products)
    cfg.SEARCH.EARLY_STOP = CN()            # DARTS-ES (Zela et al., ICLR 2020); needs SEARCH.HESSIAN.PERIOD > 0
    cfg.SEARCH.EARLY_STOP.ENABLED = False
    cfg.SEARCH.EARLY_STOP.WINDOW = 5        # eigenvalues in each (centred) local average
    cfg.SEARCH.EARLY_STOP.DELTA = 4         # compare with the local average DELTA eigenvalues back
    cfg.SEARCH.EARLY_STOP.FACTOR = 1.3      # stop when current / previous local average > FACTOR
    cfg.SEARCH.EARLY_STOP.START_EPOCH = 10  # only when the previous average's epoch is >= this


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
# SEARCH.COMPILE: the same supernet function, compiled or not (it moves float rounding only, as threads do).
RESUME_SAFE_KEYS = ("SEARCH.EPOCHS", "SEARCH.NUM_THREADS", "SEARCH.ALPHA_LOG_STEPS", "DATA.NUM_WORKERS", "DATA.ROOT",
                    "LOG_PERIOD", "CHECKPOINT_STEPS", "DEVICE", "OUT_DIR", "SEARCH.COMPILE")


def describe_algorithm(cfg: CN) -> str:
    """The search algorithm as logs and summaries name it, e.g. 'first-order PC-DARTS (K=4, edge norm)'."""
    k, edge_norm = cfg.SEARCH.PARTIAL_CHANNELS, cfg.SEARCH.EDGE_NORM
    if k == 1 and not edge_norm:
        return f"{cfg.SEARCH.ORDER}-order DARTS" + describe_pdarts(cfg) + describe_robust(cfg)
    parts = ([f"K={k}"] if k > 1 else []) + (["edge norm"] if edge_norm else [])
    return f"{cfg.SEARCH.ORDER}-order PC-DARTS ({', '.join(parts)})" + describe_pdarts(cfg) + describe_robust(cfg)


def describe_robust(cfg: CN) -> str:
    """' + beta-DARTS (lambda 50, linear) + DARTS- (...)' etc. for describe_algorithm ('' when all are off)."""
    s, out = cfg.SEARCH, ""
    if s.BETA_DARTS.WEIGHT:
        out += f" + beta-DARTS (lambda {s.BETA_DARTS.WEIGHT:g}, {s.BETA_DARTS.SCHEDULE})"
    if s.AUX_SKIP.ENABLED:
        out += f" + DARTS- (auxiliary skip {s.AUX_SKIP.BETA:g}, {s.AUX_SKIP.DECAY} decay)"
    if s.SDARTS.EPSILON:
        sched = f"{s.SDARTS.EPSILON_START:g} -> " if s.SDARTS.SCHEDULE == "linear" else ""
        out += f" + SDARTS-RS (epsilon {sched}{s.SDARTS.EPSILON:g})"
    if s.EARLY_STOP.ENABLED:
        out += " + DARTS-ES"
    return out


def validate_robust_cfg(cfg: CN) -> None:
    """One line per bad value of the robust-DARTS keys (see add_robust_cfg)."""
    b, a, sd, h, es = (cfg.SEARCH.BETA_DARTS, cfg.SEARCH.AUX_SKIP, cfg.SEARCH.SDARTS, cfg.SEARCH.HESSIAN,
                       cfg.SEARCH.EARLY_STOP)
    check(b.WEIGHT >= 0, f"SEARCH.BETA_DARTS.WEIGHT must be >= 0 (0 = off; the paper uses 50), got {b.WEIGHT}")
    check(b.SCHEDULE in ("linear", "constant"),
          f"SEARCH.BETA_DARTS.SCHEDULE must be linear or constant, got {b.SCHEDULE!r}")
    check(a.BETA > 0, f"SEARCH.AUX_SKIP.BETA must be > 0 (the initial weight of the auxiliary skip; DARTS-: 1), got {a.BETA}")
    check(a.DECAY in ("linear", "cosine", "none"),
          f"SEARCH.AUX_SKIP.DECAY must be linear, cosine or none, got {a.DECAY!r}")
    check(0 <= sd.EPSILON <= 1, f"SEARCH.SDARTS.EPSILON must be in [0, 1] (0 = off; SDARTS-RS: 0.3), got {sd.EPSILON}")
    check(sd.SCHEDULE in ("linear", "constant"), f"SEARCH.SDARTS.SCHEDULE must be linear or constant, got {sd.SCHEDULE!r}")
    check(sd.SCHEDULE != "linear" or sd.EPSILON == 0 or 0 <= sd.EPSILON_START <= sd.EPSILON,
          f"SEARCH.SDARTS.EPSILON_START ({sd.EPSILON_START}) must be in [0, SEARCH.SDARTS.EPSILON ({sd.EPSILON})] "
          "for the linear schedule")
    check(h.PERIOD >= 0, f"SEARCH.HESSIAN.PERIOD must be >= 0 (epochs; 0 = off), got {h.PERIOD}")
    check(h.BATCHES >= 1, f"SEARCH.HESSIAN.BATCHES must be >= 1, got {h.BATCHES}")
    check(h.ITERS >= 1, f"SEARCH.HESSIAN.ITERS must be >= 1, got {h.ITERS}")
    if es.ENABLED:
        check(h.PERIOD > 0, "SEARCH.EARLY_STOP.ENABLED needs the eigenvalue: set SEARCH.HESSIAN.PERIOD (e.g. 1)")
        check(not uses_pdarts(cfg),
              "SEARCH.EARLY_STOP.ENABLED does not combine with SEARCH.PDARTS.ENABLE: each P-DARTS stage is a new "
              "supernet, so eigenvalues of different stages are not comparable")
    check(es.WINDOW >= 1, f"SEARCH.EARLY_STOP.WINDOW must be >= 1, got {es.WINDOW}")
    check(es.DELTA >= 1, f"SEARCH.EARLY_STOP.DELTA must be >= 1, got {es.DELTA}")
    check(es.FACTOR > 1, f"SEARCH.EARLY_STOP.FACTOR must be > 1 (RobustDARTS: 1.3), got {es.FACTOR}")
    check(es.START_EPOCH >= 0, f"SEARCH.EARLY_STOP.START_EPOCH must be >= 0, got {es.START_EPOCH}")


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
    from unnas.engine.compilation import check_compile_mode
    check_compile_mode("SEARCH.COMPILE", cfg.SEARCH.COMPILE)
    check(cfg.SEARCH.COMPILE == "none" or cfg.SEARCH.HESSIAN.PERIOD == 0,
          "SEARCH.COMPILE does not combine with SEARCH.HESSIAN.PERIOD > 0: the eigenvalue needs double backward, "
          "which torch.compile does not support; set SEARCH.COMPILE none or SEARCH.HESSIAN.PERIOD 0")
    check(cfg.SEARCH.ALPHA_LOG_STEPS >= 0,
          f"SEARCH.ALPHA_LOG_STEPS must be >= 0 (0 = per epoch only), got {cfg.SEARCH.ALPHA_LOG_STEPS}")
    check(cfg.SEARCH.NUM_THREADS >= 0, "SEARCH.NUM_THREADS must be >= 0 (0 = auto)")
    check(cfg.SEARCH.EVAL_BN in ("batch", "running"), f"SEARCH.EVAL_BN must be batch or running, got {cfg.SEARCH.EVAL_BN!r}")
    validate_robust_cfg(cfg)
    validate_pdarts_cfg(cfg)
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


# ---- P-DARTS and the skip-connection limit (unnas/search/pdarts.py; docs/search.md "P-DARTS") ------------
def add_pdarts_cfg(cfg: CN) -> None:
    """P-DARTS (Chen et al., ICCV 2019; chenxin061/pdarts ``train_search.py``), off by default, and
    its skip-connection limit at derivation, usable with any search. Defaults: the official CIFAR-10
    search (README command: ``--add_layers 6 --add_layers 12 --dropout_rate 0.1/0.4/0.7``)."""
    cfg.SEARCH.MAX_SKIPS_NORMAL = -1        # at most N skip connections in the derived normal cell (P-DARTS' rule):
                                            # -1 = 2 with SEARCH.PDARTS.ENABLE, else no limit; 0 = no limit
    cfg.SEARCH.PDARTS = CN()
    cfg.SEARCH.PDARTS.ENABLE = False        # progressive search: stages of growing depth, op space pruned between them
    cfg.SEARCH.PDARTS.ADD_LAYERS = [0, 6, 12]        # cells added to MODEL.DEPTH in each stage (--add_layers): 5, 11, 17
    cfg.SEARCH.PDARTS.STAGE_EPOCHS = [25, 25, 25]    # epochs of each stage (--epochs); SEARCH.EPOCHS must be their sum
    cfg.SEARCH.PDARTS.WARMUP_EPOCHS = [10, 10, 10]   # first epochs of each stage that train only the weights (eps_no_archs)
    cfg.SEARCH.PDARTS.NUM_KEEP = [5, 3, 1]           # ops kept per edge after each stage (num_to_keep): 8 -> 5 -> 3 searched,
                                                     # the last 1 is the genotype's derivation
    cfg.SEARCH.PDARTS.SKIP_DROPOUT = [0.1, 0.4, 0.7]  # dropout rate on the skip connections in each stage (--dropout_rate)
    cfg.SEARCH.PDARTS.DROPOUT_DECAY = 0.2   # after the warm-up the rate is SKIP_DROPOUT * exp(-DECAY * epochs since) (scale_factor)


def uses_pdarts(cfg: CN) -> bool:
    """SEARCH.PDARTS.ENABLE, read so that a config from before P-DARTS (no SEARCH.PDARTS) means off."""
    return bool(cfg.SEARCH.get("PDARTS", {}).get("ENABLE", False))


def max_skips_normal(cfg: CN) -> int:
    """The skip-connection limit of the derived normal cell (0 = none): SEARCH.MAX_SKIPS_NORMAL, whose
    -1 means P-DARTS' M = 2 when P-DARTS is on."""
    m = cfg.SEARCH.MAX_SKIPS_NORMAL
    return (2 if cfg.SEARCH.PDARTS.ENABLE else 0) if m < 0 else m


def describe_pdarts(cfg: CN) -> str:
    """' + P-DARTS (depths 5/11/17, ops 8/5/3, ...)' and/or the skip limit, for describe_algorithm."""
    out = ""
    p = cfg.SEARCH.PDARTS
    if p.ENABLE:
        from search_spaces import get_space
        n_ops = [len(get_space(cfg.MODEL.SPACE).primitives)] + list(p.NUM_KEEP[:-1])
        depths = [cfg.MODEL.DEPTH + a for a in p.ADD_LAYERS]
        out += (f" + P-DARTS ({len(depths)} stages: {'/'.join(map(str, depths))} cells, "
                f"{'/'.join(map(str, n_ops))} ops per edge, skip dropout {'/'.join(map(str, p.SKIP_DROPOUT))})")
    m = max_skips_normal(cfg)
    return out + (f", at most {m} skip connections in the normal cell" if m else "")


def validate_pdarts_cfg(cfg: CN) -> None:
    """One line per bad value of SEARCH.PDARTS.* and SEARCH.MAX_SKIPS_NORMAL."""
    from search_spaces import SPACES, get_space

    m = cfg.SEARCH.MAX_SKIPS_NORMAL
    check(isinstance(m, int) and m >= -1,
          f"SEARCH.MAX_SKIPS_NORMAL must be -1 (2 with P-DARTS, else no limit), 0 (no limit) or N >= 1, got {m!r}")
    primitives = get_space(cfg.MODEL.SPACE).primitives if cfg.MODEL.SPACE in SPACES else ()
    if max_skips_normal(cfg):
        check(not primitives or "skip_connect" in primitives,
              f"SEARCH.MAX_SKIPS_NORMAL limits skip connections, but MODEL.SPACE {cfg.MODEL.SPACE!r} has no 'skip_connect'")
    p = cfg.SEARCH.PDARTS
    if not p.ENABLE:
        return
    n = len(p.ADD_LAYERS)
    check(n >= 1, "SEARCH.PDARTS.ADD_LAYERS needs one entry per stage (P-DARTS: [0, 6, 12])")
    for key in ("STAGE_EPOCHS", "WARMUP_EPOCHS", "NUM_KEEP", "SKIP_DROPOUT"):
        check(len(p[key]) == n, f"SEARCH.PDARTS.{key} has {len(p[key])} entries but SEARCH.PDARTS.ADD_LAYERS has {n}: "
                                "give one per stage")
    check(all(isinstance(a, int) and a >= 0 for a in p.ADD_LAYERS),
          f"SEARCH.PDARTS.ADD_LAYERS must be integers >= 0 (cells added to MODEL.DEPTH), got {list(p.ADD_LAYERS)}")
    check(all(isinstance(e, int) and e >= 1 for e in p.STAGE_EPOCHS),
          f"SEARCH.PDARTS.STAGE_EPOCHS must be integers >= 1, got {list(p.STAGE_EPOCHS)}")
    check(cfg.SEARCH.EPOCHS == sum(p.STAGE_EPOCHS),
          f"SEARCH.EPOCHS ({cfg.SEARCH.EPOCHS}) must be the sum of SEARCH.PDARTS.STAGE_EPOCHS {list(p.STAGE_EPOCHS)} "
          f"({sum(p.STAGE_EPOCHS)}) with SEARCH.PDARTS.ENABLE")
    check(all(0 <= w < e for w, e in zip(p.WARMUP_EPOCHS, p.STAGE_EPOCHS)),
          f"SEARCH.PDARTS.WARMUP_EPOCHS {list(p.WARMUP_EPOCHS)} must be >= 0 and below each stage's "
          f"SEARCH.PDARTS.STAGE_EPOCHS {list(p.STAGE_EPOCHS)}, or the alphas of that stage never train")
    check(cfg.SEARCH.ARCH_START_EPOCH == 0,
          "SEARCH.ARCH_START_EPOCH is not used with SEARCH.PDARTS.ENABLE: set the warm-up of each stage in "
          "SEARCH.PDARTS.WARMUP_EPOCHS and leave SEARCH.ARCH_START_EPOCH at 0")
    keep = list(p.NUM_KEEP)
    n_ops = len(primitives) or 8
    check(all(isinstance(k, int) for k in keep) and keep[-1] == 1 and all(a > b for a, b in zip(keep, keep[1:]))
          and keep[0] <= n_ops,
          f"SEARCH.PDARTS.NUM_KEEP {keep} must decrease strictly from at most the {n_ops} ops of the space to 1 "
          "(ops kept per edge after each stage; the last stage ends with the genotype, one op per edge)")
    check(all(0 <= r < 1 for r in p.SKIP_DROPOUT), f"SEARCH.PDARTS.SKIP_DROPOUT rates must be in [0, 1), got {list(p.SKIP_DROPOUT)}")
    check(p.DROPOUT_DECAY >= 0, f"SEARCH.PDARTS.DROPOUT_DECAY must be >= 0, got {p.DROPOUT_DECAY}")
