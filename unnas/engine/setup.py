"""Run set-up shared by every loop: device, ranks, seeds, threads, determinism, batch streams,
the data/task compatibility check and DDP wrapping."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from unnas.config import ConfigError
from unnas.data import BatchStream, DataError
from unnas.utils import distributed as du


@dataclass(frozen=True)
class RunContext:
    """Where this process runs: its device and its place among the torchrun ranks."""
    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_run(device: str, seed: int, num_threads: int = 0, deterministic: bool = False) -> RunContext:
    """Resolve the device, join the torchrun process group (if launched by torchrun), seed torch,
    set the CPU thread count (0 keeps torch's default) and deterministic algorithms."""
    dev = du.resolve_device(device)
    rank, world = du.init_from_env(dev)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    torch.manual_seed(seed)
    return RunContext(dev, rank, world)


def per_rank_batch(batch_size: int, ctx: RunContext, key: str) -> int:
    """The share of a global batch that one rank computes."""
    if batch_size % ctx.world:
        raise ConfigError(f"{key} {batch_size} is not divisible by the {ctx.world} processes")
    return batch_size // ctx.world


def build_stream(dataset, indices: Sequence[int], batch_size: int, seed: int, stream: int, ctx: RunContext,
                 num_workers: int, shuffle: bool = True, drop_last: bool = True) -> BatchStream:
    """A deterministic :class:`BatchStream` of this rank's share, pinned when feeding a GPU."""
    return BatchStream(dataset, indices, batch_size, seed, stream=stream, rank=ctx.rank, world=ctx.world,
                       num_workers=num_workers, pin_memory=ctx.device.type == "cuda", shuffle=shuffle,
                       drop_last=drop_last)


def check_task_data(task, info, dataset_name: str) -> None:
    """A supervised task needs a labelled data set."""
    if task.needs_labels and info.num_classes <= 0:
        raise DataError(f"task {task.name} needs labels but data set {dataset_name} has none; "
                        "use a pretext task (rot, col, jig) or a labelled data set")
    if task.needs_dense_labels and not info.dense_labels:
        raise DataError(f"task {task.name} needs per-pixel label maps but data set {dataset_name} has "
                        "per-image labels; use a segmentation data set (e.g. cityscapes) or another task")


def wrap_ddp(model: torch.nn.Module, ctx: RunContext):
    """The DDP-wrapped model under torchrun, None in a single process."""
    if ctx.world <= 1:
        return None
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
