"""Pictures of an evolution (matplotlib, PNG written atomically like unnas/utils/plots.py):
``plot_fitness`` (every evaluation's fitness per generation, and each strategy's best so far) and
``plot_weights`` (each task's relative weight per generation, per strategy: the ELo paper's Fig. 3)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from matplotlib.ticker import MaxNLocator

from unnas.utils.plots import _save, plt

_COLOURS = ("#c44e52", "#4c72b0", "#55a868", "#8172b2", "#dd8452", "#64b5cd", "#937860")


def _best_so_far(rows) -> tuple[list[int], list[float]]:
    """(generation, lowest fitness up to the end of that generation) of one strategy's rows."""
    gens, best, out = sorted({r["generation"] for r in rows}), math.inf, []
    for g in gens:
        best = min([best] + [r["fitness"] for r in rows if r["generation"] == g and math.isfinite(r["fitness"])])
        out.append(best)
    return gens, out


def plot_fitness(rows: Sequence[dict], strategies: Sequence[str], path: str | Path, dpi: int = 110) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    width = 0.6 / max(len(strategies), 1)
    for k, s in enumerate(strategies):
        mine = [r for r in rows if r["strategy"] == s]
        if not mine:
            continue
        colour = _COLOURS[k % len(_COLOURS)]
        shift = (k - (len(strategies) - 1) / 2) * width    # side by side within a generation
        ax.scatter([r["generation"] + shift for r in mine], [r["fitness"] for r in mine], s=14, color=colour, alpha=0.5)
        gens, best = _best_so_far(mine)
        ax.plot([g + shift for g in gens], best, "-o", color=colour, markersize=3, label=f"{s} (best {best[-1]:.4f})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness: KL(cluster sizes || Zipf), lower is better")
    ax.set_title("ELo fitness per generation (dots: evaluations, lines: best so far)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path, dpi)


def plot_weights(rows: Sequence[dict], strategies: Sequence[str], tasks: Sequence[str], path: str | Path,
                 dpi: int = 110) -> None:
    shown = [s for s in strategies if any(r["strategy"] == s for r in rows)]
    fig, axes = plt.subplots(1, max(len(shown), 1), figsize=(3.6 * max(len(shown), 1), 3.8), squeeze=False,
                             sharey=True)
    for ax, s in zip(axes[0], shown):
        mine = [r for r in rows if r["strategy"] == s]
        gens = sorted({r["generation"] for r in mine})
        for j, t in enumerate(tasks):
            colour = _COLOURS[j % len(_COLOURS)]
            ax.scatter([r["generation"] for r in mine], [r["relative_weights"][j] for r in mine], s=10, color=colour,
                       alpha=0.35)
            best, line = None, []
            for g in gens:    # the weights of the best candidate so far, generation by generation
                for r in (r for r in mine if r["generation"] == g):
                    if math.isfinite(r["fitness"]) and (best is None or r["fitness"] < best["fitness"]):
                        best = r
                line.append(best["relative_weights"][j] if best is not None else math.nan)
            ax.plot(gens, line, "-", color=colour, label=t)
        ax.set_title(s, fontsize=10)
        ax.set_xlabel("generation")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("relative loss weight")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("ELo loss weights per generation (dots: candidates, lines: the best candidate so far)", fontsize=10)
    fig.tight_layout()
    _save(fig, path, dpi)
