"""Label-free DARTS search.

  python tools/search.py --task jigsaw                       # embedded data, small default budget
  python tools/search.py --task rot --dataset cifar10 --data-dir ../shared/data/cifar10-mini
  python tools/search.py --cfg experiments/search/cifar10_rot.yaml OUT_DIR runs/c10_rot SEED 2
  torchrun --nproc_per_node 2 tools/search.py --task rot     # DDP (gloo on CPU, nccl on GPU)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unnas.cli import (FLAG_KEYS, add_overrides, command, flag_overrides, parse_with_overrides, place_run,
                       setup_logging, stored_config, user_errors)
from unnas.engine.rundir import claim_if_main

PROG = "search.py"
FLAGS = {**FLAG_KEYS, "order": "SEARCH.ORDER", "epochs": "SEARCH.EPOCHS"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", help="objective: rot|rotation, col|colorization, jig|jigsaw, cls, seg, inpaint, superres, "
                                  "simclr, count, splitbrain (TASK.NAME; docs/tasks.md)")
    p.add_argument("--cfg", help="YAML config (see experiments/search/)")
    p.add_argument("--dataset", help="data set name (DATA.DATASET), default synthetic")
    p.add_argument("--data-dir", help="data set root folder (DATA.ROOT)")
    p.add_argument("--out", help="run directory (OUT_DIR)")
    p.add_argument("--order", choices=["first", "second"], help="DARTS approximation (SEARCH.ORDER)")
    p.add_argument("--epochs", type=int, help="SEARCH.EPOCHS")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_overrides(p, "MODEL.WIDTH 16")
    return parse_with_overrides(p, argv)


def build_cfg(args):
    from unnas.config import load_cfg
    from unnas.search.config import search_defaults, validate_search_cfg

    return load_cfg(search_defaults(), args.cfg, overrides(args), validate_search_cfg)


def overrides(args) -> list[str]:
    return flag_overrides(args, FLAGS) + list(args.opts)


@command
def main(argv=None) -> int:
    args = parse_args(argv)
    with user_errors(PROG):
        cfg = build_cfg(args)
        from unnas.search.config import run_dir

        out, ckpt = place_run(cfg, run_dir, "checkpoint.pt", args.resume, "a new search")
        import os
        is_main = int(os.environ.get("RANK", "0")) == 0
        with claim_if_main(out, is_main):
            return _search(args, cfg, out, ckpt, is_main)
    return 0


def _search(args, cfg, out: Path, ckpt: Path, is_main: bool) -> int:
    import logging

    from unnas.config import ConfigError, resume_cfg, save_cfg
    from unnas.engine.setup import threads_note
    from unnas.search import NonFiniteLossError, make_searcher
    from unnas.search.config import RESUME_SAFE_KEYS, describe_algorithm, search_defaults, validate_search_cfg
    from unnas.search.hooks import default_hooks

    changes = {}
    if args.resume:
        cfg, changes = resume_cfg(search_defaults(), stored_config(ckpt), args.cfg, overrides(args),
                                  validate_search_cfg, RESUME_SAFE_KEYS)
    elif ckpt.exists():
        raise ConfigError(f"run directory {out} already holds a search; pass --resume to continue it "
                          "or --out NEW_DIR to start another")
    setup_logging(out, is_main)
    log = logging.getLogger("unnas.search")
    for key, (old, new) in changes.items():
        log.info("resuming with %s changed from %r to %r", key, old, new)
    searcher = make_searcher(cfg, out, default_hooks(cfg, is_main, progress=not args.no_progress))
    resumed = searcher.resume()
    if is_main:
        save_cfg(cfg, out / "config.yaml")
        n_w = sum(p.numel() for p in searcher.model.parameters())
        log.info("task %s | data %s (%d weight / %d arch images) | supernet %s stem, width %d, depth %d, "
                 "%.2fM weights | %s | %d processes | device %s%s",
                 searcher.task.describe(), cfg.DATA.DATASET, len(searcher.weight_idx), len(searcher.arch_idx),
                 searcher.stem, cfg.MODEL.WIDTH, cfg.MODEL.DEPTH, n_w / 1e6, describe_algorithm(cfg),
                 searcher.world, searcher.device,
                 threads_note(searcher.device))
        if resumed:
            log.info("resumed from %s at epoch %d, step %d", searcher.checkpoint_path, searcher.epoch, searcher.step)
    try:
        summary = searcher.run()
    except NonFiniteLossError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    if is_main:
        final = summary["final"]
        primary = searcher.task.new_meter().primary
        print(f"\nSearch finished ({describe_algorithm(cfg)}, task {summary['task']}, {summary['epochs']} epochs).")
        print(f"  train {primary}: {final.get('train_' + primary, float('nan')):.2f}   "
              f"held-out {primary}: {final.get('eval_' + primary, float('nan')):.2f}")
        if summary.get("early_stop"):
            stop = summary["early_stop"]
            print(f"  stopped after epoch {stop['epoch'] + 1}, genotype of epoch {stop['kept_epoch'] + 1}: {stop['reason']}")
        print(f"  genotype: {summary['genotype_repr']}")
        print(f"  written to {out}/: genotype.json, genotypes.jsonl, alpha_history.json, normal_cell.png, "
              f"reduction_cell.png, alphas_*.png, metrics.jsonl, log.txt, tb/, checkpoint.pt")
        print(f"  retrain it: python tools/train.py --genotype {out / 'genotype.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
