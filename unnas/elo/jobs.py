"""An evolution's evaluations as jobs of the study's results store (``RUN_DIR/study.sqlite``,
:mod:`unnas.study.store`): claims under leases, a dead worker's job claimed again, a result
accepted once, so any number of workers share the evaluations and a killed run loses none.

A job is (``net``, candidate key, SEED): the one architecture every evaluation trains, the
candidate, the training seed (one seed for all: every candidate sees the same batches). What a key
trains lives in the table ``elo_candidates`` of the same file, written before its job exists:

    key TEXT PRIMARY KEY   e.g. cmaes_g002_c01 (strategy, generation, index) or final_uniform
    strategy, generation, idx
    task TEXT              multi, or a single task (the report's single-task runs)
    weights TEXT           JSON list, the candidate as drawn (the task divides them by their sum)
    epochs, probe          pretraining epochs; whether the trunk is also linear-probed
    finetune               fine-tuning epochs on the labels after the pretraining (0 = none; the
                           report's runs with ELO.FINETUNE_EPOCHS), added to stores of older runs

A candidate already stored must be drawn again identically when the run resumes (the strategies'
draws are a function of the seed and the results): :meth:`EvolutionJobs.add` refuses a
different one, so a changed config or library can never mix two sequences in one run.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from unnas.study.store import StoreError

ARCH_ID = "net"
_SCHEMA = """CREATE TABLE IF NOT EXISTS elo_candidates (
    key TEXT PRIMARY KEY, strategy TEXT NOT NULL, generation INTEGER NOT NULL, idx INTEGER NOT NULL,
    task TEXT NOT NULL, weights TEXT NOT NULL, epochs INTEGER NOT NULL, probe INTEGER NOT NULL,
    finetune INTEGER NOT NULL DEFAULT 0)"""
_COLUMNS = ("key", "strategy", "generation", "idx", "task", "weights", "epochs", "probe", "finetune")


@dataclass(frozen=True)
class Candidate:
    key: str
    strategy: str             # a strategy's name, or "final" for the report's runs
    generation: int
    index: int
    task: str                 # "multi", or a single task
    weights: tuple            # as drawn, in TASK.MULTI.TASKS order (empty for a single task)
    epochs: int
    probe: bool
    finetune: int = 0         # fine-tuning epochs on the labels (the report's runs); 0 = none

    def row(self) -> tuple:
        return (self.key, self.strategy, self.generation, self.index, self.task, json.dumps(list(self.weights)),
                self.epochs, int(self.probe), int(self.finetune))

    @classmethod
    def from_row(cls, row) -> "Candidate":
        key, strategy, generation, idx, task, weights, epochs, probe, finetune = row
        return cls(key, strategy, int(generation), int(idx), task, tuple(json.loads(weights)), int(epochs), bool(probe),
                   int(finetune))


def candidate_key(strategy: str, generation: int, index: int) -> str:
    return f"{strategy}_g{generation:03d}_c{index:02d}"


class EvolutionJobs:
    """The store of one run directory, opened for ``cfg``: a run with another evaluation config
    is refused (StoreError naming the keys that differ)."""

    def __init__(self, run_dir, cfg):
        from search_spaces import get_space
        from unnas.study.archs import Arch
        from unnas.study.runner import open_store

        from .config import fingerprint

        self.run_dir, self.cfg = Path(run_dir), cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.store = open_store(self.run_dir, cfg)
        with self.store.transaction() as db:
            db.execute(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(elo_candidates)")}
            if "finetune" not in columns:   # a store of a run from before the fine-tune: none of its runs fine-tunes
                db.execute("ALTER TABLE elo_candidates ADD COLUMN finetune INTEGER NOT NULL DEFAULT 0")
        self.arch = Arch(ARCH_ID, get_space(cfg.MODEL.SPACE).resolve(cfg.MODEL.GENOTYPE))
        self.fingerprint = fingerprint(cfg)
        self._register([])

    def _register(self, jobs) -> None:
        """Jobs into the store (idempotent); a store made with another evaluation config is refused."""
        from .config import describe_change
        self.store.init_study([self.arch], jobs, self.cfg.dump(), self.fingerprint,
                              lambda stored: describe_change(stored, self.cfg))

    def close(self) -> None:
        self.store.close()

    def add(self, candidates: Sequence[Candidate]) -> None:
        """Record candidates, then their jobs (idempotent); a key stored with other contents is refused."""
        from unnas.study.jobs import Job

        with self.store.transaction() as db:
            for c in candidates:
                old = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM elo_candidates WHERE key = ?", (c.key,)).fetchone()
                if old is None:
                    db.execute(f"INSERT INTO elo_candidates VALUES ({', '.join('?' * len(_COLUMNS))})", c.row())
                elif Candidate.from_row(old) != c:
                    raise StoreError(f"{self.store.path}: candidate {c.key} was stored as {Candidate.from_row(old).weights} "
                                     f"but is drawn now as {c.weights} (another cmaes/numpy version, or a changed "
                                     "config); resume with the same versions, or use a new --out")
        self._register([Job(ARCH_ID, c.key, int(self.cfg.SEED)) for c in candidates])

    def candidates(self, strategy: str | None = None) -> list[Candidate]:
        q, args = f"SELECT {', '.join(_COLUMNS)} FROM elo_candidates", []
        if strategy is not None:
            q, args = q + " WHERE strategy = ?", [strategy]
        return [Candidate.from_row(r) for r in self.store.db.execute(q + " ORDER BY strategy, generation, idx", args)]

    def candidate(self, key: str) -> Candidate | None:
        row = self.store.db.execute(f"SELECT {', '.join(_COLUMNS)} FROM elo_candidates WHERE key = ?", (key,)).fetchone()
        return None if row is None else Candidate.from_row(row)

    def states(self) -> dict[str, str]:
        """Job state (pending | running | done | failed) by candidate key."""
        return {j["task"]: j["state"] for j in self.store.jobs()}

    def results(self) -> dict[str, dict]:
        """The result of every finished evaluation, by candidate key."""
        return {r["task"]: r["result"] for r in self.store.results()}

    def failed(self) -> list[dict]:
        return self.store.jobs("failed")


def load_candidate(cfg, key: str) -> Candidate:
    """What the job ``key`` of the run in ``cfg.OUT_DIR`` trains (for an evaluator in a worker)."""
    from unnas.study.runner import open_store

    store = open_store(cfg.OUT_DIR, cfg)
    try:
        row = store.db.execute(f"SELECT {', '.join(_COLUMNS)} FROM elo_candidates WHERE key = ?", (key,)).fetchone()
    finally:
        store.close()
    if row is None:
        raise StoreError(f"{cfg.OUT_DIR}: no candidate {key!r} in the store; the run directory was changed by hand")
    return Candidate.from_row(row)
