"""Claiming a run directory: one process writes a run directory at a time.

``claim_run_dir(path)`` creates the folder (one clear line when it cannot: a file in the way, no
permission, a read-only file system), takes an exclusive ``flock`` on ``path/.lock`` for as long
as the claim is held (a second process gets one line naming the holder), and removes temporaries
that a killed process left behind. Claims nest within a process (the tool claims, then the loop),
and the lock goes with the process, so a kill never leaves a stale lock.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator

from unnas.config import ConfigError
from unnas.utils.io import TMP_SUFFIX, remove_stale_temporaries

log = logging.getLogger("unnas")

LOCK_NAME = ".lock"
_held: dict[Path, list] = {}    # resolved path -> [fd, depth]


def writable_dir_error(path: Path, exc: OSError) -> ConfigError:
    """One line for an output folder that cannot be created or written."""
    if isinstance(exc, (FileExistsError, NotADirectoryError)) or exc.errno in (errno.EEXIST, errno.ENOTDIR):
        return ConfigError(f"output directory {path} cannot be created: a file is in the way ({exc.strerror}); "
                           "choose another --out / OUT_DIR")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ConfigError(f"output directory {path} is not writable ({exc.strerror}); choose a writable --out / OUT_DIR")
    if exc.errno == errno.ENOSPC:
        return ConfigError(f"no space left on the device of {path}; free some space (existing outputs are intact)")
    return ConfigError(f"output directory {path}: {exc.strerror or exc}; choose another --out / OUT_DIR")


def numbered_run_dir(parent: str | Path, name: str, marker: str, resume: bool = False) -> Path:
    """``parent/name``, or ``parent/name_2``, ``name_3``, ...: a new run takes the first of them that
    holds no ``marker`` file (a run's checkpoint), so default run directories never collide and a
    list of commands runs in order; ``resume`` takes the last that holds one (the latest run)."""
    parent = Path(parent)

    def number(p: Path) -> int:
        tail = p.name[len(name) + 1:]
        return int(tail) if p.name.startswith(name + "_") and tail.isdigit() and int(tail) >= 2 else 0

    taken = [p for p in ([parent / name] + sorted(filter(number, parent.glob(f"{name}_*")), key=number))
             if (p / marker).exists()]
    if resume:
        return taken[-1] if taken else parent / name
    k = 1
    while (parent / (name if k == 1 else f"{name}_{k}") / marker).exists():
        k += 1
    return parent / (name if k == 1 else f"{name}_{k}")


def claim_if_main(path: str | Path | None, is_main: bool):
    """The run-directory claim of the main rank; other ranks (and runs without a directory) write
    nothing there, so they claim nothing."""
    return claim_run_dir(path) if path is not None and is_main else nullcontext()


@contextmanager
def claim_run_dir(path: str | Path) -> Iterator[Path]:
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        key = path.resolve()
        if key in _held:
            _held[key][1] += 1
            fd = None
        else:
            fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise writable_dir_error(path, exc) from exc
    if fd is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ConfigError(f"run directory {path} is in use by {holder}; wait for it to finish, or choose "
                              "another --out / OUT_DIR") from None
        try:   # a folder that is not writable (mode, read-only mount): say so now, not after the first epoch
            probe_fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test.", suffix=TMP_SUFFIX)
            os.close(probe_fd)
            os.unlink(probe)
        except OSError as exc:
            os.close(fd)
            raise writable_dir_error(path, exc) from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {os.uname().nodename}".encode(), 0)
        _held[key] = [fd, 1]
        for p in remove_stale_temporaries(path):
            log.info("removed %s, left by a process killed while writing", p.name)
    try:
        yield path
    finally:
        entry = _held[key]
        entry[1] -= 1
        if entry[1] == 0:
            del _held[key]
            os.close(entry[0])
