"""Training-free proxies in every study (issue 17, part 2): `rank_corr.py proxies` computes and caches
them per architecture (resumably, before any training), `analyze` reports them as rows beside the
params/macs baselines, and the "beats params" flag follows the intervals."""
import csv
import json
import math
import sqlite3

import pytest

from unnas.commands import rank_corr as tool
from unnas.study import proxies as proxy_defs
from unnas.study.analysis import beats, load_study_cfg, mark_beats
from unnas.study.baselines import genotype_complexity
from unnas.study.proxy_study import (SCORES_FILE_META, ProxyScorer, analysis_proxies, compute_missing, export_scores,
                                     import_scores, open_cache, proxy_settings, scores_files, shard_archs, shard_file)
from unnas.study.runner import open_store
from unnas.study.store import SCHEMA_VERSION, Store, StoreError

pytestmark = pytest.mark.usefixtures("one_thread")

# a tiny study: fake trainer, width 4, depth 2, 6 sampled archs, a 16-image proxy batch
TINY = ["--trainer", "fake", "--tasks", "cls,rot", "--num-archs", "6", "MODEL.WIDTH", "4", "MODEL.DEPTH", "2",
        "--batch-size", "16"]


def _rows(run):
    store = open_store(run)
    try:
        return store.db.execute("SELECT arch_id, name, settings, value, error FROM proxies ORDER BY arch_id, name").fetchall()
    finally:
        store.close()


def _counting(monkeypatch):
    """Count the zero-cost proxy evaluations (a study computes every one through score_proxies)."""
    calls = []
    real = proxy_defs.score_proxies

    def counted(model, batches, loss_fn, names, *args, **kwargs):
        calls.extend(names)
        return real(model, batches, loss_fn, names, *args, **kwargs)
    monkeypatch.setattr(proxy_defs, "score_proxies", counted)
    return calls


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A study created by `proxies --out` (no training), scored with all 11 proxies."""
    run = tmp_path_factory.mktemp("proxies") / "run"
    rc = tool.main(["proxies", "--out", str(run), *TINY])
    assert rc == 0
    return run


# ---- the flag ----------------------------------------------------------------------------------------
def test_beats_needs_non_overlapping_intervals():
    assert beats([0.5, 0.9], [0.1, 0.4]) is True
    assert beats([0.35, 0.9], [0.1, 0.4]) is False            # overlap: not shown to be better
    assert beats([0.1, 0.4], [0.5, 0.9]) is False             # below
    assert beats([0.4, 0.9], [0.1, 0.4]) is False             # touching is overlapping
    assert beats([math.nan, math.nan], [0.1, 0.4]) is None and beats([0.5, 0.9], [0.1, math.nan]) is None
    rows = [{"task": "rot", "baseline": False, "spearman_ci": [0.6, 0.9]},
            {"task": "col", "baseline": False, "spearman_ci": [0.2, 0.7]},
            {"task": "jig", "baseline": False, "spearman_ci": [math.nan, math.nan]},
            {"task": "params", "baseline": True, "spearman_ci": [0.1, 0.5]},
            {"task": "snip", "baseline": True, "spearman_ci": [-0.3, 0.0]}]
    mark_beats(rows)
    assert [r["beats_params"] for r in rows] == [True, False, None, None, False]
    rows = [{"task": "rot", "baseline": False, "spearman_ci": [0.6, 0.9]}]
    mark_beats(rows)                                          # no params row: undefined
    assert rows[0]["beats_params"] is None


# ---- the command and the cache --------------------------------------------------------------------------
def test_proxies_command_scores_a_study_before_training_and_caches(scored, run_cli, monkeypatch):
    rows = _rows(scored)
    assert len(rows) == 6 * 11 and len({r[2] for r in rows}) == 1
    assert {r[1] for r in rows} == set(proxy_defs.PROXY_NAMES) and not any(r[4] for r in rows)
    store = open_store(scored)
    assert store.counts()["pending"] == 12 and store.counts()["done"] == 0     # created, nothing trained
    assert store.get_meta("schema_version") == SCHEMA_VERSION == "2"
    store.close()
    summary = (scored / "proxies" / "summary.md").read_text()
    assert "6 of 6 architectures have every score" in summary and "| grasp | 6 |" in summary
    assert len(list(csv.DictReader((scored / "proxies" / "scores.csv").open()))) == 6
    # a second call computes nothing
    calls = _counting(monkeypatch)
    rc, out, err = run_cli(tool.main, ["proxies", str(scored)])
    assert rc == 0, err
    assert calls == [] and "0 architectures need scores" in out and "computed 0 scores" in out
    assert _rows(scored) == rows


def test_cached_params_flops_are_the_baselines_numbers(scored):
    cfg = load_study_cfg(scored)
    store = open_store(scored)
    archs = store.archs()
    cache = open_cache(store, cfg)
    stored = cache.values(["params", "flops", "snip"])
    store.close()
    expected = genotype_complexity(cfg, "cls", archs)
    assert stored["params"] == expected["params"] and stored["flops"] == expected["macs"]
    # and a zero-cost score is compute_proxies of the seeded network on the study's batch
    scorer = ProxyScorer(cfg)
    net, _ = scorer.network(archs[0].genotype)
    direct = proxy_defs.compute_proxies(net, scorer.batch, scorer.task.loss, ["snip"], seed=0)["snip"]
    assert stored["snip"][archs[0].id] == direct and scorer.images == 16


def test_analyze_reports_proxy_rows_with_intervals(scored, run_cli, monkeypatch):
    rc, _, err = run_cli(tool.main, ["run", "--out", str(scored), "--no-analyze"])        # the fake trainings
    assert rc == 0, err
    calls = _counting(monkeypatch)
    rc, out, err = run_cli(tool.main, ["analyze", str(scored), "--bootstrap", "200"])
    assert rc == 0, err
    assert calls == []                                       # everything came from the cache
    js = json.loads((scored / "analysis" / "correlations.json").read_text())
    rows = {r["task"]: r for r in js["rows"]}
    zero_cost = [n for n in proxy_defs.PROXY_NAMES if n not in ("params", "flops")]
    assert [r["task"] for r in js["rows"]] == ["rot", "params", "macs", *zero_cost]
    assert all(rows[n]["kind"] == "proxy" and rows[n]["baseline"] and rows[n]["n"] == 6 for n in zero_cost)
    assert rows["params"]["kind"] == "baseline" and rows["rot"]["kind"] == "task"
    with_ci = [n for n in zero_cost if all(math.isfinite(v) for v in rows[n]["spearman_ci"])]
    assert len(with_ci) >= 5, {n: rows[n]["ci_note"] for n in zero_cost}
    assert all(rows[n]["spearman_ci"][0] <= rows[n]["spearman"] <= rows[n]["spearman_ci"][1] for n in with_ci)
    for n, r in rows.items():   # the flag is the interval rule applied to the stored intervals
        assert r["beats_params"] == (None if n == "params" else beats(r["spearman_ci"], rows["params"]["spearman_ci"]))
    assert js["baselines"]["params"] == {"recorded": 0, "cached": 6, "computed": 0}        # not computed twice
    assert js["proxies"]["archs"] == 6 and js["proxies"]["computed"] == 0 and js["proxies"]["note"] is None
    assert set(zero_cost) <= set(js["matrix"]) and "params" in js["matrix"]["snip"]
    assert {c["task"] for c in js["randexp"]["curves"] if c["kind"] == "baseline"} == {"params", "macs", *zero_cost}
    md = (scored / "analysis" / "correlations.md").read_text()
    assert "| snip (proxy) | 6 | - |" in md and "> params |" in md and "Proxies (training-free" in md
    csv_rows = {r["task"]: r for r in csv.DictReader((scored / "analysis" / "correlations.csv").open())}
    assert (csv_rows["snip"]["kind"], csv_rows["snip"]["baseline"], csv_rows["params"]["beats_params"]) == ("proxy", "1", "")
    header = next(csv.reader((scored / "analysis" / "archs.csv").open()))
    assert header == ["arch_id", "cls", "rot", "params", "macs", *zero_cost]
    matrix = next(csv.reader((scored / "analysis" / "task_matrix.csv").open()))
    assert matrix[1:4] == ["cls", "rot", "params"] and "naswot" in matrix
    assert (scored / "analysis" / "scatter.png").stat().st_size > 0
    # --no-proxies keeps the baselines; --no-baselines drops every training-free row
    rc, out, err = run_cli(tool.main, ["analyze", str(scored), "--bootstrap", "0", "--no-proxies"])
    assert rc == 0 and "(baseline)" in out and "(proxy)" not in out, err
    rc, out, err = run_cli(tool.main, ["analyze", str(scored), "--bootstrap", "0", "--no-baselines"])
    assert rc == 0 and "(baseline)" not in out and "(proxy)" not in out, err


def test_interrupted_computation_resumes(scored, tmp_path, run_cli, monkeypatch):
    """A kill (here Ctrl-C inside the 5th l2_norm evaluation, after that arch's naswot) keeps every
    stored score; the rerun computes only the missing ones, and the result equals an uninterrupted
    computation."""
    run = tmp_path / "run"
    real = proxy_defs.PROXIES["l2_norm"]
    seen = []

    def dies(net, inputs, targets, loss_fn, seed):
        seen.append(1)
        if len(seen) == 5:
            raise KeyboardInterrupt
        return real(net, inputs, targets, loss_fn, seed)
    monkeypatch.setitem(proxy_defs.PROXIES, "l2_norm", dies)
    rc, _, err = run_cli(tool.main, ["proxies", "--out", str(run), *TINY, "--names", "l2_norm,naswot"])
    assert rc == 130 and "scores computed so far are stored" in err
    assert len(_rows(run)) == 4 * 2 + 1                    # archs 0-3 both, arch 4 naswot only
    monkeypatch.setitem(proxy_defs.PROXIES, "l2_norm", real)
    calls = _counting(monkeypatch)
    rc, out, err = run_cli(tool.main, ["proxies", str(run)])
    assert rc == 0, err
    assert sorted(calls) == ["l2_norm", "l2_norm", "naswot"] and "2 architectures need scores" in out
    # same settings as the scored study (the proxy list is not part of them): the same numbers
    mine, ref = _rows(run), [r for r in _rows(scored) if r[1] in ("l2_norm", "naswot")]
    assert mine == ref


def test_analysis_computes_within_its_budget_and_says_what_is_missing(scored, tmp_path):
    cfg = load_study_cfg(scored)
    cfg.defrost()
    cfg.STUDY.PROXIES = ["synflow", "l2_norm"]
    cfg.STUDY.PROXY_SEED = 1                              # other settings: nothing cached yet
    store = open_store(scored)
    try:
        archs = store.archs()
        values, info = analysis_proxies(store, cfg, archs, None, run_dir=scored)   # the fake trainer: none computed
        assert values == {} and info["archs"] == 0 and "trainer is fake" in info["note"]
        assert f"rank_corr.py proxies {scored}" in info["note"]
        cfg.STUDY.TRAINER = "default"
        values, info = analysis_proxies(store, cfg, archs, None, budget=0)
        assert values == {} and "PROXY_ANALYZE_SECONDS is 0" in info["note"]
        values, info = analysis_proxies(store, cfg, archs[:4], None, budget=60)
        assert set(values) == {"synflow", "l2_norm"} and info["computed"] == 4 and info["note"] is None
        # the remaining two would take longer than a tiny budget: none started, a note instead
        stats = compute_missing(store, cfg, archs, ["synflow", "l2_norm"], time_limit=1e-6)
        assert stats["stopped"] and stats["left"] == 2 and stats["archs"] == 0
        assert proxy_settings(cfg)[1] != open_cache(store, load_study_cfg(scored)).key
    finally:
        store.close()


def test_unknown_proxy_and_missing_study_are_one_line_errors(tmp_path, run_cli):
    rc, _, err = run_cli(tool.main, ["proxies", str(tmp_path / "nothing")])
    assert rc == 2 and "holds no study" in err and "--archs FILE" in err
    rc, _, err = run_cli(tool.main, ["proxies", "--out", str(tmp_path / "x"), "--names", "snip,magic", "--trainer", "fake"])
    assert rc == 2 and "unknown proxy 'magic'" in err


def test_a_version_1_store_gains_the_proxy_tables(tmp_path):
    path = tmp_path / "study.sqlite"
    Store(path).close()
    db = sqlite3.connect(path)                 # make it look like a store written before schema 2
    db.executescript("DROP TABLE proxies; DROP TABLE proxy_settings; "
                     "INSERT INTO meta(key, value) VALUES ('schema_version', '1');")
    db.commit()
    db.close()
    store = Store(path)
    try:
        assert store.get_meta("schema_version") == "2" and store.proxy_rows("k") == []
        store.put_proxy("a0000", "jacov", "k", math.nan, 0.5)
        store.put_proxy("a0000", "naswot", "k", -math.inf, 0.1, None)
        assert [(r["name"], r["value"]) for r in store.proxy_rows("k")] == [("jacov", None), ("naswot", -math.inf)]
    finally:
        store.close()


# ---- portable scores and shards --------------------------------------------------------------------------
def test_shards_partition_the_architectures():
    archs = list(range(23))
    for n in (1, 2, 3, 7, 30):
        parts = [shard_archs(archs, (i, n)) for i in range(n)]
        assert sorted(a for p in parts for a in p) == archs            # complete, and disjoint (no repeats)
        assert all(p == archs[i::n] for i, p in enumerate(parts))      # index i mod n
    assert shard_archs(archs, None) == archs
    assert shard_file("results/proxies/zc.jsonl", (1, 4)).as_posix() == "results/proxies/zc.shard1of4.jsonl"
    assert shard_file("results/proxies/zc.jsonl", None).as_posix() == "results/proxies/zc.jsonl"


def test_exported_scores_restore_a_fresh_store_that_then_computes_nothing(scored, tmp_path, run_cli, monkeypatch):
    """The scores file round-trips every stored row (value, seconds to the ms, error; NaN and -inf
    too); a fresh study given it computes nothing, and its own export is the same file."""
    store = open_store(scored)
    try:
        cache = open_cache(store, load_study_cfg(scored))
        rows = {(r["arch_id"], r["name"]): r for r in cache.rows()}
        file = tmp_path / "results" / "proxies" / "tiny.jsonl"
        assert export_scores(store, cache, file, store.archs()) == 6 * 11
        assert import_scores(store, file) == 0                           # nothing missing: nothing imported
    finally:
        store.close()
    text = file.read_text()
    assert len(text.splitlines()) == 1 + 6 * 11 and json.loads(text.splitlines()[0])["settings"] == cache.key
    fresh = tmp_path / "fresh"
    calls = _counting(monkeypatch)
    rc, out, err = run_cli(tool.main, ["proxies", "--out", str(fresh), *TINY, "--scores-file", str(file)])
    assert rc == 0, err
    assert calls == [] and "imported 66 scores" in out and "0 architectures need scores" in out
    restored = {(r[0], r[1]): r for r in _rows(fresh)}
    assert set(restored) == set(rows)
    for (arch_id, name), r in rows.items():
        assert restored[arch_id, name][3] == r["value"] and restored[arch_id, name][4] == r["error"]
    assert file.read_text() == text                                     # written back unchanged
    store = open_store(fresh)
    assert store.get_meta(SCORES_FILE_META) == str(file)                 # remembered: `proxies DIR` reuses it
    store.close()
    # odd values survive: NaN (stored as NULL), -inf, a failed score with its error
    store = open_store(fresh)
    try:
        archs = store.archs()
        store.put_proxy(archs[0].id, "jacov", cache.key, math.nan, 0.25)
        store.put_proxy(archs[0].id, "naswot", cache.key, -math.inf, 0.5)
        store.put_proxy(archs[1].id, "zen", cache.key, None, 0.125, "ValueError: math domain error")
        export_scores(store, open_cache(store, load_study_cfg(fresh)), file, archs)
    finally:
        store.close()
    other = tmp_path / "other"
    rc, out, err = run_cli(tool.main, ["proxies", "--out", str(other), *TINY, "--scores-file", str(file)])
    assert rc == 0 and "0 architectures need scores" in out, err
    got = {(r[0], r[1]): r for r in _rows(other)}
    assert got[archs[0].id, "jacov"][3] is None and got[archs[0].id, "naswot"][3] == -math.inf
    assert got[archs[1].id, "zen"][3:] == (None, "ValueError: math domain error")


def test_shards_write_their_own_files_and_a_fresh_clone_continues_from_them(tmp_path, run_cli, monkeypatch):
    file = tmp_path / "results" / "zc.jsonl"
    names = ["--names", "l2_norm,synflow"]
    for i in range(2):   # two machines, each with its own run directory (nothing shared but the files)
        rc, out, err = run_cli(tool.main, ["proxies", "--out", str(tmp_path / f"m{i}"), *TINY, *names,
                                           "--shard", f"{i}/2", "--scores-file", str(file)])
        assert rc == 0, err
        assert f"(3 in shard {i}/2)" in out and f"wrote 6 scores to {shard_file(file, (i, 2))}" in out
    assert not file.exists() and scores_files(file) == [shard_file(file, (0, 2)), shard_file(file, (1, 2))]
    ids = [sorted(json.loads(line)["arch_id"] for line in shard_file(file, (i, 2)).read_text().splitlines()
                  if "arch_id" in line) for i in range(2)]
    assert not set(ids[0]) & set(ids[1]) and len(set(ids[0]) | set(ids[1])) == 6
    calls = _counting(monkeypatch)
    rc, out, err = run_cli(tool.main, ["proxies", "--out", str(tmp_path / "clone"), *TINY, *names,
                                       "--scores-file", str(file)])
    assert rc == 0, err
    assert calls == [] and "imported 12 scores" in out and f"wrote 12 scores to {file}" in out
    clone = _rows(tmp_path / "clone")
    assert len(clone) == 12 and set(clone) == set(_rows(tmp_path / "m0")) | set(_rows(tmp_path / "m1"))


def test_analysis_imports_the_remembered_scores_file_before_computing(tmp_path, run_cli, monkeypatch):
    file = tmp_path / "results" / "zc.jsonl"
    names = ["--names", "l2_norm,synflow"]
    for i in range(2):
        rc, _, err = run_cli(tool.main, ["proxies", "--out", str(tmp_path / f"m{i}"), *TINY, *names,
                                         "--shard", f"{i}/2", "--scores-file", str(file)])
        assert rc == 0, err
    run = tmp_path / "m0"                                  # holds only its shard; the other's file is beside it
    cfg = load_study_cfg(run)
    cfg.defrost()
    cfg.STUDY.TRAINER = "default"
    calls = _counting(monkeypatch)
    other = file.with_name("zc.shard1of2.jsonl")
    text = other.read_text()
    store = open_store(run)
    try:
        assert len({r["arch_id"] for r in open_cache(store, cfg).rows()}) == 3
        other.write_text("not json\n")                     # a broken file: a warning, no crash
        values, info = analysis_proxies(store, cfg, store.archs(), None, budget=0)
        assert info["archs"] == 3 and "missing for 3 of 6" in info["note"]
        other.write_text(text)
        values, info = analysis_proxies(store, cfg, store.archs(), None, budget=0)
        assert calls == [] and info["archs"] == 6 and info["note"] is None
        assert {len(v) for v in values.values()} == {6}
    finally:
        store.close()


def test_another_studys_scores_are_refused(scored, tmp_path, run_cli):
    store = open_store(scored)
    try:
        file = tmp_path / "scores.jsonl"
        export_scores(store, open_cache(store, load_study_cfg(scored)), file, store.archs())
    finally:
        store.close()
    rc, _, err = run_cli(tool.main, ["proxies", "--out", str(tmp_path / "run"), *TINY, "STUDY.SAMPLE_SEED", "5",
                                     "--scores-file", str(file)])
    assert rc == 2 and "has another genotype in this study" in err
    file.write_text("not json\n")
    with pytest.raises(StoreError, match="scores.jsonl:1: not a line of exported proxy scores"):
        store = Store(tmp_path / "s.sqlite")
        try:
            import_scores(store, file)
        finally:
            store.close()
