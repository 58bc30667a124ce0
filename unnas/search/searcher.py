"""The search loop: bilevel DARTS steps driven by a task, on the shared engine.

The loop never looks at the task's or data set's name: everything task-specific goes through the
:class:`~unnas.tasks.Task` interface, everything about outputs through hooks
(:mod:`unnas.engine.hooks`, :mod:`unnas.search.hooks`).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from unnas.config import ConfigError, task_options
from unnas.data import build_dataset, step_generator
from unnas.engine import (Checkpointer, CheckpointHook, EvalHook, Hook, LoopBase, LRSchedule, NonFiniteLossError,
                          Period, build_stream, check_finite, check_task_data, per_rank_batch, setup_run,
                          train_window)
from unnas.engine.evaluation import evaluate
from unnas.tasks import build_task
from unnas.utils import distributed as du
from unnas.utils.cell_layout import state_name

from .build import build_search
from .config import uses_pdarts
from .diagnostics import DiagnosticsHook, hessian_eigenvalue
from .regularizers import Remedies

log = logging.getLogger("unnas.search")

# Streams of the deterministic per-step generators (see unnas.data.loader.step_generator).
_W_AUG, _A_AUG, _W_TASK, _A_TASK, _EVAL = range(5)
_HESSIAN = 9      # the power iteration's start vector (rank-independent; SDARTS uses 8)

__all__ = ["Searcher", "make_searcher", "Hook", "NonFiniteLossError"]


def _tag(state: int) -> str:
    """A cell state in a TensorBoard tag: ck-2, ck-1, node1, ... (the names of the pictures)."""
    return state_name(state).replace("c_{", "c").replace("}", "").replace(" ", "")


def make_searcher(cfg, out_dir: str | Path, hooks: list[Hook] | None = None) -> "Searcher":
    """The search loop ``cfg`` asks for: P-DARTS' staged loop (pdarts.py) with ``SEARCH.PDARTS.ENABLE``,
    else the plain one. Tools build their search through this; ``Searcher(...)`` is always plain."""
    if uses_pdarts(cfg):
        from .pdarts import PDartsSearcher   # pdarts.py subclasses Searcher: imported here, not at the top
        return PDartsSearcher(cfg, out_dir, hooks)
    return Searcher(cfg, out_dir, hooks)


class Searcher(LoopBase):
    def __init__(self, cfg, out_dir: str | Path, hooks: list[Hook] | None = None):
        if type(self) is Searcher and uses_pdarts(cfg):
            raise ConfigError("SEARCH.PDARTS.ENABLE needs P-DARTS' staged loop: build the search with "
                              "unnas.search.make_searcher(cfg, out_dir, hooks), not Searcher(...)")
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.ctx = setup_run(cfg.DEVICE, cfg.SEED, cfg.SEARCH.NUM_THREADS, cfg.DETERMINISTIC)
        self.device, self.rank, self.world = self.ctx.device, self.ctx.rank, self.ctx.world
        self.is_main = self.ctx.is_main

        # ---- data: the training split, divided into a weight half and an architecture half
        full = build_dataset(cfg.DATA, "train")
        # DATA.MAX_TRAIN images of a DATA.SPLIT_SEED shuffle, after skipping its first DATA.TRAIN_OFFSET
        # (another offset: a disjoint subset)
        window = train_window(len(full), cfg.DATA.TRAIN_OFFSET, cfg.DATA.MAX_TRAIN, cfg.DATA.DATASET)
        perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(cfg.DATA.SPLIT_SEED))
        perm = perm[window.start:window.stop]
        n = len(perm)
        n_w = int(cfg.SEARCH.PORTION * n)
        self.weight_idx, self.arch_idx = perm[:n_w].tolist(), perm[n_w:].tolist()
        self.dataset = full
        per_rank = per_rank_batch(cfg.SEARCH.BATCH_SIZE, self.ctx, "SEARCH.BATCH_SIZE")
        workers = cfg.DATA.NUM_WORKERS
        self.w_stream = build_stream(full, self.weight_idx, per_rank, cfg.SEED, 0, self.ctx, workers)
        self.a_stream = build_stream(full, self.arch_idx, per_rank, cfg.SEED, 1, self.ctx, workers)
        self.eval_stream = build_stream(full, self.arch_idx, per_rank, cfg.SEED, 2, self.ctx, workers,
                                        shuffle=False, drop_last=False)
        self.epochs = cfg.SEARCH.EPOCHS
        self.steps_per_epoch = len(self.w_stream)
        if cfg.SEARCH.STEPS_PER_EPOCH:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.SEARCH.STEPS_PER_EPOCH)
        self.schedule = LRSchedule(cfg.OPTIM.LR, cfg.OPTIM.LR_MIN, self.epochs, self.steps_per_epoch,
                                   per_step=cfg.OPTIM.ITER_LR)

        # ---- task, supernet, architecture parameters, optimisers, the bilevel step
        self.task = build_task(cfg.TASK.NAME, full.info, **task_options(cfg))
        check_task_data(self.task, full.info, cfg.DATA.DATASET)
        parts = build_search(cfg, self.task, full.info.image_size, self.ctx)
        self.space, self.stem, self.model, self.arch = parts.space, parts.stem, parts.model, parts.arch
        self.w_opt, self.a_opt, self.step_fn = parts.w_opt, parts.a_opt, parts.step_fn
        self.amp_dtype = parts.amp_dtype
        self.checkpointer = Checkpointer(self.out_dir, "checkpoint.pt", self.is_main, run="search",
                                         fix="lower OPTIM.LR / ARCH.LR or check the data", device=self.device)

        # ---- hooks: evaluation first, the caller's writers, the checkpoint last
        eval_period = Period(cfg.SEARCH.EVAL_PERIOD, "epoch", final=True)
        ckpt_period = Period(cfg.CHECKPOINT_STEPS, "step") if cfg.CHECKPOINT_STEPS else None
        self.remedies = Remedies(cfg)       # beta-DARTS, DARTS-, SDARTS-RS (regularizers.py)
        super().__init__([EvalHook(self.evaluate_now, eval_period, "eval_"), DiagnosticsHook(cfg), *(hooks or []),
                          CheckpointHook(ckpt_period)])

        # ---- loop state besides the counters (all of it goes into the checkpoint)
        self.meter = self.task.new_meter()
        self.arch_loss_sum = 0.0
        self.arch_steps = 0
        self.alpha_history: list[dict] = []   # softmax(alpha) after every epoch
        self.alpha_steps: list[dict] = []     # ... and every SEARCH.ALPHA_LOG_STEPS steps in between
        self.genotype_history: list[dict] = []
        self.epoch_stats: list[dict] = []
        self.early_stop: dict | None = None   # DARTS-ES: {"epoch", "kept_epoch", "reason"} once it stopped

    # ---- helpers -------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.checkpointer.path

    @property
    def last_good_checkpoint(self) -> Path | None:
        return self.checkpointer.last_good

    @property
    def primary(self) -> str:
        return self.task.new_meter().primary

    def lr_at(self, epoch: int, step: int) -> float:
        return self.schedule.at(epoch, step)

    def _prepare(self, batch, train: bool, epoch: int, step: int, aug_stream: int, task_stream: int):
        images, labels = batch
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if train:
            images, labels = self.dataset.augment_batch(
                images, labels, step_generator(self.cfg.SEED, epoch, step, aug_stream + 10 * self.rank, self.device))
        gen = step_generator(self.cfg.SEED, epoch, step, task_stream + 10 * self.rank, self.device)
        return self.task.make_batch(images, labels, train, gen)

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(), "arch": self.arch.state_dict(),
            "w_opt": self.w_opt.state_dict(), "a_opt": self.a_opt.state_dict(), **self.counters(),
            "meter": self.meter.state(), "arch_loss_sum": self.arch_loss_sum, "arch_steps": self.arch_steps,
            "alpha_history": self.alpha_history, "alpha_steps": self.alpha_steps,
            "genotype_history": self.genotype_history,
            "epoch_stats": self.epoch_stats, "hooks": self.hook_states(), "cfg": self.cfg.dump(),
            "rng_cpu": torch.get_rng_state(), "early_stop": self.early_stop,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.arch.load_state_dict(state["arch"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.a_opt.load_state_dict(state["a_opt"])
        self.load_counters(state)
        self.meter.load_state(state["meter"])
        self.arch_loss_sum, self.arch_steps = state["arch_loss_sum"], state["arch_steps"]
        self.alpha_history = state["alpha_history"]
        self.alpha_steps = state.get("alpha_steps", [])
        self.genotype_history = state["genotype_history"]
        self.epoch_stats = state["epoch_stats"]
        self.load_hook_states(state.get("hooks", {}))
        torch.set_rng_state(state["rng_cpu"])
        self.early_stop = state.get("early_stop")
        if self.early_stop is not None:
            self.epochs = self.early_stop["epoch"] + 1

    def save_checkpoint(self, stats: dict | None = None) -> None:
        what = f"epoch {stats['epoch']}" if stats is not None else f"step {self.global_step}"
        self.checkpointer.save(self.state_dict(), what=what)

    def stop_early(self, kept_epoch: int, reason: str) -> None:
        """End the search after the current epoch and keep the genotype derived after ``kept_epoch``
        (DARTS-ES); the checkpoint records it, so a resume does not continue the search."""
        self.early_stop = {"epoch": self.epoch, "kept_epoch": kept_epoch, "reason": reason}
        self.epochs = self.epoch + 1
        if self.is_main:
            log.info("early stop after epoch %d, keeping the genotype of epoch %d: %s", self.epoch + 1,
                     kept_epoch + 1, reason)

    def final_genotype(self):
        """The search's result: the genotype of the current alphas, or after a DARTS-ES stop the
        one recorded after the kept epoch."""
        if self.early_stop is not None:
            from search_spaces.darts.genotype import Genotype
            kept = next(g for g in self.genotype_history if g["epoch"] == self.early_stop["kept_epoch"])
            return Genotype.from_dict(kept["genotype"])
        return self.space.derive(self.arch)

    def hessian_eigenvalue(self, epoch: int, batches: int, iters: int) -> float:
        """Largest eigenvalue of the Hessian of the held-out loss (first ``batches`` batches, fp32,
        the evaluation's BN mode) plus ARCH.WEIGHT_DECAY's L2 w.r.t. the alphas (diagnostics.py)."""
        params = [self.arch.alpha_normal, self.arch.alpha_reduce]
        saved = self._eval_mode()
        try:
            weights = self.arch.weights()
            losses = []
            for k, batch in enumerate(self.eval_stream.epoch(0, 0, batches)):
                if batch[0].shape[0] == 0:     # a rank's empty share of the last batch
                    continue
                x, y = self._prepare(batch, False, 0, k, _EVAL, _EVAL)
                losses.append(self.task.loss(self.model(x, weights).float(), y))
            loss = sum(losses) / len(losses) if losses else sum(p.sum() * 0 for p in params)   # still joins the all-reduce
            gen = step_generator(self.cfg.SEED, epoch, 0, _HESSIAN, "cpu")
            return hessian_eigenvalue(loss, params, iters, gen, self.cfg.ARCH.WEIGHT_DECAY, du.all_reduce_mean_)
        finally:
            self._restore_bn(saved)
            self.model.train()

    def arch_active(self, epoch: int, step: int) -> bool:
        return epoch + step / self.steps_per_epoch >= self.cfg.SEARCH.ARCH_START_EPOCH

    # ---- evaluation ----------------------------------------------------------------------
    def _eval_mode(self):
        """Eval mode; with SEARCH.EVAL_BN 'batch', BN normalises with batch statistics (momentum 0,
        so the running statistics are left untouched): a supernet's weights move faster than its
        running averages, and with running statistics a short search evaluates as a constant."""
        self.model.eval()
        saved = []
        if self.cfg.SEARCH.EVAL_BN == "batch":
            for m in self.model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    saved.append((m, m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None))
                    m.train()
                    m.momentum = 0.0
        return saved

    @staticmethod
    def _restore_bn(saved):
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)

    def evaluate_now(self) -> dict:
        """Task metrics of the supernet (current alphas) on the held-out (architecture) half."""
        saved = self._eval_mode()
        try:
            weights = self.arch.weights()
            return evaluate(lambda x: self.model(x, weights), self.task, self.eval_stream,
                            lambda batch, k: self._prepare(batch, False, 0, k, _EVAL, _EVAL),
                            self.cfg.SEARCH.EVAL_BATCHES, self.step_fn.autocast)
        finally:
            self._restore_bn(saved)
            self.model.train()

    def evaluate(self, epoch: int) -> dict:
        return {f"eval_{k}": v for k, v in self.evaluate_now().items()}

    # ---- the loop ------------------------------------------------------------------------
    def begin_epoch(self, epoch: int) -> None:
        self.model.train()
        self._batches = self.w_stream.epoch(epoch, self.step)
        self.remedies.begin_epoch(self, epoch)

    def run_step(self, epoch: int, step: int) -> dict:
        lr = self.schedule.apply(self.w_opt, epoch, step)
        x, y = self._prepare(next(self._batches), True, epoch, step, _W_AUG, _W_TASK)
        arch_loss = None
        if self.arch_active(epoch, step):
            xa, ya = self._prepare(self.a_stream.fetch(epoch, step), True, epoch, step, _A_AUG, _A_TASK)
            if self.cfg.SEARCH.ORDER == "second":
                arch_loss = self.step_fn.arch_step(xa, ya, x, y, lr)
            else:
                arch_loss = self.step_fn.arch_step(xa, ya)
        perturbed = self.remedies.weight_step_weights(self, epoch, step)      # SDARTS-RS, else None
        loss, logits = self.step_fn.weight_step(x, y) if perturbed is None else self.step_fn.weight_step(x, y, perturbed)
        loss_f = float(loss)
        check_finite({"weight loss": loss_f, "arch loss": arch_loss}, epoch=epoch, step=step, run="search",
                     last_good=self.last_good_checkpoint, fix="lower OPTIM.LR / ARCH.LR or check the data",
                     device=self.device)
        self.meter.update(logits, y, loss_f)
        if arch_loss is not None:
            self.arch_loss_sum += arch_loss
            self.arch_steps += 1
        every, done = self.cfg.SEARCH.ALPHA_LOG_STEPS, self.global_step + 1
        if every and done % every == 0 and step + 1 < self.steps_per_epoch:   # the epoch's end has its own record
            self.alpha_steps.append(self.alpha_record(epoch, step + 1, done))
        return {"epoch": epoch, "step": step, "global_step": self.global_step + 1, "lr": lr,
                "loss": loss_f, "arch_loss": arch_loss}

    def end_epoch(self, epoch: int) -> dict:
        state = self.meter.state()
        du.all_reduce_sum_(list(state.values()))
        train = {f"train_{k}": v for k, v in self.meter.compute().items()}
        return {"epoch": epoch, **train,
                "arch_loss": self.arch_loss_sum / self.arch_steps if self.arch_steps else None,
                "lr": self.lr_at(epoch, self.steps_per_epoch - 1), **self.remedies.values(epoch)}

    def record_epoch(self, stats: dict) -> None:
        epoch = stats["epoch"]
        genotype = self.space.derive(self.arch)
        self.alpha_history.append(self.alpha_record(epoch, self.steps_per_epoch, self.global_step))
        self.genotype_history.append({"epoch": epoch, "genotype": genotype.to_dict(), "repr": repr(genotype)})
        stats["genotype"] = repr(genotype)
        self.epoch_stats.append(stats)
        self.meter = self.task.new_meter()
        self.arch_loss_sum, self.arch_steps = 0.0, 0
        p = self.primary
        ev = f", eval {p} {stats['eval_' + p]:.2f}" if "eval_" + p in stats else ""
        log.info("epoch %d/%d: train loss %.4f, train %s %.2f%s, %.1fs; genotype %s", epoch + 1, self.epochs,
                 stats["train_loss"], p, stats.get("train_" + p, float("nan")), ev, stats["epoch_seconds"],
                 stats["genotype"])

    def alpha_record(self, epoch: int, step: int, global_step: int) -> dict:
        """softmax(alpha) per edge and op now, after ``step`` steps of ``epoch`` (``global_step`` in all)."""
        w = self.arch.weights()
        record = {"epoch": epoch, "step": step, "global_step": global_step,
                  "normal": w.normal.tolist(), "reduce": w.reduce.tolist()}
        if w.normal_edges is not None:     # PC-DARTS edge weights (softmax over each node's inputs)
            record.update(normal_edges=w.normal_edges.tolist(), reduce_edges=w.reduce_edges.tolist())
        return record

    def write_tensorboard(self, writer, stats: dict) -> None:
        """Alphas (and PC-DARTS betas) per edge and op, and the derived genotype."""
        last, step = self.alpha_history[-1], self.global_step
        for cell in ("normal", "reduce"):
            for e, (j, node) in enumerate(self.space.edges()):
                name = f"edge{e:02d}_{_tag(j)}_to_{_tag(node)}"      # e.g. edge04_node1_to_node2
                for op, value in zip(self.space.primitives, last[cell][e]):
                    writer.add_scalar(f"alpha_{cell}/{name}/{op}", value, step)
                if f"{cell}_edges" in last:
                    writer.add_scalar(f"beta_{cell}/{name}", last[f"{cell}_edges"][e], step)
        writer.add_text("genotype", stats["genotype"], step)

    def summary(self) -> dict:
        genotype = self.final_genotype()
        last = self.epoch_stats[-1] if self.epoch_stats else {}
        kept = self.early_stop["kept_epoch"] if self.early_stop else self.epoch - 1
        return {"genotype": genotype.to_dict(), "genotype_repr": repr(genotype), "task": self.task.name,
                "order": self.cfg.SEARCH.ORDER, "epochs": self.epoch, "world_size": self.world,
                "final": {k: v for k, v in last.items() if k != "genotype"}, "out_dir": str(self.out_dir),
                "genotype_epoch": kept,
                "genotype_reason": self.early_stop["reason"] if self.early_stop else "the last epoch's alphas",
                "early_stop": self.early_stop,
                # SEARCH.MAX_SKIPS_NORMAL: what the limit changed (of the final alphas; None without a limit)
                "skip_limit": None if self.early_stop else getattr(self.arch, "skip_limit_report", lambda: None)()}
