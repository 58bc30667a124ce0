"""The shared engine on its own: checkpointer, loop life cycle and hook order, hook state across a
resume, step- vs epoch-counting periods, the LR schedule and the non-finite guard."""
import json
import math
import os
import pickle
from pathlib import Path

import pytest
import torch

from unnas.data import DataError
from unnas.engine import (Checkpointer, CheckpointHook, EvalHook, Hook, LoopBase, LRSchedule, MetricsHook,
                          NonFiniteLossError, Period, check_finite, load_checkpoint)


# ---- a toy loop: one scalar parameter, SGD on (w - target)^2 ---------------------------------
class ToyLoop(LoopBase):
    def __init__(self, out_dir, hooks, epochs=3, steps=4, ckpt_every=0):
        self.out_dir, self.epochs, self.steps_per_epoch, self.device = out_dir, epochs, steps, "cpu"
        self.w = torch.zeros(())
        self.history = []
        self.checkpointer = Checkpointer(out_dir, "ckpt.pt")
        period = Period(ckpt_every, "step") if ckpt_every else None
        super().__init__([EvalHook(lambda: {"w": float(self.w)}, Period(2, "epoch", final=True)), *hooks,
                          CheckpointHook(period)])

    def begin_epoch(self, epoch):
        self.targets = iter(float(epoch * 10 + s) for s in range(self.step, self.steps_per_epoch))  # resumes mid-epoch

    def run_step(self, epoch, step):
        target = next(self.targets)
        self.w = self.w - 0.1 * 2 * (self.w - target)
        return {"epoch": epoch, "step": step, "global_step": self.global_step + 1, "loss": float((self.w - target) ** 2),
                "lr": 0.1}

    def end_epoch(self, epoch):
        return {"epoch": epoch, "w_end": float(self.w)}

    def record_epoch(self, stats):
        self.history.append(dict(stats))

    def summary(self):
        return {"w": float(self.w), "epochs": self.epoch}

    def state_dict(self):
        return {"w": self.w, "history": self.history, **self.counters(), "hooks": self.hook_states()}

    def save_checkpoint(self, stats=None):
        self.checkpointer.save(self.state_dict())

    def load_state_dict(self, state):
        self.w, self.history = state["w"], state["history"]
        self.load_counters(state)
        self.load_hook_states(state["hooks"])


class Recorder(Hook):
    """Records the life-cycle calls; its call count is state that survives a resume."""

    def __init__(self, events):
        self.events, self.calls = events, 0

    def before_run(self, loop): self.events.append("before_run")
    def after_step(self, loop, stats):
        self.calls += 1
        self.events.append(f"step{stats['global_step']}")
    def collect_epoch(self, loop, stats): self.events.append(f"collect{stats['epoch']}:{'eval_w' in stats}")
    def after_epoch(self, loop, stats):
        self.events.append(f"epoch{stats['epoch']}:ckpt_at{self._ckpt_epoch(loop)}")
    def after_run(self, loop): self.events.append(f"after_run:{loop.finished}")

    @staticmethod
    def _ckpt_epoch(loop):
        s = loop.checkpointer.load()
        return None if s is None else s["epoch"]

    def state_dict(self): return {"calls": self.calls}
    def load_state_dict(self, state): self.calls = state["calls"]


def test_hook_order_and_life_cycle(tmp_path):
    events = []
    loop = ToyLoop(tmp_path, [Recorder(events)], epochs=2, steps=2)
    out = loop.run()
    # eval is collected before the other hooks see the epoch (epoch 0: not due, epoch 1: final);
    # writers see the epoch before the checkpoint of that epoch is written (CheckpointHook is last)
    assert events == ["before_run", "step1", "step2", "collect0:False", "epoch0:ckpt_atNone",
                      "step3", "step4", "collect1:True", "epoch1:ckpt_at1", "after_run:True"]
    assert out == {"w": float(loop.w), "epochs": 2}
    assert [h["epoch"] for h in loop.history] == [0, 1] and all("epoch_seconds" in h for h in loop.history)


@pytest.mark.parametrize("kill_after, ckpt_every", [(1, 0), (5, 0), (6, 2), (7, 1)])
def test_resume_is_exact_with_hook_state(tmp_path, kill_after, ckpt_every):
    ref = ToyLoop(tmp_path / "ref", [Recorder([])], ckpt_every=ckpt_every)
    ref.run()
    killed = ToyLoop(tmp_path / "run", [Recorder([])], ckpt_every=ckpt_every)
    assert killed.run(max_steps=kill_after) == {} and killed.stopped_early and not killed.finished
    rec = Recorder([])
    resumed = ToyLoop(tmp_path / "run", [rec], ckpt_every=ckpt_every)
    resumed_from = resumed.resume() and resumed.global_step
    # the resume point: the last step checkpoint, else the last epoch end (4 steps per epoch), else nothing
    expected = max(kill_after - kill_after % ckpt_every if ckpt_every else 0, kill_after - kill_after % 4)
    assert (resumed_from or 0) == expected
    resumed.run()
    assert torch.equal(resumed.w, ref.w)
    strip = lambda hs: [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in hs]  # noqa: E731
    assert strip(resumed.history) == strip(ref.history)
    assert rec.calls == ref.hooks[1].calls == 12  # the hook's state came back with the checkpoint


def test_metrics_lines_are_cut_back_on_resume(tmp_path):
    def lines():
        return [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    loop = ToyLoop(tmp_path, [MetricsHook(Period(1, "step"))], epochs=2, steps=3)
    loop.run(max_steps=5)                     # checkpoint at step 3; records up to step 5
    assert [r["global_step"] for r in lines()][-1] == 5
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"torn": ')                  # a line torn by a kill
    loop = ToyLoop(tmp_path, [MetricsHook(Period(1, "step"))], epochs=2, steps=3)
    loop.resume()
    loop.run()
    recs = lines()
    steps = [r["global_step"] for r in recs if r["type"] == "step"]
    assert steps == [1, 2, 3, 4, 5, 6] and [r["epoch"] for r in recs if r["type"] == "epoch"] == [0, 1]


def test_period_counts_steps_or_epochs():
    class L:
        epochs, global_step = 10, 0
    loop = L()
    by_step, by_epoch = Period(3, "step"), Period(4, "epoch", final=True)
    fired = []
    for gs in range(1, 10):
        loop.global_step = gs
        fired.append(by_step.after_step(loop))
    assert [i + 1 for i, f in enumerate(fired) if f] == [3, 6, 9]
    assert not by_epoch.after_step(loop)
    assert [e for e in range(1, 11) if by_epoch.after_epoch(loop, e)] == [4, 8, 10]
    assert [e for e in range(1, 11) if Period(0, "epoch", final=True).after_epoch(loop, e)] == [10]
    assert not any(by_step.after_epoch(loop, e) for e in range(1, 10))
    with pytest.raises(ValueError):
        Period(1, "minute")


# ---- checkpointer ------------------------------------------------------------------------------
def test_checkpointer_writes_copies_first_and_loads_safely(tmp_path, monkeypatch):
    ck = Checkpointer(tmp_path, "last.pt")
    assert ck.load() is None and ck.last_good is None
    order = []
    import unnas.engine.checkpoint as mod
    real = mod.atomic_torch_save
    monkeypatch.setattr(mod, "atomic_torch_save", lambda obj, path: (order.append(path.name), real(obj, path)))
    ck.save({"w": torch.ones(2), "epoch": 1, "hist": [{"a": 1.0}]}, copies=["best.pt"])
    assert order == ["best.pt", "last.pt"] and ck.last_good == tmp_path / "last.pt"
    assert torch.equal(Checkpointer(tmp_path, "last.pt").load()["w"], torch.ones(2))
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_load_checkpoint_never_runs_code(tmp_path):
    bad = tmp_path / "evil.pt"
    with open(bad, "wb") as f:
        pickle.dump({"model": _Evil()}, f)
    with pytest.raises(DataError, match="cannot read checkpoint"):
        load_checkpoint(bad)
    assert not (tmp_path / "pwned").exists() and not os.path.exists("pwned")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(DataError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "list.pt")


# ---- schedule and guard --------------------------------------------------------------------------
def test_lr_schedule_per_step_and_per_epoch():
    per_step = LRSchedule(0.1, 0.0, epochs=2, steps_per_epoch=4)
    assert per_step.at(0, 0) == pytest.approx(0.1) and per_step.at(2, 0) == pytest.approx(0.0)
    assert per_step.at(1, 0) == pytest.approx(0.05) and per_step.at(0, 2) == pytest.approx(0.05 * (1 + math.cos(math.pi / 4)))
    per_epoch = LRSchedule(0.1, 0.0, epochs=2, steps_per_epoch=4, per_step=False)
    assert per_epoch.at(0, 3) == per_epoch.at(0, 0)
    const = LRSchedule(0.1, 0.0, 10, 1, kind="const", warmup_epochs=2, warmup_factor=0.1)
    assert const.at(0) == pytest.approx(0.01) and const.at(1) == pytest.approx(0.055) and const.at(5) == 0.1
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    assert per_step.apply(opt, 1, 0) == opt.param_groups[0]["lr"] == pytest.approx(0.05)


def test_check_finite_names_the_last_good_checkpoint():
    check_finite({"loss": 1.0, "arch loss": None}, epoch=0, step=0, run="search", last_good=None, fix="x")
    with pytest.raises(NonFiniteLossError, match=r"epoch 2 step 3 \(loss nan\); training stopped, last good "
                                                 r"checkpoint /r/last.pt is kept; lower OPTIM.LR"):
        check_finite({"loss": float("nan")}, epoch=2, step=3, run="training", last_good="/r/last.pt",
                     fix="lower OPTIM.LR")
    with pytest.raises(NonFiniteLossError, match="no checkpoint had been written yet"):
        check_finite({"loss": float("inf")}, epoch=0, step=0, run="training", last_good=None, fix="x")


def test_a_state_with_non_finite_tensors_is_never_saved(tmp_path):
    ck = Checkpointer(tmp_path, "last.pt", run="training", fix="lower OPTIM.LR")
    ck.save({"model": {"w": torch.ones(3)}, "epoch": 1})
    before = (tmp_path / "last.pt").read_bytes()
    poisoned = {"model": {"w": torch.ones(3), "bn.running_var": torch.tensor([1.0, float("inf")])},
                "optim": {"state": [{"momentum": torch.zeros(2)}]}, "steps": torch.tensor([7]), "epoch": 2}
    with pytest.raises(NonFiniteLossError, match=r"non-finite values in the state after epoch 2 \(1 of 3 tensors, "
                                                 r"e.g. model.bn.running_var\); training stopped, last good checkpoint "
                                                 r".*last.pt is kept; lower OPTIM.LR"):
        ck.save(poisoned, copies=["best.pt"], what="epoch 2")
    assert (tmp_path / "last.pt").read_bytes() == before and not (tmp_path / "best.pt").exists()


def test_training_that_diverges_keeps_only_finite_checkpoints(tmp_path):
    """OPTIM.LR 1e9 without clipping: the run stops with one line, and no checkpoint it leaves holds a
    non-finite tensor (the training loss can stay finite for an epoch while the weights are gone)."""
    from unnas.config import load_cfg
    from unnas.train import train, train_defaults, validate_train_cfg

    cfg = load_cfg(train_defaults(), None, [
        "DATA.SYNTHETIC.NUM_TRAIN", "32", "DATA.SYNTHETIC.NUM_TEST", "16", "MODEL.WIDTH", "4", "MODEL.DEPTH", "2",
        "TRAIN.BATCH_SIZE", "8", "TRAIN.EPOCHS", "3", "OPTIM.LR", "1e9", "OPTIM.GRAD_CLIP", "0.0", "DEVICE", "cpu",
        "MODEL.GENOTYPE", "DARTS_V2", "OUT_DIR", str(tmp_path)], validate_train_cfg)
    with pytest.raises(NonFiniteLossError, match="stopped") as exc:
        train(cfg, out_dir=tmp_path, progress=False, tensorboard=False)
    assert "\n" not in str(exc.value)
    for name in ("checkpoint_last.pt", "checkpoint_best.pt"):
        if (tmp_path / name).exists():
            state = load_checkpoint(tmp_path / name)
            assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point()), name


def test_stale_temporaries_are_removed_when_a_run_directory_is_claimed(tmp_path):
    from unnas.engine.rundir import claim_run_dir

    (tmp_path / ".checkpoint_best.pt.abc123.tmp").write_bytes(b"torn")
    (tmp_path / ".config.yaml.xyz.tmp").write_text("torn")
    (tmp_path / "keep.tmp").write_text("not ours: no leading dot")
    with claim_run_dir(tmp_path):
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == ["keep.tmp"]


def test_an_unwritable_cache_is_said_once(tmp_path, monkeypatch, caplog):
    import numpy as np

    import unnas.utils.io as io_mod
    monkeypatch.setattr(io_mod, "_cache_warned", False)
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder should be")
    with caplog.at_level("WARNING", logger="unnas"):
        io_mod.save_to_cache(blocked / "table.npy", np.zeros(3))
        io_mod.save_to_cache(blocked / "other.npy", np.zeros(3))
    warnings = [r.getMessage() for r in caplog.records if "cannot write the cache" in r.getMessage()]
    assert len(warnings) == 1 and "UNNAS_CACHE" in warnings[0]
    assert not list(tmp_path.glob(".*.tmp"))


def test_default_run_directories_are_numbered_and_resume_takes_the_latest(tmp_path, monkeypatch):
    from unnas.config import load_cfg
    from unnas.engine.rundir import numbered_run_dir
    from unnas.search.config import run_dir as search_dir, search_defaults
    from unnas.train.config import run_dir as train_dir, train_defaults

    monkeypatch.chdir(tmp_path)
    assert numbered_run_dir("runs", "rot_x", "ckpt.pt") == Path("runs/rot_x")
    assert numbered_run_dir("runs", "rot_x", "ckpt.pt", resume=True) == Path("runs/rot_x")
    for name in ("rot_x", "rot_x_2", "rot_x_10", "rot_x_other"):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "ckpt.pt").write_bytes(b"")
    assert numbered_run_dir("runs", "rot_x", "ckpt.pt") == Path("runs/rot_x_3")      # first free number
    assert numbered_run_dir("runs", "rot_x", "ckpt.pt", resume=True) == Path("runs/rot_x_10")
    assert numbered_run_dir("runs", "rot_y", "ckpt.pt") == Path("runs/rot_y")

    cfg = load_cfg(search_defaults(), None, ["TASK.NAME", "jigsaw", "DATA.DATASET", "cifar10"])
    assert search_dir(cfg) == Path("runs/search/jig_cifar10")
    cfg = load_cfg(search_defaults(), None, ["OUT_DIR", "mine"])
    assert search_dir(cfg) == Path("mine")
    cfg = load_cfg(train_defaults(), None, ["MODEL.GENOTYPE", "nets/my cell.json", "TASK.NAME", "rotation"])
    assert train_dir(cfg) == Path("runs/train/my_cell_rot_synthetic")
    cfg = load_cfg(train_defaults(), None, ["MODEL.GENOTYPE", "runs/search/jig_cifar10/genotype.json"])
    assert train_dir(cfg) == Path("runs/train/jig_cifar10_cls_synthetic")
    cfg = load_cfg(train_defaults(), None, ["MODEL.GENOTYPE", "Genotype(normal=[], normal_concat=[], reduce=[], "
                                            "reduce_concat=[])", "TRAIN.INIT_FROM", "runs/rot/checkpoint_last.pt",
                                            "TRAIN.LINEAR_PROBE", "True"])
    assert train_dir(cfg) == Path("runs/train/probe_rot_cls_synthetic")


def test_train_tool_runs_twice_without_out_then_resumes_the_latest(tmp_path, monkeypatch, capsys):
    import unnas.commands.train as tool
    monkeypatch.chdir(tmp_path)
    tiny = ["--no-progress", "--epochs", "1", "DATA.SYNTHETIC.NUM_TRAIN", "16", "DATA.SYNTHETIC.NUM_TEST", "8",
            "MODEL.WIDTH", "4", "MODEL.DEPTH", "2", "TRAIN.BATCH_SIZE", "8", "DEVICE", "cpu", "NUM_THREADS", "1"]
    assert tool.main(tiny) == 0 and tool.main(tiny) == 0
    runs = sorted(p.name for p in (tmp_path / "runs" / "train").iterdir())
    assert runs == ["DARTS_V2_cls_synthetic", "DARTS_V2_cls_synthetic_2"]
    assert "OUT_DIR: runs/train/DARTS_V2_cls_synthetic_2" in (tmp_path / "runs/train/DARTS_V2_cls_synthetic_2/config.yaml").read_text()
    assert tool.main(["--resume", "--epochs", "2", "--no-progress"]) == 0
    assert load_checkpoint(tmp_path / "runs/train/DARTS_V2_cls_synthetic_2/checkpoint_last.pt")["epoch"] == 2
    assert load_checkpoint(tmp_path / "runs/train/DARTS_V2_cls_synthetic/checkpoint_last.pt")["epoch"] == 1


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_honour_the_umask(tmp_path, umask, mode):
    """Results written atomically get the mode a plain open() would give (mkstemp alone makes 0600),
    so a group sharing a results folder can read them."""
    from unnas.utils.io import atomic_torch_save, atomic_write_text

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "summary.json", "{}\n")
        atomic_torch_save({"w": torch.ones(1)}, tmp_path / "checkpoint.pt")
    finally:
        os.umask(old)
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == mode
    assert (tmp_path / "checkpoint.pt").stat().st_mode & 0o777 == mode
