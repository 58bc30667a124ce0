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
from unnas.utils.plots import edge_name, plot_alpha_history, plot_cell


def alpha_series(epochs: list[dict], steps: list[dict], steps_per_epoch: int) -> tuple[list[dict], list[float]]:
    """The alpha records of a search (after every epoch, and every SEARCH.ALPHA_LOG_STEPS steps) in
    order, with where each lies in epochs: ``global_step / steps_per_epoch`` (the end of epoch e is
    e + 1). Records without ``global_step`` (older runs) lie at ``epoch + 1``."""
    def where(r):
        return r["global_step"] / steps_per_epoch if "global_step" in r else r["epoch"] + 1.0
    records = sorted(epochs + steps, key=where)
    return records, [where(r) for r in records]


class OutputsHook(Hook):
    """Genotype after every epoch, alpha history, and at the end the genotype, pictures and summary."""

    def after_epoch(self, s, stats):
        out = s.out_dir
        atomic_write_text(out / "genotypes.jsonl", "".join(json.dumps(g) + "\n" for g in s.genotype_history))
        edges = s.space.edges()
        atomic_write_text(out / "alpha_history.json", json.dumps(
            {"primitives": list(s.space.primitives), "edges": edges,
             "edge_names": [edge_name(j, node) for j, node in edges], "steps_per_epoch": s.steps_per_epoch,
             "epochs": s.alpha_history, "steps": s.alpha_steps}))

    def after_run(self, s):
        if not s.finished:
            return
        out = s.out_dir
        genotype = s.final_genotype()      # after a DARTS-ES stop: the kept epoch's
        genotype.save(out / "genotype.json")
        plot_cell(genotype.normal, genotype.normal_concat, out / "normal_cell.png", "normal cell")
        plot_cell(genotype.reduce, genotype.reduce_concat, out / "reduction_cell.png", "reduction cell")
        edges = s.space.edges()
        prims = list(s.space.primitives)
        records, x = alpha_series(s.alpha_history, s.alpha_steps, s.steps_per_epoch)
        plot_alpha_history([h["normal"] for h in records], prims, edges, out / "alphas_normal.png",
                           "normal cell: softmax(alpha) per edge", x)
        plot_alpha_history([h["reduce"] for h in records], prims, edges, out / "alphas_reduce.png",
                           "reduction cell: softmax(alpha) per edge", x)
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
