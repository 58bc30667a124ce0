"""Issue 18's GPU path on a CUDA device (skipped without one; benchmarks/gpu_check.sh runs this file):
inductor-compiled fixed network (reduce-overhead: CUDA graphs) and supernet vs eager, bf16 + channels-last training with
torch.compile and its resume, and STUDY.JOBS_PER_DEVICE workers pinned to their GPU.

Tolerances are loose (1e-3 relative, bf16 rows only finite): cuDNN runs fp32 convolutions in TF32 by
default, and inductor fuses differently from the eager kernels.
"""
import json

import pytest
import torch

from unnas.config import load_cfg

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = torch.device("cuda")


def _clean_dynamo():
    torch._dynamo.reset()


def test_inductor_fixed_network_matches_eager():
    """In reduce-overhead mode (CUDA graphs), the mode meant for small networks; the other tests use default."""
    import copy

    from unnas.engine.compilation import compile_module
    from unnas.tasks import build_task
    from unnas.train import train_defaults, validate_train_cfg
    from unnas.train.network import build_train_network, resolve_network
    from unnas.data import DataInfo

    _clean_dynamo()
    cfg = load_cfg(train_defaults(), None, ["MODEL.WIDTH", "8", "MODEL.DEPTH", "5", "DEVICE", "cuda"],
                   validate_train_cfg)
    info = DataInfo(num_classes=10, image_size=32, mean=(0.5,) * 3, std=(0.25,) * 3)
    task = build_task("cls", info)
    torch.manual_seed(0)
    plan, _, _ = resolve_network(cfg, task, info, None)
    eager = build_train_network(plan, task).to(CUDA).train()
    compiled = copy.deepcopy(eager)
    assert compile_module(compiled, "reduce-overhead", CUDA)
    x, y = torch.randn(16, 3, 32, 32, device=CUDA), torch.randint(0, 10, (16,), device=CUDA)
    losses = {}
    for name, net in (("eager", eager), ("compiled", compiled)):
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        losses[name] = []
        for _ in range(3):
            loss = task.loss(net(x).float(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses[name].append(float(loss))
    assert losses["compiled"] == pytest.approx(losses["eager"], rel=1e-3)
    assert list(compiled.state_dict()) == list(eager.state_dict())


def test_inductor_supernet_step_matches_eager():
    from unnas.data import DataInfo
    from unnas.engine import RunContext
    from unnas.search.build import build_search
    from unnas.search.config import search_defaults, validate_search_cfg
    from unnas.tasks import build_task

    _clean_dynamo()
    task = build_task("cls", DataInfo(num_classes=10, image_size=16, mean=(0.5,) * 3, std=(0.25,) * 3))
    x, y = torch.randn(8, 3, 16, 16, device=CUDA), torch.randint(0, 10, (8,), device=CUDA)
    losses = {}
    for mode in ("none", "default"):
        cfg = load_cfg(search_defaults(), None, ["MODEL.WIDTH", "8", "MODEL.DEPTH", "3", "SEARCH.COMPILE", mode,
                                                 "DEVICE", "cuda"], validate_search_cfg)
        torch.manual_seed(0)
        parts = build_search(cfg, task, 16, RunContext(CUDA))
        losses[mode] = []
        for _ in range(2):
            losses[mode].append(parts.step_fn.arch_step(x, y))
            losses[mode].append(float(parts.step_fn.weight_step(x, y)[0]))
    assert losses["default"] == pytest.approx(losses["none"], rel=1e-3)


def test_bf16_channels_last_compiled_training_resumes(tmp_path):
    from unnas.train import train, train_defaults, validate_train_cfg

    _clean_dynamo()
    opts = ["DATA.SYNTHETIC.NUM_TRAIN", "256", "DATA.SYNTHETIC.NUM_TEST", "64", "DATA.MAX_TRAIN", "256",
            "MODEL.WIDTH", "8", "MODEL.DEPTH", "5", "TRAIN.BATCH_SIZE", "64", "TRAIN.EPOCHS", "2", "DEVICE", "cuda",
            "AMP", "bf16", "CHANNELS_LAST", "True", "COMPILE", "default"]
    cfg = load_cfg(train_defaults(), None, opts, validate_train_cfg)
    straight = train(cfg, out_dir=tmp_path / "a", progress=False, tensorboard=False)
    train(cfg, out_dir=tmp_path / "b", progress=False, tensorboard=False, stop_after=1)
    resumed = train(cfg, out_dir=tmp_path / "b", progress=False, tensorboard=False, resume=True)
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in straight["curve"])
    assert resumed["epochs"] == 2
    assert resumed["curve"][-1]["train_loss"] == pytest.approx(straight["curve"][-1]["train_loss"], rel=1e-2)
    state = torch.load(tmp_path / "b" / "checkpoint_last.pt", weights_only=False)
    assert not any("_orig_mod" in k for k in state["model"])


def record_device(job, cfg, out_dir):
    """A study trainer that records where its worker process runs (module-level: spawned workers import it)."""
    from unnas.study.trainers import fake_train
    out = fake_train(job, cfg, out_dir)
    out.update(job_device=cfg.DEVICE, current_device=torch.cuda.current_device())
    return out


def test_jobs_per_device_workers_are_pinned(tmp_path):
    from unnas.study.config import study_defaults, validate_study_cfg
    from unnas.study.runner import prepare_study, run_workers

    cfg = load_cfg(study_defaults(), None, ["STUDY.NUM_ARCHS", "4", "STUDY.TASKS", "['cls']", "STUDY.JOBS_PER_DEVICE",
                                            "2", "OUT_DIR", str(tmp_path)], validate_study_cfg)
    prepare_study(cfg, tmp_path)
    lines = []
    run_workers(cfg, tmp_path, 1, train_fn=record_device, echo=lines.append)
    n = torch.cuda.device_count()
    assert any(f"{2 * n} worker processes" in line for line in lines), lines
    results = [json.loads(p.read_text()) for p in tmp_path.glob("jobs/*/result.json")]
    assert len(results) == 4
    for r in results:
        assert r["job_device"] == f"cuda:{r['current_device']}"
