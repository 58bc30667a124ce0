"""tools/reproduce.py --pipeline remedies (unnas/commands/remedies.py) on tiny synthetic configs: measured
searches in processes of their own (one at a time, then two at once), a derivation from another search's
alphas, the retraining (fake study trainer), skipping finished steps, the report from results/ alone; and
the shipped plan. The paper pipeline's own tests (test_reproduce.py) show it unchanged."""
import json
import shutil
from pathlib import Path

import pytest

from unnas.commands import remedies, reproduce, search

pytestmark = pytest.mark.usefixtures("one_thread")

SYNTH = "DATA: {DATASET: synthetic, MAX_TRAIN: 64, SYNTHETIC: {NUM_TRAIN: 128, NUM_TEST: 32}}\n"
TASKS, REMEDIES = ("cls", "col", "jig"), ("darts", "skiplimit")


def _write_configs(root: Path) -> Path:
    cfg = root / "cfg"
    cfg.mkdir()
    files = {
        "plan.yaml": "TASKS:\n  cls: {}\n  col: {SEARCH.BATCH_SIZE: 2}\n  jig: {}\nREMEDIES:\n"
                     "  - {NAME: darts, CFG: darts.yaml, TITLE: vanilla}\n"
                     "  - {NAME: skiplimit, CFG: skiplimit.yaml, FROM: darts}\n"
                     "RETRAIN: {CFG: retrain.yaml, ZOO: [DARTS_V2], RANDOM: 3}\n",
        "base.yaml": SYNTH + "MODEL: {WIDTH: 4, DEPTH: 2}\nARCH: {LR: 0.05}\n"
                     "SEARCH: {EPOCHS: 2, STEPS_PER_EPOCH: 1, BATCH_SIZE: 4, EVAL_BATCHES: 1, NUM_THREADS: 1, "
                     "HESSIAN: {PERIOD: 1, ITERS: 1}}\n",
        "darts.yaml": "_BASE_: base.yaml\n",
        "skiplimit.yaml": "_BASE_: darts.yaml\nSEARCH: {MAX_SKIPS_NORMAL: 1}\n",
        "bad.yaml": "_BASE_: darts.yaml\nSEARCH: {MAX_SKIPS_NORMAL: 1, EPOCHS: 3}\n",
        "retrain.yaml": SYNTH + "MODEL: {WIDTH: 4, DEPTH: 2}\nTRAIN: {EPOCHS: 1, BATCH_SIZE: 16}\n"
                        f"STUDY: {{TRAINER: fake, FAKE_LOG: {root / 'fake.log'}, TASKS: [cls], SEEDS: [1, 2], "
                        "ARCHS: unused.json}\nOUT_DIR: runs/remedies/retrain\n",
    }
    for name, text in files.items():
        (cfg / name).write_text(text)
    return cfg


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("remedies")
    cfg = _write_configs(root)
    common = ["--pipeline", "remedies", "--config-dir", str(cfg), "--runs", str(root / "runs"), "--results",
              str(root / "results"), "--report-path", str(root / "docs" / "search_remedies.md"),
              "--data-dir", str(root / "no-data")]
    return root, cfg, common


def _fake_jobs(root: Path) -> int:
    log = root / "fake.log"
    return len(log.read_text().splitlines()) if log.is_file() else 0


def test_remedies_pipeline_end_to_end(pipeline, capsys):
    root, cfg, common = pipeline
    results, runs, report = root / "results", root / "runs", root / "docs" / "search_remedies.md"
    names = [f"search_{t}_{r}" for t in TASKS for r in REMEDIES]

    assert reproduce.main(common + ["--list"]) == 0
    out = capsys.readouterr().out
    assert all(f"{n}" in out for n in names) and "retrain" in out and "done" not in out, out

    # one measured search on its own (--workers 1: the step loop runs its process) ...
    assert reproduce.main(common + ["--only", "search_cls_darts", "--workers", "1"]) == 0, capsys.readouterr().err
    assert not report.exists()
    # ... then the rest: the other two searches at once, the derivations, the retraining and the report
    assert reproduce.main(common + ["--workers", "2"]) == 0, capsys.readouterr().err[-3000:]
    out = capsys.readouterr().out
    assert "[reproduce searches] 2 searches, 2 at once" in out and "search_cls_darts] done" in out, out
    summ = {n: json.loads((results / n / "summary.json").read_text()) for n in names + ["retrain"]}
    procs = json.loads((results / reproduce.PROCESS_FILE).read_text())
    assert sorted(procs) == sorted(n for n in names if not n.endswith("skiplimit"))
    for n, recs in procs.items():   # one process each: its wall time, CPU time and peak RSS
        assert len(recs) == 1 and recs[0]["exit_status"] == 0 and recs[0]["command"].startswith("python tools/search.py")
        assert recs[0]["peak_rss_mb"] > 50 and recs[0]["cpu_seconds"] > 0 and recs[0]["wall_seconds"] > 0
        s = summ[n]
        assert s["process"]["peak_rss_mb"] == recs[0]["peak_rss_mb"] and s["commands"] == [recs[0]["command"]]
        assert [c["epoch"] for c in s["curve"]] == [0, 1] and all(c["hessian_eig"] is not None for c in s["curve"])
        assert (results / n / "alpha_history.json").is_file() and (runs / "logs" / f"{n}.txt").is_file()
    assert json.loads((results / "search_col_darts" / "search_summary.json").read_text())["task"] == "col"
    assert "TASK.NAME col SEARCH.BATCH_SIZE 2" in summ["search_col_darts"]["commands"][0]

    # the derivation: darts' alphas with the limit, exactly what a search with the limit derives
    for t in TASKS:
        d = summ[f"search_{t}_skiplimit"]
        assert d["source"] == f"search_{t}_darts" and d["process"] == summ[f"search_{t}_darts"]["process"]
        assert d["skip_limit"]["max_skips_normal"] == 1 and sum(op == "skip_connect" for op, _ in d["genotype"]["normal"]) <= 1
        assert [c["hessian_eig"] for c in d["curve"]] == [c["hessian_eig"] for c in summ[f"search_{t}_darts"]["curve"]]
    out_dir = root / "direct_skiplimit"
    assert search.main(["--cfg", str(cfg / "skiplimit.yaml"), "--task", "col", "--out", str(out_dir), "--no-progress",
                        "SEARCH.BATCH_SIZE", "2"]) == 0
    capsys.readouterr()
    assert json.loads((out_dir / "genotype.json").read_text()) == summ["search_col_skiplimit"]["genotype"]

    # the retraining: each distinct genotype once, 3 random genotypes, DARTS_V2; aliases keep their rows
    rows = {r["genotype"]: r for r in summ["retrain"]["table"]}
    assert set(names) | {"DARTS_V2", "rand0000", "rand0001", "rand0002"} == set(rows)
    archs = json.loads((results / "retrain" / "archs.json").read_text())["archs"]
    assert len(archs) == len(names) - len(summ["retrain"]["aliases"]) + 3 + 1
    for alias, same in summ["retrain"]["aliases"].items():
        assert rows[alias]["same_as"] == same and rows[alias]["mean"] == rows[same]["mean"]
    assert all(set(r["seeds"]) == {"1", "2"} for r in rows.values())

    text = report.read_text()
    for t in TASKS:
        for r in REMEDIES:
            assert f"| {t} | {r} |" in text, (t, r)
    assert "## Eigenvalue curves" in text and "DARTS_V2 (published)" in text and "Seed noise" in text
    assert "| skiplimit | `SEARCH.MAX_SKIPS_NORMAL 1` |" in text and "(= darts)" in text and "not run" not in text

    # a second run skips every step: no search process, no training job, the same report
    jobs = _fake_jobs(root)
    assert reproduce.main(common) == 0
    out = capsys.readouterr().out
    assert out.count("skipped") == len(names) + 1 and "searches" not in out, out
    assert json.loads((results / reproduce.PROCESS_FILE).read_text()) == procs and _fake_jobs(root) == jobs
    assert report.read_text() == text

    # the report from results/ alone (no run directories)
    shutil.rmtree(runs)
    assert reproduce.main(common + ["--report"]) == 0
    assert report.read_text() == text

    # a derivation is redone when its search's genotype has changed (that search was run again)
    path = results / "search_cls_skiplimit" / "summary.json"
    path.write_text(json.dumps({**summ["search_cls_skiplimit"], "source_genotype": {"normal": []}}))
    assert reproduce.main(common + ["--list"]) == 0
    lines = dict(x.split(None, 1) for x in capsys.readouterr().out.splitlines())
    assert lines["search_cls_skiplimit"] == "not started" and lines["search_col_skiplimit"] == "done", lines

    # a derivation whose config changes more than the limit is refused, naming the key
    ctx = reproduce.Ctx(cfg, runs, results, "", 1, report, "", pipeline=remedies.PIPELINE_DEF)
    bad = reproduce.Step("search_cls_bad", "derive", "bad.yaml", "", "", "", overrides=("TASK.NAME", "cls"),
                         source="search_cls_darts")
    with pytest.raises(reproduce.StepFailed, match="differs in SEARCH.EPOCHS"):
        remedies.run_derive(ctx, bad)


def test_bad_plan_and_report_without_results(tmp_path, capsys):
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    argv = ["--pipeline", "remedies", "--config-dir", str(cfg), "--results", str(tmp_path / "res"),
            "--report-path", str(tmp_path / "r.md"), "--runs", str(tmp_path / "runs")]
    assert reproduce.main(argv + ["--list"]) == 2
    assert "plan.yaml not found" in capsys.readouterr().err
    (cfg / "plan.yaml").write_text("TASKS: {rot: {}}\nREMEDIES:\n  - {NAME: a, CFG: a.yaml, FROM: b}\n")
    assert reproduce.main(argv + ["--list"]) == 2
    err = capsys.readouterr().err
    assert "FROM 'b' must name a remedy listed before it" in err and err.count("\n") == 1
    assert reproduce.main(["--pipeline", "nope", "--list"]) == 2
    assert "unknown pipeline 'nope'" in capsys.readouterr().err
    (cfg / "plan.yaml").write_text("TASKS: {rot: {}}\nREMEDIES:\n  - {NAME: a, CFG: a.yaml}\n")
    assert reproduce.main(argv + ["--report"]) == 0
    text = (tmp_path / "r.md").read_text()
    assert "0 of 2 steps have results" in text and "| rot | a | not run |" in text


def test_shipped_plan():
    ctx = reproduce.Ctx(Path("experiments/remedies"), Path("runs/remedies"), Path("results/remedies"), "", 2,
                        Path("r.md"), "", pipeline=reproduce.get_pipeline("remedies"))
    names = [s.name for s in ctx.order]
    rem = ("darts", "beta", "dartsminus", "sdarts", "pdarts", "skiplimit")
    assert names == [f"search_{t}_{r}" for t in ("rot", "col", "jig", "cls") for r in rem] + ["retrain"]
    base = reproduce.search_cfg(ctx, ctx.steps["search_cls_darts"])
    assert (base.MODEL.WIDTH, base.MODEL.DEPTH, base.DATA.MAX_TRAIN, base.SEARCH.ORDER, base.SEARCH.NUM_THREADS) == \
        (8, 5, 512, "first", 1)
    assert base.SEARCH.HESSIAN.PERIOD > 0 and reproduce.search_dir(ctx, ctx.steps["search_cls_darts"]) == \
        Path("runs/remedies/search_cls_darts")
    for t in ("rot", "col", "jig", "cls"):
        cfgs = {r: reproduce.search_cfg(ctx, ctx.steps[f"search_{t}_{r}"]) for r in rem}
        assert {c.TASK.NAME for c in cfgs.values()} == {t}
        assert cfgs["beta"].SEARCH.BETA_DARTS.WEIGHT == 50 and cfgs["sdarts"].SEARCH.SDARTS.EPSILON == 0.3
        assert cfgs["dartsminus"].SEARCH.AUX_SKIP.ENABLED and cfgs["pdarts"].SEARCH.PDARTS.ENABLE
        assert cfgs["skiplimit"].SEARCH.MAX_SKIPS_NORMAL == 2
    assert ctx.steps["search_rot_skiplimit"].kind == "derive" and ctx.steps["search_rot_skiplimit"].source == "search_rot_darts"
    r = ctx.steps["retrain"]
    assert r.zoo == ("DARTS_V2",) and r.random >= 3 and len(r.search) == 24
    study = reproduce.study_cfg(ctx.yaml(r))
    assert list(study.STUDY.TASKS) == ["cls"] and len(study.STUDY.SEEDS) >= 2
