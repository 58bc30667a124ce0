"""Run set-up shared by every loop: device, ranks, seeds, threads, determinism, batch streams,
the data/task compatibility check and DDP wrapping."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Sequence

import torch

from unnas.config import ConfigError
from unnas.data import BatchStream, DataError
from unnas.utils import distributed as du

log = logging.getLogger("unnas")


@dataclass(frozen=True)
class RunContext:
    """Where this process runs: its device and its place among the torchrun ranks."""
    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def auto_threads() -> int:
    """CPU threads for a run that was given none: the cores this process may use minus those that
    other work keeps busy (the 1-minute load average, rounded), at least 1.

    Why not all cores: every OpenMP parallel region ends at a barrier, so with more threads than
    free cores each operator waits for a thread parked behind another process; measured on 2 cores
    beside one busy process, 2 threads ran several times slower than 1 (benchmarks/threads.py,
    docs/benchmarks.md). On an idle machine this is all cores, torch's own default. An explicit
    ``OMP_NUM_THREADS`` in the environment is the user's choice: torch's count is kept then."""
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        busy = round(os.getloadavg()[0])
    except OSError:
        busy = 0
    return max(1, min(cores, torch.get_num_threads()) - busy)


def threads_note(device) -> str:
    """``", N CPU thread(s)"`` for a CPU run's log line (how many threads auto chose), else ""."""
    if torch.device(device).type != "cpu":
        return ""
    n = torch.get_num_threads()
    return f", {n} CPU thread{'s' if n != 1 else ''}"


def resolve_threads(setting) -> int:
    """``NUM_THREADS``-style setting -> a thread count: N > 0 as given, 0 or "auto" -> :func:`auto_threads`."""
    if str(setting).strip().lower() in ("0", "auto"):
        return auto_threads()
    return int(setting)


def setup_run(device: str, seed: int, num_threads: int = 0, deterministic: bool = False) -> RunContext:
    """Resolve the device, join the torchrun process group (if launched by torchrun), seed torch,
    set the CPU thread count (0 = :func:`auto_threads`) and deterministic algorithms."""
    dev = du.resolve_device(device)
    rank, world = du.init_from_env(dev)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(resolve_threads(num_threads))
    torch.manual_seed(seed)
    return RunContext(dev, rank, world)


def per_rank_batch(batch_size: int, ctx: RunContext, key: str) -> int:
    """The share of a global batch that one rank computes."""
    if batch_size % ctx.world:
        raise ConfigError(f"{key} {batch_size} is not divisible by the {ctx.world} processes")
    return batch_size // ctx.world


def train_window(n_images: int, offset: int, limit: int, dataset: str) -> range:
    """The training images a run uses: ``[offset, offset + limit)`` of the split's ``n_images``
    (``DATA.TRAIN_OFFSET``, ``DATA.MAX_TRAIN``; limit 0 = to the end, a window past the end stops
    there). Different offsets with the same limit give disjoint subsets."""
    if offset < 0:
        raise ConfigError(f"DATA.TRAIN_OFFSET must be >= 0, got {offset}")
    if offset >= n_images:
        raise ConfigError(f"DATA.TRAIN_OFFSET {offset} skips every training image: data set {dataset} has {n_images}; "
                          f"use an offset below {n_images}")
    stop = n_images if not limit else min(n_images, offset + limit)
    if limit and offset + limit > n_images:
        log.warning("DATA.TRAIN_OFFSET %d + DATA.MAX_TRAIN %d runs past the %d training images of %s: using %d",
                    offset, limit, n_images, dataset, stop - offset)
    return range(offset, stop)


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
