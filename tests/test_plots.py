"""Pictures: the cell layout's geometry (no edge through a node, no overlapping labels), plot_cell
drawing that layout, alpha plots (edge names, markers, step records), tools/plot_genotype.py."""
import importlib.util
import json
import random
from pathlib import Path

import pytest

from search_spaces.darts import zoo
from search_spaces.darts.genotype import edge_index
from search_spaces.darts.space import DartsSpace
from unnas.utils import plots
from unnas.utils.cell_layout import OUT, Box, cell_layout, dot_available, layout_problems

ROOT = Path(__file__).resolve().parents[1]


def _cells():
    """Every zoo cell, and sampled ones (with `none` and repeated inputs, and without)."""
    out = []
    for name in zoo.names():
        g = zoo.get(name)
        out += [(f"{name} normal", g.normal, g.normal_concat), (f"{name} reduce", g.reduce, g.reduce_concat)]
    space, rng = DartsSpace(), random.Random(0)
    for i in range(12):
        g = space.sample(rng, allow_none=True, distinct_inputs=i % 3 == 0)
        out += [(f"sample {i} normal", g.normal, g.normal_concat), (f"sample {i} reduce", g.reduce, g.reduce_concat)]
    return out


CELLS = _cells()


def _samples(points, step=0.01):
    """Points every ``step`` inch along a polyline (the test's own sampling, not the module's)."""
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        n = max(1, int(((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5 / step))
        for i in range(n + 1):
            yield x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n


def _inside(box: Box, x, y):
    return box.x0 < x < box.x1 and box.y0 < y < box.y1


def _overlap(a: Box, b: Box):
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _near(box: Box, x, y, tol=0.02):
    return box.x0 - tol <= x <= box.x1 + tol and box.y0 - tol <= y <= box.y1 + tol


def assert_clean(layout, cell, concat, sides=True):
    nodes = layout.nodes
    # every pair of the cell and every concatenated state has its edge, from its source to its target
    assert sorted((e.position, e.src, e.dst, e.op) for e in layout.edges if e.op is not None) == \
        sorted((k, j, k // 2 + 2, op) for k, (op, j) in enumerate(cell))
    assert sorted(e.src for e in layout.edges if e.op is None) == sorted(concat)
    # inputs at the left, the output at the right, every node right of its inputs
    assert nodes[0].box.x1 < min(n.box.x0 for k, n in nodes.items() if k not in (0, 1))
    assert nodes[OUT].box.x0 > max(n.box.x1 for k, n in nodes.items() if k != OUT)
    for k, (op, j) in enumerate(cell):
        assert nodes[k // 2 + 2].box.x0 > nodes[j].box.x1
    labels = [e.label for e in layout.edges if e.label is not None]
    assert len(labels) == len(cell) and all(e.label.text == e.op for e in layout.edges if e.op is not None)
    for e in layout.edges:
        (xs, ys), (xe, ye) = e.points[0], e.points[-1]
        assert _near(nodes[e.src].box, xs, ys) and _near(nodes[e.dst].box, xe, ye)
        if sides:   # the builtin layout: out of a node's right side, into its left side
            assert abs(xs - nodes[e.src].box.x1) < 0.02 and abs(xe - nodes[e.dst].box.x0) < 0.02
        for x, y in _samples(e.points):
            hit = [k for k, n in nodes.items() if k not in (e.src, e.dst) and _inside(n.box, x, y)]
            assert not hit, f"{e.src}->{e.dst} ({e.op}) passes through node {hit[0]} at ({x:.2f}, {y:.2f})"
            hit = [f.label.text for f in layout.edges if f is not e and f.label and _inside(f.label.box, x, y)]
            assert not hit, f"{e.src}->{e.dst} ({e.op}) passes through the label {hit[0]}"
        if e.label is not None:   # the label sits on its own edge
            assert any(_inside(e.label.box, x, y) for x, y in _samples(e.points))
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            assert not _overlap(a.box, b.box), f"labels {a.text} and {b.text} overlap"
        assert not any(_overlap(a.box, n.box) for n in nodes.values()), f"label {a.text} on a node"
    boxes = [n.box for n in nodes.values()]
    assert not any(_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert all(0 <= b.x0 and b.x1 <= layout.width and 0 <= b.y0 and b.y1 <= layout.height for b in boxes)


@pytest.mark.parametrize("name, cell, concat", CELLS, ids=[c[0] for c in CELLS])
def test_builtin_layout_is_clean(name, cell, concat):
    layout = cell_layout(cell, concat, "builtin")
    assert layout.engine == "builtin"
    assert_clean(layout, cell, concat)
    assert layout_problems(layout) == []


def test_layout_problems_sees_what_the_test_sees():
    g = zoo.get("UNNAS_IMAGENET_JIG")
    layout = cell_layout(g.normal, g.normal_concat, "builtin")
    # a node moved onto the middle of another edge's path, two labels on top of each other
    e = next(e for e in layout.edges if e.src == 0 and e.dst == 5)
    x, y = e.points[len(e.points) // 2]
    n = layout.nodes[2]
    n.box = Box(x - n.box.w / 2, y - n.box.h / 2, x + n.box.w / 2, y + n.box.h / 2)
    a, b = layout.labels[:2]
    b.box = a.box.shifted(0.05, 0.02)
    problems = layout_problems(layout)
    assert any("passes through ['node 1']" in p for p in problems)
    assert any("overlap" in p for p in problems)


def test_engines(monkeypatch, tmp_path):
    g = zoo.get("DARTS_V2")
    monkeypatch.setenv("PATH", str(tmp_path))           # no dot: auto is the builtin layout
    assert cell_layout(g.normal, g.normal_concat).engine == "builtin"
    with pytest.raises(FileNotFoundError, match="dot"):
        cell_layout(g.normal, g.normal_concat, "dot")
    with pytest.raises(ValueError, match="engine"):
        cell_layout(g.normal, g.normal_concat, "neato")


@pytest.mark.skipif(not dot_available(), reason="graphviz's dot is not installed")
def test_dot_layout_is_clean():
    for name, cell, concat in CELLS[::3]:
        layout = cell_layout(cell, concat, "dot")
        assert layout.engine == "dot"
        assert_clean(layout, cell, concat, sides=False)


def _capture(monkeypatch):
    figs = []

    def keep(fig, path, dpi):
        fig.set_dpi(dpi)
        figs.append(fig)
        Path(path).write_bytes(b"\x89PNG")
    monkeypatch.setattr(plots, "_save", keep)
    return figs


def test_plot_cell_draws_the_layout(monkeypatch, tmp_path):
    """The drawn text fits in the layout's boxes (so no drawn label overlaps another), in inches."""
    figs = _capture(monkeypatch)
    cell = [("sep_conv_3x3", 0), ("none", 1), ("skip_connect", 2), ("dil_conv_5x5", 0),
            ("max_pool_3x3", 1), ("sep_conv_3x3", 1), ("avg_pool_3x3", 3), ("none", 4)]
    layout = plots.plot_cell(cell, [2, 3, 4, 5], tmp_path / "c.png", "sampled", engine="builtin")
    fig = figs[0]
    renderer = fig.canvas.get_renderer()
    assert tuple(fig.get_size_inches()) == pytest.approx((layout.width, layout.height + 0.32))
    boxes = {lab.text: [] for lab in layout.labels}
    for lab in layout.labels:
        boxes[lab.text].append(lab.box)
    for n in layout.nodes.values():
        boxes.setdefault(n.text, []).append(n.box)
    texts = [t for t in fig.axes[0].texts if t.get_text() in boxes]
    assert len(texts) == len(layout.labels) + len(layout.nodes)
    for t in texts:
        ext = t.get_window_extent(renderer)
        x0, y0, x1, y1 = (v / fig.dpi for v in (ext.x0, ext.y0, ext.x1, ext.y1))
        assert any(b.x0 - 0.01 <= x0 and x1 <= b.x1 + 0.01 and b.y0 - 0.01 <= y0 and y1 <= b.y1 + 0.01
                   for b in boxes[t.get_text()]), t.get_text()
    # a real PNG as well
    monkeypatch.undo()
    plots.plot_cell(cell, [2, 3, 4, 5], tmp_path / "real.png", "sampled", engine="builtin")
    assert (tmp_path / "real.png").read_bytes()[:4] == b"\x89PNG"


def test_alpha_plot_edge_names_and_markers(monkeypatch, tmp_path):
    space = DartsSpace()
    edges = space.edges()
    # input index j >= 2 of a genotype is node j - 1: row edge_index(node, j) of the alphas
    assert plots.edge_name(*edges[edge_index(1, 2)]) == "node 1 -> node 2"
    assert plots.edge_name(*edges[edge_index(0, 0)]) == "c_{k-2} -> node 1"
    assert plots.edge_name(*edges[edge_index(3, 1)]) == "c_{k-1} -> node 4"
    assert plots.edge_name(*edges[-1]) == "node 3 -> node 4"
    figs = _capture(monkeypatch)
    n_ops = len(space.primitives)
    record = [[1.0 / n_ops] * n_ops for _ in edges]
    plots.plot_alpha_history([record], space.primitives, edges, tmp_path / "a.png", "one epoch")
    plots.plot_alpha_history([record] * 50, space.primitives, edges, tmp_path / "b.png", "steps",
                             x=[(i + 1) / 10 for i in range(50)])
    one, many = figs
    titles = [ax.get_title() for ax in one.axes if ax.get_title()]
    assert titles[:2] == ["$c_{k-2}$ -> node 1", "$c_{k-1}$ -> node 1"] and titles[4] == "node 1 -> node 2"
    line = one.axes[0].lines[0]
    assert line.get_marker() == "o" and list(line.get_xdata()) == [1]       # a 1-epoch search shows its point
    assert many.axes[0].lines[0].get_marker() in ("None", "", None)
    assert list(many.axes[0].lines[0].get_xdata())[:2] == [0.1, 0.2]
    assert one.legends == [] and one.axes[-1].get_legend() is not None        # the legend has its own panel


def _tool(name):
    spec = importlib.util.spec_from_file_location(f"{name}_tool_plots", ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_plot_genotype_tool(tmp_path, capsys):
    tool = _tool("plot_genotype")
    assert tool.main(["DARTS_V2", "--out", str(tmp_path / "pics"), "--prefix", "d_", "--engine", "builtin"]) == 0
    for f in ("d_normal_cell.png", "d_reduction_cell.png"):
        assert (tmp_path / "pics" / f).read_bytes()[:4] == b"\x89PNG"
    g = zoo.get("PDARTS")
    (tmp_path / "g.json").write_text(g.to_json())
    assert tool.main([str(tmp_path / "g.json"), "--out", str(tmp_path), "--engine", "builtin"]) == 0
    assert (tmp_path / "normal_cell.png").exists() and (tmp_path / "reduction_cell.png").exists()
    capsys.readouterr()
    assert tool.main(["no_such_cell", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("plot_genotype.py: error: unknown genotype 'no_such_cell'")


def test_alpha_steps_are_recorded_and_resume_exactly(tmp_path, monkeypatch):
    """SEARCH.ALPHA_LOG_STEPS 1 on a 2 x 3-step search: step records between the epoch records,
    placed at global_step / steps_per_epoch; a run killed mid-epoch 2 and resumed writes the same file."""
    import unnas.search.hooks as search_hooks
    from unnas.config import load_cfg
    from unnas.search import Searcher
    from unnas.search.config import search_defaults, validate_search_cfg

    monkeypatch.setattr(search_hooks, "plot_cell", lambda *a, **k: None)
    shown = []
    monkeypatch.setattr(search_hooks, "plot_alpha_history", lambda h, p, e, path, title, x: shown.append(x))
    opts = ["SEARCH.STEPS_PER_EPOCH", "3", "SEARCH.EVAL_BATCHES", "1", "MODEL.WIDTH", "4", "MODEL.DEPTH", "1",
            "SEARCH.BATCH_SIZE", "4", "SEARCH.EPOCHS", "2", "DATA.MAX_TRAIN", "24", "DATA.SYNTHETIC.NUM_TRAIN",
            "32", "DATA.SYNTHETIC.NUM_TEST", "8", "TASK.NAME", "cls", "SEARCH.ALPHA_LOG_STEPS", "1",
            "SEARCH.NUM_THREADS", "1"]

    def searcher(out):
        cfg = load_cfg(search_defaults(), None, opts + ["OUT_DIR", str(out)], validate_search_cfg)
        return Searcher(cfg, out, search_hooks.default_hooks(cfg, True, progress=False))

    ref = searcher(tmp_path / "ref")
    ref.run()
    hist = json.loads((tmp_path / "ref" / "alpha_history.json").read_text())
    assert [(r["epoch"], r["step"], r["global_step"]) for r in hist["epochs"]] == [(0, 3, 3), (1, 3, 6)]
    assert [(r["epoch"], r["step"], r["global_step"]) for r in hist["steps"]] == \
        [(0, 1, 1), (0, 2, 2), (1, 1, 4), (1, 2, 5)]
    assert hist["steps_per_epoch"] == 3 and hist["edge_names"][4] == "node 1 -> node 2"
    assert shown[0] == pytest.approx([1 / 3, 2 / 3, 1, 4 / 3, 5 / 3, 2])
    killed = searcher(tmp_path / "run")
    killed.run(max_steps=5)            # epoch checkpoint only: the resumed run replays epoch 2
    del killed
    resumed = searcher(tmp_path / "run")
    assert resumed.resume()
    resumed.run()
    assert (tmp_path / "run" / "alpha_history.json").read_text() == \
        (tmp_path / "ref" / "alpha_history.json").read_text()
