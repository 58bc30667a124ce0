"""Several tasks' inputs for one shared trunk, and the outputs of their heads (the ``multi`` task,
:mod:`unnas.tasks.multi`).

A multi-task batch is not one tensor: rotations, colorization's L and jigsaw's tiles differ in
count and size. ``make_batch`` returns them as :class:`InputParts`; a network given InputParts runs
its trunk once per part (each part's BN statistics are its own, so every part is computed exactly
as its task alone would compute it) and hands the list of feature maps, with each part's input
size, to the task's head, which returns :class:`OutputParts`.

Neither is a tuple on purpose: the trainer reads a tuple output as ``(logits, aux_logits)``, and
DDP rebuilds a plain tuple input as a tuple (losing the class), but passes other objects through.
OutputParts offers the two tensor methods the loops call on logits (``float``, ``detach``).
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator

import torch


class _Parts:
    """One tensor per task; the subclass says which side of the network the tensors are on."""

    def __init__(self, parts: Iterable[torch.Tensor]):
        self.parts = list(parts)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.parts)

    def __len__(self) -> int:
        return len(self.parts)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.parts[i]


class InputParts(_Parts):
    """The network inputs of several tasks built from the same images, one tensor per task."""

    def sizes(self) -> list[tuple[int, int]]:
        """Each part's (H, W): what a dense head upsamples to."""
        return [tuple(p.shape[-2:]) for p in self.parts]

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "InputParts":
        return InputParts(fn(p) for p in self.parts)


class OutputParts(_Parts):
    """The outputs of several tasks' heads, one per part of an :class:`InputParts`."""

    def float(self) -> "OutputParts":
        return OutputParts(p.float() for p in self.parts)

    def detach(self) -> "OutputParts":
        return OutputParts(p.detach() for p in self.parts)


def map_inputs(x, fn: Callable[[torch.Tensor], torch.Tensor]):
    """``fn`` applied to a network input: to each part of InputParts, else to the tensor itself."""
    return x.map(fn) if isinstance(x, InputParts) else fn(x)
