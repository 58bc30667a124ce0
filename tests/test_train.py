"""Retraining fixed genotypes: recipes, loss/schedule pieces, exact resume, eval-only, DDP, probe, CLI."""
import json
import math
import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from unnas.config import ConfigError, load_cfg
from unnas.train import NonFiniteLossError, Trainer, evaluate_checkpoint, train, train_defaults, validate_train_cfg
from unnas.train.trainer import cutout, lr_at, smoothed_cross_entropy

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "experiments" / "train").glob("*.yaml"))

TINY = ["DATA.SYNTHETIC.NUM_TRAIN", "96", "DATA.SYNTHETIC.NUM_TEST", "48", "DATA.MAX_TRAIN", "64",
        "DATA.MAX_TEST", "40", "MODEL.WIDTH", "4", "MODEL.DEPTH", "3", "TRAIN.BATCH_SIZE", "16",
        "TRAIN.EPOCHS", "2", "DEVICE", "cpu", "LOG_PERIOD", "2"]


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py


def tiny_cfg(*extra):
    return load_cfg(train_defaults(), None, TINY + list(extra), validate_train_cfg)


def _import_tool():
    sys.path.insert(0, str(ROOT / "tools"))
    import train as tool  # noqa: E402
    sys.path.pop(0)
    return tool


# ---- recipes and pieces ------------------------------------------------------------------------
@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_loads(path):
    cfg = load_cfg(train_defaults(), str(path), [], validate_train_cfg)
    assert cfg.TRAIN.EPOCHS >= 1


def test_paper_recipes():
    d = ROOT / "experiments" / "train"
    c = load_cfg(train_defaults(), str(d / "cifar10_darts.yaml"), [], validate_train_cfg)
    assert (c.TRAIN.EPOCHS, c.TRAIN.BATCH_SIZE, c.OPTIM.LR, c.OPTIM.WEIGHT_DECAY, c.TRAIN.CUTOUT) == (600, 96, 0.025, 3e-4, 16)
    assert (c.MODEL.AUX, c.MODEL.AUX_WEIGHT, c.MODEL.DROP_PATH, c.MODEL.WIDTH, c.MODEL.DEPTH) == (True, 0.4, 0.2, 36, 20)
    c = load_cfg(train_defaults(), str(d / "imagenet_mobile.yaml"), [], validate_train_cfg)
    assert (c.TRAIN.EPOCHS, c.TRAIN.BATCH_SIZE, c.OPTIM.LR, c.OPTIM.NESTEROV, c.OPTIM.WARMUP_EPOCHS) == (250, 1024, 0.5, True, 5)
    assert (c.OPTIM.LABEL_SMOOTHING, c.MODEL.AUX_WEIGHT, c.OPTIM.WEIGHT_DECAY, c.MODEL.DEPTH) == (0.1, 0.4, 3e-5, 14)
    c = load_cfg(train_defaults(), str(d / "cityscapes_seg.yaml"), [], validate_train_cfg)
    assert (c.DATA.IM_SIZE, c.TRAIN.BATCH_SIZE, c.OPTIM.LR, c.TRAIN.EPOCHS, c.OPTIM.WEIGHT_DECAY) == (769, 64, 0.1, 2700, 1e-4)
    assert (c.MODEL.DEPTH, c.TASK.SEG_ASPP_CHANNELS, list(c.TASK.SEG_ASPP_RATES)) == (12, 256, [6, 12, 18])


def test_label_smoothing_unnas_convention():
    torch.manual_seed(0)
    logits, y = torch.randn(5, 7), torch.tensor([0, 3, 6, 2, 2])
    eps = 0.1
    target = torch.full((5, 7), eps / 6)
    target[torch.arange(5), y] = 1 - eps
    ref = -(target * F.log_softmax(logits, 1)).sum(1).mean()
    assert torch.allclose(smoothed_cross_entropy(logits, y, eps), ref, atol=1e-6)
    assert torch.allclose(smoothed_cross_entropy(logits, y, 0.0), F.cross_entropy(logits, y), atol=1e-6)


def test_lr_schedule_cosine_and_warmup():
    c = tiny_cfg("OPTIM.LR", "0.5", "TRAIN.EPOCHS", "10", "OPTIM.WARMUP_EPOCHS", "2", "OPTIM.WARMUP_FACTOR", "0.1")
    assert lr_at(c, 0) == pytest.approx(0.05)
    assert lr_at(c, 1) == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 0.1)) * 0.55)
    assert lr_at(c, 5) == pytest.approx(0.25)
    assert lr_at(c, 10) == pytest.approx(0.0)


def test_cutout_zeroes_a_clipped_square():
    x = torch.ones(64, 3, 10, 10)
    y = cutout(x, 4, torch.Generator().manual_seed(0))
    holes = (y[:, 0] == 0).sum((1, 2))
    assert holes.max() == 16 and holes.min() >= 4  # clipped at the borders
    assert torch.equal((y == 0).all(1), (y[:, :1] == 0)[:, 0])  # same hole on every channel


def test_bad_config_values_are_one_line_errors():
    for opts in (["MODEL.WIDTH", "5"], ["AMP", "fp8"], ["TRAIN.LINEAR_PROBE", "True"], ["MODEL.DROP_PATH", "1.5"],
                 ["OPTIM.LABEL_SMOOTHING", "1.0"], ["TASK.NAME", "bogus"]):
        with pytest.raises(ConfigError) as e:
            tiny_cfg(*opts)
        assert "\n" not in str(e.value)


# ---- training runs -----------------------------------------------------------------------------
def _strip(curve):
    return [{k: v for k, v in rec.items() if k != "epoch_seconds"} for rec in curve]


def test_exact_resume_and_eval_only(tmp_path):
    cfg = tiny_cfg("MODEL.AUX", "True", "MODEL.DROP_PATH", "0.3", "TRAIN.CUTOUT", "8")
    straight = train(cfg, out_dir=tmp_path / "a", progress=False, tensorboard=False)
    part = train(cfg, out_dir=tmp_path / "b", progress=False, tensorboard=False, stop_after=1)
    assert part["epochs"] == 1
    resumed = train(cfg, out_dir=tmp_path / "b", progress=False, tensorboard=False, resume=True)
    assert resumed["epochs"] == 2
    assert _strip(straight["curve"]) == _strip(resumed["curve"])
    a = torch.load(tmp_path / "a" / "checkpoint_last.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "checkpoint_last.pt", weights_only=False)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    # summary fields promised to library users
    for key in ("metric", "best", "best_epoch", "final", "final_test", "curve", "params", "macs", "flops",
                "wall_time", "params_aux"):
        assert key in straight
    assert straight["metric"] == "top1" and straight["params_aux"] > 0 and straight["macs"] > 0
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["final"] == straight["final"]
    lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines if r["type"] == "epoch"] == [0, 1]
    # eval-only reproduces the last epoch's test metrics
    ev = evaluate_checkpoint(tmp_path / "a" / "checkpoint_last.pt")
    assert ev["top1"] == pytest.approx(straight["final_test"]["top1"])
    assert ev["loss"] == pytest.approx(straight["final_test"]["loss"], rel=1e-5)
    assert (tmp_path / "a" / "checkpoint_best.pt").exists()


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = tiny_cfg()
    calls = {"n": 0}
    orig = Trainer.criterion

    def poisoned(self, logits, targets):
        calls["n"] += 1
        loss = orig(self, logits, targets)
        return loss * float("nan") if self.epoch >= 1 else loss

    monkeypatch.setattr(Trainer, "criterion", poisoned)
    with pytest.raises(NonFiniteLossError) as e:
        train(cfg, out_dir=tmp_path, progress=False, tensorboard=False)
    assert "checkpoint_last.pt" in str(e.value) and "epoch 1" in str(e.value)
    state = torch.load(tmp_path / "checkpoint_last.pt", weights_only=False)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_bf16_autocast_on_cpu(tmp_path):
    cfg = tiny_cfg("AMP", "bf16", "TRAIN.EPOCHS", "1", "TRAIN.STEPS_PER_EPOCH", "2", "TRAIN.EVAL_BATCHES", "1",
                   "CHANNELS_LAST", "True")
    out = train(cfg, out_dir=tmp_path, progress=False, tensorboard=False)
    assert math.isfinite(out["curve"][0]["train_loss"])
    with pytest.raises(ConfigError):
        Trainer(tiny_cfg("AMP", "fp16"), tmp_path / "x", tensorboard=False)


def test_pretext_training_then_linear_probe_and_finetune(tmp_path):
    rot = train(tiny_cfg("TASK.NAME", "rot", "TRAIN.EPOCHS", "1", "MODEL.GENOTYPE", "unnas_imagenet_rot"),
                out_dir=tmp_path / "rot", progress=False, tensorboard=False)
    assert rot["task"] == "rot" and rot["metric"] == "top1"
    ckpt = tmp_path / "rot" / "checkpoint_last.pt"
    pre = torch.load(ckpt, weights_only=False)["model"]
    probe = train(tiny_cfg("TASK.NAME", "cls", "TRAIN.EPOCHS", "1", "TRAIN.INIT_FROM", str(ckpt),
                           "TRAIN.LINEAR_PROBE", "True", "MODEL.GENOTYPE", "PDARTS", "MODEL.WIDTH", "8"),
                  out_dir=tmp_path / "probe", progress=False, tensorboard=False)
    assert probe["linear_probe"] and probe["genotype"] == rot["genotype"] and probe["width"] == 4
    after = torch.load(tmp_path / "probe" / "checkpoint_last.pt", weights_only=False)["model"]
    trunk_keys = [k for k in pre if k.startswith("trunk.")]
    assert trunk_keys and all(torch.equal(pre[k], after[k]) for k in trunk_keys)  # frozen, BN stats too
    assert after["head.fc.weight"].shape == (10, rot_channels(after))
    ft = train(tiny_cfg("TASK.NAME", "cls", "TRAIN.EPOCHS", "1", "TRAIN.INIT_FROM", str(ckpt)),
               out_dir=tmp_path / "ft", progress=False, tensorboard=False)
    assert not ft["linear_probe"]
    tuned = torch.load(tmp_path / "ft" / "checkpoint_last.pt", weights_only=False)["model"]
    assert any(not torch.equal(pre[k], tuned[k]) for k in trunk_keys)
    # eval-only of a probe checkpoint rebuilds its network from the checkpoint alone
    ev = evaluate_checkpoint(tmp_path / "probe" / "checkpoint_last.pt")
    assert ev["top1"] == pytest.approx(probe["final_test"]["top1"])


def test_jigsaw_pretext_training_of_a_fixed_network(tmp_path):
    out = train(tiny_cfg("TASK.NAME", "jig", "TRAIN.EPOCHS", "1", "TRAIN.STEPS_PER_EPOCH", "2",
                         "TRAIN.EVAL_BATCHES", "1", "MODEL.GENOTYPE", "unnas_imagenet_jig"),
                out_dir=tmp_path, progress=False, tensorboard=False)
    assert out["task"] == "jig" and math.isfinite(out["final"]) and out["macs"] > 0


def rot_channels(state):
    return state["head.fc.weight"].shape[1]


def test_linear_probe_of_a_colorization_trunk_feeds_L(tmp_path):
    pytest.importorskip("unnas.tasks.col")
    train(tiny_cfg("TASK.NAME", "col", "TRAIN.EPOCHS", "1", "TRAIN.STEPS_PER_EPOCH", "1", "TRAIN.EVAL_BATCHES", "1"),
          out_dir=tmp_path / "col", progress=False, tensorboard=False)
    ckpt = tmp_path / "col" / "checkpoint_last.pt"
    t = Trainer(tiny_cfg("TASK.NAME", "cls", "TRAIN.INIT_FROM", str(ckpt), "TRAIN.LINEAR_PROBE", "True"),
                tmp_path / "p", tensorboard=False)
    assert t.model.trunk.in_channels == 1 and t.input_task is not None
    x, y = t.prepare(next(iter(t.train_stream.epoch(0))), True, 0, 0)
    assert x.shape[1] == 1
    out = t.run()
    assert math.isfinite(out["final"])


# ---- DDP on 2 CPU processes --------------------------------------------------------------------
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out, opts):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT))
    from unnas.config import load_cfg as _load_cfg
    from unnas.train import Trainer as _Trainer, train_defaults as _defaults, validate_train_cfg as _validate
    cfg = _load_cfg(_defaults(), None, opts, _validate)
    t = _Trainer(cfg, out, tensorboard=False)
    summary = t.run()
    torch.save({"model": t.model.state_dict(), "summary": summary}, Path(out) / f"rank{rank}.pt")
    import torch.distributed as dist
    dist.destroy_process_group()


def test_ddp_two_cpu_processes_keep_replicas_identical(tmp_path):
    import torch.multiprocessing as mp
    opts = TINY + ["TRAIN.EPOCHS", "1", "MODEL.AUX", "True", "MODEL.DROP_PATH", "0.2"]
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path), opts), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    for k in r0["model"]:
        assert torch.equal(r0["model"][k], r1["model"][k]), k
    assert r0["summary"]["world_size"] == 2
    assert r0["summary"]["final"] == r1["summary"]["final"]  # metrics all-reduced over ranks
    assert (tmp_path / "checkpoint_last.pt").exists()


# ---- CLI ---------------------------------------------------------------------------------------
def _cli(argv, capsys):
    tool = _import_tool()
    rc = tool.main(argv)
    err = capsys.readouterr().err
    return rc, err


@pytest.mark.parametrize("argv, needle", [
    (["--genotype", "DARTS_V9"], "unknown genotype"),
    (["--task", "nonsense"], "unknown task"),
    (["MODEL.NOPE", "1"], "MODEL.NOPE"),
    (["MODEL.WIDTH"], "KEY VALUE"),
    (["--dataset", "cifar10", "--data-dir", "/nonexistent/cifar"], "/nonexistent/cifar"),
    (["--probe", "/nonexistent/ckpt.pt"], "/nonexistent/ckpt.pt"),
    (["--eval-only", "/nonexistent/ckpt.pt"], "/nonexistent/ckpt.pt"),
    (["--cfg", "/nonexistent.yaml"], "not found"),
])
def test_cli_errors_are_one_line(argv, needle, capsys, tmp_path):
    rc, err = _cli(argv + ["--out", str(tmp_path / "o")] if argv[-1] != "MODEL.WIDTH" else
                   ["--out", str(tmp_path / "o")] + argv, capsys)
    assert rc == 2
    lines = [line for line in err.strip().splitlines() if "Warning" not in line and "warnings.warn" not in line]
    assert len(lines) == 1 and lines[0].startswith("train.py: error:") and needle in lines[0], err


def test_cli_train_refuses_existing_run_then_resumes_and_eval_only(capsys, tmp_path):
    out = tmp_path / "run"
    base = ["--genotype", "DARTS_V1", "--out", str(out), "--no-progress", "--epochs", "1"] + TINY[:-6]
    rc, err = _cli(base, capsys)
    assert rc == 0 and (out / "checkpoint_last.pt").exists() and (out / "log.txt").exists()
    assert "params" in (out / "log.txt").read_text() and "MACs" in (out / "log.txt").read_text()
    rc, err = _cli(base, capsys)
    assert rc == 2 and "--resume" in err
    rc, err = _cli(["--resume"] + base, capsys)
    assert rc == 0
    tool = _import_tool()
    assert tool.main(["--eval-only", str(out / "checkpoint_best.pt")]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["metric"] == "top1" and 0 <= res["top1"] <= 100


def test_info_tool_json_and_errors(capsys):
    sys.path.insert(0, str(ROOT / "tools"))
    import info
    sys.path.pop(0)
    assert info.main(["DARTS_V2", "--width", "4", "--depth", "3", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["params"] > 0 and res["macs"] > 0 and res["params_aux"] > 0 and res["input"] == [32, 32]
    assert info.main(["AmoebaNet", "--dataset", "imagenet", "--width", "4", "--depth", "3", "--im-size", "64", "--json"]) == 0
    capsys.readouterr()
    assert info.main(["DARTS_V9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("info.py: error:") and "DARTS_V2" in err


def _tiny_cityscapes(root):
    """A 4-image Cityscapes tree (train and val) with trainId label maps of 3 vertical stripes."""
    import numpy as np
    from PIL import Image
    for split in ("train", "val"):
        for k in range(4):
            img = np.zeros((48, 96, 3), dtype=np.uint8)
            label = np.repeat((np.arange(96) // 32)[None, :], 48, axis=0).astype(np.uint8)
            label[:4] = 255
            img[..., 0] = 60 * label.clip(0, 3) + 20
            img[..., 2] = 10 * k
            d_img, d_gt = root / "leftImg8bit" / split / "aachen", root / "gtFine" / split / "aachen"
            d_img.mkdir(parents=True, exist_ok=True)
            d_gt.mkdir(parents=True, exist_ok=True)
            stem = f"aachen_{k:06d}_000019"
            Image.fromarray(img).save(d_img / f"{stem}_leftImg8bit.png")
            Image.fromarray(label).save(d_gt / f"{stem}_gtFine_labelTrainIds.png")
    return root


def test_segmentation_training_reports_miou(tmp_path):
    root = _tiny_cityscapes(tmp_path / "city")
    cfg = load_cfg(train_defaults(), str(ROOT / "experiments" / "train" / "cityscapes_seg.yaml"),
                   ["DATA.ROOT", str(root), "DATA.IM_SIZE", "32", "DATA.TEST_IM_SIZE", "32", "DATA.NUM_WORKERS", "0",
                    "MODEL.WIDTH", "4", "MODEL.DEPTH", "3", "TASK.SEG_ASPP_CHANNELS", "8", "TRAIN.BATCH_SIZE", "2",
                    "TRAIN.TEST_BATCH_SIZE", "2", "TRAIN.EPOCHS", "1", "DEVICE", "cpu"], validate_train_cfg)
    out = train(cfg, out_dir=tmp_path / "run", progress=False, tensorboard=False)
    assert out["metric"] == "miou" and 0 <= out["final"] <= 100 and "pixel_acc" in out["final_test"]
    assert out["stem"] == "imagenet"
    state = torch.load(tmp_path / "run" / "checkpoint_last.pt", weights_only=False)
    assert state["meta"]["single_reduction"] is True


def test_cli_probe_and_finetune_flags(capsys, tmp_path):
    pre = tmp_path / "rot"
    tiny = TINY[:-6]
    assert _cli(["--genotype", "DARTS_V2", "--task", "rot", "--out", str(pre), "--no-progress", "--epochs", "1"] + tiny,
                capsys)[0] == 0
    ckpt = str(pre / "checkpoint_last.pt")
    assert _cli(["--probe", ckpt, "--out", str(tmp_path / "p"), "--no-progress", "--epochs", "1"] + tiny, capsys)[0] == 0
    s = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert s["linear_probe"] and s["task"] == "cls" and s["init_from"]["task"] == "rot"
    assert _cli(["--finetune", ckpt, "--out", str(tmp_path / "f"), "--no-progress", "--epochs", "1"] + tiny, capsys)[0] == 0
    s = json.loads((tmp_path / "f" / "summary.json").read_text())
    assert not s["linear_probe"] and s["init_from"]["path"] == ckpt


def test_load_network_rebuilds_the_trained_network_without_data(tmp_path):
    """load_network gives the network the trainer evaluates: same logits on the same images, for a
    classifier and for a linear probe of a colorization trunk (which reads L)."""
    import torch

    from unnas.config import load_cfg
    from unnas.engine import load_checkpoint
    from unnas.train import Trainer, load_network, train, train_defaults, validate_train_cfg

    tiny = ["DATA.SYNTHETIC.NUM_TRAIN", "16", "DATA.SYNTHETIC.NUM_TEST", "8", "MODEL.WIDTH", "4", "MODEL.DEPTH", "2",
            "TRAIN.BATCH_SIZE", "8", "TRAIN.EPOCHS", "1", "DEVICE", "cpu", "NUM_THREADS", "1"]
    runs = {"cls": tiny, "col": tiny + ["TASK.NAME", "col"]}
    for name, opts in runs.items():
        train(load_cfg(train_defaults(), None, opts, validate_train_cfg), out_dir=tmp_path / name, progress=False,
              tensorboard=False)
    probe = tiny + ["TRAIN.INIT_FROM", str(tmp_path / "col" / "checkpoint_last.pt"), "TRAIN.LINEAR_PROBE", "True"]
    train(load_cfg(train_defaults(), None, probe, validate_train_cfg), out_dir=tmp_path / "probe", progress=False,
          tensorboard=False)
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    for name in ("cls", "probe"):
        path = tmp_path / name / "checkpoint_last.pt"
        net = load_network(path)
        assert net.epoch == 1 and not net.network.training and (net.input_task is not None) == (name == "probe")
        state = load_checkpoint(path)
        cfg = net.cfg
        ref = Trainer(cfg, None, tensorboard=False, meta=state["meta"])
        ref.load_state_dict(state, model_only=True)
        ref.model.eval()
        with torch.no_grad():
            x, _ = ref.prepare((images, torch.zeros(3, dtype=torch.long)), False, 0, 0)
            assert torch.allclose(net.network(net.inputs(images)), ref.model(x))
