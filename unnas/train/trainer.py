"""Training a fixed genotype: supervised retraining, pretext training, linear probe, fine-tuning.

The loop itself; the library entry points :func:`~unnas.train.run.train` and
:func:`~unnas.train.run.evaluate_checkpoint` live in :mod:`unnas.train.run`.

Everything task-specific goes through :class:`~unnas.tasks.Task` (inputs/targets, head, loss,
meter), so the same loop trains a DARTS cell on CIFAR-10 labels, on rotations or on Cityscapes
segmentation. Batches come from deterministic :class:`~unnas.data.BatchStream` s and every random
draw (augmentation, task, cutout, drop-path) is seeded from (SEED, epoch, step, rank), so a run
resumed from its last checkpoint continues exactly as an uninterrupted one. The loop runs on the
shared engine (:mod:`unnas.engine`): evaluation, metrics, TensorBoard, progress and checkpoints
are hooks. With ``TRAIN.PRECISE_BN_IMAGES`` the BN statistics are recomputed on training batches
before each evaluation (:mod:`unnas.train.precise_bn`, as the release's sample-based trainings).

Outputs in ``out_dir`` (rank 0): ``config.yaml``, ``metrics.jsonl`` (one JSON line per epoch, plus
``type: step`` lines every LOG_PERIOD steps), ``tb/`` (TensorBoard), ``checkpoint_best.pt`` (the
best epoch so far) and ``checkpoint_last.pt`` (the resume point; both written atomically at the end
of every epoch, best first), ``summary.json``.
"""
from __future__ import annotations

from dataclasses import asdict

import json
import logging
from pathlib import Path

import torch
import torch.nn as nn

from search_spaces import get_space
from search_spaces.darts.network import FixedNetwork, set_drop_prob
from search_spaces.parts import map_inputs
from unnas.config import ConfigError, task_options
from unnas.data import build_dataset, step_generator
from unnas.engine import (Checkpointer, CheckpointHook, EvalHook, Hook, LoopBase, LRSchedule, MetricsHook,
                          NonFiniteLossError, Period, ProgressHook, TensorBoardHook, build_stream, check_finite,
                          check_task_data, per_rank_batch, setup_run, train_window, wrap_ddp)
from unnas.engine.compilation import compile_module
from unnas.engine.evaluation import evaluate
from unnas.engine.setup import threads_note
from unnas.tasks import build_task
from unnas.utils import distributed as du
from unnas.utils.io import atomic_write_text
from unnas.utils.memory_format import use_channels_last

from .network import build_train_network, input_adapter, plan_arch, resolve_network
from .precise_bn import PreciseBNHook, precise_bn_stats
from .regularization import cutout, smoothed_cross_entropy

log = logging.getLogger("unnas.train")

# Streams of the per-step generators (unnas.data.loader.step_generator); + 16 * rank. The precise-BN
# pass draws from streams of its own, so it changes no draw of training.
_AUG, _TASK, _CUTOUT, _EVAL, _DROP, _BN_AUG, _BN_TASK, _BN_CUTOUT, _BN_DROP = range(9)
_TRAIN_STREAMS, _BN_STREAMS = (_AUG, _TASK, _CUTOUT), (_BN_AUG, _BN_TASK, _BN_CUTOUT)
# Batch streams (BatchStream ``stream``): training, test, precise-BN batches.
_TRAIN_DATA, _TEST_DATA, _BN_DATA = range(3)
LAST, BEST = "checkpoint_last.pt", "checkpoint_best.pt"

__all__ = ["Trainer", "NonFiniteLossError", "lr_schedule", "lr_at", "train_optimizer", "cutout", "smoothed_cross_entropy",
           "LAST", "BEST"]


def lr_schedule(cfg, steps_per_epoch: int) -> LRSchedule:
    """The retraining schedule of a train config: cosine (or constant) with the pycls warm-up."""
    o = cfg.OPTIM
    return LRSchedule(o.LR, o.LR_MIN, cfg.TRAIN.EPOCHS, steps_per_epoch, per_step=bool(o.ITER_LR), kind=o.SCHEDULE,
                      warmup_epochs=o.WARMUP_EPOCHS, warmup_factor=o.WARMUP_FACTOR)


def lr_at(cfg, progress_epochs: float) -> float:
    """LR at a fractional epoch."""
    return lr_schedule(cfg, 1).at_progress(progress_epochs)


def train_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """SGD over the trainable parameters (a linear probe's frozen trunk is left out)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=cfg.OPTIM.LR, momentum=cfg.OPTIM.MOMENTUM, weight_decay=cfg.OPTIM.WEIGHT_DECAY,
                           nesterov=bool(cfg.OPTIM.NESTEROV))


def _seed_from(seed: int, epoch: int, stream: int) -> int:
    return step_generator(seed, epoch, 0, stream).initial_seed()


class Trainer(LoopBase):
    """One training run. ``meta`` (a checkpoint's ``meta``) rebuilds that checkpoint's network;
    ``hooks`` run on every rank, after the trainer's own writers (which run on rank 0 with an
    ``out_dir`` only)."""

    def __init__(self, cfg, out_dir: str | Path | None = None, genotype=None, progress: bool = False,
                 tensorboard: bool = True, meta: dict | None = None, hooks: list[Hook] | None = None):
        self.cfg = cfg
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.ctx = setup_run(cfg.DEVICE, cfg.SEED, cfg.NUM_THREADS, cfg.DETERMINISTIC)
        self.device, self.rank, self.world, self.is_main = self.ctx.device, self.ctx.rank, self.ctx.world, self.ctx.is_main
        if cfg.AMP == "fp16" and self.device.type != "cuda":
            raise ConfigError("AMP fp16 needs a CUDA device (GradScaler); use AMP bf16 on CPU, or none")

        # ---- data
        self.train_set = build_dataset(cfg.DATA, "train")
        self.test_set = build_dataset(cfg.DATA, "test")
        info = self.train_set.info
        train_idx = train_window(len(self.train_set), cfg.DATA.TRAIN_OFFSET, cfg.DATA.MAX_TRAIN, cfg.DATA.DATASET)
        n_train = len(train_idx)
        n_test = len(self.test_set) if not cfg.DATA.MAX_TEST else min(len(self.test_set), cfg.DATA.MAX_TEST)
        per_rank = per_rank_batch(cfg.TRAIN.BATCH_SIZE, self.ctx, "TRAIN.BATCH_SIZE")
        test_bs = max(1, (cfg.TRAIN.TEST_BATCH_SIZE or cfg.TRAIN.BATCH_SIZE) // self.world)
        workers = cfg.DATA.NUM_WORKERS
        self.train_stream = build_stream(self.train_set, train_idx, per_rank, cfg.SEED, _TRAIN_DATA, self.ctx, workers)
        self.test_stream = build_stream(self.test_set, range(n_test), test_bs, cfg.SEED, _TEST_DATA, self.ctx, workers,
                                        shuffle=False, drop_last=False)
        # precise BN (pycls): min(NUM_SAMPLES_PRECISE // batch, batches per epoch) batches of fresh draws
        self.bn_stream = build_stream(self.train_set, train_idx, per_rank, cfg.SEED, _BN_DATA, self.ctx, workers)
        self.precise_bn_batches = min(cfg.TRAIN.PRECISE_BN_IMAGES // cfg.TRAIN.BATCH_SIZE, len(self.bn_stream))
        if cfg.FITNESS.ENABLED and self.world > 1:
            raise ConfigError("FITNESS.ENABLED clusters the features of one process; train without torchrun, or set "
                              "FITNESS.ENABLED False")
        self.epochs = cfg.TRAIN.EPOCHS
        self.steps_per_epoch = len(self.train_stream)
        if cfg.TRAIN.STEPS_PER_EPOCH:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.TRAIN.STEPS_PER_EPOCH)
        self.n_train, self.n_test = n_train, n_test
        self.schedule = lr_schedule(cfg, self.steps_per_epoch)

        # ---- task and network
        self.task = build_task(cfg.TASK.NAME, info, **task_options(cfg))
        check_task_data(self.task, info, cfg.DATA.DATASET)
        if self.precise_bn_batches and self.task.input_parts:
            raise ConfigError(f"TRAIN.PRECISE_BN_IMAGES: task {self.task.name} runs the trunk once per sub-task, so one "
                              "batch's BN statistics are the last sub-task's only; set TRAIN.PRECISE_BN_IMAGES 0")
        if cfg.OPTIM.LABEL_SMOOTHING > 0 and not self.task.per_sample_cross_entropy:
            raise ConfigError(f"OPTIM.LABEL_SMOOTHING applies to per-image classification losses; task "
                              f"{self.task.name} has its own loss, set OPTIM.LABEL_SMOOTHING 0")
        self.probe = bool(cfg.TRAIN.LINEAR_PROBE)
        plan, init_state, self.init_source = resolve_network(cfg, self.task, info, genotype, meta)
        self.genotype = plan_arch(plan)   # a DARTS Genotype or a NAS-Bench-101 CellSpec (plan.space)
        self.input_task = input_adapter(plan, self.task, info)
        self.model: FixedNetwork = build_train_network(plan, self.task)
        if init_state is not None:
            self.model.trunk.load_state_dict(init_state, strict=True)
        if self.probe:
            for p in self.model.trunk.parameters():
                p.requires_grad_(False)
        self.meta = {**plan.meta(self.task, self.probe), "data_info": asdict(info)}   # load_network needs no data

        # complexity on one sample (before moving to the device / wrapping)
        from .complexity import complexity, sample_input
        x0 = sample_input(self.task, info)
        if self.input_task is not None:
            x0 = self.input_task.make_input(torch.full((1, 3, info.image_size, info.image_size), 128, dtype=torch.uint8))
        self.complexity = complexity(self.model, x0)

        self.model.to(self.device)
        self.channels_last = use_channels_last(cfg.CHANNELS_LAST, cfg.AMP, self.device)
        if cfg.CHANNELS_LAST and not self.channels_last:
            log.warning("CHANNELS_LAST ignored: bf16 channels-last training is broken on CPU in this torch; running NCHW")
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        # COMPILE: the forward compiled in place, so self.model (and its state_dict) stays the plain network
        self.compiled = compile_module(self.model, cfg.COMPILE, self.device)
        self.optimizer = train_optimizer(cfg, self.model)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.AMP == "fp16")
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.AMP)
        self.ddp = wrap_ddp(self.model, self.ctx)
        self.checkpointer = Checkpointer(self.out_dir, LAST, self.is_main, run="training",
                                         fix="lower OPTIM.LR or check the data", device=self.device)

        # ---- hooks: evaluation first, writers, the caller's hooks, the checkpoint last
        writers: list[Hook] = []
        if self.is_main and self.out_dir is not None:
            writers.append(MetricsHook(Period(cfg.LOG_PERIOD, "step")))
            if tensorboard:
                writers.append(TensorBoardHook(Period(cfg.LOG_PERIOD, "step")))
            if progress:
                writers.append(ProgressHook("train"))
        eval_period = Period(cfg.TRAIN.EVAL_PERIOD, "epoch", final=True)
        first = [PreciseBNHook(self.recompute_bn_stats, eval_period)] if self.precise_bn_batches else []
        eval_hook = EvalHook(self.evaluate, eval_period, "test_")
        fitness = [EvalHook(self.fitness, eval_period, "test_")] if cfg.FITNESS.ENABLED else []   # test_fitness
        super().__init__([*first, eval_hook, *fitness, *writers, *(hooks or []), CheckpointHook()])

        # ---- loop state besides the counters (all of it goes into the checkpoint)
        self.history: list[dict] = []
        self.best: dict = {"value": None, "epoch": None}
        self.wall_time = 0.0
        self._new_best = False

    # ---- helpers -------------------------------------------------------------------------
    @property
    def primary(self) -> str:
        return self.task.new_meter().primary

    @property
    def last_good_checkpoint(self) -> Path | None:
        return self.checkpointer.last_good

    def _gen(self, epoch, step, stream):
        return step_generator(self.cfg.SEED, epoch, step, stream + 16 * self.rank, self.device)

    def _autocast(self):
        if self.amp_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def prepare(self, batch, train: bool, epoch: int, step: int, streams: tuple = _TRAIN_STREAMS):
        """Network input and targets of a batch of uint8 images: training (``train``: augmentation,
        the task's training draws, cutout; from the generator ``streams`` (aug, task, cutout)) or
        evaluation."""
        aug, task, cut = streams
        images, labels = batch
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if train:
            images, labels = self.train_set.augment_batch(images, labels, self._gen(epoch, step, aug))
        x, y = self.task.make_batch(images, labels, train, self._gen(epoch, step, _EVAL if not train else task))
        if self.input_task is not None:
            x = self.input_task.make_input(images)
        if train and self.cfg.TRAIN.CUTOUT > 0:   # on each task's input of a multi-task batch, in task order
            gen = self._gen(epoch, step, cut)
            x = map_inputs(x, lambda t: cutout(t, self.cfg.TRAIN.CUTOUT, gen) if t.dim() == 4 else t)
        if self.channels_last:
            x = map_inputs(x, lambda t: t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t)
        return x, y

    def criterion(self, logits, targets):
        eps = self.cfg.OPTIM.LABEL_SMOOTHING
        if eps > 0:
            return smoothed_cross_entropy(logits, targets, eps)
        return self.task.loss(logits.float(), targets)

    def set_train_mode(self):
        self.model.train()
        if self.probe:
            self.model.trunk.eval()  # frozen trunk: BN keeps its statistics

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": {"kind": self.cfg.OPTIM.SCHEDULE, "next_epoch": self.epoch, "lr": self.schedule.at(self.epoch)},
            "scaler": self.scaler.state_dict(), **self.counters(),
            "history": self.history, "best": self.best, "cfg": self.cfg.dump(), "meta": self.meta,
            "metric": self.primary, "complexity": self.complexity, "wall_time": self.wall_time,
            "hooks": self.hook_states(),
            "rng": {"cpu": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
        }

    def load_state_dict(self, state: dict, model_only: bool = False) -> None:
        self.model.load_state_dict(state["model"])
        if model_only:
            return
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.load_counters(state)
        self.history, self.best = state["history"], state["best"]
        self.wall_time = state.get("wall_time", 0.0)
        self.load_hook_states(state.get("hooks", {}))
        torch.set_rng_state(state["rng"]["cpu"])

    def save_checkpoint(self, stats: dict | None = None) -> None:
        copies = [BEST] if stats is not None and self._new_best else []
        self.checkpointer.save(self.state_dict(), copies, what=f"epoch {stats['epoch']}" if stats else "this step")

    # ---- evaluation ----------------------------------------------------------------------
    def evaluate(self) -> dict:
        was_training = self.model.training
        self.model.eval()
        try:
            return evaluate(self.model, self.task, self.test_stream, lambda batch, k: self.prepare(batch, False, 0, k),
                            self.cfg.TRAIN.EVAL_BATCHES, self._autocast)
        finally:
            if was_training:
                self.set_train_mode()

    def fitness(self) -> dict:
        """``{"fitness": ...}``: ELo's unsupervised fitness of the trunk (FITNESS.*, lower is better) on
        the first FITNESS.IMAGES test images, fed as the trunk was trained; labels are not read."""
        from unnas.elo.fitness import elo_fitness

        from .fitness import pooled_features
        f = self.cfg.FITNESS
        was_training = self.model.training
        self.model.eval()
        try:
            feats = pooled_features(self.model.trunk, self.test_stream.epoch(0), (self.input_task or self.task).make_input,
                                    self.device, f.IMAGES, self._autocast, self.channels_last)
        finally:
            if was_training:
                self.set_train_mode()
        try:
            return {"fitness": elo_fitness(feats, f.CLUSTERS, f.ZIPF_S, f.SEED).value}
        except ValueError as exc:
            raise ConfigError(f"FITNESS: {exc} (FITNESS.IMAGES, FITNESS.CLUSTERS, DATA.MAX_TEST)") from None

    def recompute_bn_stats(self, epoch: int) -> int:
        """Precise BN (``TRAIN.PRECISE_BN_IMAGES``): recompute the BN running statistics over
        ``precise_bn_batches`` training batches, built as training builds them (augmentation, the
        task's inputs, cutout, drop-path at this epoch's rate), in training mode, without a parameter
        update. The batches and draws are functions of (SEED, epoch, step) on streams of their own,
        and the global RNG (drop-path) is forked, so training draws exactly what it would without
        this pass and a resumed run stays exact. Returns the number of batches used."""
        k = self.precise_bn_batches
        inputs = (self.prepare(batch, True, epoch, step, _BN_STREAMS)[0]
                  for step, batch in enumerate(self.bn_stream.epoch(epoch, stop=k)))
        was_training = self.model.training
        self.set_train_mode()
        try:
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                torch.manual_seed(_seed_from(self.cfg.SEED, epoch, _BN_DROP + 16 * self.rank))
                return precise_bn_stats(self.model, inputs, k, self._autocast, du.all_reduce_sum_)
        finally:
            if not was_training:
                self.model.eval()

    # ---- the loop ------------------------------------------------------------------------
    def run(self, stop_after: int | None = None) -> dict:
        """Train to TRAIN.EPOCHS (or stop after ``stop_after`` epochs of this call, as a kill
        between epochs would) and return :meth:`summary`."""
        super().run(max_epochs=stop_after)
        out = self.summary()
        if self.is_main and self.out_dir is not None:
            atomic_write_text(self.out_dir / "summary.json", json.dumps(out, indent=2) + "\n")
        return out

    def begin_epoch(self, epoch: int) -> None:
        torch.manual_seed(_seed_from(self.cfg.SEED, epoch, _DROP + 16 * self.rank))  # drop-path masks
        set_drop_prob(self.model, self.drop_prob(epoch))
        self.set_train_mode()
        self._batches = iter(self.train_stream.epoch(epoch))
        self._meter = self.task.new_meter()
        self._params = [p for p in self.model.parameters() if p.requires_grad]

    def drop_prob(self, epoch: int) -> float:
        return self.cfg.MODEL.DROP_PATH * epoch / self.epochs

    def run_step(self, epoch: int, step: int) -> dict:
        cfg = self.cfg
        lr = self.schedule.apply(self.optimizer, epoch, step)
        x, y = self.prepare(next(self._batches), True, epoch, step)
        with self._autocast():
            out = (self.ddp or self.model)(x)
        logits, aux_logits = out if isinstance(out, tuple) else (out, None)
        main_loss = self.criterion(logits, y)
        loss = main_loss if aux_logits is None else main_loss + cfg.MODEL.AUX_WEIGHT * self.criterion(aux_logits, y)
        loss_f = float(loss.detach())
        check_finite({"loss": loss_f}, epoch=epoch, step=step, run="training", last_good=self.last_good_checkpoint,
                     fix="lower OPTIM.LR or check the data", device=self.device)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.OPTIM.GRAD_CLIP > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self._params, cfg.OPTIM.GRAD_CLIP)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self._meter.update(logits.detach().float(), y, float(main_loss.detach()))
        return {"epoch": epoch, "step": step, "global_step": self.global_step + 1, "lr": lr, "loss": loss_f}

    def end_epoch(self, epoch: int) -> dict:
        # DDP keeps parameters in sync; BN running statistics are only broadcast at the next forward,
        # so give every rank rank 0's buffers before evaluating and checkpointing.
        du.broadcast_([b for b in self.model.buffers() if b.is_floating_point() or b.dtype == torch.long])
        du.all_reduce_sum_(list(self._meter.state().values()))
        stats = {"type": "epoch", "epoch": epoch, "lr": self.schedule.at(epoch, self.steps_per_epoch - 1),
                 "drop_prob": self.drop_prob(epoch)}
        stats.update({f"train_{k}": v for k, v in self._meter.compute().items()})
        return stats

    def record_epoch(self, stats: dict) -> None:
        epoch, p = stats["epoch"], self.primary
        self.wall_time += stats["epoch_seconds"]
        key = f"test_{p}"
        self._new_best = key in stats and (self.best["value"] is None or stats[key] > self.best["value"])
        if self._new_best:
            self.best = {"value": stats[key], "epoch": epoch}
        stats[f"best_{p}"] = self.best["value"]
        self.history.append(stats)
        test = f", test {p} {stats[key]:.2f} (best {self.best['value']:.2f})" if key in stats else ""
        log.info("epoch %d/%d: lr %.4g, train loss %.4f, train %s %.2f%s, %.1fs", epoch + 1, self.epochs, stats["lr"],
                 stats["train_loss"], p, stats.get(f"train_{p}", float("nan")), test, stats["epoch_seconds"])

    def summary(self) -> dict:
        last_eval = next((h for h in reversed(self.history) if f"test_{self.primary}" in h), {})
        return {
            "metric": self.primary,
            "best": self.best["value"], "best_epoch": self.best["epoch"],
            "final": last_eval.get(f"test_{self.primary}"),
            "final_test": {k[5:]: v for k, v in last_eval.items() if k.startswith("test_")},
            "curve": self.history,
            "epochs": self.epoch,
            "params": self.complexity["params"], "params_aux": self.complexity["params_aux"],
            "macs": self.complexity["macs"], "macs_aux": self.complexity["macs_aux"],
            "flops": self.complexity["macs"],
            "wall_time": self.wall_time,
            "task": self.task.name, "genotype": self.genotype.to_dict(), "genotype_repr": repr(self.genotype),
            "width": self.meta["width"], "depth": self.meta["depth"], "stem": self.meta["stem"],
            "space": self.meta.get("space", "darts"), "options": self.meta.get("options", {}),
            "linear_probe": self.probe, "init_from": self.init_source,
            "world_size": self.world, "device": str(self.device),
            "out_dir": str(self.out_dir) if self.out_dir is not None else None,
            "checkpoint_last": str(self.out_dir / LAST) if self.out_dir is not None else None,
            "checkpoint_best": str(self.out_dir / BEST) if self.out_dir is not None and self.best["epoch"] is not None else None,
        }

    def _shape(self) -> str:
        """'depth 8' (DARTS) or '3 stacks x 3 modules' (NAS-Bench-101): the space says how it counts."""
        return get_space(self.meta.get("space", "darts")).shape_text(self.meta["depth"], **self.meta.get("options", {}))

    def describe(self) -> str:
        from .complexity import format_complexity
        c = self.cfg
        mode = ("linear probe of " if self.probe else "fine-tuning of ") + self.init_source["path"] \
            if self.init_source else "from scratch"
        return (f"task {self.task.describe()} | data {c.DATA.DATASET} ({self.n_train} train / {self.n_test} test images) | "
                f"genotype {c.MODEL.GENOTYPE if not self.init_source else 'from checkpoint'} | {self.meta['stem']} stem, "
                f"width {self.meta['width']}, {self._shape()}, aux {self.meta['aux']} | {mode} | "
                f"{format_complexity(self.complexity)} | {self.world} processes | device {self.device}"
                + (f", torch.compile {c.COMPILE}" if self.compiled else "") + threads_note(self.device))
