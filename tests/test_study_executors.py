"""Executors (unnas/study/executors/): a Ray cluster of 2 nodes on this machine with one node killed
mid-study, a restarted Ray driver, and SLURM through submitit's local executor (a preempted job is
requeued and resumes; a restarted driver re-attaches and collects). Every study checks the store:
each job done exactly once, and the attempts. The fake trainer (STUDY.FAKE_SECONDS > 0) checkpoints
each "epoch" in its job directory and resumes from it, as the real trainer does."""
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from unnas.config import ConfigError, load_cfg
from unnas.study.archs import genotype_key
from unnas.study.config import study_defaults, validate_study_cfg
from unnas.study.runner import open_store, prepare_study

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("rank_corr_tool_exec", ROOT / "tools" / "rank_corr.py")
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)


def _cfg(out, *opts):
    return load_cfg(study_defaults(), None, ["OUT_DIR", str(out), "STUDY.TRAINER", "fake", "STUDY.NUM_ARCHS", "2",
                                             "STUDY.TASKS", "['cls', 'rot']", "STUDY.BOOTSTRAP", "0", *opts],
                    validate_study_cfg)


def _log(path: Path) -> list[list[str]]:
    return [ln.split() for ln in path.read_text().splitlines()] if path.exists() else []


def _dirname(key: str) -> str:
    arch, task, seed = key.split("/")
    return f"{arch}_{task}_s{seed}"


def _check_exactly_once(out: Path, n_jobs: int) -> list[dict]:
    store = open_store(out)
    try:
        jobs, attempts = store.jobs(), store.attempts()
        results = store.results()
    finally:
        store.close()
    assert len(jobs) == n_jobs and all(j["state"] == "done" for j in jobs), jobs
    done = Counter((a["arch_id"], a["task"], a["seed"]) for a in attempts if a["outcome"] == "done")
    assert len(done) == n_jobs and set(done.values()) == {1}, attempts
    assert not [a for a in attempts if a["outcome"] in ("discarded", "failed", None)], attempts
    assert all(r["result"].get("study_fingerprint") for r in results if r["result"].get("trainer"))   # ran as tasks
    return attempts


# ---- registry, flags, one-line errors (no cluster) ----------------------------------------------
def test_flags_reach_the_config_and_bad_values_are_one_line(tmp_path, capsys):
    args = tool._command._parse_run_args(
        ["--out", str(tmp_path / "r"), "--executor", "slurm", "--slurm-partition", "gpu", "--slurm-gpus-per-job", "1",
         "--slurm-time", "90", "--slurm-array-parallelism", "16", "--slurm-extra", "account=nas",
         "--slurm-extra", "exclusive", "--max-in-flight", "7", "--ray-address", "10.0.0.1:6379"])
    cfg = tool._command.build_cfg(args)
    sl = cfg.STUDY.SLURM
    assert (cfg.STUDY.EXECUTOR, sl.PARTITION, sl.GPUS_PER_JOB, sl.TIME, sl.ARRAY_PARALLELISM, cfg.STUDY.MAX_IN_FLIGHT) \
        == ("slurm", "gpu", 1, 90, 16, 7)
    assert list(sl.EXTRA) == ["account=nas", "exclusive"] and cfg.STUDY.RAY.ADDRESS == "10.0.0.1:6379"
    from unnas.study.executors import EXECUTORS, sbatch_options
    assert EXECUTORS.names() == ["local", "ray", "slurm"]
    assert sbatch_options(sl.EXTRA) == {"account": "nas", "exclusive": True}
    from unnas.study.executors.slurm import SlurmDriver
    assert SlurmDriver(cfg, tmp_path / "r").capacity() == 7      # --max-in-flight
    cfg.defrost()
    cfg.STUDY.MAX_IN_FLIGHT = 0
    assert SlurmDriver(cfg, tmp_path / "r").capacity() is None   # SLURM throttles arrays itself (%P)
    cfg.STUDY.SLURM.CLUSTER = "local"
    assert SlurmDriver(cfg, tmp_path / "r").capacity() == 16     # local processes: the array parallelism
    from unnas.study.config import fingerprint
    assert fingerprint(cfg) == fingerprint(_cfg(tmp_path / "r", "STUDY.NUM_ARCHS", "0", "STUDY.TASKS",
                                                "['cls', 'rot', 'col', 'jig']", "STUDY.TRAINER", "default"))
    for argv, message in [(["--executor", "dask"], "STUDY.EXECUTOR must be one of local, ray, slurm, got 'dask'"),
                          (["--executor", "ray", "--workers", "2"], "--workers and torchrun apply to --executor local"),
                          (["--executor", "slurm", "--slurm-time", "0"], "--slurm-time (STUDY.SLURM.TIME, minutes) must be > 0"),
                          (["--slurm-extra", "a b=1"], "--slurm-extra takes KEY=VALUE")]:
        try:
            rc = tool.main(["run", "--trainer", "fake", "--out", str(tmp_path / "e"), "--no-analyze", *argv])
        except SystemExit as exc:
            rc = exc.code
        err = capsys.readouterr().err
        assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("module, executor", [("ray", "ray"), ("submitit", "slurm")])
def test_a_missing_engine_is_one_line_naming_pip(tmp_path, monkeypatch, module, executor):
    from unnas.study.executors import get_executor
    cfg = _cfg(tmp_path / "run", "STUDY.EXECUTOR", executor, "STUDY.SLURM.CLUSTER", "local")
    prepare_study(cfg, cfg.OUT_DIR)
    monkeypatch.setitem(sys.modules, module, None)   # import fails as if not installed
    with pytest.raises(ConfigError, match=f"needs the {module} package.*pip install {module}"):
        get_executor(executor).run(cfg, cfg.OUT_DIR, echo=lambda s: None)
    store = open_store(cfg.OUT_DIR)
    assert store.counts()["pending"] == 4   # nothing claimed
    store.close()


# ---- SLURM through submitit's local executor ----------------------------------------------------
@pytest.fixture
def submitit_local():
    pytest.importorskip("submitit", reason="submitit is not installed (pip install -r requirements-cluster.txt)")


def test_slurm_local_study_completes(tmp_path, capsys, submitit_local):
    out = tmp_path / "run"
    t0 = time.time()
    rc = tool.main(["run", "--trainer", "fake", "--out", str(out), "--num-archs", "2", "--tasks", "cls",
                    "--no-analyze", "--executor", "slurm", "--slurm-cluster", "local", "--slurm-array-parallelism", "2",
                    "--slurm-extra", "account=ignored_by_local", "STUDY.SLURM.POLL_SECONDS", "0.2"])
    text = capsys.readouterr()
    assert rc == 0, text.err
    assert "executor slurm (cluster local, 0 GPUs/job, 240 min, array parallelism 2, sbatch --account=ignored_by_local)" in text.out
    assert text.out.count("submitted 2 jobs") == 1, text.out
    attempts = _check_exactly_once(out, 2)
    assert len(attempts) == 2
    assert (out / "slurm" / "submitted.json").read_text().split() == ["{", '"jobs":', "{}", "}"]
    assert len(list((out / "slurm").glob("*/*_result.pkl"))) == 2
    print(f"\nslurm(local): 2 jobs, {len(attempts)} attempts, wall {time.time() - t0:.1f} s")


def test_slurm_preempted_job_resumes_and_a_restarted_driver_collects(tmp_path, submitit_local):
    """Driver 1 submits 2 jobs and is interrupted (Ctrl-C): the jobs run on with their claims. One of
    them is preempted (SIGUSR2, as SLURM signals it): submitit calls StudyJob.checkpoint and requeues
    it, and it resumes from its checkpoint. Driver 2 re-attaches to both jobs and records them."""
    from unnas.study.executors import get_executor

    out, log = tmp_path / "run", tmp_path / "fake.log"
    cfg = _cfg(out, "STUDY.EXECUTOR", "slurm", "STUDY.SLURM.CLUSTER", "local", "STUDY.TASKS", "['cls']",
               "STUDY.FAKE_SECONDS", "4", "TRAIN.EPOCHS", "4", "STUDY.FAKE_LOG", str(log),
               "STUDY.SLURM.POLL_SECONDS", "0.2", "STUDY.HEARTBEAT_SECONDS", "2", "STUDY.LEASE_SECONDS", "600")
    prepare_study(cfg, out)
    lines = []

    def interrupt_after_submission(line):
        lines.append(line)
        if "submitted 2 jobs" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        get_executor("slurm").run(cfg, out, echo=interrupt_after_submission)
    assert "2 submitted jobs keep running on local and keep their claims" in lines[-1], lines
    store = open_store(out)
    assert store.counts()["running"] == 2
    store.close()
    victim, deadline = None, time.time() + 180
    while victim is None and time.time() < deadline:
        entries = _log(log)
        ended = {x[1] for x in entries if x[0] == "end"}
        for x in entries:
            ckpt = out / "jobs" / _dirname(x[1]) / "fake_checkpoint.json"
            if x[0] == "start" and x[1] not in ended and ckpt.exists():
                victim = x
                break
        time.sleep(0.05)
    assert victim is not None, _log(log)
    os.kill(int(victim[2]), signal.SIGUSR2)   # SLURM's preemption / time-limit signal
    lines2 = []
    stats = get_executor("slurm").run(cfg, out, echo=lines2.append)
    assert stats == {"ran": 2, "failed": 0, "discarded": 0, "lost": 0}, lines2
    assert "re-attached to 2 jobs an earlier driver submitted" in lines2[0], lines2
    assert not any("submitted" in ln and "jobs (" in ln for ln in lines2), lines2   # nothing resubmitted
    attempts = _check_exactly_once(out, 2)
    assert len(attempts) == 2
    entries = _log(log)
    mine = [x for x in entries if x[1] == victim[1]]
    assert [x[0] for x in mine] == ["start", "start", "resume", "end"], entries   # requeued, resumed, ended once
    assert mine[1][2] != victim[2] and int(mine[2][-1]) >= 1
    assert Counter(x[1] for x in entries if x[0] == "end") == Counter({"a0000/cls/1": 1, "a0001/cls/1": 1})


# ---- Ray: a real 2-node cluster on this machine (last: the cluster lives until the module ends) ---
@pytest.fixture(scope="module")
def ray_cluster():
    pytest.importorskip("ray", reason="ray is not installed (pip install -r requirements-cluster.txt)")
    from ray.cluster_utils import Cluster

    tmp = tempfile.mkdtemp(prefix="unr", dir="/tmp")   # short: Ray's socket paths live under it
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_TMPDIR", tmp)                   # every file of these Ray nodes stays under tmp
        cluster = None
        try:
            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
            worker = cluster.add_node(num_cpus=1)
        except Exception as exc:   # no shared memory, too little memory, sandbox limits, ...
            if cluster is not None:
                cluster.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)
            pytest.skip(f"cannot start a local Ray cluster: {' '.join(str(exc).split())[:200]}")
        try:
            yield cluster, worker
        finally:
            import ray
            if ray.is_initialized():
                ray.shutdown()
            cluster.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def test_ray_node_killed_midway_loses_no_result_and_duplicates_none(tmp_path, ray_cluster):
    """4 jobs on 2 one-CPU nodes; once a job running on the second node has checkpointed an epoch,
    that node is killed: Ray retries its job on the head, where it resumes from the job's checkpoint
    (the run directory is shared: one machine); the store holds 4 results, each from one attempt,
    and no job ran to its end twice."""
    from unnas.study.executors import get_executor

    cluster, node = ray_cluster
    out, log = tmp_path / "run", tmp_path / "fake.log"
    cfg = _cfg(out, "STUDY.EXECUTOR", "ray", "STUDY.RAY.ADDRESS", cluster.address, "STUDY.FAKE_SECONDS", "2",
               "TRAIN.EPOCHS", "4", "STUDY.FAKE_LOG", str(log), "STUDY.HEARTBEAT_SECONDS", "2",
               "STUDY.LEASE_SECONDS", "600")
    prepare_study(cfg, out)
    try:   # the second node's raylet: the parent of that node's workers (Ray's own cluster utilities)
        raylet = node.all_processes["raylet"][0].process.pid
    except (AttributeError, KeyError, IndexError):
        raylet = None
    killed = {}

    def killer():
        deadline = time.time() + 240
        while time.time() < deadline:
            lines = _log(log)
            ended = {x[1] for x in lines if x[0] == "end"}
            running = [x for x in lines if x[0] == "start" and x[1] not in ended]
            on_node = [x[1] for x in running if raylet is None or _parent(int(x[2])) == raylet]
            ready = [k for k in on_node if (out / "jobs" / _dirname(k) / "fake_checkpoint.json").exists()]
            if ready and (raylet is not None or len(running) == 2):   # without the pid: two at once, one per node
                killed["running"], killed["t"] = (ready if raylet is not None else [x[1] for x in running]), time.time()
                cluster.remove_node(node, allow_graceful=False)
                return
            time.sleep(0.05)

    lines = []
    t0 = time.time()
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    stats = get_executor("ray").run(cfg, out, echo=lines.append)
    thread.join(timeout=5)
    wall = time.time() - t0
    assert killed, f"no job of the second node was seen mid-way: {_log(log)}"
    assert stats["ran"] == 4 and stats["failed"] == stats["lost"] == stats["discarded"] == 0, (stats, lines)
    attempts = _check_exactly_once(out, 4)
    assert len(attempts) == 4   # Ray's retry stays inside the job's one claim
    entries = _log(log)
    ends = Counter(x[1] for x in entries if x[0] == "end")
    starts = Counter(x[1] for x in entries if x[0] == "start")
    assert set(ends.values()) == {1} and len(ends) == 4, entries
    retried = [k for k, n in starts.items() if n == 2]
    assert len(retried) == 1 and set(starts.values()) <= {1, 2} and retried[0] in killed["running"], (killed, entries)
    resumed = [x for x in entries if x[0] == "resume" and x[1] == retried[0]]
    assert resumed and int(resumed[0][-1]) >= 1, entries   # from its checkpoint, not from epoch 0
    print(f"\nray: 4 jobs, 2 nodes, node killed at {killed['t'] - t0:.1f} s, {len(attempts)} attempts, "
          f"{sum(starts.values())} task starts, wall {wall:.1f} s")


def test_ray_driver_restart_resubmits_only_unfinished_jobs(tmp_path, ray_cluster):
    """What a driver killed with kill -9 leaves: its claims (host:pid:ray, pid gone), a job whose
    task finished (result.json) but was not recorded, a job that was recorded. The next driver gives
    the claims back, records the finished job without training it again and runs only the rest."""
    from unnas.study.executors import get_executor
    from unnas.study.executors.driver import execute_job
    from unnas.study.jobs import Job

    cluster, _ = ray_cluster
    out, log = tmp_path / "run", tmp_path / "fake.log"
    cfg = _cfg(out, "STUDY.EXECUTOR", "ray", "STUDY.RAY.ADDRESS", cluster.address, "STUDY.FAKE_LOG", str(log))
    store, _ = prepare_study(cfg, out)
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = f"{socket.gethostname()}:{gone.pid}:ray"
    genotypes = {a.id: a.genotype for a in store.archs()}
    (recorded, t1), (finished, t2), (lost, _) = [store.claim(dead, 600) for _ in range(3)]
    store.complete(recorded, t1, dead, {"best": 1.0, "final": 1.0})
    execute_job(cfg.dump(), str(out.resolve()), finished.arch_id, finished.task, finished.seed,
                genotype_key(genotypes[finished.arch_id]), "fake")   # its task ended; the driver died first
    store.close()
    lines = []
    stats = get_executor("ray").run(cfg, out, echo=lines.append)
    assert stats == {"ran": 3, "failed": 0, "discarded": 0, "lost": 0}, lines
    assert any("2 jobs claimed by an earlier ray driver on this host" in ln for ln in lines), lines
    assert any(f"done {finished.key}" in ln and "(finished before, recorded now)" in ln for ln in lines), lines
    attempts = _check_exactly_once(out, 4)
    outcome = {(a["arch_id"], a["task"]): [b["outcome"] for b in attempts if (b["arch_id"], b["task"]) == (a["arch_id"], a["task"])]
               for a in attempts}
    assert outcome[(recorded.arch_id, recorded.task)] == ["done"]
    assert outcome[(finished.arch_id, finished.task)] == ["released", "done"]
    assert outcome[(lost.arch_id, lost.task)] == ["released", "done"]
    ends = Counter(x[1] for x in _log(log) if x[0] == "end")
    assert ends == Counter({finished.key: 1, lost.key: 1, Job("a0001", "rot", 1).key: 1}), ends   # none twice
    store = open_store(out)
    assert [j["attempts"] for j in store.jobs()] == [1, 1, 1, 1]
    store.close()
