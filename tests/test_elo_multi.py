"""The multi task (unnas/tasks/multi.py): its loss and gradients are the weighted sum of the single
tasks' on the same trunk, it runs through the search and the training (with the ELo fitness) at
tiny sizes, and a bad task or weights list is one clear line."""
import math

import pytest
import torch

from pretext_paths import pretrain_then_probe, tiny_search
from search_spaces import get_space
from search_spaces.parts import InputParts, OutputParts
from unnas.config import ConfigError
from unnas.data import DataInfo
from unnas.tasks import build_task

pytestmark = pytest.mark.usefixtures("one_thread")

INFO = DataInfo(num_classes=10, image_size=32, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))
TASKS = ["rot", "col", "jig"]


def test_loss_and_gradients_are_the_weighted_sum_of_the_single_tasks():
    torch.manual_seed(0)
    multi = build_task("multi", INFO, multi_tasks=TASKS, multi_weights=[2.0, 1.0, 1.0], jigsaw_grid=2)
    assert multi.weights == (0.5, 0.25, 0.25) and multi.in_channels == 3 and multi.images_per_sample == 4 + 1 + 4
    space = get_space("darts")
    net = space.build_network(space.resolve("DARTS_V2"), multi.build_head, multi.num_outputs, 3, 4, 2, "cifar")
    net.train()
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    x, y = multi.make_batch(images, None, True, torch.Generator().manual_seed(5))
    assert isinstance(x, InputParts) and [p.shape[1] for p in x] == [3, 3, 3]     # L replicated to 3 channels
    out = net(x)
    assert isinstance(out, OutputParts) and len(out) == 3
    loss = multi.loss(out, y)
    params = [p for p in net.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)

    # the single tasks, drawing from the same generator in the same order, on the same trunk and heads
    gen = torch.Generator().manual_seed(5)
    singles = []
    for name, w in zip(TASKS, multi.weights):
        task = build_task(name, INFO, jigsaw_grid=2)
        xs, ys = task.make_batch(images, None, True, gen)
        if xs.shape[1] == 1:
            xs = xs.repeat(1, 3, 1, 1)
        singles.append(w * task.loss(net.head.heads[name](net.trunk(xs), xs.shape[-2:]), ys))
    expected = sum(singles)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    for p, g, e in zip(params, grads, torch.autograd.grad(expected, params, allow_unused=True)):
        assert (g is None) == (e is None)
        if g is not None:
            assert torch.allclose(g, e, rtol=1e-4, atol=1e-7)

    meter = multi.new_meter()
    meter.update(out.detach(), y, loss.item())
    m = meter.compute()
    assert {"rot_top1", "col_top1", "jig_top1", "mean_primary", "loss"} <= set(m)
    assert m["mean_primary"] == pytest.approx((m["rot_top1"] + m["col_top1"] + m["jig_top1"]) / 3)
    assert m["loss"] == pytest.approx(loss.item(), rel=1e-4)


def test_multi_searches_and_pretrains_with_the_fitness(tmp_path):
    summary = tiny_search(tmp_path / "search", "multi", "TASK.JIGSAW_GRID", "2")
    assert summary["primary"] == "mean_primary"
    assert {"eval_rot_top1", "eval_col_top1", "eval_jig_top1"} <= set(summary["epoch_stats"][-1])
    pre, probe = pretrain_then_probe(tmp_path, "multi", "TASK.JIGSAW_GRID", "2", "FITNESS.ENABLED", "True",
                                     "FITNESS.CLUSTERS", "3")
    assert pre["metric"] == "mean_primary" and math.isfinite(pre["final_test"]["fitness"])
    assert {"rot_top1", "col_loss", "jig_top1"} <= set(pre["final_test"])


@pytest.mark.parametrize("weights, tasks, message", [
    ([1.0, 2.0], TASKS, "TASK.MULTI.WEIGHTS has 2 values for the 3 tasks"),
    ([1.0, -1.0, 1.0], TASKS, "must be finite and >= 0"),
    ([0.0, 0.0, 0.0], TASKS, "are all 0"),
    ([], ["rot", "nope"], "unknown task 'nope'"),
    ([], ["rot", "rotation"], "lists a task twice"),
    ([], ["rot", "splitbrain"], "splits the trunk"),
    ([], [], "must list the tasks"),
])
def test_bad_tasks_or_weights_are_one_line(weights, tasks, message):
    with pytest.raises(ConfigError, match=message) as err:
        build_task("multi", INFO, multi_tasks=tasks, multi_weights=weights)
    assert "\n" not in str(err.value)


def test_bad_weights_in_the_train_tool_are_one_line(tmp_path, run_cli):
    from unnas.commands.train import main

    rc, _, err = run_cli(main, ["--task", "multi", "--out", str(tmp_path / "r"), "TASK.MULTI.WEIGHTS", "[1.0, 2.0]",
                                "DATA.SYNTHETIC.NUM_TRAIN", "16", "DATA.SYNTHETIC.NUM_TEST", "8", "DATA.MAX_TRAIN", "16",
                                "DATA.MAX_TEST", "8", "TRAIN.BATCH_SIZE", "8", "DEVICE", "cpu"])
    lines = err.strip().splitlines()
    assert rc == 2 and sum("error" in line for line in lines) == 1
    assert lines[-1].startswith("train.py: error: TASK.MULTI.WEIGHTS has 2 values for the 3 tasks of TASK.MULTI.TASKS")


def test_multi_is_a_study_task(tmp_path):
    from unnas.config import load_cfg, task_options
    from unnas.study.config import job_cfg, study_defaults, trainer_cfg, validate_study_cfg

    cfg = load_cfg(study_defaults(), None, ["STUDY.TASKS", "['cls', 'multi']", "TASK.MULTI.WEIGHTS", "[1.0, 0.0, 1.0]",
                                            "OUT_DIR", str(tmp_path)], validate_study_cfg)
    jc = trainer_cfg(job_cfg(cfg, "multi", 1), "DARTS_V2", tmp_path / "job")
    task = build_task(jc.TASK.NAME, INFO, **task_options(jc))
    assert task.names == TASKS and task.weights == (0.5, 0.0, 0.5) and task.new_meter().primary == "mean_primary"
