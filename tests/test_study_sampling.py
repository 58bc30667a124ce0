"""Sampler: genotypes lie in the space, options are honoured, ids and draws are deterministic."""
import random

import pytest

from search_spaces import get_space
from search_spaces.darts.ops import PRIMITIVES
from unnas.study.sampling import sample_archs


@pytest.fixture(scope="module")
def space():
    return get_space("darts")


def _nodes(cell):
    return [cell[2 * i:2 * i + 2] for i in range(len(cell) // 2)]


def test_samples_are_valid_and_use_the_defaults_of_the_unnas_sample(space):
    archs = sample_archs(space, 300, seed=3)
    assert [a.id for a in archs[:3]] == ["a0000", "a0001", "a0002"]
    assert len({a.genotype for a in archs}) == 300          # distinct genotypes
    saw_none = saw_repeat = False
    for a in archs:
        g = space.validate(a.genotype)
        for cell, concat in ((g.normal, g.normal_concat), (g.reduce, g.reduce_concat)):
            assert len(cell) == 8 and list(concat) == [2, 3, 4, 5]
            for i, ((op0, j0), (op1, j1)) in enumerate(_nodes(cell)):
                assert op0 in PRIMITIVES and op1 in PRIMITIVES
                assert 0 <= j0 < i + 2 and 0 <= j1 < i + 2
                saw_repeat |= j0 == j1
            saw_none |= any(op == "none" for op, _ in cell)
    assert saw_none and saw_repeat      # both allowed by default, as in the released 500


def test_options_forbid_none_and_repeated_inputs(space):
    for a in sample_archs(space, 200, seed=1, allow_none=False, distinct_inputs=True):
        for cell in (a.genotype.normal, a.genotype.reduce):
            assert all(op != "none" for op, _ in cell)
            assert all(j0 != j1 for (_, j0), (_, j1) in _nodes(cell))


def test_determinism_and_prefix_stability(space):
    a = sample_archs(space, 20, seed=7)
    b = sample_archs(space, 20, seed=7)
    assert [(x.id, x.genotype) for x in a] == [(x.id, x.genotype) for x in b]
    assert [x.genotype for x in sample_archs(space, 5, seed=7)] == [x.genotype for x in a[:5]]
    assert [x.genotype for x in sample_archs(space, 5, seed=8)] != [x.genotype for x in a[:5]]
    # the space's own sampler is driven only by the rng handed to it
    g1 = space.sample(random.Random(1))
    assert g1 == space.sample(random.Random(1))


def test_ids_widen_for_large_samples(space):
    archs = sample_archs(space, 10001, seed=0)
    assert archs[0].id == "a00000" and archs[-1].id == "a10000"
