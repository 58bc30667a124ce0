"""unnas.cli: flags to KEY VALUE overrides, one-line user errors, the shared log setup."""
import argparse
import logging

import pytest

from unnas import cli
from unnas.config import ConfigError
from unnas.tasks import UnknownTask


def test_flag_overrides_table():
    args = argparse.Namespace(task="Rotation", dataset="cifar10", data_dir=None, out="runs/x", epochs=3)
    assert cli.flag_overrides(args, {**cli.FLAG_KEYS, "epochs": "TRAIN.EPOCHS"}) == [
        "TASK.NAME", "rot", "DATA.DATASET", "cifar10", "OUT_DIR", "runs/x", "TRAIN.EPOCHS", "3"]
    # a flag the tool does not define (no "genotype" here) or did not get (None) adds nothing
    assert cli.flag_overrides(argparse.Namespace(epochs=0), {"epochs": "SEARCH.EPOCHS"}) == ["SEARCH.EPOCHS", "0"]
    listed = cli.flag_overrides(argparse.Namespace(tasks="cls,rot"), {"tasks": "STUDY.TASKS"},
                                {"tasks": lambda t: repr(t.split(","))})
    assert listed == ["STUDY.TASKS", "['cls', 'rot']"]
    with pytest.raises(UnknownTask, match="unknown task 'colouring'; available: cls, col, count, inpaint, jig, multi, rot, seg, simclr, splitbrain, superres"):
        cli.flag_overrides(argparse.Namespace(task="Colouring"), cli.FLAG_KEYS)


def test_user_errors_one_line_and_status(capsys):
    with pytest.raises(SystemExit) as exc:
        with cli.user_errors("tool.py"):
            raise ConfigError("bad   value\n  for KEY")
    assert exc.value.code == 2 and capsys.readouterr().err == "tool.py: error: bad value for KEY\n"
    with pytest.raises(SystemExit) as exc:
        with cli.user_errors("tool.py"):
            open("/nonexistent/file.yaml")
    assert exc.value.code == 2
    assert capsys.readouterr().err == "tool.py: error: No such file or directory: /nonexistent/file.yaml\n"
    with pytest.raises(SystemExit) as exc:
        with cli.user_errors("tool.py"):
            raise KeyboardInterrupt
    assert exc.value.code == 130 and "interrupted; resume with --resume" in capsys.readouterr().err
    with pytest.raises(ValueError):   # a bug is not a user error: its traceback stays
        with cli.user_errors("tool.py"):
            raise ValueError("bug")
    assert cli.run_reporting_errors("tool.py", lambda: 0) == 0
    assert cli.run_reporting_errors("tool.py", cli.flag_overrides, argparse.Namespace(task="nope"), cli.FLAG_KEYS) == 2
    assert capsys.readouterr().err.startswith("tool.py: error: unknown task 'nope'")
    assert UnknownTask in cli.USER_ERRORS and FileNotFoundError in cli.USER_ERRORS


@pytest.fixture
def _restore_unnas_logger():
    """setup_logging reconfigures the process-wide "unnas" logger; give later tests (caplog) it back."""
    logger = logging.getLogger("unnas")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    logger.handlers = []
    yield
    for h in logger.handlers:
        h.close()
    logger.handlers, logger.propagate = saved[0], saved[2]
    logger.setLevel(saved[1])


def test_setup_logging_covers_children(tmp_path, capsys, _restore_unnas_logger):
    cli.setup_logging(tmp_path / "run", True)
    cli.setup_logging(tmp_path / "run", True)   # a second call replaces the handlers
    logging.getLogger("unnas.train").info("epoch 1/2: from the trainer")
    logging.getLogger("unnas.search").info("from the search")
    for h in logging.getLogger("unnas").handlers:
        h.flush()
    text = (tmp_path / "run" / "log.txt").read_text()
    assert "epoch 1/2: from the trainer" in text and "from the search" in text
    assert capsys.readouterr().err.count("from the trainer") == 1
    cli.setup_logging(tmp_path / "rank1", False)
    logging.getLogger("unnas.train").info("hidden")
    logging.getLogger("unnas.train").warning("shown")
    err = capsys.readouterr().err
    assert "hidden" not in err and "shown" in err and not (tmp_path / "rank1").exists()
    assert logging.getLogger("unnas").propagate is False


def test_a_closed_pipe_ends_a_tool_quietly_with_141():
    """`tool ... | head`: the reader goes away; no BrokenPipeError traceback, the shell's SIGPIPE status."""
    import subprocess
    import sys
    from pathlib import Path

    script = ("import sys\nfrom unnas.cli import command\n@command\ndef main():\n"
              "    for _ in range(100000):\n        print('x' * 100)\n    return 0\nsys.exit(main())\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parents[1])
    assert proc.stdout.readline() == b"x" * 100 + b"\n"
    proc.stdout.close()
    assert proc.wait(timeout=60) == 141
    assert proc.stderr.read() == b""
