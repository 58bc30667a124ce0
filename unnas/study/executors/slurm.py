"""``--executor slurm``: job arrays through submitit (``submitit.AutoExecutor``).

The driver (this process, usually on a login node) claims jobs in the store, submits them as array
tasks of :class:`StudyJob` (at most STUDY.SLURM.MAX_ARRAY_SIZE per array, ``--array ...%P`` with
P = ``--slurm-array-parallelism``), waits for them and records their results: it is the store's only
writer, so the SQLite file is never written from the compute nodes (SQLite over NFS is what this
avoids). Each task trains in ``RUN_DIR/jobs/<job>/`` on the shared file system, writes
``result.json`` there and returns the result (submitit pickles it to ``RUN_DIR/slurm/<jobid>/``).

Preemption and the time limit: SLURM signals the task (USR2, ``slurm_signal_delay_s`` before the
limit), submitit calls :meth:`StudyJob.checkpoint`, which resubmits the same job, and requeues it;
the requeued task resumes from the job's checkpoint (``checkpoint_last.pt``; at most 3 time-outs).

Driver restarts: the SLURM job ids of the jobs in flight are kept in ``RUN_DIR/slurm/submitted.json``
with their claim tokens. Ctrl-C (or a lost login session) leaves the jobs running with their claims;
the next ``rank_corr.py run`` on the directory re-attaches to them (``Store.adopt``), collects the
results of those that finished meanwhile, and submits what is left: rerunning the command is the
collect step. ``--slurm-cluster local`` runs the same path with submitit's local processes.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from unnas.config import ConfigError

from . import EXECUTORS, Executor, import_optional, sbatch_options
from .driver import Flight, RemoteDriver, execute_job, pid_running, remote_launch_check

SUBMITTED = "submitted.json"


@EXECUTORS.register("slurm")
class SlurmExecutor(Executor):
    name = "slurm"
    interrupt_note = ("the submitted jobs keep running on the cluster and keep their claims; rerun the same command to "
                      "re-attach, record the results of those that finished and submit the rest.")

    def describe(self, cfg, workers, world) -> str:
        sl = cfg.STUDY.SLURM
        parts = [f"cluster {sl.CLUSTER}"] + ([f"partition {sl.PARTITION}"] if sl.PARTITION else [])
        parts += [f"{sl.GPUS_PER_JOB} GPUs/job", f"{sl.TIME} min", f"array parallelism {sl.ARRAY_PARALLELISM}"]
        if sl.EXTRA:
            parts.append("sbatch " + " ".join(f"--{x}" for x in sl.EXTRA))
        return f"executor slurm ({', '.join(parts)})"

    def check_launch(self, workers, world) -> None:
        remote_launch_check(self.name, workers, world)

    def run(self, cfg, run_dir, workers=1, shard=None, wait=False, echo=print, train_fn=None) -> dict:
        self.check_launch(workers, 1)
        return SlurmDriver(cfg, run_dir, shard, wait, echo, train_fn).run()


class StudyJob:
    """What one array task runs: :func:`~.driver.execute_job` on its payload. submitit calls
    ``checkpoint`` on preemption or at the time limit and requeues what it returns: the same job,
    which resumes from the checkpoint its trainer left in the job directory."""

    def __init__(self, payload: dict):
        self.payload = payload

    def __call__(self) -> dict:
        return execute_job(**self.payload)

    def checkpoint(self, *args, **kwargs):
        from submitit.helpers import DelayedSubmission
        return DelayedSubmission(self)


def _make_importable() -> None:
    """Jobs unpickle :class:`StudyJob`, so they must import ``unnas``: put this checkout on the
    PYTHONPATH they inherit (sbatch exports the environment by default) unless it is installed."""
    import unnas
    root = str(Path(unnas.__file__).resolve().parents[1])
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths and not any(Path(p).is_dir() and Path(p).resolve() == Path(root) for p in paths):
        os.environ["PYTHONPATH"] = os.pathsep.join([root] + paths)


class SlurmDriver(RemoteDriver):
    label = "slurm"

    def connect(self) -> None:
        self.submitit = import_optional("submitit", "submitit", "slurm")
        sl = self.cfg.STUDY.SLURM
        if sl.CLUSTER == "slurm" and shutil.which("sbatch") is None:
            raise ConfigError("--executor slurm needs SLURM's sbatch on PATH (start the driver on a login node); "
                              "--slurm-cluster local runs the same jobs as local processes instead")
        _make_importable()
        self.folder = self.run_dir / "slurm"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ex = self.submitit.AutoExecutor(folder=str(self.folder / "%j"), cluster=sl.CLUSTER)
        params = {"name": f"unnas_{self.run_dir.name}", "timeout_min": int(sl.TIME), "cpus_per_task": self.threads,
                  "gpus_per_node": int(sl.GPUS_PER_JOB), "nodes": 1, "tasks_per_node": 1}
        if sl.CLUSTER == "slurm":
            params["slurm_array_parallelism"] = int(sl.ARRAY_PARALLELISM)
            params["slurm_additional_parameters"] = sbatch_options(sl.EXTRA)
            if sl.PARTITION:
                params["slurm_partition"] = sl.PARTITION
        self.ex.update_parameters(**params)
        self.records = self._load()

    # ---- submitted.json: token -> job key and SLURM job id ----
    def _load(self) -> dict:
        try:
            data = json.loads((self.folder / SUBMITTED).read_text())
        except (OSError, ValueError):
            return {}
        return data.get("jobs", {}) if isinstance(data, dict) else {}

    def _save(self) -> None:
        from unnas.utils.io import atomic_write_text
        atomic_write_text(self.folder / SUBMITTED, json.dumps({"jobs": self.records}, indent=0, sort_keys=True) + "\n")

    def capacity(self) -> int | None:
        s = self.cfg.STUDY
        if s.MAX_IN_FLIGHT:
            return int(s.MAX_IN_FLIGHT)
        # SLURM throttles arrays itself (%P); submitit's local processes all start at once
        return None if s.SLURM.CLUSTER == "slurm" else int(s.SLURM.ARRAY_PARALLELISM)

    def submit(self, flights) -> None:
        size = int(self.cfg.STUDY.SLURM.MAX_ARRAY_SIZE)
        for i in range(0, len(flights), size):
            chunk = flights[i:i + size]
            try:
                with self.ex.batch():
                    handles = [self.ex.submit(StudyJob(self.payload(f.job))) for f in chunk]
            except Exception as exc:
                raise ConfigError(f"submitting {len(chunk)} jobs to {self.cfg.STUDY.SLURM.CLUSTER} failed: "
                                  f"{' '.join(str(exc).split())[:400]}") from None
            for f, h in zip(chunk, handles):
                f.handle = h
                self.records[f.token] = {"arch_id": f.job.arch_id, "task": f.job.task, "seed": f.job.seed,
                                         "job_id": str(h.job_id)}
            self._save()
            ids = sorted({str(h.job_id).split("_")[0] for h in handles})
            self.echo(f"[{self.worker}] submitted {len(chunk)} jobs ({self.cfg.STUDY.SLURM.CLUSTER} job "
                      f"{ids[0] if len(ids) == 1 else f'{ids[0]}..{ids[-1]}'})")

    def adopt(self, store) -> list[Flight]:
        if self.cfg.STUDY.SLURM.CLUSTER == "debug":   # in-process jobs died with their driver
            return []
        from unnas.study.jobs import Job
        job_class = getattr(self.ex, "_executor", self.ex).job_class
        genotypes = {a.id: a.genotype for a in store.archs()}
        out = []
        for token, r in list(self.records.items()):
            job = Job(r["arch_id"], r["task"], int(r["seed"]), genotypes.get(r["arch_id"]))
            if store.adopt(job, token, self.worker):
                out.append(Flight(job, token, job_class(folder=self.folder / "%j", job_id=r["job_id"])))
            else:   # recorded, released or taken over meanwhile
                del self.records[token]
        self._save()
        if out:
            self.echo(f"[{self.worker}] re-attached to {len(out)} jobs an earlier driver submitted "
                      f"({SUBMITTED}); their results are recorded as they finish")
        return out

    def _finished(self, handle) -> bool:
        if handle.paths.result_pickle.exists():
            return True
        if type(handle).__name__ == "LocalJob" and getattr(handle, "_process", None) is None:
            return not pid_running(int(handle.job_id))   # re-attached local job: its controller's pid
        return handle.done()

    def poll(self, flights, timeout):
        from submitit.core.utils import FailedJobError, UncompletedJobError

        deadline = time.time() + timeout
        while True:
            out = []
            for f in flights:
                if not self._finished(f.handle):
                    continue
                try:
                    out.append((f, "done", f.handle.result()))
                except FailedJobError as exc:   # the job raised: submitit's message holds its traceback
                    out.append((f, "failed", (str(exc)[-4000:], None)))
                except UncompletedJobError as exc:   # ended without a result: cancelled, killed, node failure
                    out.append((f, "lost", str(exc).strip().splitlines()[0] if str(exc).strip() else "no result"))
            left = deadline - time.time()
            if out or left <= 0:
                return out
            time.sleep(min(float(self.cfg.STUDY.SLURM.POLL_SECONDS), left))

    def forget(self, flights) -> None:
        for f in flights:
            self.records.pop(f.token, None)
        self._save()

    def interrupted(self, store, flights) -> None:
        """The jobs run on without the driver: keep their claims (the next driver adopts them)."""
        self._save()
        self.echo(f"[{self.worker}] {len(flights)} submitted jobs keep running on {self.cfg.STUDY.SLURM.CLUSTER} and "
                  f"keep their claims ({self.folder / SUBMITTED}); rerun the same command to collect them")
