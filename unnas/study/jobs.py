"""Jobs of a study (one training run = architecture x task x seed) and the ``--shard i/n`` partition.

A job belongs to shard ``sha1("arch/task/seed")[:63 bits] mod n``: a pure function of the job's key, so
every machine computes the same partition whatever list order or study size it sees, each job
is in exactly one shard, and shards are balanced over archs, tasks and seeds alike (a slow task
is not concentrated on one shard).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from unnas.config import ConfigError


@dataclass(frozen=True, order=True)
class Job:
    arch_id: str
    task: str
    seed: int
    genotype: Any = field(default=None, compare=False, repr=False)  # filled in when the job is run

    @property
    def key(self) -> str:
        return f"{self.arch_id}/{self.task}/{self.seed}"

    @property
    def dirname(self) -> str:
        return f"{self.arch_id}_{self.task}_s{self.seed}"


def make_jobs(arch_ids: Iterable[str], tasks: Sequence[str], seeds: Sequence[int]) -> list[Job]:
    return [Job(a, t, int(s)) for a in arch_ids for t in tasks for s in seeds]


def job_hash(job: Job) -> int:
    """63-bit stable hash of the key (fits SQLite's signed INTEGER, so the store can filter shards)."""
    return int.from_bytes(hashlib.sha1(job.key.encode()).digest()[:8], "big") >> 1


def shard_of(job: Job, num_shards: int) -> int:
    return job_hash(job) % num_shards


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` (0 <= i < n) -> (i, n); None or '' -> None."""
    if not text:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m:
        raise ConfigError(f"--shard must look like i/n (e.g. 0/4), got {text!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {text}: need n >= 1 and 0 <= i < n")
    return i, n


def in_shard(job: Job, shard: tuple[int, int] | None) -> bool:
    return shard is None or shard_of(job, shard[1]) == shard[0]
