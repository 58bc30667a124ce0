"""Shared command-line plumbing for the thin tools: flags to config overrides, logging, one-line errors.

Every tool goes through these, so a flag, a log line or an error reads the same in each of them.
"""
from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from unnas.config import ConfigError

# argparse dest -> config key, for the flags that mean the same in every tool; a tool adds its own
# (``--epochs`` is SEARCH.EPOCHS in search.py but TRAIN.EPOCHS in train.py and rank_corr.py).
FLAG_KEYS: dict[str, str] = {
    "genotype": "MODEL.GENOTYPE",
    "task": "TASK.NAME",
    "dataset": "DATA.DATASET",
    "data_dir": "DATA.ROOT",
    "out": "OUT_DIR",
}


def _task_value(name: str) -> str:
    from unnas.tasks import canonical_task_name
    return canonical_task_name(name)


# argparse dest -> how its value is written as a config value (default: ``str``).
_FLAG_FORMATS: dict[str, Callable[[Any], str]] = {"task": _task_value}


def flag_overrides(args, mapping: Mapping[str, str] = FLAG_KEYS,
                   formats: Mapping[str, Callable[[Any], str]] | None = None) -> list[str]:
    """``KEY VALUE`` overrides for the flags of ``mapping`` that were given, in ``mapping`` order.

    A flag is skipped when it was not given (None) or when the tool's parser does not define it, so
    a tool can pass the shared :data:`FLAG_KEYS` plus its own entries. Task names are canonicalised
    (an unknown one raises :class:`~unnas.tasks.UnknownTask`); ``formats`` adds or replaces writers.
    """
    writers = {**_FLAG_FORMATS, **(formats or {})}
    out: list[str] = []
    for dest, key in mapping.items():
        value = getattr(args, dest, None)
        if value is not None:
            out += [key, writers.get(dest, str)(value)]
    return out


def setup_logging(out_dir: str | Path | None, is_main: bool) -> None:
    """Configure the ``unnas`` logger, parent of every module's (``unnas.search``, ``unnas.train``, ...).

    Only the main rank writes ``out_dir/log.txt`` (when ``out_dir`` is given) and logs at INFO;
    other ranks print warnings only. Handlers of an earlier call are replaced, not added to, so a
    tool run twice in one process does not print each line twice.
    """
    logger = logging.getLogger("unnas")
    logger.setLevel(logging.INFO if is_main else logging.WARNING)
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    fmt = logging.Formatter("[%(asctime)s] %(message)s", "%Y-%m-%d %H:%M:%S")
    if is_main and out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(out_dir / "log.txt")
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    sh = logging.StreamHandler(sys.stderr)
    sh.setFormatter(fmt)
    logger.addHandler(sh)
    logger.propagate = False


@lru_cache(maxsize=1)
def _user_error_types() -> tuple[type[BaseException], ...]:
    # Imported on first use: these classes live in modules that import torch, and a tool's --help
    # or argparse error should not wait for that.
    from search_spaces.darts.genotype import GenotypeError
    from unnas.data import DataError
    from unnas.tasks import UnknownTask
    return (ConfigError, DataError, GenotypeError, UnknownTask, FileNotFoundError)


def __getattr__(name: str):
    """``USER_ERRORS``: the exceptions that are a user's mistake (one line, exit status 2), not a bug."""
    if name == "USER_ERRORS":
        return _user_error_types()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def error_message(exc: BaseException) -> str:
    """The one-line text of a user error (a missing file reads ``No such file or directory: PATH``)."""
    if isinstance(exc, FileNotFoundError) and exc.filename:
        msg = f"{exc.strerror or 'No such file or directory'}: {exc.filename}"
    else:
        msg = exc.args[0] if exc.args else str(exc)
    return " ".join(str(msg).split())


def _report(prog: str, exc: BaseException) -> int:
    """Print the line for a user error or an interrupt and return the exit status."""
    if isinstance(exc, KeyboardInterrupt):
        print(f"{prog}: interrupted; resume with --resume", file=sys.stderr)
        return 130
    print(f"{prog}: error: {error_message(exc)}", file=sys.stderr)
    return 2


@contextmanager
def user_errors(prog: str) -> Iterator[None]:
    """Turn a user's mistake into one ``prog: error: ...`` line and exit status 2 (Ctrl-C: 130)."""
    try:
        yield
    except (*_user_error_types(), KeyboardInterrupt) as exc:
        sys.exit(_report(prog, exc))


def run_reporting_errors(prog: str, fn: Callable[..., int], *args) -> int:
    """``fn(*args)``, reporting user errors as :func:`user_errors` does but returning the status
    instead of exiting, for a ``main()`` that callers (and tests) run in-process."""
    try:
        return fn(*args)
    except (*_user_error_types(), KeyboardInterrupt) as exc:
        return _report(prog, exc)
