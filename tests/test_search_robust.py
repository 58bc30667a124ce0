"""Robust-DARTS remedies and collapse diagnostics (unnas/search/regularizers.py, diagnostics.py):
beta-DARTS' term and gradient, DARTS-' auxiliary skip, SDARTS-RS' perturbation, the power-iteration
eigenvalue against an explicit Hessian, DARTS-ES against RobustDARTS' own bookkeeping, the
per-epoch diagnostics, and exact resume with every option on."""
import json
import math
import random

import pytest
import torch

from search_spaces import get_space
from search_spaces.darts.genotype import Genotype
from search_spaces.darts.supernet import ArchWeights, EdgeGroup, SearchModel
from search_spaces.darts.zoo import get as get_genotype
from unnas.config import ConfigError, load_cfg
from unnas.data import DATASETS, DataInfo, TensorDataset, step_generator
from unnas.search import Searcher
from unnas.search.bilevel import BilevelStep
from unnas.search.config import search_defaults, validate_search_cfg
from unnas.search.diagnostics import (cell_counts, collapse_warning, darts_es, hessian_eigenvalue,
                                      hessian_vector_product, largest_eigenvalue, op_entropy, power_iteration)
from unnas.search.hooks import default_hooks
from unnas.search.regularizers import (SDARTS_STREAM, aux_skip_weight, beta_decay_loss, beta_decay_weight,
                                       sdarts_epsilon, sdarts_perturb)
from unnas.tasks import build_task

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py

INFO = DataInfo(num_classes=3, image_size=8, mean=(0.5,) * 3, std=(0.25,) * 3)


# ---- beta-DARTS ---------------------------------------------------------------------------------
def test_beta_decay_term_and_gradient_by_hand():
    a = torch.tensor([[0.0, 1.0, -1.0], [2.0, 0.5, 0.5]], requires_grad=True)
    b = torch.tensor([[0.3, 0.3, 0.3]], requires_grad=True)
    loss = beta_decay_loss([a, b])
    rows = [[0.0, 1.0, -1.0], [2.0, 0.5, 0.5], [0.3, 0.3, 0.3]]
    expected = sum(math.log(sum(math.exp(v) for v in r)) for r in rows) / 3
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)
    ga, gb = torch.autograd.grad(loss, [a, b])
    for grad, r in ((ga[0], rows[0]), (ga[1], rows[1]), (gb[0], rows[2])):
        z = sum(math.exp(v) for v in r)
        assert grad.tolist() == pytest.approx([math.exp(v) / z / 3 for v in r], rel=1e-6)   # softmax / edges
    assert beta_decay_weight(50, "linear", 0, 100) == 0 and beta_decay_weight(50, "linear", 30, 100) == 15
    assert beta_decay_weight(50, "constant", 0, 100) == 50 and beta_decay_weight(0, "linear", 9, 10) == 0


def _tiny(dtype=torch.float64, aux_skip=False, primitives=None):
    torch.manual_seed(0)
    space = get_space("darts", **({"primitives": primitives} if primitives else {}))
    task = build_task("cls", INFO)
    trunk = space.build_supernet(3, 2, 3, "cifar", **({"aux_skip": True} if aux_skip else {}))
    model = SearchModel(trunk, task.build_head(trunk.out_channels)).to(dtype)
    arch = space.new_arch_parameters(generator=torch.Generator().manual_seed(1)).to(dtype)
    with torch.no_grad():
        for p in arch.parameters():
            p.normal_(0, 0.5, generator=torch.Generator().manual_seed(2))
    x, y = torch.randn(4, 3, 8, 8, dtype=dtype, generator=torch.Generator().manual_seed(3)), torch.tensor([0, 1, 2, 0])
    return model, arch, task, x, y


def test_arch_step_adds_the_beta_term_gradient():
    """SGD with lr 1 on the alphas: the step with the term moves each alpha by lambda * softmax / edges more."""
    moved = []
    for lam in (0.0, 7.0):
        model, arch, task, x, y = _tiny()
        start = [p.detach().clone() for p in arch.parameters()]
        step = BilevelStep(model, arch, task, torch.optim.SGD(model.parameters(), lr=0.1),
                           torch.optim.SGD(arch.parameters(), lr=1.0))
        if lam:
            step.arch_regularizer = lambda a: lam * beta_decay_loss([a.alpha_normal, a.alpha_reduce])
        step.arch_step(x, y)
        moved.append([s - p.detach() for s, p in zip(start, arch.parameters())])
    expected = [7.0 * torch.softmax(s, -1) / 28 for s in start]
    for plain, reg, exp in zip(*moved, expected):
        torch.testing.assert_close(reg - plain, exp, rtol=1e-9, atol=1e-12)


def test_pruned_ops_stay_out_of_the_beta_term_and_the_perturbation():
    """With P-DARTS' op masks the term runs over each edge's kept ops, and SDARTS keeps pruned ops at 0."""
    from search_spaces.darts.supernet import ArchParameters
    from unnas.search.regularizers import arch_logits
    mask = torch.zeros(14, 8, dtype=torch.bool)
    mask[:, [1, 4, 6]] = True
    arch = ArchParameters(generator=torch.Generator().manual_seed(0), op_mask=(mask, mask))
    loss = beta_decay_loss(arch_logits(arch))
    kept = torch.cat([arch.alpha_normal[:, [1, 4, 6]], arch.alpha_reduce[:, [1, 4, 6]]])
    torch.testing.assert_close(loss, torch.logsumexp(kept, -1).mean())
    w = sdarts_perturb(arch.weights(), 0.3, step_generator(1, 0, 0, SDARTS_STREAM), (mask, mask))
    assert (w.normal[~mask] == 0).all() and (w.reduce[~mask] == 0).all()
    torch.testing.assert_close(w.normal.sum(-1), torch.ones(14))


# ---- DARTS- -------------------------------------------------------------------------------------
def test_aux_skip_schedule_follows_darts_minus():
    assert [aux_skip_weight(1.0, "linear", e, 4) for e in range(4)] == [1.0, 0.75, 0.5, 0.25]
    cos = [aux_skip_weight(1.0, "cosine", e, 4) for e in range(4)]
    assert cos == pytest.approx([1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2])
    assert aux_skip_weight(0.5, "none", 3, 4) == 0.5 and aux_skip_weight(2.0, "linear", 1, 4) == 1.5


@pytest.mark.parametrize("stride", [1, 2])
def test_aux_skip_adds_the_identity_to_every_edge(stride):
    """beta = 1 adds x (stride 1) or FactorizedReduce(x) (stride 2) to each edge's mixed output."""
    torch.manual_seed(0)
    g = EdgeGroup(4, 3, stride, aux_skip=True).double()
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    w = torch.softmax(torch.randn(3, 8, dtype=torch.float64), -1)
    g.aux_weight = 0.0
    without = g(x, w)
    g.aux_weight = 1.0
    with_aux = g(x, w)
    if stride == 1:
        expected = [x] * 3
    else:
        from search_spaces.darts.ops import FactorizedReduce
        expected = []
        for e in range(3):       # each edge's own FactorizedReduce (stacked weights)
            fr = FactorizedReduce(4, 4, affine=False).double()
            fr.conv_1.weight.data.copy_(g.aux_reduce.conv_1.weight[2 * e:2 * e + 2])
            fr.conv_2.weight.data.copy_(g.aux_reduce.conv_2.weight[2 * e:2 * e + 2])
            expected.append(fr(x))
    for a, b, e in zip(with_aux, without, expected):
        torch.testing.assert_close(a - b, e, rtol=1e-9, atol=1e-9)
    # without aux_skip the group has no auxiliary modules and the same mixed output
    torch.manual_seed(0)
    plain = EdgeGroup(4, 3, stride).double()
    assert plain.aux_reduce is None
    for a, b in zip(plain(x, w), without):
        torch.testing.assert_close(a, b)


def test_trunk_sets_the_aux_weight_everywhere():
    model, *_ = _tiny(aux_skip=True)
    model.trunk.set_aux_skip_weight(0.25)
    groups = [g for c in model.trunk.cells for g in c.groups]
    assert all(g.aux_skip and g.aux_weight == 0.25 for g in groups)
    assert sum(g.aux_reduce is not None for g in groups) == 4      # 2 reduction cells x the 2 strided groups


# ---- SDARTS-RS ----------------------------------------------------------------------------------
def test_sdarts_perturbation_is_bounded_projected_and_seeded():
    w = torch.softmax(torch.randn(14, 8, generator=torch.Generator().manual_seed(0)), -1)
    weights = ArchWeights(w, w.flip(0))
    eps = 0.05
    a = sdarts_perturb(weights, eps, step_generator(1, 2, 3, SDARTS_STREAM))
    b = sdarts_perturb(weights, eps, step_generator(1, 2, 3, SDARTS_STREAM))
    c = sdarts_perturb(weights, eps, step_generator(1, 2, 4, SDARTS_STREAM))
    assert torch.equal(a.normal, b.normal) and torch.equal(a.reduce, b.reduce)
    assert not torch.equal(a.normal, c.normal)
    # before the projection the noise lies in [-eps, eps]: redo it without the projection
    g = step_generator(1, 2, 3, SDARTS_STREAM)
    noise = 2 * torch.rand(w.shape, generator=g) - 1
    assert noise.abs().max() <= 1 and (noise * eps).abs().max() <= eps
    raw = (w + noise * eps).clamp(0, 1)
    torch.testing.assert_close(a.normal, raw / raw.sum(-1, keepdim=True))
    torch.testing.assert_close(a.normal.sum(-1), torch.ones(14))
    assert (a.normal >= 0).all() and a.normal_edges is None
    assert sdarts_epsilon(0.3, 0.03, "linear", 0, 10) == pytest.approx(0.03)
    assert sdarts_epsilon(0.3, 0.03, "linear", 5, 10) == pytest.approx(0.165)
    assert sdarts_epsilon(0.3, 0.03, "constant", 0, 10) == 0.3 and sdarts_epsilon(0.0, 0.03, "linear", 5, 10) == 0


def test_sdarts_perturbs_the_weight_step_only(tmp_path, toy_data, monkeypatch):
    s = _searcher(tmp_path, "SEARCH.SDARTS.EPSILON", "0.3", "SEARCH.SDARTS.SCHEDULE", "constant")
    seen = {"weight": [], "arch": []}
    real_weight, real_first = s.step_fn.weight_step, s.step_fn._first_order_grads

    def weight_step(x, y, weights=None):
        seen["weight"].append(weights)
        return real_weight(x, y, weights)

    def first_order(xv, yv):
        seen["arch"].append(s.arch.weights().normal.detach().clone())
        return real_first(xv, yv)

    monkeypatch.setattr(s.step_fn, "weight_step", weight_step)
    monkeypatch.setattr(s.step_fn, "_first_order_grads", first_order)
    before = s.arch.weights().normal.detach().clone()
    s.run(max_steps=1)
    (perturbed,), (arch_view,) = seen["weight"], seen["arch"]
    torch.testing.assert_close(arch_view, before, rtol=0, atol=0)        # the arch step: unperturbed alphas
    after = s.arch.weights()                                              # the weight step: after the arch step,
    expected = sdarts_perturb(after, 0.3, step_generator(s.cfg.SEED, 0, 0, SDARTS_STREAM))   # perturbed, seeded
    torch.testing.assert_close(perturbed.normal, expected.normal, rtol=0, atol=0)
    torch.testing.assert_close(perturbed.reduce, expected.reduce, rtol=0, atol=0)
    assert (perturbed.normal - after.normal).abs().max() > 1e-3


# ---- the Hessian's dominant eigenvalue -----------------------------------------------------------
def test_power_iteration_matches_explicit_hessian_on_two_edges():
    """A 2-edge toy: node = sum over edges of softmax(alpha_e) . ops(x_e); the largest eigenvalue
    of torch.autograd.functional.hessian vs power iteration on HVPs. This Hessian has a +/- pair
    (-1.588, +1.584) that plain power iteration cannot separate: the shifted second run does."""
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(5, generator=g, dtype=torch.float64) for _ in range(2)]
    mats = [torch.randn(5, 5, generator=g, dtype=torch.float64) for _ in range(2)]
    target = torch.randn(5, generator=g, dtype=torch.float64)

    def loss_of(alpha):                                  # alpha: (2 edges, 3 ops)
        node = 0
        for e in range(2):
            ops = torch.stack([xs[e], torch.tanh(mats[e] @ xs[e]), xs[e] ** 2])
            node = node + torch.softmax(alpha[e], -1) @ ops
        return ((node - target) ** 2).sum()

    alpha = torch.randn(2, 3, generator=g, dtype=torch.float64)
    eigs = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss_of, alpha).reshape(6, 6))
    assert eigs[0] < 0 and abs(eigs[0]) > eigs[-1] > 0.95 * abs(eigs[0])
    a = alpha.clone().requires_grad_(True)
    est = hessian_eigenvalue(loss_of(a), [a], 200, torch.Generator().manual_seed(5))
    assert est == pytest.approx(float(eigs[-1]), rel=1e-6)
    # the L2 term adds weight_decay to every eigenvalue
    est_wd = hessian_eigenvalue(loss_of(a), [a], 200, torch.Generator().manual_seed(5), weight_decay=0.5)
    assert est_wd == pytest.approx(float(eigs[-1]) + 0.5, rel=1e-6)


def test_largest_eigenvalue_cases():
    v0 = torch.ones(3, dtype=torch.float64)
    for diag, top in (([3.0, 1.0, 0.5], 3.0), ([-3.0, 1.0, 0.5], 1.0), ([-3.0, -1.0, -0.5], -0.5)):
        d = torch.tensor(diag, dtype=torch.float64)
        assert largest_eigenvalue(lambda v: d * v, v0, 300) == pytest.approx(top, rel=1e-6), diag
    assert power_iteration(lambda v: torch.zeros_like(v), v0, 5) == (0.0, 0.0)


SMOOTH_OPS = ("none", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3")


def test_hessian_vector_products_through_the_supernet(monkeypatch):
    """Double backward through the real supernet (both cells' alphas) agrees with central
    differences of its gradient (smooth activation and ops, as tests/test_bilevel.py, so the
    differences do not straddle a kink)."""
    softplus = torch.nn.functional.softplus
    monkeypatch.setattr(torch.nn.ReLU, "forward", lambda self, x: softplus(x, beta=4.0))
    monkeypatch.setattr(torch.nn.functional, "relu", lambda x, inplace=False: softplus(x, beta=4.0))
    model, arch, task, x, y = _tiny(primitives=SMOOTH_OPS)
    params = [arch.alpha_normal, arch.alpha_reduce]

    def grad_at(delta):
        a = [(p.detach() + d).requires_grad_(True) for p, d in zip(params, delta)]
        loss = task.loss(model(x, ArchWeights(torch.softmax(a[0], -1), torch.softmax(a[1], -1))), y)
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, a)])

    hvp, n = hessian_vector_product(task.loss(model(x, arch.weights()), y), params, weight_decay=0.1)
    assert n == 2 * 14 * len(SMOOTH_OPS)
    v = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    vs = [v[:n // 2].view_as(params[0]), v[n // 2:].view_as(params[1])]
    eps = 1e-5
    fd = (grad_at([eps * t for t in vs]) - grad_at([-eps * t for t in vs])) / (2 * eps)
    torch.testing.assert_close(hvp(v), fd + 0.1 * v, rtol=1e-5, atol=1e-8)


# ---- DARTS-ES ----------------------------------------------------------------------------------
class RobustDartsTracker:
    """automl/RobustDARTS src/utils.py EVLocalAvg (update + early_stop), transcribed for the check."""

    def __init__(self, window=5, ev_freq=1, total_epochs=50):
        self.window, self.ev_freq, self.epochs = window, ev_freq, total_epochs
        self.stop_search, self.stop_epoch = False, total_epochs - 1
        self.ev, self.ev_local_avg, self.la_epochs = [], [], {}
        self.la_start_idx, self.la_end_idx = 0, window

    def update(self, epoch, ev):
        self.ev.append(ev)
        if len(self.ev) >= math.ceil(self.window / 2) and epoch < self.epochs - 1:
            if len(self.ev) < self.window:
                self.ev_local_avg.append(sum(self.ev) / len(self.ev))
            else:
                part = self.ev[self.la_start_idx:self.la_end_idx]
                self.ev_local_avg.append(sum(part) / len(part))
                self.la_start_idx += 1
                self.la_end_idx += 1
            self.la_epochs[epoch] = int(epoch - int(self.ev_freq * math.floor(self.window / 2)))
        elif len(self.ev) < math.ceil(self.window / 2):
            self.la_epochs[epoch] = -1

    def early_stop(self, epoch, factor=1.3, es_start_epoch=10, delta=4):
        if int(self.la_epochs[epoch] - self.ev_freq * delta) >= es_start_epoch:
            self.stop_search = self.ev_local_avg[-1] / self.ev_local_avg[-1 - delta] > factor
            if self.stop_search:
                self.stop_epoch = int(self.la_epochs[epoch] - self.ev_freq * delta)


def test_darts_es_agrees_with_robustdarts_bookkeeping():
    rng = random.Random(0)
    stops = 0
    for trial in range(300):
        epochs = 50
        grow_at = rng.randrange(5, 45)
        rate = rng.choice([1.02, 1.05, 1.1, 1.3])
        evs = [0.1 * (1 + 0.05 * rng.random()) * (rate ** max(0, e - grow_at)) for e in range(epochs)]
        ref, history, ours = RobustDartsTracker(total_epochs=epochs), [], None
        for epoch, ev in enumerate(evs):
            ref.update(epoch, ev)
            history.append((epoch, ev))
            if epoch == epochs - 1:
                break
            ref.early_stop(epoch)
            ours = darts_es(history)
            assert ref.stop_search == (ours is not None), (trial, epoch)
            if ours is not None:
                assert ours["kept_epoch"] == ref.stop_epoch == epoch - 6
                stops += 1
                break
    assert stops > 100


def test_darts_es_on_a_synthetic_sequence():
    flat = [(e, 1.0) for e in range(12)]
    assert darts_es(flat) is None
    jump = flat + [(12, 4.0)]                 # window 5, delta 4: averages centred on 10 and 6
    d = darts_es(jump, start_epoch=6)
    assert d["kept_epoch"] == 6 and d["avg_epoch"] == 10 and d["ratio"] == pytest.approx(1.6)
    assert darts_es(jump) is None                                     # kept epoch 6 < START_EPOCH 10
    assert darts_es(jump, start_epoch=6, factor=1.7) is None
    assert darts_es([(0, 1.0), (1, 2.0)], window=1, delta=1, start_epoch=0)["kept_epoch"] == 0


# ---- diagnostics ---------------------------------------------------------------------------------
def test_counts_entropy_and_warning_on_known_genotypes():
    darts_v2 = get_genotype("DARTS_V2")
    c = cell_counts(darts_v2)
    assert c == {"normal_skips": 2, "normal_param_free": 2, "reduce_skips": 3, "reduce_param_free": 8}
    assert collapse_warning(darts_v2) is None
    collapsed = Genotype([("skip_connect", 0), ("skip_connect", 1), ("skip_connect", 0), ("max_pool_3x3", 1),
                          ("sep_conv_3x3", 0), ("skip_connect", 2), ("avg_pool_3x3", 1), ("dil_conv_3x3", 3)],
                         [2, 3, 4, 5], darts_v2.reduce, [2, 3, 4, 5])
    assert cell_counts(collapsed)["normal_skips"] == 4 and cell_counts(collapsed)["normal_param_free"] == 6
    line = collapse_warning(collapsed, ("SEARCH.X 1",))
    assert "6 of 8 ops" in line and "SEARCH.BETA_DARTS.WEIGHT" in line and "SEARCH.X 1" in line and "\n" not in line
    assert op_entropy(torch.full((14, 8), 1 / 8)) == pytest.approx(math.log(8))
    assert op_entropy(torch.eye(8)) == pytest.approx(0.0, abs=1e-12)


def test_the_warning_is_logged_when_the_cell_turns_mostly_parameter_free():
    from types import SimpleNamespace
    from unnas.search.diagnostics import DiagnosticsHook
    hook = DiagnosticsHook(search_defaults())
    collapsed = Genotype([("skip_connect", 0)] * 4 + [("sep_conv_3x3", 1)] * 4, [2, 3, 4, 5],
                         get_genotype("DARTS_V2").reduce, [2, 3, 4, 5])
    loop = SimpleNamespace(is_main=True, epoch=3, epoch_stats=[{"normal_param_free": 1}])
    import logging

    records = []
    handler = logging.Handler(logging.WARNING)   # our own handler: a CLI test earlier in the session may have
    handler.emit = records.append                # set the "unnas" logger not to propagate to caplog's
    logger = logging.getLogger("unnas.search")
    logger.addHandler(handler)
    try:
        hook._warn(loop, collapsed, {})
        loop.epoch_stats.append({"normal_param_free": 4})       # still collapsed: no second line
        hook._warn(loop, collapsed, {})
    finally:
        logger.removeHandler(handler)
    lines = [r.getMessage() for r in records]
    assert len(lines) == 1 and lines[0].startswith("epoch 4: the derived normal cell is mostly parameter-free")
    assert "SEARCH.PDARTS.ENABLE" in lines[0] and "SEARCH.MAX_SKIPS_NORMAL" in lines[0]


# ---- the search: validation, records, early stop, exact resume -------------------------------------
def _build_toy(root="", split="train", num_train=16, num_test=8, seed=0, **_):
    n = num_train if split == "train" else num_test
    g = torch.Generator().manual_seed(seed * 2 + (0 if split == "train" else 1))
    images = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 4, (n,), generator=g)
    return TensorDataset(images, labels, DataInfo(4, 8, (0.5,) * 3, (0.29,) * 3), crop_pad=1)


@pytest.fixture
def toy_data(monkeypatch):
    """A tiny in-memory data set of 8x8 images, and no matplotlib (the pictures are tested
    elsewhere; each run saves seconds)."""
    import unnas.search.hooks as search_hooks
    DATASETS.register("robust_toy")(_build_toy)
    monkeypatch.setattr(search_hooks, "plot_cell", lambda *a, **k: None)
    monkeypatch.setattr(search_hooks, "plot_alpha_history", lambda *a, **k: None)
    yield
    DATASETS._items.pop("robust_toy", None)


TINY = ["DATA.DATASET", "robust_toy", "TASK.NAME", "cls", "MODEL.WIDTH", "4", "MODEL.DEPTH", "3",
        "SEARCH.BATCH_SIZE", "4", "SEARCH.STEPS_PER_EPOCH", "2", "SEARCH.EVAL_BATCHES", "1", "SEARCH.EPOCHS", "2",
        "DATA.SYNTHETIC.NUM_TRAIN", "16", "DATA.SYNTHETIC.NUM_TEST", "8", "LOG_PERIOD", "1", "SEARCH.NUM_THREADS", "1",
        "DEVICE", "cpu"]


def _cfg(out, *extra):
    return load_cfg(search_defaults(), None, TINY + ["OUT_DIR", str(out)] + list(extra), validate_search_cfg)


def _searcher(out, *extra):
    cfg = _cfg(out, *extra)
    return Searcher(cfg, out, default_hooks(cfg, True, progress=False))


@pytest.mark.parametrize("opts, key", [
    (["SEARCH.BETA_DARTS.WEIGHT", "-1"], "SEARCH.BETA_DARTS.WEIGHT"),
    (["SEARCH.BETA_DARTS.SCHEDULE", "cosine"], "SEARCH.BETA_DARTS.SCHEDULE"),
    (["SEARCH.AUX_SKIP.DECAY", "step"], "SEARCH.AUX_SKIP.DECAY"),
    (["SEARCH.AUX_SKIP.BETA", "0"], "SEARCH.AUX_SKIP.BETA"),
    (["SEARCH.SDARTS.EPSILON", "2"], "SEARCH.SDARTS.EPSILON"),
    (["SEARCH.SDARTS.EPSILON", "0.02"], "SEARCH.SDARTS.EPSILON_START"),
    (["SEARCH.HESSIAN.PERIOD", "-1"], "SEARCH.HESSIAN.PERIOD"),
    (["SEARCH.HESSIAN.ITERS", "0"], "SEARCH.HESSIAN.ITERS"),
    (["SEARCH.EARLY_STOP.ENABLED", "True"], "SEARCH.HESSIAN.PERIOD"),
    (["SEARCH.EARLY_STOP.FACTOR", "0.75"], "SEARCH.EARLY_STOP.FACTOR"),
])
def test_bad_values_are_one_line_errors(opts, key):
    with pytest.raises(ConfigError) as err:
        load_cfg(search_defaults(), None, opts, validate_search_cfg)
    assert key in str(err.value) and "\n" not in str(err.value)


def _final(s):
    return [p.detach().clone() for p in (*s.arch.parameters(), *s.model.parameters())]


ALL_ON = ["SEARCH.BETA_DARTS.WEIGHT", "50", "SEARCH.BETA_DARTS.SCHEDULE", "constant", "SEARCH.AUX_SKIP.ENABLED", "True",
          "SEARCH.SDARTS.EPSILON", "0.3", "SEARCH.HESSIAN.PERIOD", "1", "SEARCH.HESSIAN.ITERS", "1",
          "CHECKPOINT_STEPS", "1"]


def test_all_options_resume_exactly_and_record_diagnostics(tmp_path, toy_data):
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    ref = _searcher(ref_dir, *ALL_ON)
    ref.run()
    killed = _searcher(run_dir, *ALL_ON)
    killed.run(max_steps=3)                        # mid-epoch 2, after a step checkpoint
    del killed
    resumed = _searcher(run_dir, *ALL_ON)
    assert resumed.resume()
    resumed.run()
    assert all(torch.equal(a, b) for a, b in zip(_final(ref), _final(resumed)))
    for name in ("genotype.json", "genotypes.jsonl", "summary.json"):
        a, b = (json.loads(x) if name == "summary.json" else x
                for x in ((d / name).read_text() for d in (ref_dir, run_dir)))
        if name == "summary.json":
            a["out_dir"] = b["out_dir"] = ""
            a["final"].pop("epoch_seconds"), b["final"].pop("epoch_seconds")
        assert a == b, name
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in epochs if r["type"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [0, 1]
    ref_epochs = [r for r in ref.epoch_stats]
    for r, q in zip(epochs, ref_epochs):
        for k in ("hessian_eig", "normal_skips", "normal_param_free", "reduce_skips", "reduce_param_free",
                  "normal_entropy", "reduce_entropy", "beta_decay_weight", "aux_skip_weight", "sdarts_epsilon"):
            assert r[k] == q[k], k
    assert [r["aux_skip_weight"] for r in epochs] == [1.0, 0.5]
    assert [r["beta_decay_weight"] for r in epochs] == [50.0, 50.0]
    assert [r["sdarts_epsilon"] for r in epochs] == pytest.approx([0.03, 0.165])
    assert all(math.isfinite(r["hessian_eig"]) for r in epochs)
    tags = _tb_tags(run_dir / "tb")
    assert {"epoch/hessian_eig", "epoch/normal_skips", "epoch/normal_entropy"} <= tags


def _tb_tags(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return set(acc.Tags()["scalars"])


ES = ["SEARCH.EPOCHS", "5", "SEARCH.STEPS_PER_EPOCH", "1", "SEARCH.HESSIAN.PERIOD", "1", "SEARCH.EARLY_STOP.ENABLED", "True",
      "SEARCH.EARLY_STOP.WINDOW", "1", "SEARCH.EARLY_STOP.DELTA", "1", "SEARCH.EARLY_STOP.START_EPOCH", "0"]


def test_early_stop_keeps_the_earlier_genotype_and_survives_resume(tmp_path, toy_data, monkeypatch):
    """Eigenvalues 1, 1, 2, ...: DARTS-ES stops after epoch 2 (2 / 1 > 1.3) and keeps epoch 1's genotype."""
    monkeypatch.setattr(Searcher, "hessian_eigenvalue", lambda self, epoch, b, i: [1.0, 1.0, 2.0, 4.0, 8.0][epoch])
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    ref = _searcher(ref_dir, *ES)
    summary = ref.run()
    assert ref.finished and len(ref.epoch_stats) == 3
    assert summary["genotype_epoch"] == 1 and summary["early_stop"]["epoch"] == 2
    assert "DARTS-ES" in summary["genotype_reason"]
    history = [json.loads(line) for line in (ref_dir / "genotypes.jsonl").read_text().splitlines()]
    assert summary["genotype"] == history[1]["genotype"]
    assert Genotype.load(ref_dir / "genotype.json").to_dict() == history[1]["genotype"]
    assert json.loads((ref_dir / "summary.json").read_text())["genotype_epoch"] == 1

    killed = _searcher(run_dir, *ES)
    killed.run(max_epochs=2)
    del killed
    resumed = _searcher(run_dir, *ES)
    assert resumed.resume()
    assert resumed.run()["genotype"] == summary["genotype"] and len(resumed.epoch_stats) == 3
    # a resume after the stop does not continue the search
    again = _searcher(run_dir, *ES)
    assert again.resume() and again.finished and again.epochs == 3
    assert all(torch.equal(a, b) for a, b in zip(_final(ref), _final(resumed)))
