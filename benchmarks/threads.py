"""CPU threads under load: seconds per step of a retraining step and a search step for each thread
setting, on an idle machine and beside busy processes.

Why this exists: with torch's default (one OpenMP thread per core) a machine whose cores are also
used by other work ran 4-10x slower than with one thread (issue 13). Every parallel region of an
OpenMP team ends at a barrier, so a step is as slow as its most-descheduled thread; with more
threads than free cores each small operator waits for a thread that the scheduler has parked
behind another process. This measures that, and what helps, in fresh processes (an OpenMP setting
must be in the environment before torch starts):

* ``threads``: ``torch.set_num_threads`` (1, 2, ... up to the cores), or ``auto`` (what
  :func:`unnas.engine.setup.auto_threads` picks: the cores not busy with other work);
* ``wait``: ``OMP_WAIT_POLICY`` unset (libgomp spins a while before sleeping) or ``PASSIVE``;
* ``load``: 0, 1, ... processes spinning on a core each beside the measurement.

Run::

    python benchmarks/threads.py                       # idle and loaded, 1 vs all threads, ~5 min on 2 cores
    python benchmarks/threads.py --loads 0 --reps 5    # idle only
    python benchmarks/threads.py --json /tmp/threads.json

Each cell is the median seconds per step of ``--reps`` timed steps after ``--warmup`` steps, in a
fresh process; cells are measured in an interleaved order so that drift hits all settings alike.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, statistics, sys, time
sys.path.insert(0, {root!r})
import torch
from unnas.engine.setup import resolve_threads
threads = resolve_threads({threads!r})
torch.set_num_threads(threads)
torch.manual_seed(0)
kind = {kind!r}
if kind == "train":
    from benchmarks.train_step import build_train
    spec = dict(task="cls", genotype="DARTS_V2", width=16, depth=8, batch=32, size=32, amp="none",
                channels_last=None, threads=threads, seed=0, device="cpu")
    step, _, _ = build_train(spec, torch.device("cpu"))
else:
    from benchmarks.search_step import build_ours
    spec = dict(task="cls", width=8, depth=5, batch=16, size=32, amp="none", channels_last=None,
                threads=threads, seed=0, device="cpu", order="first", partial_channels=1, edge_norm=False)
    step, _, _ = build_ours(spec, torch.device("cpu"))
for _ in range({warmup}):
    step()
times = []
for _ in range({reps}):
    t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
print(json.dumps({{"threads": threads, "median": statistics.median(times), "times": times}}))
"""


def _spin(parent: int):
    """Keep one core busy until the parent is gone (even when it was killed)."""
    while os.getppid() == parent:
        for _ in range(100_000):
            pass


def measure(kind: str, threads: str, wait: str, warmup: int, reps: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if wait != "default":
        env["OMP_WAIT_POLICY"] = wait
    code = CHILD.format(root=str(ROOT), threads=threads, kind=kind, warmup=warmup, reps=reps)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kinds", default="train,search", help="train (DARTS_V2 w16 d8 b32) and/or search (w8 d5 b16)")
    p.add_argument("--threads", default=f"1,{os.cpu_count()},auto", help="thread settings to compare")
    p.add_argument("--waits", default="default,PASSIVE", help="OMP_WAIT_POLICY settings (default = unset)")
    p.add_argument("--loads", default=f"0,{os.cpu_count() // 2 or 1}", help="busy processes beside the measurement")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--json", help="write all measurements here")
    args = p.parse_args(argv)
    ctx = mp.get_context("spawn")
    rows = []
    for load in [int(x) for x in args.loads.split(",")]:
        spinners = [ctx.Process(target=_spin, args=(os.getpid(),), daemon=True) for _ in range(load)]
        for s in spinners:
            s.start()
        try:
            time.sleep(1.0)
            for kind in args.kinds.split(","):
                for wait in args.waits.split(","):
                    for threads in args.threads.split(","):
                        r = measure(kind, threads, wait, args.warmup, args.reps)
                        rows.append({"kind": kind, "load": load, "wait": wait, "threads_setting": threads, **r})
                        print(f"{kind:6s} load {load} OMP_WAIT_POLICY {wait:8s} threads {threads:>4s} (={r['threads']}): "
                              f"{r['median']:.3f} s/step  [{', '.join(f'{t:.2f}' for t in r['times'])}]", flush=True)
        finally:
            for s in spinners:
                s.terminate()
    print("\n| step | busy processes | OMP_WAIT_POLICY | threads | s/step (median) |\n| --- | ---: | --- | --- | ---: |")
    for r in rows:
        print(f"| {r['kind']} | {r['load']} | {r['wait']} | {r['threads_setting']} (= {r['threads']}) | {r['median']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
