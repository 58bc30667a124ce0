"""Training functions a study can run: ``train_fn(job, cfg, out_dir) -> result dict``.

``job`` is a :class:`~unnas.study.jobs.Job` (``arch_id``, ``task``, ``seed``, ``genotype``), ``cfg``
the job's config (:func:`unnas.study.config.job_cfg`), ``out_dir`` a directory of its own. The
result must hold ``best`` and ``final`` (the task's primary test metric, higher is better); it may
hold ``metric`` (its name), ``curve`` (a list of per-epoch dicts with ``epoch`` and numbers),
``params``, ``flops`` and ``wall_time``; the runner adds what is missing.

``STUDY.TRAINER`` picks one: ``default`` (the project's trainer for fixed genotypes), ``fake`` (no
training: a deterministic score of the genotype plus seeded noise, or exact values from
``STUDY.FAKE_TABLE``; for tests and dry runs of the engine) or ``package.module:function``.
"""
from __future__ import annotations

import importlib
import json
import math
import random
import time
from pathlib import Path
from typing import Callable

from unnas.config import ConfigError

TrainFn = Callable[..., dict]

# Fake trainer: per-op "quality" and per-task (base, span, noise) of the score -> accuracy map.
_OP_QUALITY = {"none": 0.0, "max_pool_3x3": 0.3, "avg_pool_3x3": 0.3, "skip_connect": 0.45,
               "sep_conv_3x3": 1.0, "sep_conv_5x5": 0.95, "dil_conv_3x3": 0.8, "dil_conv_5x5": 0.75,
               "conv3x3-bn-relu": 1.0, "conv1x1-bn-relu": 0.6, "maxpool3x3": 0.3}   # NAS-Bench-101 vertices
_FAKE_TASKS = {"cls": (88.0, 6.0, 0.4), "rot": (90.0, 4.0, 0.5), "col": (30.0, 0.8, 0.08),
               "jig": (68.0, 10.0, 1.2), "seg": (50.0, 8.0, 1.0)}


def fake_score(genotype) -> float:
    ops = genotype.op_names()   # every space's architecture lists its ops so
    return sum(_OP_QUALITY.get(op, 0.5) for op in ops) / max(len(ops), 1)


def fake_train(job, cfg, out_dir) -> dict:
    """Deterministic stand-in for training (no network): see the module doc."""
    t0 = time.time()
    _fake_log(cfg, "start", job)
    seconds = float(cfg.STUDY.FAKE_SECONDS)
    epochs = int(cfg.TRAIN.EPOCHS)
    if cfg.STUDY.FAKE_TABLE:
        table = json.loads(Path(cfg.STUDY.FAKE_TABLE).read_text())
        try:
            acc = float(table[job.task][job.arch_id])
        except KeyError:
            raise ConfigError(f"STUDY.FAKE_TABLE has no value for {job.key}") from None
    else:
        base, span, noise = _FAKE_TASKS.get(job.task, (50.0, 10.0, 1.0))
        rng = random.Random(f"fake/{job.key}")
        acc = base + span * fake_score(job.genotype) + rng.gauss(0.0, noise)
    # Like the real trainer, a job that takes time resumes from its last completed "epoch": a
    # checkpoint of its own in the job directory (what the executors' resume tests look at).
    ckpt = Path(out_dir) / FAKE_CHECKPOINT if seconds and out_dir is not None else None
    done = 0
    if ckpt is not None and ckpt.is_file():
        try:
            done = min(int(json.loads(ckpt.read_text())["epoch"]), epochs)
        except (ValueError, KeyError, TypeError):
            done = 0
        if done:
            _fake_log(cfg, "resume", job, f"epoch {done}")
    curve = []
    for e in range(1, epochs + 1):
        if seconds and e > done:
            time.sleep(seconds / epochs)
        curve.append({"epoch": e, "test_top1": acc - (acc / 4) * (0.5 ** e - 0.5 ** epochs), "lr": 0.1})
        if ckpt is not None and e > done:
            from unnas.utils.io import atomic_write_text
            atomic_write_text(ckpt, json.dumps({"epoch": e}))
    _fake_log(cfg, "end", job)
    return {"best": max(c["test_top1"] for c in curve), "final": curve[-1]["test_top1"], "metric": "top1",
            "curve": curve, "params": 0, "flops": 0, "wall_time": time.time() - t0, "trainer": "fake"}


def _fake_log(cfg, what: str, job, extra: str = "") -> None:
    if cfg.STUDY.FAKE_LOG:
        import os
        with open(cfg.STUDY.FAKE_LOG, "a") as f:   # one short O_APPEND write per line: atomic
            f.write(f"{what} {job.key} {os.getpid()}{' ' + extra if extra else ''}\n")


def default_train(job, cfg, out_dir) -> dict:
    """The project's fixed-genotype trainer (:func:`unnas.train.train`) on the job's genotype.

    It resumes from the job directory's last checkpoint, so a job taken over from a killed worker
    continues where that worker's last completed epoch left off (exactly, by the trainer's design).
    Unless ``STUDY.KEEP_CHECKPOINTS``, the runner deletes the checkpoints once the job's result is
    recorded (:data:`JOB_CHECKPOINTS`).
    """
    from unnas.train import train

    from .config import trainer_cfg

    tcfg = trainer_cfg(cfg, job.genotype, out_dir)
    result = train(tcfg, genotype=job.genotype, out_dir=out_dir, progress=False, resume=True, tensorboard=True)
    if not cfg.STUDY.KEEP_CHECKPOINTS:   # the runner deletes them once the result is in the store
        result["checkpoint_last"] = result["checkpoint_best"] = None
    return result


# What a job leaves that only serves its resume; deleted after the result is recorded unless
# STUDY.KEEP_CHECKPOINTS (deleting earlier would make a kill before the record retrain the whole job).
FAKE_CHECKPOINT = "fake_checkpoint.json"   # the fake trainer's "epoch" counter (only when STUDY.FAKE_SECONDS > 0)
JOB_CHECKPOINTS = ("checkpoint_last.pt", "checkpoint_best.pt", FAKE_CHECKPOINT)


def resolve_trainer(spec: str | TrainFn) -> TrainFn:
    if callable(spec):
        return spec
    if spec in ("", "default"):
        return default_train
    if spec == "fake":
        return fake_train
    if ":" not in spec:
        raise ConfigError(f"STUDY.TRAINER must be default, fake or package.module:function, got {spec!r}")
    mod, _, fn = spec.partition(":")
    try:
        return getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"STUDY.TRAINER {spec}: cannot import it ({exc})") from None


def check_result(result, job) -> dict:
    """The trainer's result as a plain dict with finite ``best``/``final``; a clear error otherwise."""
    if not isinstance(result, dict):
        raise TypeError(f"trainer returned {type(result).__name__} for {job.key}; expected a dict")
    for k in ("best", "final"):
        v = result.get(k)
        if v is None or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            raise ValueError(f"trainer result for {job.key} has no finite {k!r} ({v!r})")
    return result
