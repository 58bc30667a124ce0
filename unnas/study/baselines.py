"""Training-free baselines of a study: the parameter count and the multiply-adds of each network.

A bigger network often trains to a better accuracy, so "rank the architectures by their size" is
the baseline a pretext task has to beat. Both numbers are deterministic per architecture (no seed
noise) and are those of the network the study's jobs of one task (the reference task) train:
parameters without the auxiliary head, MACs = fvcore multiply-adds for one sample in eval mode
(:mod:`unnas.train.complexity`; the trainer records them as ``params`` and ``macs``/``flops``).

Source, per architecture: the numbers the task's jobs recorded (any seed; > 0), else those cached
with the study's training-free proxies (``params`` and ``flops`` of :mod:`unnas.study.proxy_study`,
which are these same numbers of the same network; the proxy cache stores MACs under NASLib's name
``flops``), else the same computation on the network :func:`unnas.train.network.resolve_network`
plans from the genotype and the study's config for that task (its ``MODEL``/``DATA`` keys: width,
depth, stem, image size, the task's head; about 0.15 s per tiny network, 0.7 s at width 16 depth 20
on one CPU thread), which is then written to that cache, so each number is computed once per
architecture. The fake trainer records 0, so its studies always compute them. When they cannot be
computed (the data set is not readable here, no stored config) the baseline keeps the recorded
architectures only, or is left out, with a note.
"""
from __future__ import annotations

import logging
from typing import Mapping, Sequence

from .archs import Arch

log = logging.getLogger("unnas.study")

BASELINES = ("params", "macs")
# baseline -> the name of the same number among the training-free proxies (unnas.study.proxies)
PROXY_NAME = {"params": "params", "macs": "flops"}


def recorded_complexity(results: Sequence[dict], task: str) -> dict[str, dict[str, float]]:
    """``{"params": {arch: n}, "macs": {arch: n}}`` from the stored results of ``task``'s jobs (values
    > 0 only; ``macs``, or ``flops`` for trainers that record only that)."""
    out: dict = {b: {} for b in BASELINES}
    for r in results:
        if r.get("task") != task:
            continue
        res = r.get("result") or {}
        for b, keys in (("params", ("params",)), ("macs", ("macs", "flops"))):
            v = next((res[k] for k in keys if isinstance(res.get(k), (int, float)) and res[k] > 0), None)
            if v is not None:
                out[b].setdefault(r["arch_id"], float(v))
    return out


def study_task(cfg, task: str, genotype="DARTS_V2"):
    """``(jc, dataset, task object)`` of a study's ``task`` jobs: the trainer config of the task's job
    (seed 1; ``genotype`` only fills ``MODEL.GENOTYPE``), its training split and the task built as
    the trainer builds it. Raises ``ConfigError``/``DataError`` when they cannot be built here."""
    from unnas.config import task_options
    from unnas.data import build_dataset
    from unnas.tasks import build_task

    from .config import job_cfg, trainer_cfg

    jc = trainer_cfg(job_cfg(cfg, task, 1), genotype, cfg.OUT_DIR)
    train_set = build_dataset(jc.DATA, "train")
    return jc, train_set, build_task(jc.TASK.NAME, train_set.info, **task_options(jc))


def study_network(jc, t, info, genotype):
    """``(network, x0)``: the network the trainer builds for ``genotype`` under the job config ``jc``
    and task ``t`` (its :class:`~unnas.train.network.NetworkPlan`; initialised from torch's global
    RNG), and the one-sample input the trainer measures its complexity on."""
    import torch

    from unnas.train.complexity import sample_input
    from unnas.train.network import build_train_network, input_adapter, resolve_network

    plan, _, _ = resolve_network(jc, t, info, genotype)
    x0 = sample_input(t, info)
    adapter = input_adapter(plan, t, info)
    if adapter is not None:   # as the Trainer: the trunk reads another task's input
        x0 = adapter.make_input(torch.full((1, 3, info.image_size, info.image_size), 128, dtype=torch.uint8))
    return build_train_network(plan, t), x0


def network_complexity(net, x0) -> dict[str, float]:
    """``{"params", "macs"}`` of a network from :func:`study_network` (the trainer's count)."""
    from unnas.train.complexity import complexity

    c = complexity(net, x0)
    return {"params": float(c["params"]), "macs": float(c["macs"])}


def genotype_complexity(cfg, task: str, archs: Sequence[Arch]) -> dict[str, dict[str, float]]:
    """``{"params": {arch: n}, "macs": {arch: n}}`` of the networks a study's ``task`` jobs train
    (the trainer's own plan and count, without training; ``cfg`` is the study config). Raises
    ``ConfigError``/``DataError`` when the task or the data set cannot be built here."""
    import torch

    out: dict = {b: {} for b in BASELINES}
    if not archs:
        return out
    jc, train_set, t = study_task(cfg, task, archs[0].genotype)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny tracing jobs: more threads only wait at OpenMP barriers
    try:
        for a in archs:
            c = network_complexity(*study_network(jc, t, train_set.info, a.genotype))
            for b in BASELINES:
                out[b][a.id] = c[b]
    finally:
        torch.set_num_threads(threads)
    return out


def complexity_baselines(results: Sequence[dict], archs: Sequence[Arch], cfg, task: str,
                         need: set[str] | None = None, cache=None) -> tuple[dict[str, dict[str, float]], dict]:
    """The baselines for the architectures ``need`` (default: all of ``archs``): recorded by
    ``task``'s jobs where they did, else read from ``cache`` (a
    :class:`~unnas.study.proxy_study.ProxyCache` of the same task's network: its ``params`` and
    ``flops``), else computed from the genotype (:func:`genotype_complexity`; written to ``cache``).
    Returns ``(values, info)``: ``values`` holds only the baselines with at least 2 architectures;
    ``info`` has ``task``, per baseline ``recorded``/``cached``/``computed`` counts, and ``note``
    (why some or all are missing, else None)."""
    from unnas.config import ConfigError
    from unnas.data import DataError

    wanted = [a for a in archs if need is None or a.id in need]
    values = recorded_complexity(results, task)
    for b in BASELINES:
        values[b] = {a: v for a, v in values[b].items() if need is None or a in need}
    info: dict = {"task": task, "note": None,
                  "definition": "params: parameters without the aux head; macs: fvcore multiply-adds for one sample "
                                "in eval mode; of the network the study trains for the task"}
    counts = {b: {"recorded": len(values[b]), "cached": 0, "computed": 0} for b in BASELINES}
    if cache is not None:
        stored = cache.values([PROXY_NAME[b] for b in BASELINES])
        for b in BASELINES:
            for a in wanted:
                v = stored.get(PROXY_NAME[b], {}).get(a.id)
                if a.id not in values[b] and v is not None and v > 0:
                    values[b][a.id] = v
                    counts[b]["cached"] += 1
    missing = [a for a in wanted if any(a.id not in values[b] for b in BASELINES)]
    if missing:
        if cfg is None:
            info["note"] = "no readable study config to compute params/MACs from the genotypes"
        else:
            log.info("computing params/MACs of %d architectures from their genotypes (task %s)", len(missing), task)
            try:
                computed = genotype_complexity(cfg, task, missing)
            except (ConfigError, DataError, OSError, KeyError, ImportError) as exc:
                info["note"] = (f"cannot compute params/MACs from the genotypes here "
                                f"({' '.join(str(exc.args[0] if exc.args else exc).split())})")
            else:
                for b in BASELINES:
                    for a, v in computed[b].items():
                        if cache is not None:
                            cache.put(a, PROXY_NAME[b], v, None)
                        if a not in values[b]:
                            values[b][a] = v
                            counts[b]["computed"] += 1
    for b in BASELINES:
        info[b] = counts[b]
    kept = {b: v for b, v in values.items() if len(v) >= 2}
    if len(kept) < len(BASELINES) and info["note"] is None:
        info["note"] = "fewer than 2 architectures with " + " and ".join(b for b in BASELINES if b not in kept)
    if info["note"]:
        log.warning("baselines: %s%s", info["note"], "" if kept else "; params/macs rows left out")
    return kept, info


def describe(info: Mapping) -> str:
    """One line for the table: where the numbers come from."""
    parts = []
    for b in BASELINES:
        c = info.get(b) or {}
        # cached = computed by an earlier analysis: one name for both, so re-analysing writes the same table
        n_geno = c.get("cached", 0) + c.get("computed", 0)
        src = ([f"{c['recorded']} recorded by the jobs"] if c.get("recorded") else []) + \
              ([f"{n_geno} computed from the genotype"] if n_geno else [])
        if src:
            parts.append(f"{b} {' + '.join(src)}")
    line = (f"Baselines (training-free, no seed noise): params = parameters, macs = multiply-adds (one sample, "
            f"fvcore) of the {info.get('task')} network of each architecture" + (f" ({'; '.join(parts)})" if parts else "")
            + "; a larger network ranks higher.")
    if info.get("note"):
        line += f" Note: {info['note']}."
    return line
