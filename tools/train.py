#!/usr/bin/env python
"""Train a fixed genotype (retraining found cells, pretext training, linear probe, fine-tuning).

  python tools/train.py --genotype DARTS_V2                  # embedded synthetic data, small budget
  python tools/train.py --genotype runs/search/genotype.json --dataset cifar10 --data-dir ../shared/data/cifar10-mini
  python tools/train.py --cfg experiments/train/cifar10_darts.yaml --genotype PDARTS DATA.ROOT data/cifar10
  python tools/train.py --genotype DARTS_V2 --task rot --out runs/rot          # pretext training
  python tools/train.py --probe runs/rot/checkpoint_last.pt --out runs/probe   # linear probe on labels
  python tools/train.py --finetune runs/rot/checkpoint_last.pt --out runs/ft   # fine-tune all weights
  python tools/train.py --eval-only runs/train/checkpoint_best.pt              # test metrics of a checkpoint
  python tools/train.py --out runs/train --resume                              # continue an interrupted run
  torchrun --nproc_per_node 2 tools/train.py --genotype DARTS_V2               # DDP (gloo on CPU, nccl on GPU)

Remaining arguments are KEY VALUE config overrides (see unnas/train/config.py), e.g. MODEL.WIDTH 36.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROG = "train.py"


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--genotype", help="zoo name (DARTS_V2, unnas_imagenet_rot, ...), genotype file, or Genotype(...) string")
    p.add_argument("--task", help="objective: cls (default), rot, col, jig, seg (TASK.NAME)")
    p.add_argument("--cfg", help="YAML config (see experiments/train/)")
    p.add_argument("--dataset", help="data set name (DATA.DATASET), default synthetic")
    p.add_argument("--data-dir", help="data set root folder (DATA.ROOT)")
    p.add_argument("--out", help="run directory (OUT_DIR)")
    p.add_argument("--epochs", type=int, help="TRAIN.EPOCHS")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--eval-only", metavar="CKPT", help="evaluate a checkpoint on its test split and exit")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--probe", metavar="CKPT", help="linear probe: frozen trunk from CKPT, new linear head (task cls)")
    g.add_argument("--finetune", metavar="CKPT", help="fine-tune: trunk initialised from CKPT, all weights trained")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides, e.g. MODEL.WIDTH 36")
    return p.parse_args(argv)


def _flags(args) -> list[str]:
    from unnas.tasks import canonical_task_name
    flags = []
    if args.genotype:
        flags += ["MODEL.GENOTYPE", args.genotype]
    if args.task:
        flags += ["TASK.NAME", canonical_task_name(args.task)]
    if args.dataset:
        flags += ["DATA.DATASET", args.dataset]
    if args.data_dir:
        flags += ["DATA.ROOT", args.data_dir]
    if args.out:
        flags += ["OUT_DIR", args.out]
    if args.epochs is not None:
        flags += ["TRAIN.EPOCHS", str(args.epochs)]
    ckpt = args.probe or args.finetune
    if ckpt:
        if not Path(ckpt).is_file():
            raise FileNotFoundError(f"checkpoint {ckpt} not found")
        flags += ["TRAIN.INIT_FROM", ckpt, "TRAIN.LINEAR_PROBE", str(bool(args.probe))]
    return flags


def setup_logging(out_dir: Path | None, is_main: bool) -> None:
    logger = logging.getLogger("unnas.train")
    logger.setLevel(logging.INFO if is_main else logging.WARNING)
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    fmt = logging.Formatter("[%(asctime)s] %(message)s", "%Y-%m-%d %H:%M:%S")
    if is_main and out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(out_dir / "log.txt")
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    sh = logging.StreamHandler(sys.stderr)
    sh.setFormatter(fmt)
    logger.addHandler(sh)
    logger.propagate = False


def run(args) -> int:
    from unnas.config import ConfigError, load_cfg
    from unnas.train import NonFiniteLossError, evaluate_checkpoint, train, train_defaults, validate_train_cfg

    is_main = int(os.environ.get("RANK", "0")) == 0
    if args.eval_only:
        if not Path(args.eval_only).is_file():
            raise FileNotFoundError(f"checkpoint {args.eval_only} not found")
        opts = []
        if args.dataset:
            opts += ["DATA.DATASET", args.dataset]
        if args.data_dir:
            opts += ["DATA.ROOT", args.data_dir]
        setup_logging(None, is_main)
        res = evaluate_checkpoint(args.eval_only, opts + list(args.opts))
        if is_main:
            print(json.dumps(res))
        return 0

    cfg = load_cfg(train_defaults(), args.cfg, _flags(args) + list(args.opts), validate_train_cfg)
    out = Path(cfg.OUT_DIR)
    if (out / "checkpoint_last.pt").exists() and not args.resume:
        raise ConfigError(f"run directory {out} already holds a training run; pass --resume to continue it "
                          "or --out NEW_DIR to start another")
    if args.resume and not (out / "checkpoint_last.pt").exists() and is_main:
        print(f"{PROG}: no checkpoint in {out}; starting a new run there", file=sys.stderr)
    setup_logging(out, is_main)
    try:
        summary = train(cfg, out_dir=out, progress=is_main and not args.no_progress, resume=args.resume)
    except NonFiniteLossError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    finally:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if is_main:
        m = summary["metric"]
        print(f"\nTraining finished: task {summary['task']}, {summary['epochs']} epochs, "
              f"{summary['wall_time']:.0f}s, {summary['params'] / 1e6:.3f}M params, {summary['macs'] / 1e6:.1f}M MACs")
        print(f"  test {m}: final {summary['final']:.2f}, best {summary['best']:.2f} (epoch {summary['best_epoch'] + 1})")
        print(f"  written to {out}/: checkpoint_last.pt, checkpoint_best.pt, metrics.jsonl, summary.json, log.txt, tb/")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    from search_spaces.darts.genotype import GenotypeError
    from unnas.config import ConfigError
    from unnas.data import DataError
    from unnas.tasks import TaskNotAvailable, UnknownTask
    try:
        return run(args)
    except (ConfigError, DataError, GenotypeError, TaskNotAvailable, UnknownTask, FileNotFoundError) as exc:
        msg = exc.args[0] if exc.args else str(exc)
        if isinstance(exc, FileNotFoundError) and exc.filename:
            msg = f"{exc.strerror}: {exc.filename}"
        print(f"{PROG}: error: {' '.join(str(msg).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
