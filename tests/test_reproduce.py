"""tools/reproduce.py: the whole pipeline on tiny synthetic configs (fake study trainer, 1-epoch searches):
results/ and the report, skipping finished steps, the report from results/ alone, the calibration ladder,
and adopting / resuming a study started elsewhere."""
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from unnas.commands import rank_corr, reproduce

pytestmark = pytest.mark.usefixtures("one_thread")

ARCHS = 8   # sampled and released sets

SYNTH = "DATA: {DATASET: synthetic, MAX_TRAIN: 128, SYNTHETIC: {NUM_TRAIN: 256, NUM_TEST: 64}}\n"
MODEL = "MODEL: {WIDTH: 4, DEPTH: 2}\nTRAIN: {EPOCHS: 1, BATCH_SIZE: 16}\n"


def _study(out: str, study: str, log: Path) -> str:
    return (SYNTH + MODEL + f"STUDY: {{TRAINER: fake, BOOTSTRAP: 200, FAKE_LOG: {log}, {study}}}\nOUT_DIR: runs/repro/{out}\n")


def _write_configs(root: Path) -> dict:
    from search_spaces import get_space
    from unnas.study.archs import save_archs
    from unnas.study.sampling import sample_archs

    cfg, log = root / "cfg", root / "fake.log"
    cfg.mkdir()
    const = root / "const.json"   # rung 1: every architecture scores the same -> no interval, not accepted
    const.write_text(json.dumps({"cls": {f"a{k:04d}": 50.0 for k in range(ARCHS)}}))
    save_archs(sample_archs(get_space("darts"), ARCHS, 5), root / "released_list.json")
    files = {
        # rung 2 drops the table: the fake trainer's seeded noise, whose two seeds agree clearly
        "calibration.yaml": "RUNGS:\n  - {}\n  - {TRAIN.EPOCHS: 2, STUDY.FAKE_TABLE: ''}\n",
        "sampled.yaml": _study("sampled", f"NUM_ARCHS: {ARCHS}, FAKE_TABLE: {const}, TASKS: [cls, rot, col, jig], "
                                          "SEEDS: [1]", log),
        "released.yaml": _study("released", f"ARCHS: {root / 'released_list.json'}, NUM_ARCHS: {ARCHS}, "
                                            "TASKS: [cls, rot, col, jig], SEEDS: [1]", log),
        "long_sampled.yaml": "_BASE_: sampled.yaml\nSTUDY: {NUM_ARCHS: 5, TASKS: [cls], SEEDS: [1]}\n"
                             "OUT_DIR: runs/repro/long_sampled\n",
        "cross_sampled.yaml": "_BASE_: sampled.yaml\nDATA: {TRAIN_OFFSET: 128}\nSTUDY: {NUM_ARCHS: 6, TASKS: [rot, col, jig], "
                              "SUPERVISED: rot, SEEDS: [1]}\nOUT_DIR: runs/repro/cross_sampled\n",
        "retrain.yaml": _study("retrain", "ARCHS: runs/repro/retrain_archs.json, TASKS: [cls], SEEDS: [1, 2]", log),
    }
    for t in ("cls", "rot", "col", "jig"):
        files[f"search_{t}.yaml"] = (
            f"TASK: {{NAME: {t}}}\n" + SYNTH + "MODEL: {WIDTH: 4, DEPTH: 2}\n"
            "SEARCH: {EPOCHS: 1, STEPS_PER_EPOCH: 1, BATCH_SIZE: 4, EVAL_BATCHES: 1, NUM_THREADS: 1}\n"
            f"OUT_DIR: runs/repro/search_{t}\n")
    for name, text in files.items():
        (cfg / name).write_text(text)
    return {"cfg": cfg, "log": log}


def _log_lines(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.is_file() else 0


def _attempts(run_dir: Path) -> dict:
    db = sqlite3.connect(str(run_dir / "study.sqlite"))
    try:
        rows = db.execute("SELECT arch_id, task, seed, count(*) FROM attempts GROUP BY arch_id, task, seed").fetchall()
    finally:
        db.close()
    return {(a, t, s): n for a, t, s, n in rows}


def _no_plot(*args, **kwargs):
    """Stands in for the figures (tested elsewhere; matplotlib is most of this pipeline's time): an empty file."""
    for a in (*args, *kwargs.values()):
        if isinstance(a, (str, Path)) and str(a).endswith(".png"):
            Path(a).parent.mkdir(parents=True, exist_ok=True)
            Path(a).write_bytes(b"")


def _sizes(cfg, task, archs):
    """Stands in for fvcore's params/MACs of every network (the analysis' baselines; tested elsewhere)."""
    from unnas.study.trainers import fake_score
    return {b: {a.id: 1000.0 * (k + fake_score(a.genotype)) for a in archs} for k, b in enumerate(("params", "macs"))}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Runs the pipeline stage by stage; each stage's exit status and output are kept for the tests."""
    with pytest.MonkeyPatch.context() as mp:
        for target in ("unnas.search.hooks.plot_cell", "unnas.search.hooks.plot_alpha_history",
                       "unnas.study.analysis.scatter_plot", "unnas.study.randexp.randexp_plot"):
            mp.setattr(target, _no_plot, raising=False)
        mp.setattr("unnas.study.baselines.genotype_complexity", _sizes, raising=False)
        yield _pipeline(tmp_path_factory)


def _pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("repro")
    paths = _write_configs(root)
    common = ["--config-dir", str(paths["cfg"]), "--runs", str(root / "runs"), "--results", str(root / "results"),
              "--report-path", str(root / "docs" / "results.md"), "--workers", "1", "--data-dir", str(root / "no-data"),
              "--scale-archs", "1"]
    stages = {}

    def stage(name, argv, capsys):
        rc = reproduce.main(common + argv)
        out = capsys.readouterr()
        stages[name] = {"rc": rc, "out": out.out, "err": out.err, "log": _log_lines(paths["log"])}
        return stages[name]

    return root, paths, common, stages, stage


def test_full_pipeline_skip_and_report(pipeline, capsys):
    root, paths, common, stages, stage = pipeline
    runs, results, report = root / "runs", root / "results", root / "docs" / "results.md"

    # a step whose calibration has not run stops with a clear message, exit 1
    s = stage("early", ["--only", "sampled"], capsys)
    assert s["rc"] == 1 and "needs the calibration calib_sampled" in s["err"], s["err"]

    # a study started by hand (seed 1 only) is adopted: its jobs are not trained again
    assert rank_corr.main(["run", "--cfg", str(paths["cfg"] / "sampled.yaml"), "--tasks", "cls", "--seeds", "1",
                           "--out", str(runs / "sampled"), "--no-analyze"]) == 0
    capsys.readouterr()
    s = stage("list0", ["--list"], capsys)
    assert "calib_sampled   partial 8/16" in s["out"] and "retrain         not started" in s["out"], s["out"]
    adopted = _attempts(runs / "sampled")

    s = stage("calib", ["--only", "calib_sampled"], capsys)
    assert s["rc"] == 0, s["err"]
    assert not report.exists()   # --only: no report
    after = _attempts(runs / "sampled")
    assert all(after[k] == 1 for k in adopted) and len(after) == 2 * ARCHS
    calib = json.loads((results / "calib_sampled" / "summary.json").read_text())
    assert [r["rung"] for r in calib["rungs"]] == [1, 2] and calib["accepted"]["rung"] == 2 and calib["passed"]
    assert not calib["rungs"][0]["passed"] and "constant" in calib["rungs"][0]["ci_note"]
    assert calib["rungs"][1]["spearman_ci"][0] > 0 and calib["accepted"]["run_dir"].endswith("sampled_r2")

    s = stage("list1", ["--list"], capsys)
    # sampled extends the accepted rung's run: its cls seed-1 jobs are already done
    assert "calib_sampled   done" in s["out"] and f"sampled         partial {ARCHS}/{4 * ARCHS}" in s["out"], s["out"]

    before = _attempts(runs / "sampled_r2")
    s = stage("full", [], capsys)
    assert s["rc"] == 0, s["err"][-3000:]
    assert "[reproduce calib_sampled] done" in s["out"] and "skipped" in s["out"]
    assert all(_attempts(runs / "sampled_r2")[k] == 1 for k in before)   # the calibration was not redone
    for step in reproduce.STEPS:
        assert (results / step / "summary.json").is_file(), step
    summ = {n: json.loads((results / n / "summary.json").read_text()) for n in reproduce.STEPS}
    # the later steps train at the accepted rung's budget
    assert summ["sampled"]["run_dir"].endswith("sampled_r2") and summ["sampled"]["jobs"] == 4 * ARCHS
    assert summ["long_sampled"]["budget"]["cls"]["epochs"] == 6 and summ["long_sampled"]["archs"] == 5
    assert {b["image_offset"] for b in summ["cross_sampled"]["budget"].values()} == {128}
    assert summ["long_sampled"]["reference"].endswith("sampled_r2:cls")
    scale = summ["sampled"]["paper_scale"]   # the paper's recipe: width 16, depth 20, 100 epochs, 50k images
    assert scale["archs_measured"] == 1 and "paper_scale" not in summ["long_sampled"]   # (fake networks: macs_ratio 1)
    assert scale["data_ratio"] == 50_000 * 100 / (128 * 2) and scale["work_ratio"] == scale["macs_ratio"] * scale["data_ratio"]
    assert scale["study_core_hours"] == sum(scale["job_core_hours"].values()) * 500 * 3
    agree = json.loads((results / "cross_sampled" / "self_agreement.json").read_text())   # each task vs itself
    assert [r["task"] for r in agree["rows"]] == ["rot", "col", "jig"] and agree["reference_run"].endswith("sampled_r2")
    for n in ("sampled", "released", "long_sampled", "cross_sampled"):
        assert {"correlations.json", "scatter.png"} <= set(summ[n]["files"]), n
        assert (results / n / "correlations.json").is_file()
    assert summ["sampled"]["mean_job_wall"].keys() >= {"cls", "rot", "col", "jig"}
    for key in ("date", "command", "commands", "wall_seconds", "budget", "jobs", "machine", "git_commit"):
        assert key in summ["retrain"], key
    # the wall time of every step is kept beside the results (a run directory lost between sessions keeps none)
    wall = json.loads((results / reproduce.WALL_FILE).read_text())
    assert set(wall) == set(reproduce.STEPS) and wall["calib_sampled"]["invocations"] >= 1
    retrain = {r["genotype"]: r for r in summ["retrain"]["table"]}
    assert len(retrain) == 16 and {"search_cls", "search_jig", "DARTS_V2", "PDARTS", "rand0009"} <= set(retrain)
    assert set(retrain["DARTS_V2"]["seeds"]) == {"1", "2"} and retrain["DARTS_V2"]["normal_skip_connect"] == 2
    archs = json.loads((results / "retrain" / "archs.json").read_text())["archs"]
    assert all("none" not in [op for op, _ in a["normal"] + a["reduce"]] for a in archs)
    assert (results / "search_rot" / "genotype.json").is_file() and "genotype" in summ["search_rot"]

    text = report.read_text()
    assert "Not run yet" not in text and text.count("\n## ") == len(reproduce.PIPELINE)
    assert "](../results/sampled/scatter.png)" in text and "95% interval" in text
    assert "**Each task against itself**" in text
    section = {name: text.split(f"(`{name}`)")[1].split("\n## ")[0] for name in reproduce.STEPS}
    assert "**To the paper's scale.**" in section["sampled"] and "**To the paper's scale.**" in section["released"]
    assert "No rung's interval" not in section["calib_sampled"] and "Accepted: rung 2" in section["calib_sampled"]
    # the released fake scores agree perfectly between seeds: a zero-width interval, so no rung passes
    assert not summ["calib_released"]["passed"] and summ["calib_released"]["accepted"]["rung"] == 2
    assert "No rung's interval lies above 0: the last rung (2) is used" in section["calib_released"]
    assert summ["long_sampled"]["overrides"].count("TRAIN.EPOCHS") == 1
    assert "(training-free baseline)" in section["sampled"] or "params" not in section["sampled"]

    # a second run skips every step: no new job
    s = stage("again", [], capsys)
    assert s["rc"] == 0 and s["log"] == stages["full"]["log"], s["out"]
    assert s["out"].count("skipped") == len(reproduce.PIPELINE)
    assert report.read_text() == text

    # the report from results/ alone (a fresh clone: no run directories), and notes.md on top
    shutil.rmtree(runs)
    s = stage("report", ["--report"], capsys)
    assert s["rc"] == 0 and report.read_text() == text
    (results / "notes.md").write_text("My reading: *hand-written*.\n")
    stage("notes", ["--report"], capsys)
    assert report.read_text().split("\n")[2] == "My reading: *hand-written*."
    s = stage("list2", ["--list"], capsys)
    assert "sampled         done (results only" in s["out"], s["out"]

    # finished jobs outlive the run directories: a step rerun without them restores its store from
    # results/jobs/ (the calibration's second cls seed included) and trains nothing
    assert (results / "jobs" / "sampled_r2.jsonl").is_file()
    (results / "sampled" / "summary.json").unlink()
    s = stage("restore", ["--only", "sampled"], capsys)
    assert s["rc"] == 0 and s["log"] == stages["full"]["log"], s["err"][-2000:]
    assert f"{5 * ARCHS} finished jobs restored" in s["out"], s["out"]
    db = sqlite3.connect(str(runs / "sampled_r2" / "study.sqlite"))
    try:
        done = dict(db.execute("SELECT task || seed, count(*) FROM jobs WHERE state = 'done' GROUP BY task, seed"))
    finally:
        db.close()
    assert done == {"cls1": ARCHS, "cls2": ARCHS, "rot1": ARCHS, "col1": ARCHS, "jig1": ARCHS}

    # on a fresh clone the whole pipeline keeps every committed result as it is (no step is rerun, no
    # summary rewritten from imported jobs) and restores the stores the later steps extend or reference
    shutil.rmtree(runs)
    kept = {p: p.read_bytes() for p in results.rglob("*") if p.is_file() and p.name != reproduce.WALL_FILE}
    s = stage("clone", [], capsys)
    assert s["rc"] == 0 and s["log"] == stages["full"]["log"], s["err"][-2000:]
    # (sampled and released extend their calibration's run directory: once it is restored, they are done)
    assert s["out"].count("skipped") == len(reproduce.PIPELINE), s["out"]
    assert s["out"].count("committed results kept): skipped") == len(reproduce.PIPELINE) - 2, s["out"]
    assert {p: p.read_bytes() for p in kept} == kept
    assert (runs / "sampled_r2" / "study.sqlite").is_file() and (runs / "retrain" / "study.sqlite").is_file()
    assert "sampled         done\n" in stage("list3", ["--list"], capsys)["out"]


def test_report_without_results_and_bad_arguments(tmp_path, capsys):
    argv = ["--results", str(tmp_path / "results"), "--report-path", str(tmp_path / "r.md"), "--runs", str(tmp_path / "runs")]
    assert reproduce.main(argv + ["--report"]) == 0
    text = (tmp_path / "r.md").read_text()
    assert text.count("*Not run yet.*") == len(reproduce.PIPELINE)
    assert "`python tools/reproduce.py --only retrain` (after search_cls, search_rot" in text
    capsys.readouterr()
    # the shipped configs train on cifar10-mini: a missing data folder is one line, exit 2
    assert reproduce.main(argv + ["--only", "calib_sampled", "--data-dir", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reproduce.py: error: data directory") and "--data-dir" in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()
    assert reproduce.main(argv + ["--only", "calib_sampled,nope"]) == 2
    assert "unknown step 'nope'" in capsys.readouterr().err


def test_shipped_configs_and_steps():
    from unnas.config import load_cfg
    from unnas.study.config import study_defaults, validate_study_cfg

    ctx = reproduce.Ctx(Path(reproduce.DEFAULT_CONFIG_DIR), Path("runs/repro"), Path("results"), "", 2, Path("r.md"), "")
    assert [s.name for s in reproduce.PIPELINE][:2] == ["calib_sampled", "calib_released"]
    assert reproduce.rungs(ctx) == [[], ["TRAIN.EPOCHS", "4", "DATA.MAX_TRAIN", "2048"]]
    assert reproduce.rung_dir(ctx, reproduce.STEPS["calib_sampled"], 1) == Path("runs/repro/sampled")
    assert reproduce.rung_dir(ctx, reproduce.STEPS["calib_released"], 2) == Path("runs/repro/released_r2")
    root = Path(reproduce.DEFAULT_CONFIG_DIR)
    cfgs = {n: load_cfg(study_defaults(), str(root / f"{n}.yaml"), [], validate_study_cfg)
            for n in ("sampled", "released", "long_sampled", "cross_sampled", "retrain")}
    assert cfgs["long_sampled"].STUDY.NUM_ARCHS == 12 and list(cfgs["cross_sampled"].STUDY.TASKS) == ["rot", "col", "jig"]
    assert cfgs["cross_sampled"].DATA.TRAIN_OFFSET == cfgs["sampled"].DATA.MAX_TRAIN == 1024
    r = cfgs["retrain"]
    assert (r.DATA.MAX_TRAIN, r.TRAIN.EPOCHS, r.OPTIM.LR, r.OPTIM.SCHEDULE, r.TRAIN.BATCH_SIZE) == (2048, 6, 0.1, "cos", 64)
    for t in ("cls", "rot", "col", "jig"):
        c = reproduce.search_cfg(ctx, reproduce.STEPS[f"search_{t}"])
        assert (c.TASK.NAME, c.MODEL.WIDTH, c.MODEL.DEPTH, c.DATA.MAX_TRAIN, c.SEARCH.EPOCHS, c.SEARCH.ORDER,
                c.SEARCH.BATCH_SIZE) == (t, 8, 5, 1024, 10, "first", 32)
