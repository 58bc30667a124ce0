"""The evaluation of an evolution's result, with labels used for evaluation only.

Runs (jobs of the same store, keys ``final_*``, run by the run's evaluator: pretrained for
ELO.FINAL_EPOCHS, then linear-probed on the labels for ELO.PROBE_EPOCHS with the trunk frozen and,
with ELO.FINETUNE_EPOCHS, fine-tuned on the labels for that many epochs with every weight trained,
both through tools/train.py's TRAIN.INIT_FROM path; with ELO.NETWORK supernet a search of
ELO.FINAL_EPOCHS each, probed on the supernet trunk's features, and its derived genotype):

(a) each task of TASK.MULTI.TASKS alone (``final_single_<task>``: that task as it trains by
    itself, e.g. colorization's 1-channel trunk);
(b) the multi task with equal weights (``final_uniform``);
(c) the multi task with each strategy's best weights (``final_best_<strategy>``).

And whether the fitness predicts anything: Spearman's rho between the fitness and the probe's
top-1 over every evaluated candidate of the evolution (their own probes, ELO.PROBE), with its
paired-bootstrap 95% interval (:func:`unnas.study.analysis.correlations`). The fitness is lower
for better, so a predictive fitness gives rho < 0.

Outputs: ``report.json`` and ``report.md`` in the run directory.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

from unnas.config import ConfigError
from unnas.utils.io import atomic_write_text

from .evaluate import candidate_epochs, evaluator_of, fitness_of
from .jobs import Candidate, EvolutionJobs
from .outputs import best_of, history, relative

FINAL = "final"


def final_candidates(cfg, rows) -> list[Candidate]:
    tasks = list(cfg.TASK.MULTI.TASKS)
    epochs, finetune = final_epochs(cfg), int(cfg.ELO.FINETUNE_EPOCHS)
    out = [Candidate(f"final_single_{t}", FINAL, 0, i, t, (), epochs, True, finetune) for i, t in enumerate(tasks)]
    out.append(Candidate("final_uniform", FINAL, 0, len(tasks), "multi", (1.0,) * len(tasks), epochs, True, finetune))
    for k, s in enumerate(cfg.ELO.STRATEGIES):
        b = best_of(rows, s)
        if b is not None:
            out.append(Candidate(f"final_best_{s}", FINAL, 0, len(tasks) + 1 + k, "multi", tuple(b["weights"]),
                                 epochs, True, finetune))
    return out


def final_epochs(cfg) -> int:
    """The report runs' pretraining (or search) epochs: ELO.FINAL_EPOCHS, 0 = an evaluation's."""
    return int(cfg.ELO.FINAL_EPOCHS or candidate_epochs(cfg))


def _label(c: Candidate) -> str:
    if c.task != "multi":
        return f"{c.task} alone"
    return "equal weights" if c.key == "final_uniform" else f"{c.key[len('final_best_'):]}'s best weights"


def build_report(cfg, rows, finals, results) -> dict:
    from unnas.study.analysis import correlations

    tasks = list(cfg.TASK.MULTI.TASKS)
    runs = []
    for c in finals:
        r = results.get(c.key, {})
        rel = relative(c.weights) if c.task == "multi" else [1.0 if t == c.task else 0.0 for t in tasks]
        runs.append({"run": _label(c), "key": c.key, "relative_weights": rel, "fitness": fitness_of(r),
                     "probe_top1": r.get("probe_top1"), "finetune_top1": r.get("finetune_top1"),
                     "diverged": bool(r.get("diverged")), "derived_genotype": r.get("derived_genotype_repr")})
    strategies = {}
    for s in cfg.ELO.STRATEGIES:
        b = best_of(rows, s)
        strategies[s] = {"evaluations": sum(r["strategy"] == s for r in rows),
                         "best_fitness": None if b is None else b["fitness"], "best_key": None if b is None else b["key"],
                         "best_relative_weights": None if b is None else b["relative_weights"],
                         "best_probe_top1": None if b is None else b["probe_top1"]}
    probed = [r for r in rows if r["probe_top1"] is not None and not r["diverged"] and math.isfinite(r["fitness"])]
    corr = correlations([r["fitness"] for r in probed], [r["probe_top1"] for r in probed],
                        n_boot=int(cfg.ELO.BOOTSTRAP), seed=int(cfg.ELO.SEED))
    return {"tasks": tasks, "network": str(cfg.ELO.NETWORK), "pretrain_epochs": final_epochs(cfg),
            "candidate_epochs": candidate_epochs(cfg), "probe_epochs": int(cfg.ELO.PROBE_EPOCHS),
            "finetune_epochs": int(cfg.ELO.FINETUNE_EPOCHS), "runs": runs, "strategies": strategies,
            "fitness_vs_probe": {"n": corr["n"], "spearman": corr["spearman"], "spearman_ci": corr["spearman_ci"],
                                 "ci_method": corr["ci_method"]["spearman"], "ci_note": corr["ci_note"]}}


def _num(x, fmt: str) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def _method(rep: dict) -> str:
    """What the report's runs did, in one sentence."""
    if rep.get("network") == "supernet":
        return (f"A DARTS search of {rep['pretrain_epochs']} epoch(s) per run, then a linear probe on the labels "
                "(logistic regression on the frozen supernet trunk's pooled features).")
    finetune = rep.get("finetune_epochs", 0)
    return (f"Pretraining {rep['pretrain_epochs']} epoch(s), then a linear probe of {rep['probe_epochs']} epoch(s) "
            "on the labels (trunk frozen)" +
            (f" and a fine-tune of {finetune} epoch(s) on the labels (every weight trained)." if finetune else "."))


def format_report(rep: dict) -> str:
    tasks = rep["tasks"]
    finetune = bool(rep.get("finetune_epochs"))
    lines = [_method(rep), "",
             f"| run | relative weights ({' / '.join(tasks)}) | fitness (lower is better) | probe top-1 (%) |" +
             (" fine-tune top-1 (%) |" if finetune else ""),
             "|---|---|---|---|" + ("---|" if finetune else "")]
    for r in rep["runs"]:
        weights = " / ".join(f"{w:.2f}" for w in r["relative_weights"])
        lines.append(f"| {r['run']}{' (diverged)' if r['diverged'] else ''} | {weights} | {_num(r['fitness'], '.4f')} | "
                     f"{_num(r['probe_top1'], '.2f')} |" + (f" {_num(r.get('finetune_top1'), '.2f')} |" if finetune else ""))
    derived = [r for r in rep["runs"] if r.get("derived_genotype")]
    if derived:
        lines += ["", "Derived genotypes of the report's searches:", ""]
        lines += [f"* {r['run']}: `{r['derived_genotype']}`" for r in derived]
    lines += ["", f"| strategy | evaluations | best fitness | best weights ({' / '.join(tasks)}) | its own probe top-1 (%) |",
              "|---|---|---|---|---|"]
    for s, v in rep["strategies"].items():
        w = " / ".join(f"{x:.2f}" for x in v["best_relative_weights"]) if v["best_relative_weights"] else "n/a"
        lines.append(f"| {s} | {v['evaluations']} | {_num(v['best_fitness'], '.4f')} | {w} | "
                     f"{_num(v['best_probe_top1'], '.2f')} |")
    c = rep["fitness_vs_probe"]
    lo, hi = c["spearman_ci"]
    ci = (f"95% interval [{lo:.2f}, {hi:.2f}] ({c['ci_method']})" if math.isfinite(lo) else
          f"no interval: {c['ci_note']}")
    lines += ["", f"Fitness vs probe top-1 over {c['n']} evaluated candidates: Spearman rho {_num(c['spearman'], '.2f')}, "
                  f"{ci}. The fitness is lower for better, so a predictive fitness gives rho < 0."]
    return "\n".join(lines) + "\n"


def run_report(cfg, run_dir, workers: int = 1, evaluator=None, echo: Callable[[str], None] = print) -> dict:
    """Run (or resume) the report's runs of the finished evolution in ``run_dir``; write and return the report."""
    from .evolution import advance, progress_line, run_rounds

    train_fn = evaluator_of(cfg, evaluator)
    jobs = EvolutionJobs(run_dir, cfg)
    try:
        states = [advance(name, cfg, jobs) for name in cfg.ELO.STRATEGIES]
        if not all(s.finished for s in states):
            raise ConfigError(f"the evolution in {run_dir} is not finished ({progress_line(states)}); run it first: "
                              f"evolve_loss.py run --out {run_dir}")
        rows = history(jobs, list(cfg.TASK.MULTI.TASKS))
        finals = final_candidates(cfg, rows)

        def register() -> bool:
            jobs.add(finals)
            states = jobs.states()
            left = [c.key for c in finals if states.get(c.key) != "done"]
            if left:
                echo(f"report {Path(run_dir)}: {len(left)} of {len(finals)} runs left ({', '.join(left)})")
            return bool(left)

        run_rounds(cfg, run_dir, jobs, register, workers, train_fn, echo)
        rep = build_report(cfg, rows, finals, jobs.results())
    finally:
        jobs.close()
    atomic_write_text(Path(run_dir) / "report.json", json.dumps(rep, indent=1) + "\n")
    atomic_write_text(Path(run_dir) / "report.md", format_report(rep))
    return rep
