import logging
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# pytest-xdist (pyproject.toml: -n auto) runs one worker per core: each gets its share of the cores,
# at most 2 threads, because more threads than free cores stall at every OpenMP barrier.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))
# NUM_THREADS 0 (auto) follows the machine's load; tests compare runs bit for bit, so they pin the
# count instead (auto_threads honours an explicit OMP_NUM_THREADS; subprocesses inherit it). Set, not
# defaulted: an xdist worker inherits the controller's value, which counted no workers.
os.environ["OMP_NUM_THREADS"] = str(torch.get_num_threads())

SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture
def cifar10_mini():
    path = SHARED / "cifar10-mini"
    if not (path / "data_batch_1").exists():
        pytest.skip("../shared/data/cifar10-mini not present")
    return path


@pytest.fixture
def one_thread():
    """Tiny networks run fastest on one thread (and more threads than free cores stall at every
    OpenMP barrier on a shared machine); a module opts in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def run_cli(capsys):
    """``run_cli(main, argv) -> (exit code, stdout, stderr)``: a tool's ``main`` as its console script
    runs it (a ``SystemExit`` is its exit code), with what it printed."""
    def run(main, argv):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code
        captured = capsys.readouterr()
        return rc, captured.out, captured.err
    return run


@pytest.fixture(autouse=True)
def restore_unnas_logger():
    """The tools' ``setup_logging`` gives the ``unnas`` logger its own handlers (to this test's captured
    stderr, closed after it) and stops propagation, which would hide later tests' records from
    ``caplog``; every test starts from the logger as it was (the order of tests on an xdist worker
    is not the order of a serial run)."""
    logger = logging.getLogger("unnas")
    state = (list(logger.handlers), logger.propagate, logger.level)
    yield
    for h in list(logger.handlers):
        if h not in state[0]:
            logger.removeHandler(h)
            h.close()
    logger.handlers[:] = state[0]
    logger.propagate, logger.level = state[1], state[2]
