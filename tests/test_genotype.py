import json
import random

import pytest
import torch

from search_spaces import get_space
from search_spaces.darts.genotype import Genotype, GenotypeError, derive_cell, derive_genotype, edge_index
from search_spaces.darts.ops import PRIMITIVES

DARTS_V2 = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
            "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
            "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
            "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
            "('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")


def test_darts_repr_round_trip():
    g = Genotype.parse(DARTS_V2)
    assert repr(g) == DARTS_V2
    assert Genotype.parse(repr(g)) == g
    with_range = DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=range(2, 6)")
    assert Genotype.parse(with_range) == g


def test_json_and_unnas_list_round_trip(tmp_path):
    g = Genotype.parse(DARTS_V2)
    assert Genotype.from_json(g.to_json()) == g
    g.save(tmp_path / "g.json")
    assert Genotype.load(tmp_path / "g.json") == g
    unnas = [[list(p) for p in g.normal], [2, 3, 4, 5], [list(p) for p in g.reduce], [2, 3, 4, 5]]
    assert Genotype.parse(json.dumps(unnas)) == g
    assert hash(g) == hash(Genotype.from_dict(g.to_dict()))  # immutable and hashable


@pytest.mark.parametrize("bad, msg", [
    ("Genotype(normal=[('conv_9x9', 0), ('skip_connect', 1)], normal_concat=[2], reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])", "unknown op"),
    ("Genotype(normal=[('skip_connect', 0), ('skip_connect', 2)], normal_concat=[2], reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])", "reads input 2"),
    ("Genotype(normal=[('skip_connect', 0)], normal_concat=[2], reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])", "even"),
    ("{not json", "neither JSON"),
    ("Genotype(normal=__import__('os'))", "unsupported expression"),
])
def test_invalid_genotypes_rejected(bad, msg):
    with pytest.raises(GenotypeError, match=msg):
        Genotype.parse(bad)


def test_derivation_on_hand_built_alphas():
    steps = 4
    w = torch.full((14, 8), 0.01)
    idx = {p: k for k, p in enumerate(PRIMITIVES)}
    # node 0: edge from 1 strongest (sep3), then 0 (skip)
    w[edge_index(0, 1), idx["sep_conv_3x3"]] = 0.9
    w[edge_index(0, 0), idx["skip_connect"]] = 0.5
    # node 1: `none` is largest everywhere but must be ignored; inputs 2 and 0 win
    w[edge_index(1, 0):edge_index(1, 2) + 1, idx["none"]] = 5.0
    w[edge_index(1, 2), idx["dil_conv_5x5"]] = 0.8
    w[edge_index(1, 0), idx["max_pool_3x3"]] = 0.3
    # node 2: all edges tie -> lowest input indices, lowest op index (max_pool_3x3 first non-none)
    # node 3: edge from 4 strongest with avg_pool, then edge 3 with sep5
    w[edge_index(3, 4), idx["avg_pool_3x3"]] = 0.7
    w[edge_index(3, 3), idx["sep_conv_5x5"]] = 0.6
    cell = derive_cell(w, PRIMITIVES, steps)
    assert cell == (("sep_conv_3x3", 1), ("skip_connect", 0),
                    ("dil_conv_5x5", 2), ("max_pool_3x3", 0),
                    ("max_pool_3x3", 0), ("max_pool_3x3", 1),
                    ("avg_pool_3x3", 4), ("sep_conv_5x5", 3))


def test_derive_genotype_applies_softmax_and_uniform_is_deterministic():
    zeros = torch.zeros(14, 8)
    g = derive_genotype(zeros, zeros)
    # all-equal weights parse by index order: inputs 0 and 1, first non-none op
    assert g.normal[:2] == (("max_pool_3x3", 0), ("max_pool_3x3", 1))
    assert all(op != "none" for op in g.ops())
    assert g.normal_concat == (2, 3, 4, 5)


@pytest.mark.parametrize("allow_none, distinct", [(True, False), (False, True)])
def test_space_sampler_valid_and_deterministic(allow_none, distinct):
    space = get_space("darts")
    a = [space.sample(random.Random(7), allow_none, distinct) for _ in range(1)]
    b = [space.sample(random.Random(7), allow_none, distinct) for _ in range(1)]
    assert a == b
    rng = random.Random(3)
    seen_none = seen_repeat = False
    for _ in range(200):
        g = space.validate(space.sample(rng, allow_none, distinct))
        for cell in (g.normal, g.reduce):
            for node in range(4):
                (o1, i1), (o2, i2) = cell[2 * node], cell[2 * node + 1]
                assert i1 < node + 2 and i2 < node + 2
                seen_repeat |= i1 == i2
                seen_none |= "none" in (o1, o2)
    assert seen_none == allow_none
    assert seen_repeat == (not distinct)


def test_space_rejects_foreign_ops():
    g = Genotype([("sep_conv_7x7", 0), ("skip_connect", 1)] * 4, [2, 3, 4, 5],
                 [("skip_connect", 0), ("skip_connect", 1)] * 4, [2, 3, 4, 5])
    with pytest.raises(GenotypeError, match="not an op"):
        get_space("darts").validate(g)


@pytest.mark.parametrize("prefix", ["genotype = ", "DARTS_V2 = ", "genotype=", "01/02 03:04:05 PM genotype = ",
                                    "[trainer.py: 200]: genotype = ", "  DARTS_V2 = genotypes."])
def test_pasted_genotype_lines(prefix):
    """A DARTS/UnNAS log line or a genotypes.py line is accepted as pasted (issue 13)."""
    from search_spaces.darts import zoo
    g = Genotype.parse(DARTS_V2)
    assert Genotype.parse(prefix + DARTS_V2) == g
    assert zoo.resolve_genotype(prefix + DARTS_V2) == g


def test_long_genotype_strings_are_not_paths(capsys):
    """A long string is never stat()ed as a path without a guard: one GenotypeError line, not OSError."""
    import sys
    from pathlib import Path
    from search_spaces.darts import zoo
    for text in ("x" * 5000, "not a genotype " * 40, "DARTS_V2 = Genotype(normal=[" + "('sep_conv_3x3', 0), " * 300):
        with pytest.raises(GenotypeError):
            zoo.resolve_genotype(text)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    try:
        import info
    finally:
        sys.path.pop(0)
    assert info.main(["genotype = " + DARTS_V2, "--width", "4", "--depth", "2", "--json"]) == 0
    assert '"params"' in capsys.readouterr().out
    assert info.main(["y" * 5000]) == 2
    err = capsys.readouterr().err
    assert err.startswith("info.py: error: unknown genotype 'yyy") and len(err.splitlines()) == 1
