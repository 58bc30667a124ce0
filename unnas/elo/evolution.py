"""The loss-weight evolution: every strategy of ELO.STRATEGIES proposes generations of weights
for TASK.MULTI.TASKS, the study's workers evaluate them (:mod:`unnas.elo.evaluate`), the
strategies are told the fitnesses, until each has drawn ELO.BUDGET candidates.

The strategies advance in lock-step rounds: a round registers, for every strategy, its next
generation once the previous one is finished, then the workers (``--workers N`` processes, each
claiming one evaluation at a time) run every pending evaluation of every strategy.

Nothing of a strategy's state is saved. Each round rebuilds every strategy from ELO.SEED and
replays its finished generations from the store: ask, check that the draws equal the stored
candidates, tell the stored fitnesses. So a killed evolution resumes with the strategy in exactly
the state it had, draws the same next generation, keeps every finished evaluation (the store
accepts a result once) and reruns only the evaluations that had not finished (those resume from
their own checkpoints).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from unnas.config import ConfigError

from .evaluate import candidate_epochs, evaluator_of, fitness_of
from .jobs import Candidate, EvolutionJobs, candidate_key
from .strategies import build_strategy


@dataclass(frozen=True)
class StrategyState:
    name: str
    drawn: int          # candidates registered so far (up to ELO.BUDGET)
    done: int           # of which evaluated
    generation: int     # the generation running now (when finished: the number of generations)
    finished: bool


def advance(name: str, cfg, jobs: EvolutionJobs) -> StrategyState:
    """Replay strategy ``name`` over its finished generations and register its next one (if its
    budget allows and the previous one is finished); where it stands."""
    e = cfg.ELO
    strategy = build_strategy(name, len(cfg.TASK.MULTI.TASKS), e.BUDGET, e.POPULATION, e.SEED,
                              cma_sigma=e.CMA_SIGMA, tournament_size=e.TOURNAMENT_SIZE)
    states, results = jobs.states(), jobs.results()
    drawn = done = 0
    for g in itertools.count():
        n = min(e.POPULATION, e.BUDGET - drawn)
        asked = strategy.ask(n) if n > 0 else []
        if not asked:
            return StrategyState(name, drawn, done, g, True)
        generation = [Candidate(candidate_key(name, g, i), name, g, i, "multi", tuple(float(v) for v in x),
                                candidate_epochs(cfg), bool(e.PROBE)) for i, x in enumerate(asked)]
        jobs.add(generation)          # a no-op for a stored generation drawn identically, else refused
        drawn += len(generation)
        finished = [c for c in generation if states.get(c.key) == "done"]
        if len(finished) < len(generation):
            return StrategyState(name, drawn, done + len(finished), g, False)
        fitnesses = [fitness_of(results[c.key]) for c in generation]
        bad = [c.key for c, f in zip(generation, fitnesses) if not math.isfinite(f)]
        if bad:
            raise ConfigError(f"evaluation {bad[0]} returned no finite fitness; the evaluator ({e.EVALUATOR}) must "
                              "return a finite 'fitness'")
        strategy.tell([c.weights for c in generation], fitnesses)
        done += len(generation)


def check_failures(jobs: EvolutionJobs, run_dir, prog: str = "evolve_loss.py") -> None:
    """A failed evaluation stops the evolution (its generation cannot finish): one line naming it."""
    failed = jobs.failed()
    if failed:
        lines = (failed[0]["error"] or "").strip().splitlines()
        raise ConfigError(f"{len(failed)} evaluation(s) failed (first {failed[0]['task']}: "
                          f"{lines[-1] if lines else 'no message'}); see `{prog} status {run_dir}`, fix the cause, "
                          "then rerun the same command with --retry-failed")


def progress_line(states) -> str:
    return "; ".join(f"{s.name} " + ("finished" if s.finished else f"generation {s.generation}") +
                     f" ({s.done}/{s.drawn} evaluated)" for s in states)


def run_rounds(cfg, run_dir, jobs: EvolutionJobs, register: Callable[[], bool], workers: int, train_fn,
               echo: Callable[[str], None]) -> None:
    """Until ``register()`` (which adds the pending work and says whether any is left) is False:
    run the workers over every pending evaluation, stopping at a failed one."""
    from unnas.study.runner import run_workers

    from .config import worker_cfg
    from .outputs import write_outputs

    while True:
        left = register()
        write_outputs(cfg, run_dir, jobs, pictures=not left)
        if not left:
            return
        check_failures(jobs, run_dir)
        run_workers(worker_cfg(cfg), run_dir, workers, train_fn=train_fn, wait=True, echo=echo)
        check_failures(jobs, run_dir)


def run_evolution(cfg, run_dir, workers: int = 1, evaluator=None, echo: Callable[[str], None] = print) -> dict:
    """Run (or resume) the evolution of ``cfg`` in ``run_dir``. ``evaluator`` (a callable or an
    ELO.EVALUATOR string) replaces ELO.EVALUATOR. Returns ``{strategy: best history row}``."""
    from .outputs import best_of, history

    train_fn = evaluator_of(cfg, evaluator)
    jobs = EvolutionJobs(run_dir, cfg)

    def register() -> bool:
        states = [advance(name, cfg, jobs) for name in cfg.ELO.STRATEGIES]
        if not all(s.finished for s in states):
            echo(f"evolution {Path(run_dir)}: {progress_line(states)}")
        return not all(s.finished for s in states)

    try:
        run_rounds(cfg, run_dir, jobs, register, workers, train_fn, echo)
        rows = history(jobs, list(cfg.TASK.MULTI.TASKS))
    finally:
        jobs.close()
    return {s: best_of(rows, s) for s in cfg.ELO.STRATEGIES}
