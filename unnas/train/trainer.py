"""Training a fixed genotype: supervised retraining, pretext training, linear probe, fine-tuning.

Library entry point: :func:`train` (returns a summary dict, see its docstring); evaluation of a
checkpoint: :func:`evaluate_checkpoint`. ``tools/train.py`` is a thin CLI over both.

Everything task-specific goes through :class:`~unnas.tasks.Task` (inputs/targets, head, loss,
meter), so the same loop trains a DARTS cell on CIFAR-10 labels, on rotations or on Cityscapes
segmentation. Batches come from deterministic :class:`~unnas.data.BatchStream` s and every random
draw (augmentation, task, cutout, drop-path) is seeded from (SEED, epoch, step, rank), so a run
resumed from its last checkpoint continues exactly as an uninterrupted one.

Outputs in ``out_dir`` (rank 0): ``config.yaml``, ``metrics.jsonl`` (one JSON line per epoch, plus
``type: step`` lines every LOG_PERIOD steps), ``tb/`` (TensorBoard), ``checkpoint_last.pt``,
``checkpoint_best.pt`` (both written atomically at the end of every epoch), ``summary.json``.
"""
from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from search_spaces.darts.genotype import Genotype
from search_spaces.darts.network import FixedNetwork, build_network, set_drop_prob
from search_spaces.darts.stems import choose_stem
from search_spaces.darts.zoo import resolve_genotype
from unnas.config import ConfigError, save_cfg, task_options
from unnas.data import BatchStream, DataError, build_dataset, step_generator
from unnas.tasks import build_task
from unnas.tasks.base import ClassifierHead, Task
from unnas.utils import distributed as du
from unnas.utils.io import atomic_torch_save, atomic_write_text
from unnas.utils.memory_format import use_channels_last

log = logging.getLogger("unnas.train")

# Streams of the per-step generators (unnas.data.loader.step_generator); + 16 * rank.
_AUG, _TASK, _CUTOUT, _EVAL, _DROP = range(5)
LAST, BEST = "checkpoint_last.pt", "checkpoint_best.pt"


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN/inf; the message names the last good checkpoint."""


# ---- pieces ----------------------------------------------------------------------------------
def lr_at(cfg, progress_epochs: float) -> float:
    """Cosine (or constant) LR at a fractional epoch, times the pycls linear warm-up factor."""
    o, total = cfg.OPTIM, cfg.TRAIN.EPOCHS
    if o.SCHEDULE == "cos":
        lr = o.LR_MIN + 0.5 * (o.LR - o.LR_MIN) * (1 + math.cos(math.pi * min(progress_epochs / total, 1.0)))
    else:
        lr = o.LR
    if progress_epochs < o.WARMUP_EPOCHS:
        a = progress_epochs / o.WARMUP_EPOCHS
        lr *= o.WARMUP_FACTOR * (1 - a) + a
    return lr


def smoothed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, eps: float) -> torch.Tensor:
    """UnNAS label smoothing: 1 - eps on the target, eps / (K - 1) on each of the other K - 1 classes
    (DARTS instead uses (1 - eps) onehot + eps / K)."""
    logp = F.log_softmax(logits.float(), dim=1)
    nll = -logp.gather(1, targets[:, None]).squeeze(1)
    others = -logp.sum(1) - nll
    k = logits.shape[1]
    return ((1 - eps) * nll + eps / (k - 1) * others).mean()


def cutout(x: torch.Tensor, length: int, generator: torch.Generator | None) -> torch.Tensor:
    """DARTS cutout on network inputs: per sample a ``length`` square (centre uniform over the image,
    clipped at the borders) is set to 0 (the data mean, after normalisation)."""
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n,), generator=generator, device=x.device)
    cx = torch.randint(0, w, (n,), generator=generator, device=x.device)
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    in_y = (ys >= (cy[:, None] - length // 2)) & (ys < (cy[:, None] + length - length // 2))
    in_x = (xs >= (cx[:, None] - length // 2)) & (xs < (cx[:, None] + length - length // 2))
    hole = in_y[:, :, None] & in_x[:, None, :]
    return x.masked_fill(hole[:, None], 0.0)


def _load(path, device="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:
        raise DataError(f"cannot read checkpoint {path}: {exc}") from exc


def _seed_from(seed: int, epoch: int, stream: int) -> int:
    return step_generator(seed, epoch, 0, stream).initial_seed()


# ---- the trainer -----------------------------------------------------------------------------
class Trainer:
    """One training run. ``meta`` (a checkpoint's ``meta``) rebuilds that checkpoint's network."""

    def __init__(self, cfg, out_dir: str | Path | None = None, genotype=None, progress: bool = False,
                 tensorboard: bool = True, meta: dict | None = None):
        self.cfg = cfg
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        self.device = du.resolve_device(cfg.DEVICE)
        self.rank, self.world = du.init_from_env(self.device)
        self.is_main = self.rank == 0
        if cfg.AMP == "fp16" and self.device.type != "cuda":
            raise ConfigError("AMP fp16 needs a CUDA device (GradScaler); use AMP bf16 on CPU, or none")
        if cfg.DETERMINISTIC:
            torch.use_deterministic_algorithms(True, warn_only=True)
        if cfg.NUM_THREADS > 0:
            torch.set_num_threads(cfg.NUM_THREADS)
        torch.manual_seed(cfg.SEED)

        # ---- data
        self.train_set = build_dataset(cfg.DATA, "train")
        self.test_set = build_dataset(cfg.DATA, "test")
        info = self.train_set.info
        n_train = len(self.train_set) if not cfg.DATA.MAX_TRAIN else min(len(self.train_set), cfg.DATA.MAX_TRAIN)
        n_test = len(self.test_set) if not cfg.DATA.MAX_TEST else min(len(self.test_set), cfg.DATA.MAX_TEST)
        if cfg.TRAIN.BATCH_SIZE % self.world:
            raise ConfigError(f"TRAIN.BATCH_SIZE {cfg.TRAIN.BATCH_SIZE} is not divisible by the {self.world} processes")
        per_rank = cfg.TRAIN.BATCH_SIZE // self.world
        test_bs = max(1, (cfg.TRAIN.TEST_BATCH_SIZE or cfg.TRAIN.BATCH_SIZE) // self.world)
        common = dict(rank=self.rank, world=self.world, num_workers=cfg.DATA.NUM_WORKERS,
                      pin_memory=self.device.type == "cuda")
        self.train_stream = BatchStream(self.train_set, range(n_train), per_rank, cfg.SEED, stream=0, **common)
        self.test_stream = BatchStream(self.test_set, range(n_test), test_bs, cfg.SEED, stream=1, shuffle=False,
                                       drop_last=False, **common)
        self.steps_per_epoch = len(self.train_stream)
        if cfg.TRAIN.STEPS_PER_EPOCH:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.TRAIN.STEPS_PER_EPOCH)
        self.n_train, self.n_test = n_train, n_test

        # ---- task
        self.task = build_task(cfg.TASK.NAME, info, **task_options(cfg))
        if self.task.needs_labels and info.num_classes <= 0:
            raise DataError(f"task {self.task.name} needs labels but data set {cfg.DATA.DATASET} has none; "
                            "use a pretext task (rot, col, jig) or a labelled data set")
        if cfg.OPTIM.LABEL_SMOOTHING > 0 and type(self.task).loss is not Task.loss:
            raise ConfigError(f"OPTIM.LABEL_SMOOTHING applies to per-image classification losses; task "
                              f"{self.task.name} has its own loss, set OPTIM.LABEL_SMOOTHING 0")

        # ---- network: from a checkpoint's meta (eval-only / resume of a probe) or built afresh
        self.probe = bool(cfg.TRAIN.LINEAR_PROBE)
        init_state = None
        if meta is None and cfg.TRAIN.INIT_FROM:
            init = _load(cfg.TRAIN.INIT_FROM)
            if "meta" not in init:
                raise DataError(f"{cfg.TRAIN.INIT_FROM} is not a checkpoint of tools/train.py (no 'meta')")
            m = init["meta"]
            meta = dict(genotype=m["genotype"], width=m["width"], depth=m["depth"], stem=m["stem"],
                        single_reduction=m["single_reduction"], trunk_in_channels=m["trunk_in_channels"])
            init_state = {k[len("trunk."):]: v for k, v in init["model"].items() if k.startswith("trunk.")}
            self.init_source = {"path": str(cfg.TRAIN.INIT_FROM), "task": m.get("task"), "epoch": init.get("epoch")}
        else:  # a resumed or re-evaluated probe/fine-tune run: the network comes from ``meta``
            self.init_source = {"path": str(cfg.TRAIN.INIT_FROM), "task": None, "epoch": None} \
                if cfg.TRAIN.INIT_FROM else None
        if meta is not None:
            self.genotype = Genotype.from_dict(meta["genotype"])
            width, depth, stem = meta["width"], meta["depth"], meta["stem"]
            single_reduction, trunk_in = meta["single_reduction"], meta["trunk_in_channels"]
        else:
            self.genotype = resolve_genotype(genotype if genotype is not None else cfg.MODEL.GENOTYPE)
            width, depth = cfg.MODEL.WIDTH, cfg.MODEL.DEPTH
            stem = choose_stem(cfg.MODEL.STEM, info.image_size)
            if width == 0:
                width = self._zoo_width(genotype if genotype is not None else cfg.MODEL.GENOTYPE, stem)
            single_reduction, trunk_in = self.task.single_reduction, self.task.in_channels
        if single_reduction != self.task.single_reduction:
            raise ConfigError(f"the checkpoint's trunk has {'one reduction' if single_reduction else 'two reductions'}"
                              f" but task {self.task.name} needs {'one' if self.task.single_reduction else 'two'}; "
                              "fine-tune/probe with a task of the same output stride")
        self.l_input = None
        if trunk_in == 1 and self.task.in_channels == 3:
            # a colorization trunk reads the L channel: feed it L computed from the same images
            if self.task.images_per_sample != 1:
                raise ConfigError(f"a 1-channel (colorization) trunk can only be probed with a task whose input is "
                                  f"the image itself (cls, seg), not {self.task.name}")
            self.l_input = build_task("col", info)
        elif trunk_in != self.task.in_channels:
            raise ConfigError(f"the checkpoint's trunk takes {trunk_in} input channels but task {self.task.name} "
                              f"gives {self.task.in_channels}")
        aux = bool(cfg.MODEL.AUX) and not self.probe
        probe_head = self.task.build_head(8)
        if aux and not isinstance(probe_head, ClassifierHead):
            raise ConfigError(f"MODEL.AUX needs a per-image classification head (tasks cls, rot); task "
                              f"{self.task.name} has a {type(probe_head).__name__}: set MODEL.AUX False")
        self.model: FixedNetwork = build_network(self.genotype, self.task.build_head, self.task.num_outputs,
                                                 trunk_in, width, depth, stem, single_reduction, aux)
        if init_state is not None:
            missing = self.model.trunk.load_state_dict(init_state, strict=True)
            del missing
        if self.probe:
            for p in self.model.trunk.parameters():
                p.requires_grad_(False)
        self.meta = dict(genotype=self.genotype.to_dict(), width=width, depth=depth, stem=stem,
                         single_reduction=single_reduction, trunk_in_channels=trunk_in, task=self.task.name,
                         num_outputs=self.task.num_outputs, aux=aux, linear_probe=self.probe)

        # complexity on one sample (before moving to the device / wrapping)
        from .complexity import complexity, sample_input
        x0 = sample_input(self.task, info)
        if self.l_input is not None:
            x0 = self.l_input.lab_input(torch.full((1, 3, info.image_size, info.image_size), 128, dtype=torch.uint8))[0]
        self.complexity = complexity(self.model, x0)

        self.model.to(self.device)
        self.channels_last = use_channels_last(cfg.CHANNELS_LAST, cfg.AMP, self.device)
        if cfg.CHANNELS_LAST and not self.channels_last:
            log.warning("CHANNELS_LAST ignored: bf16 channels-last training is broken on CPU in this torch; running NCHW")
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=cfg.OPTIM.LR, momentum=cfg.OPTIM.MOMENTUM,
                                         weight_decay=cfg.OPTIM.WEIGHT_DECAY,
                                         nesterov=bool(cfg.OPTIM.NESTEROV))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.AMP == "fp16")
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.AMP)
        self.ddp = None
        if self.world > 1:
            self.ddp = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

        # ---- loop state (all of it goes into the checkpoint)
        self.epoch = 0
        self.global_step = 0
        self.history: list[dict] = []
        self.best: dict = {"value": None, "epoch": None}
        self.last_good_checkpoint: Path | None = None
        self.tensorboard = tensorboard and self.is_main and self.out_dir is not None
        self._writer = None
        self._bar = None
        self.wall_time = 0.0

    # ---- helpers -------------------------------------------------------------------------
    def _zoo_width(self, spec, stem: str) -> int:
        from search_spaces.darts import zoo
        name = zoo.canonical_name(spec) if isinstance(spec, str) else None
        kind = "cifar10" if stem == "cifar" else ("cityscapes" if self.task.single_reduction else "imagenet")
        width = zoo.eval_width(name, kind) if name else None
        if not width:
            raise ConfigError(f"MODEL.WIDTH 0 means the genotype's UnNAS eval width, but {spec!r} has none for "
                              f"{kind}; set MODEL.WIDTH explicitly")
        return width

    @property
    def primary(self) -> str:
        return self.task.new_meter().primary

    def _gen(self, epoch, step, stream):
        return step_generator(self.cfg.SEED, epoch, step, stream + 16 * self.rank, self.device)

    def _autocast(self):
        if self.amp_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def prepare(self, batch, train: bool, epoch: int, step: int):
        images, labels = batch
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if train:
            images, labels = self.train_set.augment_batch(images, labels, self._gen(epoch, step, _AUG))
        x, y = self.task.make_batch(images, labels, train, self._gen(epoch, step, _EVAL if not train else _TASK))
        if self.l_input is not None:
            x = self.l_input.lab_input(images)[0]
        if train and self.cfg.TRAIN.CUTOUT > 0 and x.dim() == 4:
            x = cutout(x, self.cfg.TRAIN.CUTOUT, self._gen(epoch, step, _CUTOUT))
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
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
            "scheduler": {"kind": self.cfg.OPTIM.SCHEDULE, "next_epoch": self.epoch,
                          "lr": lr_at(self.cfg, self.epoch)},
            "scaler": self.scaler.state_dict(), "epoch": self.epoch, "global_step": self.global_step,
            "history": self.history, "best": self.best, "cfg": self.cfg.dump(), "meta": self.meta,
            "metric": self.primary, "complexity": self.complexity, "wall_time": self.wall_time,
            "rng": {"cpu": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
        }

    def load_state_dict(self, state: dict, weights_only: bool = False) -> None:
        self.model.load_state_dict(state["model"])
        if weights_only:
            return
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.global_step = state["epoch"], state["global_step"]
        self.history, self.best = state["history"], state["best"]
        self.wall_time = state.get("wall_time", 0.0)
        torch.set_rng_state(state["rng"]["cpu"])

    def resume(self) -> bool:
        """Continue from ``out_dir/checkpoint_last.pt`` if present; True when resumed."""
        if self.out_dir is None or not (self.out_dir / LAST).exists():
            return False
        self.load_state_dict(_load(self.out_dir / LAST, self.device))
        self.last_good_checkpoint = self.out_dir / LAST
        return True

    def save_checkpoints(self, is_best: bool) -> None:
        if self.is_main and self.out_dir is not None:
            state = self.state_dict()
            atomic_torch_save(state, self.out_dir / LAST)
            if is_best:
                atomic_torch_save(state, self.out_dir / BEST)
            self.last_good_checkpoint = self.out_dir / LAST
        du.barrier()

    # ---- evaluation ----------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict:
        was_training = self.model.training
        self.model.eval()
        meter = self.task.new_meter()
        limit = self.cfg.TRAIN.EVAL_BATCHES or len(self.test_stream)
        for k, batch in enumerate(self.test_stream.epoch(0)):
            if k >= limit:
                break
            if batch[0].shape[0] == 0:  # a rank's empty share of the last batch
                continue
            x, y = self.prepare(batch, False, 0, k)
            with self._autocast():
                logits = self.model(x)
            logits = logits.float()
            meter.update(logits, y, float(self.task.loss(logits, y)))
        state = meter.state()
        du.all_reduce_sum_(list(state.values()))
        if was_training:
            self.set_train_mode()
        return meter.compute()

    # ---- logging ---------------------------------------------------------------------------
    def _open_logs(self):
        if not (self.is_main and self.out_dir is not None):
            self._metrics = None
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / "metrics.jsonl"
        if path.exists():  # keep the records up to the checkpoint we resumed from
            keep = []
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if rec.get("epoch", 0) < self.epoch:
                    keep.append(line)
            atomic_write_text(path, "".join(k + "\n" for k in keep))
        self._metrics = open(path, "a")
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(str(self.out_dir / "tb"), purge_step=self.global_step or None)
        if self.progress:
            from tqdm import tqdm
            total = self.steps_per_epoch * self.cfg.TRAIN.EPOCHS
            self._bar = tqdm(total=total, initial=self.global_step, desc="train", unit="step",
                             dynamic_ncols=True, file=sys.stderr)

    def _close_logs(self):
        for h in (self._metrics, self._writer, self._bar):
            if h is not None:
                h.close()
        self._metrics = self._writer = self._bar = None

    def _write(self, rec: dict):
        if self._metrics is not None:
            self._metrics.write(json.dumps(rec) + "\n")
            self._metrics.flush()

    # ---- the loop ------------------------------------------------------------------------
    def run(self, stop_after: int | None = None) -> dict:
        """Train to TRAIN.EPOCHS (or stop after ``stop_after`` epochs of this call, as a kill
        between epochs would) and return :meth:`summary`."""
        cfg = self.cfg
        self._open_logs()
        done_now = 0
        try:
            while self.epoch < cfg.TRAIN.EPOCHS:
                if stop_after is not None and done_now >= stop_after:
                    break
                self._train_epoch(self.epoch)
                done_now += 1
        finally:
            self._close_logs()
        out = self.summary()
        if self.is_main and self.out_dir is not None:
            atomic_write_text(self.out_dir / "summary.json", json.dumps(out, indent=2) + "\n")
        return out

    def _train_epoch(self, epoch: int) -> None:
        cfg = self.cfg
        t0 = time.time()
        torch.manual_seed(_seed_from(cfg.SEED, epoch, _DROP + 16 * self.rank))  # drop-path masks
        set_drop_prob(self.model, cfg.MODEL.DROP_PATH * epoch / cfg.TRAIN.EPOCHS)
        self.set_train_mode()
        net = self.ddp if self.ddp is not None else self.model
        meter = self.task.new_meter()
        params = [p for p in self.model.parameters() if p.requires_grad]
        lr = lr_at(cfg, epoch)
        for step, batch in enumerate(self.train_stream.epoch(epoch)):
            if step >= self.steps_per_epoch:
                break
            if cfg.OPTIM.ITER_LR:
                lr = lr_at(cfg, epoch + step / self.steps_per_epoch)
            for g in self.optimizer.param_groups:
                g["lr"] = lr
            x, y = self.prepare(batch, True, epoch, step)
            with self._autocast():
                out = net(x)
            logits, aux_logits = out if isinstance(out, tuple) else (out, None)
            main_loss = self.criterion(logits, y)
            loss = main_loss if aux_logits is None else main_loss + cfg.MODEL.AUX_WEIGHT * self.criterion(aux_logits, y)
            loss_f = float(loss.detach())
            bad = torch.tensor([0.0 if math.isfinite(loss_f) else 1.0])
            du.all_reduce_sum_([bad])
            if bad.item() > 0:
                where = (f"last good checkpoint {self.last_good_checkpoint} is kept" if self.last_good_checkpoint
                         else "no checkpoint had been written yet")
                raise NonFiniteLossError(f"non-finite training loss at epoch {epoch} step {step} (loss {loss_f}); "
                                         f"training stopped, {where}; lower OPTIM.LR or check the data")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.OPTIM.GRAD_CLIP > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(params, cfg.OPTIM.GRAD_CLIP)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            meter.update(logits.detach().float(), y, float(main_loss.detach()))
            self.global_step += 1
            if self.global_step % cfg.LOG_PERIOD == 0:
                self._write({"type": "step", "epoch": epoch, "step": step, "global_step": self.global_step,
                             "lr": lr, "loss": loss_f})
                if self._writer is not None:
                    self._writer.add_scalar("train/loss", loss_f, self.global_step)
                    self._writer.add_scalar("train/lr", lr, self.global_step)
            if self._bar is not None:
                self._bar.update(1)
                if step % 5 == 0:
                    self._bar.set_postfix({"ep": f"{epoch + 1}/{cfg.TRAIN.EPOCHS}", "loss": f"{loss_f:.3f}",
                                           "lr": f"{lr:.4f}"}, refresh=False)
        # DDP keeps parameters in sync; BN running statistics are only broadcast at the next forward,
        # so give every rank rank 0's buffers before evaluating and checkpointing.
        du.broadcast_([b for b in self.model.buffers() if b.is_floating_point() or b.dtype == torch.long])
        state = meter.state()
        du.all_reduce_sum_(list(state.values()))
        stats = {"type": "epoch", "epoch": epoch, "lr": lr, "drop_prob": cfg.MODEL.DROP_PATH * epoch / cfg.TRAIN.EPOCHS}
        stats.update({f"train_{k}": v for k, v in meter.compute().items()})
        if (epoch + 1) % cfg.TRAIN.EVAL_PERIOD == 0 or epoch + 1 == cfg.TRAIN.EPOCHS:
            stats.update({f"test_{k}": v for k, v in self.evaluate().items()})
        seconds = time.time() - t0
        self.wall_time += seconds
        stats["epoch_seconds"] = seconds
        key = f"test_{self.primary}"
        is_best = key in stats and (self.best["value"] is None or stats[key] > self.best["value"])
        if is_best:
            self.best = {"value": stats[key], "epoch": epoch}
        stats[f"best_{self.primary}"] = self.best["value"]
        self.history.append(stats)
        self.epoch = epoch + 1
        self.save_checkpoints(is_best)
        self._write({**stats, "global_step": self.global_step})
        if self._writer is not None:
            for k, v in stats.items():
                if isinstance(v, (int, float)) and v is not None and k != "epoch":
                    self._writer.add_scalar(f"epoch/{k}", v, self.global_step)
            self._writer.flush()
        test = f", test {self.primary} {stats[key]:.2f} (best {self.best['value']:.2f})" if key in stats else ""
        log.info("epoch %d/%d: lr %.4g, train loss %.4f, train %s %.2f%s, %.1fs", epoch + 1, cfg.TRAIN.EPOCHS, lr,
                 stats["train_loss"], self.primary, stats.get(f"train_{self.primary}", float("nan")), test, seconds)

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
            "linear_probe": self.probe, "init_from": self.init_source,
            "world_size": self.world, "device": str(self.device),
            "out_dir": str(self.out_dir) if self.out_dir is not None else None,
            "checkpoint_last": str(self.out_dir / LAST) if self.out_dir is not None else None,
            "checkpoint_best": str(self.out_dir / BEST) if self.out_dir is not None and self.best["epoch"] is not None else None,
        }

    def describe(self) -> str:
        from .complexity import format_complexity
        c = self.cfg
        mode = ("linear probe of " if self.probe else "fine-tuning of ") + self.init_source["path"] \
            if self.init_source else "from scratch"
        return (f"task {self.task.describe()} | data {c.DATA.DATASET} ({self.n_train} train / {self.n_test} test images) | "
                f"genotype {c.MODEL.GENOTYPE if not self.init_source else 'from checkpoint'} | {self.meta['stem']} stem, "
                f"width {self.meta['width']}, depth {self.meta['depth']}, aux {self.meta['aux']} | {mode} | "
                f"{format_complexity(self.complexity)} | {self.world} processes | device {self.device}")


def train(cfg, genotype=None, out_dir=None, progress: bool = True, resume: bool = False,
          tensorboard: bool = True, stop_after: int | None = None) -> dict:
    """Train a fixed genotype as configured by ``cfg`` (see :func:`unnas.train.config.train_defaults`).

    Args:
      cfg: a (frozen) config from ``load_cfg(train_defaults(), ...)``.
      genotype: a :class:`Genotype`, zoo name, file or ``Genotype(...)`` string; None = ``cfg.MODEL.GENOTYPE``.
      out_dir: run directory (None = ``cfg.OUT_DIR``); checkpoints, metrics.jsonl, tb/, summary.json.
      progress: tqdm progress bar (with ETA) on stderr.
      resume: continue from ``out_dir/checkpoint_last.pt`` when it exists (exact: same weights and
        metrics as an uninterrupted run).
      tensorboard: write TensorBoard scalars to ``out_dir/tb``.
      stop_after: stop after this many epochs of this call (for tests / time-sliced jobs).

    Returns a JSON-serialisable dict:
      ``metric``        name of the primary metric ('top1' accuracy %, or 'miou' % for segmentation);
      ``best``, ``best_epoch``  best test value of the primary metric and its (0-based) epoch;
      ``final``         test value at the last evaluated epoch; ``final_test`` all its test metrics
                        (e.g. top1, top5, loss; or miou, pixel_acc, loss);
      ``curve``         one dict per epoch: epoch, lr, drop_prob, train_<m>, test_<m> (evaluated epochs),
                        best_<primary>, epoch_seconds;
      ``epochs``        epochs completed; ``wall_time`` seconds spent in training epochs (summed over
                        resumed segments);
      ``params``        parameters without the auxiliary head (DARTS convention), ``params_aux`` of the
                        aux head; ``macs`` (= ``flops``) fvcore multiply-adds for one sample in eval mode,
                        ``macs_aux`` of the aux head;
      ``task``, ``genotype`` (dict), ``genotype_repr``, ``width``, ``depth``, ``stem``, ``linear_probe``,
      ``init_from``, ``world_size``, ``device``, ``out_dir``, ``checkpoint_last``, ``checkpoint_best``.
    """
    out = Path(out_dir if out_dir is not None else cfg.OUT_DIR)
    trainer = Trainer(cfg, out, genotype=genotype, progress=progress, tensorboard=tensorboard,
                      meta=_resume_meta(out) if resume else None)
    if resume:
        trainer.resume()
    if trainer.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_cfg(cfg, out / "config.yaml")
        log.info("%s", trainer.describe())
    return trainer.run(stop_after=stop_after)


def _resume_meta(out: Path):
    """The network of a run being resumed comes from its checkpoint (a probe's INIT_FROM may be gone)."""
    path = out / LAST
    if not path.exists():
        return None
    return _load(path)["meta"]


def evaluate_checkpoint(path, opts=(), device: str | None = None) -> dict:
    """Evaluate a checkpoint of :func:`train` on the test split of its own config, updated by
    ``opts`` (``KEY VALUE`` pairs, e.g. ``["DATA.ROOT", dir]``). Returns the test metrics plus
    ``metric``, ``epoch`` and ``checkpoint``."""
    from fvcore.common.config import CfgNode as CN
    from .config import train_defaults, validate_train_cfg

    state = _load(path)
    cfg = train_defaults()
    cfg.merge_from_other_cfg(CN.load_cfg(state["cfg"]))
    if len(opts) % 2:
        raise ConfigError(f"overrides must be KEY VALUE pairs; got an odd number: {' '.join(opts)}")
    try:
        cfg.merge_from_list(list(opts))
    except (KeyError, ValueError, AssertionError) as exc:
        raise ConfigError(f"override: {' '.join(str(exc).split())}") from exc
    if device:
        cfg.DEVICE = device
    validate_train_cfg(cfg)
    cfg.freeze()
    trainer = Trainer(cfg, None, tensorboard=False, meta=state["meta"])
    trainer.load_state_dict(state, weights_only=True)
    metrics = trainer.evaluate()
    return {**metrics, "metric": trainer.primary, "epoch": state["epoch"], "checkpoint": str(path)}
