"""P-DARTS (Chen, Xie, Wu, Tian, ICCV 2019): progressive DARTS in stages of growing depth.

Follows the official code (chenxin061/pdarts ``train_search.py`` ``main``, ``get_min_k``,
``get_min_k_no_zero``; ``model_search.py`` ``MixedOp``/``Network``):

* **Stages** (``SEARCH.PDARTS.ADD_LAYERS``, ``--add_layers``): stage ``s`` searches a supernet of
  ``MODEL.DEPTH + ADD_LAYERS[s]`` cells (CIFAR: 5, 11, 17) for ``STAGE_EPOCHS[s]`` epochs (``--epochs``,
  25 each). Every stage starts afresh, as the official loop builds a new ``Network``: new weights,
  new alphas (1e-3 N(0, 1)), new SGD and Adam optimisers, and a new cosine LR schedule over the
  stage. For its first ``WARMUP_EPOCHS[s]`` epochs (``eps_no_archs``, 10) only the weights train.
* **Op space pruned between stages** (``NUM_KEEP``, ``num_to_keep`` [5, 3, 1]): after stage ``s``
  each edge keeps the ``NUM_KEEP[s]`` of its ops with the largest softmax weight; the softmax runs
  over the edge's ops of that stage, and ``none`` is ranked like any other op (``get_min_k``; ties:
  the op listed first is dropped first). After the last stage the genotype is derived as in DARTS,
  which is ``get_min_k_no_zero``: ``none`` is never chosen and the other op of largest weight is.
  The pruned ops are not built (the supernet's ``op_mask``) and get weight 0 (``ArchParameters``).
* **Dropout on skip connections** (``SKIP_DROPOUT``, ``--dropout_rate``): the stride-1
  ``skip_connect`` of every edge is followed by dropout (own mask per edge, training mode, in both
  the weight and the architecture step). Its rate in stage epoch ``e`` of ``E`` with warm-up ``W``
  is ``rate * (E - e - 1) / E`` during the warm-up and ``rate * exp(-(e - W) * DROPOUT_DECAY)``
  after it (``scale_factor`` 0.2).
* **Skip-connection limit** (``SEARCH.MAX_SKIPS_NORMAL``, 2 with P-DARTS): at derivation,
  :func:`search_spaces.darts.genotype.limit_skip_connections` (``delete_min_sk_prob``,
  ``keep_1_on``, ``keep_2_branches``).
* The architecture gradient is clipped at ``OPTIM.GRAD_CLIP`` (5) like the weight gradient
  (``nn.utils.clip_grad_norm_(model.module.arch_parameters(), args.grad_clip)``).

``make_searcher(cfg, ...)`` builds a :class:`PDartsSearcher` when ``SEARCH.PDARTS.ENABLE`` is set. The
epochs of all stages are one run (``SEARCH.EPOCHS`` = their sum), with one metrics file, alpha
history (pruned ops at weight 0) and checkpoint. The checkpoint records the stage and its op masks;
a resumed run rebuilds that stage's supernet before loading it, and the next stage is built at the
start of its first epoch from the alphas that ended the previous one. Each stage's weights are
drawn from a seed of (SEED, stage) and the dropout masks from one of (SEED, epoch, step), so a run
killed anywhere, also at a stage boundary, resumes to the uninterrupted run's result.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from unnas.data import step_generator
from unnas.engine import LRSchedule

from .build import build_search
from .searcher import Searcher

log = logging.getLogger("unnas.search")

# Streams of the per-step generators (unnas.data.loader.step_generator; the loop uses 0-4 + 10 * rank,
# SDARTS 8, the Hessian 9): the skip dropout's masks (+ 10 * rank) and each stage's weight init.
_SKIP_DROPOUT = 6
_STAGE_INIT = 7

__all__ = ["PDartsSearcher", "Stage", "stage_plan", "prune_op_mask", "skip_dropout_rate", "StagedSchedule"]


@dataclass(frozen=True)
class Stage:
    index: int
    depth: int          # cells of the stage's supernet
    first_epoch: int    # global epoch where the stage starts
    epochs: int
    warmup: float       # stage epochs before the alphas train
    keep: int           # ops kept per edge after the stage
    dropout: float      # initial skip dropout rate


def stage_plan(cfg) -> list[Stage]:
    p = cfg.SEARCH.PDARTS
    stages, first = [], 0
    for s, (add, epochs, warmup, keep, rate) in enumerate(zip(p.ADD_LAYERS, p.STAGE_EPOCHS, p.WARMUP_EPOCHS,
                                                                 p.NUM_KEEP, p.SKIP_DROPOUT)):
        stages.append(Stage(s, cfg.MODEL.DEPTH + add, first, epochs, warmup, keep, float(rate)))
        first += epochs
    return stages


def skip_dropout_rate(rate: float, epoch: int, epochs: int, warmup: float, decay: float) -> float:
    """The official schedule in stage epoch ``epoch`` (of ``epochs``): linear from ``rate * (E - 1) / E``
    during the warm-up, then ``rate`` decaying as ``exp(-decay * epochs since the warm-up)``."""
    if epoch < warmup:
        return rate * (epochs - epoch - 1) / epochs
    return rate * math.exp(-(epoch - warmup) * decay)


def prune_op_mask(weights: torch.Tensor, mask: torch.Tensor, keep: int) -> torch.Tensor:
    """Keep the ``keep`` kept ops of largest weight on every edge (``get_min_k``: drop the lowest,
    ``none`` included; ties: the op listed first goes first). ``weights``, ``mask``: (edges, ops)."""
    out = mask.clone().bool().cpu()
    w = weights.detach().float().cpu()
    for e in range(w.shape[0]):
        active = [k for k in range(w.shape[1]) if out[e, k]]
        for k in sorted(active, key=lambda k: (float(w[e, k]), k))[:max(0, len(active) - keep)]:
            out[e, k] = False
    return out


class StagedSchedule:
    """One LRSchedule per stage (the official code builds a new CosineAnnealingLR for each),
    indexed by the run's epoch; the interface of :class:`~unnas.engine.LRSchedule`."""

    def __init__(self, cfg, stages: list[Stage], steps_per_epoch: int):
        self.stages = stages
        self.schedules = [LRSchedule(cfg.OPTIM.LR, cfg.OPTIM.LR_MIN, st.epochs, steps_per_epoch,
                                     per_step=cfg.OPTIM.ITER_LR) for st in stages]

    def at(self, epoch: int, step: int = 0) -> float:
        st = stage_at(self.stages, epoch)
        return self.schedules[st.index].at(epoch - st.first_epoch, step)

    def apply(self, optimizer, epoch: int, step: int) -> float:
        lr = self.at(epoch, step)
        for g in optimizer.param_groups:
            g["lr"] = lr
        return lr


def stage_at(stages: list[Stage], epoch: int) -> Stage:
    for st in stages:
        if epoch < st.first_epoch + st.epochs:
            return st
    return stages[-1]


def _op_lists(mask: torch.Tensor, primitives) -> list[list[str]]:
    return [[p for p, k in zip(primitives, row) if k] for row in mask.tolist()]


class PDartsSearcher(Searcher):
    """The search loop with P-DARTS' stages (see the module docstring)."""

    def __init__(self, cfg, out_dir, hooks=None):
        super().__init__(cfg, out_dir, hooks)
        self.stages = stage_plan(cfg)
        self.schedule = StagedSchedule(cfg, self.stages, self.steps_per_epoch)
        self.stage = -1
        self.stage_records: list[dict] = []     # per stage: depth, epochs, the ops searched on every edge
        full = torch.ones(self.space.num_edges, len(self.space.primitives), dtype=torch.bool)
        self._enter_stage(0, (full, full))
        self.stage_records = [self._record(0)]

    # ---- stages ------------------------------------------------------------------------------
    def _enter_stage(self, s: int, masks) -> None:
        """Build stage ``s`` afresh: supernet of its depth with the ops of ``masks`` (normal, reduce),
        new alphas, optimisers and bilevel step (the official loop's new ``Network`` per stage)."""
        st = self.stages[s]
        masks = tuple(m.detach().bool().cpu() for m in masks)
        with torch.random.fork_rng(devices=[]):      # the weights of stage s do not depend on what ran before
            torch.manual_seed(step_generator(self.cfg.SEED, s, 0, _STAGE_INIT).initial_seed())
            parts = build_search(self.cfg, self.task, self.dataset.info.image_size, self.ctx, depth=st.depth,
                                 op_mask=masks, arch_seed=self.cfg.SEED + 1 + s)
        self.model, self.arch = parts.model, parts.arch
        self.w_opt, self.a_opt, self.step_fn = parts.w_opt, parts.a_opt, parts.step_fn
        clip = self.cfg.OPTIM.GRAD_CLIP
        if clip > 0:                                 # train_search.py clips the alphas' gradient too
            params = list(self.arch.parameters())

            def clip_arch_grads(*_):
                torch.nn.utils.clip_grad_norm_(params, clip)
            self.a_opt.register_step_pre_hook(clip_arch_grads)
        self.stage = s

    def _record(self, s: int) -> dict:
        st = self.stages[s]
        prims = self.space.primitives
        return {"stage": s + 1, "first_epoch": st.first_epoch, "epochs": st.epochs, "depth": st.depth,
                "ops_per_edge": int(self.arch.mask_normal[0].sum()),
                "normal_ops": _op_lists(self.arch.mask_normal.cpu(), prims),
                "reduce_ops": _op_lists(self.arch.mask_reduce.cpu(), prims)}

    def _next_stage(self, s: int) -> None:
        """Prune the op space with the alphas that ended stage ``s - 1``, then build stage ``s``."""
        keep = self.stages[s - 1].keep
        with torch.no_grad():
            w = self.arch.weights()
        masks = (prune_op_mask(w.normal, self.arch.mask_normal, keep),
                 prune_op_mask(w.reduce, self.arch.mask_reduce, keep))
        self._enter_stage(s, masks)
        self.stage_records.append(self._record(s))
        if self.is_main:
            st, rec = self.stages[s], self.stage_records[-1]
            log.info("P-DARTS stage %d/%d from epoch %d: %d cells, %d ops per edge, skip dropout %.2f", s + 1,
                     len(self.stages), st.first_epoch + 1, st.depth, rec["ops_per_edge"], st.dropout)
            for cell in ("normal", "reduce"):
                log.info("  %s ops kept: %s", cell, "; ".join(f"{e}: {','.join(ops)}"
                                                             for e, ops in enumerate(rec[f"{cell}_ops"])))

    def stage_at(self, epoch: int) -> Stage:
        return stage_at(self.stages, epoch)

    # ---- the loop ----------------------------------------------------------------------------
    def begin_epoch(self, epoch: int) -> None:
        st = self.stage_at(epoch)
        if st.index != self.stage:
            self._next_stage(st.index)
        drop = self.model.trunk.skip_dropout
        drop.p = skip_dropout_rate(st.dropout, epoch - st.first_epoch, st.epochs, st.warmup,
                                   self.cfg.SEARCH.PDARTS.DROPOUT_DECAY)
        super().begin_epoch(epoch)

    def arch_active(self, epoch: int, step: int) -> bool:
        st = self.stage_at(epoch)
        return epoch - st.first_epoch + step / self.steps_per_epoch >= st.warmup

    def _dropout_generator(self, epoch: int, step: int) -> None:
        drop = self.model.trunk.skip_dropout
        drop.generator = (step_generator(self.cfg.SEED, epoch, step, _SKIP_DROPOUT + 10 * self.rank, self.device)
                          if drop.p > 0 else None)

    def run_step(self, epoch: int, step: int) -> dict:
        self._dropout_generator(epoch, step)
        return super().run_step(epoch, step)

    def end_epoch(self, epoch: int) -> dict:
        # forwards at the epoch's end (hooks) draw from a generator of their own, as after a resume
        self._dropout_generator(epoch, self.steps_per_epoch)
        stats = super().end_epoch(epoch)
        stats.update(pdarts_stage=self.stage + 1, skip_dropout=self.model.trunk.skip_dropout.p)
        return stats

    # ---- checkpoint and summary --------------------------------------------------------------
    def state_dict(self) -> dict:
        state = super().state_dict()
        state["pdarts"] = {"stage": self.stage, "mask_normal": self.arch.mask_normal.cpu(),
                           "mask_reduce": self.arch.mask_reduce.cpu(), "stages": self.stage_records}
        return state

    def load_state_dict(self, state: dict) -> None:
        pd = state["pdarts"]
        masks = (pd["mask_normal"].cpu(), pd["mask_reduce"].cpu())
        if (pd["stage"] != self.stage or not torch.equal(masks[0], self.arch.mask_normal.cpu())
                or not torch.equal(masks[1], self.arch.mask_reduce.cpu())):
            self._enter_stage(pd["stage"], masks)
        self.stage_records = list(pd["stages"])
        super().load_state_dict(state)

    def summary(self) -> dict:
        out = super().summary()
        out["pdarts"] = {"stages": self.stage_records, "max_skips_normal": self.arch.max_skips_normal}
        return out
