"""One checkpointer for both loops: atomic saves, the last good checkpoint, exact resume.

A checkpoint holds tensors and plain Python values only (dicts, lists, numbers, strings), so it
loads with ``torch.load(weights_only=True)``: loading one never runs code from the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch

from unnas.data import DataError
from unnas.utils import distributed as du
from unnas.utils.io import atomic_torch_save

from .guards import check_finite_state


def load_checkpoint(path, device="cpu") -> dict:
    """Load a checkpoint of ours safely (``weights_only``); one clear error for a missing or
    foreign file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise DataError(f"cannot read checkpoint {path} ({type(exc).__name__}): it is not a checkpoint of this "
                        "toolkit, is truncated, or holds objects other than tensors and plain values (loading "
                        "never runs code from a file); pass a checkpoint written by this toolkit") from exc
    if not isinstance(state, dict):
        raise DataError(f"{path} is not a checkpoint of this toolkit (it holds a {type(state).__name__}); pass a "
                        "checkpoint written by this toolkit")
    return state


class Checkpointer:
    """Saves a loop's state to ``out_dir/filename`` (rank 0 writes, every rank waits).

    A state with NaN/inf tensors is never saved (see :func:`~unnas.engine.guards.check_finite_state`).
    ``save(state, copies)`` writes the named copies (e.g. the best epoch's checkpoint) *before*
    the resume file: a kill between the two leaves the old resume point, from which the resumed
    run rewrites the same copies, so the directory never names a copy newer than its resume point
    nor keeps a stale one that the resume point claims is current.
    """

    def __init__(self, out_dir: str | Path | None, filename: str, is_main: bool = True, run: str = "run",
                 fix: str = "lower the learning rate or check the data", device="cpu"):
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.filename = filename
        self.is_main = is_main
        self.run, self.fix, self.device = run, fix, device
        self.last_good: Path | None = None

    @property
    def path(self) -> Path | None:
        return self.out_dir / self.filename if self.out_dir is not None else None

    def exists(self) -> bool:
        return self.path is not None and self.path.exists()

    def save(self, state: dict, copies: Iterable[str] = (), what: str = "this step") -> None:
        """Save ``state`` unless it holds non-finite tensors (then :class:`NonFiniteLossError`, and
        the last good checkpoint stays as it is)."""
        check_finite_state(state, what=what, run=self.run, last_good=self.last_good, fix=self.fix, device=self.device)
        if self.is_main and self.out_dir is not None:
            for name in copies:
                atomic_torch_save(state, self.out_dir / name)
            atomic_torch_save(state, self.path)
            self.last_good = self.path
        du.barrier()

    def load(self, device="cpu") -> dict | None:
        """The saved state, or None when there is none yet."""
        if not self.exists():
            return None
        state = load_checkpoint(self.path, device)
        self.last_good = self.path
        return state
