"""What one evaluation of the evolution runs: ``evaluator(job, cfg, out_dir) -> result`` (the
study's training-function signature, so the study's workers run it; ``job.task`` is the candidate
key, ``cfg`` the run's config, ``out_dir`` the job's own directory).

``default`` (:func:`evaluate_candidate`): pretrain the fixed network (``MODEL.GENOTYPE``) on the
candidate's task and weights for its epochs, from scratch, with the run's training recipe, then
the trunk's fitness (``FITNESS.*``) on the test split; with ``probe`` also a linear probe (task cls,
trunk frozen, ``ELO.PROBE_EPOCHS``) whose top-1 only the report reads. Both trainings resume from
their checkpoints in the job directory, so a job taken over from a killed worker continues where it
stopped (exactly, by the trainer's design). A pretraining whose loss stops being finite gets the
worst fitness any representation can have (:func:`~unnas.elo.fitness.worst_fitness`) and no probe.

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
from pathlib import Path
from typing import Callable

from unnas.config import ConfigError

from .jobs import load_candidate

CHECKPOINTS = ("checkpoint_last.pt", "checkpoint_best.pt")


def _train_cfg(cfg, keys: dict):
    """The fixed-genotype trainer's config from the run's config (its training keys), with ``keys``
    (``{"TASK.NAME": "cls", ...}``) set, validated and frozen."""
    from unnas.train.config import train_defaults, validate_train_cfg

    out = train_defaults()

    def copy(dst, src):
        for k in dst:
            if k in src:
                if hasattr(dst[k], "items"):
                    copy(dst[k], src[k])
                else:
                    dst[k] = src[k]
    copy(out, cfg)
    for key, value in keys.items():
        *path, leaf = key.split(".")
        node = out
        for part in path:
            node = node[part]
        node[leaf] = value
    validate_train_cfg(out)
    out.freeze()
    return out


def pretrain_cfg(cfg, candidate, out_dir):
    """The candidate's pretraining from scratch (its task, weights and epochs) with the run's recipe."""
    keys = {"TASK.NAME": candidate.task, "TRAIN.EPOCHS": candidate.epochs, "FITNESS.ENABLED": True,
            "OUT_DIR": str(out_dir), "TRAIN.INIT_FROM": "", "TRAIN.LINEAR_PROBE": False}
    if candidate.task == "multi":
        keys["TASK.MULTI.WEIGHTS"] = [float(w) for w in candidate.weights]
    if cfg.OPTIM.WARMUP_EPOCHS >= candidate.epochs:
        keys["OPTIM.WARMUP_EPOCHS"] = 0
    return _train_cfg(cfg, keys)


def probe_cfg(cfg, checkpoint, out_dir):
    """A linear probe (task cls, the trunk of ``checkpoint`` frozen) with the run's recipe."""
    e = cfg.ELO
    keys = {"TASK.NAME": "cls", "TRAIN.INIT_FROM": str(checkpoint), "TRAIN.LINEAR_PROBE": True,
            "TRAIN.EPOCHS": e.PROBE_EPOCHS, "FITNESS.ENABLED": False, "MODEL.AUX": False, "OUT_DIR": str(out_dir),
            "TRAIN.PRECISE_BN_IMAGES": 0}
    if e.PROBE_LR > 0:
        keys["OPTIM.LR"], keys["OPTIM.LR_MIN"] = float(e.PROBE_LR), min(cfg.OPTIM.LR_MIN, float(e.PROBE_LR))
    if cfg.OPTIM.WARMUP_EPOCHS >= e.PROBE_EPOCHS:
        keys["OPTIM.WARMUP_EPOCHS"] = 0
    return _train_cfg(cfg, keys)


def evaluate_candidate(job, cfg, out_dir) -> dict:
    """The default evaluator (see the module doc)."""
    from unnas.train import NonFiniteLossError, train

    from .fitness import worst_fitness

    t0 = time.time()
    out_dir = Path(out_dir)
    cand = load_candidate(cfg, job.task)
    pre = pretrain_cfg(cfg, cand, out_dir)
    result = {"key": cand.key, "task": cand.task, "weights": list(cand.weights), "diverged": False, "probe_top1": None}
    try:
        summary = train(pre, out_dir=out_dir, progress=False, resume=True, tensorboard=False)
        result["fitness"] = float(summary["final_test"]["fitness"])
        result["pretrain"] = summary["final_test"]
    except NonFiniteLossError as exc:
        result.update(fitness=worst_fitness(cfg.FITNESS.CLUSTERS, cfg.FITNESS.ZIPF_S), diverged=True,
                      error=" ".join(str(exc).split())[:300])
    if cand.probe and not result["diverged"]:
        probe_dir = out_dir / "probe"
        probe = train(probe_cfg(cfg, out_dir / CHECKPOINTS[0], probe_dir), out_dir=probe_dir, progress=False,
                      resume=True, tensorboard=False)
        result["probe_top1"] = float(probe["final"])
        if not cfg.STUDY.KEEP_CHECKPOINTS:   # the pretraining's are deleted by the runner once the result is in
            for name in CHECKPOINTS:
                (probe_dir / name).unlink(missing_ok=True)
    result.update(best=-result["fitness"], final=-result["fitness"], metric="-fitness", wall_time=time.time() - t0)
    return result


def fake_evaluate(job, cfg, out_dir) -> dict:
    """No training: fitness = squared distance of the relative weights from a fixed target
    (decreasing weights d, d-1, ..., 1, normalised) plus a small jitter fixed by the key; the
    "probe" falls with the fitness, with up to 2 points of jitter. Deterministic."""
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
    return {"key": cand.key, "task": cand.task, "weights": list(cand.weights), "fitness": fitness,
            "probe_top1": 60.0 - 40.0 * fitness + (code // 1000 % 100) / 50, "diverged": False, "best": -fitness, "final": -fitness,
            "metric": "-fitness", "wall_time": 0.0}


def resolve_evaluator(spec: str | Callable) -> Callable:
    """ELO.EVALUATOR: default, fake, or package.module:function (a callable passes through)."""
    if callable(spec):
        return spec
    if spec in ("", "default"):
        return evaluate_candidate
    if spec == "fake":
        return fake_evaluate
    if ":" not in spec:
        raise ConfigError(f"ELO.EVALUATOR must be default, fake or package.module:function, got {spec!r}")
    mod, _, fn = spec.partition(":")
    try:
        return getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"ELO.EVALUATOR {spec}: cannot import it ({exc})") from None


def fitness_of(result: dict) -> float:
    f = result.get("fitness")
    return float(f) if f is not None and math.isfinite(float(f)) else float("nan")


__all__ = ["evaluate_candidate", "fake_evaluate", "resolve_evaluator", "pretrain_cfg", "probe_cfg", "fitness_of"]
