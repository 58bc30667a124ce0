"""Defaults and validation of ``tools/evolve_loss.py`` (the ELo loss-weight evolution).

The config is the fixed-genotype trainer's (``unnas/train/config.py``: what every evaluation
trains, with ``TASK.NAME multi`` and ``TASK.MULTI.TASKS`` the tasks whose weights evolve) plus
``ELO`` (the strategies and their budget), ``STUDY`` (the job store's leases, as in a study:
docs/rank_corr.md) and the search's ``SEARCH`` and ``ARCH`` (``unnas/search/config.py``; read
only with ``ELO.NETWORK supernet``, when an evaluation is a short DARTS search). The defaults are a tiny evolution on the embedded synthetic data that finishes
in minutes on 2 CPU cores; ``experiments/elo/cifar10_mini.yaml`` is the real-data run.
"""
from __future__ import annotations

import hashlib

from fvcore.common.config import CfgNode as CN

from unnas.config import ConfigError, check

# Keys that do not change what an evaluation computes: a resumed evolution may change them.
_NOT_EVALUATION = ("OUT_DIR", "DEVICE", "NUM_THREADS", "LOG_PERIOD", "DATA.ROOT", "DATA.NUM_WORKERS", "DATA.DOWNLOAD",
                   "STUDY.", "ELO.BOOTSTRAP")


def evolve_defaults() -> CN:
    from unnas.search.config import search_defaults
    from unnas.train.config import train_defaults

    cfg = train_defaults()
    cfg.TASK.NAME = "multi"          # every candidate trains the multi task of TASK.MULTI.TASKS with its weights
    cfg.MODEL.GENOTYPE = "DARTS_V2"  # the fixed network every evaluation trains (zoo name, file or Genotype(...))
    cfg.MODEL.WIDTH = 4
    cfg.MODEL.DEPTH = 3
    cfg.DATA.SYNTHETIC.NUM_TRAIN = 256
    cfg.DATA.SYNTHETIC.NUM_TEST = 128
    cfg.DATA.MAX_TRAIN = 0
    cfg.DATA.MAX_TEST = 0
    cfg.TRAIN.EPOCHS = 1             # a short pretraining per candidate
    cfg.TRAIN.BATCH_SIZE = 32
    cfg.FITNESS.ENABLED = True       # the evaluation's fitness (the evaluator sets it on in any case)
    cfg.FITNESS.CLUSTERS = 10
    cfg.NUM_THREADS = 1              # torch threads per worker; parallelise with --workers instead (as a study)

    cfg.ELO = CN()
    cfg.ELO.STRATEGIES = ["cmaes", "tournament", "random", "grid"]   # unnas/elo/strategies.py
    cfg.ELO.BUDGET = 8               # evaluations per strategy (every strategy gets the same)
    cfg.ELO.POPULATION = 4           # candidates per generation (CMA-ES' lambda); a generation runs in parallel
    cfg.ELO.SEED = 0                 # the strategies' draws (each strategy its own stream)
    cfg.ELO.CMA_SIGMA = 0.3          # CMA-ES: initial step size in [0, 1]^d, from the mean 0.5
    cfg.ELO.TOURNAMENT_SIZE = 3      # tournament selection: individuals per tournament
    cfg.ELO.EVALUATOR = "default"    # default (train, then the fitness) | fake (no training) | package.module:function
    cfg.ELO.NETWORK = "fixed"        # what the default evaluator trains: fixed (MODEL.GENOTYPE, TRAIN.EPOCHS) |
    #                                  supernet (a DARTS search of SEARCH.EPOCHS; the fitness and the probe read the
    #                                  supernet trunk's features; the goal is a search objective)
    cfg.ELO.PROBE = True             # also linear-probe every evaluated trunk on the labels (report only; the
    #                                  strategies never see it): the fitness-vs-probe rank correlation
    cfg.ELO.PROBE_EPOCHS = 1
    cfg.ELO.PROBE_LR = 0.0           # the probe's OPTIM.LR; 0 = OPTIM.LR
    cfg.ELO.FINAL_EPOCHS = 0         # pretraining epochs of the report's runs (single tasks, equal weights, each
    #                                  strategy's best); 0 = an evaluation's (TRAIN.EPOCHS, or SEARCH.EPOCHS)
    cfg.ELO.FINETUNE_EPOCHS = 0      # also fine-tune the report's trunks on the labels (every weight trained, as
    #                                  tools/train.py --finetune) for this many epochs; 0 = no fine-tune
    cfg.ELO.FINETUNE_LR = 0.0        # the fine-tune's OPTIM.LR; 0 = OPTIM.LR
    cfg.ELO.BOOTSTRAP = 1000         # bootstrap resamples of the correlation's 95% interval (0 = none)

    cfg.STUDY = CN()                 # the job store (unnas/study/store.py), as a study's
    cfg.STUDY.LEASE_SECONDS = 900.0  # a running evaluation silent this long is claimed again
    cfg.STUDY.HEARTBEAT_SECONDS = 30.0
    cfg.STUDY.MAX_ATTEMPTS = 3       # claims of one evaluation before it is marked failed
    cfg.STUDY.JOURNAL = "wal"        # wal (one host) | delete (network file systems)
    cfg.STUDY.EPOCH_LOG = False      # print each evaluation's per-epoch lines
    cfg.STUDY.KEEP_CHECKPOINTS = False  # keep each evaluation's checkpoints once its result is recorded

    search = search_defaults()       # ELO.NETWORK supernet: the search's keys (the weights' OPTIM, MODEL, DATA,
    cfg.SEARCH = search.SEARCH       # TASK and SEED are this config's own)
    cfg.ARCH = search.ARCH
    cfg.SEARCH.EPOCHS = 1            # a short search per candidate
    del cfg.SEARCH["NUM_THREADS"]    # NUM_THREADS sets the threads of every evaluation

    cfg.OUT_DIR = "runs/elo/synthetic"
    return cfg


def validate_evolve_cfg(cfg: CN) -> None:
    from unnas.tasks import canonical_task_name
    from unnas.tasks.multi import sub_task_names
    from unnas.train.config import validate_train_cfg

    from .strategies import STRATEGIES

    validate_train_cfg(cfg)
    check(canonical_task_name(cfg.TASK.NAME) == "multi",
          f"TASK.NAME must be multi (the evolution weighs the tasks of TASK.MULTI.TASKS), got {cfg.TASK.NAME!r}")
    names = sub_task_names(cfg.TASK.MULTI.TASKS)
    check(len(names) >= 2, f"TASK.MULTI.TASKS lists {len(names)} task; the evolution weighs at least 2")
    check(not cfg.TASK.MULTI.WEIGHTS, f"TASK.MULTI.WEIGHTS is set per candidate by the evolution; leave it [] "
                                      f"(got {list(cfg.TASK.MULTI.WEIGHTS)})")
    check(not cfg.TRAIN.INIT_FROM and not cfg.TRAIN.LINEAR_PROBE,
          "TRAIN.INIT_FROM / TRAIN.LINEAR_PROBE: every evaluation pretrains from scratch (ELO.PROBE probes it); "
          "leave them unset")
    e = cfg.ELO
    check(len(e.STRATEGIES) >= 1, "ELO.STRATEGIES is empty; name at least one of " + ", ".join(STRATEGIES.names()))
    canonical = []
    for name in e.STRATEGIES:
        try:
            canonical.append(STRATEGIES.canonical(str(name)))
        except KeyError as exc:
            raise ConfigError(f"ELO.STRATEGIES: {exc.args[0]}") from None
    check(len(set(canonical)) == len(canonical), f"ELO.STRATEGIES lists a strategy twice: {list(e.STRATEGIES)}")
    cfg.ELO.STRATEGIES = canonical
    check(e.BUDGET >= 1, f"ELO.BUDGET must be >= 1 evaluation per strategy, got {e.BUDGET}")
    check(e.POPULATION >= 2, f"ELO.POPULATION must be >= 2 candidates per generation, got {e.POPULATION}")
    check(e.POPULATION >= 4 or "cmaes" not in canonical,
          f"ELO.POPULATION {e.POPULATION}: CMA-ES needs at least 4 candidates per generation (with fewer it has one "
          "parent and no rank-mu update, and cmaes divides by zero); raise ELO.POPULATION or drop cmaes")
    check(e.CMA_SIGMA > 0, f"ELO.CMA_SIGMA must be > 0, got {e.CMA_SIGMA}")
    check(e.TOURNAMENT_SIZE >= 1, f"ELO.TOURNAMENT_SIZE must be >= 1, got {e.TOURNAMENT_SIZE}")
    check(e.PROBE_EPOCHS >= 1, f"ELO.PROBE_EPOCHS must be >= 1, got {e.PROBE_EPOCHS}")
    check(e.PROBE_LR >= 0, f"ELO.PROBE_LR must be >= 0 (0 = OPTIM.LR), got {e.PROBE_LR}")
    check(e.FINAL_EPOCHS >= 0, f"ELO.FINAL_EPOCHS must be >= 0 (0 = an evaluation's epochs), got {e.FINAL_EPOCHS}")
    check(e.FINETUNE_EPOCHS >= 0, f"ELO.FINETUNE_EPOCHS must be >= 0 (0 = no fine-tune), got {e.FINETUNE_EPOCHS}")
    check(e.FINETUNE_LR >= 0, f"ELO.FINETUNE_LR must be >= 0 (0 = OPTIM.LR), got {e.FINETUNE_LR}")
    from .evaluate import evaluation_network
    network = evaluation_network(cfg)
    check(network.finetunes or e.FINETUNE_EPOCHS == 0,
          f"ELO.FINETUNE_EPOCHS {e.FINETUNE_EPOCHS}: the report fine-tunes trunks through tools/train.py, which loads "
          f"fixed networks only, not the {e.NETWORK} of ELO.NETWORK; set ELO.FINETUNE_EPOCHS 0")
    if e.NETWORK == "supernet":
        from .supernet import check_search_cfg
        check_search_cfg(cfg)
    check(e.BOOTSTRAP >= 0, f"ELO.BOOTSTRAP must be >= 0, got {e.BOOTSTRAP}")
    s = cfg.STUDY
    check(s.LEASE_SECONDS > 0 and 0 < s.HEARTBEAT_SECONDS < s.LEASE_SECONDS,
          f"need 0 < STUDY.HEARTBEAT_SECONDS ({s.HEARTBEAT_SECONDS}) < STUDY.LEASE_SECONDS ({s.LEASE_SECONDS})")
    check(s.MAX_ATTEMPTS >= 1, "STUDY.MAX_ATTEMPTS must be >= 1")
    check(s.JOURNAL in ("wal", "delete"), f"STUDY.JOURNAL must be wal or delete, got {s.JOURNAL!r}")
    from .evaluate import resolve_evaluator
    resolve_evaluator(e.EVALUATOR, e.NETWORK)


def _inert_keys(cfg: CN) -> tuple:
    """Keys that change nothing an evaluation computes, given the config's other keys: left out of
    the fingerprint, so a run may change them and a run made before they existed keeps its
    fingerprint. The search's keys of a fixed-network evolution; the fine-tune's without one."""
    out = ()
    if cfg.ELO.NETWORK == "fixed":
        out += ("ELO.NETWORK", "SEARCH.", "ARCH.")
    if cfg.ELO.FINETUNE_EPOCHS == 0:
        out += ("ELO.FINETUNE_EPOCHS", "ELO.FINETUNE_LR")
    return out


def _evaluation_items(cfg: CN) -> dict:
    from unnas.config import _flat
    left_out = _NOT_EVALUATION + _inert_keys(cfg)
    return {k: v for k, v in _flat(cfg).items()
            if not any(k == n or (n.endswith(".") and k.startswith(n)) for n in left_out)}


def fingerprint(cfg: CN) -> str:
    """Hash of everything that changes which candidates are drawn and what an evaluation computes."""
    return hashlib.sha1(repr(sorted((k, repr(v)) for k, v in _evaluation_items(cfg).items())).encode()).hexdigest()[:16]


def describe_change(stored: str, cfg: CN) -> str:
    """The evaluation keys that differ between a run's stored config (YAML) and ``cfg``, on one line."""
    old = evolve_defaults()
    try:
        old.merge_from_other_cfg(CN.load_cfg(stored))
    except Exception:   # a stored config from another version: say so instead of a diff
        return "its stored config cannot be compared with this version's keys"
    a, b = _evaluation_items(old), _evaluation_items(cfg)
    diff = [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return ", ".join(diff) or "no key differs; the store was made by another version of the fingerprint"


def worker_cfg(cfg: CN) -> CN:
    """The config the study's workers (unnas.study.runner) run with: this one, plus the empty
    TASK_RECIPES they read (an evolution has no per-task recipes)."""
    out = cfg.clone()
    out.defrost()
    out.TASK_RECIPES = CN()
    out.freeze()
    return out
