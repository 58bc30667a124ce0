"""The learning-rate schedule of both loops: cosine (or constant) with an optional linear warm-up
(pycls), evaluated per step or once per epoch."""
from __future__ import annotations

import math
from dataclasses import dataclass


def cosine(base: float, minimum: float, progress: float) -> float:
    """Cosine from ``base`` at progress 0 to ``minimum`` at progress 1 (clamped outside)."""
    return minimum + 0.5 * (base - minimum) * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


@dataclass(frozen=True)
class LRSchedule:
    base: float
    minimum: float
    epochs: int
    steps_per_epoch: int
    per_step: bool = True            # False: the LR changes once per epoch (DARTS, pycls)
    kind: str = "cos"                # cos | const
    warmup_epochs: float = 0.0
    warmup_factor: float = 0.1

    def at_progress(self, epochs: float) -> float:
        """LR at a fractional epoch count."""
        lr = cosine(self.base, self.minimum, epochs / self.epochs) if self.kind == "cos" else self.base
        if epochs < self.warmup_epochs:
            a = epochs / self.warmup_epochs
            lr *= self.warmup_factor * (1 - a) + a
        return lr

    def at(self, epoch: int, step: int = 0) -> float:
        return self.at_progress(epoch + (step / self.steps_per_epoch if self.per_step else 0.0))

    def apply(self, optimizer, epoch: int, step: int) -> float:
        lr = self.at(epoch, step)
        for g in optimizer.param_groups:
            g["lr"] = lr
        return lr
