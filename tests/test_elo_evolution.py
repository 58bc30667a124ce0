"""The loss-weight evolution (unnas/elo/, tools/evolve_loss.py) with the fake evaluator: every
strategy keeps to its budget, a killed evolution resumes with the same candidates and neither loses
nor repeats a finished evaluation, the outputs (best weights as a config the tools read, history,
pictures, report) are written, and bad input is one line."""
import json
import math
import socket
import subprocess
import sys

import numpy as np
import pytest

from unnas.commands.evolve_loss import main
from unnas.config import ConfigError, load_cfg
from unnas.elo.config import evolve_defaults, validate_evolve_cfg
from unnas.elo.evaluate import fake_evaluate
from unnas.elo.evolution import run_evolution
from unnas.elo.jobs import EvolutionJobs
from unnas.elo.strategies import STRATEGIES, build_strategy

FAKE = ["ELO.EVALUATOR", "fake", "ELO.BUDGET", "5", "ELO.POPULATION", "4", "ELO.BOOTSTRAP", "50", "DEVICE", "cpu"]


def quiet(_line):
    pass


def cfg_for(out, *opts):
    return load_cfg(evolve_defaults(), None, FAKE + ["OUT_DIR", str(out), *opts], validate_evolve_cfg)


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_each_strategy_keeps_to_its_budget(name):
    for budget, population in ((5, 4), (9, 5), (1, 4)):
        strategy = build_strategy(name, 3, budget, population, seed=0, cma_sigma=0.3, tournament_size=3)
        drawn = 0
        while (n := min(population, budget - drawn)) > 0 and (asked := strategy.ask(n)):
            assert len(asked) <= n and all(len(w) == 3 and 0 <= w.min() and w.max() <= 1 for w in asked)
            strategy.tell(asked, [float(((w - 0.3) ** 2).sum()) for w in asked])
            drawn += len(asked)
        assert drawn == budget or (name == "grid" and drawn <= budget), (budget, population, drawn)


def test_grid_lies_on_the_simplex():
    strategy = build_strategy("grid", 3, 16, 4, seed=0)
    points = [p for _ in range(4) for p in strategy.ask(4)]
    assert len(points) == 15 and all(abs(p.sum() - 1) < 1e-12 for p in points)      # C(4 + 2, 2) = 15 <= 16
    assert len({tuple(p) for p in points}) == 15


class Evaluator:
    """The fake evaluator, recording every evaluation it finishes; raises KeyboardInterrupt (a
    killed run) instead of its ``stop_after + 1``-th."""

    def __init__(self, stop_after=None):
        self.stop_after, self.finished = stop_after, []

    def __call__(self, job, cfg, out_dir):
        if self.stop_after is not None and len(self.finished) == self.stop_after:
            raise KeyboardInterrupt
        result = fake_evaluate(job, cfg, out_dir)
        self.finished.append(job.task)
        return result


def _rows(run_dir):
    rows = json.loads((run_dir / "history.json").read_text())["evaluations"]
    return [(r["key"], r["weights"], r["fitness"]) for r in rows]


def test_a_killed_evolution_resumes_with_the_same_candidates_and_no_evaluation_lost_or_repeated(tmp_path):
    opts = ("ELO.STRATEGIES", "['cmaes', 'tournament']", "ELO.BUDGET", "9")
    ref = tmp_path / "ref"
    run_evolution(cfg_for(ref, *opts), ref, evaluator=Evaluator(), echo=quiet)

    run = tmp_path / "run"
    cfg = cfg_for(run, *opts)
    first = Evaluator(stop_after=9)          # killed in the second round, after cmaes_g001_c00
    with pytest.raises(KeyboardInterrupt):
        run_evolution(cfg, run, evaluator=first, echo=quiet)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()                              # and a worker killed -9 while it held an evaluation
    jobs = EvolutionJobs(run, cfg)
    held = jobs.store.claim(f"{socket.gethostname()}:{dead.pid}", 900.0)
    jobs.close()
    assert held is not None and held[0].task not in first.finished

    second = Evaluator()
    run_evolution(cfg, run, evaluator=second, echo=quiet)
    assert _rows(run) == _rows(ref)                                      # the same candidates and fitnesses
    assert sorted(first.finished + second.finished) == sorted(k for k, _, _ in _rows(ref))   # each once
    with pytest.raises(ConfigError, match="ELO.SEED 0 -> 1"):            # another sequence in the same run: refused
        EvolutionJobs(run, cfg_for(run, *opts, "ELO.SEED", "1"))


def test_the_tool_evolves_reports_and_writes_weights_the_tools_read(tmp_path, run_cli):
    from unnas.search.config import search_defaults, validate_search_cfg
    from unnas.train import train_defaults, validate_train_cfg

    out = tmp_path / "run"
    rc, stdout, err = run_cli(main, ["run", "--out", str(out), *FAKE, "ELO.FINETUNE_EPOCHS", "1"])
    assert rc == 0, err
    history = json.loads((out / "history.json").read_text())
    counts = {s: sum(r["strategy"] == s for r in history["evaluations"]) for s in history["strategies"]}
    assert counts == {"cmaes": 5, "tournament": 5, "random": 5, "grid": 3}      # grid: 3 simplex points fit 5
    for name in ("history.csv", "fitness.png", "weights.png", "best_cmaes.yaml", "report.md", "report.json"):
        assert (out / name).is_file(), name
    assert any((out / "tb").iterdir())
    best = min(history["evaluations"], key=lambda r: r["fitness"])
    for defaults, validate in ((train_defaults(), validate_train_cfg), (search_defaults(), validate_search_cfg)):
        cfg = load_cfg(defaults, str(out / "best.yaml"), [], validate)
        assert cfg.TASK.NAME == "multi" and list(cfg.TASK.MULTI.WEIGHTS) == best["weights"]
    report = json.loads((out / "report.json").read_text())
    assert [r["key"] for r in report["runs"]][:4] == ["final_single_rot", "final_single_col", "final_single_jig",
                                                      "final_uniform"]
    assert report["fitness_vs_probe"]["n"] == 18 and report["fitness_vs_probe"]["spearman"] < -0.5   # fake: probe falls
    assert report["finetune_epochs"] == 1 and all(r["finetune_top1"] == r["probe_top1"] + 10 for r in report["runs"])
    assert "| fine-tune top-1 (%) |" in (out / "report.md").read_text() and "fine-tune of 1 epoch(s)" in stdout
    assert np.isfinite(report["fitness_vs_probe"]["spearman_ci"]).all() and "Spearman rho" in stdout
    rc, stdout, _ = run_cli(main, ["status", str(out)])
    assert rc == 0 and "cmaes: 5 done, 0 running, 0 pending, 0 failed" in stdout


@pytest.mark.parametrize("argv, message", [
    (["--strategies", "cmaes,nope"], "ELO.STRATEGIES: unknown loss-weight strategy 'nope'"),
    (["--tasks", "rot"], "TASK.MULTI.TASKS lists 1 task; the evolution weighs at least 2"),
    (["--tasks", "rot,nope"], "TASK.MULTI.TASKS: unknown task 'nope'"),
    (["--budget", "0"], "ELO.BUDGET must be >= 1"),
    (["--population", "3"], "CMA-ES needs at least 4 candidates per generation"),
    (["TASK.MULTI.WEIGHTS", "[1.0, 1.0, 1.0]"], "TASK.MULTI.WEIGHTS is set per candidate"),
    (["ELO.EVALUATOR", "nomodule:f"], "ELO.EVALUATOR nomodule:f: cannot import it"),
    (["--network", "supernet", "ELO.FINETUNE_EPOCHS", "1"], "ELO.FINETUNE_EPOCHS 1: the report fine-tunes trunks"),
    (["--network", "supernet", "MODEL.SPACE", "nasbench101"], "the nasbench101 space (MODEL.SPACE) has no supernet"),
])
def test_bad_input_is_one_line(tmp_path, run_cli, argv, message):
    rc, _, err = run_cli(main, ["run", "--out", str(tmp_path / "r"), *argv])
    assert rc == 2 and err.count("\n") == 1 and message in err, err


def test_the_cifar10_mini_experiment_config_loads():
    from pathlib import Path

    from unnas.elo.strategies import grid_levels

    path = Path(__file__).resolve().parents[1] / "experiments" / "elo" / "cifar10_mini.yaml"
    cfg = load_cfg(evolve_defaults(), str(path), [], validate_evolve_cfg)
    assert list(cfg.ELO.STRATEGIES) == ["cmaes", "tournament", "random", "grid"] and cfg.ELO.BUDGET == 10
    assert grid_levels(3, cfg.ELO.BUDGET) == 3                 # the grid fills the budget: C(5, 2) = 10 points
    assert cfg.ELO.FINETUNE_EPOCHS == 2 and cfg.ELO.NETWORK == "fixed"   # the report fine-tunes


def test_the_cifar10_mini_supernet_experiment_config_loads():
    from pathlib import Path

    from unnas.elo.evaluate import candidate_epochs
    from unnas.elo.jobs import Candidate
    from unnas.elo.supernet import search_cfg

    path = Path(__file__).resolve().parents[1] / "experiments" / "elo" / "cifar10_mini_supernet.yaml"
    cfg = load_cfg(evolve_defaults(), str(path), [], validate_evolve_cfg)
    assert cfg.ELO.NETWORK == "supernet" and cfg.ELO.FINETUNE_EPOCHS == 0 and candidate_epochs(cfg) == cfg.SEARCH.EPOCHS
    s = search_cfg(cfg, Candidate("c", "cmaes", 0, 0, "multi", (1.0, 1.0, 1.0), candidate_epochs(cfg), True), "/tmp/x")
    assert (s.DATA.DATASET, s.MODEL.WIDTH, s.MODEL.DEPTH, s.SEARCH.BATCH_SIZE) == ("cifar10", 8, 5, 16)


def test_the_default_evaluator_trains_scores_and_probes(tmp_path):
    """One real evaluation at the tiniest sizes (pretraining, fitness, probe), and a report run of a
    single 1-channel task (colorization: its fitness and probe read L)."""
    from unnas.elo.evaluate import evaluate_candidate
    from unnas.elo.jobs import Candidate
    from unnas.study.jobs import Job

    run = tmp_path / "run"
    cfg = load_cfg(evolve_defaults(), None, [
        "OUT_DIR", str(run), "DEVICE", "cpu", "TASK.MULTI.TASKS", "['rot', 'col']", "ELO.STRATEGIES", "['random']",
        "ELO.BUDGET", "1", "ELO.POPULATION", "2", "MODEL.DEPTH", "2", "DATA.SYNTHETIC.NUM_TRAIN", "32",
        "DATA.SYNTHETIC.NUM_TEST", "16", "TRAIN.BATCH_SIZE", "8", "TRAIN.STEPS_PER_EPOCH", "2", "FITNESS.CLUSTERS", "3",
        "TRAIN.EVAL_BATCHES", "1"], validate_evolve_cfg)
    best = run_evolution(cfg, run, echo=quiet)["random"]
    assert best is not None and 0 <= best["fitness"] and best["probe_top1"] is not None
    assert not (run / "jobs" / f"net_{best['key']}_s1" / "checkpoint_last.pt").exists()     # cleaned once recorded
    jobs = EvolutionJobs(run, cfg)
    jobs.add([Candidate("final_single_col", "final", 0, 1, "col", (), 1, True)])
    jobs.close()
    result = evaluate_candidate(Job("net", "final_single_col", 1), cfg, tmp_path / "col")
    assert result["fitness"] >= 0 and result["probe_top1"] is not None and result["best"] == -result["fitness"]


def test_the_report_fine_tunes_every_run_through_the_trainer(tmp_path):
    """The report's runs at the tiniest sizes with the default evaluator (the evolution itself
    faked): each of (a) rot alone, col alone, (b) equal weights, (c) random's best is pretrained,
    probed and fine-tuned; the fine-tune trains every weight from the pretrained trunk."""
    import torch
    import yaml

    from unnas.elo.evaluate import fake_evaluate
    from unnas.elo.report import run_report

    run = tmp_path / "run"
    cfg = load_cfg(evolve_defaults(), None, [
        "OUT_DIR", str(run), "DEVICE", "cpu", "TASK.MULTI.TASKS", "['rot', 'col']", "ELO.STRATEGIES", "['random']",
        "ELO.BUDGET", "1", "ELO.POPULATION", "2", "ELO.BOOTSTRAP", "0", "ELO.FINETUNE_EPOCHS", "1",
        "ELO.FINETUNE_LR", "0.02", "MODEL.DEPTH", "2", "DATA.SYNTHETIC.NUM_TRAIN", "16", "DATA.SYNTHETIC.NUM_TEST", "8",
        "TRAIN.BATCH_SIZE", "8", "TRAIN.STEPS_PER_EPOCH", "1", "FITNESS.CLUSTERS", "3", "TRAIN.EVAL_BATCHES", "1",
        "STUDY.KEEP_CHECKPOINTS", "True"], validate_evolve_cfg)
    run_evolution(cfg, run, evaluator=fake_evaluate, echo=quiet)
    report = run_report(cfg, run, echo=quiet)
    assert [r["key"] for r in report["runs"]] == ["final_single_rot", "final_single_col", "final_uniform",
                                                  "final_best_random"]
    for r in report["runs"]:
        assert 0 <= r["finetune_top1"] <= 100 and 0 <= r["probe_top1"] <= 100 and math.isfinite(r["fitness"]), r
    assert "| fine-tune top-1 (%) |" in (run / "report.md").read_text()
    job = run / "jobs" / "net_final_uniform_s1"
    summary = json.loads((job / "finetune" / "summary.json").read_text())
    assert not summary["linear_probe"] and summary["epochs"] == 1 and summary["init_from"]
    tuned_cfg = yaml.safe_load((job / "finetune" / "config.yaml").read_text())
    assert tuned_cfg["OPTIM"]["LR"] == 0.02 and tuned_cfg["TASK"]["NAME"] == "cls"     # ELO.FINETUNE_LR
    pre = torch.load(job / "checkpoint_last.pt", weights_only=True)["model"]
    tuned = torch.load(job / "finetune" / "checkpoint_last.pt", weights_only=True)["model"]
    probed = torch.load(job / "probe" / "checkpoint_last.pt", weights_only=True)["model"]
    trunk = [k for k in pre if k.startswith("trunk.") and pre[k].is_floating_point()]
    assert all(torch.equal(pre[k], probed[k]) for k in trunk)                 # the probe's trunk frozen
    assert any(not torch.equal(pre[k], tuned[k]) for k in trunk)              # the fine-tune's trained


def test_a_store_from_before_the_fine_tune_resumes(tmp_path):
    """A run whose candidate table has no fine-tune column (made before it existed) opens, reads its
    candidates as not fine-tuned, and resumes with no evaluation repeated."""
    import sqlite3

    run = tmp_path / "run"
    cfg = cfg_for(run, "ELO.STRATEGIES", "['random']", "ELO.BUDGET", "4")
    run_evolution(cfg, run, evaluator=Evaluator(), echo=quiet)
    db = sqlite3.connect(run / "study.sqlite")
    db.execute("ALTER TABLE elo_candidates DROP COLUMN finetune")
    db.commit()
    db.close()
    jobs = EvolutionJobs(run, cfg)
    assert [c.finetune for c in jobs.candidates()] == [0, 0, 0, 0]
    jobs.close()
    again = Evaluator()
    run_evolution(cfg, run, evaluator=again, echo=quiet)
    assert again.finished == []
