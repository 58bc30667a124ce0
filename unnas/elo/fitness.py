"""ELo's unsupervised fitness of a representation (Piergiovanni, Angelova & Ryoo, CVPR 2020,
"Zipf distribution matching"): how far the sizes of the feature clusters are from Zipf's law.

For features ``x`` (N, D) of held-out images (a trunk's global-pooled feature maps):

1. k-means (scikit-learn, ``clusters`` = k centroids c_1..c_k, ``N_INIT`` seeded initialisations);
2. soft assignments p(c_i | x) = softmax_i(-||x - c_i||^2) (the paper's Bayes rule for Gaussian
   clusters of one variance, 2 sigma^2 = 1, and equal priors);
3. the cluster masses p(c_i) = mean over x of p(c_i | x), sorted from the largest down;
4. the Zipf prior q(c_i) = (1 / i^s) / H_{k,s}, H_{k,s} = sum_{j <= k} 1 / j^s (generalised
   harmonic number), largest first;
5. fitness = KL(p || q) = sum_i p(c_i) log(p(c_i) / q(c_i)) (0 log 0 = 0). Lower is better.

The assignments use the raw squared distances, as the paper: the fitness depends on the scale of
the features (features far apart give nearly hard assignments). Deterministic for a seed.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

N_INIT = 10     # k-means restarts: the lowest-inertia clustering is kept (cheap at N ~ 1000, k ~ 10)


@dataclass(frozen=True)
class Fitness:
    value: float                 # KL(p || q), lower is better
    sizes: tuple[float, ...]     # p(c_i), sorted from the largest down
    prior: tuple[float, ...]     # q(c_i), the Zipf prior in the same order


def zipf_prior(k: int, s: float) -> np.ndarray:
    """q(c_i) = (1 / i^s) / H_{k,s} for i = 1..k."""
    if k < 1 or s < 0:
        raise ValueError(f"the Zipf prior needs k >= 1 clusters and an exponent s >= 0, got k={k}, s={s}")
    q = 1.0 / np.arange(1, k + 1, dtype=np.float64) ** s
    return q / q.sum()


def soft_assignments(features: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """(N, k) p(c_i | x) = softmax_i(-||x - c_i||^2), in float64."""
    x = np.asarray(features, dtype=np.float64)
    c = np.asarray(centers, dtype=np.float64)
    logits = -((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    logits -= logits.max(axis=1, keepdims=True)          # softmax is shift-invariant; exp stays <= 1
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """sum_i p_i log(p_i / q_i), with 0 log 0 = 0."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / q[nz])).sum())


def fitness_of_clusters(features: np.ndarray, centers: np.ndarray, zipf_s: float = 1.0) -> Fitness:
    """Steps 2-5 for given centroids: the soft cluster masses, sorted, against the Zipf prior."""
    sizes = np.sort(soft_assignments(features, centers).mean(axis=0))[::-1]
    prior = zipf_prior(len(sizes), zipf_s)
    return Fitness(kl_divergence(sizes, prior), tuple(float(v) for v in sizes), tuple(float(v) for v in prior))


def elo_fitness(features, clusters: int = 10, zipf_s: float = 1.0, seed: int = 0) -> Fitness:
    """The fitness of features (N, D) (numpy or torch): k-means with ``clusters`` centroids
    (``random_state=seed``), then :func:`fitness_of_clusters`. A ValueError names what is wrong
    (too few images for k, non-finite features)."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    x = np.asarray(features.detach().cpu() if hasattr(features, "detach") else features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (images, dimensions), got shape {x.shape}")
    if clusters < 2:
        raise ValueError(f"the fitness needs at least 2 clusters, got {clusters}")
    if x.shape[0] < clusters:
        raise ValueError(f"{x.shape[0]} images cannot form {clusters} clusters; use more held-out images or fewer clusters")
    if not np.isfinite(x).all():
        raise ValueError("the features are not finite (a diverged network)")
    # One thread: a small clustering gains nothing from more, stalls at every OpenMP barrier on a busy
    # machine, and its sums then do not depend on the machine's core count.
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore")   # fewer distinct points than clusters (a collapsed trunk): duplicate centroids
        km = KMeans(n_clusters=clusters, n_init=N_INIT, random_state=seed).fit(x)
    return fitness_of_clusters(x, km.cluster_centers_, zipf_s)


def worst_fitness(k: int, s: float) -> float:
    """The largest KL(p || q) any sorted p can have: at a vertex of the sorted simplex, p uniform
    on the j largest clusters (j = 1 for s <= 1: every image in one cluster). What a diverged
    evaluation is given, so it ranks below every trained one."""
    q = zipf_prior(k, s)
    return max(kl_divergence(np.full(j, 1.0 / j), q[:j]) for j in range(1, k + 1))
