"""A small loop base (after detectron2's ``TrainerBase``): epochs of steps, hooks, exact resume.

A loop subclass supplies ``begin_epoch`` (set up the epoch's batches), ``run_step`` (one
optimisation step, returning its stats), ``end_epoch`` (the epoch's own stats, e.g. training
meters), ``record_epoch`` (its per-epoch bookkeeping, e.g. histories, the best epoch),
``save_checkpoint`` and ``load_state_dict`` (its state, through ``self.checkpointer``, a
:class:`~unnas.engine.checkpoint.Checkpointer`, on ``self.device``). Hooks do everything else, in
list order:

* ``after_step(loop, stats)`` after every step;
* at the end of an epoch, first ``collect_epoch(loop, stats)`` on every hook (hooks that add
  values, e.g. :class:`~unnas.engine.hooks.EvalHook`), then the loop records the epoch, then
  ``after_epoch(loop, stats)`` on every hook (writers, and the checkpoint last);
* ``after_run(loop)`` when ``run`` returns (also when stopped early: ``loop.finished`` tells),
  ``on_error(loop, exc)`` when it raises.

The loop's counters (``epoch``, ``step`` = next step within the epoch, ``global_step``) and every
hook's ``state_dict()`` go into the checkpoint, so a resumed run continues exactly.
"""
from __future__ import annotations

import time

from .hooks import Hook
from .rundir import claim_if_main


class LoopBase:
    epochs: int
    steps_per_epoch: int
    hooks: list[Hook]

    def __init__(self, hooks: list[Hook]):
        self.hooks = list(hooks)
        self.epoch = 0
        self.step = 0
        self.global_step = 0
        self.stopped_early = False

    # ---- what a loop supplies ---------------------------------------------------------------
    def begin_epoch(self, epoch: int) -> None:
        raise NotImplementedError

    def run_step(self, epoch: int, step: int) -> dict:
        raise NotImplementedError

    def end_epoch(self, epoch: int) -> dict:
        raise NotImplementedError

    def record_epoch(self, stats: dict) -> None:
        raise NotImplementedError

    def summary(self) -> dict:
        raise NotImplementedError

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError

    def save_checkpoint(self, stats: dict | None = None) -> None:
        """Save :meth:`state_dict` through the loop's Checkpointer (``stats``: the epoch's, or None
        for a step checkpoint)."""
        raise NotImplementedError

    # ---- shared ----------------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    @property
    def finished(self) -> bool:
        return self.epoch >= self.epochs

    def counters(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "global_step": self.global_step}

    def load_counters(self, state: dict) -> None:
        self.epoch, self.step, self.global_step = state["epoch"], state.get("step", 0), state["global_step"]

    def hook_states(self) -> dict:
        """``{hook key: state}`` of the hooks that have state (see :meth:`Hook.state_dict`)."""
        out = {}
        for h in self.hooks:
            state = h.state_dict()
            if state is not None:
                out[h.state_key] = state
        return out

    def resume(self) -> bool:
        """Continue from the checkpointer's file if there is one (``load_state_dict``); True when resumed."""
        state = self.checkpointer.load(self.device)
        if state is None:
            return False
        self.load_state_dict(state)
        return True

    def load_hook_states(self, states: dict) -> None:
        for h in self.hooks:
            if h.state_key in states:
                h.load_state_dict(states[h.state_key])

    def run(self, max_steps: int | None = None, max_epochs: int | None = None) -> dict:
        """Run to the last epoch, or stop after ``max_steps`` steps / ``max_epochs`` epochs of this
        call (``stopped_early``; as a kill would, except that hooks close their files). Returns
        :meth:`summary` when finished, else {}."""
        with self._claim():
            return self._run(max_steps, max_epochs)

    def _claim(self):
        """Rank 0 holds the run directory for the whole run (see :mod:`unnas.engine.rundir`)."""
        return claim_if_main(getattr(self, "out_dir", None), getattr(self, "is_main", True))

    def _run(self, max_steps, max_epochs) -> dict:
        steps_now = epochs_now = 0
        try:
            for h in self.hooks:
                h.before_run(self)
            while self.epoch < self.epochs:
                if max_epochs is not None and epochs_now >= max_epochs:
                    self.stopped_early = True
                    break
                epoch, t0 = self.epoch, time.time()
                self.begin_epoch(epoch)
                while self.step < self.steps_per_epoch:
                    if max_steps is not None and steps_now >= max_steps:
                        self.stopped_early = True
                        break
                    stats = self.run_step(epoch, self.step)
                    self.step += 1
                    self.global_step += 1
                    steps_now += 1
                    for h in self.hooks:
                        h.after_step(self, stats)
                if self.stopped_early:
                    break
                stats = self.end_epoch(epoch)
                for h in self.hooks:
                    h.collect_epoch(self, stats)
                stats["epoch_seconds"] = time.time() - t0
                self.record_epoch(stats)
                self.epoch, self.step = epoch + 1, 0
                epochs_now += 1
                for h in self.hooks:
                    h.after_epoch(self, stats)
            for h in self.hooks:
                h.after_run(self)
        except BaseException as exc:
            for h in self.hooks:
                h.on_error(self, exc)
            raise
        return self.summary() if self.finished else {}
