"""What one evaluation of the evolution runs: ``evaluator(job, cfg, out_dir) -> result`` (the
study's training-function signature, so the study's workers run it; ``job.task`` is the candidate
key, ``cfg`` the run's config, ``out_dir`` the job's own directory).

``default``: the evaluator of the network ``ELO.NETWORK`` names (:data:`NETWORKS`, the one place
that choice is made):

* ``fixed`` (:func:`evaluate_candidate`): pretrain the fixed network (``MODEL.GENOTYPE``) on the
  candidate's task and weights for its epochs, from scratch, with the run's training recipe, then
  the trunk's fitness (``FITNESS.*``) on the test split; with ``probe`` also a linear probe (task
  cls, trunk frozen, ``ELO.PROBE_EPOCHS``) and with ``finetune`` a fine-tune (task cls, every
  weight trained, ``ELO.FINETUNE_EPOCHS``), both through ``tools/train.py``'s ``TRAIN.INIT_FROM``
  path, whose top-1 only the report reads. Every training resumes from its checkpoints in the job
  directory, so a job taken over from a killed worker continues where it stopped (exactly, by the
  trainer's design). A pretraining whose loss stops being finite gets the worst fitness any
  representation can have (:func:`~unnas.elo.fitness.worst_fitness`) and no probe.
* ``supernet`` (:func:`unnas.elo.supernet.evaluate_supernet_candidate`): a short DARTS search
  instead of the pretraining; the fitness and the probe read the supernet trunk's features.

``fake`` (:func:`fake_evaluate`): no training; a smooth function of the relative weights, for
tests and dry runs of the machinery.

The result holds ``fitness`` (lower is better) and, for the store's higher-is-better columns,
``best`` = ``final`` = -fitness.
"""
from __future__ import annotations

import importlib
import json
import math
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from unnas.config import ConfigError

from .jobs import load_candidate

CHECKPOINTS = ("checkpoint_last.pt", "checkpoint_best.pt")


def derived_cfg(defaults, cfg, keys: dict, validate):
    """Another program's config from the run's: ``defaults`` (that program's, e.g. the trainer's),
    every key of it that the run's config also has taken from the run's, then ``keys``
    (``{"TASK.NAME": "cls", ...}``) set; validated and frozen."""
    def copy(dst, src):
        for k in dst:
            if k in src:
                if hasattr(dst[k], "items"):
                    copy(dst[k], src[k])
                else:
                    dst[k] = src[k]
    out = defaults
    copy(out, cfg)
    for key, value in keys.items():
        *path, leaf = key.split(".")
        node = out
        for part in path:
            node = node[part]
        node[leaf] = value
    validate(out)
    out.freeze()
    return out


def _train_cfg(cfg, keys: dict):
    """The fixed-genotype trainer's config from the run's config (its training keys) and ``keys``."""
    from unnas.train.config import train_defaults, validate_train_cfg

    return derived_cfg(train_defaults(), cfg, keys, validate_train_cfg)


def pretrain_cfg(cfg, candidate, out_dir):
    """The candidate's pretraining from scratch (its task, weights and epochs) with the run's recipe."""
    keys = {"TASK.NAME": candidate.task, "TRAIN.EPOCHS": candidate.epochs, "FITNESS.ENABLED": True,
            "OUT_DIR": str(out_dir), "TRAIN.INIT_FROM": "", "TRAIN.LINEAR_PROBE": False}
    if candidate.task == "multi":
        keys["TASK.MULTI.WEIGHTS"] = [float(w) for w in candidate.weights]
    if cfg.OPTIM.WARMUP_EPOCHS >= candidate.epochs:
        keys["OPTIM.WARMUP_EPOCHS"] = 0
    return _train_cfg(cfg, keys)


def _labelled_cfg(cfg, checkpoint, out_dir, linear_probe: bool, epochs: int, lr: float):
    """Task cls on the labels from the trunk of ``checkpoint`` (``tools/train.py --probe`` /
    ``--finetune``: TRAIN.INIT_FROM) for ``epochs`` at ``lr`` (0 = OPTIM.LR), the run's recipe otherwise."""
    keys = {"TASK.NAME": "cls", "TRAIN.INIT_FROM": str(checkpoint), "TRAIN.LINEAR_PROBE": linear_probe,
            "TRAIN.EPOCHS": int(epochs), "FITNESS.ENABLED": False, "MODEL.AUX": False, "OUT_DIR": str(out_dir),
            "TRAIN.PRECISE_BN_IMAGES": 0}
    if lr > 0:
        keys["OPTIM.LR"], keys["OPTIM.LR_MIN"] = float(lr), min(cfg.OPTIM.LR_MIN, float(lr))
    if cfg.OPTIM.WARMUP_EPOCHS >= epochs:
        keys["OPTIM.WARMUP_EPOCHS"] = 0
    return _train_cfg(cfg, keys)


def probe_cfg(cfg, checkpoint, out_dir):
    """A linear probe (task cls, the trunk of ``checkpoint`` frozen) with the run's recipe."""
    return _labelled_cfg(cfg, checkpoint, out_dir, True, cfg.ELO.PROBE_EPOCHS, cfg.ELO.PROBE_LR)


def finetune_cfg(cfg, checkpoint, out_dir, epochs: int):
    """A fine-tune (task cls, the trunk of ``checkpoint`` trained with a new head) with the run's recipe."""
    return _labelled_cfg(cfg, checkpoint, out_dir, False, epochs, cfg.ELO.FINETUNE_LR)


def _labelled_top1(cfg, run_cfg, out_dir: Path) -> float:
    """Train ``run_cfg`` (a probe or fine-tune) in ``out_dir`` (resuming) and return its final test
    top-1; its checkpoints are deleted unless STUDY.KEEP_CHECKPOINTS (a rerun then repeats it
    exactly: the run is deterministic)."""
    from unnas.train import train

    summary = train(run_cfg, out_dir=out_dir, progress=False, resume=True, tensorboard=False)
    if not cfg.STUDY.KEEP_CHECKPOINTS:   # the pretraining's are deleted by the runner once the result is in
        for name in CHECKPOINTS:
            (out_dir / name).unlink(missing_ok=True)
    return float(summary["final"])


def evaluate_candidate(job, cfg, out_dir) -> dict:
    """The default evaluator (see the module doc)."""
    from unnas.train import NonFiniteLossError, train

    from .fitness import worst_fitness

    t0 = time.time()
    out_dir = Path(out_dir)
    cand = load_candidate(cfg, job.task)
    pre = pretrain_cfg(cfg, cand, out_dir)
    result = {"key": cand.key, "task": cand.task, "weights": list(cand.weights), "diverged": False, "probe_top1": None,
              "finetune_top1": None}
    try:
        summary = train(pre, out_dir=out_dir, progress=False, resume=True, tensorboard=False)
        result["fitness"] = float(summary["final_test"]["fitness"])
        result["pretrain"] = summary["final_test"]
    except NonFiniteLossError as exc:
        result.update(fitness=worst_fitness(cfg.FITNESS.CLUSTERS, cfg.FITNESS.ZIPF_S), diverged=True,
                      error=" ".join(str(exc).split())[:300])
    if not result["diverged"]:
        trunk = out_dir / CHECKPOINTS[0]
        if cand.probe:
            result["probe_top1"] = _labelled_top1(cfg, probe_cfg(cfg, trunk, out_dir / "probe"), out_dir / "probe")
        if cand.finetune:
            result["finetune_top1"] = _labelled_top1(cfg, finetune_cfg(cfg, trunk, out_dir / "finetune", cand.finetune),
                                                     out_dir / "finetune")
    result.update(best=-result["fitness"], final=-result["fitness"], metric="-fitness", wall_time=time.time() - t0)
    return result


def fake_evaluate(job, cfg, out_dir) -> dict:
    """No training: fitness = squared distance of the relative weights from a fixed target
    (decreasing weights d, d-1, ..., 1, normalised) plus a small jitter fixed by the key; the
    "probe" falls with the fitness, with up to 2 points of jitter, and a candidate that fine-tunes
    gets a "fine-tune" 10 points above its probe. Deterministic."""
    cand = load_candidate(cfg, job.task)
    d = len(cfg.TASK.MULTI.TASKS)
    target = [(d - i) / (d * (d + 1) / 2) for i in range(d)]
    if cand.task == "multi":
        total = sum(cand.weights) or 1.0
        w = [x / total for x in cand.weights]
    else:   # a single task: all its weight on it
        w = [1.0 if t == cand.task else 0.0 for t in cfg.TASK.MULTI.TASKS]
    code = zlib.crc32(cand.key.encode())
    fitness = sum((a - b) ** 2 for a, b in zip(w, target)) + (code % 1000) / 1e6
    (Path(out_dir) / "fake.json").write_text(json.dumps({"key": cand.key, "fitness": fitness}))
    probe = 60.0 - 40.0 * fitness + (code // 1000 % 100) / 50
    return {"key": cand.key, "task": cand.task, "weights": list(cand.weights), "fitness": fitness,
            "probe_top1": probe, "finetune_top1": probe + 10.0 if cand.finetune else None, "diverged": False,
            "best": -fitness, "final": -fitness, "metric": "-fitness", "wall_time": 0.0}


@dataclass(frozen=True)
class EvaluationNetwork:
    """What the default evaluator trains for ELO.NETWORK."""
    evaluator: str       # its evaluator, "package.module:function" (imported when chosen: the supernet's needs
    #                      the search package)
    epochs_key: str      # the config key of a candidate's epochs (of pretraining, or of search)
    finetunes: bool      # whether the report can fine-tune its trunks (tools/train.py's fine-tune path
    #                      loads the trunks of fixed networks only)


NETWORKS = {
    "fixed": EvaluationNetwork("unnas.elo.evaluate:evaluate_candidate", "TRAIN.EPOCHS", True),
    "supernet": EvaluationNetwork("unnas.elo.supernet:evaluate_supernet_candidate", "SEARCH.EPOCHS", False),
}


def evaluation_network(cfg) -> EvaluationNetwork:
    try:
        return NETWORKS[str(cfg.ELO.NETWORK)]
    except KeyError:
        raise ConfigError(f"ELO.NETWORK must be {' or '.join(NETWORKS)}, got {cfg.ELO.NETWORK!r}") from None


def candidate_epochs(cfg) -> int:
    """An evaluation's epochs (TRAIN.EPOCHS of the fixed network, SEARCH.EPOCHS of the supernet)."""
    node = cfg
    for part in evaluation_network(cfg).epochs_key.split("."):
        node = node[part]
    return int(node)


def _import(spec: str, key: str) -> Callable:
    mod, _, fn = spec.partition(":")
    try:
        return getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{key} {spec}: cannot import it ({exc})") from None


def resolve_evaluator(spec: str | Callable, network: str = "fixed") -> Callable:
    """ELO.EVALUATOR: default (the evaluator of ELO.NETWORK ``network``), fake, or
    package.module:function (a callable passes through)."""
    if callable(spec):
        return spec
    if spec in ("", "default"):
        if network not in NETWORKS:
            raise ConfigError(f"ELO.NETWORK must be {' or '.join(NETWORKS)}, got {network!r}")
        return _import(NETWORKS[network].evaluator, "ELO.NETWORK")
    if spec == "fake":
        return fake_evaluate
    if ":" not in spec:
        raise ConfigError(f"ELO.EVALUATOR must be default, fake or package.module:function, got {spec!r}")
    return _import(spec, "ELO.EVALUATOR")


def evaluator_of(cfg, override: str | Callable | None = None) -> Callable:
    """The run's evaluator: ``override`` (a callable or an ELO.EVALUATOR string) or ELO.EVALUATOR,
    for the network of ELO.NETWORK."""
    return resolve_evaluator(override if override is not None else cfg.ELO.EVALUATOR, cfg.ELO.NETWORK)


def fitness_of(result: dict) -> float:
    f = result.get("fitness")
    return float(f) if f is not None and math.isfinite(float(f)) else float("nan")


__all__ = ["evaluate_candidate", "fake_evaluate", "resolve_evaluator", "evaluator_of", "NETWORKS", "evaluation_network",
           "candidate_epochs", "derived_cfg", "pretrain_cfg", "probe_cfg", "finetune_cfg", "fitness_of"]
