#!/usr/bin/env python
"""``python tools/evolve_loss.py ...`` from a clone: the same program as the installed ``unnas-evolve-loss``
command (its code and help: :mod:`unnas.commands.evolve_loss`)."""
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # this clone's package before an installed one

_command = importlib.import_module("unnas.commands.evolve_loss")
globals().update({k: v for k, v in vars(_command).items() if not k.startswith("__")})   # tests use its names

if __name__ == "__main__":
    sys.exit(_command.main())
