"""The search section's models for ``tools/bench.py`` (children of :mod:`benchmarks.harness`).

* ``ours`` (:func:`build_ours`): the search exactly as ``tools/search.py`` runs it. A search config
  (``search_defaults()`` plus the bench's settings as config keys, validated like the search's)
  goes to :func:`unnas.search.build.build_search`, the searcher's own builder: supernet,
  architecture parameters, both optimisers and the :class:`~unnas.search.bilevel.BilevelStep`,
  with the memory format, autocast dtype and compilation it decides (``unnas.utils.memory_format``: bf16
  on a CPU runs NCHW even when ``SEARCH.CHANNELS_LAST`` asks for channels-last). One step is
  ``Searcher.run_step``'s: the architecture step on one batch (second order: with the training
  batch and the learning rate, here ``OPTIM.LR``, where the cosine schedule starts), then the
  weight step on the other. ``info["channels_last"]`` / ``info["autocast"]`` say what it ran with.
* ``textbook`` (:func:`build_textbook`): ``benchmarks/textbook_supernet.py`` (all 8 ops per edge,
  NCHW fp32) stepped as the DARTS release does (train_search.py / architect.py):
  ``loss.backward()`` computes every gradient in the architecture step, and the alphas stay in
  the weight step's graph. It loads the trunk, head and alphas ours saved (``spec["state_out"]``
  -> ``spec["state_in"]``) and sees the same two fixed batches, so the first architecture losses
  agree up to float rounding when the weight mapping is right.
"""
from __future__ import annotations

import copy
import sys

import torch

from unnas.engine import RunContext
from unnas.search.build import build_search
from unnas.search.config import search_defaults, validate_search_cfg

from .harness import memory_mark
from .inputs import task_batches
from .report import nominal_flops


def search_config(spec: dict):
    """``search_defaults()`` with the bench's settings; ``spec["channels_last"]`` None keeps the
    config's ``SEARCH.CHANNELS_LAST``."""
    cfg = search_defaults()
    opts = ["TASK.NAME", spec["task"], "MODEL.WIDTH", spec["width"], "MODEL.DEPTH", spec["depth"],
            "SEARCH.ORDER", spec["order"], "SEARCH.BATCH_SIZE", spec["batch"],
            "SEARCH.PARTIAL_CHANNELS", spec["partial_channels"], "SEARCH.EDGE_NORM", spec["edge_norm"],
            "SEARCH.AMP", spec["amp"], "SEARCH.NUM_THREADS", spec["threads"], "SEED", spec["seed"],
            "DEVICE", spec["device"], "SEARCH.COMPILE", spec.get("compile", "none")]
    if spec["channels_last"] is not None:
        opts += ["SEARCH.CHANNELS_LAST", spec["channels_last"]]
    cfg.merge_from_list(opts)
    validate_search_cfg(cfg)
    return cfg


def build_ours(spec: dict, device: torch.device):
    """Our supernet and BilevelStep from the searcher's builder, stepped as ``Searcher.run_step``."""
    cfg = search_config(spec)
    task, ((xa, ya), (x, y)) = task_batches(cfg, spec, device)
    mark = memory_mark(device)
    torch.manual_seed(cfg.SEED)   # the trunk's initialisation, seeded as setup_run seeds it
    parts = build_search(cfg, task, spec["size"], RunContext(device))
    if spec.get("state_out"):     # the textbook child starts from these weights
        torch.save({"trunk": parts.model.trunk.state_dict(), "head": parts.model.head.state_dict(),
                    "arch": parts.arch.state_dict()}, spec["state_out"])
    step_fn, lr, second = parts.step_fn, cfg.OPTIM.LR, cfg.SEARCH.ORDER == "second"

    def step():
        if second:
            loss = step_fn.arch_step(xa, ya, x, y, lr)
        else:
            loss = step_fn.arch_step(xa, ya)
        step_fn.weight_step(x, y)
        return loss

    def count_flops():
        with torch.no_grad():
            weights = parts.arch.weights()
        return nominal_flops(parts.model, weights, x, spec["batch"], task.images_per_sample, 5 if second else 2)

    info = {"params": sum(p.numel() for p in parts.model.parameters()), "baseline": mark,
            "channels_last": parts.channels_last, "autocast": cfg.SEARCH.AMP if parts.amp_dtype is not None else None,
            "compile": cfg.SEARCH.COMPILE}
    return step, info, count_flops


def darts_unrolled_backward(model, alphas: list, loss_of, w_opt, train: tuple, val: tuple, eta: float):
    """DARTS' Architect._backward_step_unrolled: a virtual SGD step (momentum, weight decay) on a
    deep copy of the model, the validation loss there, and the finite-difference Hessian-vector
    product with R = 0.01 / ||v||; leaves the architecture gradient in ``alphas``' ``.grad``.
    ``loss_of(net, inputs, targets)``; returns the unrolled validation loss."""
    params = list(model.parameters())
    group = w_opt.param_groups[0]
    theta = torch.nn.utils.parameters_to_vector(params).detach()
    moment = torch.cat([w_opt.state[p]["momentum_buffer"].view(-1) if "momentum_buffer" in w_opt.state[p]
                        else torch.zeros_like(p).view(-1) for p in params]) * group["momentum"]
    dtheta = torch.nn.utils.parameters_to_vector(torch.autograd.grad(loss_of(model, *train), params))
    unrolled = copy.deepcopy(model)
    torch.nn.utils.vector_to_parameters(theta - eta * (moment + dtheta + group["weight_decay"] * theta),
                                        unrolled.parameters())
    loss = loss_of(unrolled, *val)
    loss.backward()
    vector = [p.grad for p in unrolled.parameters()]
    r = 0.01 / float(torch.nn.utils.parameters_to_vector(vector).norm())
    implicit = []
    for sign in (1.0, -2.0):    # w + R v, then w - R v
        with torch.no_grad():
            for p, v in zip(params, vector):
                p.add_(v, alpha=sign * r)
        implicit.append(torch.autograd.grad(loss_of(model, *train), alphas))
    with torch.no_grad():
        for p, v in zip(params, vector):
            p.add_(v, alpha=r)
        for a, gp, gm in zip(alphas, *implicit):
            a.grad.sub_(eta * (gp - gm) / (2 * r))
    return loss


def build_textbook(spec: dict, device: torch.device):
    """The textbook supernet stepped as the DARTS release does, with the search config's
    optimiser settings and task."""
    from search_spaces.darts.stems import choose_stem

    from .textbook_supernet import TextbookArch, TextbookModel, TextbookTrunk, load_from_ours

    cfg = search_config(spec)
    task, ((xa, ya), (x, y)) = task_batches(cfg, spec, device)
    mark = memory_mark(device)
    torch.manual_seed(spec["seed"])
    trunk = TextbookTrunk(task.in_channels, spec["width"], spec["depth"], choose_stem(cfg.MODEL.STEM, spec["size"]),
                          task.single_reduction)
    head = task.build_head(trunk.out_channels)   # ours' head class; its weights are loaded below
    arch = TextbookArch()
    info = {"baseline": mark}
    try:   # a failed mapping must not stop the benchmark
        state = torch.load(spec["state_in"], map_location="cpu")
        load_from_ours(trunk, state["trunk"])
        head.load_state_dict(state["head"])
        with torch.no_grad():
            arch.alpha_normal.copy_(state["arch"]["alpha_normal"])
            arch.alpha_reduce.copy_(state["arch"]["alpha_reduce"])
        del state
    except Exception as exc:
        info["warning"] = (f"textbook does NOT share ours' weights ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); it uses its own init")
        print(f"bench: warning: {info['warning']}", file=sys.stderr)
    model = TextbookModel(trunk, head).to(device)
    arch.to(device)
    params = list(model.parameters())
    info["params"] = sum(p.numel() for p in params)
    w_opt = torch.optim.SGD(params, lr=cfg.OPTIM.LR, momentum=cfg.OPTIM.MOMENTUM, weight_decay=cfg.OPTIM.WEIGHT_DECAY)
    a_opt = torch.optim.Adam(arch.parameters(), lr=cfg.ARCH.LR, betas=tuple(cfg.ARCH.BETAS),
                             weight_decay=cfg.ARCH.WEIGHT_DECAY)

    def loss_of(net, inputs, targets):
        return task.loss(net(inputs, arch.weights()), targets)

    def step():
        # architecture step (Architect.step)
        a_opt.zero_grad()
        if spec["order"] == "second":
            loss = darts_unrolled_backward(model, list(arch.parameters()), loss_of, w_opt, (x, y), (xa, ya),
                                           cfg.OPTIM.LR)
        else:
            loss = loss_of(model, xa, ya)
            loss.backward()           # every gradient, the weights' included, as DARTS does
        a_opt.step()
        # weight step (train_search.train): the alphas stay in the graph
        w_opt.zero_grad()
        loss_of(model, x, y).backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.OPTIM.GRAD_CLIP)
        w_opt.step()
        return loss.detach()

    return step, info, None    # FLOPs: ours' count stands for both
