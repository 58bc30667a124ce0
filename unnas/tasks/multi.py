"""Several registered tasks on one shared trunk with a weighted loss (the multi-task objective of
ELo, Piergiovanni, Angelova & Ryoo, CVPR 2020, for images).

``TASK.MULTI.TASKS`` names the tasks (e.g. ``[rot, col, jig]``), ``TASK.MULTI.WEIGHTS`` their loss
weights (``[]``: equal). The weights are relative: they are divided by their sum, so ``[1, 1, 1]``
and ``[2, 2, 2]`` train identically and OPTIM.LR keeps its meaning whatever the weights
(``tools/evolve_loss.py`` searches them). Every sub-task is built with the other TASK.* options,
so ``TASK.JIGSAW_GRID`` or ``TASK.COL_REBALANCE`` reach jigsaw and colorization as they would alone.

Per batch every sub-task builds its own inputs and targets from the same images (``make_batch``,
drawing from the shared generator in list order): rotations, colorization's L, jigsaw's tiles.
The inputs travel as :class:`~search_spaces.parts.InputParts`; the network runs the trunk once per
part (each part is normalised by its own BN batch statistics, exactly as its task alone) and
the :class:`MultiHead` applies each task's head to its part. Loss: ``sum_t w_t L_t``.

One 3-channel trunk for all: a 1-channel input (colorization's L) is replicated to 3 channels
(a grey image, as jigsaw's grey tiles are), so the trunk's weights have the shape of a
single-task RGB trunk and a probe, a fine-tune or the ELo fitness feeds it normalised RGB
(``input_kind`` "rgb"); docs/tasks.md says why not one stem per task.

Metric: each sub-task's metrics prefixed with its name (``rot_top1``, ``col_loss``, ...),
``loss`` (the weighted loss) and the primary ``mean_primary``: the unweighted mean of the
sub-tasks' primary metrics (each higher-is-better), comparable across weightings, so the study
and the search rank architectures by it.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from search_spaces.parts import InputParts, OutputParts

from .base import Meter, Task
from .registry import TASKS

DEFAULT_TASKS = ("rot", "col", "jig")


def _config_error(msg: str):
    from unnas.config import ConfigError
    return ConfigError(msg)


def sub_task_names(tasks) -> list[str]:
    """The registered names of TASK.MULTI.TASKS; one ConfigError line for anything else."""
    from . import UnknownTask, canonical_task_name

    if isinstance(tasks, str) or not tasks:
        raise _config_error(f"TASK.MULTI.TASKS must list the tasks to combine, e.g. [rot, col, jig]; got {tasks!r}")
    names = []
    for t in tasks:
        try:
            names.append(canonical_task_name(str(t)))
        except UnknownTask as exc:
            raise _config_error(f"TASK.MULTI.TASKS: {exc.args[0]}") from None
    if len(set(names)) != len(names):
        raise _config_error(f"TASK.MULTI.TASKS lists a task twice ({list(tasks)}); give each task once and "
                            "weigh it with TASK.MULTI.WEIGHTS")
    if "multi" in names:
        raise _config_error("TASK.MULTI.TASKS cannot hold multi itself; list the single tasks")
    return names


def relative_weights(weights, names) -> tuple[float, ...]:
    """TASK.MULTI.WEIGHTS divided by their sum ([] = equal weights); one ConfigError line for a
    wrong count, a negative or non-finite value, or all zeros."""
    if not weights:
        return tuple(1.0 / len(names) for _ in names)
    if len(weights) != len(names):
        raise _config_error(f"TASK.MULTI.WEIGHTS has {len(weights)} values for the {len(names)} tasks of "
                            f"TASK.MULTI.TASKS ({', '.join(names)}); give one weight per task, or [] for equal weights")
    try:
        ws = [float(w) for w in weights]
    except (TypeError, ValueError):
        raise _config_error(f"TASK.MULTI.WEIGHTS must be numbers, got {list(weights)}") from None
    if not all(math.isfinite(w) and w >= 0 for w in ws):
        raise _config_error(f"TASK.MULTI.WEIGHTS must be finite and >= 0, got {ws}")
    total = sum(ws)
    if total <= 0:
        raise _config_error(f"TASK.MULTI.WEIGHTS are all 0 ({ws}); give at least one task a positive weight")
    return tuple(w / total for w in ws)


class MultiHead(nn.Module):
    """One head per task, keyed by task name; ``forward`` takes the trunk's feature map of every
    part and every part's input size and returns their outputs in task order."""

    def __init__(self, names, heads):
        super().__init__()
        self.heads = nn.ModuleDict(zip(names, heads))

    def forward(self, features, input_hw):
        if not isinstance(features, (list, tuple)):
            raise TypeError("the multi task's head reads one feature map per task: feed the network the "
                            "InputParts of MultiTask.make_batch")
        return OutputParts(head(f, hw) for head, f, hw in zip(self.heads.values(), features, input_hw))


class MultiMeter(Meter):
    """Every sub-task's own meter; ``mean_primary`` (primary) is the mean of their primary metrics,
    ``loss`` the weighted sum of their mean losses. The losses are recomputed per part from the
    logits (the ``loss`` argument is the weighted total, which cannot be split)."""

    primary = "mean_primary"

    def __init__(self, names, tasks, weights):
        self.names, self.tasks, self.weights = list(names), list(tasks), list(weights)
        self.meters = [t.new_meter() for t in self.tasks]

    @torch.no_grad()
    def update(self, logits, targets, loss=None):
        for task, meter, out, y in zip(self.tasks, self.meters, logits, targets):
            out = out.float()
            meter.update(out, y, float(task.loss(out, y)))

    def compute(self):
        out, primaries, total = {}, [], 0.0
        for name, meter, w in zip(self.names, self.meters, self.weights):
            values = meter.compute()
            out.update({f"{name}_{k}": v for k, v in values.items()})
            primaries.append(values[meter.primary])
            total += w * values.get("loss", float("nan"))
        out["mean_primary"] = sum(primaries) / len(primaries)
        out["loss"] = total
        return out

    def state(self):
        return {f"{i}.{k}": v for i, m in enumerate(self.meters) for k, v in m.state().items()}

    def load_state(self, state):
        for i, m in enumerate(self.meters):
            prefix = f"{i}."
            m.load_state({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})


@TASKS.register("multi", aliases=("multitask", "multi_task"))
class MultiTask(Task):
    name = "multi"
    in_channels = 3
    input_kind = "rgb"
    input_parts = True
    per_sample_cross_entropy = False   # a weighted sum of the sub-tasks' own losses
    per_image_logits = False           # one output per sub-task: no auxiliary classifier

    def __init__(self, data, multi_tasks=DEFAULT_TASKS, multi_weights=(), **options):
        super().__init__(data, multi_tasks=multi_tasks, multi_weights=multi_weights, **options)
        from . import build_task

        self.names = sub_task_names(multi_tasks)
        self.weights = relative_weights(multi_weights, self.names)
        self.tasks = [build_task(n, data, **options) for n in self.names]
        for t in self.tasks:
            if t.input_groups:
                raise _config_error(f"TASK.MULTI.TASKS: task {t.name} splits the trunk into sub-networks, so it "
                                    "cannot share one trunk with other tasks; drop it from the list")
            if t.in_channels not in (1, 3):
                raise _config_error(f"TASK.MULTI.TASKS: task {t.name} feeds {t.in_channels}-channel inputs; the "
                                    "shared trunk reads 3 channels (1-channel inputs are replicated)")
        strides = {t.single_reduction for t in self.tasks}
        if len(strides) > 1:
            raise _config_error(f"TASK.MULTI.TASKS mixes output strides ({', '.join(self.names)}: "
                                f"{[t.single_reduction for t in self.tasks]} single reduction); combine tasks of one stride")
        self.single_reduction = strides.pop()
        self.needs_labels = any(t.needs_labels for t in self.tasks)
        self.needs_dense_labels = any(t.needs_dense_labels for t in self.tasks)
        self.images_per_sample = sum(t.images_per_sample for t in self.tasks)

    @property
    def num_outputs(self) -> int:
        return sum(t.num_outputs for t in self.tasks)

    def make_batch(self, images, labels, train, generator=None):
        inputs, targets = [], []
        for t in self.tasks:
            x, y = t.make_batch(images, labels, train, generator)
            inputs.append(x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x)   # L -> a grey 3-channel image
            targets.append(y)
        return InputParts(inputs), tuple(targets)

    def build_head(self, in_channels: int) -> nn.Module:
        return MultiHead(self.names, [t.build_head(in_channels) for t in self.tasks])

    def loss(self, logits, targets):
        return sum(w * t.loss(out, y) for w, t, out, y in zip(self.weights, self.tasks, logits, targets))

    def new_meter(self) -> Meter:
        return MultiMeter(self.names, self.tasks, self.weights)

    def chance_level(self) -> float:
        return sum(t.chance_level() for t in self.tasks) / len(self.tasks)

    def describe(self) -> str:
        mix = " + ".join(f"{w:.3g} {n}" for w, n in zip(self.weights, self.names))
        return f"{self.name} ({mix}: one trunk, a head per task, {self.images_per_sample} trunk passes per image)"
