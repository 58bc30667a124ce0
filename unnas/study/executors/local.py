"""``--executor local`` (the default): worker processes claim jobs from the store (unnas/study/runner.py)."""
from __future__ import annotations

from . import EXECUTORS, Executor


@EXECUTORS.register("local")
class LocalExecutor(Executor):
    name = "local"

    def describe(self, cfg, workers: int, world: int) -> str:
        return f"{workers * world} workers"

    def run(self, cfg, run_dir, workers=1, shard=None, wait=False, echo=print, train_fn=None) -> dict:
        from unnas.study.runner import run_workers
        return run_workers(cfg, run_dir, workers, train_fn=train_fn, shard=shard, wait=wait, echo=echo)
