"""A reference from another study (the paper's Fig. 4: pretext accuracies on one data set against
supervised accuracies on another, e.g. CIFAR-10 rotation vs ImageNet classification).

``rank_corr.py analyze RUN --reference OTHER_RUN[:TASK]``: the reference accuracies are those of
task ``TASK`` (default: the other study's ``STUDY.SUPERVISED``) in the study of ``OTHER_RUN``,
averaged over its seeds, matched to this study's architectures by genotype (:func:`genotype_key`;
the two studies may use different ids). The reference is labelled ``TASK@OTHER`` (``OTHER`` = the
other run's folder name), this study's task of the same name becomes ``TASK(this)``, and the
analysis goes to ``RUN/analysis_ref_<OTHER>_<TASK>/`` (:func:`reference_name`), beside the normal one.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from unnas.config import ConfigError

from .archs import Arch, genotype_key


def _canonical_task(name: str, what: str) -> str:
    from unnas.tasks import canonical_task_name

    try:
        return canonical_task_name(name)
    except KeyError as exc:
        raise ConfigError(f"{what}: {exc.args[0]}") from None


def _holds_study(path: Path) -> bool:
    from .runner import store_path

    return store_path(path).is_file()


def parse_reference(value: str) -> tuple[Path | None, str | None]:
    """``--reference VALUE`` -> ``(study_dir, task)``.

    * a directory that holds a study: ``(DIR, None)`` (the task defaults to its ``STUDY.SUPERVISED``);
    * ``DIR:TASK`` whose ``DIR`` is a directory: ``(DIR, TASK)``;
    * a task name (not a study directory): ``(None, TASK)``, this study's own reference task, as before.

    A directory that holds no study is a one-line ``ConfigError`` (checked by :func:`study_reference`).
    """
    path = Path(value)
    if path.is_dir() and _holds_study(path):
        return path, None
    from unnas.tasks import canonical_task_name
    try:
        return None, canonical_task_name(value)
    except KeyError:
        pass
    if path.is_dir():
        return path, None
    head, sep, tail = value.rpartition(":")
    if sep and head and Path(head).is_dir():
        return Path(head), _canonical_task(tail, f"--reference {value}") if tail else None
    raise ConfigError(f"--reference {value}: neither a task name nor a study directory (DIR or DIR:TASK)")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.") or "study"


def other_name(other_run) -> str:
    """The other study's name in labels and folder names: its folder's name."""
    return _safe(Path(other_run).resolve().name)


def reference_name(other_run, task: str) -> str:
    """``<folder>_<task>``: the suffix of the analysis folder (``analysis_ref_<name>``)."""
    return f"{other_name(other_run)}_{_safe(task)}"


def reference_label(other_run, task: str) -> str:
    """``TASK@FOLDER``: the reference's name in tables and plots."""
    return f"{task}@{other_name(other_run)}"


def study_reference(other_run, archs: Sequence[Arch], task: str | None = None,
                    metric: str = "best") -> tuple[dict[str, float], dict]:
    """Reference accuracies from the study in ``other_run``: ``({this arch id: mean over the other
    study's seeds of task's metric}, info)``, matched by genotype. ``task`` None = the other study's
    ``STUDY.SUPERVISED``. One-line ``ConfigError`` when ``other_run`` holds no study, the task has
    no results there, or no architecture matches."""
    from .analysis import load_study_cfg, per_arch
    from .runner import open_store, store_path

    other = Path(other_run)
    if not _holds_study(other):
        raise ConfigError(f"--reference {other}: holds no study (no {store_path(other).name})")
    if task is None:
        cfg = load_study_cfg(other)
        task = str(cfg.STUDY.SUPERVISED) if cfg is not None else "cls"
    task = _canonical_task(task, f"--reference {other}")
    store = open_store(other)
    try:
        results = store.results()
        other_archs = store.archs()
    finally:
        store.close()
    means, by_seed = per_arch(results, metric)
    if task not in means:
        have = ", ".join(sorted(means)) or "none"
        raise ConfigError(f"--reference {other}: task {task} has no finished results there (tasks with results: {have})")
    by_geno = {genotype_key(a.genotype): a.id for a in other_archs}
    values: dict[str, float] = {}
    for a in archs:
        oid = by_geno.get(genotype_key(a.genotype))
        if oid is not None and oid in means[task]:
            values[a.id] = means[task][oid]
    if not values:
        raise ConfigError(f"--reference {other}: none of its {len(means[task])} architectures with {task} results "
                          f"matches one of this study's {len(archs)} (by genotype)")
    info = {"run": str(other), "task": task, "label": reference_label(other, task), "name": reference_name(other, task),
            "metric": metric, "seeds": sorted(by_seed[task]), "archs_other": len(means[task]),
            "archs_this": len(archs), "matched": len(values)}
    cfg = load_study_cfg(other)
    if cfg is not None:
        info["dataset"] = str(cfg.DATA.DATASET)
    return values, info
