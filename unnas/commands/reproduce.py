"""Reproduce the paper's experiments at laptop scale, resumably, and write docs/results.md.

  python tools/reproduce.py                         # every step in order (resumes; finished steps are skipped), then the report
  python tools/reproduce.py --list                  # the steps and their state (done / partial N/M / not started)
  python tools/reproduce.py --only calib_sampled    # some steps only (comma-separated); --skip STEP,... leaves some out
  python tools/reproduce.py --report                # rebuild docs/results.md from results/ alone (no run directory needed)
  python tools/reproduce.py --export                # every study's finished jobs to results/jobs/*.jsonl (commit them)
  python tools/reproduce.py --pipeline remedies     # another set of experiments: DARTS vs its collapse remedies
                                                    # (issue 11; unnas/commands/remedies.py, docs/search_remedies.md)

Finished jobs outlive the run directories: each study step exports its store's done jobs to
``results/jobs/<run dir>.jsonl`` and, on a fresh clone, puts them back into a new store before it
trains (unnas.study.portable), so a reproduction run in parts on several machines loses no job.

The experiments are the study and search configs in experiments/repro/ plus the pipeline below
(:data:`PIPELINE`: one :class:`Step` per experiment; :data:`KINDS`: what a kind of step runs, how it
knows it is done, and how the report shows it). Every step is idempotent: a study resumes from its
SQLite store and skips finished jobs, a search continues with ``--resume``, and a step whose
``results/<step>/summary.json`` exists and whose store (or search) is complete is skipped at once.
A step copies its small outputs (tables, figures, a summary.json with budget, timings, date, commit
and command lines) to ``results/<step>/``; the report is built from ``results/`` only, so it also
works on a fresh clone. A hand-written ``results/notes.md`` is included verbatim at its top.

``--pipeline`` picks the set of experiments (:data:`PIPELINES`, a :class:`Pipeline` each: its steps, read
from its config directory, its report and its default folders); ``paper`` (the default) is the one above.
The same engine runs every pipeline: a step of kind ``search`` marked ``measured`` runs in a process of
its own whose wall time, CPU time and peak RSS go to ``RESULTS/processes.json`` (several at once with
``--workers``), and a pipeline may bring kinds of its own (the remedies' ``derive``).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import importlib
import io
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from unnas.cli import command, logging_restored, run_reporting_errors

PROG = "reproduce.py"
DEFAULT_CONFIG_DIR = "experiments/repro"
DEFAULT_DATA_DIR = "../shared/data/cifar10-mini"
DEFAULT_RUNS = "runs/repro"
DEFAULT_RESULTS = "results"
DEFAULT_REPORT = "docs/results.md"

CALIB_SEEDS = (1, 2)            # the calibration trains the reference task twice: seed 1 vs seed 2
RANDOM_GENOTYPES = 10           # retrain: random genotypes of the space, as a search derives them
RANDOM_SEED = 1
ZOO_GENOTYPES = ("DARTS_V2", "PDARTS")
PARAM_FREE_OPS = ("none", "skip_connect", "max_pool_3x3", "avg_pool_3x3")
# what a study step copies from its analysis directory (whatever exists)
ANALYSIS_FILES = ("correlations.json", "correlations.csv", "correlations.md", "archs.csv", "randexp.csv",
                  "scatter.png", "randexp.png")
SEARCH_FILES = ("genotype.json", "normal_cell.png", "reduction_cell.png", "alphas_normal.png", "alphas_reduce.png")
FIGURES = ("scatter.png", "randexp.png", "normal_cell.png", "reduction_cell.png")
WALL_FILE = "wall.json"   # in the results directory (committed, so a step spanning sessions keeps its earlier time)
PROCESS_FILE = "processes.json"   # in the results directory: every measured search process (wall, CPU, peak RSS)

PAPER = ("The paper (Liu et al., ECCV 2020, Sec. 4) trains 500 DARTS architectures on all 50,000 CIFAR-10 "
         "training images at width 16, depth 20 for 100 epochs, 3 seeds per task "
         "(experiments/study/cifar10_darts.yaml, docs/rank_corr.md), and searches at width 16, depth 8 on the "
         "full data set.")


class StepFailed(Exception):
    """A step could not finish; its finished work is kept."""


# ---------------------------------------------------------------------------------------------------
# The pipeline: one entry per experiment, run in this order.

def longer(factor: int) -> Callable:
    """Derived override: ``factor`` x the accepted calibration rung's epochs."""
    def derive(accepted_cfg) -> list[str]:
        return ["TRAIN.EPOCHS", str(factor * int(accepted_cfg.TRAIN.EPOCHS))]
    return derive


def disjoint_images(accepted_cfg) -> list[str]:
    """Derived override: start after the accepted rung's training images (same count), a disjoint subset."""
    from unnas.config import ConfigError
    n = int(accepted_cfg.DATA.MAX_TRAIN)
    if n <= 0:
        raise ConfigError("a disjoint image subset needs DATA.MAX_TRAIN > 0 in the accepted calibration rung")
    return ["DATA.TRAIN_OFFSET", str(n + int(accepted_cfg.DATA.TRAIN_OFFSET))]


@dataclass(frozen=True)
class Step:
    name: str
    kind: str                 # a key of KINDS
    cfg: str                  # its YAML in the config directory
    title: str
    about: str                # what the experiment measures (report)
    differs: str              # how it differs from the paper's recipe (report)
    calib: str = ""           # the calibration step whose accepted rung this step trains at
    in_calib_dir: bool = False   # extend the accepted rung's run directory instead of a directory of its own
    derive: tuple = ()        # functions (accepted rung's config) -> KEY VALUE overrides
    reference: bool = False   # analyse against the accepted rung's run: `analyze RUN --reference DIR:cls`
    self_reference: bool = False   # also rank each task against the same task of that run (its own noise ceiling)
    paper_scale: bool = False  # estimate the cost of this study at the paper's recipe (:func:`paper_scale`)
    search: tuple = ()        # retrain: the search steps whose genotypes it retrains
    overrides: tuple = ()     # KEY VALUE pairs on top of its YAML (search: also on the command line)
    zoo: tuple = ZOO_GENOTYPES          # retrain: published genotypes beside the searched ones
    random: int = RANDOM_GENOTYPES      # retrain: random genotypes of the space
    measured: bool = False    # search: in a process of its own, whose wall time, CPU time and peak RSS are recorded
                              # (:data:`PROCESS_FILE`), with the per-epoch diagnostics and the alphas in its results
    source: str = ""          # a kind of step that reads another step's results (the remedies' `derive`)


_SHORT = ("Laptop scale: cifar10-mini ({images} training images of the 5,085, the 1,017 test images), width "
          "{width}, depth {depth}, {epochs} epochs, {archs} architectures, {seeds} seed(s) per task, 2 CPU cores.")

PIPELINE: tuple[Step, ...] = (
    Step("calib_sampled", "calib", "sampled.yaml", "Calibration: sampled architectures",
         "Is the training budget long enough to rank architectures at all? Two cls runs of the same "
         "architectures (seeds 1 and 2) must agree: the first rung of the ladder whose seed-to-seed Spearman ρ "
         "has a 95% interval above 0 sets the budget of the steps that follow.",
         "The paper has no such step: it trains every architecture with one fixed recipe (100 epochs on 50k "
         "images) and averages 3 seeds. "
         + _SHORT),
    Step("calib_released", "calib", "released.yaml", "Calibration: released architectures",
         "The same calibration for the first 32 of the release's 500 sample-based genotypes.",
         "As for the sampled set. " + _SHORT),
    Step("sampled", "study", "sampled.yaml", "Rank correlation: sampled architectures (paper Fig. 2)",
         "Architectures drawn uniformly from the DARTS space (`none` allowed), trained under cls, rot, col and "
         "jig at the accepted budget; does each pretext accuracy rank them like cls? (cls is the mean of the "
         "calibration's two seeds.)",
         "Paper: the 500 released architectures (not uniform samples), ρ ≈ 0.8-0.9 for rot, col and jig on "
         "CIFAR-10 (docs/rank_corr.md). " + _SHORT,
         calib="calib_sampled", in_calib_dir=True, paper_scale=True),
    Step("released", "study", "released.yaml", "Rank correlation: released architectures (paper Fig. 2)",
         "The first 32 of the release's 500 sample-based genotypes, trained under cls, rot, col and jig at the "
         "accepted budget of their own calibration.",
         "Paper: all 500 of these genotypes. They are not uniform samples (more separable and dilated convolutions, "
         "larger networks; docs/rank_corr.md §3), so they differ less in quality than the sampled set. " + _SHORT,
         calib="calib_released", in_calib_dir=True, paper_scale=True),
    Step("long_sampled", "study", "long_sampled.yaml", "Budget check: 3x longer training",
         "The first 12 sampled architectures trained with cls for 3x the accepted epochs, ranked against "
         "the short budget's cls accuracies: does the short budget rank architectures as a longer one does?",
         "Paper: not measured (its 100 epochs are the reference). " + _SHORT,
         calib="calib_sampled", derive=(longer(3),), reference=True),
    Step("cross_sampled", "study", "cross_sampled.yaml", "Across data sets (paper Fig. 4)",
         "The first 16 sampled architectures trained with rot, col and jig on training images disjoint from "
         "those of the cls runs, ranked against the sampled study's cls accuracies.",
         "Paper: pretext accuracies on one data set ranked against supervised accuracies on another (ImageNet and "
         "CIFAR-10). "
         "Here the two 'data sets' are disjoint subsets of cifar10-mini, so only the images differ, not their "
         "distribution. " + _SHORT,
         calib="calib_sampled", derive=(disjoint_images,), reference=True, self_reference=True),
    *(Step(f"search_{t}", "search", f"search_{t}.yaml", f"Search: {t}",
           f"First-order DARTS with the {t} objective on cifar10-mini; its genotype is retrained in the last step.",
           "Paper: DARTS' CIFAR-10 search at width 16, depth 8, 50 epochs on 25k + 25k images "
           "(experiments/search/cifar10_*.yaml), and ImageNet searches (experiments/search/imagenet_*.yaml). "
           "Here: {images} images (half for the weights, half for the alphas), width {width}, depth {depth}, "
           "{epochs} epochs, batch {batch}.")
      for t in ("cls", "rot", "col", "jig")),
    Step("retrain", "retrain", "retrain.yaml", "Retraining the searched cells",
         "The four searched genotypes, 10 random genotypes of the space (as a search derives them: no `none`, "
         "distinct inputs), DARTS_V2 and PDARTS, each trained with cls (seeds 1 and 2). Are the searched cells "
         "better than random ones, and do the label-free searches match the supervised one?",
         "Paper: the searched cells are evaluated on ImageNet (mobile setting) and Cityscapes; DARTS' CIFAR-10 "
         "evaluation is 600 epochs at width 36, depth 20 with cutout, drop-path and an auxiliary head "
         "(experiments/train/cifar10_darts.yaml). "
         + _SHORT,
         search=("search_cls", "search_rot", "search_col", "search_jig")),
)
STEPS = {s.name: s for s in PIPELINE}


# ---------------------------------------------------------------------------------------------------
# Context, calls of the other tools, small helpers

@dataclass
class Ctx:
    config_dir: Path
    runs: Path
    results: Path
    data_dir: str
    workers: int
    report_path: Path
    command: str
    commands: list | None = None   # underlying command lines of the step being run
    t0: float = 0.0                # when the step being run started (this invocation)
    scale_archs: int = 8           # architectures whose paper-scale networks are measured (:func:`paper_scale`)
    pipeline: "Pipeline | None" = None   # None: the paper's
    order: tuple = ()              # its steps in order (filled from the pipeline and the config directory)

    def __post_init__(self):
        if not self.order:
            self.order = PIPELINE if self.pipeline is None else tuple(self.pipeline.steps(self.config_dir))

    @property
    def steps(self) -> dict:
        return {s.name: s for s in self.order}

    def kind(self, step: Step) -> "Kind":
        extra = self.pipeline.kinds if self.pipeline is not None else {}
        return extra.get(step.kind) or KINDS[step.kind]

    def yaml(self, step: Step) -> Path:
        return self.config_dir / step.cfg

    def res(self, name: str) -> Path:
        return self.results / name


@dataclass(frozen=True)
class Pipeline:
    """A set of experiments that reproduce.py runs: its steps (from its config directory), its report and
    where both live by default. ``paper`` (:data:`PIPELINE`, docs/results.md) is the default; others are
    modules named in :data:`PIPELINES` (``remedies``: :mod:`unnas.commands.remedies`)."""
    name: str
    about: str
    steps: Callable          # (config_dir: Path) -> tuple of Step
    write_report: Callable   # (ctx) -> Path: the report from the results directory alone
    config_dir: str
    runs: str
    results: str
    report_path: str
    kinds: dict = field(default_factory=dict)   # kinds of its own beside KINDS


TOOLS = {"rank_corr": ("unnas.commands.rank_corr", "tools/rank_corr.py"),
         "search": ("unnas.commands.search", "tools/search.py")}


def say(step: str, msg: str) -> None:
    print(f"[reproduce {step}] {msg}", flush=True)


def call(ctx: Ctx, step: Step, tool: str, argv: list[str]) -> None:
    """Run another program in this process (its ``main``); a non-zero status fails the step."""
    module, script = TOOLS[tool]
    line = shlex.join(["python", script, *argv])
    if ctx.commands is not None:
        ctx.commands.append(line)
    say(step.name, f"$ {line}")
    try:
        with logging_restored():   # the program's log.txt handler goes with it
            rc = importlib.import_module(module).main(list(argv))
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    if rc:
        raise StepFailed(f"`{line}` exited with status {rc}")


def call_process(ctx: Ctx, step: Step, tool: str, argv: list[str]) -> None:
    """Run another program in a process of its own (``python -m`` its module, this package first on the
    path), its output appended to RUNS/logs/<step>.txt, and record its wall time, CPU time and peak
    resident set size in :data:`PROCESS_FILE`; a non-zero status fails the step."""
    module, script = TOOLS[tool]
    line = shlex.join(["python", script, *argv])
    if ctx.commands is not None:
        ctx.commands.append(line)
    log = ctx.runs / "logs" / f"{step.name}.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    say(step.name, f"$ {line}   (output: {log})")
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    t0 = time.time()
    with open(log, "a") as f:
        f.write(f"$ {line}\n")
        f.flush()
        proc = subprocess.Popen([sys.executable, "-m", module, *argv], stdout=f, stderr=subprocess.STDOUT, env=env)
        interrupted = None
        try:
            rc, cpu, rss = wait_usage(proc)
        except BaseException as exc:   # interrupted: the child (which got the same Ctrl-C) ends too; its time counts
            proc.terminate()
            rc, cpu, rss = wait_usage(proc)
            interrupted = exc
    record_process(ctx, step.name, {"command": line, "date": date, "wall_seconds": time.time() - t0,
                                    "cpu_seconds": cpu, "peak_rss_mb": rss, "exit_status": rc})
    if interrupted is not None:
        raise interrupted
    if rc:
        tail = [x for x in log.read_text(errors="replace").splitlines() if x.strip()][-1:]
        raise StepFailed(f"`{line}` exited with status {rc}" + (f" ({tail[0].strip()})" if tail else "")
                         + f"; its output is in {log}")


def wait_usage(proc: subprocess.Popen) -> tuple[int, float | None, float | None]:
    """Wait for a child: (exit status, its CPU seconds, its peak RSS in MiB); the last two from ``os.wait4``
    (None where there is none)."""
    if not hasattr(os, "wait4"):
        return proc.wait(), None, None
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = rc = os.waitstatus_to_exitcode(status)
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024   # ru_maxrss: bytes on macOS, KiB on Linux
    return rc, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / scale


_PROCESS_LOCK = threading.Lock()


def record_process(ctx: Ctx, step: str, record: dict) -> None:
    with _PROCESS_LOCK:
        path = ctx.results / PROCESS_FILE
        data = read_json(path) or {}
        data.setdefault(step, []).append(record)
        write_json(path, data)


def process_records(ctx: Ctx, step: str) -> list[dict]:
    return (read_json(ctx.results / PROCESS_FILE) or {}).get(step, [])


def process_totals(ctx: Ctx, step: str) -> dict:
    """A step's processes over all its invocations: wall and CPU seconds summed, the largest peak RSS."""
    recs = process_records(ctx, step)

    def total(key):
        vals = [r[key] for r in recs if r.get(key) is not None]
        return sum(vals) if vals else None
    rss = [r["peak_rss_mb"] for r in recs if r.get("peak_rss_mb") is not None]
    return {"invocations": len(recs), "wall_seconds": total("wall_seconds"), "cpu_seconds": total("cpu_seconds"),
            "peak_rss_mb": max(rss) if rss else None}


def read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def write_json(path: Path, obj) -> None:
    from unnas.utils.io import atomic_write_text
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(obj, indent=1, default=str) + "\n")


def git_commit() -> tuple[str | None, bool | None]:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode:
            return None, None
        st = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                            text=True, timeout=10)
        return head.stdout.strip(), bool(st.stdout.strip()) if st.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None, None


def machine() -> str:
    import platform

    import torch
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only"
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, {dev}, torch {torch.__version__}"


def wall_record(ctx: Ctx, step: str, seconds: float | None = None) -> dict:
    """Wall seconds a step spent in reproduce.py over all its invocations (``seconds``: add one)."""
    path = ctx.results / WALL_FILE
    data = read_json(path) or {}
    rec = data.get(step, {"seconds": 0.0, "invocations": 0})
    if seconds is not None:
        rec = {"seconds": rec["seconds"] + seconds, "invocations": rec["invocations"] + 1}
        data[step] = rec
        write_json(path, data)
    return rec


def base_summary(ctx: Ctx, step: Step) -> dict:
    commit, dirty = git_commit()
    wall = wall_record(ctx, step.name)   # earlier invocations; this one is added when the step ends
    return {"step": step.name, "kind": step.kind, "title": step.title, "config": str(ctx.yaml(step)),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "git_commit": commit, "git_dirty": dirty, "command": ctx.command, "commands": list(ctx.commands or []),
            "machine": machine(), "wall_seconds": wall["seconds"] + (time.time() - ctx.t0 if ctx.t0 else 0.0),
            "invocations": wall["invocations"] + 1}


def fresh_results(ctx: Ctx, step: Step) -> Path:
    """The step's results folder, emptied (summary.json, written last, marks it complete)."""
    res = ctx.res(step.name)
    if res.is_dir():
        shutil.rmtree(res)
    res.mkdir(parents=True)
    return res


def copy_files(src: Path, dst: Path, names) -> list[str]:
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    for n in names:
        if (src / n).is_file():
            shutil.copyfile(src / n, dst / n)
            out.append(n)
    return out


# ---------------------------------------------------------------------------------------------------
# Studies

def study_cfg(path: Path, overrides=()):
    from unnas.config import load_cfg
    from unnas.study.config import study_defaults, validate_study_cfg
    return load_cfg(study_defaults(), str(path), list(overrides), validate_study_cfg)


def study_budget(cfg) -> dict:
    """The keys that matter per task (the task recipes applied)."""
    from unnas.study.config import job_cfg
    out = {}
    for t in cfg.STUDY.TASKS:
        j = job_cfg(cfg, t, 1)
        out[t] = {"width": j.MODEL.WIDTH, "depth": j.MODEL.DEPTH, "epochs": j.TRAIN.EPOCHS,
                  "images": j.DATA.MAX_TRAIN or "all", "image_offset": j.DATA.TRAIN_OFFSET,
                  "batch": j.TRAIN.BATCH_SIZE, "lr": j.OPTIM.LR, "dataset": j.DATA.DATASET}
    return out


def expected_keys(cfg) -> set | None:
    from unnas.study.runner import resolve_archs
    try:
        ids = [a.id for a in resolve_archs(cfg)]
    except (OSError, ValueError):   # an architecture list not written yet
        return None
    return {(a, t, int(s)) for a in ids for t in cfg.STUDY.TASKS for s in cfg.STUDY.SEEDS}


def store_rows(run_dir: Path) -> list[dict] | None:
    from unnas.study.runner import open_store, store_path
    if not store_path(run_dir).is_file():
        return None
    store = open_store(run_dir)
    try:
        return store.results()
    finally:
        store.close()


def study_progress(run_dir: Path, cfg) -> tuple[int, int] | None:
    """(done, total) of the jobs ``cfg`` asks for in ``run_dir``; None when there is no store yet."""
    keys = expected_keys(cfg)
    rows = store_rows(run_dir)
    if keys is None or rows is None:
        return None
    return sum((r["arch_id"], r["task"], r["seed"]) in keys for r in rows), len(keys)


def exported(ctx: Ctx, run_dir: Path) -> Path:
    """Where the finished jobs of a run directory's store are kept in the results (git): one file per
    store, since several steps extend one store (calibration rung 1 and its set)."""
    return ctx.results / "jobs" / f"{run_dir.name}.jsonl"


def export_store(ctx: Ctx, run_dir: Path) -> int | None:
    """Write the store's finished jobs to :func:`exported` (None when there is no store)."""
    from unnas.study.portable import export_results
    from unnas.study.runner import open_store, store_path
    if not store_path(run_dir).is_file():
        return None
    store = open_store(run_dir)
    try:
        return export_results(store, exported(ctx, run_dir))
    finally:
        store.close()


def restore_store(ctx: Ctx, step: Step, run_dir: Path, cfg) -> None:
    """Put the finished jobs kept in the results back into the store (a fresh clone, or a run directory
    lost with its machine), so that only the missing jobs train."""
    from unnas.study.portable import import_results
    from unnas.study.runner import prepare_study
    path = exported(ctx, run_dir)
    if not path.is_file():
        return
    store, _ = prepare_study(cfg, run_dir)
    try:
        # jobs of the same store that this step does not ask for (the calibration's second cls seed,
        # which the set's analysis averages) are registered too, so none is lost
        from unnas.study.config import fingerprint
        from unnas.study.jobs import Job
        known = {a.id for a in store.archs()}
        more = []
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
                if r.get("arch_id") in known:
                    more.append(Job(r["arch_id"], r["task"], int(r["seed"])))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue   # import_results names the bad line
        store.init_study(store.archs(), more, cfg.dump(), fingerprint(cfg))
        n = import_results(store, path)
    finally:
        store.close()
    if n:
        say(step.name, f"{run_dir}: {n} finished jobs restored from {path}")


def run_study(ctx: Ctx, step: Step, run_dir: Path, cfg, overrides: list[str]) -> None:
    """Create, resume or extend the study of ``cfg`` in ``run_dir`` until its jobs are done; its finished
    jobs are restored from, and exported to, the results directory (:func:`exported`)."""
    restore_store(ctx, step, run_dir, cfg)
    try:
        _run_study(ctx, step, run_dir, cfg, overrides)
    finally:
        export_store(ctx, run_dir)


def _run_study(ctx: Ctx, step: Step, run_dir: Path, cfg, overrides: list[str]) -> None:
    p = study_progress(run_dir, cfg)
    if p is not None and p[0] >= p[1]:
        say(step.name, f"{run_dir}: all {p[1]} jobs done")
        return
    argv = ["run", "--cfg", str(ctx.yaml(step)), "--out", str(run_dir), "--tasks", ",".join(cfg.STUDY.TASKS),
            "--seeds", ",".join(str(s) for s in cfg.STUDY.SEEDS), "--workers", str(ctx.workers), "--wait",
            "--no-analyze", "DATA.ROOT", ctx.data_dir, *overrides]
    call(ctx, step, "rank_corr", argv)
    p = study_progress(run_dir, cfg)
    if p is None or p[0] < p[1]:
        done = 0 if p is None else p[0]
        raise StepFailed(f"{run_dir}: {done}/{p[1] if p else '?'} jobs done after the run (failed jobs? see "
                         f"`python tools/rank_corr.py status {run_dir}`; `python tools/rank_corr.py run --out {run_dir} "
                         "--retry-failed` queues them again)")


def job_stats(rows: list[dict], keys: set) -> dict:
    mine = [r for r in rows if (r["arch_id"], r["task"], r["seed"]) in keys]
    walls: dict = {}
    for r in mine:
        if r["wall"] is not None:
            walls.setdefault(r["task"], []).append(float(r["wall"]))
    return {"jobs": len(keys), "jobs_done": len(mine),
            "job_wall_sum_seconds": sum(sum(v) for v in walls.values()),
            "mean_job_wall": {t: sum(v) / len(v) for t, v in walls.items()}}


def job_span(run_dir: Path, keys: set) -> float | None:
    """Seconds from the first claim to the last finish of these jobs (all workers, all invocations)."""
    from unnas.study.runner import open_store
    store = open_store(run_dir)
    try:
        att = [a for a in store.attempts() if (a["arch_id"], a["task"], a["seed"]) in keys]
    finally:
        store.close()
    ends = [a["ended"] for a in att if a["ended"]]
    return (max(ends) - min(a["started"] for a in att)) if ends else None


def study_summary(ctx: Ctx, step: Step, run_dir: Path, cfg, overrides: list[str]) -> dict:
    keys = expected_keys(cfg)
    rows = store_rows(run_dir) or []
    return {**base_summary(ctx, step), "run_dir": str(run_dir), "overrides": list(overrides),
            "budget": study_budget(cfg), "tasks": list(cfg.STUDY.TASKS), "seeds": [int(s) for s in cfg.STUDY.SEEDS],
            "archs": len({k[0] for k in keys}), **job_stats(rows, keys), "job_span_seconds": job_span(run_dir, keys)}


# ---- calibration -------------------------------------------------------------------------------------

def rungs(ctx: Ctx) -> list[list[str]]:
    """The ladder (calibration.yaml in the config directory): each rung as KEY VALUE overrides."""
    import yaml

    from unnas.config import ConfigError
    path = ctx.config_dir / "calibration.yaml"
    if not path.is_file():
        raise ConfigError(f"{path} not found; it lists the calibration rungs (RUNGS: [{{}}, {{TRAIN.EPOCHS: 4}}])")
    doc = yaml.safe_load(path.read_text()) or {}
    ladder = doc.get("RUNGS") if isinstance(doc, dict) else None
    if not isinstance(ladder, list) or not ladder or not all(isinstance(r, dict) or r is None for r in ladder):
        raise ConfigError(f"{path}: RUNGS must be a non-empty list of KEY: value mappings")
    out = []
    for r in ladder:
        opts = []
        for k, v in (r or {}).items():
            opts += [str(k), repr(v) if isinstance(v, (list, tuple)) else str(v)]
        out.append(opts)
    return out


def calib_cfg(ctx: Ctx, step: Step, overrides: list[str]):
    """The set's config at a rung: its YAML, the rung's overrides, the reference task only, seeds 1 and 2."""
    base = study_cfg(ctx.yaml(step), overrides)
    return study_cfg(ctx.yaml(step), [*overrides, "STUDY.TASKS", repr([base.STUDY.SUPERVISED]),
                                      "STUDY.SEEDS", repr(list(CALIB_SEEDS))])


def rung_dir(ctx: Ctx, step: Step, k: int) -> Path:
    name = Path(study_cfg(ctx.yaml(step)).OUT_DIR).name
    return ctx.runs / (name if k == 1 else f"{name}_r{k}")


def seed_agreement(run_dir: Path, cfg) -> dict:
    """Spearman rho (with its bootstrap 95% interval) of seed 1 vs seed 2 of the reference task."""
    from unnas.study.analysis import correlations
    ref, metric = cfg.STUDY.SUPERVISED, cfg.STUDY.METRIC
    vals: dict = {s: {} for s in CALIB_SEEDS}
    for r in store_rows(run_dir) or []:
        if r["task"] == ref and r["seed"] in vals and r[metric] is not None:
            vals[r["seed"]][r["arch_id"]] = float(r[metric])
    a, b = CALIB_SEEDS
    common = sorted(set(vals[a]) & set(vals[b]))
    c = correlations([vals[a][i] for i in common], [vals[b][i] for i in common], cfg.STUDY.BOOTSTRAP,
                     cfg.STUDY.BOOTSTRAP_SEED)
    lo = c["spearman_ci"][0]
    return {"n": len(common), "spearman": c["spearman"], "spearman_ci": c["spearman_ci"], "ci_note": c["ci_note"],
            "passed": bool(math.isfinite(lo) and lo > 0),
            "mean": {str(s): (sum(v.values()) / len(v) if v else math.nan) for s, v in vals.items()},
            "values": {i: [vals[a][i], vals[b][i]] for i in common}}


def calib_accepted(ctx: Ctx, name: str) -> dict:
    """The accepted rung of a calibration step (from its results): rung, overrides, run_dir, cfg."""
    s = read_json(ctx.res(name) / "summary.json")
    if not s:
        raise StepFailed(f"needs the calibration {name}; run `python tools/reproduce.py --only {name}` first")
    acc = s["accepted"]
    step = ctx.steps[name]
    return {"rung": acc["rung"], "overrides": list(acc["overrides"]), "run_dir": rung_dir(ctx, step, acc["rung"]),
            "cfg": calib_cfg(ctx, step, acc["overrides"])}


def run_calib(ctx: Ctx, step: Step) -> None:
    tried, ladder = [], rungs(ctx)
    for k, overrides in enumerate(ladder, 1):
        cfg, run_dir = calib_cfg(ctx, step, overrides), rung_dir(ctx, step, k)
        say(step.name, f"rung {k}/{len(ladder)} in {run_dir}: {' '.join(overrides) or 'the config as it is'}")
        run_study(ctx, step, run_dir, cfg, overrides)
        agree = seed_agreement(run_dir, cfg)
        keys = expected_keys(cfg)
        tried.append({"rung": k, "run_dir": str(run_dir), "overrides": overrides, "budget": study_budget(cfg),
                      "archs": len({x[0] for x in keys}), **job_stats(store_rows(run_dir) or [], keys),
                      "job_span_seconds": job_span(run_dir, keys), **agree})
        lo, hi = agree["spearman_ci"]
        say(step.name, f"rung {k}: seed-to-seed Spearman {agree['spearman']:.3f} [{lo:.3f}, {hi:.3f}] over "
                       f"{agree['n']} archs: {'clearly positive, accepted' if agree['passed'] else 'not clearly positive'}")
        if agree["passed"]:
            break
    acc = tried[-1]
    res = fresh_results(ctx, step)
    rows = [[t["rung"], a, *v] for t in tried for a, v in t["values"].items()]
    write_csv(res / "seeds.csv", ["rung", "arch_id", f"seed{CALIB_SEEDS[0]}", f"seed{CALIB_SEEDS[1]}"], rows)
    summary = {**base_summary(ctx, step), "run_dir": acc["run_dir"], "overrides": acc["overrides"],
               "budget": acc["budget"], "tasks": list(acc["budget"]), "seeds": list(CALIB_SEEDS), "archs": acc["archs"],
               "jobs": sum(t["jobs"] for t in tried), "mean_job_wall": acc["mean_job_wall"],
               "job_span_seconds": sum(t["job_span_seconds"] or 0 for t in tried),
               "rungs": [{k: v for k, v in t.items() if k != "values"} for t in tried],
               "accepted": {"rung": acc["rung"], "overrides": acc["overrides"], "run_dir": acc["run_dir"]},
               "passed": acc["passed"], "files": ["seeds.csv"]}
    write_json(res / "summary.json", summary)
    if not acc["passed"]:
        say(step.name, f"no rung's interval is above 0; the last rung ({acc['rung']}) is used")


def restore_calib(ctx: Ctx, step: Step) -> None:
    """The finished jobs of every rung the committed results tried, back into their run directories."""
    res = read_json(ctx.res(step.name) / "summary.json")
    for k, overrides in enumerate(rungs(ctx)[:len(res["rungs"])], 1):
        restore_store(ctx, step, rung_dir(ctx, step, k), calib_cfg(ctx, step, overrides))


def progress_calib(ctx: Ctx, step: Step):
    done = total = 0
    res = read_json(ctx.res(step.name) / "summary.json")
    n_tried = len(res["rungs"]) if res else None
    seen = False
    for k, overrides in enumerate(rungs(ctx), 1):
        p = study_progress(rung_dir(ctx, step, k), calib_cfg(ctx, step, overrides))
        if p is None:
            break
        seen = True
        done, total = done + p[0], total + p[1]
        if p[0] < p[1] or (n_tried is not None and k >= n_tried):
            break
    if res and not res["passed"] and n_tried < len(rungs(ctx)):
        return (done, total + 1) if seen else None   # a rung was added since: not done
    return (done, total) if seen else None


# ---- sample-based studies ------------------------------------------------------------------------------

def merge_overrides(opts: list[str], more: list[str]) -> list[str]:
    """KEY VALUE pairs of ``opts`` updated by ``more`` (a key given again is replaced in place)."""
    pairs = dict(zip(opts[::2], opts[1::2]))
    pairs.update(zip(more[::2], more[1::2]))
    return [x for kv in pairs.items() for x in kv]


def study_plan(ctx: Ctx, step: Step):
    """(run_dir, cfg, overrides, reference) of a study step at its calibration's accepted budget."""
    acc = calib_accepted(ctx, step.calib)
    overrides = list(acc["overrides"])
    for derive in step.derive:
        overrides = merge_overrides(overrides, derive(acc["cfg"]))
    cfg = study_cfg(ctx.yaml(step), overrides)
    run_dir = acc["run_dir"] if step.in_calib_dir else ctx.runs / Path(cfg.OUT_DIR).name
    reference = f"{acc['run_dir']}:{acc['cfg'].STUDY.SUPERVISED}" if step.reference else None
    return run_dir, cfg, overrides, reference


def analyze(ctx: Ctx, step: Step, run_dir: Path, reference: str | None, extra: tuple = ()) -> Path:
    """`rank_corr analyze` (against another run's task with ``reference``); returns its output folder."""
    before = time.time()
    call(ctx, step, "rank_corr",
         ["analyze", str(run_dir)] + (["--reference", reference] if reference else []) + list(extra))
    if reference is None:
        return run_dir / "analysis"
    other, _, task = reference.rpartition(":")
    try:   # the folder rank_corr names: analysis_ref_<other run's folder>_<task>
        from unnas.study.reference import reference_name
        named = run_dir / f"analysis_ref_{reference_name(other, task)}"
        if named.is_dir():
            return named
    except ImportError:
        pass
    made = [d for d in run_dir.glob("analysis_ref_*") if d.is_dir() and d.stat().st_mtime >= before - 1]
    if not made:
        raise StepFailed(f"`rank_corr analyze --reference {reference}` wrote no {run_dir}/analysis_ref_*/ folder")
    return max(made, key=lambda d: d.stat().st_mtime)


def run_study_step(ctx: Ctx, step: Step) -> None:
    run_dir, cfg, overrides, reference = study_plan(ctx, step)
    run_study(ctx, step, run_dir, cfg, overrides)
    adir = analyze(ctx, step, run_dir, reference)
    files = copy_files(adir, fresh_results(ctx, step), ANALYSIS_FILES)
    if step.self_reference:
        write_json(ctx.res(step.name) / SELF_AGREEMENT, self_agreement(ctx, step, run_dir, cfg, reference))
        files.append(SELF_AGREEMENT)
    summary = {**study_summary(ctx, step, run_dir, cfg, overrides), "reference": reference, "files": files}
    if step.paper_scale:
        summary["paper_scale"] = paper_scale(ctx, run_dir, cfg, summary["mean_job_wall"])
    write_json(ctx.res(step.name) / "summary.json", summary)


# The paper's sample-based recipe on CIFAR-10 (Liu et al. 2020, Sec. 4; experiments/study/cifar10_darts.yaml):
# 500 genotypes x 4 tasks x 3 seeds, each job 100 epochs on the 50,000 training images at width 16, depth 20.
PAPER = {"width": 16, "depth": 20, "epochs": 100, "images": 50_000, "archs": 500, "seeds": 3}


def paper_scale(ctx: Ctx, run_dir: Path, cfg, mean_job_wall: dict) -> dict:
    """What this study would cost at the paper's recipe, extrapolated linearly from the measured jobs: one
    paper job does ``work_ratio`` times the work of one job here (the cls network's multiply-adds at the
    paper's width and depth over ours, mean over the first ``ctx.scale_archs`` architectures, times the
    ratio of images x epochs). Jobs here train on one thread, so their wall time is core time."""
    from unnas.study.archs import load_archs
    from unnas.study.baselines import genotype_complexity

    archs = load_archs(run_dir / "archs.json")[:max(1, ctx.scale_archs)]
    ours = genotype_complexity(cfg, "cls", archs)["macs"]
    paper_cfg = cfg.clone()
    paper_cfg.defrost()
    paper_cfg.MODEL.WIDTH, paper_cfg.MODEL.DEPTH = PAPER["width"], PAPER["depth"]
    theirs = genotype_complexity(paper_cfg, "cls", archs)["macs"]
    macs_ratio = sum(theirs[a.id] / ours[a.id] for a in archs) / len(archs)
    images = int(cfg.DATA.MAX_TRAIN) or PAPER["images"]
    data_ratio = PAPER["images"] * PAPER["epochs"] / (images * int(cfg.TRAIN.EPOCHS))
    job_hours = {t: w * macs_ratio * data_ratio / 3600 for t, w in mean_job_wall.items()}
    return {"paper": dict(PAPER), "archs_measured": len(archs), "macs_ours": sum(ours.values()) / len(archs),
            "macs_paper": sum(theirs.values()) / len(archs), "macs_ratio": macs_ratio, "data_ratio": data_ratio,
            "work_ratio": macs_ratio * data_ratio, "job_core_hours": job_hours,
            "study_core_hours": sum(job_hours.values()) * PAPER["archs"] * PAPER["seeds"]}


SELF_AGREEMENT = "self_agreement.json"


def self_agreement(ctx: Ctx, step: Step, run_dir: Path, cfg, reference: str) -> dict:
    """Each task of this study against the same task of the reference run (other images, same architectures):
    how reproducible the task's own ranking is, the ceiling its agreement with cls can reach."""
    other = reference.rpartition(":")[0]
    rows = []
    for task in cfg.STUDY.TASKS:
        adir = analyze(ctx, step, run_dir, f"{other}:{task}", ("--no-proxies", "--no-baselines"))
        corr = read_json(adir / "correlations.json") or {}
        row = next((r for r in corr.get("rows", []) if r["task"] == f"{task}(this)"), None)
        if row is None:
            raise StepFailed(f"`rank_corr analyze --reference {other}:{task}` reported no {task}(this) row")
        rows.append({**row, "task": task})
    return {"reference_run": other, "rows": rows}


def restore_study(ctx: Ctx, step: Step) -> None:
    run_dir, cfg, _, _ = study_plan(ctx, step)
    restore_store(ctx, step, run_dir, cfg)


def progress_study(ctx: Ctx, step: Step):
    try:
        run_dir, cfg, _, _ = study_plan(ctx, step)
    except StepFailed:
        return None
    return study_progress(run_dir, cfg)


# ---- searches ------------------------------------------------------------------------------------------

def search_cfg(ctx: Ctx, step: Step):
    from unnas.config import load_cfg
    from unnas.search.config import search_defaults, validate_search_cfg
    return load_cfg(search_defaults(), str(ctx.yaml(step)), ["DATA.ROOT", ctx.data_dir, *step.overrides],
                    validate_search_cfg)


def search_dir(ctx: Ctx, step: Step) -> Path:
    """RUNS/<the YAML's OUT_DIR folder name>, or RUNS/<step> when the YAML names none."""
    return ctx.runs / (Path(search_cfg(ctx, step).OUT_DIR).name or step.name)


def search_done(out: Path) -> bool:
    return (out / "summary.json").is_file() and (out / "genotype.json").is_file()


def search_argv(ctx: Ctx, step: Step) -> list[str]:
    out = search_dir(ctx, step)
    return (["--cfg", str(ctx.yaml(step)), "--out", str(out), "--data-dir", ctx.data_dir, "--no-progress",
             *step.overrides] + (["--resume"] if (out / "checkpoint.pt").is_file() else []))


def run_search(ctx: Ctx, step: Step) -> None:
    cfg, out = search_cfg(ctx, step), search_dir(ctx, step)
    if not search_done(out):
        (call_process if step.measured else call)(ctx, step, "search", search_argv(ctx, step))
    files = copy_files(out, fresh_results(ctx, step), SEARCH_FILES + (("alpha_history.json",) if step.measured else ()))
    shutil.copyfile(out / "summary.json", ctx.res(step.name) / "search_summary.json")
    s = read_json(out / "summary.json")
    budget = {s["task"]: {"width": cfg.MODEL.WIDTH, "depth": cfg.MODEL.DEPTH, "epochs": cfg.SEARCH.EPOCHS,
                          "images": cfg.DATA.MAX_TRAIN or "all", "image_offset": cfg.DATA.TRAIN_OFFSET,
                          "batch": cfg.SEARCH.BATCH_SIZE, "lr": cfg.OPTIM.LR, "arch_lr": cfg.ARCH.LR,
                          "order": cfg.SEARCH.ORDER, "dataset": cfg.DATA.DATASET}}
    summary = {**base_summary(ctx, step), "run_dir": str(out), "budget": budget, "tasks": [s["task"]],
               "jobs": 1, "genotype": s["genotype"], "genotype_repr": s["genotype_repr"], "final": s["final"],
               "epochs_run": s["epochs"], "files": files + ["search_summary.json"]}
    if step.measured:   # the search's own process costs (every invocation), its per-epoch records, its config
        summary.update(process=process_totals(ctx, step.name), curve=epoch_records(out / "metrics.jsonl"),
                       cfg=cfg.dump())
        if not summary["commands"]:
            summary["commands"] = [r["command"] for r in process_records(ctx, step.name)]
    write_json(ctx.res(step.name) / "summary.json", summary)


def epoch_records(metrics: Path) -> list[dict]:
    """The ``type: epoch`` lines of a run's metrics.jsonl (losses, diagnostics, eigenvalues, times), without
    the genotype text."""
    out = []
    for line in (metrics.read_text().splitlines() if metrics.is_file() else []):
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if isinstance(r, dict) and r.get("type") == "epoch":
            out.append({k: v for k, v in r.items() if k not in ("type", "genotype")})
    return out


def launch_searches(ctx: Ctx, steps: list[Step]) -> None:
    """Run the measured searches of ``steps`` that are not finished, up to ``ctx.workers`` at once (each a
    process of its own, so one core each with SEARCH.NUM_THREADS 1); the step loop then only collects
    their outputs. Every search runs to its end; a failed one fails the pipeline after the others."""
    from concurrent.futures import ThreadPoolExecutor
    todo = [s for s in steps if s.kind == "search" and s.measured and not search_done(search_dir(ctx, s))]
    if len(todo) < 2 or ctx.workers < 2:
        return
    say("searches", f"{len(todo)} searches, {min(ctx.workers, len(todo))} at once: {', '.join(s.name for s in todo)}")
    failed = []

    def one(step: Step) -> None:
        try:
            call_process(ctx, step, "search", search_argv(ctx, step))
        except StepFailed as exc:
            failed.append(f"{step.name}: {exc}")
    with ThreadPoolExecutor(max_workers=min(ctx.workers, len(todo))) as pool:
        list(pool.map(one, todo))
    if failed:
        raise StepFailed("; ".join(failed))


def progress_search(ctx: Ctx, step: Step):
    out, total = search_dir(ctx, step), int(search_cfg(ctx, step).SEARCH.EPOCHS)
    if (out / "summary.json").is_file() and (out / "genotype.json").is_file():
        return total, total
    if not (out / "checkpoint.pt").is_file():
        return None
    lines = (out / "genotypes.jsonl").read_text().splitlines() if (out / "genotypes.jsonl").is_file() else []
    return min(len(lines), total - 1), total


# ---- retraining ----------------------------------------------------------------------------------------

def searched_genotypes(ctx: Ctx, step: Step) -> tuple[list, dict]:
    """The genotypes of the search steps a retrain step retrains, as ``Arch``s named by their step, each
    distinct genotype once, and ``{step: the step whose equal genotype is trained}`` for the others."""
    from search_spaces.darts.genotype import Genotype
    from unnas.study.archs import Arch

    archs, aliases = [], {}
    for name in step.search:
        src = ctx.steps[name]
        path = search_dir(ctx, src) / "genotype.json" if src.kind == "search" else None
        if path is None or not path.is_file():
            path = ctx.res(name) / "genotype.json"
        if not path.is_file():
            raise StepFailed(f"needs the genotype of {name}; run `python tools/reproduce.py --only {name}` first")
        g = Genotype.load(path)
        same = next((a.id for a in archs if a.genotype == g), None)
        if same is None:
            archs.append(Arch(name, g))
        else:
            aliases[name] = same
    return archs, aliases


def retrain_archs(ctx: Ctx, step: Step) -> list:
    from search_spaces import get_space
    from search_spaces.darts import zoo
    from unnas.study.archs import Arch
    from unnas.study.sampling import sample_archs

    archs = searched_genotypes(ctx, step)[0]
    archs += sample_archs(get_space("darts"), step.random, RANDOM_SEED, allow_none=False, distinct_inputs=True,
                          prefix="rand")
    archs += [Arch(n, zoo.get(n)) for n in step.zoo]
    return archs


def retrain_plan(ctx: Ctx, step: Step, write: bool):
    from unnas.study.archs import save_archs
    path = ctx.runs / "retrain_archs.json"
    if write:
        save_archs(retrain_archs(ctx, step), path, source="tools/reproduce.py retrain: searched, random "
                   f"(seed {RANDOM_SEED}, no none, distinct inputs) and zoo genotypes")
    overrides = ["STUDY.ARCHS", str(path)]
    cfg = study_cfg(ctx.yaml(step), overrides)
    return ctx.runs / Path(cfg.OUT_DIR).name, cfg, overrides, path


def retrain_table(rows: list[dict], archs: list, aliases: dict | None = None) -> list[dict]:
    """One row per architecture (and per alias: a searched step whose genotype equals a trained one's,
    with that one's numbers and ``same_as``)."""
    vals: dict = {}
    info: dict = {}
    for r in rows:
        if r["task"] == "cls" and r["best"] is not None:
            vals.setdefault(r["arch_id"], {})[r["seed"]] = float(r["best"])
            info.setdefault(r["arch_id"], r["result"])
    means = {a: sum(v.values()) / len(v) for a, v in vals.items()}
    rand = [means[a.id] for a in archs if a.id.startswith("rand") and a.id in means]
    out = []
    for a in archs:
        m = means.get(a.id, math.nan)
        pct = (100.0 * (sum(x < m for x in rand) + 0.5 * sum(x == m for x in rand)) / len(rand)
               if rand and math.isfinite(m) else math.nan)
        ops = [op for op, _ in a.genotype.normal]
        res = info.get(a.id, {})
        out.append({"genotype": a.id, "group": "searched" if a.id.startswith("search_") else
                    "random" if a.id.startswith("rand") else "zoo",
                    "seeds": {str(s): v for s, v in sorted(vals.get(a.id, {}).items())}, "mean": m,
                    "percentile_vs_random": pct, "params": res.get("params"), "macs": res.get("macs", res.get("flops")),
                    "normal_skip_connect": ops.count("skip_connect"),
                    "normal_param_free": sum(op in PARAM_FREE_OPS for op in ops)})
    by_id = {r["genotype"]: r for r in out}
    out += [{**by_id[same], "genotype": name, "same_as": same} for name, same in (aliases or {}).items()]
    return out


def run_retrain(ctx: Ctx, step: Step) -> None:
    from unnas.study.archs import load_archs
    from search_spaces import get_space

    run_dir, cfg, overrides, path = retrain_plan(ctx, step, write=True)
    aliases = searched_genotypes(ctx, step)[1]
    say(step.name, f"{path}: {step.random} random, {len(step.search) - len(aliases)} searched "
                   + (f"(of {len(step.search)}: {len(aliases)} equal to another's) " if aliases else "")
                   + f"and {len(step.zoo)} zoo genotypes")
    run_study(ctx, step, run_dir, cfg, overrides)
    res = fresh_results(ctx, step)
    shutil.copyfile(path, res / "archs.json")
    table = retrain_table(store_rows(run_dir) or [], load_archs(str(path), get_space("darts")), aliases)
    seeds = [str(s) for s in cfg.STUDY.SEEDS]
    write_csv(res / "table.csv", ["genotype", "group", *[f"seed{s}" for s in seeds], "mean", "percentile_vs_random",
                                  "params", "macs", "normal_skip_connect", "normal_param_free"],
              [[r["genotype"], r["group"], *[r["seeds"].get(s, "") for s in seeds], r["mean"],
                r["percentile_vs_random"], r["params"], r["macs"], r["normal_skip_connect"], r["normal_param_free"]]
               for r in table])
    write_json(res / "summary.json", {**study_summary(ctx, step, run_dir, cfg, overrides), "table": table,
                                      "files": ["archs.json", "table.csv"], "aliases": aliases,
                                      "random_genotypes": step.random, "zoo_genotypes": list(step.zoo)})


def restore_retrain(ctx: Ctx, step: Step) -> None:
    run_dir, cfg, _, _ = retrain_plan(ctx, step, write=True)
    restore_store(ctx, step, run_dir, cfg)


def progress_retrain(ctx: Ctx, step: Step):
    run_dir, cfg, _, path = retrain_plan(ctx, step, write=False)
    return study_progress(run_dir, cfg) if path.is_file() else None


def write_csv(path: Path, header: list, rows: list) -> None:
    from unnas.utils.io import atomic_write_text
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, buf.getvalue())


# ---------------------------------------------------------------------------------------------------
# The report (docs/results.md) from results/ alone: a shared frame per step, a body per kind

def fnum(x, nd: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}f}"


def fci(c) -> str:
    return "[n/a]" if not c or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in c) else \
        f"[{c[0]:.2f}, {c[1]:.2f}]"


def fsecs(s) -> str:
    if s is None or not math.isfinite(s):
        return "n/a"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def md_table(header: list, rows: list) -> list[str]:
    return ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(map(str, r)) + " |" for r in rows]]


def verdict(c) -> str:
    """One sentence on whether a correlation's 95% interval contains 0."""
    lo, hi = c.get("spearman_ci") or (math.nan, math.nan)
    if not (isinstance(lo, (int, float)) and math.isfinite(lo) and math.isfinite(hi)):
        return f"no 95% interval ({c.get('ci_note') or 'not computed'}), so no conclusion"
    if lo > 0:
        return "its 95% interval lies above 0: clearly positive"
    if hi < 0:
        return "its 95% interval lies below 0: clearly negative"
    return "its 95% interval contains 0: no clear agreement at this budget"


def budget_lines(s: dict) -> list[str]:
    rows = []
    for task, b in (s.get("budget") or {}).items():
        images = f"{b['images']}" + (f" (from image {b['image_offset']})" if b.get("image_offset") else "")
        rows.append([task, b.get("dataset", ""), b["width"], b["depth"], b["epochs"], images, b["batch"], b["lr"]])
    return ["**Budget.**", "", *md_table(["task", "data", "width", "depth", "epochs", "training images", "batch", "lr"],
                                          rows)]


def cost_lines(s: dict) -> list[str]:
    per_job = ", ".join(f"{t} {fsecs(v)}" for t, v in (s.get("mean_job_wall") or {}).items())
    text = (f"**Cost.** Wall time {fsecs(s.get('wall_seconds'))} in reproduce.py over {s.get('invocations', 0)} recorded "
            "invocation(s)" + (" (jobs restored from results/jobs/ cost nothing here)" if "job_span_seconds" in s else ""))
    if s.get("job_span_seconds"):
        text += f"; the jobs ran from the first start to the last finish over {fsecs(s['job_span_seconds'])}"
    text += f"; {s.get('jobs', '?')} job(s)"
    if per_job:
        text += f", mean time per job: {per_job}"
    out = [text + "."]
    ps = s.get("paper_scale")
    if ps:
        p = ps["paper"]
        jobs = ", ".join(f"{t} {h:,.0f}" for t, h in ps["job_core_hours"].items())
        out += ["", f"**To the paper's scale.** One job of the paper's recipe (width {p['width']}, depth {p['depth']}, "
                f"{p['epochs']} epochs on {p['images']:,} images) does {ps['work_ratio']:,.0f}x the work of one job here: "
                f"the cls network has {ps['macs_ratio']:.1f}x the multiply-adds ({ps['macs_paper'] / 1e6:.0f}M vs "
                f"{ps['macs_ours'] / 1e6:.1f}M, mean of the first {ps['archs_measured']} architectures) and sees "
                f"{ps['data_ratio']:,.0f}x the images x epochs. At this machine's measured cost per job that is, per job, "
                f"{jobs} CPU core-hours, and {ps['study_core_hours']:,.0f} core-hours for {p['archs']} architectures x "
                f"{p['seeds']} seeds x these tasks (a linear extrapolation). GPU-hours were not measured (no GPU was "
                "lent); a pilot of the recipe on one GPU gives them (docs/rank_corr.md, *Cost per job*)."]
    return out


def provenance_lines(s: dict) -> list[str]:
    commit = s.get("git_commit") or "unknown"
    if s.get("git_dirty"):
        commit += " with uncommitted changes"
    out = [f"Run {str(s.get('date', ''))[:10]} at commit {commit} on {s.get('machine', '?')}: `{s.get('command', '')}`."]
    if s.get("commands"):
        out += ["", "<details><summary>commands it ran</summary>", "", "```",
                *s["commands"], "```", "", "</details>"]
    return out


def figure_lines(s: dict, rel: Callable[[str], str]) -> list[str]:
    return [f"![{f}]({rel(f)})" for f in FIGURES if f in (s.get("files") or [])]


def csv_lines(path: Path) -> list[str]:
    """A CSV of the results as a Markdown table (numbers to 3 decimals)."""
    if not path.is_file():
        return []
    rows = list(csv.reader(path.read_text().splitlines()))
    if not rows:
        return []

    def cell(v: str) -> str:
        try:
            x = float(v)
        except ValueError:
            return v
        return v if x.is_integer() and "." not in v else fnum(x, 3)
    return md_table(rows[0], [[cell(v) for v in r] for r in rows[1:]])


def body_calib(ctx: Ctx, step: Step, s: dict, rel) -> list[str]:
    rows, sentences = [], []
    for r in s["rungs"]:
        b = next(iter(r["budget"].values()))
        means = " / ".join(fnum(v) for v in r["mean"].values())
        rows.append([r["rung"], f"`{shlex.join(r['overrides'])}`" if r["overrides"] else "(the YAML)", b["epochs"], b["images"], r["n"],
                     f"{fnum(r['spearman'])} {fci(r['spearman_ci'])}", means,
                     fsecs(next(iter(r["mean_job_wall"].values()), None)), "yes" if r["rung"] == s["accepted"]["rung"] else ""])
        sentences.append(f"- Rung {r['rung']}: seed-to-seed Spearman ρ = {fnum(r['spearman'])} over {r['n']} "
                         f"architectures; {verdict(r)}.")
    acc = s["accepted"]
    end = (f"Accepted: rung {acc['rung']} (`{shlex.join(acc['overrides']) or 'the YAML as it is'}`); the later steps "
           "of this set train at its budget." if s["passed"] else
           f"No rung's interval lies above 0: the last rung ({acc['rung']}) is used, and the correlations below "
           "are measured at a budget whose own seeds do not clearly agree.")
    return [*md_table(["rung", "overrides", "epochs", "images", "archs", "seed-seed ρ (95% CI)",
                       "mean best top-1 (seed 1 / seed 2)", "mean job", "accepted"], rows), "", *sentences, "", end]


def body_study(ctx: Ctx, step: Step, s: dict, rel) -> list[str]:
    corr = read_json(ctx.res(step.name) / "correlations.json") or {}
    rows, sentences = [], []
    ceiling = corr.get("seed_ceiling") or {}
    for r in corr.get("rows", []):
        ref = r.get("reference", corr.get("reference", "cls"))
        c = (ceiling.get(r["task"]) or {}).get("mean_spearman")
        sat = ", ".join((["yes"] if r.get("saturated") else []) + (["ref"] if r.get("reference_saturated") else [])) or "no"
        rows.append([f"{r['task']} vs {ref}", r.get("n"), r.get("seeds", ""), f"{fnum(r['spearman'])} {fci(r['spearman_ci'])}",
                     f"{fnum(r.get('kendall'))} {fci(r.get('kendall_ci'))}", f"{fnum(r.get('pearson'))} {fci(r.get('pearson_ci'))}",
                     fnum(c) if c is not None else "-", sat])
        what = f"{r['task']} (training-free baseline)" if r.get("baseline") else r["task"]
        sentences.append(f"- {what} vs {ref}: Spearman ρ = {fnum(r['spearman'])} over {r.get('n')} architectures; "
                         f"{verdict(r)}.")
    out = [*md_table(["task vs reference", "archs", "seeds", "Spearman ρ (95% CI)", "Kendall τ (95% CI)",
                      "Pearson r (95% CI)", "seed-seed ρ", "saturated"], rows), "", *sentences]
    if s.get("reference"):
        out += ["", f"Reference: `{s['reference']}` (the accepted calibration run's accuracies)."]
    ref = corr.get("reference")
    if ref in ceiling:
        out += ["", f"Seed-to-seed ρ of the reference {ref}: {fnum(ceiling[ref].get('mean_spearman'))}."]
    agree = read_json(ctx.res(step.name) / SELF_AGREEMENT)
    if agree:
        out += ["", f"**Each task against itself** on the images of `{agree['reference_run']}` (same architectures, "
                "disjoint training images): how reproducible each task's own ranking is; its agreement with cls "
                "can hardly exceed it.", "",
                *md_table(["task vs the same task there", "archs", "Spearman ρ (95% CI)", "Kendall τ (95% CI)"],
                          [[r["task"], r.get("n"), f"{fnum(r['spearman'])} {fci(r['spearman_ci'])}",
                            f"{fnum(r.get('kendall'))} {fci(r.get('kendall_ci'))}"] for r in agree["rows"]])]
    rand = csv_lines(ctx.res(step.name) / "randexp.csv")
    if rand:
        out += ["", "<details><summary>random-expectation check (randexp.csv)</summary>", "", *rand, "", "</details>"]
    return out


def body_search(ctx: Ctx, step: Step, s: dict, rel) -> list[str]:
    final = {k: v for k, v in (s.get("final") or {}).items() if isinstance(v, (int, float)) and k != "epoch"}
    g = s["genotype"]
    cell = lambda c: ", ".join(f"{op}({i})" for op, i in c)   # noqa: E731
    out = [f"Epochs run: {s.get('epochs_run')}. Normal cell: {cell(g['normal'])}; reduction cell: {cell(g['reduce'])}.",
           "", "```", s["genotype_repr"], "```"]
    if final:
        out += ["", "Last epoch (train: the weight half; eval: the held-out architecture half):", "",
                *md_table(list(final), [[fnum(v) for v in final.values()]])]
    return out


def body_retrain(ctx: Ctx, step: Step, s: dict, rel) -> list[str]:
    seeds = [str(x) for x in s.get("seeds", [])]
    rows, sentences = [], []
    for r in s["table"]:
        mb = lambda x: fnum(x / 1e6, 3) if isinstance(x, (int, float)) else "n/a"   # noqa: E731
        rows.append([r["genotype"], r["group"], *[fnum(r["seeds"].get(x)) for x in seeds], fnum(r["mean"]),
                     fnum(r["percentile_vs_random"], 0), mb(r["params"]), mb(r["macs"]), r["normal_skip_connect"],
                     r["normal_param_free"]])
        if r["group"] != "random":
            sentences.append(f"- {r['genotype']}: mean best top-1 {fnum(r['mean'])}%, percentile "
                             f"{fnum(r['percentile_vs_random'], 0)} among the {s.get('random_genotypes', RANDOM_GENOTYPES)} "
                             "random genotypes.")
    rand = [r["mean"] for r in s["table"] if r["group"] == "random" and math.isfinite(r["mean"])]
    if rand:
        sentences.append(f"- Random genotypes: {fnum(min(rand))}-{fnum(max(rand))}% (mean {fnum(sum(rand) / len(rand))}%).")
    return [*md_table(["genotype", "group", *[f"seed {x}" for x in seeds], "mean top-1", "percentile vs random",
                       "params (M)", "MACs (M)", "normal: skip", "normal: param-free"], rows), "", *sentences, "",
            "Percentile: the share of the random genotypes with a lower mean (ties count half). Parameter-free ops: "
            f"{', '.join(PARAM_FREE_OPS)}."]


def section(ctx: Ctx, k: int, step: Step) -> list[str]:
    head = [f"## {k}. {step.title} (`{step.name}`)", "", step.about, ""]
    s = read_json(ctx.res(step.name) / "summary.json")
    if not s:
        needs = step.calib or (", ".join(step.search) if step.search else "")
        return head + [f"*Not run yet.* Run it with `python tools/reproduce.py --only {step.name}`"
                       + (f" (after {needs})." if needs else ".")]
    base = os.path.relpath(ctx.res(step.name), ctx.report_path.parent)

    def rel(name: str) -> str:
        return Path(base, name).as_posix()
    b = next(iter((s.get("budget") or {}).values()), {})
    differs = step.differs.format(images=b.get("images", "?"), width=b.get("width", "?"), depth=b.get("depth", "?"),
                                  epochs=b.get("epochs", "?"), batch=b.get("batch", "?"), archs=s.get("archs", "?"),
                                  seeds=len(s.get("seeds") or []) or "?")
    return (head + budget_lines(s) + [""] + KINDS[step.kind].body(ctx, step, s, rel) + [""]
            + [x + "\n" for x in figure_lines(s, rel)] + [f"**Versus the paper.** {differs}", ""] + cost_lines(s)
            + [""] + provenance_lines(s))


def intro(ctx: Ctx, summaries: list[dict]) -> list[str]:
    machines = sorted({s["machine"] for s in summaries if s.get("machine")})
    done = sum(1 for s in summaries if s)
    return [
        "This page is generated from the small outputs in `results/` (tables, figures and a summary.json per step); "
        f"{done} of {len(PIPELINE)} steps have results.",
        "",
        "**What is reproduced.** Liu et al., *Are Labels Necessary for Neural Architecture Search?* (ECCV 2020): "
        "(1) the sample-based experiment (Sec. 4, Fig. 2): do accuracies after training with labels (cls) and "
        "with pretext tasks (rotation, colorization, jigsaw) rank architectures alike? On uniformly sampled and on "
        "the release's architectures, after a calibration of the training budget (two seeds of cls must agree); "
        "(2) a check that a 3x longer budget ranks like the short one; (3) the across-data-set variant (Fig. 4) "
        "on disjoint image subsets; (4) the search-based experiment (Sec. 5): DARTS searches with each objective "
        "and retraining of the found cells against random cells and published ones.",
        "",
        f"**Scale.** {PAPER} Here everything runs on cifar10-mini (5,085 training and 1,017 test CIFAR-10 images) "
        "with small networks and a few epochs, so the numbers test the pipeline and the direction of the effects, "
        "not the paper's values.",
        "",
        "**Machine.** " + ("; ".join(machines) if machines else "not recorded yet") + ".",
        "",
        "**Rebuild.** `python tools/reproduce.py` runs (or resumes) every step, skipping finished ones, then "
        "rewrites this page; `python tools/reproduce.py --report` rewrites it from `results/` alone; "
        "`python tools/reproduce.py --list` shows each step's state.",
        "",
        "Correlations: Spearman ρ of the per-architecture mean best test top-1 (mean over the seeds present), with "
        "a paired bootstrap 95% interval (docs/rank_corr.md §5).",
    ]


def write_report(ctx: Ctx) -> Path:
    summaries = [read_json(ctx.res(s.name) / "summary.json") for s in PIPELINE]
    lines = ["# Results: a laptop-scale reproduction of UnNAS", ""]
    notes = ctx.results / "notes.md"
    if notes.is_file():
        lines += [notes.read_text().rstrip("\n"), ""]
    lines += intro(ctx, [s for s in summaries if s]) + [""]
    for k, step in enumerate(PIPELINE, 1):
        lines += section(ctx, k, step) + [""]
    from unnas.utils.io import atomic_write_text
    ctx.report_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(ctx.report_path, "\n".join(lines).rstrip("\n") + "\n")
    return ctx.report_path


# ---------------------------------------------------------------------------------------------------
# Kinds, states and the command line

@dataclass(frozen=True)
class Kind:
    run: Callable          # (ctx, step) -> None: run or resume, then write results/<step>/
    progress: Callable     # (ctx, step) -> (done, total) or None when nothing is on disk
    body: Callable         # (ctx, step, summary, rel) -> report lines
    # (ctx, step) -> None: a step whose results are committed but whose run directory is gone (a fresh
    # clone) is not run again; its exported jobs go back into a store so that later steps can extend or
    # reference it. A search keeps only its results (the retraining reads results/search_*/genotype.json).
    restore: Callable = lambda ctx, step: None
    config: Callable | None = None   # (ctx, step) -> the config it trains with (its data is checked first); None: no data


def _study_config(ctx: Ctx, step: Step):
    return study_cfg(ctx.yaml(step))


KINDS = {"calib": Kind(run_calib, progress_calib, body_calib, restore_calib, _study_config),
         "study": Kind(run_study_step, progress_study, body_study, restore_study, _study_config),
         "search": Kind(run_search, progress_search, body_search, config=search_cfg),
         "retrain": Kind(run_retrain, progress_retrain, body_retrain, restore_retrain, _study_config)}

PAPER_PIPELINE = Pipeline("paper", "the paper's experiments at laptop scale (docs/results.md)", lambda config_dir: PIPELINE,
                          write_report, DEFAULT_CONFIG_DIR, DEFAULT_RUNS, DEFAULT_RESULTS, DEFAULT_REPORT)
# name -> a Pipeline, or the module whose PIPELINE_DEF is one (imported when chosen)
PIPELINES: dict = {"paper": PAPER_PIPELINE, "remedies": "unnas.commands.remedies"}


def get_pipeline(name: str) -> Pipeline:
    from unnas.config import ConfigError
    p = PIPELINES.get(name)
    if p is None:
        raise ConfigError(f"--pipeline: unknown pipeline {name!r}; pipelines: {', '.join(PIPELINES)}")
    return importlib.import_module(p).PIPELINE_DEF if isinstance(p, str) else p


def state(ctx: Ctx, step: Step) -> tuple[str, bool]:
    """(label, finished): done / done (results only) / partial N/M / not started."""
    has_results = (ctx.res(step.name) / "summary.json").is_file()
    p = ctx.kind(step).progress(ctx, step)
    if p is None:
        return ("done (results only; no run directory here)" if has_results else "not started"), False
    if has_results and p[0] >= p[1]:
        return "done", True
    if p[0] >= p[1]:
        return f"partial {p[0]}/{p[1]} (results not written yet)", False
    return (f"partial {p[0]}/{p[1]}" if p[0] else "not started"), False


def check_data(ctx: Ctx, names: list[str]) -> None:
    from unnas.config import ConfigError
    for n in names:
        step = ctx.steps[n]
        load = ctx.kind(step).config
        cfg = load(ctx, step) if load else None
        if cfg is not None and cfg.DATA.DATASET != "synthetic" and not Path(ctx.data_dir).is_dir():
            raise ConfigError(f"data directory {ctx.data_dir} not found (step {n} trains on {cfg.DATA.DATASET}); "
                              "pass --data-dir DIR, the folder of cifar10-mini (data_batch_1 ... test_batch)")


def select(ctx: Ctx, args) -> list[str]:
    from unnas.config import ConfigError

    def names(text: str | None, flag: str) -> list[str]:
        out = [x.strip() for x in (text or "").split(",") if x.strip()]
        bad = [x for x in out if x not in ctx.steps]
        if bad:
            raise ConfigError(f"{flag}: unknown step {bad[0]!r}; steps: {', '.join(ctx.steps)}")
        return out
    only, skip = names(args.only, "--only"), names(args.skip, "--skip")
    return [s.name for s in ctx.order if (not only or s.name in only) and s.name not in skip]


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipeline", default="paper", help="which experiments: paper (default; docs/results.md) or remedies "
                   "(issue 11: DARTS vs its collapse remedies, docs/search_remedies.md); it sets the defaults of "
                   "--config-dir, --runs, --results and --report-path")
    p.add_argument("--only", help="run only these steps (comma-separated), a step whose committed results have no "
                   "run directory here included (its summary is rebuilt from the restored jobs); the paper's: "
                   + ", ".join(STEPS) + " (--list names a pipeline's)")
    p.add_argument("--skip", help="leave these steps out (comma-separated)")
    p.add_argument("--list", action="store_true", help="print the steps with their state and exit")
    p.add_argument("--report", action="store_true", help="only rebuild the report from the results directory")
    p.add_argument("--export", action="store_true", help="only write every study's finished jobs to RESULTS/jobs/ "
                   "(for a study still running elsewhere: commit them before its machine goes away)")
    p.add_argument("--workers", type=int, default=2, help="worker processes per study, and measured searches run at "
                   "once (remedies; each on one thread) (default 2)")
    p.add_argument("--scale-archs", type=int, default=8,
                   help="architectures whose paper-scale networks are counted to estimate the paper recipe's cost (default 8)")
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help=f"cifar10-mini folder (default {DEFAULT_DATA_DIR})")
    p.add_argument("--runs", help=f"run directories (default {DEFAULT_RUNS}; remedies: runs/remedies)")
    p.add_argument("--results", help=f"small outputs per step (default {DEFAULT_RESULTS}; remedies: results/remedies)")
    p.add_argument("--config-dir", help=f"the experiments' YAMLs (default {DEFAULT_CONFIG_DIR}; remedies: "
                   "experiments/remedies)")
    p.add_argument("--report-path", help=f"the report (default {DEFAULT_REPORT}; remedies: docs/search_remedies.md)")
    return p.parse_args(argv)


@command
def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    return run_reporting_errors(PROG, _main, args, argv)


def _main(args, argv: list[str]) -> int:
    from unnas.config import ConfigError
    pipe = get_pipeline(args.pipeline)
    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    ctx = Ctx(Path(args.config_dir or pipe.config_dir), Path(args.runs or pipe.runs), Path(args.results or pipe.results),
              args.data_dir, args.workers, Path(args.report_path or pipe.report_path),
              shlex.join(["python", "tools/reproduce.py", *argv]), scale_archs=args.scale_archs,
              pipeline=pipe)
    names = select(ctx, args)
    if args.list:
        width = max(len(n) for n in ctx.steps)
        for s in ctx.order:
            print(f"{s.name:<{width}}  {state(ctx, s)[0]}")
        return 0
    if args.report:
        print(f"wrote {pipe.write_report(ctx)}")
        return 0
    if args.export:
        for run_dir in sorted(p.parent for p in ctx.runs.glob("*/study.sqlite")):
            print(f"{run_dir}: {export_store(ctx, run_dir)} finished jobs -> {exported(ctx, run_dir)}")
        return 0
    check_data(ctx, names)
    named = set(names) if args.only else set()   # a step named in --only runs again from its restored jobs

    def skipped(step: Step) -> str | None:
        label, finished = state(ctx, step)
        if finished:
            return "all jobs finished"
        if label.startswith("done (results only") and step.name not in named:
            return "committed results kept"
        return None
    try:   # measured searches, several at once (the loop below then collects them)
        launch_searches(ctx, [s for s in map(ctx.steps.get, names) if s.measured and skipped(s) is None])
    except StepFailed as exc:
        print(f"{PROG}: error: {exc}; finished work is kept, rerun the same command to continue", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted in the searches; finished work is kept, rerun the same command to continue",
              file=sys.stderr)
        return 130
    for name in names:
        step = ctx.steps[name]
        why = skipped(step)
        if why == "all jobs finished":
            say(name, f"done ({ctx.res(name)}/summary.json, all jobs finished): skipped")
            continue
        if why:
            # rerunning would only rewrite its summary from imported jobs (their times are the import's)
            ctx.kind(step).restore(ctx, step)
            say(name, f"done ({ctx.res(name)}/summary.json, committed results kept): skipped")
            continue
        say(name, f"starting: {step.title}")
        ctx.commands, ctx.t0 = [], time.time()
        try:
            ctx.kind(step).run(ctx, step)
        except StepFailed as exc:
            print(f"{PROG}: error: step {name} failed: {exc}; finished work is kept, rerun the same command to "
                  "continue", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted in step {name}; finished work is kept, rerun the same command to continue",
                  file=sys.stderr)
            return 130
        finally:
            wall_record(ctx, name, time.time() - ctx.t0)
        say(name, f"done: {ctx.res(name)}/")
    if not args.only:
        print(f"wrote {pipe.write_report(ctx)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
