"""The driver of the remote executors (``ray``, ``slurm``) and the function their tasks run.

The driver is the study's only writer of the store. It claims a job (the store's usual claim, with
the driver as the worker: ``host:pid:ray``), submits it, keeps the leases of everything it has in
flight alive (one transaction per ``STUDY.HEARTBEAT_SECONDS``), and records what comes back:

* a result: written to the job directory if the task's node could not (run directory not shared),
  then ``Store.complete``;
* an error raised by the training: ``Store.fail`` (as a local worker does);
* a task lost by the executor after its own retries (a Ray node died ``STUDY.RAY.MAX_RETRIES + 1``
  times, a SLURM job ended without a result: cancelled, out of memory, node failure): the claim is
  expired and claimed again at once, which counts an attempt (``lost``), up to ``STUDY.MAX_ATTEMPTS``.

The tasks (:func:`execute_job`) never open the store: they train in ``RUN_DIR/jobs/<job>/`` (which
resumes from the job's checkpoint), write ``result.json`` there and return the result.

Restart: a driver that starts gives back the claims of an earlier driver of its kind on this host
whose process is gone (their tasks died with it, or are re-attached first: ``adopt``), then claims
as usual; claims of a driver on another host come back when their lease expires. A job whose task
had finished (``result.json`` of this study's configuration in its directory) while its result was
not yet recorded is not trained again: the resubmitted task returns that result.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from unnas.study.archs import genotype_key
from unnas.study.config import fingerprint, job_cfg
from unnas.study.jobs import Job
from unnas.study.runner import (_fmt_time, _user_errors, expire_dead_local_workers, open_store, progress_line,
                                worker_name, write_job_outputs)
from unnas.study.trainers import JOB_CHECKPOINTS, check_result, resolve_trainer

log = logging.getLogger("unnas.study")


# ---- the task: runs where the executor puts it, never touches the store ------------------------
def execute_job(cfg_yaml: str, run_dir: str, arch_id: str, task: str, seed: int, genotype: str, trainer,
                threads: int = 1) -> dict:
    """Train one job in ``run_dir/jobs/<job>/`` and return its result (a Ray task, a SLURM array task).

    The trainer resumes from the job directory's checkpoint (the default trainer's
    ``checkpoint_last.pt``), so a retried or requeued task continues where the last one stopped when
    the directory is shared. ``result.json`` is written before the checkpoints are deleted, and a
    task that finds a ``result.json`` of the same job and study configuration returns it without
    training (a driver that died before recording it resubmits the job)."""
    import torch
    from fvcore.common.config import CfgNode as CN
    from search_spaces import arch_from_json

    from unnas.study.runner import _EpochLog

    torch.set_num_threads(max(1, int(threads)))
    cfg = CN.load_cfg(cfg_yaml)
    cfg.freeze()
    job = Job(arch_id, task, int(seed), arch_from_json(genotype))
    job_dir = Path(run_dir) / "jobs" / job.dirname
    job_dir.mkdir(parents=True, exist_ok=True)
    fp = fingerprint(cfg)
    node = f"{socket.gethostname()}:{os.getpid()}"
    earlier = finished_result(job_dir, job, fp)
    if earlier is not None:
        earlier["recovered"] = True
        return earlier
    train_fn = resolve_trainer(trainer)
    jcfg = job_cfg(cfg, job.task, job.seed)
    epoch_log = _EpochLog(node, job, lambda m: print(m, flush=True)) if cfg.STUDY.EPOCH_LOG else None
    t0 = time.time()
    try:
        result = dict(check_result(train_fn(job, jcfg, job_dir), job))
    finally:
        if epoch_log is not None:
            epoch_log.close()
    result["job_seconds"] = time.time() - t0
    result.setdefault("wall_time", result["job_seconds"])
    result.update({"arch_id": job.arch_id, "task": job.task, "seed": job.seed, "worker": node,
                   "genotype": job.genotype.to_dict(), "study_fingerprint": fp})
    result.setdefault("config", jcfg.dump())
    write_job_outputs(job_dir, job, result)
    if not cfg.STUDY.KEEP_CHECKPOINTS:   # result.json now stands for them (see finished_result)
        for name in JOB_CHECKPOINTS:
            (job_dir / name).unlink(missing_ok=True)
    return json.loads(json.dumps(result, default=str))   # plain values: the result crosses processes


def finished_result(job_dir: Path, job: Job, fp: str) -> dict | None:
    """The job's ``result.json`` if a task of this study configuration wrote it, else None."""
    try:
        r = json.loads((job_dir / "result.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(r, dict) or r.get("study_fingerprint") != fp:
        return None
    if (r.get("arch_id"), r.get("task"), r.get("seed")) != (job.arch_id, job.task, job.seed):
        return None
    if json.dumps(r.get("genotype"), sort_keys=True) != json.dumps(job.genotype.to_dict(), sort_keys=True):
        return None
    try:
        return check_result(r, job)
    except (TypeError, ValueError):
        return None


# ---- the driver ---------------------------------------------------------------------------------
@dataclass
class Flight:
    """A claimed job the executor has (or is about to have): its claim token and the executor's handle."""
    job: Job
    token: str
    handle: Any = None
    since: float = field(default_factory=time.time)


def pid_running(pid: int) -> bool:
    """Whether process ``pid`` exists here (reaping it first if it is an exited child of this process)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    except (ChildProcessError, OSError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def release_dead_drivers(store, label: str) -> int:
    """Put back the claims of drivers of kind ``label`` on this host whose process is gone."""
    host, n = socket.gethostname(), 0
    for w in {j["worker"] for j in store.jobs("running") if j["worker"]}:
        parts = w.split(":")
        if len(parts) >= 3 and parts[0] == host and parts[-1] == label and parts[1].isdigit() \
                and not pid_running(int(parts[1])):
            n += store.release_worker(w)
    return n


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


class RemoteDriver:
    """Claim, submit, gather, record. Subclasses implement ``connect``, ``capacity``, ``submit``,
    ``poll`` (and optionally ``adopt``, ``forget``, ``interrupted``, ``close``)."""

    label = "remote"

    def __init__(self, cfg, run_dir, shard=None, wait: bool = False, echo: Callable[[str], None] = print,
                 train_fn=None):
        self.cfg, self.run_dir = cfg, Path(run_dir).resolve()
        self.shard, self.wait, self.echo = shard, wait, echo
        self.trainer = train_fn if train_fn is not None else cfg.STUDY.TRAINER
        if callable(self.trainer) and not isinstance(self.trainer, str):
            resolve_trainer(self.trainer)
        self.threads = int(cfg.NUM_THREADS) if cfg.NUM_THREADS > 0 else 1
        self.worker = worker_name(self.label)
        self.cfg_yaml = cfg.dump()

    # ---- executor hooks ----
    def connect(self) -> None:
        pass

    def capacity(self) -> int | None:
        """How many jobs may be in flight (claimed and submitted); None: no bound."""
        return None

    def submit(self, flights: list[Flight]) -> None:
        """Submit the jobs; set each submitted flight's ``handle`` (the base releases those without one)."""
        raise NotImplementedError

    def poll(self, flights: list[Flight], timeout: float) -> list[tuple[Flight, str, Any]]:
        """Wait up to ``timeout`` s; return the flights that ended as (flight, "done", result),
        (flight, "failed", (traceback text, exception or None)) or (flight, "lost", reason)."""
        raise NotImplementedError

    def adopt(self, store) -> list[Flight]:
        """Flights an earlier driver submitted that are still running (re-attached at start)."""
        return []

    def forget(self, flights: list[Flight]) -> None:
        """These flights ended and are recorded."""

    def interrupted(self, store, flights: list[Flight]) -> None:
        """Ctrl-C, SIGTERM or an error with jobs in flight: by default their tasks end with the
        driver, so their claims go back to the queue (not counted as attempts)."""
        for f in flights:
            store.release(f.job, f.token)
        if flights:
            self.echo(f"[{self.worker}] {len(flights)} unfinished jobs were put back in the queue")

    def close(self) -> None:
        pass

    # ---- helpers for the executors ----
    def payload(self, job: Job) -> dict:
        return {"cfg_yaml": self.cfg_yaml, "run_dir": str(self.run_dir), "arch_id": job.arch_id, "task": job.task,
                "seed": job.seed, "genotype": genotype_key(job.genotype), "trainer": self.trainer,
                "threads": self.threads}

    def _job(self, store, key: Job, genotypes: dict) -> Job:
        if key.arch_id not in genotypes:
            genotypes.update({a.id: a.genotype for a in store.archs()})
        return Job(key.arch_id, key.task, key.seed, genotypes[key.arch_id])

    # ---- the loop ----
    def run(self) -> dict:
        s = self.cfg.STUDY
        resolve_trainer(self.trainer)   # a bad STUDY.TRAINER fails here, not in every task
        store = open_store(self.run_dir, self.cfg)
        stats = {"ran": 0, "failed": 0, "discarded": 0, "lost": 0}
        flights: dict[str, Flight] = {}
        genotypes: dict = {}
        finished = False
        previous = _sigterm_interrupts()
        try:
            self.connect()
            for f in self.adopt(store):
                flights[f.token] = f
            n = release_dead_drivers(store, self.label)
            if n:
                self.echo(f"[{self.worker}] {n} jobs claimed by an earlier {self.label} driver on this host, whose "
                          "process is gone, were put back in the queue")
            expire_dead_local_workers(store)
            beat = time.time()
            while True:
                room, new = self.capacity(), []
                while room is None or len(flights) + len(new) < room:
                    claimed = store.claim(self.worker, s.LEASE_SECONDS, self.shard, s.MAX_ATTEMPTS)
                    if claimed is None:
                        break
                    key, token = claimed
                    new.append(Flight(self._job(store, key, genotypes), token))
                if new:
                    try:
                        self.submit(new)
                    finally:
                        for f in new:
                            if f.handle is None:
                                store.release(f.job, f.token)
                            else:
                                flights[f.token] = f
                if not flights:
                    if self.wait and store.counts(s.LEASE_SECONDS, self.shard)["running"]:
                        time.sleep(min(5.0, s.HEARTBEAT_SECONDS))   # jobs of other workers: take over dead ones
                        expire_dead_local_workers(store)
                        continue
                    break
                timeout = max(0.0, s.HEARTBEAT_SECONDS - (time.time() - beat))
                ended = self.poll(list(flights.values()), timeout)
                for f, _, _ in ended:
                    flights.pop(f.token, None)
                if ended:
                    self.forget([f for f, _, _ in ended])
                for f, outcome, value in ended:
                    self._record(store, f, outcome, value, stats, len(flights))
                if time.time() - beat >= 0.9 * s.HEARTBEAT_SECONDS:
                    store.heartbeat_tokens(list(flights))
                    beat = time.time()
            finished = True
        finally:
            _restore_sigterm(previous)
            try:
                if not finished and flights:
                    self.interrupted(store, list(flights.values()))
                self.close()
            finally:
                store.close()
        return stats

    def _record(self, store, f: Flight, outcome: str, value, stats: dict, in_flight: int) -> None:
        s, job = self.cfg.STUDY, f.job

        def progress():
            return progress_line(store, s.LEASE_SECONDS, self.shard, self.worker, parallel=max(in_flight, 1))

        if outcome == "done":
            result = dict(value)
            recovered = result.pop("recovered", False)
            job_dir = self.run_dir / "jobs" / job.dirname
            if not (job_dir / "result.json").is_file():   # the task ran where this directory is not shared
                job_dir.mkdir(parents=True, exist_ok=True)
                write_job_outputs(job_dir, job, result)
            if store.complete(job, f.token, self.worker, result):
                stats["ran"] += 1
                how = " (finished before, recorded now)" if recovered else ""
                self.echo(f"[{self.worker}] done {job.key} on {result.get('worker', '?')}: best "
                          f"{result.get('metric', 'metric')} {result['best']:.2f}, final {result['final']:.2f} "
                          f"({_fmt_time(result.get('job_seconds'))}){how} | {progress()}")
            else:
                stats["discarded"] += 1
                self.echo(f"[{self.worker}] {job.key} was finished by another worker meanwhile; this result is discarded")
        elif outcome == "failed":
            text, exc = value
            store.fail(job, f.token, text)
            stats["failed"] += 1
            lines = [ln for ln in str(text).strip().splitlines() if ln.strip()]
            self.echo(f"[{self.worker}] FAILED {job.key}: {_one_line(lines[-1] if lines else text)} | {progress()}")
            if exc is not None and isinstance(exc, _user_errors()):
                raise exc   # a configuration or data error: every job would fail the same way
        else:
            store.expire(job, self.worker)   # claimed again at once; the attempt counts as lost
            stats["lost"] += 1
            self.echo(f"[{self.worker}] LOST {job.key}: {_one_line(value)}; it is claimed again (at most "
                      f"STUDY.MAX_ATTEMPTS = {s.MAX_ATTEMPTS} attempts)")


def _sigterm_interrupts():
    """SIGTERM to the driver = Ctrl-C (its claims are handled as on an interrupt); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt

    return (signal.signal(signal.SIGTERM, handler),)


def _restore_sigterm(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous[0])


def remote_launch_check(name: str, workers: int, world: int) -> None:
    from unnas.config import ConfigError
    if workers > 1 or world > 1:
        raise ConfigError(f"--workers and torchrun apply to --executor local; with --executor {name} the cluster "
                          "runs the jobs (start one driver)")
