"""Random-experiment efficiency (paper Fig. 5): hand-computed cases, the release's procedure, seeds."""
import csv
import io
import math

import numpy as np
import pytest

from unnas.study.randexp import (best_of_m, experiment_sizes, format_randexp, randexp_csv, randexp_plot,
                                 random_experiment)

pytestmark = pytest.mark.usefixtures("one_thread")

REF = {"a": 90.0, "b": 92.0, "c": 91.0, "d": 94.0}


def _release_curve(selector, reference, seed, n_max):
    """The loop of the release's figs/fig5.py, rewritten: np.random.seed per task, choice over the
    sorted keys without replacement, the strictly better one kept, ceil(n/m) draws, np.std."""
    np.random.seed(seed)
    keys = sorted(selector)
    out, m = [], 1
    while m < n_max:
        s = []
        for _ in range(int(np.ceil(n_max / m))):
            best, best_perf = None, 0
            for a in np.random.choice(keys, m, replace=False):
                if selector[a] > best_perf:
                    best, best_perf = a, selector[a]
            s.append(reference[best])
        out.append((m, float(np.mean(s)), float(np.std(s))))
        m *= 2
    return out


def test_sizes():
    assert experiment_sizes(1) == [1] and experiment_sizes(4) == [1, 2, 4] and experiment_sizes(7) == [1, 2, 4]
    assert experiment_sizes(500)[-1] == 256 and experiment_sizes(0) == []


def test_hand_computed_four_archs():
    # oracle (the reference picks itself): m = 4 = n draws every architecture once -> the global best, std 0
    pts = {p["m"]: p for p in best_of_m(REF, REF, seed=0)}
    assert list(pts) == [1, 2, 4] and [pts[m]["repeats"] for m in (1, 2, 4)] == [4, 2, 1]
    assert pts[4]["mean"] == 94.0 and pts[4]["std"] == 0.0
    # an anti-correlated task picks the worst of the whole pool at m = n
    anti = {a: -v for a, v in REF.items()}
    assert best_of_m(anti, REF)[-1]["mean"] == 90.0
    # m = 1 picks one random architecture per draw whatever the task: the same draws for every task
    const = dict.fromkeys(REF, 1.0)
    assert best_of_m(anti, REF)[0] == best_of_m(REF, REF)[0] == best_of_m(const, REF)[0]
    # with 2 archs everything is by hand: m = 2 is the task's pick, m = 1 two single random draws
    two = {"x": 80.0, "y": 90.0}
    assert best_of_m({"x": 2.0, "y": 1.0}, two)[-1] == {"m": 2, "repeats": 1, "mean": 80.0, "std": 0.0}
    assert best_of_m(two, two)[-1]["mean"] == 90.0


def test_follows_the_release_procedure_and_is_seeded():
    rng = np.random.default_rng(3)
    ids = [f"a{i:03d}" for i in range(37)]
    ref = dict(zip(ids, 85 + 5 * rng.random(37)))
    task = {a: v + rng.normal(scale=2.0) for a, v in ref.items()}
    tied = {a: float(round(v)) for a, v in task.items()}   # ties: the first in draw order wins, as the release's ">"
    for seed in (0, 2):
        assert [(p["m"], p["mean"], p["std"]) for p in best_of_m(tied, ref, seed)] == pytest.approx(
            _release_curve(tied, ref, seed, len(ids)))
        ours = best_of_m(task, ref, seed)
        release = _release_curve(task, ref, seed, len(ids))
        assert [(p["m"], p["mean"], p["std"]) for p in ours] == pytest.approx(release)   # n = 37: m < n in both
        assert best_of_m(task, ref, seed) == ours                                          # deterministic
    assert best_of_m(task, ref, 0) != best_of_m(task, ref, 1)
    # only the architectures with both values take part
    assert best_of_m({**task, "zzz": 1e9}, ref, 0) == best_of_m(task, ref, 0)


def test_random_experiment_curves_and_outputs(tmp_path):
    means = {"cls": REF, "rot": {"a": 1.0, "b": 3.0, "c": 2.0, "d": 4.0}, "jig": {"a": 4.0, "b": 3.0, "c": 2.0}}
    params = {"a": 100.0, "b": 300.0, "c": 200.0, "d": 50.0}     # the largest network (b) is picked at m = n
    r = random_experiment(means, "cls", seed=0, baselines={"params": params})
    kinds = [(c["task"], c["kind"], c["n"]) for c in r["curves"]]
    assert kinds == [("rot", "task", 4), ("jig", "task", 3), ("params", "baseline", 4), ("cls", "oracle", 4)]
    last = {c["task"]: c["points"][-1] for c in r["curves"]}
    assert last["rot"]["mean"] == 94.0 and last["cls"]["mean"] == 94.0 and last["params"]["mean"] == 92.0
    assert last["jig"]["m"] == 2   # n = 3: m = 1, 2
    assert random_experiment(means, "cls", seed=0, baselines={"params": params}) == r
    md = format_randexp(r)
    assert "| m | draws | rot | jig | params (baseline) | cls (oracle) |" in md
    assert "| 4 | 1 | 94.00 ± 0.00 | - | 92.00 ± 0.00 | 94.00 ± 0.00 |" in md
    rows = list(csv.DictReader(io.StringIO(randexp_csv(r))))
    assert list(rows[0])[:5] == ["task", "m", "repeats", "mean", "std"]
    assert {(x["task"], int(x["m"]), int(x["repeats"])) for x in rows} >= {("jig", 2, 2), ("params", 4, 1)}
    assert all(math.isfinite(float(x["std"])) for x in rows)
    randexp_plot(r, tmp_path / "randexp.png")
    assert (tmp_path / "randexp.png").stat().st_size > 0
