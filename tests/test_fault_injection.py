"""Kill a search and a training run at every write point (and a few at random moments with a real
SIGKILL), resume, and check that every output is bit-identical to an uninterrupted run: weights,
alphas, genotypes, metrics lines and the summary.

The in-process kill raises :class:`Killed` (a BaseException, as KeyboardInterrupt is) just before
the Nth write of the run, optionally leaving the temporary file that a process killed inside an
atomic write would leave; the subprocess kills are real ``kill -9`` s of ``tools/search.py`` and
``tools/train.py``.
"""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import unnas.utils.io as io_mod
from unnas.config import load_cfg
from unnas.engine import MetricsHook
from unnas.search import Searcher
from unnas.search.config import search_defaults, validate_search_cfg
from unnas.search.hooks import default_hooks
from unnas.train import train, train_defaults, validate_train_cfg
from unnas.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
SEARCH = ["SEARCH.STEPS_PER_EPOCH", "2", "SEARCH.EVAL_BATCHES", "1", "MODEL.WIDTH", "4", "MODEL.DEPTH", "2",
          "SEARCH.BATCH_SIZE", "4", "SEARCH.EPOCHS", "2", "DATA.MAX_TRAIN", "16", "DATA.SYNTHETIC.NUM_TRAIN", "16",
          "DATA.SYNTHETIC.NUM_TEST", "8", "LOG_PERIOD", "1", "TASK.NAME", "rot", "SEARCH.NUM_THREADS", "1",
          "CHECKPOINT_STEPS", "1"]
TRAIN = ["DATA.SYNTHETIC.NUM_TRAIN", "32", "DATA.SYNTHETIC.NUM_TEST", "16", "DATA.MAX_TRAIN", "16",
         "DATA.MAX_TEST", "8", "MODEL.WIDTH", "4", "MODEL.DEPTH", "2", "TRAIN.BATCH_SIZE", "8", "TRAIN.EPOCHS", "3",
         "DEVICE", "cpu", "LOG_PERIOD", "1", "NUM_THREADS", "1", "MODEL.GENOTYPE", "DARTS_V2"]


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py


class Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs except ``finally`` blocks."""


@contextmanager
def writes(monkeypatch, kill_at: int | None = None, leave_temp: bool = False):
    """Count the run's writes (atomic files and metrics lines); raise Killed before write ``kill_at``."""
    seen = []
    real_atomic, real_line = io_mod._atomic_write_bytes, MetricsHook._write

    def tick(path):
        seen.append(Path(path).name)
        if len(seen) == kill_at:
            if leave_temp and Path(path).name != "store-complete":   # a database commit leaves no temporary
                Path(path).parent.joinpath(f".{Path(path).name}.killed.tmp").write_bytes(b"torn")
            raise Killed(path)

    def atomic(path, data):
        tick(path)
        real_atomic(path, data)

    def line(self, rec):
        tick(self.file.name)
        real_line(self, rec)

    monkeypatch.setattr(io_mod, "_atomic_write_bytes", atomic)
    monkeypatch.setattr(MetricsHook, "_write", line)
    yield seen
    monkeypatch.setattr(io_mod, "_atomic_write_bytes", real_atomic)
    monkeypatch.setattr(MetricsHook, "_write", real_line)


def _no_times(obj):
    """Drop wall-clock fields and paths, which legitimately differ between runs."""
    if isinstance(obj, dict):
        return {k: _no_times(v) for k, v in obj.items()
                if k not in ("epoch_seconds", "wall_time", "out_dir", "checkpoint_last", "checkpoint_best")}
    if isinstance(obj, list):
        return [_no_times(v) for v in obj]
    return obj


def _jsonl(path):
    return [_no_times(json.loads(x)) for x in path.read_text().splitlines()]


def _state(path):
    return torch.load(path, weights_only=True)


def assert_same_search(run: Path, ref: Path):
    for name in ("genotype.json", "genotypes.jsonl", "alpha_history.json"):
        assert (run / name).read_text() == (ref / name).read_text(), name
    assert _jsonl(run / "metrics.jsonl") == _jsonl(ref / "metrics.jsonl")
    assert _no_times(json.loads((run / "summary.json").read_text())) == _no_times(json.loads((ref / "summary.json").read_text()))
    a, b = _state(run / "checkpoint.pt"), _state(ref / "checkpoint.pt")
    for part in ("model", "arch"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in b[part]), part
    for p in ("normal_cell.png", "reduction_cell.png", "alphas_normal.png", "alphas_reduce.png"):
        assert (run / p).stat().st_size > 0
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def _search(out):
    cfg = load_cfg(search_defaults(), None, SEARCH + ["OUT_DIR", str(out)], validate_search_cfg)
    s = Searcher(cfg, out, default_hooks(cfg, True, progress=False))
    s.resume()
    s.run()


@pytest.fixture
def quick_pictures(monkeypatch):
    """Pictures as one-byte PNG stand-ins, written by the same atomic writer: the write points stay
    where they are and each run saves ~4 s of matplotlib (the pictures are tested elsewhere)."""
    import unnas.search.hooks as search_hooks

    def picture(*args):
        path = next(a for a in args if isinstance(a, Path))
        io_mod._atomic_write_bytes(path, b"P")

    monkeypatch.setattr(search_hooks, "plot_cell", picture)
    monkeypatch.setattr(search_hooks, "plot_alpha_history", picture)


def kill_points(names: list[str]) -> list[int]:
    """The 1-based indices of the first and the last write of every file: each write point (a place
    that writes that file) early in the run, before any checkpoint or with none yet, and late."""
    first = {n: names.index(n) + 1 for n in names}
    last = {n: len(names) - names[::-1].index(n) for n in names}
    return sorted(set(first.values()) | set(last.values()))


@pytest.fixture(scope="module")
def search_ref(tmp_path_factory):
    """An uninterrupted tiny search, with real pictures (the subprocess test compares against it too)."""
    ref = tmp_path_factory.mktemp("search_ref")
    mp = pytest.MonkeyPatch()
    with writes(mp) as seen:
        _search(ref)
    mp.undo()
    return ref, list(seen)


def test_search_killed_at_every_write_point_resumes_bit_identical(tmp_path, monkeypatch, search_ref, quick_pictures):
    ref, names = search_ref
    assert len(names) >= 15 and "checkpoint.pt" in names and "summary.json" in names
    points = kill_points(names)
    assert {names[n - 1] for n in points} == set(names)
    for n in points:
        run = tmp_path / f"kill{n:02d}"
        with writes(monkeypatch, kill_at=n, leave_temp=n % 2 == 0):
            with pytest.raises(Killed):
                _search(run)
        _search(run)  # resume: from the last checkpoint, or from scratch when none was written
        assert_same_search(run, ref)


def _train(out, resume=True):
    cfg = load_cfg(train_defaults(), None, TRAIN + ["OUT_DIR", str(out)], validate_train_cfg)
    return train(cfg, out_dir=out, progress=False, tensorboard=False, resume=resume)


def assert_same_training(run: Path, ref: Path):
    assert _jsonl(run / "metrics.jsonl") == _jsonl(ref / "metrics.jsonl")
    summary = json.loads((run / "summary.json").read_text())
    assert _no_times(summary) == _no_times(json.loads((ref / "summary.json").read_text()))
    for name in ("checkpoint_last.pt", "checkpoint_best.pt"):
        a, b = _state(run / name), _state(ref / name)
        assert a["epoch"] == b["epoch"] and all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"]), name
    assert _state(run / "checkpoint_best.pt")["epoch"] == summary["best_epoch"] + 1
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def test_training_killed_at_every_write_resumes_bit_identical(tmp_path, monkeypatch):
    ref = tmp_path / "ref"
    with writes(monkeypatch) as seen:
        _train(ref, resume=False)
    names = list(seen)
    assert names.count("checkpoint_last.pt") == 3 and "checkpoint_best.pt" in names
    for n in range(1, len(names) + 1):
        run = tmp_path / f"kill{n:02d}"
        with writes(monkeypatch, kill_at=n, leave_temp=n % 2 == 1):
            with pytest.raises(Killed):
                _train(run)
        _train(run)
        assert_same_training(run, ref)


# ---- real kill -9 of the tools at random moments ------------------------------------------------
def _tool(name, args, env):
    return [sys.executable, str(ROOT / "tools" / name), *args]


def _kill_and_resume(tool, first, resume, out, seconds, env):
    proc = subprocess.Popen(_tool(tool, first, env), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(seconds)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    args = resume if (out / ("checkpoint.pt" if tool == "search.py" else "checkpoint_last.pt")).exists() else first
    done = subprocess.run(_tool(tool, args, env), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_tools_survive_kill_minus_9_at_random_moments(tmp_path, search_ref):
    """The tools themselves, SIGKILLed at a random moment and resumed with ``--resume``, end where the
    uninterrupted in-process runs end (so the tools add nothing that breaks exact resume)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rng = random.Random(0)
    ref = search_ref[0]
    t0 = time.time()
    ref_train = tmp_path / "train_ref"
    subprocess.run(_tool("train.py", ["--out", str(ref_train), "--no-progress", *TRAIN], env), env=env, check=True,
                   capture_output=True, timeout=300)
    train_seconds = time.time() - t0
    run = tmp_path / "search"
    first = ["--out", str(run), "--no-progress", *SEARCH]
    _kill_and_resume("search.py", first, ["--out", str(run), "--resume", "--no-progress"], run,
                     rng.uniform(4.0, 8.0), env)
    assert_same_search(run, ref)
    run = tmp_path / "train"
    first = ["--out", str(run), "--no-progress", *TRAIN]
    _kill_and_resume("train.py", first, ["--out", str(run), "--resume", "--no-progress"], run,
                     rng.uniform(0.5, 1.0) * train_seconds, env)
    assert_same_training(run, ref_train)


# ---- studies -------------------------------------------------------------------------------------
STUDY = ["STUDY.NUM_ARCHS", "2", "STUDY.TASKS", "['cls']", "STUDY.SEEDS", "[1]", "TRAIN.EPOCHS", "2",
         "TRAIN.STEPS_PER_EPOCH", "2", "TRAIN.EVAL_BATCHES", "1", "DATA.SYNTHETIC.NUM_TRAIN", "32",
         "DATA.SYNTHETIC.NUM_TEST", "16", "MODEL.DEPTH", "2", "TRAIN.BATCH_SIZE", "8",
         "STUDY.EPOCH_LOG", "False", "NUM_THREADS", "1"]
DEAD_WORKER = f"{socket.gethostname()}:{2 ** 22 + 1}:killed"   # a pid above pid_max: never alive


def _study(out, worker=None):
    from unnas.study.config import study_defaults, validate_study_cfg
    from unnas.study.runner import prepare_study, resolve_archs, run_worker

    cfg = load_cfg(study_defaults(), None, STUDY + ["OUT_DIR", str(out)], validate_study_cfg)
    prepare_study(cfg, out, resolve_archs(cfg)[:1])[0].close()   # one job: the kill points of one job
    return run_worker(cfg, out, "default", worker=worker, echo=lambda s: None)


def _stop_orphan_heartbeats():
    """A real kill ends the job's heartbeat thread with the process; here it must be stopped."""
    import threading

    from unnas.study.runner import _Heartbeat
    for t in threading.enumerate():
        if isinstance(t, _Heartbeat):
            t.stop()


def _study_results(out):
    from unnas.study.store import Store
    store = Store(out / "study.sqlite")
    try:
        rows = store.results()
        attempts = store.attempts()
    finally:
        store.close()
    return [_no_times(_drop(r, _RUN_FIELDS)) for r in rows], attempts


_RUN_FIELDS = ("wall", "job_seconds", "worker", "finished_at", "config")   # who ran it, when, where


def _drop(obj, keys):
    if isinstance(obj, dict):
        return {k: _drop(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, list):
        return [_drop(v, keys) for v in obj]
    return obj


def test_study_killed_at_every_write_resumes_identically(tmp_path, monkeypatch):
    """A study worker killed before any of its writes (the trainer's, result.json, the store's
    completion): the rerun takes the job over from the dead worker, resumes its training (or, once
    training had finished, only records it) and records one result, the one an uninterrupted study
    records; the job's checkpoints are deleted only after that record."""
    from unnas.study.store import Store

    ref = tmp_path / "ref"
    real_complete = Store.complete

    def complete(self, *a, **k):
        io_mod._atomic_write_bytes("store-complete", b"")   # count the store's commit as a write point
        return real_complete(self, *a, **k)

    def fake_bytes(path, data):   # the marker above writes nothing
        if str(path) != "store-complete":
            real(path, data)

    real = io_mod._atomic_write_bytes
    monkeypatch.setattr(io_mod, "_atomic_write_bytes", fake_bytes)
    monkeypatch.setattr(Store, "complete", complete)
    with writes(monkeypatch) as seen:
        assert _study(ref)["ran"] == 1
    names = list(seen)
    assert "result.json" in names and "store-complete" in names and "checkpoint_last.pt" in names
    ref_rows, _ = _study_results(ref)
    (job,) = [p.name for p in (ref / "jobs").iterdir()]
    ref_result = _no_times(json.loads((ref / "jobs" / job / "result.json").read_text()))
    for n in range(1, len(names) + 1):
        run = tmp_path / f"kill{n:02d}"
        with writes(monkeypatch, kill_at=n, leave_temp=n % 2 == 0):
            with pytest.raises(Killed):
                _study(run, worker=DEAD_WORKER)
        _stop_orphan_heartbeats()
        steps = []
        real_step = Trainer.run_step
        monkeypatch.setattr(Trainer, "run_step", lambda self, *a: (steps.append(a), real_step(self, *a))[1])
        stats = _study(run)
        monkeypatch.setattr(Trainer, "run_step", real_step)
        if n > names.index("summary.json"):   # the job's training had finished: the rerun only records it
            assert steps == [], names[n - 1]
        rows, attempts = _study_results(run)
        assert rows == ref_rows, names[n - 1]
        outcomes = [a["outcome"] for a in attempts]
        assert stats["ran"] == 1 and outcomes[-1] == "done" and set(outcomes[:-1]) <= {"lost"}, (names[n - 1], outcomes)
        result = _no_times(json.loads((run / "jobs" / job / "result.json").read_text()))
        assert _drop(result, _RUN_FIELDS) == _drop(ref_result, _RUN_FIELDS), names[n - 1]
        leftovers = [p.name for p in (run / "jobs" / job).iterdir() if p.name.endswith(".tmp") or p.suffix == ".pt"]
        assert not leftovers, (names[n - 1], leftovers)


def test_study_worker_killed_by_signal_is_reported_and_replaced(tmp_path):
    """kill -9 of one of --workers 2: the parent says so, requeues its job at once, a replacement
    worker finishes the study, and every job is done exactly once."""
    out, log = tmp_path / "run", tmp_path / "fake.log"
    cmd = [sys.executable, str(ROOT / "tools" / "rank_corr.py"), "run", "--trainer", "fake", "--out", str(out),
           "--no-analyze", "--num-archs", "4", "--tasks", "cls,rot", "--workers", "2",
           "STUDY.FAKE_SECONDS", "0.4", "STUDY.FAKE_LOG", str(log), "STUDY.LEASE_SECONDS", "600"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    victim, deadline = None, time.time() + 120
    while victim is None and time.time() < deadline:
        assert proc.poll() is None
        if log.exists():
            started = [ln.split() for ln in log.read_text().splitlines() if ln.startswith("start ")]
            ended = {ln.split()[1] for ln in log.read_text().splitlines() if ln.startswith("end ")}
            running = [s for s in started if s[1] not in ended]
            if len(started) >= 2 and running:
                victim = int(running[0][2])
        time.sleep(0.05)
    assert victim is not None, "no worker started a job"
    os.kill(victim, signal.SIGKILL)
    text, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, text
    assert "was killed by signal 9 (SIGKILL); 1 running job(s) requeued; a replacement worker continues" in text
    import sqlite3
    con = sqlite3.connect(str(out / "study.sqlite"))
    try:
        states = con.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall()
        done = con.execute("SELECT count(*) FROM attempts WHERE outcome = 'done' GROUP BY arch_id, task, seed").fetchall()
    finally:
        con.close()
    assert states == [("done", 8)] and len(done) == 8 and all(n == 1 for (n,) in done)


def _study_workers(log: Path) -> list[int]:
    """Pids of the workers that have started a job (from the fake trainer's log)."""
    if not log.exists():
        return []
    return sorted({int(ln.split()[2]) for ln in log.read_text().splitlines() if ln.startswith("start ")})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_study_workers_end_with_their_driver(tmp_path, sig):
    """kill DRIVER (SIGTERM: it stops its workers; SIGKILL: the workers see their parent gone) leaves
    no worker training on; rerunning the command finishes the study with every job done once."""
    out, log = tmp_path / "run", tmp_path / "fake.log"
    cmd = [sys.executable, str(ROOT / "tools" / "rank_corr.py"), "run", "--trainer", "fake", "--out", str(out),
           "--no-analyze", "--num-archs", "3", "--tasks", "cls,rot", "--workers", "2",
           "STUDY.FAKE_SECONDS", "2", "STUDY.FAKE_LOG", str(log), "STUDY.LEASE_SECONDS", "600"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(_study_workers(log)) < 2 and time.time() < deadline:
        assert proc.poll() is None
        time.sleep(0.05)
    workers = _study_workers(log)
    assert len(workers) == 2, "the workers did not start"
    proc.send_signal(sig)
    proc.wait(timeout=60)
    deadline = time.time() + 20
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "a worker outlived its driver"
    rerun = [a if a != "2" else "1" for a in cmd[:-6]]   # --workers 1: no spawned interpreters to wait for
    done = subprocess.run(rerun + ["STUDY.FAKE_LOG", str(log), "STUDY.LEASE_SECONDS", "600"], cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    import sqlite3
    con = sqlite3.connect(str(out / "study.sqlite"))
    try:
        states = con.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall()
    finally:
        con.close()
    assert states == [("done", 6)]
