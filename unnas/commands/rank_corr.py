"""Sample-based study: do pretext-task accuracies rank architectures like supervised accuracy?

  python tools/rank_corr.py                                   # small study on the embedded data, then the table
  python tools/rank_corr.py run --archs ../shared/data/unnas-sample-archs/darts_cifar10_500.json \\
      --cfg experiments/study/cifar10_darts.yaml --out runs/c10_500      # the paper's study (GPU-scale)
  python tools/rank_corr.py run --archs ../shared/data/unnas-sample-archs/nasbench101_cifar10_500.json \
      --cfg experiments/study/cifar10_nasbench101.yaml --out runs/nb101_500   # the same in NAS-Bench-101
  python tools/rank_corr.py run --out runs/c10_500 --shard 0/4          # one of 4 machines sharing runs/c10_500
  python tools/rank_corr.py run --out runs/c10_500 --workers 2          # 2 local worker processes
  torchrun --nproc_per_node 8 tools/rank_corr.py run --out runs/c10_500 # 8 ranks claim jobs dynamically
  python tools/rank_corr.py run --out runs/c10_500 --executor ray --ray-address HEAD:6379   # Ray tasks
  python tools/rank_corr.py run --out runs/c10_500 --executor slurm --slurm-partition gpu --slurm-gpus-per-job 1
  python tools/rank_corr.py analyze runs/c10_500 [--supervised-table table.csv]
  python tools/rank_corr.py analyze runs/c10_500 --metric final   # to runs/c10_500/analysis_final/
  python tools/rank_corr.py analyze runs/c10_500 --reference runs/in1k_500:cls   # to analysis_ref_in1k_500_cls/
  python tools/rank_corr.py proxies runs/c10_500                  # training-free proxies of every arch (cached)
  python tools/rank_corr.py proxies --out runs/c10_500_zc --cfg experiments/study/cifar10_darts.yaml \
      --archs ../shared/data/unnas-sample-archs/darts_cifar10_500.json   # a study scored before any training
  python tools/rank_corr.py sample --num-archs 100 --seed 0 --out archs.json
  python tools/rank_corr.py sample --space nasbench101 --num-archs 100 --out nb101.json   # valid specs, distinct graphs
  python tools/rank_corr.py status runs/c10_500

`run` on a directory that already holds a study resumes or extends it, starting from its stored
config (config.yaml); options and KEY VALUE overrides are applied on top.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from unnas.cli import (FLAG_KEYS, add_overrides, command, dispatch_subcommand, flag_overrides, parse_with_overrides,
                       user_errors)

PROG = "rank_corr.py"
# subcommand -> its one-line description (the top-level --help and each subcommand's --help)
COMMANDS = {
    "run": "run (or resume, extend, join) a study; the default when no command is given",
    "analyze": "correlation tables, baselines, random experiment and plots of a study (RUN_DIR/analysis*/)",
    "proxies": "training-free proxy scores of a study's architectures (cached in its store; creates the study "
               "without training when given --out and --archs)",
    "sample": "write N random architectures as JSON",
    "status": "job counts, running jobs and failures of a study",
}
RUN_FLAGS = {**FLAG_KEYS, "jobs_per_device": "STUDY.JOBS_PER_DEVICE", "archs": "STUDY.ARCHS", "num_archs": "STUDY.NUM_ARCHS", "tasks": "STUDY.TASKS",
             "seeds": "STUDY.SEEDS", "supervised_table": "STUDY.SUPERVISED_TABLE", "trainer": "STUDY.TRAINER",
             "epochs": "TRAIN.EPOCHS", "executor": "STUDY.EXECUTOR", "max_in_flight": "STUDY.MAX_IN_FLIGHT",
             "ray_address": "STUDY.RAY.ADDRESS", "slurm_cluster": "STUDY.SLURM.CLUSTER",
             "slurm_partition": "STUDY.SLURM.PARTITION", "slurm_gpus_per_job": "STUDY.SLURM.GPUS_PER_JOB",
             "slurm_time": "STUDY.SLURM.TIME", "slurm_array_parallelism": "STUDY.SLURM.ARRAY_PARALLELISM",
             "slurm_extra": "STUDY.SLURM.EXTRA"}


def _run_parser():
    p = argparse.ArgumentParser(prog=f"{PROG} run", description=COMMANDS["run"])
    p.add_argument("--cfg", help="YAML config (see experiments/study/)")
    p.add_argument("--archs", help="architecture list: JSON (ours or darts_cifar10_500.json), a text file of "
                                   "genotypes, or a directory of UnNAS sample-based YAML configs (STUDY.ARCHS)")
    p.add_argument("--num-archs", type=int, help="archs to sample (default 6), or the first N of --archs (default: all) (STUDY.NUM_ARCHS)")
    p.add_argument("--tasks", help="comma-separated tasks, e.g. cls,rot,col,jig (STUDY.TASKS)")
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 1,2,3 (STUDY.SEEDS)")
    p.add_argument("--epochs", type=int, help="TRAIN.EPOCHS")
    p.add_argument("--shard", help="i/n: run only shard i of n (deterministic partition of the jobs)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--jobs-per-device", type=int, help="local worker processes per visible CUDA device, each pinned to its GPU, instead of --workers (STUDY.JOBS_PER_DEVICE; ignored without CUDA)")
    p.add_argument("--out", help="run directory (OUT_DIR)")
    p.add_argument("--dataset", help="data set name (DATA.DATASET), default synthetic")
    p.add_argument("--data-dir", help="data set root folder (DATA.ROOT)")
    p.add_argument("--supervised-table", help="JSON/CSV arch id or genotype -> accuracy, used as the reference")
    p.add_argument("--trainer", help="default | fake | package.module:function (STUDY.TRAINER)")
    p.add_argument("--wait", action="store_true", help="after the last claimable job, wait for jobs running "
                                                      "elsewhere (taking over those of dead workers), then analyse")
    p.add_argument("--retry-failed", action="store_true", help="put failed jobs back in the queue first")
    p.add_argument("--no-analyze", action="store_true", help="do not analyse at the end")
    g = p.add_argument_group("executors", "where the jobs run (docs/rank_corr.md, 'Clusters'); stored with the study, "
                                          "so rerunning `run --out DIR` resumes with the same executor")
    g.add_argument("--executor", help="local (worker processes claiming jobs, default) | ray | slurm (STUDY.EXECUTOR)")
    g.add_argument("--max-in-flight", type=int, help="ray/slurm: jobs submitted at once (STUDY.MAX_IN_FLIGHT; "
                                                      "0 = ray: twice the cluster's slots, slurm: all)")
    g.add_argument("--ray-address", help="Ray cluster to submit to, e.g. auto or HOST:6379 (STUDY.RAY.ADDRESS; "
                                         "default: what ray.init() picks, else a new local instance)")
    g.add_argument("--slurm-cluster", help="slurm (default) | local: submitit's local processes, for dry runs "
                                           "(STUDY.SLURM.CLUSTER)")
    g.add_argument("--slurm-partition", help="sbatch --partition (STUDY.SLURM.PARTITION)")
    g.add_argument("--slurm-gpus-per-job", type=int, help="GPUs per array task (STUDY.SLURM.GPUS_PER_JOB, default 0)")
    g.add_argument("--slurm-time", type=int, help="minutes per array task; at the limit a job is requeued and resumes "
                                                  "(STUDY.SLURM.TIME, default 240)")
    g.add_argument("--slurm-array-parallelism", type=int, help="array tasks running at once (%%P; "
                                                               "STUDY.SLURM.ARRAY_PARALLELISM, default 256)")
    g.add_argument("--slurm-extra", action="append", metavar="KEY=VALUE",
                   help="another sbatch option, repeatable: --slurm-extra account=nas --slurm-extra qos=low "
                        "(STUDY.SLURM.EXTRA)")
    add_overrides(p, "MODEL.WIDTH 16")
    return p


def _parse_run_args(argv):
    """Options and KEY VALUE pairs may be interleaved; an unknown --option is an error."""
    return parse_with_overrides(_run_parser(), argv)


def _list_flag(text: str, kind=str) -> str:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if kind is int:
        from unnas.config import ConfigError
        try:
            return repr([int(x) for x in items])
        except ValueError:
            raise ConfigError(f"--seeds must be comma-separated integers, got {text!r}") from None
    return repr(items)


def build_cfg(args):
    from unnas.config import load_cfg
    from unnas.study.config import study_defaults, validate_study_cfg

    flags = flag_overrides(args, RUN_FLAGS, {"tasks": _list_flag, "seeds": lambda text: _list_flag(text, int),
                                             "slurm_extra": lambda items: repr([str(x) for x in items])})
    opts = flags + list(args.opts)   # an int for a float key (STUDY.LEASE_SECONDS 600) is coerced by load_cfg
    cfg = load_cfg(study_defaults(), args.cfg, opts, validate_study_cfg)
    stored = Path(cfg.OUT_DIR) / "config.yaml"
    if stored.is_file():   # an existing study: its stored config is the base
        base = _stored_cfg(Path(cfg.OUT_DIR))
        base.set_new_allowed(False)
        cfg = load_cfg(base, args.cfg, opts, validate_study_cfg)
    return cfg


def _preflight(cfg) -> None:
    """Fail fast on bad data or tasks, before any job is claimed."""
    if cfg.STUDY.TRAINER not in ("", "default"):
        return
    from unnas.config import task_options
    from unnas.data import DataError, build_dataset
    from unnas.study.config import job_cfg
    from unnas.tasks import build_task

    train = build_dataset(cfg.DATA, "train")
    build_dataset(cfg.DATA, "test")
    for t in cfg.STUDY.TASKS:
        jc = job_cfg(cfg, t, 1)
        task = build_task(t, train.info, **task_options(jc))
        if task.needs_labels and train.info.num_classes <= 0:
            raise DataError(f"task {t} needs labels but data set {cfg.DATA.DATASET} has none; drop it from --tasks "
                            "and pass --supervised-table")


class _Interrupted(Exception):
    """Ctrl-C during the run (KeyboardInterrupt re-raised past the generic handler)."""


def cmd_run(argv) -> int:
    args = _parse_run_args(argv)
    try:
        return _cmd_run(args)
    except (KeyboardInterrupt, _Interrupted) as exc:
        note = (exc.args[0] if isinstance(exc, _Interrupted) and exc.args else
                "running jobs were put back in the queue. Rerun the same command (or `run --out DIR`) to resume.")
        print(f"\n{PROG}: interrupted; {note}", file=sys.stderr)
        return 130


# The end of a write error's line: a study continues by running the same command again.
RERUN_HINT = "rerun the same command to continue (finished jobs are kept)"


def _cmd_run(args) -> int:
    with user_errors(PROG, RERUN_HINT):
        from unnas.config import ConfigError
        from unnas.study.jobs import parse_shard
        from unnas.study.executors import get_executor
        from unnas.study.runner import describe_archs, prepare_study, progress_line, resolve_archs

        cfg = build_cfg(args)
        shard = parse_shard(args.shard)
        if args.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {args.workers}")
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and args.workers > 1:
            raise ConfigError("use either torchrun ranks or --workers, not both")
        executor = get_executor(cfg.STUDY.EXECUTOR)
        executor.check_launch(args.workers, world)
        if world > 1:
            # torchrun ranks are independent workers (one job each at a time), not one DDP job:
            # hide the world from the trainer, and give each rank its own GPU.
            os.environ["WORLD_SIZE"] = "1"
            import torch
            if cfg.DEVICE == "auto" and torch.cuda.is_available():
                cfg.defrost()
                cfg.DEVICE = f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"
                cfg.freeze()
        from unnas.study.trainers import resolve_trainer
        resolve_trainer(cfg.STUDY.TRAINER)
        _preflight(cfg)
        out = Path(cfg.OUT_DIR)
        from unnas.engine.rundir import writable_dir_error
        try:   # one line for a file in the way or a folder that cannot be created
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise writable_dir_error(out, exc) from exc
        archs = resolve_archs(cfg)
        store, new = prepare_study(cfg, out, archs)
        if args.retry_failed:
            n = store.reset_failed()
            if n and rank == 0:
                print(f"{n} failed jobs queued again")
        c = store.counts(cfg.STUDY.LEASE_SECONDS)
        store.close()
        if rank == 0:
            print(f"study {out}: {describe_archs(cfg, len(archs))}; "
                  f"{len(cfg.STUDY.TASKS)} tasks x {len(cfg.STUDY.SEEDS)} seeds, {c['total']} jobs "
                  f"({new} new, {c['done']} done), {executor.describe(cfg, args.workers, world)}"
                  + (f", shard {shard[0]}/{shard[1]}" if shard else ""), flush=True)
        wait = args.wait or (world > 1 and rank == 0)
        try:
            executor.run(cfg, out, args.workers, shard=shard, wait=wait, echo=lambda s: print(s, flush=True))
        except KeyboardInterrupt:
            raise _Interrupted(executor.interrupt_note) from None
        if rank != 0:
            return 0
        from unnas.study.runner import open_store
        store = open_store(out, cfg)
        c = store.counts(cfg.STUDY.LEASE_SECONDS)
        line = progress_line(store, cfg.STUDY.LEASE_SECONDS)
        store.close()
        print(line)
        if c["failed"]:
            print(f"{c['failed']} jobs failed; see `{PROG} status {out}`, then rerun with --retry-failed", file=sys.stderr)
        if c["pending"] or c["running"]:
            print(f"{c['pending'] + c['running']} jobs remain for other workers/shards; when they finish run "
                  f"`python tools/rank_corr.py analyze {out}`")
            return 0
        if args.no_analyze:
            return 0
        return _analyze(cfg, out, cfg.STUDY.SUPERVISED_TABLE or None)


def _analyze(cfg, run_dir, table, metric=None, n_boot=None, reference=None, reference_run=None,
             reference_task=None, baselines=True, randexp_seed=0, proxies=True, proxy_seconds=None) -> int:
    from unnas.study.analysis import analyze_run

    s = analyze_run(run_dir, reference or cfg.STUDY.SUPERVISED, metric or cfg.STUDY.METRIC, table,
                    cfg.STUDY.BOOTSTRAP if n_boot is None else n_boot, cfg.STUDY.BOOTSTRAP_SEED,
                    reference_run=reference_run, reference_task=reference_task, baselines=baselines,
                    randexp_seed=randexp_seed, proxies=proxies, proxy_seconds=proxy_seconds)
    print(f"\nRank correlations ({s['metric']} test metric, mean over seeds; 95% bootstrap CIs, "
          f"{s['bootstrap']['resamples']} resamples):\n")
    print(s["table_md"])
    print(f"written to {s['out_dir']}/: correlations.md, correlations.csv, correlations.json, task_matrix.csv, "
          "archs.csv, scatter.png, randexp.csv, randexp.png")
    return 0


def _stored_cfg(run_dir: Path):
    from unnas.config import ConfigError, yaml_problem
    from unnas.study.config import study_defaults

    cfg = study_defaults()
    stored = run_dir / "config.yaml"
    if stored.is_file():
        cfg.set_new_allowed(True)
        try:
            cfg.merge_from_file(str(stored))
        except Exception as exc:
            import yaml
            why = (f"not valid YAML: {yaml_problem(exc)}" if isinstance(exc, yaml.YAMLError) else
                   "not a text file" if isinstance(exc, UnicodeDecodeError) else " ".join(str(exc).split()))
            raise ConfigError(f"cannot read the study's stored config {stored} ({why}); restore it from a copy, "
                              "or start a new study with another --out") from None
    return cfg


def cmd_analyze(argv) -> int:
    p = argparse.ArgumentParser(prog=f"{PROG} analyze", description=COMMANDS["analyze"])
    p.add_argument("run_dir")
    p.add_argument("--supervised-table", help="JSON/CSV arch id or genotype -> accuracy, used as the reference")
    p.add_argument("--metric", choices=["best", "final"],
                   help="default STUDY.METRIC (best); final writes to RUN_DIR/analysis_final/, beside analysis/")
    p.add_argument("--reference", metavar="TASK|DIR[:TASK]",
                   help="TASK: this study's reference task (default STUDY.SUPERVISED, cls); DIR[:TASK]: another "
                        "study's TASK (default its STUDY.SUPERVISED), mean over its seeds, matched by genotype, as "
                        "the reference (outputs to RUN_DIR/analysis_ref_<DIR name>_<TASK>/)")
    p.add_argument("--bootstrap", type=int, help="bootstrap resamples (default STUDY.BOOTSTRAP)")
    p.add_argument("--randexp-seed", type=int, default=0, help="seed of the random experiment (default 0)")
    p.add_argument("--no-baselines", action="store_true",
                   help="leave out every training-free row (params/macs baselines and proxies)")
    p.add_argument("--no-proxies", action="store_true", help="leave out the zero-cost proxy rows (STUDY.PROXIES)")
    p.add_argument("--proxy-seconds", type=float,
                   help="compute missing proxies for at most this long (default STUDY.PROXY_ANALYZE_SECONDS, 60; "
                        "0: only cached ones; `proxies RUN_DIR` computes them all)")
    args = p.parse_args(argv)
    with user_errors(PROG, "rerun it"):
        from unnas.config import ConfigError
        from unnas.study.reference import parse_reference

        run_dir = Path(args.run_dir)
        if args.bootstrap is not None and args.bootstrap < 0:
            raise ConfigError("--bootstrap must be >= 0")
        ref_run, ref_task = parse_reference(args.reference) if args.reference else (None, None)
        if ref_run is not None and args.supervised_table:
            raise ConfigError("use either --supervised-table or --reference DIR, not both")
        cfg = _stored_cfg(run_dir)
        table = None if ref_run is not None else args.supervised_table or cfg.STUDY.SUPERVISED_TABLE or None
        return _analyze(cfg, run_dir, table, args.metric, args.bootstrap, None if ref_run is not None else ref_task,
                        reference_run=ref_run, reference_task=ref_task, baselines=not args.no_baselines,
                        randexp_seed=args.randexp_seed, proxies=not args.no_proxies, proxy_seconds=args.proxy_seconds)


PROXY_FLAGS = {**RUN_FLAGS, "names": "STUDY.PROXIES", "batch_size": "STUDY.PROXY_BATCH_SIZE",
               "proxy_seed": "STUDY.PROXY_SEED"}


def _proxies_parser():
    p = argparse.ArgumentParser(
        prog=f"{PROG} proxies", usage=f"{PROG} proxies [RUN_DIR] [options] [KEY VALUE ...]",
        description=COMMANDS["proxies"] + ". RUN_DIR (first) or --out names the study; the missing scores "
        "of STUDY.PROXIES are computed architecture by architecture and stored as they come (an interrupted "
        "run continues where it stopped), then the cost per proxy and the Spearman matrix among the proxies "
        "are printed and written to RUN_DIR/proxies/. Options are stored in the study's config as `run` stores "
        "its options.")
    p.add_argument("--out", help="run directory (OUT_DIR); one that holds no study gets one, built from --cfg, "
                                 "--archs, ... as `run` would, without training")
    p.add_argument("--cfg", help="YAML config (see experiments/study/)")
    p.add_argument("--archs", help="architecture list (STUDY.ARCHS), as for `run`")
    p.add_argument("--num-archs", type=int, help="STUDY.NUM_ARCHS, as for `run`")
    p.add_argument("--tasks", help="STUDY.TASKS of a study created here (its jobs stay pending)")
    p.add_argument("--seeds", help="STUDY.SEEDS of a study created here")
    p.add_argument("--dataset", help="DATA.DATASET")
    p.add_argument("--data-dir", help="DATA.ROOT")
    p.add_argument("--trainer", help="STUDY.TRAINER of a study created here")
    p.add_argument("--names", help="comma-separated proxies (STUDY.PROXIES; default all: params, flops, grad_norm, "
                                   "snip, grasp, fisher, synflow, jacov, naswot, zen, l2_norm)")
    p.add_argument("--batch-size", type=int, help="training images in the proxies' batch (STUDY.PROXY_BATCH_SIZE, 64)")
    p.add_argument("--proxy-seed", type=int, help="STUDY.PROXY_SEED (network initialisation, batch, zen's draws)")
    p.add_argument("--time-limit", type=float, default=0.0,
                   help="start no further architecture after this many seconds (0: none); rerun to continue")
    p.add_argument("--recompute", action="store_true",
                   help="drop the stored scores of these proxies (--names) and settings first, and compute them again")
    p.add_argument("--retry-failed", action="store_true",
                   help="compute again the scores whose proxy raised (stored as NaN with the error)")
    p.add_argument("--shard", help="i/n: score only the architectures whose index (in id order) is i mod n, so n "
                                   "machines or processes split the study")
    p.add_argument("--scores-file", help="JSON lines of the study's scores to keep in git (e.g. results/proxies/"
                                         "NAME.jsonl): the scores it and its shards' files hold that the store lacks are "
                                         "imported first, and the store's are written back at the end (a --shard i/n "
                                         "run writes NAME.shard<i>of<n>.jsonl); remembered by the study")
    add_overrides(p, "NUM_THREADS 1")
    return p


def _is_key(text: str) -> bool:
    import re
    return re.fullmatch(r"[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+|[A-Z][A-Z0-9_]*", text) is not None


def cmd_proxies(argv) -> int:
    argv = list(argv)
    run_dir = argv.pop(0) if argv and not argv[0].startswith("-") and not _is_key(argv[0]) else None
    args = parse_with_overrides(_proxies_parser(), argv)
    try:
        return _cmd_proxies(args, run_dir)
    except (KeyboardInterrupt, _Interrupted):
        print(f"\n{PROG}: interrupted; the scores computed so far are stored. Rerun the same command to continue.",
              file=sys.stderr)
        return 130


def _cmd_proxies(args, run_dir) -> int:
    with user_errors(PROG, "rerun the same command to continue (stored scores are kept)"):
        from unnas.config import ConfigError
        from unnas.study.jobs import parse_shard
        from unnas.study.proxy_study import (SCORES_FILE_META, compute_missing, export_scores, import_scores,
                                             open_cache, shard_archs, shard_file, summary_tables)
        from unnas.study.runner import open_store, prepare_study, resolve_archs, store_path
        from unnas.study.trainers import resolve_trainer
        from unnas.utils.io import atomic_write_text

        if run_dir and args.out and Path(run_dir) != Path(args.out):
            raise ConfigError(f"give the run directory once: {run_dir} or --out {args.out}")
        out = Path(args.out or run_dir or "")
        if not (args.out or run_dir):
            raise ConfigError("name the study: `proxies RUN_DIR`, or `proxies --out DIR --archs FILE [--cfg FILE]` to "
                              "create one without training")
        exists = store_path(out).is_file()
        if not exists and not args.out:
            raise ConfigError(f"{out} holds no study (no {store_path(out).name}); to score architectures before any "
                              f"training create one: `{PROG} proxies --out {out} --archs FILE [--cfg FILE]`")
        if args.time_limit < 0:
            raise ConfigError(f"--time-limit must be >= 0, got {args.time_limit}")
        args.out = str(out)
        flags = flag_overrides(args, PROXY_FLAGS, {"tasks": _list_flag, "seeds": lambda text: _list_flag(text, int),
                                                  "names": _list_flag})
        from unnas.config import load_cfg
        from unnas.study.config import study_defaults, validate_study_cfg
        opts = flags + list(args.opts)
        if exists:
            base = _stored_cfg(out)
            base.set_new_allowed(False)
            cfg = load_cfg(base, args.cfg, opts, validate_study_cfg)
        else:
            cfg = load_cfg(study_defaults(), args.cfg, opts, validate_study_cfg)
        resolve_trainer(cfg.STUDY.TRAINER)
        if exists and not (args.archs or args.num_archs):
            store = open_store(out, cfg)
            archs = store.archs()
            store.close()
        else:
            archs = resolve_archs(cfg)
        shard = parse_shard(args.shard)
        store, new = prepare_study(cfg, out, archs)
        try:
            archs = store.archs()
            names = list(cfg.STUDY.PROXIES)
            cache = open_cache(store, cfg)
            if args.scores_file:
                store.set_meta(SCORES_FILE_META, args.scores_file)
            scores_file = args.scores_file or store.get_meta(SCORES_FILE_META)
            if scores_file:
                n = import_scores(store, scores_file)
                print(f"imported {n} scores the store lacked from {scores_file} and its shards' files")
            if args.recompute or args.retry_failed:
                n = store.delete_proxies(cache.key, names, failed_only=not args.recompute)
                print(f"dropped {n} stored {'' if args.recompute else 'failed '}scores of {', '.join(names)} "
                      f"(settings {cache.key})")
            mine = shard_archs(archs, shard)
            s = cache.description
            done = cache.done()
            todo = sum(1 for a in mine if set(names) - done.get(a.id, set()))
            print(f"study {out}{' (created, no training)' if not exists else ''}: {len(archs)} architectures"
                  + (f" ({len(mine)} in shard {shard[0]}/{shard[1]})" if shard else "") + f" x "
                  f"{len(names)} proxies ({', '.join(names)}); {todo} architectures need scores; the "
                  f"{s['task']} network at width {s['MODEL']['WIDTH']}, depth {s['MODEL']['DEPTH']}, "
                  f"{s['batch_size']} training images of {s['DATA']['DATASET']}, seed {s['seed']} "
                  f"(settings {cache.key})", flush=True)
            try:
                stats = compute_missing(store, cfg, mine, names, results=store.results(), time_limit=args.time_limit,
                                        echo=lambda line: print(line, flush=True))
            except KeyboardInterrupt:
                raise _Interrupted() from None
            finally:
                if scores_file:   # also after an interruption: what was computed reaches the file
                    written = shard_file(scores_file, shard)
                    n = export_scores(store, cache, written, mine)
                    print(f"wrote {n} scores to {written}", flush=True)
            md, scores, secs = summary_tables(cache, archs, names)
        finally:
            store.close()
        folder = out / "proxies"
        folder.mkdir(parents=True, exist_ok=True)
        from unnas.study.analysis import _write_csv
        _write_csv(folder / "scores.csv", ["arch_id"] + names, scores)
        _write_csv(folder / "seconds.csv", ["arch_id"] + names, secs)
        head = (f"Training-free proxies of {out} (settings {cache.key}: {json_line(cache.description)})\n\n")
        atomic_write_text(folder / "summary.md", head + md)
        print()
        print(md)
        if stats["failed"]:
            print(f"{stats['failed']} scores failed (stored as NaN with their error, not retried by later runs); "
                  f"`{PROG} proxies {out} --retry-failed` computes them again", file=sys.stderr)
        if stats["stopped"]:
            print(f"time limit reached: {stats['left']} architectures still need scores; rerun the same command to "
                  "continue")
        print(f"computed {stats['scores']} scores of {stats['archs']} architectures in {stats['seconds']:.0f} s; "
              f"written to {folder}/: summary.md, scores.csv, seconds.csv")
    return 0


def json_line(obj) -> str:
    import json
    return json.dumps(obj, sort_keys=True)


def cmd_sample(argv) -> int:
    p = argparse.ArgumentParser(prog=f"{PROG} sample", description=COMMANDS["sample"])
    p.add_argument("--num-archs", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--space", default="darts", help="search space: darts or nasbench101 (the study's MODEL.SPACE)")
    p.add_argument("--no-none", action="store_true", help="never sample the 'none' op")
    p.add_argument("--distinct-inputs", action="store_true", help="a node's two inputs are different states")
    p.add_argument("--out", required=True, help="output JSON file")
    args = p.parse_args(argv)
    with user_errors(PROG, "rerun it"):
        from search_spaces import get_space
        from unnas.config import ConfigError
        from unnas.study.archs import save_archs
        from unnas.study.sampling import sample_archs

        if args.num_archs < 1:
            raise ConfigError(f"--num-archs must be >= 1, got {args.num_archs}")
        try:
            space = get_space(args.space)
        except KeyError as exc:
            raise ConfigError(str(exc.args[0])) from None
        archs = sample_archs(space, args.num_archs, args.seed, not args.no_none, args.distinct_inputs)
        save_archs(archs, args.out, space=space.name,
                   source=f"rank_corr.py sample seed {args.seed} allow_none {not args.no_none} "
                          f"distinct_inputs {args.distinct_inputs}")
        print(f"wrote {len(archs)} architectures to {args.out}")
    return 0


def cmd_status(argv) -> int:
    p = argparse.ArgumentParser(prog=f"{PROG} status", description=COMMANDS["status"])
    p.add_argument("run_dir")
    args = p.parse_args(argv)
    with user_errors(PROG, "rerun it"):
        from unnas.config import ConfigError
        from unnas.study.runner import open_store, progress_line, store_path

        run_dir = Path(args.run_dir)
        if not store_path(run_dir).is_file():
            raise ConfigError(f"{run_dir} holds no study (no {store_path(run_dir).name})")
        cfg = _stored_cfg(run_dir)
        store = open_store(run_dir)
        print(progress_line(store, cfg.STUDY.LEASE_SECONDS))
        for j in store.jobs("failed"):
            err = (j["error"] or "").strip().splitlines()
            print(f"  failed {j['arch_id']}/{j['task']}/{j['seed']} ({j['attempts']} attempts): {err[-1] if err else ''}")
        for j in store.jobs("running"):
            print(f"  running {j['arch_id']}/{j['task']}/{j['seed']} on {j['worker']}")
        store.close()
    return 0


def usage() -> str:
    """The top-level help: every subcommand with its one line."""
    width = max(len(c) for c in COMMANDS)
    lines = [f"usage: {PROG} [COMMAND] [options] [KEY VALUE ...]", "",
             "Sample-based study: do pretext-task accuracies rank architectures like supervised accuracy?", "",
             "commands:"]
    lines += [f"  {c:<{width}}  {d}" for c, d in COMMANDS.items()]
    lines += ["", f"`{PROG} COMMAND --help` lists a command's options; without a command, `run` is meant "
              f"(`{PROG} --out DIR` = `{PROG} run --out DIR`).", "", "examples:"]
    lines += [x.rstrip() for x in (__doc__ or "").split("\n\n")[1].splitlines()]
    return "\n".join(lines) + "\n"


@command
def main(argv=None) -> int:
    return dispatch_subcommand(PROG, argv, {"run": cmd_run, "analyze": cmd_analyze, "proxies": cmd_proxies, "sample": cmd_sample,
                               "status": cmd_status}, usage)


if __name__ == "__main__":
    sys.exit(main())
