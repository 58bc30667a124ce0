"""tools/rank_corr.py: subcommands, shipped study configs, and one-line errors with exit status 2."""
import importlib.util
import json
from pathlib import Path

import pytest

from unnas.config import load_cfg
from unnas.study.config import job_cfg, study_defaults, validate_study_cfg

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("rank_corr_tool", ROOT / "tools" / "rank_corr.py")
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)


def test_release_recipe_config():
    cfg = load_cfg(study_defaults(), str(ROOT / "experiments/study/cifar10_darts.yaml"), [], validate_study_cfg)
    assert (cfg.MODEL.WIDTH, cfg.MODEL.DEPTH, cfg.TRAIN.EPOCHS, list(cfg.STUDY.SEEDS)) == (16, 20, 100, [1, 2, 3])
    assert (cfg.OPTIM.MOMENTUM, cfg.OPTIM.NESTEROV, cfg.OPTIM.WEIGHT_DECAY, cfg.OPTIM.LR_MIN) == (0.9, True, 5e-4, 0.0)
    lr_batch = {t: (job_cfg(cfg, t, 1).OPTIM.LR, job_cfg(cfg, t, 1).TRAIN.BATCH_SIZE) for t in ("cls", "rot", "col", "jig")}
    assert lr_batch == {"cls": (0.1, 128), "rot": (0.025, 32), "col": (0.1, 128), "jig": (0.025, 32)}
    assert job_cfg(cfg, "jig", 2).TASK.JIGSAW_GRID == 2 and job_cfg(cfg, "jig", 2).SEED == 2
    load_cfg(study_defaults(), str(ROOT / "experiments/study/cifar10_mini_short.yaml"), [], validate_study_cfg)


def test_sample_analyze_and_status(tmp_path, run_cli):
    rc, out, _ = run_cli(tool.main, ["sample", "--num-archs", "5", "--seed", "2", "--out", str(tmp_path / "a.json")])
    assert rc == 0 and len(json.loads((tmp_path / "a.json").read_text())["archs"]) == 5
    run = tmp_path / "run"
    rc, out, err = run_cli(tool.main, ["--trainer", "fake", "--archs", str(tmp_path / "a.json"), "--tasks", "cls,rot,jig",
                         "--out", str(run), "STUDY.BOOTSTRAP", "20"])
    assert rc == 0, err
    assert "| rot | 5 | 1 |" in out and "Spearman" in out and (run / "analysis" / "scatter.png").is_file()
    rc, out, _ = run_cli(tool.main, ["analyze", str(run), "--metric", "final", "--bootstrap", "0"])
    assert rc == 0 and "| jig | 5 |" in out
    rc, out, _ = run_cli(tool.main, ["status", str(run)])
    assert rc == 0 and "15/15 done" in out
    # rerunning the same directory resumes from its stored config: nothing left to do
    rc, out, _ = run_cli(tool.main, ["--out", str(run), "--no-analyze"])
    assert rc == 0 and "0 new, 15 done" in out
    # a different training recipe in the same directory is refused
    rc, _, err = run_cli(tool.main, ["--out", str(run), "MODEL.WIDTH", "8"])
    assert rc == 2 and "different configuration" in err


@pytest.mark.parametrize("argv, message", [
    (["--shard", "3/2"], "--shard 3/2"),
    (["--shard", "x"], "must look like i/n"),
    (["--tasks", "cls,foo"], "foo"),
    (["--tasks", "cls,cls"], "twice"),
    (["--seeds", "1,a"], "--seeds must be comma-separated integers"),
    (["--archs", "/nonexistent/archs.json"], "not found"),
    (["--workers", "0"], "--workers must be >= 1"),
    (["MODEL.NOPE", "1"], "Non-existent key"),
    (["MODEL.WIDTH"], "KEY VALUE pairs"),
    (["--cfg", "/nonexistent.yaml"], "not found"),
    (["--num-archs", "1"], "NUM_ARCHS >= 2"),
    (["--tasks", "rot,jig"], "reference task cls is not in STUDY.TASKS"),
    (["--supervised-table", "/nonexistent.csv"], "not found"),
    (["--dataset", "nope"], "nope"),
    (["--trainer", "no_such_module:fn"], "cannot import"),
    (["analyze", "/nonexistent/run"], "holds no study"),
    (["frobnicate"], "unknown command"),
])
def test_errors_are_one_line_and_exit_2(tmp_path, run_cli, argv, message):
    if argv[0] not in ("analyze", "frobnicate"):
        argv = argv + ["--out", str(tmp_path / "run"), "--no-analyze"]
    rc, _, err = run_cli(tool.main, argv)
    assert rc == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert message in lines[-1] and lines[-1].startswith("rank_corr.py")


def test_bad_supervised_table(tmp_path, run_cli):
    run = tmp_path / "run"
    rc, _, err = run_cli(tool.main, ["--trainer", "fake", "--num-archs", "3", "--tasks", "cls,rot", "--out", str(run),
                       "--no-analyze"])
    assert rc == 0, err
    (tmp_path / "t.json").write_text('{"zzz": 1}')
    rc, _, err = run_cli(tool.main, ["analyze", str(run), "--supervised-table", str(tmp_path / "t.json")])
    assert rc == 2 and "matches an architecture" in err


def test_job_config_reaches_the_trainer_key_by_key():
    from unnas.study.config import trainer_cfg
    from unnas.train.config import train_defaults

    cfg = load_cfg(study_defaults(), str(ROOT / "experiments/study/cifar10_darts.yaml"),
                   ["OPTIM.SCHEDULE", "cos", "TRAIN.CUTOUT", "8"], validate_study_cfg)
    t = trainer_cfg(job_cfg(cfg, "jig", 3), "DARTS_V2", "/tmp/x")
    assert (t.TASK.NAME, t.SEED, t.OPTIM.LR, t.TRAIN.BATCH_SIZE, t.TASK.JIGSAW_GRID) == ("jig", 3, 0.025, 32, 2)
    assert (t.MODEL.WIDTH, t.MODEL.DEPTH, t.TRAIN.EPOCHS, t.TRAIN.CUTOUT, t.OUT_DIR) == (16, 20, 100, 8, "/tmp/x")
    # every study key outside STUDY/TASK_RECIPES (and MODEL.SPACE) is a trainer key
    def keys(node, prefix=""):
        out = set()
        for k, v in node.items():
            out |= keys(v, f"{prefix}{k}.") if hasattr(v, "items") else {prefix + k}
        return out
    study_keys = {k for k in keys(cfg) if not k.startswith(("STUDY.", "TASK_RECIPES."))} - {"MODEL.SPACE"}
    assert study_keys <= keys(train_defaults())


def test_real_trainer_end_to_end_tiny(tmp_path, run_cli):
    """The default trainer (unnas.train) on 3 tiny archs x cls, rot: results, curves, params, MACs."""
    run = tmp_path / "run"
    rc, out, err = run_cli(tool.main, ["--num-archs", "3", "--tasks", "cls,rot", "--out", str(run), "--epochs", "1",
                         "TRAIN.STEPS_PER_EPOCH", "2", "TRAIN.EVAL_BATCHES", "1", "DATA.SYNTHETIC.NUM_TRAIN", "256",
                         "DATA.SYNTHETIC.NUM_TEST", "64", "STUDY.BOOTSTRAP", "10"])
    assert rc == 0, err
    assert "| rot | 3 | 1 |" in out
    res = json.loads((run / "jobs" / "a0001_rot_s1" / "result.json").read_text())
    assert res["metric"] == "top1" and 0 <= res["best"] <= 100 and res["params"] > 0 and res["flops"] > 0
    assert len(res["curve"]) == 1 and res["config"] and res["worker"]
    assert not (run / "jobs" / "a0001_rot_s1" / "checkpoint_last.pt").exists()   # removed once done
    assert any((run / "jobs" / "a0001_rot_s1" / "tb").iterdir())


def test_a_given_list_is_studied_whole_and_the_first_line_says_so(tmp_path, run_cli):
    """--archs FILE without --num-archs studies every architecture of the file (not the sampler's
    default 6); --num-archs N takes the first N; a sampled study still defaults to 6."""
    rc, _, err = run_cli(tool.main, ["sample", "--num-archs", "9", "--seed", "3", "--out", str(tmp_path / "archs.json")])
    assert rc == 0, err
    common = ["--trainer", "fake", "--tasks", "cls,rot", "--no-analyze"]
    rc, out, err = run_cli(tool.main, ["run", "--archs", str(tmp_path / "archs.json"), "--out", str(tmp_path / "all"), *common])
    assert rc == 0, err
    assert f"all 9 architectures of {tmp_path / 'archs.json'}" in out and "18 jobs" in out
    rc, out, err = run_cli(tool.main, ["run", "--archs", str(tmp_path / "archs.json"), "--num-archs", "4", "--out",
                         str(tmp_path / "four"), *common])
    assert rc == 0 and "the first 4 architectures of" in out and "8 jobs" in out, err
    rc, out, err = run_cli(tool.main, ["run", "--out", str(tmp_path / "sampled"), *common])
    assert rc == 0 and "6 architectures sampled from the darts space (seed 0, none allowed)" in out, out + err
