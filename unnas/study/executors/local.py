"""``--executor local`` (the default): worker processes claim jobs from the store (unnas/study/runner.py).

``STUDY.JOBS_PER_DEVICE`` J > 0 on a machine with GPUs starts J workers per GPU (each pinned to its
device) instead of ``--workers``: a small CIFAR network's kernels leave a GPU idle between them, and
several independent jobs on one GPU fill those gaps (``unnas.study.runner.local_worker_plan``).
"""
from __future__ import annotations

from . import EXECUTORS, Executor


@EXECUTORS.register("local")
class LocalExecutor(Executor):
    name = "local"

    def describe(self, cfg, workers: int, world: int) -> str:
        from unnas.study.runner import _device_count, local_worker_plan
        devices, _ = local_worker_plan(cfg, workers, _device_count(), world)
        gpus = sorted({d for d in devices if d is not None})
        where = f" on {', '.join(gpus)}" if gpus else ""
        return f"{len(devices) * world} workers{where}"

    def run(self, cfg, run_dir, workers=1, shard=None, wait=False, echo=print, train_fn=None) -> dict:
        from unnas.study.runner import run_workers
        return run_workers(cfg, run_dir, workers, train_fn=train_fn, shard=shard, wait=wait, echo=echo)
