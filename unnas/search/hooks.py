"""Hooks of the search loop: logs, TensorBoard, progress bar, per-epoch outputs, final outputs.

Only rank 0 writes. Every file that summarises the run so far is rewritten atomically from the
loop's state, so a run killed at any point and resumed leaves the same files as an
uninterrupted one.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from unnas.utils.io import atomic_write_text
from unnas.utils.plots import plot_alpha_history, plot_cell

from .searcher import Hook, Searcher

log = logging.getLogger("unnas.search")


def setup_logging(out_dir: Path, is_main: bool) -> None:
    root = logging.getLogger("unnas")
    root.setLevel(logging.INFO if is_main else logging.WARNING)
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    fmt = logging.Formatter("[%(asctime)s] %(message)s", "%Y-%m-%d %H:%M:%S")
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(out_dir / "log.txt")
        fh.setFormatter(fmt)
        root.addHandler(fh)
    sh = logging.StreamHandler(sys.stderr)
    sh.setFormatter(fmt)
    root.addHandler(sh)
    root.propagate = False


def _jsonable(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        out[k] = v if isinstance(v, (int, float, str, bool, type(None), list, dict)) else float(v)
    return out


class MetricsHook(Hook):
    """Machine-readable JSON lines (``metrics.jsonl``) and the human log."""

    def __init__(self, period: int):
        self.period = period

    def before_run(self, s: Searcher):
        self.path = s.out_dir / "metrics.jsonl"
        if self.path.exists():  # drop records past the checkpoint we resumed from
            keep = []
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a kill
                if rec.get("global_step", 0) <= s.global_step:
                    keep.append(line)
            atomic_write_text(self.path, "".join(k + "\n" for k in keep))
        self.file = open(self.path, "a")
        self.t0 = time.time()

    def _write(self, rec):
        self.file.write(json.dumps(_jsonable(rec)) + "\n")
        self.file.flush()

    def after_step(self, s, stats):
        if stats["global_step"] % self.period == 0:
            self._write({"type": "step", **stats})

    def after_epoch(self, s, stats):
        self._write({"type": "epoch", "global_step": s.global_step, **stats})
        ev = f", eval {s.task.new_meter().primary} {stats.get('eval_' + s.task.new_meter().primary, float('nan')):.2f}" \
            if any(k.startswith("eval_") for k in stats) else ""
        log.info("epoch %d/%d: train loss %.4f, train %s %.2f%s, %.1fs; genotype %s", stats["epoch"] + 1,
                 s.cfg.SEARCH.EPOCHS, stats["train_loss"], s.task.new_meter().primary,
                 stats.get("train_" + s.task.new_meter().primary, float("nan")), ev, stats["epoch_seconds"],
                 stats["genotype"])

    def after_run(self, s):
        self.file.close()

    def on_error(self, s, exc):
        if not self.file.closed:
            self.file.close()


class TensorBoardHook(Hook):
    def __init__(self, period: int):
        self.period = period

    def before_run(self, s: Searcher):
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(str(s.out_dir / "tb"), purge_step=s.global_step if s.global_step else None)
        self.edges = s.space.edges()

    def after_step(self, s, stats):
        if stats["global_step"] % self.period:
            return
        w = self.writer
        w.add_scalar("train/loss", stats["loss"], stats["global_step"])
        w.add_scalar("train/lr", stats["lr"], stats["global_step"])
        if stats["arch_loss"] is not None:
            w.add_scalar("arch/val_loss", stats["arch_loss"], stats["global_step"])

    def after_epoch(self, s, stats):
        w, step = self.writer, s.global_step
        for k, v in stats.items():
            if isinstance(v, (int, float)) and k not in ("epoch",) and v is not None:
                w.add_scalar(f"epoch/{k}", v, step)
        last = s.alpha_history[-1]
        for cell in ("normal", "reduce"):
            for e, (j, node) in enumerate(self.edges):
                for op, value in zip(s.space.primitives, last[cell][e]):
                    w.add_scalar(f"alpha_{cell}/edge{e:02d}_{j}to{node - 2}/{op}", value, step)
                if f"{cell}_edges" in last:
                    w.add_scalar(f"beta_{cell}/edge{e:02d}_{j}to{node - 2}", last[f"{cell}_edges"][e], step)
        w.add_text("genotype", stats["genotype"], step)
        w.flush()

    def after_run(self, s):
        self.writer.close()

    def on_error(self, s, exc):
        self.writer.close()


class ProgressHook(Hook):
    def before_run(self, s: Searcher):
        from tqdm import tqdm
        self.bar = tqdm(total=s.total_steps, initial=s.global_step, desc="search", unit="step",
                        dynamic_ncols=True, file=sys.stderr)

    def after_step(self, s, stats):
        self.bar.update(1)
        if stats["global_step"] % 5 == 0 or stats["step"] == 0:
            post = {"ep": f"{stats['epoch'] + 1}/{s.cfg.SEARCH.EPOCHS}", "loss": f"{stats['loss']:.3f}",
                    "lr": f"{stats['lr']:.4f}"}
            if stats["arch_loss"] is not None:
                post["arch"] = f"{stats['arch_loss']:.3f}"
            self.bar.set_postfix(post, refresh=False)

    def after_run(self, s):
        self.bar.close()

    def on_error(self, s, exc):
        self.bar.close()


class OutputsHook(Hook):
    """Genotype after every epoch, alpha history, pictures, final genotype and summary."""

    def after_epoch(self, s: Searcher, stats):
        out = s.out_dir
        atomic_write_text(out / "genotypes.jsonl", "".join(json.dumps(g) + "\n" for g in s.genotype_history))
        atomic_write_text(out / "alpha_history.json", json.dumps(
            {"primitives": list(s.space.primitives), "edges": s.space.edges(), "epochs": s.alpha_history}))

    def after_run(self, s: Searcher):
        out = s.out_dir
        genotype = s.space.derive(s.arch)
        genotype.save(out / "genotype.json")
        plot_cell(genotype.normal, genotype.normal_concat, out / "normal_cell.png", "normal cell")
        plot_cell(genotype.reduce, genotype.reduce_concat, out / "reduction_cell.png", "reduction cell")
        edges = s.space.edges()
        prims = list(s.space.primitives)
        plot_alpha_history([h["normal"] for h in s.alpha_history], prims, edges, out / "alphas_normal.png",
                           "normal cell: softmax(alpha) per edge")
        plot_alpha_history([h["reduce"] for h in s.alpha_history], prims, edges, out / "alphas_reduce.png",
                           "reduction cell: softmax(alpha) per edge")
        atomic_write_text(out / "summary.json", json.dumps(s.summary(), indent=2) + "\n")


def default_hooks(cfg, is_main: bool, progress: bool = True) -> list[Hook]:
    if not is_main:
        return []
    hooks: list[Hook] = [MetricsHook(cfg.LOG_PERIOD), TensorBoardHook(cfg.LOG_PERIOD), OutputsHook()]
    if progress:
        hooks.append(ProgressHook())
    return hooks
