"""Builders of a search: the supernet, its architecture parameters, both optimisers and the
bilevel step, from a search config. ``Searcher`` and ``tools/bench.py`` both build through here,
so a benchmark times exactly what the search runs (memory format, autocast and compilation included)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from search_spaces import get_space
from search_spaces.darts.stems import choose_stem
from search_spaces.darts.supernet import SearchModel
from unnas.config import ConfigError
from unnas.engine import RunContext, wrap_ddp
from unnas.engine.compilation import compile_module
from unnas.utils import distributed as du
from unnas.utils.memory_format import use_channels_last

from .bilevel import BilevelStep


@dataclass
class SearchParts:
    space: object
    stem: str
    model: SearchModel
    arch: torch.nn.Module
    w_opt: torch.optim.Optimizer
    a_opt: torch.optim.Optimizer
    step_fn: BilevelStep
    channels_last: bool
    amp_dtype: torch.dtype | None
    compiled: bool = False          # SEARCH.COMPILE: the model's forward runs through torch.compile


def amp_dtype(amp: str) -> torch.dtype | None:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)


def weight_optimizer(cfg, params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=cfg.OPTIM.LR, momentum=cfg.OPTIM.MOMENTUM,
                           weight_decay=cfg.OPTIM.WEIGHT_DECAY, nesterov=bool(cfg.OPTIM.NESTEROV))


def arch_optimizer(cfg, params) -> torch.optim.Optimizer:
    if cfg.ARCH.OPTIMIZER == "adam":
        return torch.optim.Adam(params, lr=cfg.ARCH.LR, betas=tuple(cfg.ARCH.BETAS), weight_decay=cfg.ARCH.WEIGHT_DECAY)
    return torch.optim.SGD(params, lr=cfg.ARCH.LR, momentum=cfg.OPTIM.MOMENTUM, weight_decay=cfg.ARCH.WEIGHT_DECAY)


def build_search(cfg, task, image_size: int, ctx: RunContext, depth: int | None = None, op_mask=None,
                 arch_seed: int | None = None) -> SearchParts:
    """Everything a search step needs, on ``ctx.device`` (DDP-wrapped under torchrun). The alphas
    are drawn from ``SEED + 1`` (or ``arch_seed``) and broadcast from rank 0. P-DARTS stages pass
    their ``depth`` (instead of MODEL.DEPTH) and ``op_mask`` (the ops kept on each edge)."""
    from .config import max_skips_normal
    skips = max_skips_normal(cfg)
    space = get_space(cfg.MODEL.SPACE)
    stem = choose_stem(cfg.MODEL.STEM, image_size)
    extra = {"aux_skip": True} if cfg.SEARCH.AUX_SKIP.ENABLED else {}     # DARTS- (a space without it keeps working)
    if op_mask is not None:                                               # P-DARTS' pruned op space
        extra["op_mask"] = op_mask
    groups = getattr(task, "input_groups", None)   # a split task (splitbrain): one supernet per input group, same alphas
    if groups:
        from search_spaces.split import SplitTrunk, split_width
        try:
            width = split_width(cfg.MODEL.WIDTH, groups)
        except ValueError as exc:
            raise ConfigError(f"MODEL.WIDTH: task {task.name} splits the trunk; {exc}") from None
        trunk = SplitTrunk([space.build_supernet(len(g), width, depth or cfg.MODEL.DEPTH, stem, task.single_reduction,
                                                 partial_channels=cfg.SEARCH.PARTIAL_CHANNELS, **extra)
                            for g in groups], groups)
    else:
        trunk = space.build_supernet(task.in_channels, cfg.MODEL.WIDTH, depth or cfg.MODEL.DEPTH, stem,
                                     task.single_reduction, partial_channels=cfg.SEARCH.PARTIAL_CHANNELS, **extra)
    channels_last = use_channels_last(cfg.SEARCH.CHANNELS_LAST, cfg.SEARCH.AMP, ctx.device)
    trunk.use_channels_last(channels_last)
    model = SearchModel(trunk, task.build_head(trunk.out_channels)).to(ctx.device)
    # SEARCH.COMPILE: the forward compiled in place, so the model's state_dict keeps its plain keys
    compiled = compile_module(model, cfg.SEARCH.COMPILE, ctx.device, "SEARCH.COMPILE")
    arch_extra = {"op_mask": op_mask} if op_mask is not None else {}
    if skips:                                                              # SEARCH.MAX_SKIPS_NORMAL
        arch_extra["max_skips_normal"] = skips
    seed = cfg.SEED + 1 if arch_seed is None else arch_seed
    arch = space.new_arch_parameters(generator=torch.Generator().manual_seed(seed),
                                     edge_normalization=cfg.SEARCH.EDGE_NORM, **arch_extra).to(ctx.device)
    du.broadcast_(list(arch.parameters()))
    w_opt = weight_optimizer(cfg, model.parameters())
    a_opt = arch_optimizer(cfg, arch.parameters())
    dtype = amp_dtype(cfg.SEARCH.AMP)
    step_fn = BilevelStep(model, arch, task, w_opt, a_opt, cfg.SEARCH.ORDER, cfg.OPTIM.GRAD_CLIP, cfg.ARCH.UNROLL_LR,
                          wrap_ddp(model, ctx), amp_dtype=dtype)
    return SearchParts(space, stem, model, arch, w_opt, a_opt, step_fn, channels_last, dtype, compiled)
