"""Objectives behind a registry: ``build_task(name, data_info, **options)``.

Each task lives in its own module; importing this package registers them all.
"""
from __future__ import annotations

import importlib

from .base import ClassifierHead, DataInfo, Meter, Task, TopKMeter
from .registry import TASKS

# Modules that register tasks. A module listed here that does not exist yet is a task that has
# not landed: asking for it gives a clear "not available yet" error instead of a traceback.
_TASK_MODULES = ("cls", "rot", "jig", "col", "seg")
PLANNED = {"jig": ("jigsaw",), "col": ("colorization", "color", "colorisation"), "seg": ("segmentation",)}

for _m in _TASK_MODULES:
    try:
        importlib.import_module(f"{__name__}.{_m}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"{__name__}.{_m}":
            raise


class UnknownTask(KeyError):
    """A task name that is not registered (the message lists the available ones)."""


class TaskNotAvailable(UnknownTask):
    """A task of the paper that this version does not ship yet."""


def canonical_task_name(name: str) -> str:
    key = name.strip().lower()
    if key in TASKS:
        return TASKS.canonical(key)
    for planned, aliases in PLANNED.items():
        if key == planned or key in aliases:
            raise TaskNotAvailable(f"task {name!r} ({planned}) is not available in this version yet; "
                                   f"available tasks: {', '.join(TASKS.names())}")
    try:
        return TASKS.canonical(key)
    except KeyError as exc:
        raise UnknownTask(exc.args[0]) from None


def build_task(name: str, data: DataInfo, **options) -> Task:
    return TASKS.get(canonical_task_name(name))(data, **options)


__all__ = ["DataInfo", "Meter", "Task", "TopKMeter", "ClassifierHead", "TASKS", "build_task",
           "canonical_task_name", "TaskNotAvailable", "UnknownTask"]
