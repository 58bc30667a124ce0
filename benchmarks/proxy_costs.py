"""Seconds per architecture of each training-free proxy, as a study computes them
(:class:`unnas.study.proxy_study.ProxyScorer`: the study's reference network, seeded, one batch of
its training data), on the first few of the released DARTS genotypes.

Run (one CPU thread, as a study's proxies run by default)::

    python benchmarks/proxy_costs.py --archs 5                                   # the small default study
    python benchmarks/proxy_costs.py --archs 3 --cfg experiments/study/cifar10_darts.yaml \\
        --data-dir ../shared/data/cifar10-mini                                   # release width 16, depth 20

Prints one row per proxy (mean and median seconds per architecture, and the range) and the total;
``--json FILE`` also writes every measurement. Each architecture is scored once (no warm-up runs:
this is what a study pays); the network build is reported separately.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ARCHS = ROOT.parent / "shared" / "data" / "unnas-sample-archs" / "darts_cifar10_500.json"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cfg", help="study YAML (default: the small default study on synthetic data)")
    p.add_argument("--data-dir", help="DATA.ROOT")
    p.add_argument("--archs", type=int, default=5, help="first N genotypes of darts_cifar10_500.json")
    p.add_argument("--batch-size", type=int, default=64, help="STUDY.PROXY_BATCH_SIZE")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the measurements here")
    p.add_argument("opts", nargs="*", help="KEY VALUE overrides")
    args = p.parse_args(argv)

    import torch

    from search_spaces import get_space
    from unnas.study.archs import load_archs
    from unnas.study.config import study_defaults
    from unnas.study.proxies import PROXY_NAMES
    from unnas.study.proxy_study import ProxyScorer

    torch.set_num_threads(args.threads)
    cfg = study_defaults()
    if args.cfg:
        cfg.merge_from_file(args.cfg)
    opts = ["STUDY.PROXY_BATCH_SIZE", args.batch_size] + (["DATA.ROOT", args.data_dir] if args.data_dir else []) + args.opts
    cfg.merge_from_list([str(x) for x in opts])
    archs = load_archs(str(ARCHS), get_space("darts"))[:args.archs]
    t0 = time.perf_counter()
    scorer = ProxyScorer(cfg, device="cpu")
    setup = time.perf_counter() - t0
    rows = []
    for a in archs:
        t = time.perf_counter()
        scorer.network(a.genotype)
        build = time.perf_counter() - t
        timings = scorer.score(a.genotype, list(PROXY_NAMES))
        rows.append({"arch": a.id, "build": build, **timings})
        print(f"{a.id}: {sum(timings.values()):.1f} s + build {build:.1f} s  "
              + ", ".join(f"{n} {s:.2f}" for n, s in timings.items()), flush=True)
    print(f"\nwidth {cfg.MODEL.WIDTH}, depth {cfg.MODEL.DEPTH}, {scorer.images} images of {cfg.DATA.DATASET} "
          f"({scorer.info.image_size} px), {args.threads} thread(s), {len(rows)} architectures; set-up {setup:.1f} s\n")
    print("| proxy | mean s/arch | median | min-max |\n|---|---|---|---|")
    for n in ("build", *PROXY_NAMES):
        v = [r[n] for r in rows]
        print(f"| {n} | {statistics.mean(v):.2f} | {statistics.median(v):.2f} | {min(v):.2f}-{max(v):.2f} |")
    tot = [sum(r[n] for n in ("build", *PROXY_NAMES)) for r in rows]
    print(f"| all | {statistics.mean(tot):.2f} | {statistics.median(tot):.2f} | {min(tot):.2f}-{max(tot):.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"cfg": args.cfg, "opts": opts, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
