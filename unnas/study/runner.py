"""Running a study: set it up in a run directory, then workers claim and train jobs until none is left.

Run directory layout::

    RUN_DIR/config.yaml      the study config (later runs of the same directory start from it)
    RUN_DIR/archs.json       the architectures (ids and genotypes)
    RUN_DIR/study.sqlite     the results store (unnas.study.store)
    RUN_DIR/jobs/<arch>_<task>_s<seed>/   per job: result.json, tb/ (TensorBoard scalars), trainer outputs
    RUN_DIR/analysis/        correlation tables and plots (unnas.study.analysis)

Any number of workers (local processes, ``torchrun`` ranks, other machines sharing the
directory) may run at once: each claims one job at a time from the store, so no job is run twice
and a job whose worker died is taken over once its lease expires.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from unnas.config import ConfigError, save_cfg

from .archs import Arch, load_archs, save_archs
from .config import DEFAULT_SAMPLED_ARCHS, describe_training_change, fingerprint, job_cfg
from .jobs import Job, make_jobs
from .sampling import sample_archs
from .store import Store
from .trainers import JOB_CHECKPOINTS, check_result, resolve_trainer

STORE_NAME = "study.sqlite"
log = logging.getLogger("unnas.study")


def store_path(run_dir) -> Path:
    return Path(run_dir) / STORE_NAME


def open_store(run_dir, cfg=None) -> Store:
    journal = cfg.STUDY.JOURNAL if cfg is not None else "wal"
    return Store(store_path(run_dir), journal=journal)


def resolve_archs(cfg) -> list[Arch]:
    from search_spaces import get_space

    space = get_space(cfg.MODEL.SPACE)
    s = cfg.STUDY
    if s.ARCHS:
        archs = load_archs(s.ARCHS, space)
        return archs[:s.NUM_ARCHS] if s.NUM_ARCHS else archs   # a user's list is studied whole by default
    return sample_archs(space, s.NUM_ARCHS or DEFAULT_SAMPLED_ARCHS, s.SAMPLE_SEED, s.ALLOW_NONE, s.DISTINCT_INPUTS)


def describe_archs(cfg, n: int) -> str:
    """Where the study's architectures come from, for the run's first line."""
    s = cfg.STUDY
    if s.ARCHS:
        part = f"the first {n}" if s.NUM_ARCHS else f"all {n}"
        return f"{part} architectures of {s.ARCHS}"
    return (f"{n} architectures sampled from the {cfg.MODEL.SPACE} space (seed {s.SAMPLE_SEED}"
            f"{', none allowed' if s.ALLOW_NONE else ''}{', distinct inputs' if s.DISTINCT_INPUTS else ''})")


def prepare_study(cfg, run_dir, archs: list[Arch] | None = None) -> tuple[Store, int]:
    """Create or extend the study in ``run_dir``; returns the store and the number of new jobs."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    archs = resolve_archs(cfg) if archs is None else archs
    store = open_store(run_dir, cfg)
    jobs = make_jobs([a.id for a in archs], list(cfg.STUDY.TASKS), list(cfg.STUDY.SEEDS))
    new = store.init_study(archs, jobs, cfg.dump(), fingerprint(cfg),
                           lambda stored: describe_training_change(stored, cfg))
    from search_spaces import get_space
    save_archs(store.archs(), run_dir / "archs.json", space=get_space(cfg.MODEL.SPACE).name, source=f"study {run_dir.name}")
    save_cfg(cfg, run_dir / "config.yaml")
    return store, new


def expire_dead_local_workers(store: Store) -> int:
    """Running jobs of workers on this host whose process is gone: expire their lease now instead
    of after STUDY.LEASE_SECONDS (a reused pid only delays this to the normal lease expiry)."""
    host = socket.gethostname()
    dead = []
    for j in store.jobs("running"):
        parts = (j["worker"] or "").split(":")
        if len(parts) >= 2 and parts[0] == host and parts[1].isdigit():
            try:
                os.kill(int(parts[1]), 0)
            except ProcessLookupError:
                dead.append(j)
            except PermissionError:
                pass
    for j in dead:
        store.expire(Job(j["arch_id"], j["task"], j["seed"]), j["worker"])
    return len(dead)


def worker_name(label: str | None = None) -> str:
    rank = os.environ.get("RANK")
    parts = [socket.gethostname(), str(os.getpid())]
    if rank is not None:
        parts.append(f"rank{rank}")
    if label:
        parts.append(label)
    return ":".join(parts)


def _fmt_time(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "?"
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def progress_line(store: Store, lease: float, shard=None, worker: str | None = None,
                  parallel: int | None = None) -> str:
    """done/total, running, pending, failed and an ETA (mean job time x jobs left / live workers;
    ``parallel``: the jobs ``worker`` runs at once, for a driver that holds a cluster's jobs)."""
    c = store.counts(lease, shard)
    remaining = c["pending"] + c["running"]
    mean = store.mean_wall()
    live = {w for (w,) in store.db.execute("SELECT DISTINCT worker FROM jobs WHERE state = 'running' AND heartbeat >= ?",
                                           (time.time() - lease,))}
    if worker:
        live.add(worker)
    active = max(len(live), 1)
    if worker and parallel:
        active = len(live) - 1 + parallel
    eta = mean * remaining / active if mean is not None else None
    pct = 100.0 * c["done"] / max(c["total"], 1)
    s = f"study {c['done']}/{c['total']} done ({pct:.0f}%), {c['running']} running, {c['pending']} pending"
    if c["failed"]:
        s += f", {c['failed']} failed"
    return s + f", ETA {_fmt_time(eta)}"


class _Heartbeat(threading.Thread):
    """Refreshes a job's lease from a thread with its own store connection."""

    def __init__(self, path: Path, journal: str, job: Job, token: str, period: float):
        super().__init__(daemon=True)
        self.path, self.journal, self.job, self.token, self.period = path, journal, job, token, period
        self.stop_event = threading.Event()
        self.lost = threading.Event()

    def run(self):
        store = Store(self.path, self.journal)
        try:
            while not self.stop_event.wait(self.period):
                try:
                    if not store.heartbeat(self.job, self.token):
                        self.lost.set()
                except Exception as exc:  # a busy store must not kill the job; the lease has slack
                    log.warning("heartbeat for %s failed: %s", self.job.key, exc)
        finally:
            store.close()

    def stop(self):
        self.stop_event.set()
        self.join(timeout=10)


def write_job_outputs(job_dir: Path, job: Job, result: dict) -> None:
    import json

    from unnas.utils.io import atomic_write_text

    atomic_write_text(job_dir / "result.json", json.dumps(result, indent=1, default=str) + "\n")
    curve = result.get("curve") or []
    if not curve or (job_dir / "tb").exists():   # the trainer wrote its own TensorBoard scalars
        return
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard missing: the JSON curve is still there
        return
    writer = SummaryWriter(str(job_dir / "tb"))
    try:
        for k, rec in enumerate(curve):
            step = int(rec.get("epoch", k + 1))
            for name, value in rec.items():
                if name != "epoch" and isinstance(value, (int, float)) and math.isfinite(float(value)):
                    writer.add_scalar(f"{job.task}/{name}", float(value), step)
        writer.add_scalar(f"{job.task}/best", float(result["best"]), int(curve[-1].get("epoch", len(curve))))
    finally:
        writer.close()


class _EpochLog(logging.Handler):
    """Per-epoch progress of the running job: the trainer's ``unnas.train`` log lines, prefixed."""

    def __init__(self, worker: str, job: Job, echo: Callable[[str], None]):
        super().__init__(logging.INFO)
        self.prefix, self.echo = f"[{worker}] {job.key}", echo
        self.logger = logging.getLogger("unnas.train")
        self.old_level = self.logger.level
        if self.logger.getEffectiveLevel() > logging.INFO:
            self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self)

    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith("epoch "):
            self.echo(f"{self.prefix} {msg}")

    def close(self):
        self.logger.removeHandler(self)
        self.logger.setLevel(self.old_level)
        super().close()



def _user_errors() -> tuple:
    from search_spaces.errors import ArchitectureError
    from unnas.data import DataError
    from unnas.tasks import UnknownTask
    return (ConfigError, DataError, ArchitectureError, UnknownTask)


def run_worker(cfg, run_dir, train_fn: Callable | str | None = None, worker: str | None = None,
               shard: tuple[int, int] | None = None, wait: bool = False, max_jobs: int | None = None,
               poll: float = 5.0, echo: Callable[[str], None] = print) -> dict:
    """Claim and run jobs until none is claimable (with ``wait``: until the study is finished,
    taking over jobs of dead workers). Returns {"ran": n, "failed": n, "discarded": n}."""
    run_dir = Path(run_dir)
    train_fn = resolve_trainer(train_fn if train_fn is not None else cfg.STUDY.TRAINER)
    worker = worker or worker_name()
    s = cfg.STUDY
    store = open_store(run_dir, cfg)
    genotypes = {a.id: a.genotype for a in store.archs()}
    stats = {"ran": 0, "failed": 0, "discarded": 0}
    user_errors = _user_errors()
    expire_dead_local_workers(store)
    try:
        while max_jobs is None or stats["ran"] + stats["failed"] < max_jobs:
            claimed = store.claim(worker, s.LEASE_SECONDS, shard, s.MAX_ATTEMPTS)
            if claimed is None and expire_dead_local_workers(store):   # a sibling died: take its job over
                claimed = store.claim(worker, s.LEASE_SECONDS, shard, s.MAX_ATTEMPTS)
            if claimed is None:
                c = store.counts(s.LEASE_SECONDS, shard)
                if wait and c["running"] > 0:
                    time.sleep(poll)
                    continue
                break
            key, token = claimed
            try:
                job = Job(key.arch_id, key.task, key.seed, genotypes[key.arch_id])
                job_dir = run_dir / "jobs" / job.dirname
                job_dir.mkdir(parents=True, exist_ok=True)
                hb = _Heartbeat(store.path, s.JOURNAL, job, token, s.HEARTBEAT_SECONDS)
                hb.start()
            except BaseException:
                store.release(key, token)
                raise
            t0 = time.time()
            epoch_log = _EpochLog(worker, job, echo) if s.EPOCH_LOG else None
            try:
                result = dict(check_result(train_fn(job, job_cfg(cfg, job.task, job.seed), job_dir), job))
            except KeyboardInterrupt:
                hb.stop()
                store.release(job, token)
                raise
            except user_errors:
                hb.stop()
                store.fail(job, token, traceback.format_exc(limit=3))
                raise
            except Exception as exc:
                hb.stop()
                store.fail(job, token, traceback.format_exc(limit=8))
                stats["failed"] += 1
                echo(f"[{worker}] FAILED {job.key}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]} | "
                     f"{progress_line(store, s.LEASE_SECONDS, shard, worker)}")
                continue
            finally:
                if epoch_log is not None:
                    epoch_log.close()
            hb.stop()
            result["job_seconds"] = time.time() - t0          # everything, set-up included (ETA)
            result.setdefault("wall_time", result["job_seconds"])
            result.update({"arch_id": job.arch_id, "task": job.task, "seed": job.seed, "worker": worker,
                           "genotype": job.genotype.to_dict()})
            result.setdefault("config", job_cfg(cfg, job.task, job.seed).dump())
            write_job_outputs(job_dir, job, result)
            if store.complete(job, token, worker, result):
                if not s.KEEP_CHECKPOINTS:
                    for name in JOB_CHECKPOINTS:
                        (job_dir / name).unlink(missing_ok=True)
                stats["ran"] += 1
                metric = result.get("metric", "metric")
                echo(f"[{worker}] done {job.key}: best {metric} {result['best']:.2f}, final {result['final']:.2f} "
                     f"({_fmt_time(result['job_seconds'])}) | {progress_line(store, s.LEASE_SECONDS, shard, worker)}")
            else:
                stats["discarded"] += 1
                echo(f"[{worker}] {job.key} was finished by another worker meanwhile; this result is discarded")
    finally:
        store.close()
    return stats


def _exit_with_parent(parent_pid: int, period: float = 1.0) -> None:
    """End this worker when the driver that spawned it is gone (``kill -9`` of the driver, a closed
    terminal): an orphaned worker would go on training jobs nobody waits for and, when the user
    starts the study again, compete with the new workers. Its running job is requeued by the next
    driver (the worker's pid is dead), and resumes from the job's last checkpoint."""
    import signal

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(period)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _spawned_worker(cfg_yaml: str, run_dir: str, trainer, label: str, shard, threads: int, wait: bool,
                    device: str | None = None, parent_pid: int | None = None):
    """A local worker process; ``device`` (``cuda:N``, from :func:`local_worker_plan`) pins it to
    one GPU: its jobs' ``DEVICE`` and the process's current CUDA device (so nothing lands on GPU 0)."""
    import torch
    from fvcore.common.config import CfgNode as CN

    if parent_pid is not None:
        _exit_with_parent(parent_pid)
    torch.set_num_threads(threads)
    cfg = CN.load_cfg(cfg_yaml)
    if device is not None:
        cfg.DEVICE = device
        torch.cuda.set_device(torch.device(device))
    cfg.freeze()
    try:
        run_worker(cfg, run_dir, trainer, worker_name(label), shard, wait, echo=lambda m: print(m, flush=True))
    except _user_errors() as exc:
        print(f"[{label}] error: {' '.join(str(exc.args[0] if exc.args else exc).split())}", flush=True)
        raise SystemExit(2)
    except KeyboardInterrupt:
        raise SystemExit(130)


def threads_per_worker(cfg, workers: int) -> int:
    """``NUM_THREADS`` (study default 1; 0 = the free cores shared among the workers): a study is
    many small independent jobs, so processes (``--workers``, one per core) scale better than
    intra-op threads, and threads on a busy machine oversubscribe the cores (measured: one job 2 s
    with 1 thread, 50 s with 2 threads on 2 cores at load 5)."""
    from unnas.engine.setup import auto_threads
    return int(cfg.NUM_THREADS) if cfg.NUM_THREADS > 0 else max(1, auto_threads() // max(workers, 1))


def worker_devices(device_ids: list[int], jobs_per_device: int) -> list[int]:
    """The CUDA device of each local worker with ``STUDY.JOBS_PER_DEVICE``: ``jobs_per_device``
    workers on each device in turn (devices [0, 1] x 3 -> [0, 0, 0, 1, 1, 1]): worker k runs on
    ``device_ids[k // jobs_per_device]``, so a replacement started for worker k lands where it was."""
    return [d for d in device_ids for _ in range(jobs_per_device)]


def visible_devices(device: str, device_count: int) -> list[int]:
    """The CUDA devices a study's ``DEVICE`` lets its workers use: all ``device_count`` visible
    ones for ``auto`` and ``cuda``, the one named by ``cuda:N``, none for ``cpu``."""
    device = str(device).strip().lower()
    if device_count <= 0 or device == "cpu":
        return []
    if device.startswith("cuda:"):
        return [int(device.split(":", 1)[1])]
    return list(range(device_count)) if device in ("auto", "cuda") else []


def local_worker_plan(cfg, workers: int, device_count: int, world: int = 1) -> tuple[list[str | None], str | None]:
    """The local workers to start, as the device of each (``cuda:N``, or None: the config's
    ``DEVICE`` as it is), and a line saying how ``STUDY.JOBS_PER_DEVICE`` was applied (None when it
    is 0). With ``STUDY.JOBS_PER_DEVICE J > 0`` and CUDA devices: J workers on each device the
    ``DEVICE`` allows (``--workers`` is replaced); without CUDA devices, or under torchrun
    (``world`` > 1, one worker per rank), it is ignored. Otherwise ``workers`` workers, spread round
    robin over the GPUs when ``DEVICE`` is ``auto``. Pure (``device_count`` is given), so it is
    tested without a GPU."""
    per_device = int(cfg.STUDY.get("JOBS_PER_DEVICE", 0))
    ids = visible_devices(cfg.DEVICE, device_count)
    if per_device > 0 and world > 1:
        return [None] * workers, (f"STUDY.JOBS_PER_DEVICE {per_device} ignored: under torchrun each of the {world} "
                                  "ranks is one worker")
    if per_device > 0 and not ids:
        return [None] * workers, (f"STUDY.JOBS_PER_DEVICE {per_device} ignored: no CUDA device (DEVICE {cfg.DEVICE}, "
                                  f"{device_count} visible); {workers} worker process{'es' if workers != 1 else ''}")
    if per_device > 0:
        devices = [f"cuda:{d}" for d in worker_devices(ids, per_device)]
        note = (f"STUDY.JOBS_PER_DEVICE {per_device}: {len(devices)} worker processes, {per_device} on each of "
                f"{', '.join(f'cuda:{d}' for d in ids)}")
        return devices, note + (f" (--workers {workers} replaced)" if workers not in (1, len(devices)) else "")
    if cfg.DEVICE == "auto" and ids and workers > 1:   # one GPU per local worker, round robin
        return [f"cuda:{ids[k % len(ids)]}" for k in range(workers)], None
    return [None] * workers, None


def _device_count() -> int:
    import torch
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def run_workers(cfg, run_dir, workers: int = 1, train_fn=None, shard=None, wait: bool = False,
                echo: Callable[[str], None] = print) -> dict:
    """Run ``workers`` worker processes here (1: in this process; ``STUDY.JOBS_PER_DEVICE`` > 0 on
    a machine with GPUs: that many per GPU instead, see :func:`local_worker_plan`). Returns the
    merged stats."""
    import torch

    devices, note = local_worker_plan(cfg, workers, _device_count(), _world())
    if note:
        log.info(note)
        echo(note)
    workers = len(devices)
    trainer = train_fn if train_fn is not None else cfg.STUDY.TRAINER
    threads = threads_per_worker(cfg, workers)
    if workers <= 1:
        torch.set_num_threads(threads)
        if devices and devices[0] is not None and devices[0] != cfg.DEVICE:   # JOBS_PER_DEVICE 1 on one GPU
            cfg = cfg.clone()
            cfg.defrost()
            cfg.DEVICE = devices[0]
            cfg.freeze()
        return run_worker(cfg, run_dir, trainer, worker_name(), shard, wait, echo=echo)
    if callable(trainer) and not isinstance(trainer, str):
        name = f"{trainer.__module__}:{trainer.__qualname__}"
        trainer = name
    import multiprocessing as mp
    import signal

    ctx = mp.get_context("spawn")

    device_of = {}

    def start(label: str, device: str | None):
        p = ctx.Process(target=_spawned_worker, name=f"rank_corr-{label}",
                        args=(cfg.dump(), str(run_dir), trainer, label, shard, threads, wait, device, os.getpid()))
        p.start()
        device_of[p] = device
        return p

    def terminated(signum, frame):   # kill DRIVER: stop the workers too (their jobs resume on the next run)
        for p in alive:
            p.terminate()
        for p in alive:
            p.join(timeout=30)
        raise SystemExit(128 + signum)

    procs = [start(f"w{k}", device) for k, device in enumerate(devices)]
    alive, killed, failed, replacements = list(procs), [], [], 0
    previous = signal.signal(signal.SIGTERM, terminated) if threading.current_thread() is threading.main_thread() else None
    store = open_store(run_dir, cfg)
    try:
        while alive:
            for p in list(alive):
                p.join(timeout=0.5)
                if p.exitcode is None:
                    continue
                alive.remove(p)
                if p.exitcode >= 0:
                    if p.exitcode:
                        failed.append(p.exitcode)
                    continue
                # killed by a signal (kill -9, the out-of-memory killer): no message of its own, so
                # say what happened, requeue its job now and let a replacement worker continue
                killed.append(p)
                requeued = expire_dead_local_workers(store)
                pending = store.counts(cfg.STUDY.LEASE_SECONDS, shard)["pending"]
                note = f"{requeued} running job(s) requeued" if requeued else "no job was running"
                if pending and replacements < workers:
                    replacements += 1
                    alive.append(start(f"w{workers + replacements - 1}", device_of[p]))   # on the dead one's GPU
                    note += "; a replacement worker continues"
                echo(f"worker {p.name} (pid {p.pid}) was killed by signal {-p.exitcode} "
                     f"({_signal_name(-p.exitcode)}); {note}")
    except KeyboardInterrupt:
        for p in alive:
            p.join(timeout=30)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        left = store.counts(cfg.STUDY.LEASE_SECONDS, shard)
        store.close()
    if failed:
        raise ConfigError(f"{len(failed)} of {len(procs) + replacements} worker processes exited with an error "
                          f"(exit codes {failed}); see their messages above")
    unfinished = left["pending"] + left["running"]
    if killed and unfinished:
        raise ConfigError(f"{len(killed)} worker process(es) were killed and {unfinished} job(s) are unfinished; "
                          "rerun the same command to continue (finished results are kept)")
    return {}


def _signal_name(num: int) -> str:
    import signal
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"
