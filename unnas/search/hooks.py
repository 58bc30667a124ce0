"""Search-specific hooks (per-epoch genotypes and alpha history, final pictures and summary) and
the search's default hook list; the generic ones live in :mod:`unnas.engine.hooks`.

Only rank 0 writes. Every file that summarises the run so far is rewritten atomically from the
loop's state, so a run killed at any point and resumed leaves the same files as an
uninterrupted one.
"""
from __future__ import annotations

import json

from unnas.engine.hooks import Hook, MetricsHook, Period, ProgressHook, TensorBoardHook
from unnas.utils.io import atomic_write_text
from unnas.utils.plots import plot_alpha_history, plot_cell


class OutputsHook(Hook):
    """Genotype after every epoch, alpha history, and at the end the genotype, pictures and summary."""

    def after_epoch(self, s, stats):
        out = s.out_dir
        atomic_write_text(out / "genotypes.jsonl", "".join(json.dumps(g) + "\n" for g in s.genotype_history))
        atomic_write_text(out / "alpha_history.json", json.dumps(
            {"primitives": list(s.space.primitives), "edges": s.space.edges(), "epochs": s.alpha_history}))

    def after_run(self, s):
        if not s.finished:
            return
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
    """Writers of a search run (rank 0 only): metrics.jsonl, TensorBoard, outputs, progress."""
    if not is_main:
        return []
    period = Period(cfg.LOG_PERIOD, "step")
    hooks: list[Hook] = [MetricsHook(period), TensorBoardHook(period), OutputsHook()]
    if progress:
        hooks.append(ProgressHook("search"))
    return hooks
