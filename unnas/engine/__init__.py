"""The engine under both loops (search and retraining): run set-up, streams, DDP, checkpoints,
the LR schedule, the non-finite guard, and a small loop base with hooks.

A loop (``unnas.search.Searcher``, ``unnas.train.Trainer``) owns its step (the bilevel step, the
retraining step) and its per-epoch bookkeeping; everything else it shares through this package.
"""
from .checkpoint import Checkpointer, load_checkpoint
from .guards import NonFiniteLossError, check_finite
from .hooks import (CheckpointHook, EvalHook, Hook, MetricsHook, Period, ProgressHook, TensorBoardHook,
                    truncate_jsonl)
from .loop import LoopBase
from .schedule import LRSchedule, cosine
from .setup import RunContext, build_stream, check_task_data, per_rank_batch, setup_run, train_window, wrap_ddp

__all__ = ["Checkpointer", "load_checkpoint", "NonFiniteLossError", "check_finite", "Hook", "Period",
           "MetricsHook", "TensorBoardHook", "ProgressHook", "CheckpointHook", "EvalHook", "truncate_jsonl",
           "LoopBase", "LRSchedule", "cosine", "RunContext", "setup_run", "build_stream", "check_task_data",
           "per_rank_batch", "train_window", "wrap_ddp"]
