"""Deterministic, resumable batch streams.

Every batch is a pure function of (seed, epoch, step): the epoch's order is a permutation drawn
from a generator seeded by ``(seed, epoch)``, and each sample's augmentation seed is derived from
(seed, epoch, position). So a run resumed at any step sees exactly the batches an uninterrupted
run would, and ``world`` ranks each take a disjoint, strided share of every global batch.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch

from .base import DataError, ImageDataset


def _mix(*ints: int) -> int:
    """A stable 63-bit hash of a few ints (seeds for generators)."""
    h = 0x9E3779B97F4A7C15
    for x in ints:
        h ^= (x + 0x9E3779B97F4A7C15 + ((h << 6) & (2**64 - 1)) + (h >> 2)) & (2**64 - 1)
        h = (h * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    return h & (2**63 - 1)


def step_generator(seed: int, epoch: int, step: int, stream: int, device="cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(_mix(seed, epoch, step, stream))
    return g


def _collate(batch):
    images = torch.stack([b[0] for b in batch])
    labels = [b[1] for b in batch]
    labels = torch.stack(labels) if isinstance(labels[0], torch.Tensor) else torch.tensor(labels)
    return images, labels


class BatchStream:
    """Batches of ``indices`` (a subset of ``dataset``), for one rank of ``world``.

    ``batch_size`` is per rank; the global batch is ``batch_size * world``.
    """

    def __init__(self, dataset: ImageDataset, indices: Sequence[int], batch_size: int, seed: int,
                 stream: int, shuffle: bool = True, drop_last: bool = True, rank: int = 0,
                 world: int = 1, num_workers: int = 0, pin_memory: bool = False):
        self.dataset = dataset
        self.indices = torch.as_tensor(list(indices), dtype=torch.long)
        self.batch_size = batch_size
        self.seed, self.stream = seed, stream
        self.shuffle, self.drop_last = shuffle, drop_last
        self.rank, self.world = rank, world
        self.num_workers = 0 if dataset.in_memory else num_workers
        self.pin_memory = pin_memory
        global_batch = batch_size * world
        if drop_last and len(self.indices) < global_batch:
            raise DataError(f"data set split has {len(self.indices)} images, fewer than one batch of "
                            f"{global_batch}; lower the batch size or use more data")

    def __len__(self) -> int:
        g = self.batch_size * self.world
        n = len(self.indices)
        return n // g if self.drop_last else -(-n // g)

    def _order(self, epoch: int, cycle: int = 0) -> torch.Tensor:
        if not self.shuffle:
            return self.indices
        g = torch.Generator().manual_seed(_mix(self.seed, epoch, self.stream, cycle))
        return self.indices[torch.randperm(len(self.indices), generator=g)]

    def _keys(self, order: torch.Tensor, epoch: int, step: int, cycle: int = 0) -> list[tuple[int, int]]:
        """(index, augmentation seed) of this rank's share of global batch ``step``."""
        g = self.batch_size * self.world
        idx = order[step * g:(step + 1) * g][self.rank::self.world]
        return [(int(i), _mix(self.seed, epoch, self.stream, cycle, int(i))) for i in idx]

    def _load(self, keys):
        if self.dataset.in_memory:
            return self.dataset.gather(torch.tensor([i for i, _ in keys]))
        return _collate([self.dataset[k] for k in keys])

    def fetch(self, epoch: int, step: int):
        """Random access: the ``step``-th batch of ``epoch``, cycling through fresh permutations
        when ``step`` exceeds the epoch length (the architecture half is re-read as needed)."""
        cycle, k = divmod(step, len(self))
        return self._load(self._keys(self._order(epoch, cycle), epoch, k, cycle))

    def epoch(self, epoch: int, start: int = 0, stop: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (uint8 images, labels) on the CPU for steps ``start..stop-1`` of ``epoch`` (``stop``
        None: to the end; a loader reads no batch past ``stop``)."""
        order = self._order(epoch)
        end = len(self) if stop is None else min(stop, len(self))
        batches = [self._keys(order, epoch, step) for step in range(start, end)]
        if self.dataset.in_memory:
            for keys in batches:
                yield self._load(keys)
            return
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=batches, num_workers=self.num_workers,
            pin_memory=self.pin_memory, collate_fn=_collate,
            persistent_workers=False, prefetch_factor=4 if self.num_workers else None)
        yield from loader
