"""Objectives behind a registry: ``build_task(name, data_info, **options)``.

Each task lives in its own module; importing this package registers them all.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import cls, col, count, inpaint, jig, multi, rot, seg, simclr, splitbrain, superres  # noqa: F401  (importing a task module registers it)
from .base import ClassifierHead, Meter, Task, TopKMeter
from .registry import TASKS

if TYPE_CHECKING:  # DataInfo belongs to unnas.data; import it from there, not from here
    from unnas.data import DataInfo


class UnknownTask(KeyError):
    """A task name that is not registered (the message lists the available ones)."""


def canonical_task_name(name: str) -> str:
    """The registered name of ``name`` (aliases and case allowed); :class:`UnknownTask` otherwise."""
    try:
        return TASKS.canonical(name.strip().lower())
    except KeyError as exc:
        raise UnknownTask(exc.args[0]) from None


def build_task(name: str, data: DataInfo, **options) -> Task:
    """The task ``name`` for data described by ``data``; a bad option (a value out of range, a
    permutation or prior file of the wrong shape) is one :class:`~unnas.config.ConfigError` line."""
    cls_ = TASKS.get(canonical_task_name(name))
    try:
        return cls_(data, **options)
    except ValueError as exc:
        from unnas.config import ConfigError
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"task {cls_.name}: {' '.join(str(exc).split())}; fix the TASK.* option") from exc


__all__ = ["Meter", "Task", "TopKMeter", "ClassifierHead", "TASKS", "build_task", "canonical_task_name",
           "UnknownTask"]
