"""tools/search.py: config validation and one-line errors with a non-zero exit."""
import subprocess
import sys
from pathlib import Path

import pytest

from unnas.config import ConfigError, load_cfg
from unnas.search.config import search_defaults, validate_search_cfg

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("opts, msg", [
    (["SEARCH.NOPE", "1"], "Non-existent key: SEARCH.NOPE"),
    (["SEARCH.EPOCHS", "two"], "Type mismatch"),
    (["SEARCH.ORDER", "third"], "SEARCH.ORDER must be"),
    (["SEARCH.ARCH_START_EPOCH", "5.0", "SEARCH.EPOCHS", "5"], "would never be updated"),
    (["SEARCH.PORTION", "1.0"], "PORTION"),
    (["MODEL.WIDTH", "7"], "even"),
    (["TASK.NAME", "colouring"], "unknown task"),
    (["SEARCH.EPOCHS"], "KEY VALUE pairs"),
])
def test_config_errors(opts, msg):
    with pytest.raises(ConfigError, match=msg):
        load_cfg(search_defaults(), None, opts, validate_search_cfg)


def test_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("SEARCH:\n  EPOCS: 3\n")
    with pytest.raises(ConfigError, match="bad.yaml: Non-existent .*key: SEARCH.EPOCS"):
        load_cfg(search_defaults(), str(bad), [], validate_search_cfg)
    with pytest.raises(ConfigError, match="not found"):
        load_cfg(search_defaults(), str(tmp_path / "missing.yaml"), [], validate_search_cfg)


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "search.py"), "--no-progress", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("args, msg", [
    (["--dataset", "cifar10", "--data-dir", "/nonexistent/cifar"], "/nonexistent/cifar"),
    (["--task", "cls", "DATA.MAX_TRAIN", "40", "SEARCH.BATCH_SIZE", "64"], "fewer than one batch"),
    (["--task", "nosuchtask"], "unknown task"),
    (["MODEL.DEPTH", "0"], "MODEL.DEPTH"),
])
def test_cli_bad_input_one_line(tmp_path, args, msg):
    r = _cli("--out", str(tmp_path / "run"), *args)
    assert r.returncode == 2, r.stderr
    err = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("search.py: error:") and msg in err[0], r.stderr


def test_cli_refuses_to_overwrite_a_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"precious")
    r = _cli("--out", str(run))
    assert r.returncode == 2 and "--resume" in r.stderr
    assert (run / "checkpoint.pt").read_bytes() == b"precious"


def test_cli_tiny_search_end_to_end(tmp_path):
    r = _cli("--task", "rot", "--out", str(tmp_path / "run"), "MODEL.WIDTH", "4", "MODEL.DEPTH", "3",
             "SEARCH.EPOCHS", "1", "DATA.MAX_TRAIN", "32", "SEARCH.BATCH_SIZE", "8")
    assert r.returncode == 0, r.stderr
    assert "Search finished (first-order DARTS, task rot" in r.stdout
    assert (tmp_path / "run" / "genotype.json").exists() and (tmp_path / "run" / "config.yaml").exists()
