"""``--executor ray``: each job is a Ray task on the cluster at ``--ray-address`` (STUDY.RAY.ADDRESS).

The driver (this process, :class:`~.driver.RemoteDriver`) claims jobs in the store, submits them as
tasks of :func:`~.driver.execute_job` (``num_cpus`` = the job's threads, ``num_gpus`` = 1 when the
cluster has GPUs, ``max_retries`` = STUDY.RAY.MAX_RETRIES for dead workers and nodes), gathers them
with ``ray.wait`` as they finish and records them: the only writer of the store. At most
STUDY.MAX_IN_FLIGHT tasks are out at once (0: twice the tasks the cluster can run at once).

Tasks write their outputs (metrics, TensorBoard, checkpoints, result.json) to the run directory at
the same absolute path on their node, and return the result. With a shared run directory a retried
task resumes from the job's checkpoint; without one the driver still gets every result (it writes
result.json itself) but a retried task starts its job over and the per-job files stay on the nodes.
Ray's tasks end with their driver: a restarted driver gives the dead one's claims back and resubmits.
"""
from __future__ import annotations

import logging
import time

from unnas.config import ConfigError

from . import EXECUTORS, Executor, import_optional
from .driver import RemoteDriver, execute_job, remote_launch_check


@EXECUTORS.register("ray")
class RayExecutor(Executor):
    name = "ray"
    interrupt_note = ("the driver's Ray tasks were cancelled and their jobs put back in the queue. Rerun the same "
                      "command to resume (finished jobs are kept; with a shared run directory a job resumes from its "
                      "checkpoint).")

    def describe(self, cfg, workers, world) -> str:
        addr = cfg.STUDY.RAY.ADDRESS
        return f"executor ray ({'cluster at ' + addr if addr else 'the default of ray.init(): RAY_ADDRESS or a new local instance'})"

    def check_launch(self, workers, world) -> None:
        remote_launch_check(self.name, workers, world)

    def run(self, cfg, run_dir, workers=1, shard=None, wait=False, echo=print, train_fn=None) -> dict:
        self.check_launch(workers, 1)
        return RayDriver(cfg, run_dir, shard, wait, echo, train_fn).run()


class RayDriver(RemoteDriver):
    label = "ray"

    def connect(self) -> None:
        ray = self.ray = import_optional("ray", "ray", "ray")
        s = self.cfg.STUDY.RAY
        self.owns = False
        if not ray.is_initialized():
            kwargs = {"logging_level": logging.WARNING}
            if s.ADDRESS:
                kwargs["address"] = s.ADDRESS
            else:
                kwargs["include_dashboard"] = False
            try:
                ray.init(**kwargs)
            except Exception as exc:   # ConnectionError, RuntimeError, ValueError, ... depending on the version
                where = f" at {s.ADDRESS}" if s.ADDRESS else ""
                raise ConfigError(f"cannot start or reach the Ray cluster{where}: {' '.join(str(exc).split())[:300]}; "
                                  "check --ray-address (STUDY.RAY.ADDRESS)") from None
            self.owns = True
        res = ray.cluster_resources()
        self.gpus = float(s.GPUS_PER_JOB) if s.GPUS_PER_JOB >= 0 else (1.0 if res.get("GPU", 0) >= 1 else 0.0)
        alive = [n for n in ray.nodes() if n.get("Alive")]
        most = max((n.get("Resources", {}).get("CPU", 0) for n in alive), default=0)
        if most < self.threads:
            raise ConfigError(f"each job asks for {self.threads} CPUs (NUM_THREADS) but no node of the Ray cluster has "
                              f"that many (at most {most:g}); lower NUM_THREADS")
        self.task = ray.remote(num_cpus=self.threads, num_gpus=self.gpus, max_retries=int(s.MAX_RETRIES),
                               retry_exceptions=False)(execute_job)
        self._cap, self._cap_at = 0, 0.0
        self.echo(f"[{self.worker}] Ray cluster: {len(alive)} nodes, {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} "
                  f"GPUs; each job {self.threads} CPU{'s' if self.threads > 1 else ''}"
                  f"{f', {self.gpus:g} GPU' if self.gpus else ''}, {int(s.MAX_RETRIES)} Ray retries; "
                  f"at most {self.capacity()} jobs in flight")

    def capacity(self) -> int:
        if self.cfg.STUDY.MAX_IN_FLIGHT:
            return int(self.cfg.STUDY.MAX_IN_FLIGHT)
        if time.time() - self._cap_at > 30:   # the cluster may grow or shrink (autoscaling, dead nodes)
            res = self.ray.cluster_resources()
            slots = int(res.get("GPU", 0) // self.gpus) if self.gpus else int(res.get("CPU", 0) // self.threads)
            self._cap, self._cap_at = max(2, 2 * slots), time.time()
        return self._cap

    def submit(self, flights) -> None:
        for f in flights:
            f.handle = self.task.options(name=f"unnas {f.job.key}").remote(**self.payload(f.job))

    def poll(self, flights, timeout):
        ray = self.ray
        by_ref = {f.handle: f for f in flights}
        refs = list(by_ref)
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if not ready:
            return []
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        out = []
        for ref in ready:
            f = by_ref[ref]
            try:
                out.append((f, "done", ray.get(ref)))
            except ray.exceptions.RayTaskError as exc:   # the training raised
                out.append((f, "failed", (str(exc)[-4000:], getattr(exc, "cause", None))))
            except ray.exceptions.RayError as exc:        # worker or node died beyond the retries, OOM, ...
                out.append((f, "lost", f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"))
        return out

    def interrupted(self, store, flights) -> None:
        for f in flights:
            try:
                self.ray.cancel(f.handle, force=True)
            except Exception:   # already finished or its worker is gone
                pass
        super().interrupted(store, flights)

    def close(self) -> None:
        if getattr(self, "owns", False):
            self.ray.shutdown()
