"""Train a fixed genotype (retraining found cells, pretext training, linear probe, fine-tuning).

  python tools/train.py --genotype DARTS_V2                  # embedded synthetic data, small budget
  python tools/train.py --genotype runs/search/jig_synthetic/genotype.json --dataset cifar10 --data-dir ../shared/data/cifar10-mini
  python tools/train.py --cfg experiments/train/cifar10_darts.yaml --genotype PDARTS DATA.ROOT data/cifar10
  python tools/train.py --genotype DARTS_V2 --task rot --out runs/rot          # pretext training
  python tools/train.py --probe runs/rot/checkpoint_last.pt --out runs/probe   # linear probe on labels
  python tools/train.py --finetune runs/rot/checkpoint_last.pt --out runs/ft   # fine-tune all weights
  python tools/train.py --eval-only runs/rot/checkpoint_best.pt                # test metrics of a checkpoint
  python tools/train.py --genotype DARTS_V2 --resume                           # continue the latest such run
  python tools/train.py --out runs/rot --resume                                # continue the run in runs/rot
  torchrun --nproc_per_node 2 tools/train.py --genotype DARTS_V2               # DDP (gloo on CPU, nccl on GPU)

Other arguments are KEY VALUE config overrides (see unnas/train/config.py), e.g. MODEL.WIDTH 36,
anywhere on the line (before, between or after options).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from unnas.cli import (FLAG_KEYS, add_overrides, command, flag_overrides, parse_with_overrides, place_run,
                       run_reporting_errors, setup_logging, stored_config)
from unnas.engine.rundir import claim_if_main

PROG = "train.py"
FLAGS = {**FLAG_KEYS, "epochs": "TRAIN.EPOCHS"}
EVAL_ONLY_FLAGS = {k: FLAG_KEYS[k] for k in ("dataset", "data_dir")}  # the rest comes from the checkpoint


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--genotype", help="zoo name (DARTS_V2, unnas_imagenet_rot, ...), genotype file, or Genotype(...) string")
    p.add_argument("--task", help="objective: cls (default), rot, col, jig, seg, inpaint, superres, simclr, count, "
                                  "splitbrain (TASK.NAME)")
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
    add_overrides(p, "MODEL.WIDTH 36")
    return parse_with_overrides(p, argv)


def _flags(args) -> list[str]:
    flags = flag_overrides(args, FLAGS)
    ckpt = args.probe or args.finetune
    if ckpt:
        if not Path(ckpt).is_file():
            raise FileNotFoundError(f"checkpoint {ckpt} not found")
        flags += ["TRAIN.INIT_FROM", ckpt, "TRAIN.LINEAR_PROBE", str(bool(args.probe))]
    return flags


def run(args) -> int:
    from unnas.config import ConfigError, load_cfg, resume_cfg
    from unnas.train import NonFiniteLossError, evaluate_checkpoint, train, train_defaults, validate_train_cfg
    from unnas.train.config import RESUME_SAFE_KEYS, run_dir

    is_main = int(os.environ.get("RANK", "0")) == 0
    if args.eval_only:
        if not Path(args.eval_only).is_file():
            raise FileNotFoundError(f"checkpoint {args.eval_only} not found")
        setup_logging(None, is_main)
        res = evaluate_checkpoint(args.eval_only, flag_overrides(args, EVAL_ONLY_FLAGS) + list(args.opts))
        if is_main:
            print(json.dumps(res))
        return 0

    overrides = _flags(args) + list(args.opts)
    cfg = load_cfg(train_defaults(), args.cfg, overrides, validate_train_cfg)
    out, ckpt = place_run(cfg, run_dir, "checkpoint_last.pt", args.resume, "a new run")
    try:
        with claim_if_main(out, is_main):
            changes = {}
            if args.resume:
                cfg, changes = resume_cfg(train_defaults(), stored_config(ckpt), args.cfg, overrides,
                                          validate_train_cfg, RESUME_SAFE_KEYS)
            elif ckpt.exists():
                raise ConfigError(f"run directory {out} already holds a training run; pass --resume to continue it "
                                  "or --out NEW_DIR to start another")
            setup_logging(out, is_main)
            for key, (old, new) in changes.items():
                logging.getLogger("unnas.train").info("resuming with %s changed from %r to %r", key, old, new)
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


@command
def main(argv=None) -> int:
    args = parse_args(argv)
    return run_reporting_errors(PROG, run, args)


if __name__ == "__main__":
    sys.exit(main())
