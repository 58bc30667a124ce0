"""Runner: known accuracies give the expected rho; kills and concurrent workers never lose or
duplicate a job; shards cover the study exactly once. Uses the fake trainer (no training)."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from unnas.config import load_cfg
from unnas.study.analysis import analyze_run, correlations
from unnas.study.config import study_defaults, validate_study_cfg
from unnas.study.runner import prepare_study, run_worker

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "rank_corr.py"


def _cfg(tmp_path, *opts):
    return load_cfg(study_defaults(), None, ["OUT_DIR", str(tmp_path / "run"), "STUDY.TRAINER", "fake",
                                             "STUDY.BOOTSTRAP", "50", *opts], validate_study_cfg)


def test_fake_trainer_with_known_accuracies_gives_the_expected_rho(tmp_path):
    ids = [f"a{i:04d}" for i in range(6)]
    cls = [90.0, 91.0, 92.0, 93.0, 94.0, 95.0]
    rot = [70.0, 72.0, 71.0, 74.0, 73.0, 75.0]
    table = {"cls": dict(zip(ids, cls)), "rot": dict(zip(ids, rot))}
    (tmp_path / "table.json").write_text(json.dumps(table))
    cfg = _cfg(tmp_path, "STUDY.NUM_ARCHS", "6", "STUDY.TASKS", "['cls', 'rot']", "STUDY.SEEDS", "[1, 2]",
               "STUDY.FAKE_TABLE", str(tmp_path / "table.json"))
    prepare_study(cfg, cfg.OUT_DIR)
    stats = run_worker(cfg, cfg.OUT_DIR, echo=lambda s: None)
    assert stats == {"ran": 24, "failed": 0, "discarded": 0}
    s = analyze_run(cfg.OUT_DIR, "cls", "best", None, n_boot=50)
    row = s["rows"][0]
    # ranks 1..6 vs 1,3,2,5,4,6: sum d^2 = 4 -> rho = 1 - 24/210
    assert row["spearman"] == pytest.approx(1 - 24 / 210) and row["n"] == 6 and row["seeds"] == 2
    assert row["pearson"] == pytest.approx(correlations(cls, rot, 0)["pearson"])
    assert s["seed_ceiling"]["rot"]["mean_spearman"] == pytest.approx(1.0)
    out = Path(cfg.OUT_DIR)
    for f in ("correlations.md", "correlations.csv", "correlations.json", "task_matrix.csv", "archs.csv", "scatter.png"):
        assert (out / "analysis" / f).stat().st_size > 0
    job_dir = out / "jobs" / "a0003_rot_s2"
    assert json.loads((job_dir / "result.json").read_text())["best"] == 74.0
    assert any((job_dir / "tb").iterdir())
    # a supervised table replaces the trained reference (kept as "cls(trained)")
    (tmp_path / "sup.json").write_text(json.dumps(dict(zip(ids, rot))))
    s = analyze_run(cfg.OUT_DIR, "cls", "best", str(tmp_path / "sup.json"), n_boot=0)
    by_task = {r["task"]: r for r in s["rows"]}
    assert by_task["rot"]["spearman"] == pytest.approx(1.0)
    assert by_task["cls(trained)"]["spearman"] == pytest.approx(1 - 24 / 210)


def _cli(out, *extra):
    return [sys.executable, str(TOOL), "run", "--trainer", "fake", "--out", str(out), "--no-analyze",
            "--num-archs", "4", "--tasks", "cls,rot,jig", "STUDY.LEASE_SECONDS", "3.0", "STUDY.HEARTBEAT_SECONDS", "0.5",
            *extra]


def _db_rows(out, q):
    con = sqlite3.connect(str(out / "study.sqlite"), timeout=30)
    try:
        return con.execute(q).fetchall()
    finally:
        con.close()


def _finish_lines(log):
    return Counter(ln.split()[1] for ln in log.read_text().splitlines() if ln.startswith("end "))


def _check_exactly_once(out, n_jobs):
    rows = _db_rows(out, "SELECT arch_id, task, seed, state, result FROM jobs")
    assert len(rows) == n_jobs and all(r[3] == "done" and r[4] for r in rows)
    done = _db_rows(out, "SELECT arch_id, task, seed, count(*) FROM attempts WHERE outcome = 'done' GROUP BY 1, 2, 3")
    assert len(done) == n_jobs and all(r[3] == 1 for r in done)


def test_killed_worker_midjob_then_rerun_completes_every_job_once(tmp_path):
    out, log = tmp_path / "run", tmp_path / "fake.log"
    cmd = _cli(out, "STUDY.FAKE_SECONDS", "0.6", "STUDY.FAKE_LOG", str(log))
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 90
    try:
        while time.time() < deadline:   # wait until >= 2 jobs are done and one is mid-way
            assert proc.poll() is None, proc.stderr.read().decode()
            if (out / "study.sqlite").exists():
                try:
                    counts = dict(_db_rows(out, "SELECT state, count(*) FROM jobs GROUP BY state"))
                except sqlite3.OperationalError:
                    counts = {}
                if counts.get("done", 0) >= 2 and counts.get("running", 0) == 1:
                    break
            time.sleep(0.1)
        else:
            pytest.fail("worker made no progress")
        time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    killed = _db_rows(out, "SELECT arch_id || '/' || task || '/' || seed FROM jobs WHERE state = 'running'")
    assert len(killed) == 1
    starts = Counter(ln.split()[1] for ln in log.read_text().splitlines() if ln.startswith("start "))
    assert starts[killed[0][0]] == 1 and _finish_lines(log)[killed[0][0]] == 0
    # rerun (with --wait, so it also takes over the killed job once its lease expires)
    r = subprocess.run(_cli(out, "--wait", "STUDY.FAKE_SECONDS", "0.05", "STUDY.FAKE_LOG", str(log)),
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    _check_exactly_once(out, 12)
    assert set(_finish_lines(log).values()) == {1} and len(_finish_lines(log)) == 12
    lost = _db_rows(out, "SELECT arch_id || '/' || task || '/' || seed FROM attempts WHERE outcome = 'lost'")
    assert lost == killed


def test_two_concurrent_workers_split_the_study(tmp_path):
    out, log = tmp_path / "run", tmp_path / "fake.log"
    cmd = _cli(out, "--seeds", "1,2", "STUDY.FAKE_SECONDS", "0.3", "STUDY.FAKE_LOG", str(log))
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=150) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    _check_exactly_once(out, 24)
    assert len(_db_rows(out, "SELECT * FROM attempts")) == 24           # no job was even started twice
    workers = Counter(w for (w,) in _db_rows(out, "SELECT worker FROM jobs"))
    pids = Counter(ln.split()[2] for ln in log.read_text().splitlines() if ln.startswith("end "))
    assert len(workers) == 2 and len(pids) == 2 and sum(pids.values()) == 24
    assert set(_finish_lines(log).values()) == {1}


def test_shards_cover_the_study_exactly_once(tmp_path):
    cfg = _cfg(tmp_path, "STUDY.NUM_ARCHS", "5", "STUDY.TASKS", "['cls', 'rot', 'col']", "STUDY.SEEDS", "[1, 2]")
    prepare_study(cfg, cfg.OUT_DIR)
    ran = []
    for i in range(3):
        def record(job, c, d, i=i):
            ran.append((i, job.key))
            return {"best": 1.0, "final": 1.0}
        run_worker(cfg, cfg.OUT_DIR, record, worker=f"shard{i}", shard=(i, 3), echo=lambda s: None)
    keys = [k for _, k in ran]
    assert len(keys) == len(set(keys)) == 30
    assert len({i for i, _ in ran}) == 3


def test_jobs_of_dead_local_workers_are_taken_over_at_once(tmp_path):
    import socket

    from unnas.study.runner import expire_dead_local_workers, open_store

    cfg = _cfg(tmp_path, "STUDY.NUM_ARCHS", "2", "STUDY.TASKS", "['cls']")
    store, _ = prepare_study(cfg, cfg.OUT_DIR)
    dead = subprocess.Popen(["true"])
    dead.wait()
    job, _ = store.claim(f"{socket.gethostname()}:{dead.pid}", lease=3600)
    other, _ = store.claim(f"elsewhere:{os.getpid()}", lease=3600)
    assert expire_dead_local_workers(store) == 1          # the remote worker's job is left alone
    assert store.claim("me", lease=3600)[0] == job
    assert store.counts()["running"] == 2 and other != job
    store.close()


def test_a_failing_job_is_recorded_and_retried_on_request(tmp_path):
    from unnas.study.runner import open_store

    cfg = _cfg(tmp_path, "STUDY.NUM_ARCHS", "3", "STUDY.TASKS", "['cls', 'rot']")
    store, _ = prepare_study(cfg, cfg.OUT_DIR)
    lines = []

    def flaky(job, c, d):
        if job.arch_id == "a0001" and job.task == "rot":
            raise RuntimeError("diverged")
        return {"best": 50.0, "final": 49.0}
    assert run_worker(cfg, cfg.OUT_DIR, flaky, echo=lines.append) == {"ran": 5, "failed": 1, "discarded": 0}
    assert any("FAILED a0001/rot/1: RuntimeError: diverged" in ln for ln in lines)
    failed = store.jobs("failed")
    assert len(failed) == 1 and "diverged" in failed[0]["error"]
    assert store.reset_failed() == 1
    assert run_worker(cfg, cfg.OUT_DIR, lambda j, c, d: {"best": 1.0, "final": 1.0}, echo=lines.append)["ran"] == 1
    assert store.counts()["done"] == 6
    # a result without a finite metric is a failure, not a stored NaN
    cfg2 = _cfg(tmp_path / "b", "STUDY.NUM_ARCHS", "2", "STUDY.TASKS", "['cls']")
    prepare_study(cfg2, cfg2.OUT_DIR)
    assert run_worker(cfg2, cfg2.OUT_DIR, lambda j, c, d: {"best": float("nan"), "final": 1.0},
                      echo=lines.append)["failed"] == 2
    store.close()
