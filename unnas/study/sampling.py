"""Seeded random architectures from a search space, with stable ids ``a0000``, ``a0001``, ...

The rule is the space's own ``sample`` (for DARTS: for each node two inputs uniform over its
predecessors and an op uniform over the op set, per cell). With the defaults (``allow_none``
True, ``distinct_inputs`` False) it allows what the UnNAS sample contains: ``none`` ops and a node
reading the same input twice. The release's 500 are not uniform over ops (see docs/rank_corr.md);
to reproduce the paper use that list (``--archs``), not a new sample.

Architecture ``k`` is drawn from its own generator seeded by ``(seed, k)``, so the first ``n`` archs
of a larger sample are the same as a sample of ``n`` (a study can grow without changing ids), and
duplicates are redrawn (``unique``) so every id is a different genotype: two draws are duplicates
when the space's ``dedup_key`` agrees (DARTS: the same genotype; NAS-Bench-101: the same
isomorphism-invariant graph hash after pruning, i.e. the same network).
"""
from __future__ import annotations

import random

from .archs import Arch, make_id


def sample_archs(space, num: int, seed: int = 0, allow_none: bool = True, distinct_inputs: bool = False,
                 unique: bool = True, prefix: str = "a") -> list[Arch]:
    if num < 0:
        raise ValueError(f"number of architectures must be >= 0, got {num}")
    archs, seen = [], set()
    for k in range(num):
        redraw = 0
        while True:
            rng = random.Random(f"{seed}/{k}/{redraw}")
            g = space.sample(rng, allow_none=allow_none, distinct_inputs=distinct_inputs)
            if not unique or space.dedup_key(g) not in seen:
                break
            redraw += 1
            if redraw > 1000:
                raise ValueError("cannot draw enough distinct architectures from this space")
        seen.add(space.dedup_key(g))
        archs.append(Arch(make_id(k, prefix, max(4, len(str(num - 1)))), space.validate(g)))
    return archs
