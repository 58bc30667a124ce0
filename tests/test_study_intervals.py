"""Bootstrap intervals that admit what they cannot say (n/a, not zero-width), and the saturation flag."""
import dataclasses
import logging
import math

import numpy as np
import pytest
from scipy import stats

from unnas.study import analysis
from unnas.study.analysis import (KINDS, MIN_ARCHS_CI, _csv, _three, analyze_values, correlations, format_table,
                                  saturation)


@pytest.fixture
def study_log():
    """Records of the "unnas.study" logger (``setup_logging`` may have turned off propagation to caplog)."""
    records = []
    h = logging.Handler(logging.WARNING)
    h.emit = records.append
    logger = logging.getLogger("unnas.study")
    logger.addHandler(h)
    yield records
    logger.removeHandler(h)


def _no_interval(s):
    return all(math.isnan(s[f"{k}_ci"][0]) and math.isnan(s[f"{k}_ci"][1]) for k in KINDS)


def test_vectorised_statistic_matches_scipy():
    rng = np.random.default_rng(3)
    for n in (7, 150):   # sign-matrix Kendall (n <= 100) and the per-resample loop
        x = np.round(rng.normal(size=n), 1)        # ties in both
        y = np.round(x + rng.normal(size=n), 1)
        got = _three(x, y)
        want = [stats.spearmanr(x, y)[0], stats.kendalltau(x, y)[0], stats.pearsonr(x, y)[0]]
        assert got == pytest.approx(want, abs=1e-12)
        batch = _three(np.stack([x, np.ones(n)]), np.stack([y, y]))   # a constant resample: undefined
        assert batch[:, 0] == pytest.approx(want, abs=1e-12) and np.isnan(batch[:, 1]).all()


def test_degenerate_data_give_nan_and_a_warning_not_a_zero_width_interval(study_log):
    s = correlations([90.0, 91.0, 92.0], [83.0, 82.0, 81.0], n_boot=200, seed=0)   # 3 archs: was -1.00 [-1.00, -1.00]
    assert s["spearman"] == pytest.approx(-1.0) and _no_interval(s)
    assert s["ci_note"] == f"too few architectures (3 < {MIN_ARCHS_CI})"
    s = correlations([1, 2, 3, 4, 5, 6], [70.0] * 6, n_boot=200)
    assert math.isnan(s["spearman"]) and _no_interval(s) and "constant accuracies (task)" in s["ci_note"]
    # 5 archs, 4 tied on the reference: a third of the resamples have a constant x -> undefined
    s = correlations([90.0, 90.0, 90.0, 90.0, 91.0], [80.0, 81.0, 82.0, 83.0, 84.0], n_boot=200)
    assert _no_interval(s) and s["ci_note"].startswith("degenerate resamples (")
    # every resample gives rho = 1 (a monotone relation): no spread, so no interval for the rank correlations
    s = correlations(np.arange(10.0), np.arange(10.0) ** 2, n_boot=200)
    assert math.isnan(s["spearman_ci"][0]) and math.isnan(s["kendall_ci"][0]) and "same spearman/kendall" in s["ci_note"]
    assert s["pearson_ci"][0] < s["pearson"] < s["pearson_ci"][1] and s["ci_method"]["pearson"] == "BCa"

    # in a study: logged, in the summary and in the Markdown table
    means = {"cls": {"a": 90.0, "b": 91.0, "c": 92.0}, "rot": {"a": 83.0, "b": 82.0, "c": 81.0}}
    summary = analyze_values(means, {t: {1: v} for t, v in means.items()}, "cls", n_boot=200, seed=0)
    row = summary["rows"][0]
    assert _no_interval(row)
    msg = "rot vs cls: no 95% interval: too few architectures (3 < 5)"
    assert msg in summary["warnings"] and msg in [r.getMessage() for r in study_log]
    md = format_table(summary)
    assert "| rot | 3 | 1 | -1.00 [n/a] | -1.00 [n/a] | -1.00 [n/a] |" in md
    assert "CI n/a: too few architectures (3 < 5)" in md and "[-1.00, -1.00]" not in md
    assert "too few architectures" in _csv(summary)


def test_known_correlation_interval_contains_the_truth():
    rho = 0.6   # bivariate normal: Pearson rho, Spearman 6/pi asin(rho/2), Kendall 2/pi asin(rho)
    truth = {"pearson": rho, "spearman": 6 / math.pi * math.asin(rho / 2), "kendall": 2 / math.pi * math.asin(rho)}
    xy = np.random.default_rng(11).multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=80)
    s = correlations(xy[:, 0], xy[:, 1], n_boot=1000, seed=0)
    assert s["ci_note"] is None
    for k in KINDS:
        lo, hi = s[f"{k}_ci"]
        assert lo < truth[k] < hi and lo < s[k] < hi and hi - lo < 0.6, (k, lo, hi)
        assert s["ci_method"][k] == "BCa"
    assert correlations(xy[:, 0], xy[:, 1], n_boot=1000, seed=0) == s   # seeded: the same numbers again


def test_bca_failure_falls_back_to_the_percentile_interval_of_the_same_resamples(monkeypatch):
    real = stats.bootstrap
    seen = {}

    def no_bca(*args, **kw):
        res = real(*args, **kw)
        if kw.get("method") == "BCa":
            seen["dist"] = res.bootstrap_distribution
            nan = np.full(3, np.nan)
            res = dataclasses.replace(res, confidence_interval=type(res.confidence_interval)(nan, nan))
        return res

    monkeypatch.setattr(analysis.stats, "bootstrap", no_bca)
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    s = correlations(x, x + rng.normal(size=30), n_boot=400, seed=2)
    assert set(s["ci_method"].values()) == {"percentile"} and s["ci_note"] is None
    for i, k in enumerate(KINDS):
        assert s[f"{k}_ci"] == pytest.approx(np.percentile(seen["dist"][i], [2.5, 97.5]))


def test_saturated_tasks_are_flagged(study_log):
    ids = [f"a{i}" for i in range(8)]
    cls = dict(zip(ids, [80.0, 82.0, 84.0, 86.0, 88.0, 90.0, 92.0, 94.0]))
    rot = dict(zip(ids, [90.0, 97.7, 97.6, 97.9, 97.8, 98.05, 98.0, 98.1]))   # 7 of 8 within 0.5 of 98.1
    jig = dict(zip(ids, [31.0, 30.0, 33.0, 34.0, 38.0, 36.0, 39.0, 41.0]))
    sat = saturation(rot)
    assert sat["saturated"] and sat["near_max_fraction"] == pytest.approx(7 / 8)
    assert sat["reason"] == "88% of archs within 0.5 points of the best 98.10"
    assert not saturation(jig)["saturated"]
    assert not saturation({"a": 90.0, "b": 91.0, "c": 97.4, "d": 97.8})["saturated"]   # 2 of 4 within 0.5: no
    assert saturation({"a": 90.0, "b": 97.3, "c": 97.4, "d": 97.8})["saturated"]       # 3 of 4 (75%): yes
    # spread below the seed noise: archs differ less than the noise of their 2-seed means
    s1 = dict(zip(ids, [50.0, 54.0, 49.0, 55.0, 51.0, 53.0, 48.0, 56.0]))
    s2 = dict(zip(ids, [54.0, 50.0, 55.0, 49.0, 53.0, 51.0, 56.0, 48.0]))
    noisy = saturation({a: (s1[a] + s2[a]) / 2 for a in ids}, {1: s1, 2: s2})
    assert noisy["saturated"] and "below the seed noise" in noisy["reason"]

    means = {"cls": cls, "rot": rot, "jig": jig}
    summary = analyze_values(means, {t: {1: v} for t, v in means.items()}, "cls", n_boot=100, seed=0)
    by_task = {r["task"]: r for r in summary["rows"]}
    assert by_task["rot"]["saturated"] and not by_task["jig"]["saturated"]
    assert not by_task["rot"]["reference_saturated"] and summary["saturation"]["rot"]["saturated"]
    assert any(r.getMessage().startswith("rot is saturated (88% of archs") for r in study_log)
    md = format_table(summary)
    head, _, *body = md.split("\n\n")[0].splitlines()
    names = [c.strip() for c in head.split("|")]
    cells = {line.split("|")[1].strip(): dict(zip(names, (c.strip() for c in line.split("|")))) for line in body}
    assert [cells["rot"][k] for k in ("saturated", "notes")] == ["yes", ""]
    assert [cells["jig"][k] for k in ("saturated", "notes")] == ["no", ""]
    assert "Saturated (>= 75% of archs within 0.5 points of the best" in md
    header, *lines = _csv(summary).splitlines()
    cols = header.split(",")
    assert {ln.split(",")[0]: ln.split(",")[cols.index("saturated")] for ln in lines} == {"rot": "1", "jig": "0"}
    # a saturated reference marks every row
    summary = analyze_values({"cls": rot, "jig": jig}, {}, "cls", n_boot=0)
    assert summary["rows"][0]["reference_saturated"] and "| ref |" in format_table(summary)
