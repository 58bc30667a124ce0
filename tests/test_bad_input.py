"""Bad input to tools/search.py, tools/train.py and tools/rank_corr.py (issue 10).

Every case checks the same three things:

* stderr holds exactly one ``<prog>: error: ...`` line naming the problem and the fix, and no
  traceback (where the failure comes after the run has started, its log records, timestamped
  ``[YYYY-mm-dd HH:MM:SS] ...`` lines, may come before it; nothing else may);
* the exit status is 2;
* what was there before is untouched: a run's checkpoints and config keep their bytes and mtimes,
  no ``.tmp`` file is left behind, and a run that was refused writes no outputs.

Covered elsewhere, not repeated here: unknown config keys and type mismatches, a nonexistent data
dir, ``--task nosuchtask`` and an existing run without ``--resume`` (tests/test_search_cli.py);
an unknown zoo genotype, a missing ``--probe``/``--eval-only`` checkpoint (tests/test_train.py);
``--shard 3/2``/``x``, bad ``--tasks``/``--seeds``/``--workers``, a nonexistent ``--archs`` file and
a changed study recipe (tests/test_study_cli.py); kills at every write (tests/test_fault_injection.py).

The tools run in-process (``main(argv)``) for speed; only the concurrent-run case starts a second
process. Runs are tiny (width 4, depth 2, 2 steps, 1 epoch).
"""
import errno
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
import torch

import unnas.engine.rundir as rundir
import unnas.commands.rank_corr as rank_corr_cmd
import unnas.commands.search as search_cmd
import unnas.commands.train as train_cmd
import unnas.search.hooks as search_hooks
import unnas.utils.io as io_mod
from unnas.engine.rundir import claim_run_dir

ROOT = Path(__file__).resolve().parents[1]


SEARCH_TOOL, TRAIN_TOOL, STUDY_TOOL = search_cmd, train_cmd, rank_corr_cmd   # what tools/*.py run
TOOLS = {"search": SEARCH_TOOL, "train": TRAIN_TOOL, "study": STUDY_TOOL}
CHECKPOINT = {"search": "checkpoint.pt", "train": "checkpoint_last.pt"}

SEARCH = ["--no-progress", "MODEL.WIDTH", "4", "MODEL.DEPTH", "2", "SEARCH.STEPS_PER_EPOCH", "2",
          "SEARCH.EVAL_BATCHES", "1", "SEARCH.BATCH_SIZE", "4", "SEARCH.EPOCHS", "1", "DATA.MAX_TRAIN", "16",
          "DATA.SYNTHETIC.NUM_TRAIN", "16", "DATA.SYNTHETIC.NUM_TEST", "8", "SEARCH.NUM_THREADS", "1", "DEVICE", "cpu"]
# non-default settings on purpose: a resume must keep them without being told again
TRAIN = ["--no-progress", "MODEL.WIDTH", "4", "MODEL.DEPTH", "2", "TRAIN.EPOCHS", "1", "OPTIM.LR", "0.01",
         "TRAIN.BATCH_SIZE", "8", "DATA.SYNTHETIC.NUM_TRAIN", "32", "DATA.SYNTHETIC.NUM_TEST", "16",
         "DATA.MAX_TRAIN", "16", "DATA.MAX_TEST", "8", "NUM_THREADS", "1", "DEVICE", "cpu"]
STUDY = ["--no-analyze", "--num-archs", "3", "--tasks", "cls,rot"]
STUDY_FAKE = STUDY + ["--trainer", "fake"]
TINY = {"search": SEARCH, "train": TRAIN, "study": STUDY}

LOG_RECORD = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] ")


# ---- fixtures and helpers ----------------------------------------------------------------------
@contextmanager
def _process_state():
    """Give back what the tools change process-wide: the "unnas" logger (setup_logging), torch's
    thread count and deterministic mode (setup_run)."""
    logger = logging.getLogger("unnas")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    threads = torch.get_num_threads()
    deterministic = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.set_num_threads(1)
    logger.handlers = []
    try:
        yield
    finally:
        for h in logger.handlers:
            h.close()
        logger.handlers, logger.propagate = saved[0], saved[2]
        logger.setLevel(saved[1])
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])


@contextmanager
def _no_plots():
    """The search's pictures cost seconds each and are not under test here."""
    mp = pytest.MonkeyPatch()
    mp.setattr(search_hooks, "plot_cell", lambda *a, **k: None)
    mp.setattr(search_hooks, "plot_alpha_history", lambda *a, **k: None)
    try:
        yield
    finally:
        mp.undo()


@pytest.fixture(autouse=True)
def _isolated():
    with _process_state(), _no_plots():
        yield


def run(tool, argv, capsys):
    """``tool.main(argv)`` in-process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    try:
        rc = TOOLS[tool].main(list(argv))
    except SystemExit as exc:
        rc = exc.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def _run_quietly(tool, argv):
    with _process_state(), _no_plots(), redirect_stdout(StringIO()), redirect_stderr(StringIO()) as err:
        try:
            rc = TOOLS[tool].main(list(argv))
        except SystemExit as exc:
            rc = exc.code
    assert rc == 0, err.getvalue()[-3000:]


def error_line(err: str, prog: str, *needles: str, logs: bool = False) -> str:
    """The one ``prog: error:`` line of ``err``; ``logs``: the run's log records may come first."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if logs:
        lines = [ln for ln in lines if not LOG_RECORD.match(ln)]
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith(f"{prog}: error: "), err
    for needle in needles:
        assert needle in line, line
    return line


def assert_refused(rc, err, prog, *needles, logs=False):
    assert rc == 2, err
    return error_line(err, prog, *needles, logs=logs)


def snapshot(folder: Path, skip=("log.txt", ".lock")) -> dict:
    """{relative path: (bytes, mtime_ns)} of the files under ``folder`` (log.txt is append-only
    by design, and .lock names its current holder)."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in skip}


def assert_intact(folder: Path, before: dict, names=None):
    after = snapshot(folder)
    for name in names or before:
        assert after.get(name) == before[name], f"{name} changed"
    assert not [p.name for p in folder.rglob("*.tmp")], "temporary files left behind"


def assert_nothing_written(out: Path):
    """A refused run leaves at most its (empty) claim: no config, checkpoint or metrics."""
    if out.exists():
        left = {p.name for p in out.iterdir()} - {".lock", "log.txt"}
        assert not left, left


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)   # copy2: mtimes kept
    return dst


@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "run"
    _run_quietly("search", ["--task", "rot", "--out", str(out), *SEARCH])
    return out


@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run"
    _run_quietly("train", ["--genotype", "DARTS_V2", "--out", str(out), *TRAIN])
    return out


@pytest.fixture(scope="module")
def study_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "run"
    _run_quietly("study", ["--out", str(out), *STUDY_FAKE])
    return out


def _fresh_args(tool, out, *extra):
    """A new tiny run of ``tool`` in ``out``."""
    if tool == "study":
        return [*extra, "--out", str(out), *STUDY_FAKE]
    return [*extra, "--out", str(out), *TINY[tool]]


# ---- 1. the output directory: a file in the way, read-only, disk full -----------------------------
@pytest.mark.parametrize("tool", ["search", "train", "study"])
def test_output_dir_is_a_file(tool, tmp_path, capsys):
    out = tmp_path / "results"
    out.write_bytes(b"precious notes")
    before = snapshot(tmp_path)
    rc, _, err = run(tool, _fresh_args(tool, out), capsys)
    assert_refused(rc, err, f"{TOOLS[tool].PROG}", f"output directory {out} cannot be created: a file is in the way",
                   "choose another --out")
    assert_intact(tmp_path, before)


@contextmanager
def read_only(folder: Path, monkeypatch, kind: str):
    """``folder`` read-only. ``chmod``: mode a-w (no new entries in it; as root, which chmod does not
    stop, creating one fails with EACCES as it would for a user); ``erofs``: a read-only file system
    (every mkdir or open for writing under it fails with EROFS)."""
    folder = folder.resolve()
    real_open, real_mkdir = os.open, os.mkdir
    code = errno.EACCES if kind == "chmod" else errno.EROFS
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def refused(path) -> bool:
        p = Path(os.fsdecode(path)).absolute()
        if kind == "chmod":
            return p.parent == folder and not p.exists()
        return p == folder or folder in p.parents

    def guarded_open(path, flags, *args, **kwargs):
        if flags & writes and refused(path):
            raise OSError(code, os.strerror(code), os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    def guarded_mkdir(path, *args, **kwargs):
        if refused(path):
            if Path(os.fsdecode(path)).is_dir():
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(path))
            raise OSError(code, os.strerror(code), os.fsdecode(path))
        return real_mkdir(path, *args, **kwargs)

    mode = folder.stat().st_mode
    if kind == "chmod":
        folder.chmod(0o555)
    if kind == "erofs" or os.geteuid() == 0:
        monkeypatch.setattr(os, "open", guarded_open)
        monkeypatch.setattr(os, "mkdir", guarded_mkdir)
    try:
        yield
    finally:
        monkeypatch.setattr(os, "open", real_open)
        monkeypatch.setattr(os, "mkdir", real_mkdir)
        folder.chmod(mode)


@pytest.mark.parametrize("kind", ["chmod", "erofs"])
@pytest.mark.parametrize("tool", ["search", "train"])
def test_read_only_output_dir_new_run(tool, kind, tmp_path, capsys, monkeypatch):
    parent = tmp_path / "ro"
    parent.mkdir()
    out = parent / "run"
    with read_only(parent, monkeypatch, kind):
        rc, _, err = run(tool, _fresh_args(tool, out), capsys)
    assert_refused(rc, err, TOOLS[tool].PROG, f"output directory {out} is not writable", "choose a writable --out")
    assert not out.exists()


@pytest.mark.parametrize("kind", ["chmod", "erofs"])
@pytest.mark.parametrize("tool", ["search", "train"])
def test_read_only_output_dir_resume(tool, kind, tmp_path, capsys, monkeypatch, search_run, train_run):
    out = copy_run(search_run if tool == "search" else train_run, tmp_path / "run")
    before = snapshot(out)
    with read_only(out, monkeypatch, kind):
        rc, _, err = run(tool, ["--out", str(out), "--resume", "--epochs", "2", "--no-progress"], capsys)
    assert_refused(rc, err, TOOLS[tool].PROG, f"output directory {out} is not writable", "choose a writable --out")
    assert_intact(out, before)


@contextmanager
def disk_full(monkeypatch, under: Path, only=lambda name: True):
    """Atomic writes of files under ``under`` (whose name passes ``only``) fail as on a full disk:
    inside ``unnas.utils.io._atomic_write_bytes`` the temporary file is created, and writing it
    gets the kernel's own ENOSPC (its descriptor is pointed at /dev/full)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    under = under.resolve()

    class FullDisk:
        def __getattr__(self, name):
            return getattr(tempfile, name)

        @staticmethod
        def mkstemp(*, dir, prefix, suffix):
            fd, name = tempfile.mkstemp(dir=dir, prefix=prefix, suffix=suffix)
            target = prefix[1:-1]   # ".<name>." -> <name>
            folder = Path(dir).resolve()
            if (folder == under or under in folder.parents) and only(target):
                full = os.open("/dev/full", os.O_WRONLY)
                os.dup2(full, fd)
                os.close(full)
            return fd, name

    monkeypatch.setattr(io_mod, "tempfile", FullDisk())
    yield
    monkeypatch.setattr(io_mod, "tempfile", tempfile)


@pytest.mark.parametrize("tool", ["search", "train"])
def test_disk_full_new_run(tool, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    with disk_full(monkeypatch, tmp_path):
        rc, _, err = run(tool, _fresh_args(tool, out), capsys)
    assert_refused(rc, err, TOOLS[tool].PROG, f"cannot write {out / 'config.yaml'}: No space left on device",
                   "free some space", "--resume")
    assert_nothing_written(out)


@pytest.mark.parametrize("stage", ["first-write", "checkpoint"])
@pytest.mark.parametrize("tool", ["search", "train"])
def test_disk_full_on_resume_keeps_the_run(tool, stage, tmp_path, capsys, monkeypatch, search_run, train_run):
    """``first-write``: the disk is full from the start; ``checkpoint``: it fills up during the
    resumed epoch, so that the new checkpoint cannot be written."""
    out = copy_run(search_run if tool == "search" else train_run, tmp_path / "run")
    before = snapshot(out)
    only = (lambda name: name.endswith(".pt")) if stage == "checkpoint" else (lambda name: True)
    with disk_full(monkeypatch, out, only):
        rc, _, err = run(tool, ["--out", str(out), "--resume", "--epochs", "2", "--no-progress"], capsys)
    line = assert_refused(rc, err, TOOLS[tool].PROG, "No space left on device; free some space, then rerun the command "
                          "(with --resume once the run has a checkpoint; finished checkpoints are intact)", logs=True)
    assert f"cannot write {out}/" in line
    checkpoints = [n for n in before if n.endswith(".pt")]
    assert_intact(out, before, checkpoints if stage == "checkpoint" else None)
    assert torch.load(out / CHECKPOINT[tool], weights_only=True)["epoch"] == 1


def test_disk_full_study(tmp_path, capsys, monkeypatch, study_run):
    out = copy_run(study_run, tmp_path / "run")
    before = snapshot(out, skip=("log.txt", ".lock", "study.sqlite", "study.sqlite-wal", "study.sqlite-shm"))
    with disk_full(monkeypatch, out):
        rc, _, err = run("study", ["--out", str(out), "--trainer", "fake"], capsys)
    assert_refused(rc, err, STUDY_TOOL.PROG, f"cannot write {out}/", "No space left on device; free some "
                   "space, then rerun the same command to continue (finished jobs are kept)", logs=True)
    assert_intact(out, before)
    # sample: an existing architecture list keeps its bytes
    archs = tmp_path / "archs.json"
    archs.write_text('{"archs": []}')
    before = snapshot(tmp_path, skip=())
    with disk_full(monkeypatch, tmp_path):
        rc, _, err = run("study", ["sample", "--num-archs", "3", "--out", str(archs)], capsys)
    assert_refused(rc, err, STUDY_TOOL.PROG, f"cannot write {archs}: No space left on device; free some space, then rerun it")
    assert archs.read_text() == '{"archs": []}' and not list(tmp_path.rglob("*.tmp"))


# ---- 2. task files: jigsaw permutations, colorization prior -----------------------------------------
@pytest.fixture
def task_files(tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    np.save(files / "perms_shape.npy", np.arange(15).reshape(3, 5))
    np.save(files / "prior_shape.npy", np.ones(7))
    (files / "garbage.npy").write_bytes(b"\x93NUMPY garbage")
    return files


@pytest.mark.parametrize("tool", ["search", "train", "study"])
@pytest.mark.parametrize("task, key, name, needles", [
    ("jig", "TASK.JIGSAW_PERMS_FILE", "missing.npy", ["cannot read a .npy permutation file (No such file or directory)"]),
    ("jig", "TASK.JIGSAW_PERMS_FILE", "perms_shape.npy", ["expected an (N, 4) array", "got shape (3, 5)"]),
    ("jig", "TASK.JIGSAW_PERMS_FILE", "garbage.npy", ["cannot read a .npy permutation file"]),
    ("col", "TASK.COL_PRIOR_FILE", "prior_shape.npy", ["expected a (313,) array", "got shape (7,)"]),
    ("col", "TASK.COL_PRIOR_FILE", "garbage.npy", ["cannot read a .npy bin prior"]),
    ("col", "TASK.COL_PRIOR_FILE", "missing.npy", ["cannot read a .npy bin prior (No such file or directory)"]),
], ids=["perms-missing", "perms-shape", "perms-garbage", "prior-shape", "prior-garbage", "prior-missing"])
def test_bad_task_file(tool, task, key, name, needles, task_files, tmp_path, capsys):
    path = task_files / name
    out = tmp_path / "run"
    if tool == "study":   # the default trainer: the study checks its tasks before claiming a job
        argv = ["--out", str(out), "--no-analyze", "--num-archs", "3", "--tasks", f"cls,{task}", key, str(path)]
    else:
        argv = ["--task", task, "--out", str(out), *TINY[tool], key, str(path)]
    rc, _, err = run(tool, argv, capsys)
    assert_refused(rc, err, TOOLS[tool].PROG, f"{key} {path}: ", *needles)
    if tool != "study":
        assert_nothing_written(out)


# ---- 3. checkpoints that are not ours ---------------------------------------------------------------
class _Evil:
    """Unpickling this runs a shell command (as a malicious checkpoint would)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("how", ["eval-only", "probe", "finetune", "train-resume", "search-resume"])
def test_malicious_checkpoint_runs_no_code(how, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    out = tmp_path / "run"
    out.mkdir()
    name = "checkpoint.pt" if how == "search-resume" else "checkpoint_last.pt"
    evil = out / name
    torch.save({"cfg": "SEED: 1\n", "meta": {}, "model": _Evil(marker)}, evil)
    before = snapshot(out)
    tool, argv = {
        "eval-only": ("train", ["--eval-only", str(evil)]),
        "probe": ("train", ["--probe", str(evil), "--out", str(tmp_path / "p"), *TRAIN]),
        "finetune": ("train", ["--finetune", str(evil), "--out", str(tmp_path / "f"), *TRAIN]),
        "train-resume": ("train", ["--out", str(out), "--resume", "--no-progress"]),
        "search-resume": ("search", ["--out", str(out), "--resume", "--no-progress"]),
    }[how]
    rc, _, err = run(tool, argv, capsys)
    assert_refused(rc, err, TOOLS[tool].PROG, f"cannot read checkpoint {evil} (UnpicklingError)",
                   "loading never runs code from a file", "pass a checkpoint written by this toolkit")
    assert not marker.exists(), "loading the checkpoint ran its code"
    assert_intact(out, before)
    assert_nothing_written(tmp_path / "p")
    assert_nothing_written(tmp_path / "f")
    # the file is malicious indeed: an unsafe load runs the command
    torch.load(evil, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("content, needle", [
    ("list", "is not a checkpoint of this toolkit (it holds a list); pass a checkpoint written by this toolkit"),
    ("random", "(UnpicklingError): it is not a checkpoint of this toolkit, is truncated"),
    ("empty", "(EOFError): it is not a checkpoint of this toolkit, is truncated"),
    ("dict", "is not a checkpoint of tools/train.py (no 'meta'); pass the checkpoint_last.pt or checkpoint_best.pt"),
], ids=["list", "random-bytes", "empty", "dict-without-meta"])
def test_eval_only_foreign_file(content, needle, tmp_path, capsys):
    path = tmp_path / "model.pt"
    if content == "list":
        torch.save([1, 2, 3], path)
    elif content == "random":
        path.write_bytes(np.random.default_rng(0).bytes(300))
    elif content == "empty":
        path.write_bytes(b"")
    else:
        torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    rc, out, err = run("train", ["--eval-only", str(path)], capsys)
    assert_refused(rc, err, TRAIN_TOOL.PROG, str(path), needle)
    assert out == ""


@pytest.mark.parametrize("flag", ["--eval-only", "--probe", "--finetune"])
def test_search_checkpoint_given_to_train(flag, search_run, tmp_path, capsys):
    ckpt = search_run / "checkpoint.pt"
    before = snapshot(search_run)
    argv = [flag, str(ckpt)] + ([] if flag == "--eval-only" else ["--out", str(tmp_path / "o"), *TRAIN])
    rc, _, err = run("train", argv, capsys)
    assert_refused(rc, err, TRAIN_TOOL.PROG, f"{ckpt} is a search checkpoint (tools/search.py)",
                   f"tools/train.py --genotype {search_run / 'genotype.json'}")
    assert_intact(search_run, before)
    assert_nothing_written(tmp_path / "o")


def test_resume_of_a_run_whose_checkpoint_is_damaged(train_run, tmp_path, capsys):
    out = copy_run(train_run, tmp_path / "run")
    (out / "checkpoint_last.pt").write_bytes((out / "checkpoint_last.pt").read_bytes()[:100])   # truncated
    before = snapshot(out)
    rc, _, err = run("train", ["--out", str(out), "--resume", "--no-progress"], capsys)
    assert_refused(rc, err, TRAIN_TOOL.PROG, f"cannot read checkpoint {out / 'checkpoint_last.pt'}", "truncated")
    assert_intact(out, before)


# ---- 4. a dense task on data with per-image labels --------------------------------------------------
@pytest.mark.parametrize("tool", ["search", "train"])
def test_seg_task_without_label_maps(tool, tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = run(tool, ["--task", "seg", "--out", str(out), *TINY[tool]], capsys)
    assert_refused(rc, err, TOOLS[tool].PROG, "task seg needs per-pixel label maps but data set synthetic has "
                   "per-image labels", "use a segmentation data set (e.g. cityscapes) or another task")
    assert_nothing_written(out)


# ---- 5./6. --resume: nothing to resume, changed settings, safe changes ----------------------------
@pytest.mark.parametrize("tool", ["search", "train"])
def test_resume_with_a_mistyped_out(tool, tmp_path, capsys):
    out = tmp_path / "rnu"
    rc, _, err = run(tool, ["--out", str(out), "--resume", "--no-progress"], capsys)
    assert_refused(rc, err, TOOLS[tool].PROG, f"nothing to resume: {out} holds no {CHECKPOINT[tool]}",
                   "check --out, or drop --resume")
    assert not out.exists()


@pytest.mark.parametrize("tool", ["search", "train"])
@pytest.mark.parametrize("override, needle", [
    (["SEED", "3"], "SEED (1 -> 3) differs"),
    (["OPTIM.LR", "0.5"], "OPTIM.LR ({lr} -> 0.5) differs"),
    (["MODEL.WIDTH", "8"], "MODEL.WIDTH (4 -> 8) differs"),
    (["--task", "jig"], "TASK.NAME ('{task}' -> 'jig') differs"),
    (["--epochs", "2", "SEED", "3", "MODEL.DEPTH", "3"], "MODEL.DEPTH (2 -> 3), SEED (1 -> 3) differ"),
], ids=["seed", "lr", "width", "task", "two-keys-and-epochs"])
def test_resume_with_changed_settings_is_refused(tool, override, needle, search_run, train_run, tmp_path, capsys):
    src = search_run if tool == "search" else train_run
    before = snapshot(src)
    rc, _, err = run(tool, ["--out", str(src), "--resume", *override], capsys)
    needle = needle.format(lr="0.025" if tool == "search" else "0.01", task="rot" if tool == "search" else "cls")
    line = assert_refused(rc, err, TOOLS[tool].PROG, "--resume continues the run with its stored config, but",
                          needle, "drop the other overrides, or start a new run with another --out")
    assert "EPOCHS" not in line.split("; on resume only")[0]   # the safe key is not blamed
    assert_intact(src, before)


@pytest.mark.parametrize("tool", ["search", "train"])
def test_resume_with_more_epochs_keeps_the_stored_settings(tool, search_run, train_run, tmp_path, capsys):
    out = copy_run(search_run if tool == "search" else train_run, tmp_path / "run")
    rc, _, err = run(tool, ["--out", str(out), "--resume", "--epochs", "2", "--no-progress"], capsys)
    assert rc == 0, err
    assert "Traceback" not in err
    cfg = (out / "config.yaml").read_text()
    section = "SEARCH" if tool == "search" else "TRAIN"
    assert re.search(rf"^{section}:\n(  .*\n)*?  EPOCHS: 2$", cfg, re.M), cfg
    assert re.search(r"^MODEL:\n(  .*\n)*?  WIDTH: 4$", cfg, re.M) and re.search(r"^  DEPTH: 2$", cfg, re.M)
    if tool == "train":   # started with OPTIM.LR 0.01, resumed without it
        assert re.search(r"^OPTIM:\n(  .*\n)*?  LR: 0.01$", cfg, re.M), cfg
    state = torch.load(out / CHECKPOINT[tool], weights_only=True)
    assert state["epoch"] == 2
    assert not list(out.rglob("*.tmp"))


# ---- 7. a second process on the same --out ----------------------------------------------------------
def test_second_process_on_the_same_out_search(tmp_path):
    out = tmp_path / "run"
    with claim_run_dir(out):
        before = snapshot(out)
        r = subprocess.run([sys.executable, str(ROOT / "tools" / "search.py"), "--out", str(out), *SEARCH],
                           capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
        holder = f"process {os.getpid()} on {os.uname().nodename}"
        assert_refused(r.returncode, r.stderr, SEARCH_TOOL.PROG, f"run directory {out} is in use by {holder}",
                       "wait for it to finish, or choose another --out")
        assert_intact(out, before)
        assert (out / ".lock").read_text() == holder
    assert_nothing_written(out)


def test_second_claim_on_the_same_out_train(train_run, tmp_path, capsys, monkeypatch):
    """The same lock taken through a second open file (flock tells them apart as it does two
    processes), so the tool's own claim runs in this process."""
    out = copy_run(train_run, tmp_path / "run")
    before = snapshot(out)
    with claim_run_dir(out):
        with monkeypatch.context() as m:
            m.setattr(rundir, "_held", {})   # this process's claim is not the tool's
            rc, _, err = run("train", ["--out", str(out), "--resume", "--epochs", "2", "--no-progress"], capsys)
    assert_refused(rc, err, TRAIN_TOOL.PROG, f"run directory {out} is in use by process {os.getpid()}",
                   "wait for it to finish, or choose another --out")
    assert_intact(out, before)


# ---- 8. data, genotypes, config files, architecture lists, shards -----------------------------------
@pytest.fixture
def cifar_dirs(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta"]:
        (garbage / name).write_bytes(b"\xdd" + bytes(199))
    return {"empty": empty, "garbage": garbage}


@pytest.mark.parametrize("tool", ["search", "train", "study"])
@pytest.mark.parametrize("which, needles", [
    ("empty", ["empty/data_batch_1 not found", "CIFAR-10 expects the python-pickle batches",
               "download/extract them, or set DATA.DOWNLOAD True"]),
    ("garbage", ["garbage/data_batch_1 is not a readable CIFAR-10 pickle", "re-download or re-extract it"]),
], ids=["empty-dir", "garbage-batches"])
def test_bad_cifar_dir(tool, which, needles, cifar_dirs, tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = run(tool, ["--dataset", "cifar10", "--data-dir", str(cifar_dirs[which]), "--out", str(out),
                            *TINY[tool]], capsys)
    assert_refused(rc, err, TOOLS[tool].PROG, *needles)
    if tool != "study":
        assert_nothing_written(out)


def _genotype_file(tmp_path, kind):
    cell = [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]] * 4
    doc = {"normal": [["frob_conv", 0], ["sep_conv_3x3", 1]] * 4, "normal_concat": [2, 3, 4, 5],
           "reduce": cell, "reduce_concat": [2, 3, 4, 5]}
    path = tmp_path / f"{kind}.json"
    path.write_text({"unknown-op": json.dumps(doc), "broken": "{not json"}[kind])
    return str(path)


@pytest.mark.parametrize("spec, needles", [
    ("nonsense", ["unknown genotype 'nonsense': not a zoo name, an existing file or a Genotype(...) string",
                  "zoo names: NASNet"]),
    ("unknown-op", ["normal cell: unknown op 'frob_conv' at position 0", "known ops:"]),
    ("broken", ["genotype text is neither JSON nor a DARTS Genotype(...) string"]),
    ("Genotype(normal=[('sep_conv_3x3', 0)])", ["genotype dict lacks ['reduce']"]),
], ids=["nonsense", "json-unknown-op", "json-broken", "string-incomplete"])
def test_bad_genotype(spec, needles, tmp_path, capsys):
    if spec in ("unknown-op", "broken"):
        spec = _genotype_file(tmp_path, spec)
    out = tmp_path / "run"
    rc, _, err = run("train", ["--genotype", spec, "--out", str(out), *TRAIN], capsys)
    assert_refused(rc, err, TRAIN_TOOL.PROG, *needles)
    assert_nothing_written(out)


@pytest.mark.parametrize("text, needle", [
    ("TRAIN: [unclosed\n", "not valid YAML (expected ',' or ']', but got '<stream end>' at line 2, column 1); fix the file"),
    ("- just\n- a list\n", "does not hold a mapping of config keys"),
    ("", "does not hold a mapping of config keys"),
    (b"\x9c\xff\x00binary", "not a text (UTF-8) file"),
    ("SEED: !!python/object/apply:os.system ['true']\n", "not valid YAML (could not determine a constructor"),
], ids=["syntax", "list", "empty", "binary", "python-tag"])
@pytest.mark.parametrize("tool", ["search", "train", "study"])
def test_bad_cfg_file(tool, text, needle, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = tmp_path / "run"
    rc, _, err = run(tool, ["--cfg", str(path), "--out", str(out)], capsys)
    assert_refused(rc, err, TOOLS[tool].PROG, f"{path}: ", needle)
    assert not out.exists()


@pytest.mark.parametrize("tool, opts, needle", [
    ("search", ["SEARCH.EPOCHS", "0"], "SEARCH.EPOCHS must be >= 1, got 0"),
    ("train", ["OPTIM.LR", "fast"], "Type mismatch"),
    ("train", ["DEVICE", "tpu"], "DEVICE 'tpu' is not a device; use auto, cpu, cuda or cuda:N"),
    ("search", ["DEVICE", "cuda:99"], "DEVICE 'cuda:99' requested but"),
    ("study", ["STUDY.NUM_ARCHS", "-1"], "STUDY.NUM_ARCHS must be >= 0, got -1"),
], ids=["search-epochs", "train-lr-type", "train-device", "search-gpu", "study-num-archs"])
def test_bad_config_values(tool, opts, needle, tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = run(tool, ["--out", str(out), *TINY[tool], *opts], capsys)
    assert_refused(rc, err, TOOLS[tool].PROG, needle)
    if tool != "study":
        assert_nothing_written(out)


@pytest.mark.parametrize("content, needles", [
    ("{broken", ["not valid JSON (Expecting property name enclosed in double quotes at line 1)"]),
    ("", ["no architectures found; pass a JSON list of architectures"]),
    ("hello world\n", ["genotype text is neither JSON nor a DARTS Genotype(...) string"]),
    (json.dumps({"archs": [{"id": "x", "genotype": {
        "normal": [["frob_conv", 0], ["sep_conv_3x3", 1]] * 4, "normal_concat": [2, 3, 4, 5],
        "reduce": [["max_pool_3x3", 0], ["sep_conv_3x3", 1]] * 4, "reduce_concat": [2, 3, 4, 5]}}]}),
     ["architecture x: normal cell: unknown op 'frob_conv' at position 0"]),
    ("[1, 2, 3]", ["must have 4 entries"]),
], ids=["broken-json", "empty", "text", "unknown-op", "list-of-numbers"])
def test_bad_arch_list(content, needles, tmp_path, capsys):
    path = tmp_path / "archs.json"
    path.write_text(content)
    out = tmp_path / "run"
    rc, _, err = run("study", ["--archs", str(path), "--out", str(out), "--trainer", "fake", "--no-analyze"], capsys)
    line = assert_refused(rc, err, STUDY_TOOL.PROG, f"{path}: ", *needles)
    assert line.count(str(path)) == 1, line
    assert not (out / "study.sqlite").exists()


def test_arch_dir_with_a_broken_yaml(tmp_path, capsys):
    archs = tmp_path / "archs"
    archs.mkdir()
    (archs / "a1.yaml").write_text("NAS: [unclosed\n")
    rc, _, err = run("study", ["--archs", str(archs), "--out", str(tmp_path / "run"), "--trainer", "fake"], capsys)
    assert_refused(rc, err, STUDY_TOOL.PROG, f"{archs / 'a1.yaml'}: cannot read YAML (expected ',' or ']', but got "
                   "'<stream end>' at line 2, column 1); fix or remove the file")


@pytest.mark.parametrize("shard, needle", [
    ("0/0", "--shard 0/0: need n >= 1 and 0 <= i < n"),
    ("1/2/3", "--shard must look like i/n (e.g. 0/4), got '1/2/3'"),
    ("-1/2", "--shard must look like i/n (e.g. 0/4), got '-1/2'"),
    ("a/b", "--shard must look like i/n (e.g. 0/4), got 'a/b'"),
], ids=["0of0", "three-parts", "negative", "letters"])
def test_bad_shard(shard, needle, tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = run("study", [f"--shard={shard}", "--out", str(out), *STUDY_FAKE], capsys)
    assert_refused(rc, err, STUDY_TOOL.PROG, needle)
    assert not out.exists()


@pytest.mark.parametrize("content", [b"STUDY: [broken\n", b"\x9c\xff binary"], ids=["syntax", "binary"])
def test_study_with_a_damaged_stored_config(content, study_run, tmp_path, capsys):
    out = copy_run(study_run, tmp_path / "run")
    (out / "config.yaml").write_bytes(content)
    before = snapshot(out, skip=("study.sqlite-wal", "study.sqlite-shm"))
    for argv in (["--out", str(out), "--trainer", "fake", "--no-analyze"], ["status", str(out)], ["analyze", str(out)]):
        rc, _, err = run("study", argv, capsys)
        assert_refused(rc, err, STUDY_TOOL.PROG, f"cannot read the study's stored config {out / 'config.yaml'}",
                       "restore it from a copy, or start a new study with another --out")
    assert_intact(out, before)
