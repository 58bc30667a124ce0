"""The evaluation loop of both loops: a task's meter over (a capped number of) batches of a
stream, summed over ranks."""
from __future__ import annotations

from typing import Callable

import torch

from unnas.utils import distributed as du


@torch.no_grad()
def evaluate(forward: Callable, task, stream, prepare: Callable, max_batches: int = 0,
             autocast: Callable | None = None) -> dict:
    """``forward(x) -> logits`` on ``prepare(batch, k) -> (x, y)`` for the first ``max_batches``
    batches of ``stream.epoch(0)`` (0 = all); returns the task meter's metrics (``loss`` included).
    The caller puts the model in the mode it wants (eval, or batch-statistics BN).

    The forward runs under ``torch.inference_mode`` (the values of ``no_grad``, without autograd's
    version counters and view tracking); in-place updates of the model's own buffers (BN statistics
    in batch-statistics mode) stay allowed there. Only the forward: the inputs and targets are built
    outside it, under ``no_grad``, so no cache a task fills while building them (lookup tables,
    permutations) ever holds an inference tensor that training would later refuse to save for
    backward."""
    meter = task.new_meter()
    limit = max_batches or len(stream)
    for k, batch in enumerate(stream.epoch(0)):
        if k >= limit:
            break
        if batch[0].shape[0] == 0:  # a rank's empty share of the last batch
            continue
        x, y = prepare(batch, k)
        with torch.inference_mode():
            if autocast is not None:
                with autocast():
                    logits = forward(x)
            else:
                logits = forward(x)
        logits = logits.float()
        meter.update(logits, y, float(task.loss(logits, y)))
    du.all_reduce_sum_(list(meter.state().values()))
    return meter.compute()
