"""PNG pictures of cells and of alpha evolution (matplotlib only; no system graphviz)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

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


def plot_cell(cell: Sequence[tuple[str, int]], concat: Sequence[int], path: str | Path, title: str = "") -> None:
    """Draw a cell as a DAG: inputs c_{k-2}, c_{k-1} on the left, nodes 0.., output c_{k} right."""
    steps = len(cell) // 2
    pos = {0: (0.0, 0.75), 1: (0.0, 0.25)}
    for i in range(steps):
        pos[i + 2] = (1.0 + i * 0.9, 0.5 + (0.28 if i % 2 == 0 else -0.28))
    out_x = 1.0 + steps * 0.9 + 0.4
    pos["out"] = (out_x, 0.5)
    names = {0: "c_{k-2}", 1: "c_{k-1}", "out": "c_{k}"}
    names.update({i + 2: str(i) for i in range(steps)})

    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * steps, 3.6))
    ax.set_xlim(-0.4, out_x + 0.4)
    ax.set_ylim(-0.1, 1.1)
    ax.axis("off")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    to_disp, to_data = ax.transData.transform, ax.transData.inverted().transform
    for k, (op, j) in enumerate(cell):
        node = k // 2 + 2
        (x0, y0), (x1, y1) = pos[j], pos[node]
        bend = 0.25 if k % 2 else -0.25
        colour = _OP_COLOURS.get(op, "black")
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", color=colour, lw=1.8, shrinkA=14, shrinkB=14,
                                    connectionstyle=f"arc3,rad={bend}"))
        # Midpoint of matplotlib's arc3 quadratic Bezier (in display space): chord midpoint + rad/2 * (dy, -dx).
        (u0, v0), (u1, v1) = to_disp((x0, y0)), to_disp((x1, y1))
        mx, my = to_data(((u0 + u1) / 2 + 0.5 * bend * (v1 - v0), (v0 + v1) / 2 - 0.5 * bend * (u1 - u0)))
        ax.text(mx, my, op, fontsize=7, ha="center", va="center", color=colour,
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
    for s in concat:
        (x0, y0), (x1, y1) = pos[s], pos["out"]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", color="#999999", lw=1, ls="--", shrinkA=14, shrinkB=14))
    for key, (x, y) in pos.items():
        colour = "#9ecae1" if key in (0, 1) else ("#fdd49e" if key == "out" else "#e5f5e0")
        ax.text(x, y, names[key], ha="center", va="center", fontsize=10, zorder=5,
                bbox=dict(boxstyle="circle,pad=0.35" if key not in (0, 1, "out") else "round,pad=0.4",
                          fc=colour, ec="black"))
    _save(fig, path, dpi=120)


def plot_alpha_history(history: Sequence, primitives: Sequence[str], edges: Sequence[tuple[int, int]],
                       path: str | Path, title: str = "") -> None:
    """One panel per edge: softmax weight of every op over epochs. ``history``: epochs x edges x ops."""
    n_edges = len(edges)
    cols = 5
    rows = -(-n_edges // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.2 * rows), sharex=True, sharey=True, squeeze=False)
    epochs = list(range(1, len(history) + 1))
    for e, (j, node) in enumerate(edges):
        ax = axes[e // cols][e % cols]
        for k, op in enumerate(primitives):
            ax.plot(epochs, [h[e][k] for h in history], label=op, color=_OP_COLOURS.get(op), lw=1.4)
        ax.set_title(f"edge {e}: {j} -> {node - 2}", fontsize=8)
        ax.tick_params(labelsize=7)
    for e in range(n_edges, rows * cols):
        axes[e // cols][e % cols].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower right", fontsize=8, ncol=2)
    fig.supxlabel("epoch")
    fig.supylabel("softmax(alpha)", x=0.002)
    if title:
        fig.suptitle(title)
    # fixed margins (in inches, so they hold for any number of rows) instead of tight_layout, which
    # measured every tick label again and took ~70% of the picture's time (about 1 s per picture)
    h = 2.2 * rows
    fig.subplots_adjust(left=0.75 / (3.0 * cols), right=0.99, bottom=0.75 / h, top=1 - 0.55 / h,
                        wspace=0.12, hspace=0.35)
    _save(fig, path, dpi=100)
