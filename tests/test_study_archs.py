"""Architecture lists: our JSON, the shared darts_cifar10_500.json, UnNAS YAML dirs, text files."""
import json
from pathlib import Path

import pytest

from search_spaces import get_space
from search_spaces.darts.genotype import Genotype, GenotypeError
from unnas.study.archs import genotype_key, load_archs, parse_genotype_key, save_archs
from unnas.study.sampling import sample_archs

SHARED_500 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "unnas-sample-archs" / "darts_cifar10_500.json"

G1 = {"normal": [["sep_conv_3x3", 0], ["none", 1], ["skip_connect", 0], ["skip_connect", 0],
                 ["max_pool_3x3", 2], ["dil_conv_5x5", 3], ["avg_pool_3x3", 4], ["sep_conv_5x5", 1]],
      "normal_concat": [2, 3, 4, 5],
      "reduce": [["dil_conv_3x3", 1], ["sep_conv_3x3", 0], ["none", 2], ["skip_connect", 2],
                 ["max_pool_3x3", 0], ["sep_conv_5x5", 3], ["avg_pool_3x3", 4], ["avg_pool_3x3", 4]],
      "reduce_concat": [2, 3, 4, 5]}


def test_json_round_trip(tmp_path):
    archs = sample_archs(get_space("darts"), 5, seed=1)
    save_archs(archs, tmp_path / "a.json")
    assert load_archs(tmp_path / "a.json", get_space("darts")) == archs
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["space"] == "darts" and doc["archs"][0]["id"] == "a0000"


@pytest.mark.skipif(not SHARED_500.is_file(), reason="../shared/data/unnas-sample-archs not present")
def test_shared_500():
    archs = load_archs(SHARED_500, get_space("darts"))
    assert len(archs) == 500
    assert archs[0].id == "00004" and len({a.id for a in archs}) == 500
    g = archs[0].genotype
    assert g.normal[4] == ("none", 0) and list(g.reduce_concat) == [2, 3, 4, 5]
    ops = [op for a in archs for op in a.genotype.ops()]
    assert len(ops) == 8000 and ops.count("none") == 765


def _unnas_yaml(custom):
    return ("MODEL:\n  TYPE: nas\n  NUM_CLASSES: 10\nNAS:\n  GENOTYPE: custom\n  CUSTOM_GENOTYPE: "
            + json.dumps(custom) + "\n  WIDTH: 16\n  DEPTH: 20\nOPTIM:\n  BASE_LR: 0.1\n")


def test_unnas_yaml_dir(tmp_path):
    custom = [G1["normal"], G1["normal_concat"], G1["reduce"], G1["reduce_concat"]]
    d = tmp_path / "sample_based" / "darts" / "cifar10"
    for task in ("cls", "rot"):
        (d / task).mkdir(parents=True)
        (d / task / "00004.yaml").write_text(_unnas_yaml(custom))
        (d / task / "00017.yaml").write_text(_unnas_yaml([G1["reduce"], [2, 3, 4, 5], G1["normal"], [2, 3, 4, 5]]))
    archs = load_archs(d / "cls")
    assert [a.id for a in archs] == ["00004", "00017"]
    assert archs[0].genotype == Genotype.from_dict(G1)
    assert [a.id for a in load_archs(d)] == ["00004", "00017"]   # the same ids in every task folder merge
    (d / "rot" / "00017.yaml").write_text(_unnas_yaml(custom))
    with pytest.raises(GenotypeError, match="00017 appears twice with different genotypes"):
        load_archs(d)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.yaml").write_text("MODEL: {TYPE: nas}\n")
    with pytest.raises(GenotypeError, match="CUSTOM_GENOTYPE"):
        load_archs(tmp_path / "bad")


def test_text_file_and_errors(tmp_path):
    g = Genotype.from_dict(G1)
    (tmp_path / "g.txt").write_text(f"# two genotypes\n{g!r}\n{g.to_json()}\n")
    archs = load_archs(tmp_path / "g.txt")
    assert [a.id for a in archs] == ["a0000", "a0001"] and archs[1].genotype == g
    with pytest.raises(GenotypeError, match="not found"):
        load_archs(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"archs": [{"id": "x", "normal": [["conv_9x9", 0]]}]}')
    with pytest.raises(GenotypeError, match="architecture x"):
        load_archs(tmp_path / "bad.json")
    (tmp_path / "torn.json").write_text('{"archs": [')
    with pytest.raises(GenotypeError, match="not valid JSON"):
        load_archs(tmp_path / "torn.json")


def test_genotype_keys_of_the_release_and_darts_forms():
    g = Genotype.from_dict(G1)
    release = str(G1["normal"] + G1["reduce"] + G1["normal_concat"] + G1["reduce_concat"])
    assert parse_genotype_key(release) == g
    assert parse_genotype_key(repr(g)) == g
    assert parse_genotype_key(json.dumps(G1)) == g
    assert genotype_key(parse_genotype_key(json.dumps(G1))) == genotype_key(g)
    assert parse_genotype_key("a0003") is None
