"""The search and train code paths at the tiniest settings, for the test files of the tasks of
issue 15 (tests/test_task_<name>.py): a DARTS search through ``Searcher`` and a fixed-genotype
pretraining followed by a linear probe through ``train`` (what tools/search.py and
tools/train.py call)."""
import math

import torch

from unnas.config import load_cfg

SEARCH_TINY = ["SEARCH.STEPS_PER_EPOCH", "3", "SEARCH.EVAL_BATCHES", "1", "MODEL.WIDTH", "4", "MODEL.DEPTH", "3",
               "SEARCH.BATCH_SIZE", "8", "SEARCH.EPOCHS", "2", "DATA.MAX_TRAIN", "48",
               "DATA.SYNTHETIC.NUM_TRAIN", "64", "DATA.SYNTHETIC.NUM_TEST", "16", "LOG_PERIOD", "1",
               "SEARCH.ARCH_START_EPOCH", "0.3", "DEVICE", "cpu"]
TRAIN_TINY = ["DATA.SYNTHETIC.NUM_TRAIN", "64", "DATA.SYNTHETIC.NUM_TEST", "32", "DATA.MAX_TRAIN", "48",
              "DATA.MAX_TEST", "16", "MODEL.WIDTH", "4", "MODEL.DEPTH", "3", "TRAIN.BATCH_SIZE", "8",
              "TRAIN.EPOCHS", "1", "TRAIN.STEPS_PER_EPOCH", "2", "TRAIN.EVAL_BATCHES", "1", "DEVICE", "cpu",
              "LOG_PERIOD", "1"]


def tiny_search(out_dir, task: str, *extra) -> dict:
    """Two tiny search epochs with ``TASK.NAME task``; returns the summary, checked: the task's
    primary metric is finite in the training and held-out statistics of every epoch."""
    from unnas.search import Searcher
    from unnas.search.config import search_defaults, validate_search_cfg

    cfg = load_cfg(search_defaults(), None, SEARCH_TINY + ["TASK.NAME", task, "OUT_DIR", str(out_dir), *extra],
                   validate_search_cfg)
    searcher = Searcher(cfg, out_dir, [])
    summary = searcher.run()
    p = searcher.primary
    assert summary["task"] == searcher.task.name and len(searcher.epoch_stats) == 2
    for stats in searcher.epoch_stats:
        assert math.isfinite(stats[f"train_{p}"]) and math.isfinite(stats[f"eval_{p}"]), stats
    summary["primary"] = p
    summary["epoch_stats"] = searcher.epoch_stats
    return summary


def pretrain_then_probe(tmp_path, task: str, *extra, genotype: str = "DARTS_V2") -> tuple[dict, dict]:
    """A fixed genotype pretrained on ``task`` then linearly probed with ``cls`` from its trunk
    (``TRAIN.INIT_FROM``, ``TRAIN.LINEAR_PROBE``); returns both summaries, checked: finite metrics,
    the probe's trunk equal to the pretrained one (frozen, BN statistics too)."""
    from unnas.train import train, train_defaults, validate_train_cfg

    def cfg(*opts):
        return load_cfg(train_defaults(), None, TRAIN_TINY + list(opts), validate_train_cfg)

    pre = train(cfg("TASK.NAME", task, "MODEL.GENOTYPE", genotype, *extra), out_dir=tmp_path / "pre",
                progress=False, tensorboard=False)
    assert math.isfinite(pre["final"]) and pre["macs"] > 0, pre
    ckpt = tmp_path / "pre" / "checkpoint_last.pt"
    probe = train(cfg("TASK.NAME", "cls", "TRAIN.INIT_FROM", str(ckpt), "TRAIN.LINEAR_PROBE", "True"),
                  out_dir=tmp_path / "probe", progress=False, tensorboard=False)
    assert probe["linear_probe"] and probe["genotype"] == pre["genotype"] and math.isfinite(probe["final"])
    before = torch.load(ckpt, weights_only=True)["model"]
    after = torch.load(tmp_path / "probe" / "checkpoint_last.pt", weights_only=True)["model"]
    trunk = [k for k in before if k.startswith("trunk.")]
    assert trunk and all(torch.equal(before[k], after[k]) for k in trunk)
    return pre, probe
