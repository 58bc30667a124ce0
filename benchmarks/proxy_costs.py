"""Seconds per architecture of each training-free proxy, as a study computes them
(:class:`unnas.study.proxy_study.ProxyScorer`: the study's reference network, seeded, one batch of
its training data), on the first few of the released DARTS genotypes.

Run (one CPU thread, as a study's proxies run by default)::

    python benchmarks/proxy_costs.py --archs 5                                   # the small default study
    python benchmarks/proxy_costs.py --archs 3 --cfg experiments/study/cifar10_darts.yaml \\
        --data-dir ../shared/data/cifar10-mini                                   # release width 16, depth 20
    python benchmarks/proxy_costs.py --archs 2 --path both ...                   # before/after, side by side

``--path fast`` (default) times what a study runs (:func:`unnas.study.proxies.score_proxies`:
shared passes, channels-last copies on a CPU); ``plain`` the reference path
(:func:`~unnas.study.proxies.reference_proxies`: one NCHW copy and its own passes per proxy, the
code before the fast path); ``fast-nchw``/``fast-cl`` the fast path in one memory format; a
comma-separated list (``both``: ``plain,fast``) runs each on every architecture, in rotating order,
and with ``plain`` among them reports the largest relative difference of each path's scores to it. Prints one row per proxy (mean
and median seconds per architecture, and the range) and the total, in wall-clock seconds and in
CPU seconds of the process (less sensitive to other work on a shared machine); ``--json FILE``
also writes every measurement. Each architecture is scored once per path (no warm-up runs: this is
what a study pays); the network build is reported separately.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ARCHS = ROOT.parent / "shared" / "data" / "unnas-sample-archs" / "darts_cifar10_500.json"


def _table(rows: list[dict], names: list[str]) -> str:
    lines = ["| proxy | mean s/arch | median | min-max | mean CPU s/arch |", "|---|---|---|---|---|"]
    for n in ("build", *names, "all"):
        v = [r[n] for r in rows]
        cpu = [r["cpu"][n] for r in rows] if n in names else [r["all (CPU s)"] for r in rows] if n == "all" else None
        lines.append(f"| {n} | {statistics.mean(v):.2f} | {statistics.median(v):.2f} | {min(v):.2f}-{max(v):.2f} | "
                     + (f"{statistics.mean(cpu):.2f} |" if cpu else "- |"))
    return "\n".join(lines)


def _relative_difference(a: float | None, b: float | None) -> float:
    if a is None or b is None:
        return math.nan
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cfg", help="study YAML (default: the small default study on synthetic data)")
    p.add_argument("--data-dir", help="DATA.ROOT")
    p.add_argument("--archs", type=int, default=5, help="first N genotypes of darts_cifar10_500.json")
    p.add_argument("--batch-size", type=int, default=64, help="STUDY.PROXY_BATCH_SIZE")
    p.add_argument("--names", help="comma-separated proxies (default: all)")
    p.add_argument("--path", default="fast",
                   help="comma-separated paths, each timed on every architecture: fast (what a study runs), plain "
                        "(the reference path: the code before), fast-nchw, fast-cl (the fast path in NCHW or "
                        "channels-last); both = plain,fast")
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
    names = [n for n in PROXY_NAMES if args.names is None or n in args.names.split(",")]
    archs = load_archs(str(ARCHS), get_space("darts"))[:args.archs]
    formats = {"fast": None, "fast-nchw": torch.contiguous_format, "fast-cl": torch.channels_last}
    paths = tuple(["plain", "fast"] if args.path == "both" else args.path.split(","))
    unknown = [x for x in paths if x != "plain" and x not in formats]
    if unknown:
        p.error(f"--path: unknown {', '.join(unknown)}; choose among plain, {', '.join(formats)}")
    t0 = time.perf_counter()
    scorer = ProxyScorer(cfg, device="cpu")
    setup = time.perf_counter() - t0
    rows: dict[str, list[dict]] = {path: [] for path in paths}
    differences: dict[str, float] = {}
    for k, a in enumerate(archs):
        values: dict[str, dict] = {}
        for path in paths[k % len(paths):] + paths[:k % len(paths)]:   # rotate: no path always runs first
            t = time.perf_counter()
            scorer.network(a.genotype)
            build = time.perf_counter() - t
            got, cpu_timings = {}, {}
            wall, cpu = time.perf_counter(), time.process_time()
            timings = scorer.score(a.genotype, names, on_score=lambda n, v, s, e: got.__setitem__(n, v),
                                   reference=path == "plain", cpu_timings=cpu_timings,
                                   memory_format=formats.get(path))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            values[path] = got
            rows[path].append({"arch": a.id, "build": build, **timings, "all": wall + build, "all (CPU s)": cpu,
                               "cpu": cpu_timings, "scores": got})
            print(f"{a.id} {path}: {wall:.1f} s ({cpu:.1f} CPU s) + build {build:.1f} s  "
                  + ", ".join(f"{n} {timings[n]:.2f} ({cpu_timings[n]:.2f} CPU)" for n in names), flush=True)
        if "plain" in paths:
            for path in paths:
                for n in names if path != "plain" else ():
                    key = f"{path} {n}"
                    differences[key] = max(differences.get(key, 0.0),
                                           _relative_difference(values["plain"][n], values[path][n]))
    print(f"\nwidth {cfg.MODEL.WIDTH}, depth {cfg.MODEL.DEPTH}, {scorer.images} images of {cfg.DATA.DATASET} "
          f"({scorer.info.image_size} px), {args.threads} thread(s), {len(archs)} architectures; set-up {setup:.1f} s")
    for path in paths:
        print(f"\n{path} path:\n" + _table(rows[path], names))
    if differences:
        print("\nlargest relative difference to the plain path: "
              + ", ".join(f"{n} {d:.1e}" for n, d in differences.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"cfg": args.cfg, "opts": opts, "rows": rows,
                                               "differences": differences}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
