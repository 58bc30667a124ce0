"""The one non-finite guard: a NaN/inf loss stops the run with a message naming the last good
checkpoint (which is left untouched) and the usual fix."""
from __future__ import annotations

import math

import torch

from unnas.utils import distributed as du


class NonFiniteLossError(RuntimeError):
    """A loss became NaN/inf; the message names the last good checkpoint."""


def check_finite(losses: dict, *, epoch: int, step: int, run: str, last_good, fix: str,
                 device: torch.device | str = "cpu") -> None:
    """Raise :class:`NonFiniteLossError` when any loss (None = not computed) is non-finite on any
    rank; every rank raises together, so none is left waiting in a collective (``device``: where the
    flag is reduced, the loop's device, as NCCL reduces CUDA tensors only)."""
    bad = any(v is not None and not math.isfinite(v) for v in losses.values())
    flag = torch.tensor([1.0 if bad else 0.0], device=device)
    du.all_reduce_sum_([flag])
    if flag.item() == 0:
        return
    where = f"last good checkpoint {last_good} is kept" if last_good else "no checkpoint had been written yet"
    values = ", ".join(f"{k} {v}" for k, v in losses.items())
    raise NonFiniteLossError(f"non-finite loss at epoch {epoch} step {step} ({values}); {run} stopped, {where}; {fix}")
