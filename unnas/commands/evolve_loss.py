"""ELo for images: evolve the weights of a multi-task pretext loss with an unsupervised fitness.

  python tools/evolve_loss.py                                   # tiny evolution on the embedded synthetic data, then the report
  python tools/evolve_loss.py run --cfg experiments/elo/cifar10_mini.yaml --workers 2     # the real-data run
  python tools/evolve_loss.py run --out runs/elo/cifar10_mini --workers 2   # resume it after a kill (same candidates)
  python tools/evolve_loss.py run --tasks rot,col --strategies cmaes,random --budget 8 --population 4 --out runs/elo/rc
  python tools/evolve_loss.py run --cfg experiments/elo/cifar10_mini_supernet.yaml --workers 2   # evaluate by searches
  python tools/evolve_loss.py report runs/elo/cifar10_mini      # the evaluation: probes and fine-tunes of (a)-(c)
  python tools/evolve_loss.py status runs/elo/cifar10_mini
  python tools/train.py --cfg runs/elo/cifar10_mini/best.yaml --genotype DARTS_V2        # use the weights found

`run` on a directory that already holds an evolution resumes it from its stored config
(config.yaml); options and KEY VALUE overrides are applied on top, and one that changes what an
evaluation computes is refused. docs/elo.md explains the method, the options and the outputs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unnas.cli import (FLAG_KEYS, add_overrides, command, dispatch_subcommand, flag_overrides, parse_with_overrides,
                       user_errors)

PROG = "evolve_loss.py"
COMMANDS = {
    "run": "run (or resume) the evolution, then the report; the default when no command is given",
    "report": "the evaluation of a finished evolution: linear probes (and fine-tunes) of single tasks, equal and "
              "best weights, and the fitness-vs-probe rank correlation",
    "status": "evaluations done, running and failed per strategy",
}
RUN_FLAGS = {**FLAG_KEYS, "tasks": "TASK.MULTI.TASKS", "strategies": "ELO.STRATEGIES", "budget": "ELO.BUDGET",
             "population": "ELO.POPULATION", "seed": "ELO.SEED", "epochs": "TRAIN.EPOCHS", "network": "ELO.NETWORK"}
RERUN_HINT = "rerun the same command to continue (finished evaluations are kept)"


def _run_parser():
    p = argparse.ArgumentParser(prog=f"{PROG} run", description=COMMANDS["run"])
    p.add_argument("--cfg", help="YAML config (see experiments/elo/)")
    p.add_argument("--out", help="run directory (OUT_DIR)")
    p.add_argument("--tasks", help="comma-separated tasks whose weights evolve, e.g. rot,col,jig (TASK.MULTI.TASKS)")
    p.add_argument("--strategies", help="comma-separated: cmaes,tournament,random,grid (ELO.STRATEGIES)")
    p.add_argument("--budget", type=int, help="evaluations per strategy (ELO.BUDGET)")
    p.add_argument("--population", type=int, help="candidates per generation (ELO.POPULATION)")
    p.add_argument("--seed", type=int, help="the strategies' seed (ELO.SEED)")
    p.add_argument("--network", choices=("fixed", "supernet"),
                   help="what an evaluation trains (ELO.NETWORK): fixed (MODEL.GENOTYPE, the default) or supernet "
                        "(a short DARTS search of SEARCH.EPOCHS, for a search objective)")
    p.add_argument("--genotype", help="the fixed network every evaluation trains (MODEL.GENOTYPE), default DARTS_V2")
    p.add_argument("--epochs", type=int, help="pretraining epochs per evaluation of the fixed network (TRAIN.EPOCHS)")
    p.add_argument("--dataset", help="data set name (DATA.DATASET), default synthetic")
    p.add_argument("--data-dir", help="data set root folder (DATA.ROOT)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes sharing the evaluations (default 1)")
    p.add_argument("--retry-failed", action="store_true", help="put failed evaluations back in the queue first")
    p.add_argument("--no-report", action="store_true", help="stop after the evolution (run `report` later)")
    add_overrides(p, "ELO.CMA_SIGMA 0.2")
    return p


def _list_flag(text: str) -> str:
    return repr([x.strip() for x in text.split(",") if x.strip()])


def _stored_cfg(run_dir: Path):
    """The run's stored config (config.yaml) over the defaults; None when the directory holds none."""
    from unnas.config import ConfigError, yaml_problem
    from unnas.elo.config import evolve_defaults

    stored = run_dir / "config.yaml"
    if not stored.is_file():
        return None
    cfg = evolve_defaults()
    try:
        cfg.merge_from_file(str(stored))
    except Exception as exc:
        import yaml
        why = f"not valid YAML: {yaml_problem(exc)}" if isinstance(exc, yaml.YAMLError) else " ".join(str(exc).split())
        raise ConfigError(f"cannot read the run's stored config {stored} ({why}); restore it, or start a new run "
                          "with another --out") from None
    return cfg


def build_cfg(args):
    from unnas.config import load_cfg
    from unnas.elo.config import evolve_defaults, validate_evolve_cfg

    opts = flag_overrides(args, RUN_FLAGS, {"tasks": _list_flag, "strategies": _list_flag}) + list(args.opts)
    cfg = load_cfg(evolve_defaults(), args.cfg, opts, validate_evolve_cfg)
    base = _stored_cfg(Path(cfg.OUT_DIR))
    if base is not None:   # an existing run: its stored config is the base
        cfg = load_cfg(base, args.cfg, opts, validate_evolve_cfg)
    return cfg


def _preflight(cfg) -> None:
    """Bad data, tasks or a probe without labels: one line before anything is claimed."""
    from unnas.config import ConfigError, task_options
    from unnas.data import build_dataset
    from unnas.tasks import build_task

    if cfg.ELO.EVALUATOR not in ("", "default"):
        return
    train = build_dataset(cfg.DATA, "train")
    build_dataset(cfg.DATA, "test")
    build_task(cfg.TASK.NAME, train.info, **task_options(cfg))
    if cfg.ELO.PROBE and train.info.num_classes <= 0:
        raise ConfigError(f"ELO.PROBE: the linear probes need labels, which data set {cfg.DATA.DATASET} has not; "
                          "set ELO.PROBE False (no report then) or use a labelled data set")


def _print_best(best: dict, tasks) -> None:
    for s, b in best.items():
        if b is None:
            print(f"  {s}: no finished evaluation")
            continue
        rel = ", ".join(f"{t} {w:.3f}" for t, w in zip(tasks, b["relative_weights"]))
        print(f"  {s}: best fitness {b['fitness']:.5f} ({b['key']}; relative weights {rel})")


def cmd_run(argv) -> int:
    args = parse_with_overrides(_run_parser(), argv)
    with user_errors(PROG, RERUN_HINT):
        from unnas.config import ConfigError, save_cfg
        from unnas.elo.evolution import run_evolution
        from unnas.elo.jobs import EvolutionJobs
        from unnas.elo.report import format_report, run_report
        from unnas.engine.rundir import claim_run_dir

        cfg = build_cfg(args)
        if args.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {args.workers}")
        _preflight(cfg)
        out = Path(cfg.OUT_DIR)
        with claim_run_dir(out):
            jobs = EvolutionJobs(out, cfg)        # refuses a run of another evaluation config
            if args.retry_failed:
                n = jobs.store.reset_failed()
                if n:
                    print(f"{n} failed evaluations queued again")
            jobs.close()
            save_cfg(cfg, out / "config.yaml")
            e = cfg.ELO
            from unnas.elo.evaluate import candidate_epochs
            network = "a DARTS supernet" if e.NETWORK == "supernet" else f"network {cfg.MODEL.GENOTYPE}"
            what = "search" if e.NETWORK == "supernet" else "pretraining"
            print(f"evolution {out}: weights of {', '.join(cfg.TASK.MULTI.TASKS)} by {', '.join(e.STRATEGIES)}, "
                  f"{e.BUDGET} evaluations each in generations of {e.POPULATION}; {network} "
                  f"(width {cfg.MODEL.WIDTH}, depth {cfg.MODEL.DEPTH}), {candidate_epochs(cfg)} epoch(s) of {what} per "
                  f"evaluation on {cfg.DATA.DATASET}; {args.workers} worker(s)", flush=True)
            best = run_evolution(cfg, out, args.workers, echo=lambda s: print(s, flush=True))
            print("evolution finished:")
            _print_best(best, cfg.TASK.MULTI.TASKS)
            print(f"  written to {out}/: best.yaml, best_<strategy>.yaml, history.json, history.csv, fitness.png, "
                  "weights.png, tb/")
            if args.no_report or not cfg.ELO.PROBE:
                return 0
            rep = run_report(cfg, out, args.workers, echo=lambda s: print(s, flush=True))
            print("\n" + format_report(rep) + f"written to {out}/report.md, report.json")
    return 0


def _run_dir_cfg(run_dir: str):
    from unnas.config import ConfigError
    from unnas.study.runner import store_path

    path = Path(run_dir)
    cfg = _stored_cfg(path)
    if cfg is None or not store_path(path).is_file():
        raise ConfigError(f"{path} holds no evolution (no config.yaml and {store_path(path).name}); "
                          f"start one with `{PROG} run --out {path}`")
    cfg.OUT_DIR = str(path)
    cfg.freeze()
    return cfg


def cmd_report(argv) -> int:
    p = argparse.ArgumentParser(prog=f"{PROG} report", description=COMMANDS["report"])
    p.add_argument("run_dir")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    args = p.parse_args(argv)
    with user_errors(PROG, RERUN_HINT):
        from unnas.elo.report import format_report, run_report
        from unnas.engine.rundir import claim_run_dir

        cfg = _run_dir_cfg(args.run_dir)
        with claim_run_dir(args.run_dir):
            rep = run_report(cfg, args.run_dir, max(1, args.workers), echo=lambda s: print(s, flush=True))
        print(format_report(rep) + f"written to {args.run_dir}/report.md, report.json")
    return 0


def cmd_status(argv) -> int:
    p = argparse.ArgumentParser(prog=f"{PROG} status", description=COMMANDS["status"])
    p.add_argument("run_dir")
    args = p.parse_args(argv)
    with user_errors(PROG, "rerun it"):
        from unnas.study.runner import open_store

        cfg = _run_dir_cfg(args.run_dir)
        store = open_store(args.run_dir)
        try:
            jobs = store.jobs()
            for s in [*cfg.ELO.STRATEGIES, "final"]:
                mine = [j for j in jobs if j["task"].startswith(f"{s}_")]
                if mine or s != "final":
                    counts = {st: sum(j["state"] == st for j in mine) for st in ("done", "running", "pending", "failed")}
                    print(f"{s if s != 'final' else 'report runs'}: " + ", ".join(f"{n} {st}" for st, n in counts.items())
                          + (f" (budget {cfg.ELO.BUDGET})" if s != "final" else ""))
            for j in jobs:
                if j["state"] == "failed":
                    err = (j["error"] or "").strip().splitlines()
                    print(f"  failed {j['task']} ({j['attempts']} attempts): {err[-1] if err else ''}")
                elif j["state"] == "running":
                    print(f"  running {j['task']} on {j['worker']}")
        finally:
            store.close()
    return 0


def usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = [f"usage: {PROG} [COMMAND] [options] [KEY VALUE ...]", "",
             "ELo for images: evolve the weights of a multi-task pretext loss with an unsupervised fitness.", "",
             "commands:"]
    lines += [f"  {c:<{width}}  {d}" for c, d in COMMANDS.items()]
    lines += ["", f"`{PROG} COMMAND --help` lists a command's options; without a command, `run` is meant.", "",
              "examples:"]
    lines += [x.rstrip() for x in (__doc__ or "").split("\n\n")[1].splitlines()]
    return "\n".join(lines) + "\n"


@command
def main(argv=None) -> int:
    return dispatch_subcommand(PROG, argv, {"run": cmd_run, "report": cmd_report, "status": cmd_status}, usage)


if __name__ == "__main__":
    sys.exit(main())
