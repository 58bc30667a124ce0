#!/usr/bin/env python
"""``python tools/reproduce.py ...`` from a clone: the same program as the installed ``unnas-reproduce`` command
(its code and help: :mod:`unnas.commands.reproduce`)."""
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # this clone's package before an installed one

_command = importlib.import_module("unnas.commands.reproduce")
globals().update({k: v for k, v in vars(_command).items() if not k.startswith("__")})   # tests use its names

if __name__ == "__main__":
    sys.exit(_command.main())
