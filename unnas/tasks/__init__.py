"""Objectives behind a registry: ``build_task(name, data_info, **options)``.

Each task lives in its own module; importing this package registers them all.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import cls, col, jig, rot, seg  # noqa: F401  (importing a task module registers it)
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
    return TASKS.get(canonical_task_name(name))(data, **options)


__all__ = ["Meter", "Task", "TopKMeter", "ClassifierHead", "TASKS", "build_task", "canonical_task_name",
           "UnknownTask"]
