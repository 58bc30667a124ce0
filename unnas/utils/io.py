"""Crash-safe file writes (a reader sees the old file or the new one, never a torn one) and the
cache folder of derived files."""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import torch


def cache_dir() -> Path:
    """Where derived files (ab bins, jigsaw permutations) are cached: $UNNAS_CACHE, else ~/.cache/unnas."""
    root = os.environ.get("UNNAS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "unnas")
    return Path(root)


def _atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    _atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj, path: str | Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    _atomic_write_bytes(path, buf.getvalue())


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    """``np.save`` atomically: several processes may fill the cache with the same file at once."""
    buf = io.BytesIO()
    np.save(buf, array)
    _atomic_write_bytes(path, buf.getvalue())
