"""The search loop: bilevel DARTS steps driven by a task, with hooks for logging and checkpoints.

The loop never looks at the task's or data set's name: everything task-specific goes through the
:class:`~unnas.tasks.Task` interface, everything about outputs through hooks.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch

from search_spaces import get_space
from search_spaces.darts.stems import choose_stem
from search_spaces.darts.supernet import SearchModel
from unnas.config import ConfigError, task_options
from unnas.data import BatchStream, DataError, build_dataset, step_generator
from unnas.tasks import build_task
from unnas.utils import distributed as du
from unnas.utils.io import atomic_torch_save
from unnas.utils.memory_format import use_channels_last

from .bilevel import BilevelStep

log = logging.getLogger("unnas.search")

# Streams of the deterministic per-step generators (see unnas.data.loader.step_generator).
_W_AUG, _A_AUG, _W_TASK, _A_TASK, _EVAL = range(5)


class NonFiniteLossError(RuntimeError):
    pass


def cosine_lr(base: float, minimum: float, progress: float) -> float:
    """Cosine from ``base`` at progress 0 to ``minimum`` at progress 1."""
    return minimum + 0.5 * (base - minimum) * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


class Hook:
    def before_run(self, s: "Searcher"): ...
    def after_step(self, s: "Searcher", stats: dict): ...
    def after_epoch(self, s: "Searcher", stats: dict): ...
    def after_run(self, s: "Searcher"): ...
    def on_error(self, s: "Searcher", exc: BaseException): ...


class Searcher:
    def __init__(self, cfg, out_dir: str | Path, hooks: list[Hook] | None = None):
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.hooks = hooks or []
        self.device = du.resolve_device(cfg.DEVICE)
        self.rank, self.world = du.init_from_env(self.device)
        self.is_main = self.rank == 0
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.SEED)
        if cfg.SEARCH.NUM_THREADS > 0:
            torch.set_num_threads(cfg.SEARCH.NUM_THREADS)
        if cfg.DETERMINISTIC:
            torch.use_deterministic_algorithms(True, warn_only=True)

        # ---- data: the training split, divided into a weight half and an architecture half
        full = build_dataset(cfg.DATA, "train")
        n = len(full) if cfg.DATA.MAX_TRAIN == 0 else min(len(full), cfg.DATA.MAX_TRAIN)
        perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(cfg.DATA.SPLIT_SEED))[:n]
        n_w = int(cfg.SEARCH.PORTION * n)
        self.weight_idx, self.arch_idx = perm[:n_w].tolist(), perm[n_w:].tolist()
        self.dataset = full
        if cfg.SEARCH.BATCH_SIZE % self.world:
            raise ConfigError(f"SEARCH.BATCH_SIZE {cfg.SEARCH.BATCH_SIZE} is not divisible by the {self.world} processes")
        per_rank = cfg.SEARCH.BATCH_SIZE // self.world
        pin = self.device.type == "cuda"
        common = dict(rank=self.rank, world=self.world, num_workers=cfg.DATA.NUM_WORKERS, pin_memory=pin)
        self.w_stream = BatchStream(full, self.weight_idx, per_rank, cfg.SEED, stream=0, **common)
        self.a_stream = BatchStream(full, self.arch_idx, per_rank, cfg.SEED, stream=1, **common)
        self.eval_stream = BatchStream(full, self.arch_idx, per_rank, cfg.SEED, stream=2, shuffle=False,
                                       drop_last=False, **common)
        self.steps_per_epoch = len(self.w_stream)
        if cfg.SEARCH.STEPS_PER_EPOCH:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.SEARCH.STEPS_PER_EPOCH)
        self.total_steps = self.steps_per_epoch * cfg.SEARCH.EPOCHS

        # ---- task, supernet, architecture parameters
        self.task = build_task(cfg.TASK.NAME, full.info, **task_options(cfg))
        if self.task.needs_labels and full.info.num_classes <= 0:
            raise DataError(f"task {self.task.name} needs labels but data set {cfg.DATA.DATASET} has none; "
                            "use a pretext task (rot, col, jig) or a labelled data set")
        self.space = get_space(cfg.MODEL.SPACE)
        self.stem = choose_stem(cfg.MODEL.STEM, full.info.image_size)
        extra = {}
        if cfg.SEARCH.PARTIAL_CHANNELS > 1:
            extra["partial_channels"] = cfg.SEARCH.PARTIAL_CHANNELS
        trunk = self.space.build_supernet(self.task.in_channels, cfg.MODEL.WIDTH, cfg.MODEL.DEPTH, self.stem,
                                          self.task.single_reduction, **extra)
        trunk.use_channels_last(use_channels_last(cfg.SEARCH.CHANNELS_LAST, cfg.SEARCH.AMP, self.device))
        self.model = SearchModel(trunk, self.task.build_head(trunk.out_channels)).to(self.device)
        self.amp_dtype = torch.bfloat16 if cfg.SEARCH.AMP == "bf16" else None
        arch_kwargs = {"edge_normalization": True} if cfg.SEARCH.EDGE_NORM else {}
        self.arch = self.space.new_arch_parameters(
            generator=torch.Generator().manual_seed(cfg.SEED + 1), **arch_kwargs).to(self.device)
        du.broadcast_(list(self.arch.parameters()))

        self.w_opt = torch.optim.SGD(self.model.parameters(), lr=cfg.OPTIM.LR, momentum=cfg.OPTIM.MOMENTUM,
                                     weight_decay=cfg.OPTIM.WEIGHT_DECAY, nesterov=cfg.OPTIM.NESTEROV)
        if cfg.ARCH.OPTIMIZER == "adam":
            self.a_opt = torch.optim.Adam(self.arch.parameters(), lr=cfg.ARCH.LR, betas=tuple(cfg.ARCH.BETAS),
                                          weight_decay=cfg.ARCH.WEIGHT_DECAY)
        else:
            self.a_opt = torch.optim.SGD(self.arch.parameters(), lr=cfg.ARCH.LR, momentum=cfg.OPTIM.MOMENTUM,
                                         weight_decay=cfg.ARCH.WEIGHT_DECAY)
        ddp_model = None
        if self.world > 1:
            ddp_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.step_fn = BilevelStep(self.model, self.arch, self.task, self.w_opt, self.a_opt, cfg.SEARCH.ORDER,
                                   cfg.OPTIM.GRAD_CLIP, cfg.ARCH.UNROLL_LR, ddp_model, amp_dtype=self.amp_dtype)

        # ---- loop state (all of it goes into the checkpoint)
        self.epoch = 0
        self.step = 0                 # next step within the epoch
        self.global_step = 0
        self.meter = self.task.new_meter()
        self.arch_loss_sum = 0.0
        self.arch_steps = 0
        self.alpha_history: list[dict] = []
        self.genotype_history: list[dict] = []
        self.epoch_stats: list[dict] = []
        self.last_good_checkpoint: Path | None = None
        self.stopped_early = False

    # ---- helpers -------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.pt"

    def lr_at(self, epoch: int, step: int) -> float:
        c = self.cfg
        progress = (epoch + (step / self.steps_per_epoch if c.OPTIM.ITER_LR else 0.0)) / c.SEARCH.EPOCHS
        return cosine_lr(c.OPTIM.LR, c.OPTIM.LR_MIN, progress)

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
            "w_opt": self.w_opt.state_dict(), "a_opt": self.a_opt.state_dict(),
            "epoch": self.epoch, "step": self.step, "global_step": self.global_step,
            "meter": self.meter.state(), "arch_loss_sum": self.arch_loss_sum, "arch_steps": self.arch_steps,
            "alpha_history": self.alpha_history, "genotype_history": self.genotype_history,
            "epoch_stats": self.epoch_stats, "cfg": self.cfg.dump(),
            "rng_cpu": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.arch.load_state_dict(state["arch"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.a_opt.load_state_dict(state["a_opt"])
        self.epoch, self.step, self.global_step = state["epoch"], state["step"], state["global_step"]
        self.meter.load_state(state["meter"])
        self.arch_loss_sum, self.arch_steps = state["arch_loss_sum"], state["arch_steps"]
        self.alpha_history = state["alpha_history"]
        self.genotype_history = state["genotype_history"]
        self.epoch_stats = state["epoch_stats"]
        torch.set_rng_state(state["rng_cpu"])

    def save_checkpoint(self) -> None:
        if self.is_main:
            atomic_torch_save(self.state_dict(), self.checkpoint_path)
            self.last_good_checkpoint = self.checkpoint_path
        du.barrier()

    def resume(self) -> bool:
        """Load the run directory's checkpoint if there is one; True when resumed."""
        if not self.checkpoint_path.exists():
            return False
        try:
            state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=False)
        except Exception as exc:  # a torn file cannot happen (atomic writes), but a foreign one can
            raise DataError(f"cannot read checkpoint {self.checkpoint_path}: {exc}; delete it to start afresh") from exc
        self.load_state_dict(state)
        self.last_good_checkpoint = self.checkpoint_path
        return True

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

    @torch.no_grad()
    def evaluate(self, epoch: int) -> dict:
        saved = self._eval_mode()
        meter = self.task.new_meter()
        weights = self.arch.weights()
        limit = self.cfg.SEARCH.EVAL_BATCHES or len(self.eval_stream)
        for k, batch in enumerate(self.eval_stream.epoch(0)):
            if k >= limit:
                break
            x, y = self._prepare(batch, False, 0, k, _EVAL, _EVAL)
            with self.step_fn.autocast():
                logits = self.model(x, weights)
            meter.update(logits, y, float(self.task.loss(logits, y)))
        self._restore_bn(saved)
        self.model.train()
        state = meter.state()
        du.all_reduce_sum_(list(state.values()))
        return {f"eval_{k}": v for k, v in meter.compute().items()}

    # ---- the loop ------------------------------------------------------------------------
    def run(self, max_steps: int | None = None) -> dict:
        """Search to the end (or stop after ``max_steps`` steps of this call, as a kill would)."""
        for h in self.hooks:
            h.before_run(self)
        self.model.train()
        done_now = 0
        try:
            while self.epoch < self.cfg.SEARCH.EPOCHS:
                epoch = self.epoch
                t0 = time.time()
                batches = self.w_stream.epoch(epoch, self.step)
                while self.step < self.steps_per_epoch:
                    if max_steps is not None and done_now >= max_steps:
                        self.stopped_early = True
                        return {}
                    step = self.step
                    lr = self.lr_at(epoch, step)
                    for g in self.w_opt.param_groups:
                        g["lr"] = lr
                    x, y = self._prepare(next(batches), True, epoch, step, _W_AUG, _W_TASK)
                    arch_loss = None
                    if self.arch_active(epoch, step):
                        xa, ya = self._prepare(self.a_stream.fetch(epoch, step), True, epoch, step, _A_AUG, _A_TASK)
                        if self.cfg.SEARCH.ORDER == "second":
                            arch_loss = self.step_fn.arch_step(xa, ya, x, y, lr)
                        else:
                            arch_loss = self.step_fn.arch_step(xa, ya)
                    loss, logits = self.step_fn.weight_step(x, y)
                    loss_f = float(loss)
                    if not math.isfinite(loss_f) or (arch_loss is not None and not math.isfinite(arch_loss)):
                        raise NonFiniteLossError(self._nan_message(epoch, step, loss_f, arch_loss))
                    self.meter.update(logits, y, loss_f)
                    if arch_loss is not None:
                        self.arch_loss_sum += arch_loss
                        self.arch_steps += 1
                    self.step += 1
                    self.global_step += 1
                    done_now += 1
                    stats = {"epoch": epoch, "step": step, "global_step": self.global_step, "lr": lr,
                             "loss": loss_f, "arch_loss": arch_loss}
                    for h in self.hooks:
                        h.after_step(self, stats)
                    if self.cfg.CHECKPOINT_STEPS and self.global_step % self.cfg.CHECKPOINT_STEPS == 0 \
                            and self.step < self.steps_per_epoch:
                        self.save_checkpoint()
                self._end_epoch(epoch, time.time() - t0)
            for h in self.hooks:
                h.after_run(self)
            return self.summary()
        except BaseException as exc:
            for h in self.hooks:
                h.on_error(self, exc)
            raise

    def _nan_message(self, epoch, step, loss, arch_loss) -> str:
        where = (f"last good checkpoint {self.last_good_checkpoint} is kept"
                 if self.last_good_checkpoint else "no checkpoint had been written yet")
        return (f"non-finite loss at epoch {epoch} step {step} (weight loss {loss}, arch loss {arch_loss}); "
                f"search stopped, {where}; lower OPTIM.LR / ARCH.LR or check the data")

    def _end_epoch(self, epoch: int, seconds: float) -> None:
        state = self.meter.state()
        du.all_reduce_sum_(list(state.values()))
        train = {f"train_{k}": v for k, v in self.meter.compute().items()}
        stats = {"epoch": epoch, "epoch_seconds": seconds, **train,
                 "arch_loss": self.arch_loss_sum / self.arch_steps if self.arch_steps else None,
                 "lr": self.lr_at(epoch, self.steps_per_epoch - 1)}
        if (epoch + 1) % self.cfg.SEARCH.EVAL_PERIOD == 0 or epoch + 1 == self.cfg.SEARCH.EPOCHS:
            stats.update(self.evaluate(epoch))
        w = self.arch.weights()
        genotype = self.space.derive(self.arch)
        record = {"epoch": epoch, "normal": w.normal.tolist(), "reduce": w.reduce.tolist()}
        if w.normal_edges is not None:     # PC-DARTS edge weights (softmax over each node's inputs)
            record.update(normal_edges=w.normal_edges.tolist(), reduce_edges=w.reduce_edges.tolist())
        self.alpha_history.append(record)
        self.genotype_history.append({"epoch": epoch, "genotype": genotype.to_dict(), "repr": repr(genotype)})
        stats["genotype"] = repr(genotype)
        self.epoch_stats.append(stats)
        self.epoch += 1
        self.step = 0
        self.meter = self.task.new_meter()
        self.arch_loss_sum, self.arch_steps = 0.0, 0
        for h in self.hooks:
            h.after_epoch(self, stats)
        self.save_checkpoint()

    def summary(self) -> dict:
        genotype = self.space.derive(self.arch)
        last = self.epoch_stats[-1] if self.epoch_stats else {}
        return {"genotype": genotype.to_dict(), "genotype_repr": repr(genotype), "task": self.task.name,
                "order": self.cfg.SEARCH.ORDER, "epochs": self.epoch, "world_size": self.world,
                "final": {k: v for k, v in last.items() if k != "genotype"}, "out_dir": str(self.out_dir)}
