"""The train section's model for ``tools/bench.py`` (a child of :mod:`benchmarks.harness`).

A fixed genotype's network built by the trainer's own pieces from a train config
(``train_defaults()`` plus the bench's settings: genotype, width, depth, CIFAR stem, no auxiliary
head, batch, AMP, channels-last, COMPILE): :func:`unnas.train.network.resolve_network` +
:func:`~unnas.train.network.build_train_network`, the optimiser of
:func:`unnas.train.trainer.train_optimizer`, the memory format of
:func:`unnas.utils.memory_format.use_channels_last` (model and inputs, as ``Trainer.prepare``),
``torch.compile`` of the forward by :func:`unnas.engine.compilation.compile_module` (as the trainer),
stepped as ``Trainer.run_step`` at epoch 0 (no drop-path, no label smoothing; the GradScaler is
a no-op without fp16, which the bench does not offer): forward under autocast, the task's loss on
fp32 logits, backward, gradient clipping, SGD step.

:func:`build_textbook` is the reference it is timed against: ``benchmarks/textbook_network.py``
(NetworkCIFAR as DARTS / UnNAS build it, NCHW fp32, the UnNAS classifier of cls, rot or jig) with
our network's initial weights copied in (our network is built from the same config and seed,
then dropped), stepped as DARTS' train.py does (forward, the task's loss, backward, gradient
clipping, SGD with the config's settings), on the same batch. So the first losses of both agree
up to float rounding when the weight mapping is right.
"""
from __future__ import annotations

import torch

from unnas.engine.compilation import compile_module
from unnas.train.config import train_defaults, validate_train_cfg
from unnas.train.network import build_train_network, resolve_network
from unnas.train.trainer import train_optimizer
from unnas.utils.memory_format import use_channels_last

from .harness import memory_mark
from .inputs import data_info, task_batches
from .report import nominal_flops


def train_config(spec: dict):
    """``train_defaults()`` with the bench's settings; ``spec["channels_last"]`` None keeps the
    config's ``CHANNELS_LAST``."""
    cfg = train_defaults()
    opts = ["TASK.NAME", spec["task"], "MODEL.GENOTYPE", spec["genotype"], "MODEL.WIDTH", spec["width"],
            "MODEL.DEPTH", spec["depth"], "MODEL.STEM", "cifar", "MODEL.AUX", False,
            "TRAIN.BATCH_SIZE", spec["batch"], "AMP", spec["amp"], "NUM_THREADS", spec["threads"],
            "SEED", spec["seed"], "DEVICE", spec["device"], "COMPILE", spec.get("compile", "none")]
    if spec["channels_last"] is not None:
        opts += ["CHANNELS_LAST", spec["channels_last"]]
    cfg.merge_from_list(opts)
    validate_train_cfg(cfg)
    return cfg


def build_train(spec: dict, device: torch.device):
    """The genotype's network, optimiser and memory format as ``unnas.train.trainer.Trainer``."""
    cfg = train_config(spec)
    task, (_, (x, y)) = task_batches(cfg, spec, device)
    channels_last = use_channels_last(cfg.CHANNELS_LAST, cfg.AMP, device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    mark = memory_mark(device)
    torch.manual_seed(cfg.SEED)   # the network's initialisation, seeded as setup_run seeds it
    plan, _, _ = resolve_network(cfg, task, data_info(spec["size"]), None)
    net = build_train_network(plan, task).to(device)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    compile_module(net, cfg.COMPILE, device)   # as Trainer: the forward compiled in place
    net.train()
    opt = train_optimizer(cfg, net)
    params = [p for p in net.parameters() if p.requires_grad]
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.AMP)
    clip = cfg.OPTIM.GRAD_CLIP

    def step():
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            out = net(x)
        logits = out[0] if isinstance(out, tuple) else out
        loss = task.loss(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        return loss.detach()

    def count_flops():
        return nominal_flops(net, None, x, spec["batch"], task.images_per_sample, 1)

    info = {"params": sum(p.numel() for p in net.parameters()), "baseline": mark, "channels_last": channels_last,
            "autocast": cfg.AMP if dtype is not None else None, "compile": cfg.COMPILE}
    return step, info, count_flops


def build_textbook(spec: dict, device: torch.device):
    """The textbook evaluation network with ours' initial weights, stepped as DARTS' train.py."""
    from .textbook_network import load_from_ours, textbook_like

    cfg = train_config(spec)
    task, (_, (x, y)) = task_batches(cfg, spec, device)
    x = x.contiguous()
    mark = memory_mark(device)
    torch.manual_seed(cfg.SEED)   # ours' initialisation, to be copied (a few MB, then freed)
    plan, _, _ = resolve_network(cfg, task, data_info(spec["size"]), None)
    ours = build_train_network(plan, task)
    net = textbook_like(ours, task.name)
    load_from_ours(net, ours)
    del ours
    net.to(device).train()
    net.drop_path_prob = 0.0
    params = list(net.parameters())
    opt = torch.optim.SGD(params, lr=cfg.OPTIM.LR, momentum=cfg.OPTIM.MOMENTUM, weight_decay=cfg.OPTIM.WEIGHT_DECAY,
                          nesterov=bool(cfg.OPTIM.NESTEROV))
    clip = cfg.OPTIM.GRAD_CLIP

    def step():
        opt.zero_grad()
        out = net(x)
        logits = out[0] if isinstance(out, tuple) else out
        loss = task.loss(logits, y)
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        return loss.detach()

    info = {"params": sum(p.numel() for p in params), "baseline": mark}
    return step, info, None    # FLOPs: ours' count stands for both
