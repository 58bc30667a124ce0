"""Geometry of a cell picture, computed without drawing: :func:`cell_layout`.

A cell is drawn left to right: the inputs ``c_{k-2}``, ``c_{k-1}`` in the first column, every
intermediate node one layer right of the furthest of its inputs, the output ``c_{k}`` in the last
column. Intermediate nodes are numbered from 1, as in the alpha plots (input index ``j >= 2`` of a
genotype is node ``j - 1``).

Two engines give the same :class:`CellLayout` (all lengths in inches, y upwards):

* ``builtin`` (always there): a layered (Sugiyama) layout of our own. Between two layers sits a
  column for the op labels; an edge that spans several layers gets a slot in every column it
  crosses (a label slot in the column just before its target, a thin slot elsewhere), the slots
  of a column are ordered to reduce crossings and stacked without overlap, and the edge runs flat
  through each of its slots and bends (a cubic Bezier with horizontal ends) only in the empty gaps
  between columns. So by construction no edge passes through a node's box or another edge's
  label, and no two labels overlap.
* ``dot``: graphviz's layout, used when the ``dot`` program is on the PATH (never required).
  Labels are given to dot as fixed-size boxes of their measured size; a dot layout that fails
  :func:`layout_problems` is replaced by the builtin one.

:func:`layout_problems` checks a layout the way the tests do: every edge path, sampled every
0.01 inch, stays out of every node box except its two endpoints' and out of every label box but
its own, and no two labels (or a label and a node) overlap.
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence, Union

Key = Union[int, str]          # a state index (0, 1 inputs; j >= 2 node j - 1) or OUT
OUT = "out"

NODE_FONT = 11.0               # points
LABEL_FONT = 8.5
_PT = 1.0 / 72.0               # inch per point
_NODE_PAD = 0.09               # inches around a node's text
_NODE_MIN = 0.36               # smallest node side
_PORT = 0.075                  # vertical distance between the edges that meet a node side
_LABEL_PAD_X, _LABEL_PAD_Y = 0.035, 0.025
_GAP = 0.07                    # vertical space between two boxes of a column
_LANE = 0.09                   # vertical space between two edges passing a column
_MARGIN = 0.12


def state_name(j: Key) -> str:
    """Plain-text name of a cell state: c_{k-2}, c_{k-1}, node 1.., c_{k}."""
    if j == OUT:
        return "c_{k}"
    return {0: "c_{k-2}", 1: "c_{k-1}"}.get(j, f"node {j - 1}")  # type: ignore[operator]


def edge_name(j: int, node: int, math: bool = False) -> str:
    """``c_{k-2} -> node 1``: the edge from state ``j`` into state ``node``, as
    :meth:`DartsSpace.edges` lists them (``j`` 0, 1: the cell's inputs; ``j >= 2``: node ``j - 1``);
    ``math``: the c's as mathtext."""
    def one(k):
        name = state_name(k)
        return f"${name}$" if math and name.startswith("c_") else name
    return f"{one(j)} -> {one(node)}"


def _node_text(j: Key) -> str:
    if j == OUT:
        return "$c_{k}$"
    return {0: "$c_{k-2}$", 1: "$c_{k-1}$"}.get(j, str(j - 1))  # type: ignore[operator]


# ---- geometry --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2

    @property
    def w(self) -> float:
        return self.x1 - self.x0

    @property
    def h(self) -> float:
        return self.y1 - self.y0

    def contains(self, x: float, y: float, eps: float = 1e-6) -> bool:
        """Strictly inside (a point on the border is outside)."""
        return self.x0 + eps < x < self.x1 - eps and self.y0 + eps < y < self.y1 - eps

    def overlaps(self, other: "Box", eps: float = 1e-6) -> bool:
        return (self.x0 + eps < other.x1 and other.x0 + eps < self.x1
                and self.y0 + eps < other.y1 and other.y0 + eps < self.y1)

    def shifted(self, dx: float, dy: float) -> "Box":
        return Box(self.x0 + dx, self.y0 + dy, self.x1 + dx, self.y1 + dy)


@dataclass
class NodeBox:
    key: Key
    text: str                  # what is drawn (mathtext for the inputs and the output)
    kind: str                  # input | node | output
    box: Box


@dataclass
class EdgeLabel:
    text: str
    box: Box


@dataclass
class EdgePath:
    src: Key
    dst: Key
    op: str | None             # None: an edge into the output (the concatenation)
    position: int | None       # index of the (op, input) pair in the cell; None for the output's edges
    points: list[tuple[float, float]]   # the drawn polyline, from the source box to the target box
    label: EdgeLabel | None = None


@dataclass
class CellLayout:
    nodes: dict = field(default_factory=dict)     # key -> NodeBox
    edges: list = field(default_factory=list)     # EdgePath
    width: float = 0.0
    height: float = 0.0
    engine: str = "builtin"

    @property
    def labels(self) -> list[EdgeLabel]:
        return [e.label for e in self.edges if e.label is not None]

    def shift(self, dx: float, dy: float) -> None:
        for n in self.nodes.values():
            n.box = n.box.shifted(dx, dy)
        for e in self.edges:
            e.points = [(x + dx, y + dy) for x, y in e.points]
            if e.label is not None:
                e.label.box = e.label.box.shifted(dx, dy)


@lru_cache(maxsize=256)
def text_size(text: str, size: float) -> tuple[float, float]:
    """Width and height (inches) of ``text`` at ``size`` points, as the Agg renderer draws it."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    ismath = text.count("$") >= 2
    w, _, _ = text_to_path.get_text_width_height_descent(text, FontProperties(size=size), ismath=ismath)
    return w * _PT, 1.2 * size * _PT


def _label_size(op: str) -> tuple[float, float]:
    w, h = text_size(op, LABEL_FONT)
    return w + 2 * _LABEL_PAD_X, h + 2 * _LABEL_PAD_Y


def _node_size(key: Key, ports: int) -> tuple[float, float]:
    w, h = text_size(_node_text(key), NODE_FONT)
    side = max(_NODE_MIN, h + 2 * _NODE_PAD)
    return max(side, w + 2 * _NODE_PAD), max(side, _PORT * (ports - 1) + 0.2)


def _cell_edges(cell: Sequence[tuple[str, int]], concat: Sequence[int]):
    """(src, dst, op, position) of every op edge, then of every edge into the output."""
    edges = [(int(j), k // 2 + 2, str(op), k) for k, (op, j) in enumerate(cell)]
    edges += [(int(s), OUT, None, None) for s in concat]
    return edges


# ---- checks ----------------------------------------------------------------------------------
def _dense(points, step: float = 0.01):
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        n = max(1, int(math.hypot(x1 - x0, y1 - y0) / step))
        for i in range(n):
            t = i / n
            yield x0 + t * (x1 - x0), y0 + t * (y1 - y0)
    if points:
        yield points[-1]


def layout_problems(layout: CellLayout, step: float = 0.01) -> list[str]:
    """What makes a layout unreadable; [] for a clean one (see the module docstring)."""
    problems = []
    for e in layout.edges:
        name = f"edge {state_name(e.src)} -> {state_name(e.dst)} ({e.op or 'concat'})"
        if len(e.points) < 2:
            problems.append(f"{name} has no path")
            continue
        others = [n for k, n in layout.nodes.items() if k not in (e.src, e.dst)]
        foreign = [f.label for f in layout.edges if f is not e and f.label is not None]
        hit_nodes, hit_labels = set(), set()
        for x, y in _dense(e.points, step):
            hit_nodes.update(state_name(n.key) for n in others if n.box.contains(x, y))
            hit_labels.update(lab.text for lab in foreign if lab.box.contains(x, y))
        if hit_nodes:
            problems.append(f"{name} passes through {sorted(hit_nodes)}")
        if hit_labels:
            problems.append(f"{name} passes through the labels {sorted(hit_labels)}")
        src, dst = layout.nodes[e.src].box, layout.nodes[e.dst].box
        (xs, ys), (xe, ye) = e.points[0], e.points[-1]
        if math.hypot(xs - min(max(xs, src.x0), src.x1), ys - min(max(ys, src.y0), src.y1)) > 0.02:
            problems.append(f"{name} does not start at its source")
        if math.hypot(xe - min(max(xe, dst.x0), dst.x1), ye - min(max(ye, dst.y0), dst.y1)) > 0.02:
            problems.append(f"{name} does not end at its target")
    labels = [e.label for e in layout.edges if e.label is not None]
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            if a.box.overlaps(b.box):
                problems.append(f"labels {a.text!r} and {b.text!r} overlap")
        for n in layout.nodes.values():
            if a.box.overlaps(n.box):
                problems.append(f"label {a.text!r} overlaps {state_name(n.key)}")
    nodes = list(layout.nodes.values())
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            if a.box.overlaps(b.box):
                problems.append(f"{state_name(a.key)} and {state_name(b.key)} overlap")
    return problems


# ---- the builtin layered layout --------------------------------------------------------------
def _isotonic(values: list[float], weights: list[float]) -> list[float]:
    """Least-squares non-decreasing fit (pool adjacent violators)."""
    blocks: list[list[float]] = []       # [weighted sum, weight, count]
    for v, w in zip(values, weights):
        blocks.append([v * w, w, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, w2, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += w2
            blocks[-1][2] += c
    out: list[float] = []
    for s, w, c in blocks:
        out += [s / w] * int(c)
    return out


def _stack(desired: list[float], seps: list[float], weights: list[float]) -> list[float]:
    """Positions (increasing downwards) closest to ``desired`` with ``p[i+1] - p[i] >= seps[i]``."""
    off = [0.0]
    for s in seps:
        off.append(off[-1] + s)
    fit = _isotonic([d - o for d, o in zip(desired, off)], weights)
    return [q + o for q, o in zip(fit, off)]


def _bezier(p0, p1, n: int = 14):
    """Points of a cubic Bezier from p0 to p1 with horizontal tangents at both ends (p0 excluded)."""
    (x0, y0), (x1, y1) = p0, p1
    d = (x1 - x0) / 2
    c0, c1 = (x0 + d, y0), (x1 - d, y1)
    pts = []
    for i in range(1, n + 1):
        t = i / n
        a, b, c, e = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3
        pts.append((a * x0 + b * c0[0] + c * c1[0] + e * x1, a * y0 + b * c0[1] + c * c1[1] + e * y1))
    return pts


_CLEARANCE = 0.04              # a bend that skips slots keeps this far from every box


def _route(run, obstacles) -> list[tuple[float, float]]:
    """The polyline of an edge through its flat runs ``(x_left, x_right, y, is_label)``.

    Consecutive runs are joined by a bend in the gap between their columns, which is always clear.
    Where a longer bend from one run to a later one (skipping thin slots, never a label) keeps
    ``_CLEARANCE`` from every obstacle, it is taken instead: a long edge then bends once instead
    of stepping through every column.
    """
    def clear(p0, p1) -> bool:
        n = max(8, int(abs(p1[0] - p0[0]) / 0.02))
        for px, py in _bezier(p0, p1, n):
            for b in obstacles:
                if b.x0 - _CLEARANCE < px < b.x1 + _CLEARANCE and b.y0 - _CLEARANCE < py < b.y1 + _CLEARANCE:
                    return False
        return True

    pts = [(run[0][0], run[0][2])]
    if run[0][1] > run[0][0] + 1e-9:
        pts.append((run[0][1], run[0][2]))
    i = 0
    while i < len(run) - 1:
        j = i + 1
        for k in range(i + 1, len(run)):
            if k > i + 1 and clear(pts[-1], (run[k][0], run[k][2])):
                j = k
            if run[k][3]:                  # a label: the path must run through it
                break
        target = (run[j][0], run[j][2])
        if abs(target[1] - pts[-1][1]) < 1e-9:
            pts.append(target)
        else:
            pts += _bezier(pts[-1], target, max(14, int((target[0] - pts[-1][0]) / 0.03)))
        if run[j][1] > run[j][0] + 1e-9:
            pts.append((run[j][1], run[j][2]))
        i = j
    return pts


def _builtin_layout(cell, concat) -> CellLayout:
    edges = _cell_edges(cell, concat)
    steps = len(cell) // 2
    layer: dict[Key, int] = {0: 0, 1: 0}
    for node in range(steps):
        layer[node + 2] = 1 + max(layer[j] for op, j in cell[2 * node:2 * node + 2])
    layer[OUT] = 1 + max(layer.values())
    keys: list[Key] = [0, 1, *range(2, steps + 2), OUT]
    n_cols = 2 * layer[OUT] + 1

    n_in = {k: 0 for k in keys}
    n_out = {k: 0 for k in keys}
    for s, d, _, _ in edges:
        n_out[s] += 1
        n_in[d] += 1

    # items: ("n", key) for a node, ("e", edge, column) for an edge's slot in a column it crosses
    size: dict = {}
    cols: list[list] = [[] for _ in range(n_cols)]
    for k in keys:
        item = ("n", k)
        size[item] = _node_size(k, max(n_in[k], n_out[k]))
        cols[2 * layer[k]].append(item)
    chains = []
    for e, (s, d, op, _) in enumerate(edges):
        c0, c1 = 2 * layer[s], 2 * layer[d]
        chain = [("n", s)]
        for c in range(c0 + 1, c1):
            item = ("e", e, c)
            size[item] = _label_size(op) if (op is not None and c == c1 - 1) else (0.0, 0.0)
            cols[c].append(item)
            chain.append(item)
        chain.append(("n", d))
        chains.append(chain)
    pred: dict = {it: [] for col in cols for it in col}
    succ: dict = {it: [] for col in cols for it in col}
    for chain in chains:
        for a, b in zip(chain, chain[1:]):
            succ[a].append(b)
            pred[b].append(a)

    # ---- order every column (barycentre sweeps; the inputs keep c_{k-2} on top) -----------
    def positions():
        return {it: i for col in cols for i, it in enumerate(col)}

    def crossings() -> int:
        pos, total = positions(), 0
        for c in range(n_cols - 1):
            segs = [(pos[a], pos[b]) for a in cols[c] for b in succ[a]]
            total += sum(1 for i, (a1, b1) in enumerate(segs) for a2, b2 in segs[i + 1:]
                         if (a1 - a2) * (b1 - b2) < 0)
        return total

    def sweep(order, neighbours):
        for c in order:
            pos = positions()
            cur = {it: i for i, it in enumerate(cols[c])}

            def key(it):
                nb = neighbours[it]
                return (sum(pos[x] for x in nb) / len(nb) if nb else cur[it], cur[it])
            cols[c].sort(key=key)

    for c in range(1, n_cols):          # first placement: by the predecessors, then by target/edge
        pos = positions()
        cols[c].sort(key=lambda it: (sum(pos[x] for x in pred[it]) / max(1, len(pred[it])),
                                     it[1] if it[0] == "e" else -1))
    best, best_cols = crossings(), [list(c) for c in cols]
    for _ in range(6):
        sweep(range(n_cols - 2, 0, -1), succ)
        sweep(range(1, n_cols), pred)
        n = crossings()
        if n < best:
            best, best_cols = n, [list(c) for c in cols]
    # labels next to their target's other labels where that costs no crossing (reads as the node's inputs)
    cols = [list(c) for c in best_cols]
    sweep(range(n_cols - 2, 0, -1), succ)
    if crossings() > best:
        cols = best_cols

    # ---- vertical positions: stacked without overlap, pulled towards the neighbours ---------
    def sep(a, b):
        gap = _LANE if a[0] == b[0] == "e" and size[a][1] == 0 and size[b][1] == 0 else _GAP
        return (size[a][1] + size[b][1]) / 2 + gap

    y: dict = {}
    for col in cols:
        seps = [sep(a, b) for a, b in zip(col, col[1:])]
        stacked = _stack([0.0] * len(col), seps, [1.0] * len(col))
        mid = (stacked[0] + stacked[-1]) / 2
        for it, v in zip(col, stacked):
            y[it] = v - mid
    for it_ in range(24):
        order = range(n_cols) if it_ % 2 == 0 else range(n_cols - 1, -1, -1)
        for c in order:
            col = cols[c]
            desired = []
            for it in col:
                nb = pred[it] + succ[it]
                desired.append(sum(y[x] for x in nb) / len(nb) if nb else y[it])
            for it, v in zip(col, _stack(desired, [sep(a, b) for a, b in zip(col, col[1:])],
                                         [2.0 if it[0] == "n" else 1.0 for it in col])):
                y[it] = v

    # ---- horizontal positions: column widths and the gaps where edges bend -----------------
    width = [max([size[it][0] for it in col] + [0.0]) for col in cols]
    x = [width[0] / 2]
    for c in range(n_cols - 1):
        dy = max([abs(y[a] - y[b]) for a in cols[c] for b in succ[a]] + [0.0])
        gap = min(1.0, max(0.4, 0.25 + 0.3 * dy))
        x.append(x[-1] + width[c] / 2 + gap + width[c + 1] / 2)
    col_of = {it: c for c, col in enumerate(cols) for it in col}

    # ---- nodes, ports (where edges meet a node's side, ordered to avoid crossings), paths ---
    layout = CellLayout(engine="builtin")
    for k in keys:
        it = ("n", k)
        w, h = size[it]
        cx, cy = x[col_of[it]], -y[it]
        kind = "input" if k in (0, 1) else ("output" if k == OUT else "node")
        layout.nodes[k] = NodeBox(k, _node_text(k), kind, Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))

    def ports(items):
        ordered = sorted(items, key=lambda e_it: (y[e_it[1]], e_it[0]))
        n = len(ordered)
        return {e: (i - (n - 1) / 2) * _PORT for i, (e, _) in enumerate(ordered)}

    out_port: dict = {}
    in_port: dict = {}
    for k in keys:
        outs = [(e, chains[e][1]) for e in range(len(edges)) if edges[e][0] == k]
        ins = [(e, chains[e][-2]) for e in range(len(edges)) if edges[e][1] == k]
        out_port.update({(e, "out"): v for e, v in ports(outs).items()})
        in_port.update({(e, "in"): v for e, v in ports(ins).items()})

    # flat runs of every edge: the source port's row, one per slot, the target port's row
    runs, labels = [], []
    for e, (s, d, op, position) in enumerate(edges):
        chain = chains[e]
        src, dst = layout.nodes[s].box, layout.nodes[d].box
        c_src, c_dst = col_of[chain[0]], col_of[chain[-1]]
        ys, yd = src.cy - out_port[(e, "out")], dst.cy - in_port[(e, "in")]
        run = [(src.x1, max(src.x1, x[c_src] + width[c_src] / 2), ys, False)]
        label = None
        for it in chain[1:-1]:
            c, yy = col_of[it], -y[it]
            run.append((x[c] - width[c] / 2, x[c] + width[c] / 2, yy, size[it][1] > 0))
            if size[it][1] > 0:
                w, h = size[it]
                label = EdgeLabel(op, Box(x[c] - w / 2, yy - h / 2, x[c] + w / 2, yy + h / 2))
        run.append((min(dst.x0, x[c_dst] - width[c_dst] / 2), dst.x0, yd, False))
        runs.append(run)
        labels.append(label)
    for e, (s, d, op, position) in enumerate(edges):
        obstacles = [n.box for k, n in layout.nodes.items() if k not in (s, d)]
        obstacles += [lab.box for f, lab in enumerate(labels) if lab is not None and f != e]
        layout.edges.append(EdgePath(s, d, op, position, _route(runs[e], obstacles), labels[e]))
    _frame(layout)
    return layout


def _frame(layout: CellLayout) -> None:
    """Move the drawing to start at (_MARGIN, _MARGIN) and set its width and height."""
    boxes = [n.box for n in layout.nodes.values()] + [lab.box for lab in layout.labels]
    xs = [b.x0 for b in boxes] + [b.x1 for b in boxes] + [p[0] for e in layout.edges for p in e.points]
    ys = [b.y0 for b in boxes] + [b.y1 for b in boxes] + [p[1] for e in layout.edges for p in e.points]
    layout.shift(_MARGIN - min(xs), _MARGIN - min(ys))
    layout.width = max(xs) - min(xs) + 2 * _MARGIN
    layout.height = max(ys) - min(ys) + 2 * _MARGIN


# ---- graphviz's dot ----------------------------------------------------------------------------
def dot_available() -> bool:
    return shutil.which("dot") is not None


def _dot_layout(cell, concat, dot: str) -> CellLayout:
    """Positions from ``dot -Tplain``: every label is a fixed-size node of its measured size on the
    way from the source to the target, so dot keeps labels apart and routes edges around them."""
    edges = _cell_edges(cell, concat)
    steps = len(cell) // 2
    keys: list[Key] = [0, 1, *range(2, steps + 2), OUT]
    name = {k: ("out" if k == OUT else f"s{k}") for k in keys}
    n_in = {k: 0 for k in keys}
    n_out = {k: 0 for k in keys}
    for s, d, _, _ in edges:
        n_out[s] += 1
        n_in[d] += 1
    size = {k: _node_size(k, max(n_in[k], n_out[k])) for k in keys}
    lines = ["digraph cell {", "rankdir=LR; nodesep=0.12; ranksep=0.3; splines=spline;",
             'node [shape=box, fixedsize=true, label=""]; edge [arrowhead=none, arrowtail=none];',
             f"{{rank=source; {name[0]}; {name[1]};}}", f"{{rank=sink; {name[OUT]};}}",
             f"{name[0]} -> {name[1]} [style=invis];"]
    for k in keys:
        lines.append(f"{name[k]} [width={size[k][0]:.4f}, height={size[k][1]:.4f}];")
    for e, (s, d, op, _) in enumerate(edges):
        if op is None:
            lines.append(f"{name[s]} -> {name[d]} [id=e{e}];")
        else:
            w, h = _label_size(op)
            lines.append(f"L{e} [width={w:.4f}, height={h:.4f}];")
            lines.append(f"{name[s]} -> L{e}:w; L{e}:e -> {name[d]};")
    lines.append("}")
    res = subprocess.run([dot, "-Tplain"], input="\n".join(lines), capture_output=True, text=True,
                         timeout=20, check=True)
    node_pos: dict = {}
    splines: dict = {}
    for line in res.stdout.splitlines():
        tok = line.split()
        if not tok:
            continue
        if tok[0] == "node":
            node_pos[tok[1]] = (float(tok[2]), float(tok[3]), float(tok[4]), float(tok[5]))
        elif tok[0] == "edge":
            n = int(tok[3])
            ctrl = [(float(tok[4 + 2 * i]), float(tok[5 + 2 * i])) for i in range(n)]
            splines.setdefault((tok[1], tok[2]), []).append(ctrl)

    def bspline(ctrl):           # dot's piecewise cubic Bezier (1 + 3m control points)
        pts = [ctrl[0]]
        for i in range(0, len(ctrl) - 3, 3):
            p0, p1, p2, p3 = ctrl[i:i + 4]
            for j in range(1, 13):
                t = j / 12
                a, b, c, e_ = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3
                pts.append((a * p0[0] + b * p1[0] + c * p2[0] + e_ * p3[0],
                            a * p0[1] + b * p1[1] + c * p2[1] + e_ * p3[1]))
        return pts

    def take(a, b):
        return bspline(splines[(a, b)].pop(0))

    layout = CellLayout(engine="dot")
    for k in keys:
        cx, cy, w, h = node_pos[name[k]]
        w, h = size[k]
        kind = "input" if k in (0, 1) else ("output" if k == OUT else "node")
        layout.nodes[k] = NodeBox(k, _node_text(k), kind, Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    for e, (s, d, op, position) in enumerate(edges):
        if op is None:
            pts, label = take(name[s], name[d]), None
        else:
            cx, cy, _, _ = node_pos[f"L{e}"]
            w, h = _label_size(op)
            label = EdgeLabel(op, Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
            pts = take(name[s], f"L{e}") + take(f"L{e}", name[d])
        layout.edges.append(EdgePath(s, d, op, position, pts, label))
    _frame(layout)
    return layout


_ENGINES = ("auto", "builtin", "dot")


def cell_layout(cell: Sequence[tuple[str, int]], concat: Sequence[int], engine: str | None = None) -> CellLayout:
    """Nodes (boxes), edges (polylines from box to box) and op labels (boxes) of a cell picture.

    ``engine``: ``builtin``, ``dot`` (graphviz; an error if it is not installed) or ``auto`` (the
    default, or the environment variable ``UNNAS_CELL_LAYOUT``): dot when it is installed and its
    layout is clean (:func:`layout_problems`), else builtin. Edges whose op is ``none`` are laid
    out like any other (the picture draws them dashed and grey).
    """
    engine = engine or os.environ.get("UNNAS_CELL_LAYOUT", "auto")
    if engine not in _ENGINES:
        raise ValueError(f"cell layout engine must be one of {_ENGINES}, got {engine!r}")
    cell = [(str(op), int(j)) for op, j in cell]
    concat = [int(s) for s in concat]
    if engine != "builtin":
        dot = shutil.which("dot")
        if dot is None and engine == "dot":
            raise FileNotFoundError("graphviz's dot is not installed (the builtin layout needs nothing)")
        if dot is not None:
            try:
                layout = _dot_layout(cell, concat, dot)
            except (OSError, subprocess.SubprocessError, ValueError, KeyError, IndexError):
                if engine == "dot":
                    raise
            else:
                if engine == "dot" or not layout_problems(layout):
                    return layout
    return _builtin_layout(cell, concat)

