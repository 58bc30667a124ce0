"""Correlation statistics against hand-computed values; analysis outputs; supervised tables."""
import json
import math

import numpy as np
import pytest

from search_spaces import get_space
from unnas.config import ConfigError
from unnas.study.analysis import analyze_values, correlations, load_table, per_arch
from unnas.study.sampling import sample_archs


def test_hand_computed_case():
    # y swaps ranks 1<->2 and 3<->4: sum d^2 = 4 -> rho = 1 - 6*4/(5*24) = 0.8;
    # 2 discordant of 10 pairs -> tau = (8 - 2)/10 = 0.6; cov 8 / sqrt(10*10) -> r = 0.8.
    s = correlations([1, 2, 3, 4, 5], [2, 1, 4, 3, 5], n_boot=0)
    assert s["n"] == 5
    assert s["spearman"] == pytest.approx(0.8)
    assert s["kendall"] == pytest.approx(0.6)
    assert s["pearson"] == pytest.approx(0.8)
    # monotone but non-linear: rank correlations 1, Pearson below 1
    s = correlations([1, 2, 3, 4], [1, 10, 100, 1000], n_boot=0)
    assert s["spearman"] == pytest.approx(1.0) and s["kendall"] == pytest.approx(1.0) and s["pearson"] < 0.9
    assert math.isnan(correlations([1, 2, 3], [5, 5, 5], n_boot=0)["spearman"])   # constant: undefined


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    y = x + rng.normal(scale=0.7, size=40)
    a = correlations(x, y, n_boot=300, seed=5)
    b = correlations(x, y, n_boot=300, seed=5)
    c = correlations(x, y, n_boot=300, seed=6)
    assert a == b and a["spearman_ci"] != c["spearman_ci"]
    for k in ("spearman", "kendall", "pearson"):
        lo, hi = a[f"{k}_ci"]
        assert -1 <= lo < a[k] < hi <= 1


def _rows(table, seed=1):
    return [{"arch_id": a, "task": t, "seed": seed, "best": v, "final": v - 1} for t, d in table.items() for a, v in d.items()]


def test_means_intersection_and_seed_ceiling():
    cls = {"a": 90.0, "b": 91.0, "c": 92.0, "d": 93.0}
    rot = {"a": 80.0, "b": 82.0, "c": 81.0, "d": 83.0, "e": 99.0}     # e has no cls: left out
    rows = _rows({"cls": cls, "rot": rot}) + _rows({"rot": {"a": 82.0, "b": 80.0, "c": 81.0, "d": 83.0}}, seed=2)
    means, by_seed = per_arch(rows, "best")
    assert means["rot"]["a"] == 81.0 and means["rot"]["e"] == 99.0
    s = analyze_values(means, by_seed, "cls", n_boot=0)
    row = s["rows"][0]
    assert row["task"] == "rot" and row["n"] == 4 and row["seeds"] == 2
    # rot means a 81, b 81, c 81, d 83 vs cls ranks 1..4
    assert row["spearman"] == pytest.approx(correlations([90, 91, 92, 93], [81, 81, 81, 83], 0)["spearman"])
    # seeds 1 and 2 of rot over a-d: ranks [1, 3, 2, 4] vs [3, 1, 2, 4]: sum d^2 = 8 -> 1 - 48/60 = 0.2
    assert s["seed_ceiling"]["rot"]["mean_spearman"] == pytest.approx(0.2)
    assert s["matrix"]["cls"]["rot"] == pytest.approx(row["spearman"])
    with pytest.raises(ConfigError, match="supervised reference"):
        analyze_values(means, by_seed, "jig")


def test_supervised_tables(tmp_path):
    archs = sample_archs(get_space("darts"), 3, seed=0)
    (tmp_path / "t.json").write_text(json.dumps({"a0000": 91.5, "a0001": 90.0}))
    assert load_table(tmp_path / "t.json", archs) == {"a0000": 91.5, "a0001": 90.0}
    g = archs[2].genotype
    (tmp_path / "t.csv").write_text("genotype,top1_err\n" + f'"{g!r}",7.5\n' + "a0000,9.0\n")
    assert load_table(tmp_path / "t.csv", archs) == {"a0002": 92.5, "a0000": 91.0}
    release = {"job_summaries": [{"job_id": 1, "net": {"genotype": g.to_dict()}, "min_test_top1": [9.0, 6.0]}]}
    (tmp_path / "sweep_summary.json").write_text(json.dumps(release))
    assert load_table(tmp_path / "sweep_summary.json", archs) == {"a0002": 94.0}
    (tmp_path / "none.json").write_text(json.dumps({"zzz": 1.0}))
    with pytest.raises(ConfigError, match="matches an architecture"):
        load_table(tmp_path / "none.json", archs)
    (tmp_path / "bad.csv").write_text("name,score\nx,1\n")
    with pytest.raises(ConfigError, match="key column"):
        load_table(tmp_path / "bad.csv", archs)
