"""Shared command-line plumbing for the thin tools: flags to config overrides, logging, one-line errors.

Every tool goes through these, so a flag, a log line or an error reads the same in each of them.
"""
from __future__ import annotations

import errno
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


def _genotype_value(text: str) -> str:
    """``--genotype`` as config text. yacs reads a value that is a Python literal as that literal, in
    an override and again in every stored config it reloads, so an architecture given as a JSON
    object (a NAS-Bench-101 ``{"matrix": ..., "ops": ...}``, a DARTS ``{"normal": ...}``) would turn
    into a dict; it is written as its space's ``repr`` instead (``CellSpec(...)``, ``Genotype(...)``),
    which is no literal. Names, paths and other text pass as they are."""
    import json
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if not isinstance(value, dict):
        return text
    from search_spaces import arch_from_dict
    return repr(arch_from_dict(value.get("genotype", value)))


# argparse dest -> how its value is written as a config value (default: ``str``).
_FLAG_FORMATS: dict[str, Callable[[Any], str]] = {"task": _task_value, "genotype": _genotype_value}


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


OVERRIDES_METAVAR = "KEY VALUE"


def add_overrides(parser, example: str = "MODEL.WIDTH 16") -> None:
    """The ``KEY VALUE`` config-override positional of a tool; parse with :func:`parse_with_overrides`."""
    parser.add_argument("opts", nargs="*", metavar=OVERRIDES_METAVAR,
                        help=f"config overrides, e.g. {example} (anywhere on the line: before, between or after options)")


def _looks_like_option(text: str) -> bool:
    if not text.startswith("-") or text in ("-", "--"):
        return False
    try:
        float(text)       # a negative number is a value (OPTIM.LR -1 is for validation to refuse)
        return False
    except ValueError:
        return True


def parse_with_overrides(parser, argv=None):
    """``parser.parse_args(argv)`` where options and ``KEY VALUE`` overrides may be interleaved
    (``MODEL.WIDTH 16 --no-progress SEED 2``); all overrides land in ``args.opts`` in command-line
    order, and an unknown option is still an error. ``parser`` declares the overrides with
    :func:`add_overrides` (a ``nargs="*"`` positional ``opts``): argparse takes the first run of
    them, and this collects the runs after later options, which argparse hands back as extras."""
    args, rest = parser.parse_known_args(argv)
    bad = [x for x in rest if _looks_like_option(x)]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    args.opts = list(getattr(args, "opts", None) or []) + [x for x in rest if x != "--"]
    return args


def place_run(cfg, run_dir: Callable, checkpoint: str, resume: bool, what: str) -> tuple[Path, Path]:
    """The run's directory (``run_dir(cfg, resume)``: OUT_DIR or the automatic one), written into the
    config so that config.yaml names it, and its checkpoint path; ``--resume`` with no checkpoint
    there is one line (``what``: the kind of run to start instead, e.g. "a new search")."""
    from unnas.config import ConfigError

    out = Path(run_dir(cfg, resume))
    cfg.defrost()
    cfg.OUT_DIR = str(out)
    cfg.freeze()
    ckpt = out / checkpoint
    if resume and not ckpt.exists():
        raise ConfigError(f"nothing to resume: {out} holds no {checkpoint}; check --out, or drop --resume "
                          f"to start {what}")
    return out, ckpt


def stored_config(checkpoint: str | Path) -> str:
    """The config a run was started with, from its checkpoint (the authority on resume)."""
    from unnas.engine import load_checkpoint
    state = load_checkpoint(checkpoint)
    if "cfg" not in state:
        from unnas.data import DataError
        raise DataError(f"{checkpoint} holds no config; it was not written by this tool: check --out, or start a "
                        "new run with another --out")
    return state["cfg"]


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


@contextmanager
def logging_restored():
    """Run a program's ``main`` inside another program (tools/reproduce.py runs the search and the
    study this way): afterwards the ``unnas`` logger is as it was, and the handlers the inner program
    added (its run's ``log.txt``) are closed, so the next lines do not land in that run's log."""
    logger = logging.getLogger("unnas")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    try:
        yield
    finally:
        for h in list(logger.handlers):
            if h not in saved[0]:
                logger.removeHandler(h)
                h.close()
        for h in saved[0]:
            if h not in logger.handlers:
                logger.addHandler(h)
        logger.setLevel(saved[1])
        logger.propagate = saved[2]


@lru_cache(maxsize=1)
def _user_error_types() -> tuple[type[BaseException], ...]:
    # Imported on first use: these classes live in modules that import torch, and a tool's --help
    # or argparse error should not wait for that.
    from search_spaces.errors import ArchitectureError   # GenotypeError, SpecError, ...
    from unnas.data import DataError
    from unnas.tasks import UnknownTask
    return (ConfigError, DataError, ArchitectureError, UnknownTask, FileNotFoundError)


def __getattr__(name: str):
    """``USER_ERRORS``: the exceptions that are a user's mistake (one line, exit status 2), not a bug."""
    if name == "USER_ERRORS":
        return _user_error_types()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# OSErrors that are the machine's state, not a bug: a full disk, a read-only or forbidden folder.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EISDIR, errno.ENOTDIR}


def _is_user_error(exc: BaseException) -> bool:
    return isinstance(exc, _user_error_types()) or (isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS)


# How a tool's run continues after a write error was fixed (the tail of the ``cannot write`` line).
RESUME_HINT = "rerun the command (with --resume once the run has a checkpoint; finished checkpoints are intact)"


def error_message(exc: BaseException, then: str | None = RESUME_HINT) -> str:
    """The one-line text of a user error (a missing file reads ``No such file or directory: PATH``);
    a write error ends with ``then`` (how to continue once it is fixed; None: nothing)."""
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError) and exc.errno in _WRITE_ERRNOS:
        where = f" {exc.filename}" if exc.filename else ""
        hint = ("free some space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else
                "make it writable or choose another --out")
        msg = f"cannot write{where}: {exc.strerror}; {hint}" + (f", then {then}" if then else "")
    elif isinstance(exc, FileNotFoundError) and exc.filename:
        msg = f"{exc.strerror or 'No such file or directory'}: {exc.filename}"
    else:
        msg = exc.args[0] if exc.args else str(exc)
    return " ".join(str(msg).split())


def _report(prog: str, exc: BaseException, then: str | None = RESUME_HINT) -> int:
    """Print the line for a user error or an interrupt and return the exit status."""
    if isinstance(exc, KeyboardInterrupt):
        how = "resume with --resume" if then == RESUME_HINT else then   # rank_corr.py: "rerun the same command"
        print(f"{prog}: interrupted" + (f"; {how}" if how else ""), file=sys.stderr)
        return 130
    print(f"{prog}: error: {error_message(exc, then)}", file=sys.stderr)
    return 2


@contextmanager
def user_errors(prog: str, then: str | None = RESUME_HINT) -> Iterator[None]:
    """Turn a user's mistake into one ``prog: error: ...`` line and exit status 2 (Ctrl-C: 130);
    ``then`` ends the line of a write error (see :func:`error_message`)."""
    try:
        yield
    except (OSError, *_user_error_types(), KeyboardInterrupt) as exc:
        if not (isinstance(exc, KeyboardInterrupt) or _is_user_error(exc)):
            raise
        sys.exit(_report(prog, exc, then))


def run_reporting_errors(prog: str, fn: Callable[..., int], *args) -> int:
    """``fn(*args)``, reporting user errors as :func:`user_errors` does but returning the status
    instead of exiting, for a ``main()`` that callers (and tests) run in-process."""
    try:
        return fn(*args)
    except (OSError, *_user_error_types(), KeyboardInterrupt) as exc:
        if not (isinstance(exc, KeyboardInterrupt) or _is_user_error(exc)):
            raise
        return _report(prog, exc)


def dispatch_subcommand(prog: str, argv, handlers: dict, usage: Callable[[], str], default: str = "run") -> int:
    """``PROG [COMMAND] ...`` of a multi-command tool: ``-h``/``help`` print ``usage()``; a first word
    that is a command picks it; one that looks like neither an option nor a ``KEY VALUE`` key is an
    unknown command (exit 2); anything else goes to ``default``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help", "help"):
        print(usage(), end="")
        return 0
    if argv and argv[0] in handlers:
        cmd, argv = argv[0], argv[1:]
    elif argv and not argv[0].startswith("-") and not argv[0].isupper() and "." not in argv[0]:
        print(f"{prog}: error: unknown command {argv[0]!r}; use one of {', '.join(handlers)}", file=sys.stderr)
        return 2
    else:
        cmd = default
    return handlers[cmd](argv)


def command(main: Callable[..., int]) -> Callable[..., int]:
    """Decorates a tool's ``main``: when whoever reads its output goes away (``tool --list | head``),
    it ends quietly with 141 (128 + SIGPIPE, what the shell reports for a process killed by it)
    instead of a ``BrokenPipeError`` traceback, and Python's exit-time flush raises nothing either."""
    import functools
    import os

    @functools.wraps(main)
    def wrapped(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)   # the flush at exit writes here, not to the closed pipe
            os.dup2(devnull, sys.stdout.fileno())
            return 141
    return wrapped
