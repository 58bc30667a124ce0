"""First- vs second-order architecture gradients, and a finite-difference check of the latter."""
import pytest
import torch
from torch.func import functional_call

from search_spaces import get_space
from search_spaces.darts.supernet import SearchModel
from unnas.search.bilevel import BilevelStep
from unnas.data import DataInfo
from unnas.tasks import build_task

INFO = DataInfo(num_classes=3, image_size=8, mean=(0.5,) * 3, std=(0.25,) * 3)


SMOOTH_OPS = ("none", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3")


def _setup(dtype=torch.float64, seed=0, primitives=None):
    torch.manual_seed(seed)
    space = get_space("darts", **({"primitives": primitives} if primitives else {}))
    task = build_task("cls", INFO)
    trunk = space.build_supernet(3, 2, 3, "cifar")
    model = SearchModel(trunk, task.build_head(trunk.out_channels)).to(dtype)
    arch = space.new_arch_parameters().to(dtype)
    with torch.no_grad():  # larger alphas than the 1e-3 init make the check sensitive
        for p in arch.parameters():
            p.normal_(0, 0.5)
    w_opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(arch.parameters(), lr=3e-4)
    xt, yt = torch.randn(4, 3, 8, 8, dtype=dtype), torch.tensor([0, 1, 2, 0])
    xv, yv = torch.randn(4, 3, 8, 8, dtype=dtype), torch.tensor([2, 1, 0, 1])
    return model, arch, task, w_opt, a_opt, (xt, yt, xv, yv)


@pytest.mark.parametrize("fd_eps, rtol", [(0.01, 2e-2), (1e-4, 1e-4)])
def test_second_order_matches_finite_differences(monkeypatch, fd_eps, rtol):
    """DARTS' R = 0.01/||v|| is accurate to ~1%; a smaller R converges to the exact gradient."""
    # ReLU and max-pool kinks make any finite-difference check of a tiny network flaky; the
    # algorithm is what is tested here, so use a smooth activation and smooth ops only.
    softplus = torch.nn.functional.softplus
    monkeypatch.setattr(torch.nn.ReLU, "forward", lambda self, x: softplus(x, beta=4.0))
    monkeypatch.setattr(torch.nn.functional, "relu", lambda x, inplace=False: softplus(x, beta=4.0))
    model, arch, task, w_opt, a_opt, (xt, yt, xv, yv) = _setup(primitives=SMOOTH_OPS)
    xi = 0.5
    step = BilevelStep(model, arch, task, w_opt, a_opt, order="second", fd_eps=fd_eps)
    _, grads = step.second_order_grads(xt, yt, xv, yv, xi)
    _, first = step._first_order_grads(xv, yv)
    # the implicit term is not negligible here, so the check below can tell the orders apart
    assert max(float((g - f).abs().max()) for g, f in zip(grads, first)) > 1e-4

    names = [n for n, _ in model.named_parameters()]
    params = [p.detach() for p in model.parameters()]
    buffers = dict(model.named_buffers())
    wd = w_opt.param_groups[0]["weight_decay"]

    def objective(a_n, a_r):
        """L_val(w - xi * (grad_w L_train(w, a) + wd w), a), evaluated exactly (no Hessian approximation)."""
        from search_spaces.darts.supernet import ArchWeights
        wts = ArchWeights(torch.softmax(a_n, -1), torch.softmax(a_r, -1))
        p = [q.clone().requires_grad_(True) for q in params]
        state = {**dict(zip(names, p)), **{k: b.clone() for k, b in buffers.items()}}
        lt = task.loss(functional_call(model, state, (xt, wts)), yt)
        g = torch.autograd.grad(lt, p)
        unrolled = {n: q.detach() - xi * (gg + wd * q.detach()) for n, q, gg in zip(names, p, g)}
        state = {**unrolled, **{k: b.clone() for k, b in buffers.items()}}
        return task.loss(functional_call(model, state, (xv, wts)), yv)

    a_n, a_r = arch.alpha_normal.detach(), arch.alpha_reduce.detach()
    eps = 1e-5
    rng = torch.Generator().manual_seed(1)
    for which in (0, 1):
        for _ in range(6):
            i, j = torch.randint(0, 14, (1,), generator=rng).item(), torch.randint(1, len(SMOOTH_OPS), (1,), generator=rng).item()
            d = torch.zeros_like(a_n)
            d[i, j] = eps
            if which == 0:
                num = (objective(a_n + d, a_r) - objective(a_n - d, a_r)) / (2 * eps)
            else:
                num = (objective(a_n, a_r + d) - objective(a_n, a_r - d)) / (2 * eps)
            ana = grads[which][i, j]
            assert torch.isclose(ana, num, rtol=rtol, atol=1e-7), (which, i, j, float(ana), float(num))


def test_first_and_second_order_steps_differ():
    results = []
    for order in ("first", "second"):
        model, arch, task, w_opt, a_opt, (xt, yt, xv, yv) = _setup()
        step = BilevelStep(model, arch, task, w_opt, a_opt, order=order)
        before = [p.detach().clone() for p in model.parameters()]
        step.arch_step(xv, yv, xt, yt, lr=0.5)
        # the architecture step must not touch the network weights
        assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
        results.append(torch.cat([p.detach().flatten() for p in arch.parameters()]))
    assert not torch.allclose(results[0], results[1])


def test_weight_step_leaves_alphas_and_clips():
    model, arch, task, w_opt, a_opt, (xt, yt, _, _) = _setup(torch.float32)
    before = [p.detach().clone() for p in arch.parameters()]
    step = BilevelStep(model, arch, task, w_opt, a_opt, grad_clip=1e-3)
    step.weight_step(xt.float(), yt)
    assert all(torch.equal(a, b) for a, b in zip(before, arch.parameters()))
    assert all(p.grad is None for p in arch.parameters())
    total = torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters() if p.grad is not None))
    assert total <= 1e-3 * 1.01
