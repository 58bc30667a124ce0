"""Cross-study reference (paper Fig. 4): `analyze RUN --reference OTHER_RUN[:TASK]` correlates this study's
tasks with another study's accuracies, matched by genotype (different ids), into analysis_ref_<name>/."""
import json

import pytest

from unnas.commands import rank_corr as tool
from unnas.config import ConfigError
from unnas.study.analysis import analysis_dirname, correlations
from unnas.study.archs import Arch, load_archs, save_archs
from unnas.study.randexp import best_of_m
from unnas.study.reference import parse_reference, study_reference
from unnas.study.runner import open_store

pytestmark = pytest.mark.usefixtures("one_thread")


def _study(tmp_path, run_cli, name, archs, table, tasks):
    save_archs(archs, tmp_path / f"{name}.json")
    (tmp_path / f"{name}_table.json").write_text(json.dumps(table))
    run = tmp_path / name
    rc, _, err = run_cli(tool.main, ["run", "--trainer", "fake", "--archs", str(tmp_path / f"{name}.json"), "--tasks", tasks,
                       "--out", str(run), "--no-analyze", "STUDY.FAKE_TABLE", str(tmp_path / f"{name}_table.json")])
    assert rc == 0, err
    return run


@pytest.fixture
def two_studies(tmp_path, run_cli):
    """A: 6 archs a0..a5 x cls, rot. B ("imnet"): 5 of the same genotypes under other ids, in another order,
    plus one genotype A lacks, x cls, rot, 2 seeds (the fake trainer returns the table's value for both)."""
    rc, _, err = run_cli(tool.main, ["sample", "--num-archs", "7", "--seed", "4", "--out", str(tmp_path / "pool.json")])
    assert rc == 0, err
    pool = load_archs(tmp_path / "pool.json")
    a_archs = [Arch(f"a{i}", pool[i].genotype) for i in range(6)]
    b_archs = [Arch(f"z{k}", pool[i].genotype) for k, i in enumerate([6, 4, 3, 2, 1, 0])]   # a5 missing, pool[6] extra
    a_cls = dict(zip([a.id for a in a_archs], [90.0, 91.0, 92.0, 93.0, 94.0, 95.0]))
    a_rot = dict(zip([a.id for a in a_archs], [70.0, 72.0, 71.0, 74.0, 73.0, 75.0]))
    # B's accuracy per genotype of A: a0..a4 -> 60, 64, 62, 63, 61
    b_by_a = {"a0": 60.0, "a1": 64.0, "a2": 62.0, "a3": 63.0, "a4": 61.0}
    b_cls = {"z0": 50.0, **{f"z{k}": b_by_a[f"a{i}"] for k, i in enumerate([6, 4, 3, 2, 1, 0]) if i < 6}}
    a = _study(tmp_path, run_cli, "A", a_archs, {"cls": a_cls, "rot": a_rot}, "cls,rot")
    b = _study(tmp_path, run_cli, "imnet", b_archs, {"cls": b_cls, "rot": b_cls}, "cls,rot")
    rc, _, err = run_cli(tool.main, ["run", "--out", str(b), "--seeds", "1,2", "--no-analyze"])   # a second seed
    assert rc == 0, err
    return a, b, a_cls, a_rot, b_by_a


def test_parse_reference(tmp_path, two_studies):
    a, b, *_ = two_studies
    assert parse_reference(str(b)) == (b, None)
    assert parse_reference(f"{b}:rot") == (b, "rot")
    assert parse_reference("rot") == (None, "rot")        # a task name: this study's reference task, as before
    (tmp_path / "empty").mkdir()
    assert parse_reference(str(tmp_path / "empty")) == (tmp_path / "empty", None)   # no study: said by study_reference
    with pytest.raises(ConfigError, match="neither a task name nor a study directory"):
        parse_reference("nonsense")
    with pytest.raises(ConfigError, match="frob"):
        parse_reference(f"{b}:frob")


def test_reference_from_another_study(two_studies, run_cli):
    a, b, a_cls, a_rot, b_by_a = two_studies
    store = open_store(a)
    archs = store.archs()
    store.close()
    values, info = study_reference(b, archs)
    assert values == b_by_a and info["task"] == "cls" and info["matched"] == 5 and info["seeds"] == [1, 2]
    assert info["label"] == "cls@imnet" and info["name"] == "imnet_cls"

    normal = a / "analysis"
    rc, out, err = run_cli(tool.main, ["analyze", str(a), "--reference", str(b), "--bootstrap", "0"])
    assert rc == 0, err
    assert not normal.exists()                                  # never over the normal analysis
    out_dir = a / analysis_dirname("best", "imnet_cls")
    assert out_dir.name == "analysis_ref_imnet_cls" and str(out_dir) in out
    js = json.loads((out_dir / "correlations.json").read_text())
    assert js["reference"] == "cls@imnet" and js["reference_study"]["matched"] == 5
    rows = {r["task"]: r for r in js["rows"]}
    common = sorted(b_by_a)
    ref = [b_by_a[x] for x in common]
    assert rows["cls(this)"]["spearman"] == pytest.approx(correlations(ref, [a_cls[x] for x in common], 0)["spearman"])
    assert rows["rot"]["spearman"] == pytest.approx(correlations(ref, [a_rot[x] for x in common], 0)["spearman"])
    assert rows["rot"]["n"] == 5 and rows["params"]["baseline"]
    # the baselines are this study's cls networks (its own cls jobs' head), correlated with the other reference
    assert js["baselines"]["task"] == "cls"
    assert "| task vs cls@imnet |" in out and "| cls(this) | 5 | 1 |" in out and "task cls of the study" in out
    oracle = next(c for c in js["randexp"]["curves"] if c["kind"] == "oracle")
    assert oracle["task"] == "cls@imnet" and oracle["n"] == 5 and oracle["points"] == best_of_m(b_by_a, b_by_a, 0)
    for f in ("correlations.md", "correlations.csv", "archs.csv", "scatter.png", "randexp.csv", "randexp.png"):
        assert (out_dir / f).stat().st_size > 0

    # DIR:TASK picks another task; --metric final goes to its own folder too
    rc, out, err = run_cli(tool.main, ["analyze", str(a), "--reference", f"{b}:rot", "--metric", "final", "--bootstrap", "0"])
    assert rc == 0, err
    assert (a / "analysis_final_ref_imnet_rot" / "correlations.json").is_file() and "task vs rot@imnet" in out
    assert "| rot(this) |" in out

    # --reference TASK still names this study's reference task (the normal folder)
    rc, out, err = run_cli(tool.main, ["analyze", str(a), "--reference", "rot", "--bootstrap", "0"])
    assert rc == 0 and "| task vs rot |" in out and "| cls |" in out and normal.is_dir(), err


@pytest.mark.parametrize("what", ["no_study", "no_task", "no_match", "and_table"])
def test_one_line_errors(tmp_path, run_cli, two_studies, what):
    a, b, *_ = two_studies
    if what == "no_study":
        (tmp_path / "empty").mkdir()
        argv, message = ["--reference", str(tmp_path / "empty")], "holds no study"
    elif what == "no_task":
        argv, message = ["--reference", f"{b}:jig"], "task jig has no finished results there (tasks with results: cls, rot)"
    elif what == "no_match":
        rc, _, _ = run_cli(tool.main, ["sample", "--num-archs", "3", "--seed", "99", "--out", str(tmp_path / "c.json")])
        c = tmp_path / "C"
        rc, _, err = run_cli(tool.main, ["run", "--trainer", "fake", "--archs", str(tmp_path / "c.json"), "--tasks", "cls", "--out",
                           str(c), "--no-analyze"])
        assert rc == 0, err
        argv, message = ["--reference", str(c)], "matches one of this study's 6 (by genotype)"
    else:
        (tmp_path / "t.json").write_text("{}")
        argv, message = ["--reference", str(b), "--supervised-table", str(tmp_path / "t.json")], "not both"
    rc, _, err = run_cli(tool.main, ["analyze", str(a), *argv])
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert rc == 2 and message in lines[-1] and lines[-1].startswith("rank_corr.py"), err
