"""Several study jobs per GPU (STUDY.JOBS_PER_DEVICE): which device each local worker process gets,
as a pure function of the device count, so it is tested without a GPU."""
import pytest

from unnas.config import ConfigError, load_cfg
from unnas.study.config import fingerprint, study_defaults, validate_study_cfg
from unnas.study.runner import local_worker_plan, visible_devices, worker_devices


def _cfg(*opts):
    cfg = study_defaults()
    cfg.merge_from_list(list(opts))
    return cfg


def test_workers_fill_each_device_in_turn():
    assert worker_devices([0, 1], 3) == [0, 0, 0, 1, 1, 1]
    assert worker_devices([2], 2) == [2, 2]
    assert worker_devices([], 4) == []


def test_visible_devices_follow_the_device_setting():
    assert visible_devices("auto", 2) == [0, 1] and visible_devices("cuda", 3) == [0, 1, 2]
    assert visible_devices("cuda:1", 2) == [1]
    assert visible_devices("cpu", 2) == [] and visible_devices("auto", 0) == []


def test_jobs_per_device_replaces_workers_on_gpus():
    devices, note = local_worker_plan(_cfg("STUDY.JOBS_PER_DEVICE", 3), 1, 2)
    assert devices == ["cuda:0"] * 3 + ["cuda:1"] * 3
    assert "3 on each of cuda:0, cuda:1" in note and "6 worker processes" in note
    devices, note = local_worker_plan(_cfg("STUDY.JOBS_PER_DEVICE", 2, "DEVICE", "cuda:1"), 4, 2)
    assert devices == ["cuda:1", "cuda:1"] and "--workers 4 replaced" in note


def test_jobs_per_device_is_ignored_without_a_gpu_or_under_torchrun():
    devices, note = local_worker_plan(_cfg("STUDY.JOBS_PER_DEVICE", 3), 2, 0)
    assert devices == [None, None] and "ignored" in note and "no CUDA device" in note
    devices, note = local_worker_plan(_cfg("STUDY.JOBS_PER_DEVICE", 3, "DEVICE", "cpu"), 1, 2)
    assert devices == [None] and "ignored" in note
    devices, note = local_worker_plan(_cfg("STUDY.JOBS_PER_DEVICE", 3), 1, 2, world=4)
    assert devices == [None] and "torchrun" in note


def test_without_jobs_per_device_workers_go_round_robin_as_before():
    assert local_worker_plan(_cfg(), 3, 2) == (["cuda:0", "cuda:1", "cuda:0"], None)
    assert local_worker_plan(_cfg(), 1, 2) == ([None], None)           # one worker: in this process, DEVICE as set
    assert local_worker_plan(_cfg(), 2, 0) == ([None, None], None)     # CPU
    assert local_worker_plan(_cfg("DEVICE", "cuda:1"), 2, 2) == ([None, None], None)   # an explicit device is kept


def test_the_local_executor_describes_the_plan(monkeypatch):
    from unnas.study.executors.local import LocalExecutor
    monkeypatch.setattr("unnas.study.runner._device_count", lambda: 2)
    assert LocalExecutor().describe(_cfg("STUDY.JOBS_PER_DEVICE", 2), 1, 1) == "4 workers on cuda:0, cuda:1"
    monkeypatch.setattr("unnas.study.runner._device_count", lambda: 0)
    assert LocalExecutor().describe(_cfg("STUDY.JOBS_PER_DEVICE", 2), 3, 1) == "3 workers"


def test_jobs_per_device_is_validated_and_leaves_fingerprints_alone():
    with pytest.raises(ConfigError) as e:
        load_cfg(study_defaults(), None, ["STUDY.JOBS_PER_DEVICE", "-1"], validate_study_cfg)
    assert "\n" not in str(e.value) and "STUDY.JOBS_PER_DEVICE" in str(e.value)
    cfg = study_defaults()
    base = fingerprint(cfg)
    older = cfg.clone()
    del older["STUDY"]["JOBS_PER_DEVICE"]
    assert fingerprint(older) == base
    assert fingerprint(_cfg("STUDY.JOBS_PER_DEVICE", 4)) == base     # scheduling, not training


def test_a_cpu_run_says_jobs_per_device_is_ignored(tmp_path):
    """The local executor on this CPU-only machine: one line says the key is ignored, the jobs run."""
    import torch

    from unnas.study.runner import prepare_study, run_workers
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    cfg = load_cfg(study_defaults(), None, ["STUDY.TRAINER", "fake", "STUDY.NUM_ARCHS", "2", "STUDY.TASKS", "['cls']",
                                            "STUDY.JOBS_PER_DEVICE", "2", "OUT_DIR", str(tmp_path)],
                   validate_study_cfg)
    prepare_study(cfg, tmp_path)
    lines = []
    run_workers(cfg, tmp_path, 1, echo=lines.append)
    assert any("STUDY.JOBS_PER_DEVICE 2 ignored: no CUDA device" in line for line in lines)
    assert sum("done" in line for line in lines) == 2


def test_jobs_per_device_flag_sets_the_key():
    from unnas.cli import parse_with_overrides
    from unnas.commands.rank_corr import _run_parser, build_cfg
    args = parse_with_overrides(_run_parser(), ["--jobs-per-device", "3"])
    assert build_cfg(args).STUDY.JOBS_PER_DEVICE == 3
    assert build_cfg(parse_with_overrides(_run_parser(), [])).STUDY.JOBS_PER_DEVICE == 0
