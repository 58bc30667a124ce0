"""Shared command-line plumbing for the thin tools: config assembly and one-line errors."""
from __future__ import annotations

import sys
from contextlib import contextmanager

from unnas.config import ConfigError


def _user_errors():
    from search_spaces.darts.genotype import GenotypeError
    from unnas.data import DataError
    from unnas.tasks import UnknownTask
    return (ConfigError, DataError, GenotypeError, UnknownTask)


@contextmanager
def user_errors(prog: str):
    """Turn a user's mistake into one ``prog: error: ...`` line and exit status 2."""
    try:
        yield
    except _user_errors() as exc:
        msg = exc.args[0] if exc.args else str(exc)
        print(f"{prog}: error: {' '.join(str(msg).split())}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; resume with --resume", file=sys.stderr)
        sys.exit(130)
