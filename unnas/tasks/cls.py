"""Supervised classification: the label is the target."""
from __future__ import annotations

from .base import Task
from .registry import TASKS


@TASKS.register("cls", aliases=("classification", "supervised"))
class ClassificationTask(Task):
    name = "cls"
    needs_labels = True

    @property
    def num_outputs(self) -> int:
        return self.data.num_classes

    def make_batch(self, images, labels, train, generator=None):
        return self.normalize(images), labels.long()
