"""PNG pictures of cells and of alpha evolution (matplotlib; graphviz's dot only lays cells out when installed)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from unnas.utils.cell_layout import LABEL_FONT, NODE_FONT, CellLayout, cell_layout, edge_name  # noqa: E402,F401
from unnas.utils.io import atomic_write_bytes  # noqa: E402


def _save(fig, path, dpi: int) -> None:
    """PNG written atomically, like every other output: a kill never leaves a torn picture."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())

_OP_COLOURS = {
    "none": "#bbbbbb", "max_pool_3x3": "#4c72b0", "avg_pool_3x3": "#64b5cd", "skip_connect": "#55a868",
    "sep_conv_3x3": "#c44e52", "sep_conv_5x5": "#8172b2", "dil_conv_3x3": "#ccb974",
    "dil_conv_5x5": "#dd8452", "sep_conv_7x7": "#937860", "conv_7x1_1x7": "#da8bc3",
}


_NODE_COLOURS = {"input": "#9ecae1", "node": "#e5f5e0", "output": "#fdd49e"}
_CONCAT_COLOUR = "#777777"


def plot_cell(cell: Sequence[tuple[str, int]], concat: Sequence[int], path: str | Path, title: str = "",
              engine: str | None = None) -> CellLayout:
    """Draw a cell: inputs c_{k-2}, c_{k-1} at the left, nodes 1.. in layers, output c_{k} at the right.

    The geometry is :func:`~unnas.utils.cell_layout.cell_layout` (graphviz's dot when installed,
    else a layered layout of our own; ``engine`` chooses): no edge crosses a node or another
    edge's label and labels do not overlap. Each op edge carries its op's name in the op's
    colour; edges whose op is ``none`` (possible in sampled genotypes) are drawn dashed and grey
    with a ``none`` label; the edges into c_{k} (the concatenation) are thin, grey and unlabelled.
    Returns the layout that was drawn.
    """
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
    from matplotlib.path import Path as MplPath

    layout = cell_layout(cell, concat, engine)
    title_h = 0.32 if title else 0.0
    fig = plt.figure(figsize=(layout.width, layout.height + title_h))
    ax = fig.add_axes((0, 0, 1, 1))      # one data unit = one inch on both axes
    ax.set_xlim(0, layout.width)
    ax.set_ylim(0, layout.height + title_h)
    ax.axis("off")
    if title:
        ax.text(layout.width / 2, layout.height + title_h / 2, title, ha="center", va="center", fontsize=11)
    for e in layout.edges:
        if e.op is None:
            colour, lw, ls = _CONCAT_COLOUR, 1.0, "-"
        elif e.op == "none":
            colour, lw, ls = _OP_COLOURS["none"], 1.2, (0, (4, 2.5))
        else:
            colour, lw, ls = _OP_COLOURS.get(e.op, "black"), 1.6, "-"
        line = MplPath(e.points)
        ax.add_patch(FancyArrowPatch(path=line, arrowstyle="-", color=colour, lw=lw, linestyle=ls, zorder=2))
        # the head on its own, solid, along the last few hundredths of an inch of the path
        ax.add_patch(FancyArrowPatch(path=MplPath(_tail(e.points, 0.08)), mutation_scale=10, color=colour, lw=lw,
                                     arrowstyle="-|>,head_length=0.5,head_width=0.22", zorder=2))
        if e.label is not None:
            b = e.label.box
            ax.add_patch(FancyBboxPatch((b.x0, b.y0), b.w, b.h, boxstyle="round,pad=0,rounding_size=0.04",
                                        fc="white", ec=colour, lw=0.6, alpha=0.95, zorder=3))
            ax.text(b.cx, b.cy, e.label.text, ha="center", va="center_baseline", fontsize=LABEL_FONT,
                    color="#555555" if e.op == "none" else colour, zorder=4)
    for n in layout.nodes.values():
        b, r = n.box, min(0.06, n.box.h / 4)
        ax.add_patch(FancyBboxPatch((b.x0 + r, b.y0 + r), b.w - 2 * r, b.h - 2 * r, boxstyle=f"round,pad={r}",
                                    fc=_NODE_COLOURS[n.kind], ec="black", lw=1.0, zorder=5))
        ax.text(b.cx, b.cy, n.text, ha="center", va="center_baseline", fontsize=NODE_FONT, zorder=6)
    _save(fig, path, dpi=150)
    return layout


def _tail(points, length: float):
    """The last ``length`` inches of a polyline (at least its last segment)."""
    out = [points[-1]]
    left = length
    for (x0, y0), (x1, y1) in zip(points[-2::-1], points[::-1]):
        d = ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5
        if d >= left:
            t = left / d if d else 0.0
            out.append((x1 + (x0 - x1) * t, y1 + (y0 - y1) * t))
            break
        out.append((x0, y0))
        left -= d
    return out[::-1]


_MARKER_MAX = 40                # markers on the points up to this many records


def plot_alpha_history(history: Sequence, primitives: Sequence[str], edges: Sequence[tuple[int, int]],
                       path: str | Path, title: str = "", x: Sequence[float] | None = None,
                       xlabel: str = "epoch") -> None:
    """One panel per edge (``c_{k-2} -> node 1``, ..., ``node 3 -> node 4``): softmax weight of
    every op. ``history``: records x edges x ops; ``x``: where each record lies (default 1, 2, ...:
    one record per epoch; a search with SEARCH.ALPHA_LOG_STEPS passes fractional epochs). Points
    carry markers while there are at most 40, so a search of a few epochs still shows them."""
    n_edges = len(edges)
    cols = 5
    rows = -(-(n_edges + 1) // cols)           # one free panel at least: the legend's
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.2 * rows), sharex=True, sharey=True, squeeze=False)
    xs = list(x) if x is not None else list(range(1, len(history) + 1))
    style = dict(marker="o", ms=3) if len(xs) <= _MARKER_MAX else {}
    for e, (j, node) in enumerate(edges):
        ax = axes[e // cols][e % cols]
        for k, op in enumerate(primitives):
            ax.plot(xs, [h[e][k] for h in history], label=op, color=_OP_COLOURS.get(op), lw=1.4, **style)
        # a fixed title position: matplotlib's automatic one measures the tick labels of every panel
        ax.set_title(edge_name(j, node, math=True), fontsize=9, y=1.0, pad=4)
        ax.tick_params(labelsize=7)
    for e in range(n_edges, rows * cols):
        axes[e // cols][e % cols].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    axes[-1][-1].legend(handles, labels, loc="center", fontsize=8, ncol=2, frameon=False)
    if all(float(v).is_integer() for v in xs):
        from matplotlib.ticker import MaxNLocator
        axes[0][0].xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.supxlabel(xlabel)
    fig.supylabel("softmax(alpha)", x=0.002)
    if title:
        fig.suptitle(title)
    # fixed margins (in inches, so they hold for any number of rows) instead of tight_layout, which
    # measured every tick label again and took ~70% of the picture's time (about 1 s per picture)
    h = 2.2 * rows
    fig.subplots_adjust(left=0.75 / (3.0 * cols), right=0.99, bottom=0.75 / h, top=1 - 0.55 / h,
                        wspace=0.12, hspace=0.35)
    _save(fig, path, dpi=100)
