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


TMP_SUFFIX = ".tmp"    # temporaries are ``.<name>.<random>.tmp`` beside the file (see remove_stale_temporaries)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable: the directory entry survives a power cut too (POSIX)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    except OSError as exc:   # name the file being written, not the random temporary
        raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; give the file the mode a plain open() would (honour the umask), so a
        # group sharing a results folder can read it
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
            # a full disk fails the write or the fsync with no file name: name the file that failed
            raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
        raise
    _fsync_dir(path.parent)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporaries that atomic writes in ``folder`` left behind when a process was
    killed mid-write (call it only while no other process writes there); returns what was removed."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if p.name.startswith(".") and p.name.endswith(TMP_SUFFIX) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    _atomic_write_bytes(path, data)


def atomic_write_text(path: str | Path, text: str) -> None:
    _atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj, path: str | Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    _atomic_write_bytes(path, buf.getvalue())


_cache_warned = False


def save_to_cache(path: str | Path, array: np.ndarray) -> None:
    """Cache a derived array; a cache that cannot be written is not an error (the array is derived
    again next time), but it costs time on every run, so say so once per process."""
    global _cache_warned
    try:
        atomic_save_npy(path, array)
    except OSError as exc:
        if not _cache_warned:
            _cache_warned = True
            import logging
            logging.getLogger("unnas").warning(
                "cannot write the cache %s (%s): derived tables are rebuilt on every run; set UNNAS_CACHE to a "
                "writable folder", Path(path).parent, exc.strerror or exc)


def load_user_npy(path: str | Path, source: str, what: str, error: type[Exception] = ValueError) -> np.ndarray:
    """A ``.npy`` file a user named (``source``, e.g. ``TASK.JIGSAW_PERMS_FILE path``), read without
    pickles; a missing or unreadable file is one ``error`` line: ``SOURCE: cannot read a .npy WHAT (why)``."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise error(f"{source}: cannot read a .npy {what} ({getattr(exc, 'strerror', None) or exc})") from None


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    """``np.save`` atomically: several processes may fill the cache with the same file at once."""
    buf = io.BytesIO()
    np.save(buf, array)
    _atomic_write_bytes(path, buf.getvalue())
