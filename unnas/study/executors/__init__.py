"""Executors: how a study's jobs reach the processes that train them (``STUDY.EXECUTOR``, ``--executor``).

* ``local`` (:mod:`.local`): worker processes on this machine (``--workers``, torchrun ranks, machines
  sharing the run directory) each claim jobs from the SQLite store (:mod:`unnas.study.runner`).
* ``ray`` (:mod:`.ray_cluster`): a driver submits each job as a Ray task to a cluster.
* ``slurm`` (:mod:`.slurm`): a driver submits job arrays through submitit.

The remote executors share one driver (:mod:`.driver`): it claims jobs in the store, submits them,
collects their results and is the only process that writes the store, so the store never sits on a
file system that several machines write (the tasks write only their own job directory). ``ray`` and
``submitit`` are imported only when their executor runs.

Nothing branches on an executor's name: ``EXECUTORS.get(name)`` gives a class with ``describe``,
``check_launch`` and ``run``; a new one registers here the same way.
"""
from __future__ import annotations

import importlib
from typing import Callable

from unnas.config import ConfigError, check
from unnas.registry import Registry

EXECUTORS = Registry("executor")


class Executor:
    """Runs the unfinished jobs of a prepared study (``prepare_study``) and returns stats."""

    name = ""
    #: printed after Ctrl-C (or SIGTERM) of ``rank_corr.py run``
    interrupt_note = "running jobs were put back in the queue. Rerun the same command (or `run --out DIR`) to resume."

    def describe(self, cfg, workers: int, world: int) -> str:
        """The run line's account of where jobs run (e.g. ``2 workers``)."""
        raise NotImplementedError

    def check_launch(self, workers: int, world: int) -> None:
        """Refuse launch options that do not apply (one line)."""

    def run(self, cfg, run_dir, workers: int = 1, shard=None, wait: bool = False,
            echo: Callable[[str], None] = print, train_fn=None) -> dict:
        raise NotImplementedError


def get_executor(name: str) -> Executor:
    try:
        return EXECUTORS.get(name)()
    except KeyError as exc:
        raise ConfigError(f"STUDY.EXECUTOR: {exc.args[0]}") from None


def import_optional(module: str, package: str, executor: str):
    """``import module``, or one line naming the pip command when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"--executor {executor} needs the {package} package, which cannot be imported here ({exc}); "
                          f"install it with `pip install {package}` (or `pip install -r requirements-cluster.txt`)") from None


def validate_executor_cfg(cfg) -> None:
    s = cfg.STUDY
    check(s.EXECUTOR.strip().lower() in EXECUTORS,
          f"STUDY.EXECUTOR must be one of {', '.join(EXECUTORS.names())}, got {s.EXECUTOR!r}")
    cfg.STUDY.EXECUTOR = EXECUTORS.canonical(s.EXECUTOR)
    check(s.MAX_IN_FLIGHT >= 0, f"STUDY.MAX_IN_FLIGHT must be >= 0, got {s.MAX_IN_FLIGHT}")
    check(isinstance(s.JOBS_PER_DEVICE, int) and s.JOBS_PER_DEVICE >= 0,
          f"STUDY.JOBS_PER_DEVICE must be an integer >= 0 (worker processes per GPU; 0 = --workers), "
          f"got {s.JOBS_PER_DEVICE!r}")
    check(s.RAY.MAX_RETRIES >= 0, f"STUDY.RAY.MAX_RETRIES must be >= 0, got {s.RAY.MAX_RETRIES}")
    check(s.RAY.GPUS_PER_JOB == -1 or s.RAY.GPUS_PER_JOB >= 0,
          f"STUDY.RAY.GPUS_PER_JOB must be -1 (auto) or >= 0, got {s.RAY.GPUS_PER_JOB}")
    sl = s.SLURM
    check(sl.CLUSTER in ("slurm", "local", "debug"), f"STUDY.SLURM.CLUSTER must be slurm, local or debug, got {sl.CLUSTER!r}")
    check(sl.TIME > 0, f"--slurm-time (STUDY.SLURM.TIME, minutes) must be > 0, got {sl.TIME}")
    check(sl.GPUS_PER_JOB >= 0, f"--slurm-gpus-per-job must be >= 0, got {sl.GPUS_PER_JOB}")
    check(sl.ARRAY_PARALLELISM >= 1, f"--slurm-array-parallelism must be >= 1, got {sl.ARRAY_PARALLELISM}")
    check(sl.MAX_ARRAY_SIZE >= 1, f"STUDY.SLURM.MAX_ARRAY_SIZE must be >= 1, got {sl.MAX_ARRAY_SIZE}")
    check(sl.POLL_SECONDS > 0, f"STUDY.SLURM.POLL_SECONDS must be > 0, got {sl.POLL_SECONDS}")
    sbatch_options(sl.EXTRA)


def sbatch_options(extra) -> dict:
    """``--slurm-extra`` items (``KEY=VALUE``, or ``FLAG`` alone) as submitit's
    ``slurm_additional_parameters`` (``#SBATCH --KEY=VALUE`` / ``#SBATCH --FLAG``)."""
    out = {}
    for item in extra:
        key, eq, value = str(item).partition("=")
        key = key.strip().lstrip("-")
        check(bool(key) and " " not in key,
              f"--slurm-extra takes KEY=VALUE (an sbatch option without its dashes, e.g. account=nas), got {item!r}")
        out[key] = value.strip() if eq else True
    return out


from . import local, ray_cluster, slurm  # noqa: E402,F401  (registrations; ray/submitit load lazily)

__all__ = ["EXECUTORS", "Executor", "get_executor", "import_optional", "sbatch_options", "validate_executor_cfg",
           "local", "ray_cluster", "slurm"]
