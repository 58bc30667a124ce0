"""Training-free proxies of a study's architectures: their settings, the batch, the cache in the
store, and their computation (``tools/rank_corr.py proxies``, or lazily by ``analyze``).

Each architecture is scored once, at initialisation, by every proxy of ``STUDY.PROXIES`` (default:
all of :data:`unnas.study.proxies.PROXY_NAMES`) with :func:`unnas.study.proxies.compute_proxies`:

* **network**: the one the study trains for its reference task ``STUDY.SUPERVISED`` (the trainer's
  :class:`~unnas.train.network.NetworkPlan` from the study config: ``MODEL.WIDTH``/``DEPTH``/
  ``STEM``, the task's head, no auxiliary head unless ``MODEL.AUX``), initialised from
  ``STUDY.PROXY_SEED`` (torch's CPU generator, forked: nothing else is disturbed);
* **batch**: ``STUDY.PROXY_BATCH_SIZE`` images (default 64, NASLib's) of the study's training data
  (``DATA.*``, the ``DATA.TRAIN_OFFSET``/``MAX_TRAIN`` window), one batch drawn as the trainer draws
  them (a :class:`~unnas.data.BatchStream` seeded with ``STUDY.PROXY_SEED``, the data set's training
  augmentation, the task's training ``make_batch``), the same batch for every architecture; the
  loss is the task's own (cross-entropy for cls, no label smoothing);
* ``params`` and ``flops`` are the trainer's complexity numbers of that network (parameters without
  the auxiliary head; fvcore multiply-adds of one sample in eval mode, i.e. MACs), exactly the
  ``params``/``macs`` baselines of :mod:`unnas.study.baselines`: a job's recorded numbers are taken
  when a job of the reference task recorded them, and the analysis reads the baselines from this
  cache (and writes the ones it computes into it), so each is computed once.

**Cache.** Scores live in the store's ``proxies`` table keyed by (architecture, proxy, settings
hash); the hash (:func:`proxy_settings`) covers what changes a score: the proxies' definition
version (:data:`DEFINITIONS_VERSION`), the task, batch size and seed, and the reference job's
``MODEL``, ``DATA`` (but ``ROOT``, ``NUM_WORKERS``, ``DOWNLOAD``) and ``TASK`` keys. Each score is
committed as soon as it is computed, so an interrupted computation resumes with the next missing
(architecture, proxy). A score that is NaN (e.g. jacov on a constant Jacobian) is stored as NULL; a
proxy that raised is stored as NULL with its error, not retried (``proxies --retry-failed`` does).
The device is not part of the key (a GPU's scores may differ from a CPU's in the last digits).
``STUDY.*`` keys are outside the training fingerprint: changing the proxy settings never touches
the study's trainings, it only selects (or computes) another set of cached scores.

**When.** ``tools/rank_corr.py proxies RUN`` computes the missing scores with a progress line per
architecture (and creates the study first when given ``--archs``/``--cfg`` and an ``--out`` that
holds none, so a study can be scored before any training). ``analyze`` computes missing ones for
at most ``STUDY.PROXY_ANALYZE_SECONDS`` (default 60; 0: never) and otherwise reports the cached
ones with a note naming the command; studies of the fake trainer (dry runs of the engine) never
compute in ``analyze``. Measured costs: docs/rank_corr.md, "Training-free proxies".
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .archs import Arch

log = logging.getLogger("unnas.study")

# Bump when a definition in unnas/study/proxies.py changes: every cached score becomes stale.
DEFINITIONS_VERSION = 1
COMPLEXITY_PROXIES = ("params", "flops")      # the baselines' numbers (unnas.study.baselines)
_DATA_STREAM = 100                            # BatchStream / step_generator streams of the proxy batch
_AUG_STREAM, _TASK_STREAM = 101, 102
_NOT_KEYED = {"DATA.ROOT", "DATA.NUM_WORKERS", "DATA.DOWNLOAD"}


def proxy_names(cfg) -> list[str]:
    """``STUDY.PROXIES`` in registry order, validated (a ``ConfigError`` names an unknown one)."""
    from unnas.config import ConfigError

    from .proxies import PROXY_NAMES

    names = [str(n).strip().lower() for n in cfg.STUDY.PROXIES]
    unknown = [n for n in names if n not in PROXY_NAMES]
    if unknown:
        raise ConfigError(f"STUDY.PROXIES: unknown proxy {', '.join(map(repr, unknown))}; available: "
                          f"{', '.join(PROXY_NAMES)}")
    return [n for n in PROXY_NAMES if n in names]


def proxy_settings(cfg) -> tuple[dict, str]:
    """``(settings, hash)``: what the scores of a study config depend on, and its 16-hex hash."""
    from .config import _sorted, job_cfg

    task = str(cfg.STUDY.SUPERVISED)
    jc = job_cfg(cfg, task, 1)

    def plain(node, prefix):
        out = {}
        for k, v in node.items():
            name = f"{prefix}.{k}"
            if name in _NOT_KEYED:
                continue
            out[k] = plain(v, name) if hasattr(v, "items") else (list(v) if isinstance(v, tuple) else v)
        return out

    settings = {"version": DEFINITIONS_VERSION, "task": task, "batch_size": int(cfg.STUDY.PROXY_BATCH_SIZE),
                "seed": int(cfg.STUDY.PROXY_SEED), **{k: plain(jc[k], k) for k in ("MODEL", "DATA", "TASK")}}
    return settings, hashlib.sha1(repr(_sorted(settings)).encode()).hexdigest()[:16]


class ProxyCache:
    """The scores of one settings hash in a study's store."""

    def __init__(self, store, key: str, description: dict | None = None):
        self.store, self.key, self.description = store, key, description
        self._registered = False

    def rows(self) -> list[dict]:
        return self.store.proxy_rows(self.key)

    def values(self, names: Iterable[str] | None = None) -> dict[str, dict[str, float]]:
        """``{name: {arch: score}}`` of the stored scores (NaN for a NaN or failed one)."""
        wanted = None if names is None else set(names)
        out: dict = {}
        for r in self.rows():
            if wanted is None or r["name"] in wanted:
                out.setdefault(r["name"], {})[r["arch_id"]] = math.nan if r["value"] is None else float(r["value"])
        return out

    def done(self) -> dict[str, set[str]]:
        """``{arch: {names with a stored score}}``."""
        out: dict = {}
        for r in self.rows():
            out.setdefault(r["arch_id"], set()).add(r["name"])
        return out

    def put(self, arch_id: str, name: str, value: float | None, seconds: float | None, error: str | None = None):
        if not self._registered:
            if self.description is not None:
                self.store.set_proxy_settings(self.key, json.dumps(self.description, sort_keys=True))
            self._registered = True
        self.store.put_proxy(arch_id, name, self.key, value, seconds, error)


def open_cache(store, cfg) -> ProxyCache:
    settings, key = proxy_settings(cfg)
    return ProxyCache(store, key, settings)


class ProxyScorer:
    """The batch, task and device of a study's proxies (built once), and the network per genotype."""

    def __init__(self, cfg, device=None):
        import torch

        from unnas.data import BatchStream, DataError, step_generator
        from unnas.engine import train_window
        from unnas.engine.setup import check_task_data
        from unnas.train.network import input_adapter, resolve_network
        from unnas.utils.distributed import resolve_device

        from .baselines import study_task

        self.cfg = cfg
        self.seed = int(cfg.STUDY.PROXY_SEED)
        self.device = torch.device(device) if device is not None else resolve_device(cfg.DEVICE)
        self.jc, self.train_set, self.task = study_task(cfg, str(cfg.STUDY.SUPERVISED))
        info = self.info = self.train_set.info
        check_task_data(self.task, info, self.jc.DATA.DATASET)
        idx = train_window(len(self.train_set), self.jc.DATA.TRAIN_OFFSET, self.jc.DATA.MAX_TRAIN,
                           self.jc.DATA.DATASET)
        n = min(int(cfg.STUDY.PROXY_BATCH_SIZE), len(idx))
        if n < 2:
            raise DataError(f"the proxies need at least 2 training images; data set {self.jc.DATA.DATASET} gives {n}")
        stream = BatchStream(self.train_set, idx, n, self.seed, _DATA_STREAM)
        images, labels = stream.fetch(0, 0)
        images, labels = self.train_set.augment_batch(images, labels, step_generator(self.seed, 0, 0, _AUG_STREAM))
        x, y = self.task.make_batch(images, labels, True, step_generator(self.seed, 0, 0, _TASK_STREAM))
        from search_spaces import get_space
        plan, _, _ = resolve_network(self.jc, self.task, info, get_space(self.jc.MODEL.SPACE).example())
        adapter = input_adapter(plan, self.task, info)
        if adapter is not None:
            x = adapter.make_input(images)
        self.images = int(images.shape[0])
        self.batch = [(x.float().to(self.device), y.to(self.device))]

    def network(self, genotype):
        """``(network on the device, x0)``: see :func:`unnas.study.baselines.study_network`,
        initialised from ``STUDY.PROXY_SEED``."""
        import torch

        from .baselines import study_network

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net, x0 = study_network(self.jc, self.task, self.info, genotype)
        return net.to(self.device), x0

    def score(self, genotype, names: Sequence[str], recorded: dict | None = None,
              on_score: Callable[[str, float | None, float | None, str | None], None] | None = None,
              reference: bool = False, cpu_timings: dict | None = None, memory_format=None) -> dict[str, float]:
        """Every proxy of ``names`` for ``genotype``: ``{name: seconds}``; each score goes to
        ``on_score(name, value, seconds, error)`` as soon as it is known. ``recorded``:
        ``{"params": n, "flops": n}`` a job recorded (used instead of computing). The zero-cost
        proxies run on :func:`unnas.study.proxies.score_proxies` (shared passes; ``memory_format``
        as there), or with ``reference`` on its plain reference path, one proxy at a time. ``cpu_timings`` (a dict) receives each proxy's process CPU seconds."""
        from search_spaces.darts.network import count_params

        from . import proxies as defs
        from .baselines import network_complexity

        recorded = recorded or {}
        net, x0 = self.network(genotype)
        timings: dict = {}

        def report(name, value, seconds, error, cpu=0.0):
            timings[name] = seconds or 0.0
            if cpu_timings is not None:
                cpu_timings[name] = cpu
            if error:
                log.warning("proxy %s failed: %s", name, error)
            if on_score is not None:
                on_score(name, value, seconds, error)

        def compute(name, fn):
            wall, cpu = time.perf_counter(), time.process_time()
            value = error = None
            try:
                value = fn()
            except Exception as exc:   # one proxy failing must not stop the others; recorded with its error
                error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            report(name, value, time.perf_counter() - wall, error, time.process_time() - cpu)

        zero_cost = []
        for name in names:
            if name in recorded:
                report(name, float(recorded[name]), None, None)
            elif name == "params":
                compute(name, lambda: float(count_params(net) - count_params(net.aux_head)))
            elif name == "flops":
                compute(name, lambda: network_complexity(net, x0)["macs"])
            elif reference:
                compute(name, lambda name=name: defs.reference_proxies(net, self.batch, self.task.loss, [name],
                                                                        seed=self.seed)[name])
            else:
                zero_cost.append(name)
        if zero_cost:
            defs.score_proxies(net, self.batch, self.task.loss, zero_cost, seed=self.seed, memory_format=memory_format,
                               on_score=lambda name, s: report(name, s.value, s.seconds, s.error, s.cpu_seconds))
        return timings


def missing(cache: ProxyCache, archs: Sequence[Arch], names: Sequence[str]) -> list[tuple[Arch, list[str]]]:
    done = cache.done()
    out = []
    for a in archs:
        todo = [n for n in names if n not in done.get(a.id, ())]
        if todo:
            out.append((a, todo))
    return out


def _fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def compute_missing(store, cfg, archs: Sequence[Arch], names: Sequence[str], *, results: Sequence[dict] = (),
                    time_limit: float = 0.0, echo: Callable[[str], None] | None = None, threads: int | None = None,
                    scorer: ProxyScorer | None = None) -> dict:
    """Compute and store every missing score of ``names`` for ``archs``, architecture by architecture.

    ``time_limit`` > 0: start no further architecture once the elapsed time plus the expected time
    of one more (the mean so far, or of the scores already stored) would pass it. ``results``: the
    study's finished jobs (their recorded params/MACs are used for ``params``/``flops``).
    ``threads``: torch CPU threads meanwhile (default: ``NUM_THREADS``, study default 1). Returns
    ``{"todo", "archs", "scores", "failed", "seconds", "stopped", "left"}``; raises
    ``ConfigError``/``DataError`` when the data or the task cannot be built here."""
    import torch

    from unnas.engine.setup import resolve_threads

    from .baselines import PROXY_NAME, recorded_complexity

    cache = open_cache(store, cfg)
    work = missing(cache, archs, names)
    stats = {"todo": len(work), "archs": 0, "scores": 0, "failed": 0, "seconds": 0.0, "stopped": False, "left": 0}
    if not work:
        return stats
    rec = recorded_complexity(results, str(cfg.STUDY.SUPERVISED)) if results else {}
    recorded = {}
    for b, values in rec.items():
        for a, v in values.items():
            recorded.setdefault(a, {})[PROXY_NAME[b]] = v
    old_threads = torch.get_num_threads()
    torch.set_num_threads(int(threads) if threads else resolve_threads(cfg.NUM_THREADS))
    t_start = time.perf_counter()
    per_arch: list[float] = []
    prior = [r["seconds"] for r in cache.rows() if r["seconds"] is not None and r["name"] in names]
    prior_arch = sum(prior) / max(len(prior), 1) * len(names) if prior else None
    try:
        scorer = scorer or ProxyScorer(cfg)
        for k, (arch, todo) in enumerate(work):
            elapsed = time.perf_counter() - t_start
            expect = (sum(per_arch) / len(per_arch)) if per_arch else prior_arch
            if time_limit > 0 and k > 0 and expect is not None and elapsed + expect > time_limit:
                stats["stopped"], stats["left"] = True, len(work) - k
                break
            if time_limit > 0 and k == 0 and expect is not None and expect > time_limit:
                stats["stopped"], stats["left"] = True, len(work)
                break
            failed = []

            def on_score(name, value, seconds, error, arch_id=arch.id):
                cache.put(arch_id, name, value, seconds, error)
                stats["scores"] += 1
                if error:
                    stats["failed"] += 1
                    failed.append(name)

            t0 = time.perf_counter()
            timings = scorer.score(arch.genotype, todo, recorded.get(arch.id), on_score)
            took = time.perf_counter() - t0
            per_arch.append(took)
            stats["archs"] += 1
            if echo is not None:
                left = len(work) - k - 1
                eta = sum(per_arch) / len(per_arch) * left
                slow = ", ".join(f"{n} {s:.1f}" for n, s in sorted(timings.items(), key=lambda kv: -kv[1])[:4])
                echo(f"proxies [{k + 1}/{len(work)}] {arch.id}: {len(todo)} scores in {took:.1f} s ({slow} s)"
                     + (f"; FAILED: {', '.join(failed)}" if failed else "") + f" | ETA {_fmt_s(eta)}")
    finally:
        torch.set_num_threads(old_threads)
        stats["seconds"] = time.perf_counter() - t_start
    return stats


# ---- shards and portable scores ------------------------------------------------------------------------
SCORES_FILE_META = "proxy_scores_file"       # the store remembers the scores file a `proxies` run was given


def shard_archs(archs: Sequence[Arch], shard: tuple[int, int] | None) -> list[Arch]:
    """The architectures of shard ``(i, n)``: those whose index in ``archs`` (the store's order, by
    id) is ``i`` mod ``n``; all of them for None. Shards ``0/n`` to ``n-1/n`` partition ``archs``."""
    if shard is None:
        return list(archs)
    i, n = shard
    return [a for k, a in enumerate(archs) if k % n == i]


def shard_file(path: str | Path, shard: tuple[int, int] | None) -> Path:
    """Where a run of ``shard`` writes its scores: ``path`` itself unsharded, else the sibling
    ``<stem>.shard<i>of<n><suffix>`` (one file per shard, so machines committing their shards never
    edit the same file)."""
    path = Path(path)
    return path if shard is None else path.with_name(f"{path.stem}.shard{shard[0]}of{shard[1]}{path.suffix}")


def scores_files(path: str | Path) -> list[Path]:
    """``path`` and its shards' files (:func:`shard_file`) that exist, ``path`` first."""
    path = Path(path)
    shards = sorted(path.parent.glob(f"{path.stem}.shard*of*{path.suffix}")) if path.parent.is_dir() else []
    return [p for p in [path, *shards] if p.is_file()]


def _genotype_digest(genotype) -> str:
    from .archs import genotype_key
    return hashlib.sha1(genotype_key(genotype).encode()).hexdigest()[:12]


def _encode(value: float | None):
    """A score as JSON: a number, null (NaN or failed, as the store keeps it), "inf" or "-inf"."""
    if value is None or value != value:
        return None
    return str(value) if math.isinf(value) else value


def _decode(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value not in ("inf", "-inf"):
            raise ValueError(f"score {value!r}")
        return float(value)
    return float(value)


def _read_scores(path: Path) -> tuple[dict[str, dict], dict[tuple[str, str, str], dict]]:
    """``(descriptions {settings: dict}, rows {(settings, arch_id, name): row})`` of a scores file;
    a line that is neither raises :class:`~unnas.study.store.StoreError` naming it."""
    from .store import StoreError

    descriptions, rows = {}, {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if "arch_id" not in row:
                descriptions[str(row["settings"])] = dict(row["description"])
                continue
            key = (str(row["settings"]), str(row["arch_id"]), str(row["name"]))
            row["value"] = _decode(row.get("value"))
            str(row["genotype"])
        except (ValueError, KeyError, TypeError, AttributeError):
            raise StoreError(f"{path}:{n}: not a line of exported proxy scores; re-export it with "
                             "`rank_corr.py proxies RUN_DIR --scores-file FILE`") from None
        rows[key] = row
    return descriptions, rows


def import_scores(store, path: str | Path) -> int:
    """Put the scores of ``path`` and its shards' files (:func:`scores_files`) that ``store`` lacks
    into it (stored scores are kept; the first file holding a score gives it); returns how many.
    Scores of architectures the store does not have are skipped; a score whose architecture has
    another genotype in the store raises :class:`~unnas.study.store.StoreError` (another study's file)."""
    from .store import StoreError

    digests = {a.id: _genotype_digest(a.genotype) for a in store.archs()}
    have: dict[str, set] = {}
    imported = 0
    for file in scores_files(path):
        descriptions, rows = _read_scores(file)
        for settings, description in descriptions.items():
            store.set_proxy_settings(settings, json.dumps(description, sort_keys=True))
        for (settings, arch_id, name), row in sorted(rows.items()):
            if arch_id not in digests:
                continue
            if row["genotype"] != digests[arch_id]:
                raise StoreError(f"{file}: architecture {arch_id} has another genotype in this study; these are "
                                 "another study's scores (give each study its own --scores-file)")
            if settings not in have:
                have[settings] = {(r["arch_id"], r["name"]) for r in store.proxy_rows(settings)}
            if (arch_id, name) in have[settings]:
                continue
            store.put_proxy(arch_id, name, settings, row["value"], row.get("seconds"), row.get("error"))
            have[settings].add((arch_id, name))
            imported += 1
    return imported


def export_scores(store, cache: ProxyCache, path: str | Path, archs: Sequence[Arch]) -> int:
    """Write the scores of ``archs`` under ``cache``'s settings to ``path`` (JSON lines, atomically):
    one line per settings hash with its description, then one per (architecture, proxy):
    ``{"settings", "arch_id", "genotype" (a digest), "name", "value", "seconds", "error"}``. The
    store is the authority for those architectures and settings; every other line already in the
    file (other settings, other architectures) is kept. Returns the number of score lines."""
    from unnas.utils.io import atomic_write_text

    path = Path(path)
    descriptions, rows = _read_scores(path) if path.is_file() else ({}, {})
    ids = {a.id: _genotype_digest(a.genotype) for a in archs}
    rows = {k: r for k, r in rows.items() if not (k[0] == cache.key and k[1] in ids)}
    for r in cache.rows():
        if r["arch_id"] in ids:
            rows[(cache.key, r["arch_id"], r["name"])] = {"genotype": ids[r["arch_id"]], **r}
    if cache.description is not None:
        descriptions[cache.key] = cache.description
    lines = [json.dumps({"settings": k, "description": d}, sort_keys=True, separators=(",", ":"))
             for k, d in sorted(descriptions.items())]
    for (settings, arch_id, name), r in sorted(rows.items()):
        seconds = r.get("seconds")
        lines.append(json.dumps({"settings": settings, "arch_id": arch_id, "genotype": r["genotype"], "name": name,
                                 "value": _encode(r["value"]),
                                 "seconds": None if seconds is None else round(float(seconds), 3),
                                 "error": r.get("error")}, separators=(",", ":")))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(rows)


# ---- the analysis' side ---------------------------------------------------------------------------
def analysis_proxies(store, cfg, archs: Sequence[Arch], need: set[str] | None, results: Sequence[dict] = (),
                     budget: float | None = None, run_dir=None) -> tuple[dict[str, dict[str, float]], dict]:
    """The zero-cost proxies of ``STUDY.PROXIES`` (``params``/``flops`` are the baselines' rows, not
    repeated here) for the architectures ``need``: cached scores, plus the missing ones computed
    within ``budget`` seconds (default ``STUDY.PROXY_ANALYZE_SECONDS``; never for the fake
    trainer). Returns ``(values, info)``: ``values`` ``{name: {arch: finite score}}`` for names with
    at least 2 architectures; ``info`` ``task``, ``names``, ``settings``, ``key``, ``archs`` (with
    every score), ``total``, ``computed`` (now), ``seconds``, ``nonfinite`` and ``failed`` counts
    per name, ``note``."""
    from unnas.config import ConfigError
    from unnas.data import DataError

    from .store import StoreError

    names = [n for n in proxy_names(cfg) if n not in COMPLEXITY_PROXIES]
    settings, key = proxy_settings(cfg)
    wanted = [a for a in archs if need is None or a.id in need]
    info: dict = {"task": settings["task"], "names": names, "settings": settings, "key": key, "total": len(wanted),
                  "computed": 0, "seconds": 0.0, "note": None, "nonfinite": {}, "failed": {}}
    if not names or not wanted:
        info["archs"] = 0
        return {}, info
    cache = ProxyCache(store, key, settings)
    todo = missing(cache, wanted, names)
    scores_file = store.get_meta(SCORES_FILE_META)
    if todo and scores_file:   # scores a `proxies --scores-file` run left in git (another machine's shards)
        try:
            n = import_scores(store, scores_file)
        except (OSError, StoreError) as exc:
            log.warning("proxies: not importing %s (%s)", scores_file, exc)
        else:
            if n:
                log.info("imported %d proxy scores the store lacked from %s and its shards' files", n, scores_file)
                todo = missing(cache, wanted, names)
    if budget is None:
        budget = float(cfg.STUDY.PROXY_ANALYZE_SECONDS)
    fake = str(cfg.STUDY.TRAINER) == "fake"
    run = f"python tools/rank_corr.py proxies {run_dir}" if run_dir is not None else "python tools/rank_corr.py proxies RUN_DIR"
    if todo and budget > 0 and not fake:
        log.info("computing the training-free proxies of %d architectures (at most %.0f s; `%s` computes them all)",
                 len(todo), budget, run)
        try:
            stats = compute_missing(store, cfg, wanted, names, results=results, time_limit=budget)
        except (ConfigError, DataError, OSError, KeyError, ImportError) as exc:
            info["note"] = f"cannot compute proxies here ({' '.join(str(exc.args[0] if exc.args else exc).split())})"
        else:
            info["computed"], info["seconds"] = stats["archs"], stats["seconds"]
        todo = missing(cache, wanted, names)
    stored = cache.values(names)
    errors = {}
    for r in cache.rows():
        if r["error"] and r["name"] in names and r["arch_id"] in {a.id for a in wanted}:
            errors[r["name"]] = errors.get(r["name"], 0) + 1
    values: dict = {}
    for n in names:
        vals = {a.id: stored[n][a.id] for a in wanted if a.id in stored.get(n, {})}
        finite = {a: v for a, v in vals.items() if math.isfinite(v)}
        bad = len(vals) - len(finite) - errors.get(n, 0)
        if bad:
            info["nonfinite"][n] = bad
        if len(finite) >= 2:
            values[n] = finite
    info["failed"] = errors
    info["archs"] = len(wanted) - len(todo)
    if todo and info["note"] is None:
        why = ("the study's trainer is fake (a dry run): analyze computes none" if fake else
               "STUDY.PROXY_ANALYZE_SECONDS is 0" if budget <= 0 else f"computing them all would take longer than "
               f"STUDY.PROXY_ANALYZE_SECONDS ({budget:g} s)")
        info["note"] = (f"proxies missing for {len(todo)} of {len(wanted)} architectures ({why}); `{run}` computes "
                        "them (resumable), then analyse again")
    if info["note"]:
        log.warning("proxies: %s", info["note"])
    return values, info


def describe(info: dict) -> str:
    """One line for the table: what the proxy rows are and where their numbers come from."""
    if not info:
        return ""
    if not info.get("names"):
        return f"Proxies left out: {info['note']}." if info.get("note") else ""
    s = info["settings"]
    line = (f"Proxies (training-free, NASLib definitions, unnas/study/proxies.py): {', '.join(info['names'])} of the "
            f"{s['task']} network at initialisation (seed {s['seed']}), on one batch of {s['batch_size']} training "
            f"images; scores for {info['archs']} of {info['total']} architectures"
            + (f" ({info['computed']} computed now, {info['seconds']:.0f} s)" if info.get("computed") else "")
            + "; a higher score ranks higher.")
    extra = [f"{n} {k}" for n, k in info.get("nonfinite", {}).items()]
    if extra:
        line += " Non-finite scores left out: " + ", ".join(extra) + "."
    failed = [f"{n} {k}" for n, k in info.get("failed", {}).items()]
    if failed:
        line += (" Failed (the error is in the store; `proxies RUN_DIR --retry-failed` tries again): "
                 + ", ".join(failed) + ".")
    if info.get("note"):
        line += f" Note: {info['note']}."
    return line


# ---- the proxies command's summary ------------------------------------------------------------------
def spearman_matrix(values: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Spearman rho between every two score columns over their common architectures with finite scores."""
    from .analysis import _corr

    names = list(values)
    out: dict = {}
    for a in names:
        out[a] = {}
        for b in names:
            common = sorted(k for k in set(values[a]) & set(values[b])
                            if math.isfinite(values[a][k]) and math.isfinite(values[b][k]))
            out[a][b] = _corr("spearman", np.array([values[a][k] for k in common]),
                              np.array([values[b][k] for k in common]))
    return out


def summary_tables(cache: ProxyCache, archs: Sequence[Arch], names: Sequence[str]) -> tuple[str, list, list]:
    """``(markdown, scores rows, seconds rows)``: the mean/median cost of each proxy per architecture,
    the Spearman matrix among the proxies, and the per-architecture scores and seconds."""
    ids = [a.id for a in archs]
    rows = [r for r in cache.rows() if r["name"] in names and r["arch_id"] in set(ids)]
    scores = {n: {} for n in names}
    secs = {n: {} for n in names}
    for r in rows:
        scores[r["name"]][r["arch_id"]] = math.nan if r["value"] is None else r["value"]
        if r["seconds"] is not None:
            secs[r["name"]][r["arch_id"]] = r["seconds"]
    complete = [a for a in ids if all(a in scores[n] for n in names)]
    lines = [f"{len(complete)} of {len(ids)} architectures have every score ({', '.join(names)}).", "",
             "| proxy | archs | mean s/arch | median s/arch | non-finite |", "|---|---|---|---|---|"]
    total = []
    for n in names:
        s = list(secs[n].values())
        bad = sum(1 for v in scores[n].values() if not math.isfinite(v))
        lines.append(f"| {n} | {len(scores[n])} | {np.mean(s):.2f} | {np.median(s):.2f} | {bad} |" if s else
                     f"| {n} | {len(scores[n])} | - | - | {bad} |")
    for a in complete:
        if all(a in secs[n] for n in names):
            total.append(sum(secs[n][a] for n in names))
    if total:
        lines.append(f"| all | {len(total)} | {np.mean(total):.2f} | {np.median(total):.2f} | |")
    m = spearman_matrix({n: scores[n] for n in names if scores[n]})
    cols = list(m)
    lines += ["", "Spearman ρ between proxies (common architectures with finite scores):", "",
              "| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for a in cols:
        lines.append(f"| {a} | " + " | ".join("nan" if not math.isfinite(m[a][b]) else f"{m[a][b]:.2f}" for b in cols)
                     + " |")
    score_rows = [[a] + [scores[n].get(a, "") for n in names] for a in ids if any(a in scores[n] for n in names)]
    sec_rows = [[a] + [secs[n].get(a, "") for n in names] for a in ids if any(a in secs[n] for n in names)]
    return "\n".join(lines) + "\n", score_rows, sec_rows
