"""Where a second-order DARTS search step spends its time: each forward and backward pass of
:meth:`unnas.search.bilevel.BilevelStep.second_order_grads` timed on its own, then the weight step.

The step is built as ``tools/bench.py --only search --order second`` builds "ours"
(:func:`benchmarks.search_step.search_config`, the searcher's ``build_search``, the task's two
fixed batches) and run as ``Searcher.run_step`` runs it. The passes, in order:

1. unrolled step: the training loss at (w, alpha), gradients for w only;
2. the validation loss at w', gradients for alpha and w' (the vector v);
3. and 4. the training loss at w + Rv and at w - Rv, gradients for alpha only;
5. the weight step: forward, backward for w, gradient clipping and SGD.

Run (one thread, the bench's configuration)::

    python benchmarks/second_order_phases.py --reps 3
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.inputs import task_batches  # noqa: E402
from benchmarks.search_step import search_config  # noqa: E402
from unnas.engine import RunContext  # noqa: E402
from unnas.search.bilevel import BilevelStep  # noqa: E402
from unnas.search.build import build_search  # noqa: E402

PASSES = ["1 unrolled (w grads)", "2 val at w' (alpha, w' grads)", "3 train at w+Rv (alpha grads)",
          "4 train at w-Rv (alpha grads)"]


class _Timed(BilevelStep):
    """The same step with every forward (``_loss_at``) and gradient (``_grads``) call timed."""
    calls: list

    def _loss_at(self, *args):
        t = time.perf_counter()
        out = super()._loss_at(*args)
        self.calls.append(("forward", time.perf_counter() - t))
        return out

    def _grads(self, loss, tensors):
        t = time.perf_counter()
        out = BilevelStep._grads(loss, tensors)
        self.calls.append(("backward", time.perf_counter() - t))
        return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="cls")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--depth", type=int, default=8)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=3, help="timed steps after one warm-up step")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = dict(task=args.task, width=args.width, depth=args.depth, order="second", batch=args.batch,
                partial_channels=1, edge_norm=False, amp="none", threads=args.threads, seed=0, device="cpu",
                channels_last=None, size=args.size)
    cfg = search_config(spec)
    device = torch.device("cpu")
    task, ((xa, ya), (x, y)) = task_batches(cfg, spec, device)
    torch.manual_seed(cfg.SEED)
    step = build_search(cfg, task, args.size, RunContext(device)).step_fn
    step.__class__ = _Timed
    rows: dict[str, list[float]] = {}
    for rep in range(args.reps + 1):
        step.calls = []
        t0 = time.perf_counter()
        step.arch_step(xa, ya, x, y, cfg.OPTIM.LR)
        t1 = time.perf_counter()
        step.weight_step(x, y)
        t2 = time.perf_counter()
        if rep == 0:
            continue   # warm-up
        calls = step.calls
        assert len(calls) == 8, f"expected 4 forward/backward pairs, got {[k for k, _ in calls]}"
        for i, name in enumerate(PASSES):
            rows.setdefault(f"{name}: forward", []).append(calls[2 * i][1])
            rows.setdefault(f"{name}: backward", []).append(calls[2 * i + 1][1])
        rows.setdefault("arch step, other (unrolled weights, R, sums)", []).append(t1 - t0 - sum(v for _, v in calls))
        rows.setdefault("5 weight step (forward, backward, clip, SGD)", []).append(t2 - t1)
        rows.setdefault("whole step", []).append(t2 - t0)
    total = statistics.median(rows["whole step"])
    print(f"{args.task}, width {args.width}, depth {args.depth}, batch {args.batch}, {args.size}x{args.size}, "
          f"{args.threads} thread(s), channels-last {cfg.SEARCH.CHANNELS_LAST}; median of {args.reps} steps\n")
    print("| pass | seconds (median) | share |\n|---|---:|---:|")
    for name, vals in rows.items():
        med = statistics.median(vals)
        print(f"| {name} | {med:.2f} | {100 * med / total:.0f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
