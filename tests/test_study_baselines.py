"""Training-free baselines (params, macs) in every analysis: recorded by the jobs or computed from the
genotype (the same numbers), rows marked as baselines, the largest network in the random experiment."""
import csv
import json

import pytest

from unnas.commands import rank_corr as tool
from unnas.study.analysis import analyze_run, analyze_values, correlations, format_table, load_study_cfg
from unnas.study.baselines import complexity_baselines, genotype_complexity, recorded_complexity
from unnas.study.runner import open_store

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(argv, capsys):
    rc = tool.main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def _fake_study(tmp_path, capsys, n=6, tasks="cls,rot"):
    ids = [f"a{i:04d}" for i in range(n)]
    table = {"cls": {a: 90.0 + i for i, a in enumerate(ids)}, "rot": {a: 70.0 + (i * 7) % n for i, a in enumerate(ids)}}
    (tmp_path / "table.json").write_text(json.dumps(table))
    run = tmp_path / "run"
    rc, _, err = _run(["run", "--trainer", "fake", "--num-archs", str(n), "--tasks", tasks, "--out", str(run),
                       "--no-analyze", "STUDY.FAKE_TABLE", str(tmp_path / "table.json")], capsys)
    assert rc == 0, err
    return run, table


def test_recorded_values_are_preferred_and_zero_means_missing():
    results = [{"arch_id": "a", "task": "cls", "result": {"params": 10, "macs": 100, "flops": 100}},
               {"arch_id": "b", "task": "cls", "result": {"params": 20, "flops": 300}},     # a trainer with flops only
               {"arch_id": "c", "task": "cls", "result": {"params": 0, "flops": 0}},        # the fake trainer
               {"arch_id": "d", "task": "rot", "result": {"params": 99, "macs": 999}}]
    assert recorded_complexity(results, "cls") == {"params": {"a": 10.0, "b": 20.0}, "macs": {"a": 100.0, "b": 300.0}}


def test_computed_values_match_what_the_trainer_records(tmp_path, capsys):
    """Two tiny real trainings (cls): the params/MACs the jobs record equal those computed from the genotype."""
    run = tmp_path / "real"
    rc, _, err = _run(["run", "--num-archs", "2", "--tasks", "cls", "--out", str(run), "--epochs", "1", "--no-analyze",
                       "TRAIN.STEPS_PER_EPOCH", "1", "TRAIN.EVAL_BATCHES", "1", "DATA.SYNTHETIC.NUM_TRAIN", "64",
                       "DATA.SYNTHETIC.NUM_TEST", "16", "STUDY.EPOCH_LOG", "False"], capsys)
    assert rc == 0, err
    store = open_store(run)
    results, archs = store.results(), store.archs()
    store.close()
    recorded = recorded_complexity(results, "cls")
    assert len(recorded["params"]) == 2 and len(recorded["macs"]) == 2
    assert genotype_complexity(load_study_cfg(run), "cls", archs) == recorded


def test_baseline_rows_in_a_fake_study(tmp_path, capsys):
    run, table = _fake_study(tmp_path, capsys)
    s = analyze_run(run, "cls", "best", None, n_boot=30)
    rows = {r["task"]: r for r in s["rows"]}
    assert [r["task"] for r in s["rows"]] == ["rot", "params", "macs"] and rows["params"]["baseline"]
    assert not rows["rot"]["baseline"] and rows["params"]["seeds"] == 0 and not rows["params"]["saturated"]
    assert s["baselines"]["params"] == {"recorded": 0, "cached": 0, "computed": 6} and s["baselines"]["note"] is None
    out = run / "analysis"
    archs_csv = list(csv.DictReader((out / "archs.csv").open()))
    params = {r["arch_id"]: float(r["params"]) for r in archs_csv}
    ref = [table["cls"][a] for a in sorted(params)]
    assert rows["params"]["spearman"] == pytest.approx(correlations(ref, [params[a] for a in sorted(params)], 0)["spearman"])
    assert rows["params"]["n"] == 6 and rows["params"]["spearman_ci"][0] <= rows["params"]["spearman"]
    md = (out / "correlations.md").read_text()
    assert "| params (baseline) | 6 | - |" in md and "| macs (baseline) | 6 | - |" in md and "6 computed" in md
    csv_rows = {r["task"]: r for r in csv.DictReader((out / "correlations.csv").open())}
    assert (csv_rows["params"]["baseline"], csv_rows["rot"]["baseline"]) == ("1", "0")
    js = json.loads((out / "correlations.json").read_text())
    assert [r["baseline"] for r in js["rows"]] == [False, True, True]
    assert js["matrix"]["params"]["cls"] == pytest.approx(rows["params"]["spearman"]) and "params" not in js["saturation"]
    curve = next(c for c in js["randexp"]["curves"] if c["task"] == "params")
    assert curve["kind"] == "baseline" and [p["m"] for p in curve["points"]] == [1, 2, 4]   # n = 6
    # --no-baselines leaves them out
    rc, out_text, err = _run(["analyze", str(run), "--no-baselines", "--bootstrap", "0"], capsys)
    assert rc == 0 and "(baseline)" not in out_text, err


def test_largest_network_is_picked_at_m_equals_n(tmp_path, capsys):
    run, table = _fake_study(tmp_path, capsys, n=4)
    s = analyze_run(run, "cls", "best", None, n_boot=0)
    params = _archs_column(run / "analysis" / "archs.csv", "params")
    curve = next(c for c in s["randexp"]["curves"] if c["task"] == "params")
    assert curve["points"][-1] == {"m": 4, "repeats": 1, "mean": table["cls"][max(params, key=params.get)], "std": 0.0}


def _archs_column(path, col):
    return {r["arch_id"]: float(r[col]) for r in csv.DictReader(path.open())}


def test_baselines_skipped_with_a_note_when_they_cannot_be_computed(tmp_path, capsys):
    run, _ = _fake_study(tmp_path, capsys, n=5)
    store = open_store(run)
    results, archs = store.results(), store.archs()
    store.close()
    values, info = complexity_baselines(results, archs, None, "cls")
    assert values == {} and "no readable study config" in info["note"]
    cfg = load_study_cfg(run)
    cfg.DATA.DATASET = "cifar10"
    cfg.DATA.ROOT = str(tmp_path / "no_cifar_here")
    values, info = complexity_baselines(results, archs, cfg, "cls")
    assert values == {} and info["note"].startswith("cannot compute params/MACs from the genotypes here")
    # the table says so; the task rows are unaffected
    means = {"cls": {a.id: 90.0 + i for i, a in enumerate(archs)}, "rot": {a.id: 80.0 - i for i, a in enumerate(archs)}}
    summary = analyze_values(means, {}, "cls", n_boot=0, baselines=values)
    summary["baselines"] = info
    assert [r["task"] for r in summary["rows"]] == ["rot"] and "Note: cannot compute" in format_table(summary)
