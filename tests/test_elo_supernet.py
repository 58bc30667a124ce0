"""ELo's supernet evaluation (ELO.NETWORK supernet, unnas/elo/supernet.py) at the tiniest sizes: a
short DARTS search with the candidate's weights gives a finite fitness and probe and records its
derived genotype, is deterministic for a seed, resumes a search killed mid-way to the same result,
and a supernet evolution killed mid-way resumes to the uninterrupted run's candidates and results."""
import json
import math

import pytest

from search_spaces.darts.genotype import Genotype
from unnas.config import ConfigError, load_cfg
from unnas.elo.config import evolve_defaults, fingerprint, validate_evolve_cfg
from unnas.elo.evaluate import resolve_evaluator
from unnas.elo.evolution import run_evolution
from unnas.elo.jobs import Candidate, EvolutionJobs
from unnas.elo.supernet import evaluate_supernet_candidate, search_cfg
from unnas.study.jobs import Job

pytestmark = pytest.mark.usefixtures("one_thread")

# width 4 (the ELo default), 2 cells, 16 training images (8 per half), 1 search step of 4 per epoch
TINY = ["DEVICE", "cpu", "ELO.NETWORK", "supernet", "TASK.MULTI.TASKS", "['rot', 'col']", "MODEL.DEPTH", "2",
        "DATA.SYNTHETIC.NUM_TRAIN", "16", "DATA.SYNTHETIC.NUM_TEST", "12", "SEARCH.BATCH_SIZE", "4",
        "SEARCH.STEPS_PER_EPOCH", "1", "SEARCH.EVAL_BATCHES", "1", "FITNESS.CLUSTERS", "3", "ELO.STRATEGIES",
        "['random']", "ELO.POPULATION", "2", "ELO.BOOTSTRAP", "0"]


def quiet(_line):
    pass


def tiny_cfg(out, *opts):
    return load_cfg(evolve_defaults(), None, TINY + ["OUT_DIR", str(out), *opts], validate_evolve_cfg)


def test_the_search_takes_the_candidate_and_the_run_keys():
    cfg = tiny_cfg("/tmp/unused", "ARCH.LR", "0.01", "OPTIM.LR", "0.07", "NUM_THREADS", "1")
    cand = Candidate("random_g000_c00", "random", 0, 0, "multi", (0.25, 0.75), 3, True)
    s = search_cfg(cfg, cand, "/tmp/job")
    assert (s.TASK.NAME, list(s.TASK.MULTI.WEIGHTS), list(s.TASK.MULTI.TASKS)) == ("multi", [0.25, 0.75], ["rot", "col"])
    assert (s.SEARCH.EPOCHS, s.SEARCH.BATCH_SIZE, s.SEARCH.NUM_THREADS, s.ARCH.LR, s.OPTIM.LR) == (3, 4, 1, 0.01, 0.07)
    assert (s.MODEL.WIDTH, s.MODEL.DEPTH, s.DATA.SYNTHETIC.NUM_TRAIN, s.SEED, s.OUT_DIR) == (4, 2, 16, 1, "/tmp/job")
    single = search_cfg(cfg, Candidate("final_single_col", "final", 0, 1, "col", (), 1, True), "/tmp/job")
    assert single.TASK.NAME == "col"
    assert resolve_evaluator("default", "supernet") is evaluate_supernet_candidate


def test_supernet_config_errors_are_one_line_and_fixed_runs_keep_their_fingerprint(tmp_path):
    with pytest.raises(ConfigError, match="ELO.FINETUNE_EPOCHS 2: the report fine-tunes trunks through tools/train.py"):
        tiny_cfg(tmp_path, "ELO.FINETUNE_EPOCHS", "2")
    with pytest.raises(ConfigError, match="SEARCH.ARCH_START_EPOCH"):
        tiny_cfg(tmp_path, "SEARCH.ARCH_START_EPOCH", "1.0")
    with pytest.raises(ConfigError, match="ELO.NETWORK must be fixed or supernet"):
        tiny_cfg(tmp_path, "ELO.NETWORK", "graph")
    fixed = load_cfg(evolve_defaults(), None, ["OUT_DIR", str(tmp_path)], validate_evolve_cfg)
    # the search's keys change nothing a fixed network's evaluation computes: not in its fingerprint
    assert fingerprint(fixed) == fingerprint(load_cfg(evolve_defaults(), None, ["OUT_DIR", str(tmp_path),
                                                                                "SEARCH.EPOCHS", "3"], validate_evolve_cfg))
    assert fingerprint(tiny_cfg(tmp_path)) != fingerprint(tiny_cfg(tmp_path, "SEARCH.EPOCHS", "3"))


def _evaluate(cfg, key, out_dir):
    return evaluate_supernet_candidate(Job("net", key, int(cfg.SEED)), cfg, out_dir)


def test_a_supernet_evaluation_is_finite_records_its_genotype_and_is_deterministic(tmp_path, monkeypatch):
    """Two runs equal, and a third whose search was killed after its first epoch resumed to the same result."""
    from unnas.search import Searcher

    run = tmp_path / "run"
    cfg = tiny_cfg(run)
    cand = Candidate("random_g000_c00", "random", 0, 0, "multi", (0.3, 0.9), 2, True)
    jobs = EvolutionJobs(run, cfg)
    jobs.add([cand])
    jobs.close()

    first = _evaluate(cfg, cand.key, tmp_path / "a")
    assert math.isfinite(first["fitness"]) and first["fitness"] >= 0 and first["best"] == -first["fitness"]
    assert 0 <= first["probe_top1"] <= 100 and not first["diverged"] and first["network"] == "supernet"
    genotype = Genotype.from_dict(first["derived_genotype"])
    assert repr(genotype) == first["derived_genotype_repr"] and len(genotype.normal) == 8
    assert first["search"]["epoch"] == 1                          # two search epochs ran
    assert not (tmp_path / "a" / "checkpoint.pt").exists()        # deleted once the features were taken
    json.dumps(first)                                             # the store keeps it as JSON

    second = _evaluate(cfg, cand.key, tmp_path / "b")
    killed = Searcher(search_cfg(cfg, cand, tmp_path / "c"), tmp_path / "c", [])
    killed.run(max_epochs=1)                                      # a worker killed after the first epoch
    assert (tmp_path / "c" / "checkpoint.pt").exists()
    steps, run_step = [], Searcher.run_step

    def counted(self, epoch, step):
        steps.append(epoch)
        return run_step(self, epoch, step)
    monkeypatch.setattr(Searcher, "run_step", counted)
    resumed = _evaluate(cfg, cand.key, tmp_path / "c")
    assert steps == [1]                                           # resumed: only the second epoch's step ran
    for other in (second, resumed):
        for k in ("fitness", "probe_top1", "derived_genotype"):
            assert other[k] == first[k], k


class Evaluator:
    """The default evaluator of the run's config, recording what it finishes; raises
    KeyboardInterrupt (a killed run) instead of its ``stop_after + 1``-th evaluation, after running
    that evaluation's search for one of its two epochs (killed mid-search)."""

    def __init__(self, stop_after=None):
        self.stop_after, self.finished = stop_after, []

    def __call__(self, job, cfg, out_dir):
        if self.stop_after is not None and len(self.finished) == self.stop_after:
            from unnas.elo.jobs import load_candidate
            from unnas.search import Searcher
            Searcher(search_cfg(cfg, load_candidate(cfg, job.task), out_dir), out_dir, []).run(max_epochs=1)
            raise KeyboardInterrupt
        result = resolve_evaluator(cfg.ELO.EVALUATOR, cfg.ELO.NETWORK)(job, cfg, out_dir)
        self.finished.append(job.task)
        return result


def _rows(run_dir):
    rows = json.loads((run_dir / "history.json").read_text())["evaluations"]
    return [(r["key"], r["weights"], r["fitness"], r["probe_top1"], r["derived_genotype"]) for r in rows]


def test_a_killed_supernet_evolution_resumes_with_the_same_candidates_and_results(tmp_path):
    """Budget 3 in generations of 2 and 1: killed in the second evaluation's search, resumed."""
    opts = ("ELO.BUDGET", "3", "SEARCH.EPOCHS", "2")
    ref = tmp_path / "ref"
    run_evolution(tiny_cfg(ref, *opts), ref, evaluator=Evaluator(), echo=quiet)
    reference = _rows(ref)
    assert [r[0] for r in reference] == ["random_g000_c00", "random_g000_c01", "random_g001_c00"]
    assert all(math.isfinite(r[2]) and r[3] is not None and r[4].startswith("Genotype(") for r in reference)

    run = tmp_path / "run"
    cfg = tiny_cfg(run, *opts)
    first = Evaluator(stop_after=1)
    with pytest.raises(KeyboardInterrupt):
        run_evolution(cfg, run, evaluator=first, echo=quiet)
    second = Evaluator()
    run_evolution(cfg, run, evaluator=second, echo=quiet)
    assert _rows(run) == reference                       # the same candidates, fitnesses, probes and genotypes
    assert sorted(first.finished + second.finished) == [r[0] for r in reference]   # each evaluated once
