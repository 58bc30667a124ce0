"""Jigsaw permutation sets.

* Grid 2: all 24 permutations of 0..3 in ``itertools.permutations`` (lexicographic) order, as the
  release's ``permutations_24.npy``.
* Grid >= 3: ``N`` permutations chosen greedily for a maximal minimum Hamming distance (Noroozi &
  Favaro, 2016): start from a seeded random permutation, then repeatedly add the candidate whose
  minimum Hamming distance to the chosen set is largest (ties: the first candidate in the pool).
  The pool is all (G^2)! permutations when that is at most 400k (G = 3: 9! = 362,880), else a
  seeded random pool of 50k. Deterministic from the seed; cached as .npy in the cache folder
  ($UNNAS_CACHE, else ~/.cache/unnas). The release's 1000-permutation file is *not* max-min
  (its minimum distance is 2); ours reaches a larger minimum distance, see :func:`hamming_stats`.
* A user file (``jigsaw_perms_file``): an (N, G^2) integer .npy of distinct permutations.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from unnas.config import ConfigError
from unnas.utils.io import cache_dir, load_user_npy, save_to_cache

_FULL_POOL_MAX = 400_000
_RANDOM_POOL = 50_000
_VERSION = 1


class PermutationFileError(ConfigError):
    """A bad user permutation file (TASK.JIGSAW_PERMS_FILE): a user error, one line."""


def all_permutations(n: int) -> np.ndarray:
    return np.array(list(itertools.permutations(range(n))), dtype=np.int64)


def _candidate_pool(n: int, rng: np.random.Generator) -> np.ndarray:
    if math.factorial(n) <= _FULL_POOL_MAX:
        return all_permutations(n)
    pool = np.argsort(rng.random((_RANDOM_POOL, n)), axis=1)
    return np.unique(pool, axis=0)


def max_min_hamming(n: int, count: int, seed: int = 0) -> np.ndarray:
    """(count, n) int64 permutations, greedy maximal minimum Hamming distance (see module doc)."""
    rng = np.random.default_rng(seed)
    pool = _candidate_pool(n, rng).astype(np.uint8)
    if count > len(pool):
        raise ValueError(f"asked for {count} permutations of {n} but the candidate pool has {len(pool)}")
    first = rng.permutation(n).astype(np.uint8)
    chosen = [first]
    min_dist = (pool != first).sum(1, dtype=np.int16)
    for _ in range(count - 1):
        j = int(np.argmax(min_dist))
        p = pool[j].copy()
        chosen.append(p)
        np.minimum(min_dist, (pool != p).sum(1, dtype=np.int16), out=min_dist)
    return np.stack(chosen).astype(np.int64)


def hamming_stats(perms: np.ndarray) -> dict:
    """Pairwise Hamming distances of a set: min, mean and max over distinct pairs."""
    perms = np.asarray(perms)
    d = (perms[:, None, :] != perms[None, :, :]).sum(-1)
    iu = np.triu_indices(len(perms), 1)
    return {"min": int(d[iu].min()), "mean": float(d[iu].mean()), "max": int(d[iu].max())}


def validate(perms: np.ndarray, grid: int, source: str = "permutations") -> np.ndarray:
    n = grid * grid
    perms = np.asarray(perms)
    if perms.ndim != 2 or perms.shape[1] != n or perms.shape[0] < 2:
        raise PermutationFileError(f"{source}: expected an (N, {n}) array of permutations of 0..{n - 1} "
                                   f"for grid {grid}, got shape {perms.shape}")
    if not np.issubdtype(perms.dtype, np.integer):
        raise PermutationFileError(f"{source}: expected integer permutations, got dtype {perms.dtype}")
    if not (np.sort(perms, axis=1) == np.arange(n)).all():
        raise PermutationFileError(f"{source}: every row must be a permutation of 0..{n - 1}")
    if len(np.unique(perms, axis=0)) != len(perms):
        raise PermutationFileError(f"{source}: rows must be distinct permutations")
    return perms.astype(np.int64)


def load_permutations(path: str, grid: int) -> np.ndarray:
    source = f"TASK.JIGSAW_PERMS_FILE {path}"
    return validate(load_user_npy(path, source, "permutation file", PermutationFileError), grid, source)


def permutation_set(grid: int, num_perms: int = 1000, seed: int = 0, perms_file: str = "") -> np.ndarray:
    """The task's permutation set (see the module docstring); (P, grid^2) int64."""
    if perms_file:
        return load_permutations(perms_file, grid)
    if grid < 2:
        raise ValueError(f"jigsaw grid must be >= 2, got {grid}")
    if grid == 2:
        return all_permutations(4)
    path = cache_dir() / f"jigsaw_perms_g{grid}_n{num_perms}_seed{seed}_v{_VERSION}.npy"
    if path.is_file():
        try:
            return validate(np.load(path), grid, str(path))
        except (OSError, ValueError, EOFError):
            pass  # a damaged cache entry: rebuild it
    perms = max_min_hamming(grid * grid, num_perms, seed)
    save_to_cache(path, perms)
    return perms
