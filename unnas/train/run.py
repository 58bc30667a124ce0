"""Library entry points of retraining: :func:`train` (returns a summary dict, see its docstring)
and :func:`evaluate_checkpoint`. ``tools/train.py`` is a thin CLI over both."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from unnas.config import merge_overrides, save_cfg
from unnas.engine import Hook, load_checkpoint

from .config import run_dir
from .network import not_a_training_checkpoint
from .trainer import LAST, Trainer

log = logging.getLogger("unnas.train")


def train(cfg, genotype=None, out_dir=None, progress: bool = True, resume: bool = False,
          tensorboard: bool = True, stop_after: int | None = None, hooks: list[Hook] | None = None) -> dict:
    """Train a fixed genotype as configured by ``cfg`` (see :func:`unnas.train.config.train_defaults`).

    Args:
      cfg: a (frozen) config from ``load_cfg(train_defaults(), ...)``.
      genotype: a :class:`Genotype`, zoo name, file or ``Genotype(...)`` string; None = ``cfg.MODEL.GENOTYPE``.
      out_dir: run directory (None = :func:`unnas.train.config.run_dir`: ``cfg.OUT_DIR``, or an automatic
        ``runs/train/...`` one); checkpoints, metrics.jsonl, tb/, summary.json.
      progress: progress with ETA on stderr (a tqdm bar on a terminal, plain lines otherwise).
      resume: continue from ``out_dir/checkpoint_last.pt`` when it exists (exact: same weights and
        metrics as an uninterrupted run).
      tensorboard: write TensorBoard scalars to ``out_dir/tb``.
      stop_after: stop after this many epochs of this call (for tests / time-sliced jobs).
      hooks: extra :class:`unnas.engine.Hook` s, run after the trainer's writers.

    Returns a JSON-serialisable dict:
      ``metric``        name of the primary metric ('top1' accuracy %, or 'miou' % for segmentation);
      ``best``, ``best_epoch``  best test value of the primary metric and its (0-based) epoch;
      ``final``         test value at the last evaluated epoch; ``final_test`` all its test metrics
                        (e.g. top1, top5, loss; or miou, pixel_acc, loss);
      ``curve``         one dict per epoch: epoch, lr, drop_prob, train_<m>, test_<m> (evaluated epochs),
                        best_<primary>, epoch_seconds (training and evaluation);
      ``epochs``        epochs completed; ``wall_time`` seconds spent in epochs (summed over
                        resumed segments);
      ``params``        parameters without the auxiliary head (DARTS convention), ``params_aux`` of the
                        aux head; ``macs`` (= ``flops``) fvcore multiply-adds for one sample in eval mode,
                        ``macs_aux`` of the aux head;
      ``task``, ``genotype`` (dict), ``genotype_repr``, ``width``, ``depth``, ``stem``, ``linear_probe``,
      ``init_from``, ``world_size``, ``device``, ``out_dir``, ``checkpoint_last``, ``checkpoint_best``.
    """
    out = Path(out_dir) if out_dir is not None else run_dir(cfg, resume)
    trainer = Trainer(cfg, out, genotype=genotype, progress=progress, tensorboard=tensorboard,
                      meta=_resume_meta(out) if resume else None, hooks=hooks)
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
    return load_checkpoint(path)["meta"]


@dataclass
class LoadedNetwork:
    """A trained network rebuilt from its checkpoint (see :func:`load_network`)."""
    network: torch.nn.Module     # FixedNetwork in eval mode, the checkpoint's weights, on ``device``
    task: object                 # the task of its head (``task.make_batch`` builds inputs and targets)
    input_task: object | None    # the task whose inputs the trunk reads, when another (colorization: L)
    meta: dict                   # the checkpoint's network description (genotype, width, depth, ...)
    cfg: object                  # the run's config
    epoch: int                   # epochs trained

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """The network input for a batch of uint8 RGB images (N, 3, H, W) at the trained size, as
        evaluation builds it (normalised; L only for a colorization trunk)."""
        images = images.to(next(self.network.parameters()).device)
        if self.input_task is not None:
            return self.input_task.make_input(images)
        x, _ = self.task.make_batch(images, torch.zeros(len(images), dtype=torch.long, device=images.device),
                                    False, None)
        return x


def load_network(path, device: str = "cpu") -> LoadedNetwork:
    """Rebuild the network of a :func:`train` checkpoint (``checkpoint_last.pt`` / ``checkpoint_best.pt``)
    from its own metadata, with its weights, in eval mode; no data set is read (checkpoints
    written before the data description was recorded read the test split's description)::

        net = load_network("runs/train/DARTS_V2_cls_cifar10/checkpoint_best.pt")
        logits = net.network(net.inputs(uint8_images))
    """
    from fvcore.common.config import CfgNode as CN

    from unnas.config import task_options
    from unnas.data import DataInfo, build_dataset
    from unnas.tasks import build_task

    from .config import train_defaults
    from .network import build_train_network, input_adapter, resolve_network

    state = load_checkpoint(path)
    if "meta" not in state or "cfg" not in state:
        raise not_a_training_checkpoint(path, state)
    cfg = train_defaults()
    cfg.merge_from_other_cfg(CN.load_cfg(state["cfg"]))
    cfg.freeze()
    meta = state["meta"]
    info = DataInfo(**{**meta["data_info"], "mean": tuple(meta["data_info"]["mean"]),
                       "std": tuple(meta["data_info"]["std"])}) if "data_info" in meta else \
        build_dataset(cfg.DATA, "test").info
    task = build_task(cfg.TASK.NAME, info, **task_options(cfg))
    plan, _, _ = resolve_network(cfg, task, info, None, meta)
    network = build_train_network(plan, task)
    network.load_state_dict(state["model"])
    network.to(device).eval()
    return LoadedNetwork(network, task, input_adapter(plan, task, info), meta, cfg, int(state["epoch"]))


def evaluate_checkpoint(path, opts=(), device: str | None = None) -> dict:
    """Evaluate a checkpoint of :func:`train` on the test split of its own config, updated by
    ``opts`` (``KEY VALUE`` pairs, e.g. ``["DATA.ROOT", dir]``). Returns the test metrics plus
    ``metric``, ``epoch`` and ``checkpoint``."""
    from fvcore.common.config import CfgNode as CN
    from .config import train_defaults, validate_train_cfg

    state = load_checkpoint(path)
    if "meta" not in state or "cfg" not in state:
        raise not_a_training_checkpoint(path, state)
    cfg = train_defaults()
    cfg.merge_from_other_cfg(CN.load_cfg(state["cfg"]))
    merge_overrides(cfg, opts)
    if device:
        cfg.DEVICE = device
    validate_train_cfg(cfg)
    cfg.freeze()
    trainer = Trainer(cfg, None, tensorboard=False, meta=state["meta"])
    trainer.load_state_dict(state, model_only=True)
    metrics = trainer.evaluate()
    return {**metrics, "metric": trainer.primary, "epoch": state["epoch"], "checkpoint": str(path)}
