"""Strategies that propose loss weights, one generation at a time (``STRATEGIES``, looked up by
``ELO.STRATEGIES``). Lower fitness is better.

A strategy is an ask/tell object whose every random draw comes from its own generator, seeded
from ``ELO.SEED`` and its name: ``ask(n)`` proposes the next generation (at most n weight vectors
in [0, 1]^d), ``tell(candidates, fitnesses)`` reports that generation's results. So the sequence
of candidates is a function of the seed and the results told, and an interrupted evolution
replays its finished generations to reach exactly the state it was in (:mod:`unnas.elo.evolution`).

* ``cmaes``: CMA-ES (the ``cmaes`` package), mean 0.5 in every weight, step ``ELO.CMA_SIGMA``,
  bounds [0, 1] (the paper's constraint on each lambda), one generation = its population;
* ``tournament``: tournament selection as the paper's: the first generation uniform in [0, 1]^d,
  then each child copies the fittest of ``ELO.TOURNAMENT_SIZE`` individuals drawn from the best
  ``population`` evaluated so far and sets one of its weights, chosen uniformly, to U[0, 1];
* ``random``: every candidate uniform in [0, 1]^d;
* ``grid``: the weights are relative (the task divides them by their sum), so the grid lies on
  the simplex: every (a_1, ..., a_d) / m with non-negative integers summing to m, for the largest
  m whose C(m + d - 1, d - 1) points fit the budget (it may leave part of the budget unused).
"""
from __future__ import annotations

import itertools
import math
import zlib

import numpy as np

from unnas.registry import Registry

STRATEGIES = Registry("loss-weight strategy")


def strategy_seed(seed: int, name: str) -> int:
    """The seed of one strategy: a stable function of ELO.SEED and its name (independent streams)."""
    return zlib.crc32(f"{seed}/{name}".encode())


class Strategy:
    """``dim`` weights per candidate, ``budget`` evaluations in all, ``population`` per generation."""

    name = ""

    def __init__(self, dim: int, budget: int, population: int, seed: int, **options):
        self.dim, self.budget, self.population = dim, budget, population
        self.rng = np.random.default_rng(strategy_seed(seed, self.name))

    def ask(self, n: int) -> list[np.ndarray]:
        raise NotImplementedError

    def tell(self, candidates, fitnesses) -> None:
        """Results of the last ``ask``, in its order (strategies that ignore them keep this)."""


@STRATEGIES.register("random")
class RandomSearch(Strategy):
    name = "random"

    def ask(self, n):
        return list(self.rng.random((n, self.dim)))


@STRATEGIES.register("tournament", aliases=("tournament_selection",))
class TournamentSelection(Strategy):
    name = "tournament"

    def __init__(self, dim, budget, population, seed, tournament_size: int = 3, **options):
        super().__init__(dim, budget, population, seed)
        self.tournament_size = tournament_size
        self.pool: list[tuple[float, np.ndarray]] = []     # the best ``population`` so far, fittest first

    def ask(self, n):
        if not self.pool:
            return list(self.rng.random((n, self.dim)))
        out = []
        for _ in range(n):
            drawn = self.rng.choice(len(self.pool), size=min(self.tournament_size, len(self.pool)), replace=False)
            child = self.pool[int(drawn.min())][1].copy()     # the pool is sorted: the lowest index is the fittest
            child[int(self.rng.integers(self.dim))] = self.rng.random()
            out.append(child)
        return out

    def tell(self, candidates, fitnesses):
        ranked = self.pool + [(float(f), np.asarray(c, dtype=np.float64)) for c, f in zip(candidates, fitnesses)]
        ranked.sort(key=lambda item: item[0])                  # stable: earlier wins a tie
        self.pool = ranked[:self.population]


@STRATEGIES.register("cmaes", aliases=("cma", "cma-es", "cma_es"))
class CmaEs(Strategy):
    name = "cmaes"

    def __init__(self, dim, budget, population, seed, cma_sigma: float = 0.3, **options):
        super().__init__(dim, budget, population, seed)
        from cmaes import CMA
        self.cma = CMA(mean=np.full(dim, 0.5), sigma=float(cma_sigma), bounds=np.tile([0.0, 1.0], (dim, 1)),
                       seed=strategy_seed(seed, self.name), population_size=population)

    def ask(self, n):
        out = []
        for _ in range(n):
            x = self.cma.ask()
            out.append(x if x.sum() > 0 else np.ones(self.dim))   # all 0 (clipped at the bound) weighs nothing: equal weights
        return out

    def tell(self, candidates, fitnesses):
        if len(candidates) == self.cma.population_size:         # a budget-truncated last generation is never told
            self.cma.tell([(np.asarray(c, dtype=np.float64), float(f)) for c, f in zip(candidates, fitnesses)])


def simplex_grid(dim: int, m: int) -> list[np.ndarray]:
    """Every (a_1..a_d) / m with integers a_i >= 0 summing to m, in lexicographic order of a."""
    return [np.array(a, dtype=np.float64) / m for a in itertools.product(range(m + 1), repeat=dim) if sum(a) == m]


def grid_levels(dim: int, budget: int) -> int:
    """The largest m with C(m + d - 1, d - 1) <= budget (at least 1)."""
    m = 1
    while math.comb(m + 1 + dim - 1, dim - 1) <= budget:
        m += 1
    return m


@STRATEGIES.register("grid", aliases=("grid_search",))
class GridSearch(Strategy):
    name = "grid"

    def __init__(self, dim, budget, population, seed, **options):
        super().__init__(dim, budget, population, seed)
        self.points = simplex_grid(dim, grid_levels(dim, budget))[:budget]
        self.next = 0

    def ask(self, n):
        out = self.points[self.next:self.next + n]
        self.next += len(out)
        return [p.copy() for p in out]


def build_strategy(name: str, dim: int, budget: int, population: int, seed: int, **options) -> Strategy:
    return STRATEGIES.get(name)(dim, budget, population, seed, **options)
