"""P-DARTS (unnas/search/pdarts.py) and the skip-connection limit at derivation.

Checked against ports of the official code (chenxin061/pdarts ``train_search.py``: ``get_min_k``,
``get_min_k_no_zero``, ``check_sk_number``, ``delete_min_sk_prob``, ``keep_1_on``,
``keep_2_branches``, ``parse_network``), against the textbook supernet for the pruned op space, and
a tiny staged search for its stages and for exact resume across and within stages.
"""
import copy
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import unnas.utils.io as io_mod  # noqa: E402
from search_spaces.darts.genotype import edge_index, genotype_from_weights  # noqa: E402
from search_spaces.darts.ops import PRIMITIVES  # noqa: E402
from search_spaces.darts.supernet import ArchParameters, EdgeGroup, SkipDropout, SupernetTrunk  # noqa: E402
from textbook_supernet import MixedOp, TextbookTrunk, _group_rows, _textbook_entries  # noqa: E402
from unnas.config import ConfigError, load_cfg  # noqa: E402
from unnas.data import DATASETS, DataInfo, TensorDataset  # noqa: E402
from unnas.search import Searcher, make_searcher  # noqa: E402
from unnas.search.config import search_defaults, validate_search_cfg  # noqa: E402
from unnas.search.hooks import default_hooks  # noqa: E402
from unnas.search.pdarts import PDartsSearcher, prune_op_mask, skip_dropout_rate  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py

SKIP = PRIMITIVES.index("skip_connect")


# ---- ports of the official code (train_search.py), PRIMITIVES in the same order ----------------
def get_min_k(input_in, k):
    input = copy.deepcopy(input_in)
    index = []
    for i in range(k):
        idx = np.argmin(input)
        index.append(idx)
        input[idx] = 1
    return index


def get_min_k_no_zero(w_in, idxs, k):
    w = copy.deepcopy(w_in)
    index = []
    zf = 0 in idxs
    if zf:
        w = w[1:]
        index.append(0)
        k = k - 1
    for i in range(k):
        idx = np.argmin(w)
        w[idx] = 1
        if zf:
            idx = idx + 1
        index.append(idx)
    return index


def check_sk_number(switches):
    return sum(1 for s in switches if s[3])


def delete_min_sk_prob(switches_in, switches_bk, probs_in):
    def _get_sk_idx(switches_in, switches_bk, k):
        if not switches_in[k][3]:
            return -1
        return sum(1 for i in range(3) if switches_bk[k][i])
    probs_out = copy.deepcopy(probs_in)
    sk_prob = [1.0 for i in range(len(switches_bk))]
    for i in range(len(switches_in)):
        idx = _get_sk_idx(switches_in, switches_bk, i)
        if not idx == -1:
            sk_prob[i] = probs_out[i][idx]
    d_idx = np.argmin(sk_prob)
    idx = _get_sk_idx(switches_in, switches_bk, d_idx)
    probs_out[d_idx][idx] = 0.0
    return probs_out


def keep_1_on(switches_in, probs):
    switches = copy.deepcopy(switches_in)
    for i in range(len(switches)):
        idxs = [j for j in range(len(PRIMITIVES)) if switches[i][j]]
        for idx in get_min_k_no_zero(probs[i, :], idxs, 2):
            switches[i][idxs[idx]] = False
    return switches


def keep_2_branches(switches_in, probs):
    switches = copy.deepcopy(switches_in)
    final_prob = [max(probs[i]) for i in range(len(switches))]
    keep, n, start = [0, 1], 3, 2
    for i in range(3):
        end = start + n
        tb = final_prob[start:end]
        edge = sorted(range(n), key=lambda x: tb[x])
        keep += [edge[-1] + start, edge[-2] + start]
        start, n = end, n + 1
    for i in range(len(switches)):
        if i not in keep:
            switches[i] = [False] * len(PRIMITIVES)
    return switches


def parse_cell(switches):
    gene, n, start = [], 2, 0
    for i in range(4):
        end = start + n
        for j in range(start, end):
            gene += [(PRIMITIVES[k], j - start) for k in range(len(switches[j])) if switches[j][k]]
        start, n = end, n + 1
    return gene


def official_last_stage(switches_2, probs, max_sk):
    """The end of ``main`` for the normal cell: the last pruning (keep 1 op, never none), none's
    probability zeroed, two inputs per node, then skip connections removed down to ``max_sk``."""
    switches = copy.deepcopy(switches_2)
    probs = probs.copy()
    for i in range(14):
        idxs = [j for j in range(8) if switches[i][j]]
        for idx in get_min_k_no_zero(probs[i, :], idxs, len(idxs) - 1):
            switches[i][idxs[idx]] = False
    for i in range(14):
        if switches_2[i][0]:
            probs[i][0] = 0
    switches = keep_2_branches(switches, probs)
    while check_sk_number(switches) > max_sk:
        probs = delete_min_sk_prob(switches, switches_2, probs)
        switches = keep_1_on(switches_2, probs)
        switches = keep_2_branches(switches, probs)
    return parse_cell(switches)


def _by_node(cell):
    return [sorted(cell[2 * i:2 * i + 2]) for i in range(len(cell) // 2)]


def _random_stage(rng, n_ops=3, skip_bias=2.0):
    """A last-stage op set (n_ops per edge, skip_connect on most edges) and softmax weights over it."""
    switches, probs = [], []
    for _ in range(14):
        ops = sorted(rng.choice(8, n_ops, replace=False).tolist()) if rng.random() < 0.3 else \
            sorted([SKIP] + rng.choice([k for k in range(8) if k != SKIP], n_ops - 1, replace=False).tolist())
        switches.append([k in ops for k in range(8)])
        logits = rng.normal(0, 1, n_ops) + np.array([skip_bias if k == SKIP else 0.0 for k in ops])
        probs.append(np.exp(logits) / np.exp(logits).sum())
    return switches, np.array(probs)


def _full_weights(switches, probs):
    w = torch.zeros(14, 8, dtype=torch.float64)
    for i, row in enumerate(switches):
        w[i, [k for k in range(8) if row[k]]] = torch.tensor(probs[i])
    return w


# ---- the skip-connection limit -----------------------------------------------------------------
def test_skip_limit_on_constructed_alphas():
    # normal cell: every node's best input edge is a skip connection (4 skips), with skip weights
    # 0.9, 0.5, 0.6, 0.4 on the edges below, and known second-best ops
    w = torch.full((14, 8), 0.01)
    w[:, 0] = 0.0
    plan = {  # edge row: (skip weight, second-best op, its weight)
        edge_index(0, 0): (0.9, "sep_conv_3x3", 0.05), edge_index(0, 1): (0.1, "dil_conv_3x3", 0.6),
        edge_index(1, 2): (0.5, "sep_conv_5x5", 0.3), edge_index(1, 0): (0.2, "max_pool_3x3", 0.45),
        edge_index(2, 3): (0.6, "avg_pool_3x3", 0.1), edge_index(2, 1): (0.15, "sep_conv_3x3", 0.55),
        edge_index(3, 4): (0.4, "dil_conv_5x5", 0.35), edge_index(3, 0): (0.05, "sep_conv_5x5", 0.38),
    }
    for row, (skip_w, op, op_w) in plan.items():
        w[row, SKIP] = skip_w
        w[row, PRIMITIVES.index(op)] = op_w
    plain = genotype_from_weights(w, w)
    assert [op for op, _ in plain.normal].count("skip_connect") == 4
    limited = genotype_from_weights(w, w, max_skips_normal=2)
    assert [op for op, _ in limited.normal].count("skip_connect") == 2
    nodes = _by_node(limited.normal)
    assert nodes[0] == sorted([("skip_connect", 0), ("dil_conv_3x3", 1)])      # skip 0.9 stays
    assert nodes[2] == sorted([("skip_connect", 3), ("sep_conv_3x3", 1)])      # skip 0.6 stays
    # the two weakest skips are replaced by their edges' next-best ops: node 3's edge 4 by
    # dil_conv_5x5 (0.35, now below the edge from s0 at 0.38, which the node keeps);
    assert nodes[3] == sorted([("dil_conv_5x5", 4), ("sep_conv_5x5", 0)])
    # node 1's edge 2 (skip 0.5) by sep_conv_5x5 (0.3): the node's inputs are re-selected by strength
    assert nodes[1] == sorted([("sep_conv_5x5", 2), ("max_pool_3x3", 0)])
    assert limited.reduce == plain.reduce                                         # normal cell only
    assert genotype_from_weights(w, w, max_skips_normal=0) == plain               # 0 = no limit
    assert genotype_from_weights(w, w, max_skips_normal=4) == plain


def test_skip_limit_and_pruning_match_the_official_code():
    rng = np.random.default_rng(0)
    for case in range(60):
        switches, probs = _random_stage(rng)
        w = _full_weights(switches, probs)
        for m in (1, 2, 3, 8):
            ours = genotype_from_weights(w, w, max_skips_normal=m if m < 8 else 0).normal
            assert _by_node(list(ours)) == _by_node(official_last_stage(switches, probs, m)), (case, m)
    for case in range(50):                       # pruning between stages: get_min_k, none included
        n_active, keep = [(8, 5), (5, 3)][case % 2]
        switches, probs = _random_stage(rng, n_active, skip_bias=0.0)
        mask = torch.tensor(switches)
        ours = prune_op_mask(_full_weights(switches, probs), mask, keep)
        for i in range(14):
            idxs = [j for j in range(8) if switches[i][j]]
            drop = {idxs[k] for k in get_min_k(probs[i], n_active - keep)}
            assert ours[i].tolist() == [switches[i][j] and j not in drop for j in range(8)]


def test_arch_parameters_apply_the_limit_and_report_it():
    arch = ArchParameters(max_skips_normal=2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        arch.alpha_normal.normal_(0, 0.1)
        arch.alpha_normal[:, SKIP] += 3.0                      # the collapsed cell: skips everywhere
    assert [op for op, _ in arch.genotype().normal].count("skip_connect") == 2
    report = arch.skip_limit_report()
    assert report["skips_without_limit"] == 8 and len(report["replaced_edges"]) >= 6
    assert ArchParameters().skip_limit_report() is None


def test_skip_limit_stops_when_no_other_op_is_left():
    w = torch.zeros(14, 8)
    w[:, SKIP] = 1.0                             # only skip connections survive (all else pruned)
    assert [op for op, _ in genotype_from_weights(w, w, max_skips_normal=2).normal].count("skip_connect") == 8


# ---- the pruned supernet computes the mixture over the kept ops --------------------------------
def _random_masks(seed):
    """3 random ops per edge (so at least 2 besides none), and a few hand-picked op sets."""
    g = torch.Generator().manual_seed(seed)
    masks = []
    for _ in range(2):
        m = torch.zeros(14, 8, dtype=torch.bool)
        for e in range(14):
            m[e, torch.randperm(8, generator=g)[:3]] = True
        masks.append(m)
    masks[0][:3] = False                          # a few edges with hand-picked op sets
    masks[0][0, [0, SKIP, 4]] = True              # none, skip, sep_conv_3x3
    masks[0][1, [1, 2]] = True                    # both pools
    masks[0][2, [5, 6, 7]] = True                 # three convs
    return tuple(masks)


def _pruned_to_textbook(trunk, tensors):
    """Our pruned trunk's tensors in the textbook's layout: a stacked tensor's slots are the edges
    that keep its op (``EdgeGroup.edges_of``)."""
    key_re = re.compile(r"^(?P<cell>.*cells\.\d+\.)groups\.(?P<group>\d+)\.(?P<rest>.+)$")
    out = {}
    for key, t in tensors.items():
        m = key_re.match(key)
        if m is None:
            out[key] = t
            continue
        group = trunk.get_submodule(f"{m['cell']}groups.{m['group']}")
        parts = m["rest"].split(".")
        name = parts[1] if parts[0] in ("convs", "pool_bns") else "skip_connect"
        rows = _group_rows(int(m["group"]), 4)
        for e, suffix, tt in _textbook_entries(m["rest"], t, [rows[e] for e in group.edges_of[name]]):
            out[f"{m['cell']}edges.{e}.ops.{suffix}"] = tt.clone()
    return out


def _close(a, b, what):
    a, b = a.detach().float(), b.detach().float()
    scale = float(b.abs().max()) + 1.0
    err = float((a - b).abs().max())
    assert err <= 1e-4 * scale + 1e-5, f"{what}: max |diff| {err:.3g}"


def test_pruned_supernet_matches_textbook_mixture_over_kept_ops():
    masks = _random_masks(0)
    torch.manual_seed(0)
    ours = SupernetTrunk(3, 4, 3, op_mask=masks)
    textbook = TextbookTrunk(3, 4, 3)
    missing = textbook.load_state_dict(_pruned_to_textbook(ours, ours.state_dict()), strict=False).missing_keys
    assert missing and all(".ops." in k for k in missing)         # only pruned ops are not in ours
    assert sum(p.numel() for p in ours.parameters()) < sum(p.numel() for p in textbook.parameters())
    arch = ArchParameters(op_mask=masks, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        arch.alpha_normal.normal_(0, 1), arch.alpha_reduce.normal_(0, 1)
    w = arch.weights()
    assert torch.all(w.normal[~masks[0]] == 0) and torch.allclose(w.normal.sum(-1), torch.ones(14))
    x = torch.randn(2, 3, 8, 8)
    results = []
    for model in (textbook, ours):
        arch.zero_grad(set_to_none=True)
        model.zero_grad(set_to_none=True)
        y = model(x, arch.weights())
        (y * torch.randn(y.shape, generator=torch.Generator().manual_seed(1))).sum().backward()
        results.append((y.detach(), arch.alpha_normal.grad.clone(), arch.alpha_reduce.grad.clone()))
    for a, b, what in zip(results[1], results[0], ("output", "alpha_normal grad", "alpha_reduce grad")):
        _close(a, b, what)
    assert torch.all(results[1][1][~masks[0]] == 0)                 # pruned alphas get no gradient
    ours_grads = _pruned_to_textbook(ours, {n: p.grad for n, p in ours.named_parameters()})
    tb = dict(textbook.named_parameters())
    for name, g in ours_grads.items():
        _close(g, tb[name].grad, f"gradient of {name}")


@pytest.mark.parametrize("stride", [1, 2])
def test_pruned_edge_group_is_the_plain_mixture_of_its_kept_ops(stride):
    keep = [["none", "skip_connect", "sep_conv_3x3"], ["max_pool_3x3", "dil_conv_5x5"],
            ["sep_conv_3x3", "skip_connect", "avg_pool_3x3"]]
    torch.manual_seed(0)
    group = EdgeGroup(4, 3, stride, keep=keep)
    refs = [MixedOp(4, stride) for _ in range(3)]                  # textbook ops, one module per op
    for key, t in group.state_dict().items():
        parts = key.split(".")
        name = parts[1] if parts[0] in ("convs", "pool_bns") else "skip_connect"
        for e, suffix, tt in _textbook_entries(key, t, group.edges_of[name]):
            refs[e].ops.state_dict()[suffix].copy_(tt)
    alpha = torch.randn(3, 8, requires_grad=True)
    kept = torch.tensor([[p in ops for p in PRIMITIVES] for ops in keep])
    x = torch.randn(2, 4, 8, 8)
    w = torch.softmax(alpha.masked_fill(~kept, float("-inf")), -1)
    ours = group(x, w)
    ref = [sum(w[e, k] * refs[e].ops[k](x) for k, p in enumerate(PRIMITIVES) if p in keep[e]) for e in range(3)]
    probe = [torch.randn(y.shape, generator=torch.Generator().manual_seed(e)) for e, y in enumerate(ref)]
    g_ours = torch.autograd.grad(sum((y * p).sum() for y, p in zip(ours, probe)), alpha, retain_graph=True)[0]
    g_ref = torch.autograd.grad(sum((y * p).sum() for y, p in zip(ref, probe)), alpha)[0]
    for e in range(3):
        _close(ours[e], ref[e], f"edge {e}")
    _close(g_ours, g_ref, "alpha gradient")
    assert "sep_conv_5x5" not in group.convs and group.convs["sep_conv_3x3"].m == 2


# ---- skip dropout ------------------------------------------------------------------------------
def test_skip_dropout_schedule_is_the_official_one():
    # train_search.py: p = rate * (epochs - epoch - 1) / epochs during the warm-up (epoch < 10),
    # then rate * exp(-(epoch - 10) * 0.2)
    rates = [skip_dropout_rate(0.4, e, 25, 10, 0.2) for e in range(25)]
    assert rates[0] == pytest.approx(0.4 * 24 / 25) and rates[9] == pytest.approx(0.4 * 15 / 25)
    assert rates[10] == pytest.approx(0.4) and rates[24] == pytest.approx(0.4 * math.exp(-14 * 0.2))
    assert skip_dropout_rate(0.0, 12, 25, 10, 0.2) == 0.0


def test_skip_dropout_drops_each_edge_independently_in_training_only():
    group = EdgeGroup(4, 3, 1, keep=[["skip_connect"]] * 3)
    group.skip_dropout = drop = SkipDropout()
    x = torch.randn(4, 4, 8, 8)
    w = torch.ones(3, 8)
    assert all(torch.equal(y, x) for y in group(x, w))             # p = 0: the plain skip
    drop.p = 0.5
    drop.generator = torch.Generator().manual_seed(0)
    ys = group(x, w)
    for y in ys:
        kept = y != 0
        assert torch.allclose(y[kept], 2 * x[kept]) and 0.4 < kept.float().mean() < 0.6
    assert not torch.equal(ys[0] != 0, ys[1] != 0)                  # a mask of its own per edge
    drop.generator = torch.Generator().manual_seed(0)
    assert all(torch.equal(a, b) for a, b in zip(ys, group(x, w)))  # the generator decides the draws
    group.eval()
    assert all(torch.equal(y, x) for y in group(x, w))


# ---- the staged search ---------------------------------------------------------------------------
def build_blobs(root="", split="train", num_train=32, num_test=8, seed=0, **_):
    """Random 8x8 images with 4 labels."""
    n = num_train if split == "train" else num_test
    g = torch.Generator().manual_seed(seed * 2 + (0 if split == "train" else 1))
    images = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
    info = DataInfo(num_classes=4, image_size=8, mean=(0.5, 0.5, 0.5), std=(0.29, 0.29, 0.29))
    return TensorDataset(images, torch.randint(0, 4, (n,), generator=g), info, crop_pad=1)


@pytest.fixture(scope="module")
def blobs():
    DATASETS.register("pdarts_blobs")(build_blobs)
    yield
    DATASETS._items.pop("pdarts_blobs", None)


# two stages: 2 -> 3 cells, 8 -> 4 ops, 2 epochs each (the first one weights only), 2 steps per epoch
TINY = ["TASK.NAME", "cls", "DATA.DATASET", "pdarts_blobs", "DATA.SYNTHETIC.NUM_TRAIN", "16", "MODEL.WIDTH", "4",
        "MODEL.DEPTH", "2", "SEARCH.BATCH_SIZE", "4", "SEARCH.STEPS_PER_EPOCH", "2", "SEARCH.EVAL_BATCHES", "1",
        "SEARCH.NUM_THREADS", "1", "DEVICE", "cpu", "LOG_PERIOD", "1", "SEARCH.EPOCHS", "4",
        "SEARCH.PDARTS.ENABLE", "True", "SEARCH.PDARTS.ADD_LAYERS", "[0, 1]", "SEARCH.PDARTS.NUM_KEEP", "[4, 1]",
        "SEARCH.PDARTS.STAGE_EPOCHS", "[2, 2]", "SEARCH.PDARTS.WARMUP_EPOCHS", "[1, 1]",
        "SEARCH.PDARTS.SKIP_DROPOUT", "[0.1, 0.4]", "OPTIM.ITER_LR", "False"]


def _cfg(out, *extra):
    return load_cfg(search_defaults(), None, TINY + ["OUT_DIR", str(out)] + list(extra), validate_search_cfg)


@pytest.fixture
def quick_pictures(monkeypatch):
    """No matplotlib (pictures are tested elsewhere): the hooks write one-byte stand-ins."""
    import unnas.search.hooks as search_hooks

    def picture(*args):
        io_mod._atomic_write_bytes(next(a for a in args if isinstance(a, Path)), b"P")
    monkeypatch.setattr(search_hooks, "plot_cell", picture)
    monkeypatch.setattr(search_hooks, "plot_alpha_history", picture)


def _run(out, *extra, resume=False, **stop):
    cfg = _cfg(out, *extra)
    s = make_searcher(cfg, out, default_hooks(cfg, True, progress=False))
    if resume:
        assert s.resume()
    s.run(**stop)
    return s


@pytest.fixture(scope="module")
def reference(tmp_path_factory, blobs):
    mp = pytest.MonkeyPatch()
    import unnas.search.hooks as search_hooks
    mp.setattr(search_hooks, "plot_cell", lambda *a: None)
    mp.setattr(search_hooks, "plot_alpha_history", lambda *a: None)
    out = tmp_path_factory.mktemp("pdarts_ref")
    s = _run(out)
    mp.undo()
    return s, out


def test_a_plain_searcher_refuses_a_pdarts_config(tmp_path, blobs):
    with pytest.raises(ConfigError, match="build the search with unnas.search.make_searcher"):
        Searcher(_cfg(tmp_path), tmp_path, [])


def test_config_errors_are_one_line(tmp_path, blobs):
    for extra, words in [(["SEARCH.EPOCHS", "5"], "SEARCH.EPOCHS (5) must be the sum"),
                         (["SEARCH.PDARTS.NUM_KEEP", "[5, 3, 1]"], "NUM_KEEP has 3 entries"),
                         (["SEARCH.PDARTS.NUM_KEEP", "[4, 2]"], "must decrease strictly"),
                         (["SEARCH.PDARTS.WARMUP_EPOCHS", "[1, 2]"], "WARMUP_EPOCHS [1, 2] must be"),
                         (["SEARCH.ARCH_START_EPOCH", "0.5"], "SEARCH.ARCH_START_EPOCH is not used"),
                         (["SEARCH.PDARTS.SKIP_DROPOUT", "[0.1, 1.0]"], "SKIP_DROPOUT rates"),
                         (["SEARCH.MAX_SKIPS_NORMAL", "-2"], "SEARCH.MAX_SKIPS_NORMAL must be")]:
        with pytest.raises(ConfigError, match=re.escape(words)) as err:
            _cfg(tmp_path, *extra)
        assert "\n" not in str(err.value)


def test_stages_prune_the_op_space_and_restart(reference):
    s, out = reference
    assert isinstance(s, PDartsSearcher)
    stages = s.summary()["pdarts"]["stages"]
    assert [(r["depth"], r["ops_per_edge"], r["first_epoch"]) for r in stages] == [(2, 8, 0), (3, 4, 2)]
    assert len(s.model.trunk.cells) == 3
    hist = json.loads((out / "alpha_history.json").read_text())["epochs"]
    for cell in ("normal", "reduce"):
        mask = prune_op_mask(torch.tensor(hist[1][cell]), torch.ones(14, 8, dtype=torch.bool), 4)  # end of stage 1
        assert [[p for p, m in zip(PRIMITIVES, row) if m] for row in mask.tolist()] == stages[1][f"{cell}_ops"]
        assert torch.equal(torch.tensor(hist[2][cell]) > 0, mask)        # pruned ops: weight exactly 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert [r["pdarts_stage"] for r in epochs] == [1, 1, 2, 2]
    assert [r["arch_loss"] is None for r in epochs] == [True, False] * 2   # warm-up: weights only
    assert [r["skip_dropout"] for r in epochs] == pytest.approx([0.05, 0.1, 0.2, 0.4])
    steps = [r["lr"] for r in records if r["type"] == "step"]
    assert steps[0] == steps[4] == pytest.approx(0.025) and steps[2] < 0.025   # the cosine restarts per stage
    genotype = json.loads((out / "genotype.json").read_text())
    assert sum(op == "skip_connect" for op, _ in genotype["normal"]) <= 2            # P-DARTS' M = 2
    assert json.loads((out / "summary.json").read_text())["skip_limit"]["max_skips_normal"] == 2
    for cell in ("normal", "reduce"):                                # ops of the last stage's op space
        assert all(op in stages[1][f"{cell}_ops"][edge_index(k // 2, j)] for k, (op, j) in enumerate(genotype[cell]))


@pytest.mark.parametrize("stop, ckpt_steps", [
    ({"max_epochs": 2}, 0),    # killed at the stage boundary: resumes into the pruned stage 2
    ({"max_steps": 5}, 0),     # killed in stage 2 before any of its checkpoints: redoes the pruning
    ({"max_steps": 7}, 1),     # killed mid stage 2 (mid epoch), right after a step checkpoint
])
def test_resume_across_and_within_stages_is_exact(tmp_path, reference, quick_pictures, stop, ckpt_steps):
    ref, ref_dir = reference
    extra = ["CHECKPOINT_STEPS", str(ckpt_steps)]
    killed = _run(tmp_path, *extra, **stop)
    assert killed.stopped_early and not (tmp_path / "genotype.json").exists()
    del killed
    resumed = _run(tmp_path, *extra, resume=True)
    for a, b in zip(list(resumed.arch.state_dict().values()) + list(resumed.model.state_dict().values()),
                    list(ref.arch.state_dict().values()) + list(ref.model.state_dict().values())):
        assert torch.equal(a, b)
    for name in ("genotype.json", "genotypes.jsonl", "alpha_history.json"):
        assert (tmp_path / name).read_text() == (ref_dir / name).read_text(), name
    strip = lambda r: {k: v for k, v in r.items() if k != "epoch_seconds"}  # noqa: E731
    ours = [strip(json.loads(x)) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    theirs = [strip(json.loads(x)) for x in (ref_dir / "metrics.jsonl").read_text().splitlines()]
    assert ours == theirs
    assert resumed.summary()["pdarts"] == ref.summary()["pdarts"]
