"""The one non-finite guard: a NaN/inf loss stops the run with a message naming the last good
checkpoint (which is left untouched) and the usual fix."""
from __future__ import annotations

import math

import torch

from unnas.utils import distributed as du


class NonFiniteLossError(RuntimeError):
    """A loss became NaN/inf; the message names the last good checkpoint."""


def stopped(problem: str, *, run: str, last_good, fix: str) -> NonFiniteLossError:
    """The one message of every non-finite stop: the problem, that ``run`` stopped, which
    checkpoint is kept (``last_good``, None: none yet) and ``fix``."""
    kept = f"last good checkpoint {last_good} is kept" if last_good else "no checkpoint had been written yet"
    return NonFiniteLossError(f"{problem}; {run} stopped, {kept}; {fix}")


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
    values = ", ".join(f"{k} {v}" for k, v in losses.items())
    raise stopped(f"non-finite loss at epoch {epoch} step {step} ({values})", run=run, last_good=last_good, fix=fix)


def _tensors(obj, prefix: str = ""):
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}[{i}]")


def check_finite_state(state: dict, *, what: str, run: str, last_good, fix: str, device="cpu") -> None:
    """Refuse to call a state good when any of its floating tensors (weights, buffers, optimiser
    moments) holds NaN/inf: a loss can stay finite for a step while the weights are already gone."""
    bad, total, first = 0, 0, None
    for name, t in _tensors(state):
        if not t.is_floating_point():
            continue
        total += 1
        if not bool(torch.isfinite(t).all()):
            bad += 1
            first = first or name
    flag = torch.tensor([float(bad)], device=device)
    du.all_reduce_sum_([flag])
    if flag.item() == 0:
        return
    detail = f"{bad} of {total} tensors, e.g. {first}" if bad else "on another rank"
    raise stopped(f"non-finite values in the state after {what} ({detail})", run=run, last_good=last_good, fix=fix)
