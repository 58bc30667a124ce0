"""torchrun / DDP helpers. One process without torchrun; gloo on CPU, nccl on CUDA."""
from __future__ import annotations

import os
from typing import Iterable

import torch
import torch.distributed as dist


def init_from_env(device: torch.device) -> tuple[int, int]:
    """Initialise the default process group when launched by torchrun; return (rank, world)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def all_reduce_mean_(tensors: Iterable[torch.Tensor]) -> None:
    """Average tensors over ranks, in place (a no-op in a single process)."""
    if not is_distributed():
        return
    tensors = [t for t in tensors if t is not None]
    if not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset:offset + n].view_as(t))
        offset += n


def all_reduce_sum_(tensors: Iterable[torch.Tensor]) -> None:
    if not is_distributed():
        return
    for t in tensors:
        dist.all_reduce(t)


def broadcast_(tensors: Iterable[torch.Tensor], src: int = 0) -> None:
    if not is_distributed():
        return
    for t in tensors:
        dist.broadcast(t, src)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", "0"))
            return torch.device(f"cuda:{local}")
        return torch.device("cpu")
    from unnas.config import ConfigError
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"DEVICE {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"DEVICE {name!r} requested but CUDA is not available; use DEVICE cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"DEVICE {name!r} requested but this machine has {torch.cuda.device_count()} GPU(s); "
                          "use DEVICE auto or cuda:N with a smaller N")
    return dev
