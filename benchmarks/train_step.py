"""The train section's model for ``tools/bench.py`` (a child of :mod:`benchmarks.harness`).

A fixed genotype's network built by the trainer's own pieces from a train config
(``train_defaults()`` plus the bench's settings: genotype, width, depth, CIFAR stem, no auxiliary
head, batch, AMP, channels-last): :func:`unnas.train.network.resolve_network` +
:func:`~unnas.train.network.build_train_network`, the optimiser of
:func:`unnas.train.trainer.train_optimizer`, the memory format of
:func:`unnas.utils.memory_format.use_channels_last` (model and inputs, as ``Trainer.prepare``),
stepped as ``Trainer.run_step`` at epoch 0 (no drop-path, no label smoothing; the GradScaler is
a no-op without fp16, which the bench does not offer): forward under autocast, the task's loss on
fp32 logits, backward, gradient clipping, SGD step.
"""
from __future__ import annotations

import torch

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
            "SEED", spec["seed"], "DEVICE", spec["device"]]
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
            "autocast": cfg.AMP if dtype is not None else None}
    return step, info, count_flops
