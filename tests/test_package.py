"""The installed commands: every console script of pyproject.toml names a callable ``main``, and the
programs run from any folder (``python -m unnas.commands.<name>``, which is what the installed
``unnas-*`` scripts call)."""
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")

ROOT = Path(__file__).resolve().parents[1]


def test_console_scripts_name_the_commands():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"unnas-search", "unnas-train", "unnas-rank-corr", "unnas-info", "unnas-plot-genotype",
                            "unnas-reproduce", "unnas-evolve-loss"}
    for name, target in scripts.items():
        module, _, func = target.partition(":")
        assert callable(getattr(importlib.import_module(module), func)), name
        shim = ROOT / "tools" / f"{module.rsplit('.', 1)[1]}.py"
        assert shim.is_file() and module in shim.read_text(), f"tools/ has no shim for {name}"


def test_commands_run_from_another_folder(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "unnas.commands.info", "DARTS_V2", "--width", "4", "--depth", "3", "--json"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["params"] > 0
    r = subprocess.run([sys.executable, "-m", "unnas.commands.rank_corr", "--help"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "analyze" in r.stdout
