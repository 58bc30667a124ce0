"""End-to-end search on tiny settings: outputs, exact resume after a kill, NaN handling."""
import json
import math

import pytest
import torch

from search_spaces.darts.genotype import Genotype
from search_spaces.darts.ops import PRIMITIVES
from unnas.config import load_cfg
from unnas.search import NonFiniteLossError, Searcher
from unnas.search.config import search_defaults, validate_search_cfg
from unnas.search.hooks import default_hooks

TINY = ["SEARCH.STEPS_PER_EPOCH", "0", "SEARCH.EVAL_BATCHES", "0", "MODEL.WIDTH", "4", "MODEL.DEPTH", "3", "SEARCH.BATCH_SIZE", "8", "SEARCH.EPOCHS", "2",
        "DATA.MAX_TRAIN", "48", "DATA.SYNTHETIC.NUM_TRAIN", "64", "DATA.SYNTHETIC.NUM_TEST", "16",
        "LOG_PERIOD", "1", "SEARCH.ARCH_START_EPOCH", "0.3", "TASK.NAME", "cls"]


def _cfg(out, *extra):
    return load_cfg(search_defaults(), None, TINY + ["OUT_DIR", str(out)] + list(extra), validate_search_cfg)


def _searcher(cfg, out):
    return Searcher(cfg, out, default_hooks(cfg, True, progress=False))


def test_search_writes_outputs(tmp_path):
    cfg = _cfg(tmp_path)
    summary = _searcher(cfg, tmp_path).run()
    g = Genotype.load(tmp_path / "genotype.json")
    assert all(op in PRIMITIVES and op != "none" for op in g.ops())
    assert summary["order"] == "first" and summary["genotype"] == g.to_dict()
    for name in ("genotypes.jsonl", "alpha_history.json", "normal_cell.png", "reduction_cell.png",
                 "alphas_normal.png", "alphas_reduce.png", "metrics.jsonl", "summary.json", "checkpoint.pt"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert len((tmp_path / "genotypes.jsonl").read_text().splitlines()) == 2
    hist = json.loads((tmp_path / "alpha_history.json").read_text())
    assert len(hist["epochs"]) == 2 and len(hist["epochs"][0]["normal"]) == 14
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["type"] == "epoch"] == [0, 1]


def _final_state(s):
    return [p.detach().clone() for p in s.arch.parameters()], [p.detach().clone() for p in s.model.parameters()]


@pytest.mark.parametrize("order, kill_after, ckpt_steps", [
    ("first", 4, 1),   # killed mid-epoch right after a step checkpoint
    ("first", 5, 0),   # killed mid-epoch 2 with only epoch checkpoints: replays the epoch
    ("second", 2, 2),  # killed mid-epoch 1 right after a step checkpoint
])
def test_resume_after_kill_is_exact(tmp_path, order, kill_after, ckpt_steps):
    extra = ["SEARCH.ORDER", order, "CHECKPOINT_STEPS", str(ckpt_steps)]
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    ref = _searcher(_cfg(ref_dir, *extra), ref_dir)
    ref.run()
    ref_alphas, ref_weights = _final_state(ref)

    killed = _searcher(_cfg(run_dir, *extra), run_dir)
    killed.run(max_steps=kill_after)  # stops like a kill: no final outputs
    assert killed.stopped_early and not (run_dir / "genotype.json").exists()
    del killed

    resumed = _searcher(_cfg(run_dir, *extra), run_dir)
    assert resumed.resume()
    resumed.run()
    alphas, weights = _final_state(resumed)
    assert all(torch.equal(a, b) for a, b in zip(alphas, ref_alphas))
    assert all(torch.equal(a, b) for a, b in zip(weights, ref_weights))
    assert (run_dir / "genotype.json").read_text() == (ref_dir / "genotype.json").read_text()
    assert (run_dir / "genotypes.jsonl").read_text() == (ref_dir / "genotypes.jsonl").read_text()
    steps = [json.loads(line)["global_step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["type"] == "step"]
    assert steps == sorted(set(steps))  # no duplicated records after the resume


def test_arch_warmup_freezes_alphas(tmp_path):
    cfg = _cfg(tmp_path, "SEARCH.ARCH_START_EPOCH", "1.0", "SEARCH.EPOCHS", "2")
    s = _searcher(cfg, tmp_path)
    init = [p.detach().clone() for p in s.arch.parameters()]
    s.run(max_steps=s.steps_per_epoch)
    assert all(torch.equal(a, b) for a, b in zip(init, s.arch.parameters()))
    s.run()
    assert not all(torch.equal(a, b) for a, b in zip(init, s.arch.parameters()))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path)
    s = _searcher(cfg, tmp_path)
    s.run(max_steps=s.steps_per_epoch)  # epoch 1 done, checkpoint written
    saved = (tmp_path / "checkpoint.pt").read_bytes()
    real_loss = s.task.loss
    monkeypatch.setattr(s.task, "loss", lambda logits, y: real_loss(logits, y) * math.nan)
    with pytest.raises(NonFiniteLossError, match="last good checkpoint .* is kept"):
        s.run()
    assert (tmp_path / "checkpoint.pt").read_bytes() == saved


@pytest.mark.parametrize("eval_bn", ["batch", "running"])
def test_evaluation_leaves_state_untouched(tmp_path, eval_bn):
    s = _searcher(_cfg(tmp_path, "SEARCH.EVAL_BN", eval_bn), tmp_path)
    s.run(max_steps=2)
    before = {k: v.clone() for k, v in s.model.state_dict().items()}
    stats = s.evaluate(0)
    assert 0.0 <= stats["eval_top1"] <= 100.0
    assert all(torch.equal(before[k], v) for k, v in s.model.state_dict().items())
    assert s.model.training


def test_pc_darts_search_runs_and_uses_betas(tmp_path):
    cfg = _cfg(tmp_path, "SEARCH.PARTIAL_CHANNELS", "2", "SEARCH.EDGE_NORM", "True")
    s = _searcher(cfg, tmp_path)
    beta0 = s.arch.beta_normal.detach().clone()
    s.run()
    assert not torch.equal(beta0, s.arch.beta_normal.detach())      # betas are trained
    g = Genotype.load(tmp_path / "genotype.json")
    assert g == s.arch.genotype() and all(op != "none" for op in g.ops())
    last = json.loads((tmp_path / "alpha_history.json").read_text())["epochs"][-1]
    assert len(last["normal_edges"]) == 14 and abs(sum(last["normal_edges"][:2]) - 1) < 1e-6


def test_memory_format_and_bf16_options(tmp_path):
    """channels-last changes the layout, not the values: same alphas as the NCHW run (to float
    noise); bf16 autocast runs end to end and keeps alphas/weights in fp32."""
    runs = {}
    for name, extra in {"nchw": ["SEARCH.CHANNELS_LAST", "False"], "cl": ["SEARCH.CHANNELS_LAST", "True"],
                        "bf16": ["SEARCH.AMP", "bf16"]}.items():
        out = tmp_path / name
        s = _searcher(_cfg(out, "SEARCH.EPOCHS", "1", "DETERMINISTIC", "False", *extra), out)
        s.run()
        runs[name] = s
    a, b = runs["nchw"], runs["cl"]
    # Adam normalises each step, so float-noise gradients near zero can move an alpha by up to
    # its LR (3e-4) per step; the losses agree tightly.
    torch.testing.assert_close(a.arch.alpha_normal, b.arch.alpha_normal, rtol=0, atol=2e-3)
    torch.testing.assert_close(a.arch.alpha_reduce, b.arch.alpha_reduce, rtol=0, atol=2e-3)
    for key in ("train_loss", "eval_loss"):
        assert a.epoch_stats[0][key] == pytest.approx(b.epoch_stats[0][key], rel=1e-3), key
    assert runs["bf16"].arch.alpha_normal.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in runs["bf16"].model.parameters())
