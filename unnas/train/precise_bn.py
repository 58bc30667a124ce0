"""Precise BN statistics, as the UnNAS release (pycls ``compute_precise_bn_stats``) computes them
before evaluating its sample-based trainings (``BN.USE_PRECISE_STATS``, ``BN.NUM_SAMPLES_PRECISE``;
here ``TRAIN.PRECISE_BN_IMAGES``).

The momentum averages that BN keeps during training mix statistics of weights that have since
changed; precise BN replaces them by averages over a few training batches of the current weights:
with every BN layer's momentum at 1 each forward leaves that batch's mean and (unbiased) variance in
the running buffers, and afterwards

    running_mean = mean over batches of the batch means
    running_var  = mean over batches of (batch var + batch mean²)  -  running_mean²

i.e. the variance of the pooled batches from E[x²] - E[x]², exactly pycls's formula. No parameter
changes (no gradients), and the momenta come back as they were.
"""
from __future__ import annotations

import itertools
from typing import Callable, Iterable

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from unnas.engine import Hook, Period

__all__ = ["precise_bn_stats", "PreciseBNHook"]


def _recomputed_layers(model: nn.Module) -> list[_BatchNorm]:
    """BN layers that keep running statistics and compute batch statistics now (training mode)."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.training and m.track_running_stats
            and m.running_mean is not None]


@torch.no_grad()
def precise_bn_stats(model: nn.Module, inputs: Iterable[torch.Tensor], num_batches: int,
                     autocast: Callable | None = None, reduce: Callable | None = None) -> int:
    """Recompute the running statistics of ``model``'s BN layers over the first ``num_batches`` input
    batches of ``inputs`` (each one ``model(x)``'s argument, built as training builds them).

    The caller puts the model in training mode (as ``evaluate`` leaves the mode to its caller):
    only BN layers in training mode with ``track_running_stats`` are recomputed; layers in eval mode
    (a linear probe's frozen trunk) keep theirs. ``autocast()`` wraps each forward when given (the
    training step's mixed precision). ``reduce(tensors)`` sums tensors in place over processes (DDP:
    :func:`unnas.utils.distributed.all_reduce_sum_`), so every rank gets the statistics of all
    ranks' batches. Returns the number of batches this process used (0: nothing changed). If a
    forward raises, the statistics are restored before the exception propagates; the momenta and
    ``num_batches_tracked`` are restored in every case.
    """
    bns = _recomputed_layers(model)
    if not bns or num_batches <= 0:
        return 0
    saved = [(bn.momentum, bn.running_mean.clone(), bn.running_var.clone(),
              None if bn.num_batches_tracked is None else bn.num_batches_tracked.clone()) for bn in bns]
    sum_mean = [torch.zeros_like(bn.running_mean) for bn in bns]
    sum_sq = [torch.zeros_like(bn.running_var) for bn in bns]
    used, done = 0, False
    try:
        for bn in bns:
            bn.momentum = 1.0          # the running buffers then hold the last batch's statistics
        for x in itertools.islice(inputs, num_batches):
            if autocast is not None:
                with autocast():
                    model(x)
            else:
                model(x)
            for bn, s_m, s_q in zip(bns, sum_mean, sum_sq):
                s_m += bn.running_mean
                s_q += bn.running_var + bn.running_mean * bn.running_mean
            used += 1
        count = torch.tensor([float(used)], device=bns[0].running_mean.device)
        if reduce is not None:
            reduce([*sum_mean, *sum_sq, count])
        total = float(count)
        if total > 0:                  # else no process had a batch: nothing ran, nothing changes
            for bn, s_m, s_q in zip(bns, sum_mean, sum_sq):
                mean = s_m / total
                bn.running_mean.copy_(mean)
                bn.running_var.copy_(s_q / total - mean * mean)
        done = True
    finally:
        for bn, (momentum, mean, var, tracked) in zip(bns, saved):
            bn.momentum = momentum
            if tracked is not None:
                bn.num_batches_tracked.copy_(tracked)
            if not done:
                bn.running_mean.copy_(mean)
                bn.running_var.copy_(var)
    return used


class PreciseBNHook(Hook):
    """Calls ``recompute(epoch)`` (the loop's precise-BN pass over its training batches) when
    ``period`` fires, before the evaluation: put it ahead of the :class:`~unnas.engine.EvalHook`
    and give it the same period."""

    def __init__(self, recompute: Callable[[int], object], period: Period):
        self.recompute = recompute
        self.period = period

    def collect_epoch(self, loop, stats):
        if self.period.after_epoch(loop, loop.epoch + 1):
            self.recompute(loop.epoch)
