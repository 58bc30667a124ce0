"""The plug-in examples of docs/architecture.md, each registered inside a test and run through the
real loops on tiny settings: a toy pretext task (brightness) and a toy data set drive one search
step and one training step, a toy hook counts the steps and leaves its state in the checkpoint, a
smaller DARTS op set is a new search space, a weights-only step replaces the bilevel step, and a
study runs a custom training function. Registries are global, so every registration is removed
again when its test ends."""
import pytest
import torch

from search_spaces import SPACES, get_space
from search_spaces.darts import DartsSpace
from search_spaces.darts.genotype import Genotype
from unnas.config import load_cfg
from unnas.data import DATASETS, DataInfo, TensorDataset
from unnas.engine import Hook, Period
from unnas.registry import Registry
from unnas.search import BilevelStep, Searcher, search_defaults, validate_search_cfg
from unnas.study.config import study_defaults, validate_study_cfg
from unnas.study.runner import open_store, prepare_study, run_worker
from unnas.study.sampling import sample_archs
from unnas.tasks import TASKS, Task
from unnas.train import train, train_defaults, validate_train_cfg


# ---- the plug-ins (as in docs/architecture.md; registered by the fixtures below) ----------------
class BrightnessTask(Task):
    """Pretext task: which of three brightness scalings was applied to the image (no labels needed)."""

    name = "brightness"             # = the registered name (checkpoints record it, and the
                                    # trainer looks the task up again by it)
    needs_labels = False            # declared capabilities; the loops read these, never the name
    per_sample_cross_entropy = True
    per_image_logits = True
    input_kind = "rgb"
    SCALES = (0.5, 1.0, 1.5)

    @property
    def num_outputs(self) -> int:
        return len(self.SCALES)

    def make_batch(self, images, labels, train, generator=None):
        k = torch.randint(0, len(self.SCALES), (images.shape[0],), generator=generator, device=images.device)
        scale = torch.tensor(self.SCALES, device=images.device)[k].view(-1, 1, 1, 1)
        return self.normalize((images.float() * scale).clamp_(0, 255).to(torch.uint8)), k


def build_toy(root="", split="train", num_train=32, num_test=16, seed=0, **_):
    """A few random 16x16 uint8 images with 4 labels, held in memory (as unnas/data/synthetic.py)."""
    n = num_train if split == "train" else num_test
    g = torch.Generator().manual_seed(seed * 2 + (0 if split == "train" else 1))
    images = torch.randint(0, 256, (n, 3, 16, 16), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 4, (n,), generator=g)
    info = DataInfo(num_classes=4, image_size=16, mean=(0.5, 0.5, 0.5), std=(0.29, 0.29, 0.29))
    return TensorDataset(images, labels, info, crop_pad=2)


class StepCounter(Hook):
    """Counts the steps at which ``period`` fires; the count is state, so it is checkpointed."""

    def __init__(self, period=Period(1, "step")):
        self.period = period
        self.steps = 0
        self.events = []

    def before_run(self, loop): self.events.append("before_run")
    def collect_epoch(self, loop, stats): self.events.append("collect_epoch")
    def after_epoch(self, loop, stats): self.events.append("after_epoch")
    def after_run(self, loop): self.events.append("after_run")

    def after_step(self, loop, stats):
        self.events.append("after_step")
        if self.period.after_step(loop):
            self.steps += 1

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


class SmallDartsSpace(DartsSpace):
    """The DARTS cell with four candidate ops instead of eight."""

    name = "darts_small"

    def __init__(self, **kwargs):
        super().__init__(primitives=("none", "skip_connect", "max_pool_3x3", "sep_conv_3x3"), **kwargs)


class WeightsOnlyStep(BilevelStep):
    """An ablation of the bilevel step: the weights train, the alphas stay where they started."""

    def arch_step(self, *args, **kwargs):
        return None  # no architecture loss this step (the Searcher and check_finite accept None)


# ---- registration and clean-up -----------------------------------------------------------------
def _unregister(registry: Registry, name: str) -> None:
    """Registry has no unregister: drop the entry and its aliases from its internal dicts."""
    registry._items.pop(name, None)
    for alias in [a for a, target in registry._aliases.items() if target == name]:
        del registry._aliases[alias]


@pytest.fixture
def registered():
    """Registers (registry, name, object) triples for one test and removes them afterwards."""
    done = []

    def register(registry, name, obj, aliases=()):
        registry.register(name, aliases=aliases)(obj)
        done.append((registry, name))
        return obj

    try:
        yield register
    finally:
        for registry, name in reversed(done):
            _unregister(registry, name)


@pytest.fixture
def toy(registered):
    registered(TASKS, "brightness", BrightnessTask, aliases=("bright",))
    registered(DATASETS, "toy_blobs", build_toy)


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py


SEARCH_TINY = ["TASK.NAME", "brightness", "DATA.DATASET", "toy_blobs", "DATA.SYNTHETIC.NUM_TRAIN", "32",
               "DATA.SYNTHETIC.NUM_TEST", "16", "MODEL.WIDTH", "4", "MODEL.DEPTH", "3", "SEARCH.BATCH_SIZE", "8",
               "SEARCH.EPOCHS", "1", "SEARCH.STEPS_PER_EPOCH", "1", "SEARCH.EVAL_BATCHES", "1",
               "SEARCH.NUM_THREADS", "1", "DEVICE", "cpu"]
TRAIN_TINY = ["TASK.NAME", "brightness", "DATA.DATASET", "toy_blobs", "DATA.SYNTHETIC.NUM_TRAIN", "32",
              "DATA.SYNTHETIC.NUM_TEST", "16", "MODEL.WIDTH", "4", "MODEL.DEPTH", "3", "TRAIN.BATCH_SIZE", "8",
              "TRAIN.EPOCHS", "1", "TRAIN.STEPS_PER_EPOCH", "1", "TRAIN.EVAL_BATCHES", "1", "NUM_THREADS", "1",
              "DEVICE", "cpu"]
LIFE_CYCLE = ["before_run", "after_step", "collect_epoch", "after_epoch", "after_run"]


def _search_cfg(out, *extra):
    return load_cfg(search_defaults(), None, SEARCH_TINY + ["OUT_DIR", str(out), *extra], validate_search_cfg)


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


# ---- the tests ---------------------------------------------------------------------------------
def test_registrations_are_removed_after_the_test(registered):
    assert "brightness" not in TASKS and "toy_blobs" not in DATASETS and "darts_small" not in SPACES
    registered(TASKS, "brightness", BrightnessTask, aliases=("bright",))
    assert TASKS.get("Bright") is BrightnessTask
    _unregister(TASKS, "brightness")
    assert "brightness" not in TASKS and "bright" not in TASKS


def test_toy_task_and_data_search_one_step_with_a_counting_hook(tmp_path, toy):
    cfg = _search_cfg(tmp_path)
    counter = StepCounter()
    s = Searcher(cfg, tmp_path, hooks=[counter])
    assert s.task.name == "brightness" and s.dataset.info.image_size == 16
    alphas, weights = _params(s.arch), _params(s.model)
    summary = s.run(max_steps=1)
    assert s.global_step == 1 and summary["task"] == "brightness" and summary["epochs"] == 1
    assert counter.steps == 1 and counter.events == LIFE_CYCLE
    assert not all(torch.equal(a, b) for a, b in zip(alphas, s.arch.parameters()))    # an arch step ran
    assert not all(torch.equal(a, b) for a, b in zip(weights, s.model.parameters()))  # and a weight step
    assert 0.0 <= s.epoch_stats[0]["eval_top1"] <= 100.0
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["hooks"]["StepCounter"] == {"steps": 1} and ckpt["global_step"] == 1

    again = StepCounter()
    resumed = Searcher(cfg, tmp_path, hooks=[again])
    assert resumed.resume() and again.steps == 1 and resumed.finished


def test_toy_task_and_data_train_one_step_with_a_counting_hook(tmp_path, toy):
    cfg = load_cfg(train_defaults(), None, TRAIN_TINY + ["OUT_DIR", str(tmp_path)], validate_train_cfg)
    counter = StepCounter()
    result = train(cfg, out_dir=tmp_path, progress=False, tensorboard=False, hooks=[counter])
    assert result["task"] == "brightness" and result["epochs"] == 1 and result["metric"] == "top1"
    assert 0.0 <= result["final"] <= 100.0
    assert counter.steps == 1 and counter.events == LIFE_CYCLE
    ckpt = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)
    assert ckpt["hooks"]["StepCounter"] == {"steps": 1} and ckpt["global_step"] == 1
    assert ckpt["meta"]["task"] == "brightness" and ckpt["meta"]["num_outputs"] == 3


def test_new_search_space_searches_and_samples(tmp_path, toy, registered):
    registered(SPACES, "darts_small", SmallDartsSpace)
    s = Searcher(_search_cfg(tmp_path, "MODEL.SPACE", "darts_small"), tmp_path, hooks=[])
    s.run(max_steps=1)
    assert s.space.primitives == SmallDartsSpace().primitives
    assert tuple(s.arch.alpha_normal.shape) == (s.space.num_edges, 4)
    genotype = Genotype.from_dict(s.summary()["genotype"])
    assert set(genotype.ops()) <= {"skip_connect", "max_pool_3x3", "sep_conv_3x3"}
    archs = sample_archs(get_space("darts_small"), 3, seed=0)   # what the study draws from
    assert len({a.genotype for a in archs}) == 3
    assert all(set(a.genotype.ops()) <= set(s.space.primitives) for a in archs)


def test_new_step_replaces_the_bilevel_step(tmp_path, toy):
    s = Searcher(_search_cfg(tmp_path), tmp_path, hooks=[])
    old = s.step_fn
    s.step_fn = WeightsOnlyStep(s.model, s.arch, s.task, s.w_opt, s.a_opt, grad_clip=old.grad_clip,
                                ddp_model=old.ddp_model, amp_dtype=old.amp_dtype)
    alphas, weights = _params(s.arch), _params(s.model)
    s.run(max_steps=1)
    assert all(torch.equal(a, b) for a, b in zip(alphas, s.arch.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(weights, s.model.parameters()))
    assert s.epoch_stats[0]["arch_loss"] is None


def score_by_ops(job, cfg, out_dir):
    """A study training function: a score per job instead of a training run."""
    score = 50.0 + 5.0 * job.genotype.ops().count("sep_conv_3x3")
    return {"best": score, "final": score, "metric": "top1"}


def test_study_runs_a_custom_training_function_on_the_toy_task(tmp_path, toy):
    out = tmp_path / "study"
    cfg = load_cfg(study_defaults(), None, ["OUT_DIR", str(out), "STUDY.NUM_ARCHS", "2",
                                            "STUDY.TASKS", "['cls', 'bright']", "STUDY.EPOCH_LOG", "False"],
                   validate_study_cfg)
    assert list(cfg.STUDY.TASKS) == ["cls", "brightness"]    # aliases resolve to the registered name
    prepare_study(cfg, out)
    assert run_worker(cfg, out, train_fn=score_by_ops, echo=lambda line: None) == {"ran": 4, "failed": 0,
                                                                                 "discarded": 0}
    store = open_store(out, cfg)
    try:
        results = store.results()
    finally:
        store.close()
    assert sorted(r["task"] for r in results) == ["brightness", "brightness", "cls", "cls"]
    assert all(r["best"] == r["final"] >= 50.0 for r in results)
