"""ELo's unsupervised fitness (unnas/elo/fitness.py) against hand computations: the soft
assignments, the sorted cluster masses, the Zipf prior's normalisation, the KL."""
import math

import numpy as np
import pytest

from unnas.elo.fitness import (elo_fitness, fitness_of_clusters, kl_divergence, soft_assignments, worst_fitness,
                               zipf_prior)


def test_zipf_prior_is_normalised_by_the_generalised_harmonic_number():
    assert np.allclose(zipf_prior(3, 1.0), [6 / 11, 3 / 11, 2 / 11])          # H_{3,1} = 11/6
    assert np.allclose(zipf_prior(2, 2.0), [0.8, 0.2])                       # H_{2,2} = 5/4
    assert np.allclose(zipf_prior(4, 0.0), [0.25] * 4)                       # s = 0: uniform
    with pytest.raises(ValueError, match="exponent"):
        zipf_prior(3, -1.0)


def test_fitness_of_a_toy_feature_set_by_hand():
    # two centroids one unit apart; x1 = x3 at the first, x2 at the second
    centers = np.array([[1.0, 0.0], [0.0, 0.0]])                  # the larger cluster listed second
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    a, b = 1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1))   # softmax of (0, -1)
    assert np.allclose(soft_assignments(x, centers), [[b, a], [a, b], [b, a]])
    big, small = (2 * a + b) / 3, (a + 2 * b) / 3                  # p(c) = mean over x of p(c | x), sorted
    for s, q in ((1.0, (2 / 3, 1 / 3)), (2.0, (0.8, 0.2))):
        f = fitness_of_clusters(x, centers, s)
        assert np.allclose(f.sizes, [big, small]) and np.allclose(f.prior, q)
        assert f.value == pytest.approx(big * math.log(big / q[0]) + small * math.log(small / q[1]), rel=1e-12)


def test_kl_treats_empty_clusters_as_zero_and_worst_fitness_is_the_largest_kl():
    q = zipf_prior(3, 1.0)
    assert kl_divergence([1.0, 0.0, 0.0], q) == pytest.approx(math.log(11 / 6))
    assert worst_fitness(3, 1.0) == pytest.approx(math.log(11 / 6))            # every image in one cluster
    q2 = zipf_prior(4, 3.0)
    brute = max(kl_divergence(np.r_[np.full(j, 1 / j), np.zeros(4 - j)], q2) for j in range(1, 5))
    assert worst_fitness(4, 3.0) == pytest.approx(brute) and brute > kl_divergence([1, 0, 0, 0], q2)


def test_kmeans_fitness_is_zero_for_zipf_sized_blobs_and_deterministic():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [40.0, 0.0], [0.0, 40.0]])
    feats = np.concatenate([c + 0.1 * rng.standard_normal((n, 2)) for c, n in zip(centres, (12, 6, 4))])
    f = elo_fitness(feats, clusters=3, zipf_s=1.0, seed=0)          # sizes 12/22, 6/22, 4/22 = Zipf(s=1)
    assert f.value == pytest.approx(0.0, abs=1e-9) and np.allclose(f.sizes, [6 / 11, 3 / 11, 2 / 11])
    assert elo_fitness(feats, 3, 2.0, seed=0).value > 0.01              # the same sizes against s = 2
    again = elo_fitness(feats[rng.permutation(len(feats))], 3, 1.0, seed=0)
    assert again.value == pytest.approx(f.value, abs=1e-12)
    noise = rng.standard_normal((40, 5))                               # no structure: the seed fixes the answer
    assert elo_fitness(noise, 4, 1.0, seed=3) == elo_fitness(noise.copy(), 4, 1.0, seed=3)


def test_bad_feature_sets_are_one_clear_line():
    with pytest.raises(ValueError, match="cannot form 10 clusters"):
        elo_fitness(np.zeros((4, 3)), clusters=10)
    with pytest.raises(ValueError, match="not finite"):
        elo_fitness(np.full((12, 3), np.nan), clusters=2)
