"""Hooks that both loops use: JSON-lines metrics, TensorBoard, progress with ETA, evaluation and
periodic checkpoints; :class:`Period` says when a hook acts, counted in steps or in epochs.

Only rank 0 writes files (the loops give writer hooks to rank 0 only). Files that record the run
so far are cut back to the resumed checkpoint on resume, so a run killed at any point and resumed
leaves the same records as an uninterrupted one.
"""
from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from unnas.utils.io import atomic_write_text

from .guards import stopped

log = logging.getLogger("unnas")


@dataclass(frozen=True)
class Period:
    """Every ``every`` steps (``unit='step'``, counted in global steps) or epochs (``unit='epoch'``,
    counted in finished epochs); ``final`` also fires after the last epoch. ``every=0`` never fires
    (except ``final``)."""
    every: int
    unit: str = "step"
    final: bool = False

    def __post_init__(self):
        if self.unit not in ("step", "epoch"):
            raise ValueError(f"Period unit must be 'step' or 'epoch', got {self.unit!r}")

    def after_step(self, loop) -> bool:
        return self.unit == "step" and self.every > 0 and loop.global_step % self.every == 0

    def after_epoch(self, loop, epochs_done: int) -> bool:
        """``epochs_done``: epochs finished including the one ending now."""
        if self.final and epochs_done >= loop.epochs:
            return True
        if self.every <= 0:
            return False
        if self.unit == "epoch":
            return epochs_done % self.every == 0
        return False


class Hook:
    """Base class; every method is optional. ``state_dict`` returns None for a stateless hook;
    a hook with state returns a dict of plain values and tensors, which goes into the checkpoint
    under ``state_key``."""

    @property
    def state_key(self) -> str:
        return type(self).__name__

    def before_run(self, loop): ...
    def after_step(self, loop, stats: dict): ...
    def collect_epoch(self, loop, stats: dict): ...
    def after_epoch(self, loop, stats: dict): ...
    def after_run(self, loop): ...
    def on_error(self, loop, exc: BaseException): ...

    def state_dict(self) -> dict | None:
        return None

    def load_state_dict(self, state: dict) -> None: ...


def _jsonable(d: dict) -> dict:
    return {k: v if isinstance(v, (int, float, str, bool, type(None), list, dict)) else float(v) for k, v in d.items()}


def truncate_jsonl(path: Path, global_step: int) -> None:
    """Keep the records up to ``global_step`` (the resumed checkpoint's); drop later ones and any
    line torn by a kill."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("global_step", 0) <= global_step:
            keep.append(line)
    atomic_write_text(path, "".join(k + "\n" for k in keep))


class MetricsHook(Hook):
    """``metrics.jsonl``: a ``type: step`` line when ``period`` fires and a ``type: epoch`` line
    per epoch (written before the epoch's checkpoint; a resume drops lines past its checkpoint)."""

    def __init__(self, period: Period, filename: str = "metrics.jsonl"):
        self.period = period
        self.filename = filename
        self.file = None

    def before_run(self, loop):
        path = Path(loop.out_dir) / self.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        truncate_jsonl(path, loop.global_step)
        self.file = open(path, "a")

    def _write(self, rec: dict):
        try:
            self.file.write(json.dumps(_jsonable(rec)) + "\n")
            self.file.flush()
        except OSError as exc:   # e.g. a full disk: name the file (a bare write error names none)
            raise type(exc)(exc.errno, exc.strerror, self.file.name) from exc

    def after_step(self, loop, stats):
        if self.period.after_step(loop):
            self._write({"type": "step", **stats})

    def after_epoch(self, loop, stats):
        self._write({"type": "epoch", "global_step": loop.global_step, **stats})

    def _close(self):
        if self.file is not None and not self.file.closed:
            self.file.close()

    def after_run(self, loop):
        self._close()

    def on_error(self, loop, exc):
        self._close()


class TensorBoardHook(Hook):
    """Step scalars (``train/loss``, ``train/lr``, ``arch/val_loss`` when present) when ``period``
    fires, every numeric epoch stat as ``epoch/<key>``, and whatever the loop adds in
    ``loop.write_tensorboard(writer, stats)``."""

    STEP_KEYS = {"loss": "train/loss", "lr": "train/lr", "arch_loss": "arch/val_loss"}

    def __init__(self, period: Period, subdir: str = "tb"):
        self.period = period
        self.subdir = subdir
        self.writer = None

    def before_run(self, loop):
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(str(Path(loop.out_dir) / self.subdir), purge_step=loop.global_step or None)

    def after_step(self, loop, stats):
        if not self.period.after_step(loop):
            return
        for key, tag in self.STEP_KEYS.items():
            if stats.get(key) is not None:
                self.writer.add_scalar(tag, stats[key], loop.global_step)

    def after_epoch(self, loop, stats):
        for k, v in stats.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch":
                self.writer.add_scalar(f"epoch/{k}", v, loop.global_step)
        extra = getattr(loop, "write_tensorboard", None)
        if extra is not None:
            extra(self.writer, stats)
        self.writer.flush()

    def _close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def after_run(self, loop):
        self._close()

    def on_error(self, loop, exc):
        self._close()


def _hms(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class ProgressHook(Hook):
    """Progress with ETA: a tqdm bar on a terminal; on a redirected stream (a log file) a plain
    line every ``lines_every`` steps instead of carriage returns (default: about 20 lines a run)."""

    def __init__(self, desc: str, stream=None, lines_every: int = 0):
        self.desc = desc
        self.stream = stream or sys.stderr
        self.lines_every = lines_every
        self.bar = None

    def before_run(self, loop):
        self.t0, self.start_step = time.time(), loop.global_step
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        if self.tty:
            from tqdm import tqdm
            self.bar = tqdm(total=loop.total_steps, initial=loop.global_step, desc=self.desc, unit="step",
                            dynamic_ncols=True, file=self.stream)
        self.every = self.lines_every or max(1, loop.total_steps // 20)

    @staticmethod
    def _postfix(loop, stats) -> dict:
        post = {"ep": f"{stats['epoch'] + 1}/{loop.epochs}", "loss": f"{stats['loss']:.3f}", "lr": f"{stats['lr']:.4f}"}
        if stats.get("arch_loss") is not None:
            post["arch"] = f"{stats['arch_loss']:.3f}"
        return post

    def after_step(self, loop, stats):
        if self.bar is not None:
            self.bar.update(1)
            if loop.global_step % 5 == 0 or stats["step"] == 0:
                self.bar.set_postfix(self._postfix(loop, stats), refresh=False)
            return
        if loop.global_step % self.every and loop.global_step != loop.total_steps:
            return
        done = loop.global_step - self.start_step
        rate = (time.time() - self.t0) / max(done, 1)
        post = " ".join(f"{k} {v}" for k, v in self._postfix(loop, stats).items())
        print(f"{self.desc}: step {loop.global_step}/{loop.total_steps} ({100 * loop.global_step / loop.total_steps:.0f}%)"
              f" {post} | {rate:.2f} s/step, ETA {_hms(rate * (loop.total_steps - loop.global_step))}",
              file=self.stream, flush=True)

    def _close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def after_run(self, loop):
        self._close()

    def on_error(self, loop, exc):
        self._close()


class EvalHook(Hook):
    """Adds ``prefix + metric`` for every metric of ``evaluate()`` to the epoch's stats when
    ``period`` fires (by default every epoch and after the last)."""

    def __init__(self, evaluate: Callable[[], dict], period: Period, prefix: str = "eval_"):
        self.evaluate = evaluate
        self.period = period
        self.prefix = prefix

    def collect_epoch(self, loop, stats):
        if not self.period.after_epoch(loop, loop.epoch + 1):
            return
        results = self.evaluate()
        loss = results.get("loss")
        if loss is not None and not math.isfinite(loss):
            ck = loop.checkpointer
            raise stopped(f"non-finite evaluation loss at epoch {loop.epoch} ({self.prefix}loss {loss})",
                          run=ck.run, last_good=ck.last_good, fix=ck.fix)
        stats.update({f"{self.prefix}{k}": v for k, v in results.items()})


class CheckpointHook(Hook):
    """Saves the loop (``loop.save_checkpoint(stats)``) after every epoch, and inside an epoch when
    ``step_period`` fires (not at its last step, which the epoch's checkpoint covers). Put it last,
    so that every record of the epoch is written before the checkpoint that a resume starts from."""

    def __init__(self, step_period: Period | None = None):
        self.step_period = step_period

    def after_step(self, loop, stats):
        if self.step_period is not None and self.step_period.after_step(loop) and loop.step < loop.steps_per_epoch:
            loop.save_checkpoint(None)

    def after_epoch(self, loop, stats):
        loop.save_checkpoint(stats)
