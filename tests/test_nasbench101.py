"""The NAS-Bench-101 space: spec validation, pruning, hashing, the channel rule, networks under
every task head, the JSON formats, the release's 500 specs, and the study/tools taking it."""
import json
import random

import pytest
import torch

from search_spaces import ArchitectureError, arch_from_dict, get_space
from search_spaces.nasbench101 import CellSpec, NasBenchTrunk, SpecError, vertex_channels
from unnas.data import DataInfo
from unnas.tasks import build_task

from conftest import SHARED

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py

C3, C1, MP = "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"
RELEASE = SHARED / "unnas-sample-archs" / "nasbench101_cifar10_500.json"

# NAS-Bench-101's README cell (Inception-like) and the same cell as the benchmark stores it
# (``module_adjacency``/``module_operations`` of its query): one graph, two vertex orders.
README_CELL = CellSpec([[0, 1, 1, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0, 0],
                        [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
                       ["input", C1, C3, C3, C3, MP, "output"])
STORED_CELL = CellSpec([[0, 1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1],
                        [0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
                       ["input", C3, C1, MP, C3, C3, "output"])


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv_bn(c_in, c_out, k):   # conv (no bias) + BN's weight and bias
    return c_in * c_out * k * k + 2 * c_out


# ---- the channel rule ---------------------------------------------------------------------
def test_channel_rule_splits_the_output_and_takes_the_max_of_successors():
    # 1 -> {2, 3}; 2, 3 -> out; 5 output channels: 3 to vertex 2 (the remainder goes first), 2 to
    # vertex 3; vertex 1 feeds no output, so it takes max(3, 2) and is truncated to 2 for vertex 3.
    m = [[0, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]]
    assert vertex_channels(m, 7, 5) == [7, 3, 3, 2, 5]
    spec = CellSpec(m, ["input", C3, C1, C3, "output"])
    trunk = NasBenchTrunk(spec, 3, 5, num_stacks=1, modules_per_stack=1)
    module = trunk.layers[0]
    assert module.channels == [5, 3, 3, 2, 5]
    # projection of the input to vertex 1 (5 -> 3) and the three ops at their vertex's channels
    assert n_params(module) == conv_bn(5, 3, 1) + conv_bn(3, 3, 3) + conv_bn(3, 3, 1) + conv_bn(2, 2, 3)
    assert trunk(torch.randn(2, 3, 8, 8)).shape == (2, 5, 8, 8)
    # three vertices feeding the output: 128 = 43 + 43 + 42
    m3 = [[0, 1, 1, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]]
    assert vertex_channels(m3, 64, 128) == [64, 43, 43, 42, 128]


# ---- pruning ------------------------------------------------------------------------------
def test_pruning_removes_vertices_off_every_input_output_path():
    # 0 -> 1 -> 5 is the only path; 2 is a dead end (no way to the output) and 3 -> 4 -> 5 cannot
    # be reached from the input: both go, and so does 4.
    m = [[0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 1],
         [0, 0, 0, 0, 0, 0]]
    spec = CellSpec(m, ["input", C3, MP, C1, C1, "output"])
    pruned = spec.pruned()
    assert pruned.matrix == ((0, 1, 0), (0, 0, 1), (0, 0, 0)) and pruned.ops == ("input", C3, "output")
    assert spec.graph_hash() == pruned.graph_hash()
    a, b = NasBenchTrunk(spec, 3, 8, 2, 1), NasBenchTrunk(pruned, 3, 8, 2, 1)
    assert n_params(a) == n_params(b)
    assert README_CELL.pruned() is README_CELL   # nothing to prune: the spec itself


# ---- an input -> output edge ----------------------------------------------------------------
def test_input_output_edge_adds_a_projection():
    spec = CellSpec([[0, 1, 1], [0, 0, 1], [0, 0, 0]], ["input", C3, "output"])
    module = NasBenchTrunk(spec, 3, 6, 1, 1).layers[0]
    assert sorted(module.projections) == ["1", "2"]      # to vertex 1 and to the output
    assert n_params(module) == conv_bn(6, 6, 1) + conv_bn(6, 6, 3) + conv_bn(6, 6, 1)
    x = torch.randn(2, 6, 4, 4)
    module.eval()
    expected = module.ops["1"](module.projections["1"](x)) + module.projections["2"](x)
    assert torch.allclose(module(x), expected)
    # input -> output alone: the output is the projection
    alone = NasBenchTrunk(CellSpec([[0, 1], [0, 0]], ["input", "output"]), 3, 6, 1, 1).layers[0].eval()
    assert torch.allclose(alone(x), alone.projections["1"](x))


# ---- hashing ------------------------------------------------------------------------------
def test_isomorphic_specs_share_a_hash_and_others_do_not():
    a = CellSpec([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]], ["input", C3, C1, "output"])
    b = CellSpec([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]], ["input", C1, C3, "output"])
    assert a != b and a.graph_hash() == b.graph_hash()                # vertices 1 and 2 swapped
    c = CellSpec([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]], ["input", C3, MP, "output"])
    d = CellSpec([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]], ["input", C3, C1, "output"])
    assert len({a.graph_hash(), c.graph_hash(), d.graph_hash()}) == 3   # another op; a chain
    assert README_CELL.graph_hash() == STORED_CELL.graph_hash()
    space = get_space("nasbench101")
    assert space.dedup_key(a) == space.dedup_key(b)


def test_published_parameter_count_of_the_readme_cell():
    # NAS-Bench-101's query of its README cell reports trainable_parameters 2694282 (CIFAR-10:
    # stem 128, 3 stacks x 3 modules, 10 classes; BN's gamma and beta are trainable there too).
    for spec in (README_CELL, STORED_CELL):
        trunk = NasBenchTrunk(spec, 3, 128, 3, 3)
        assert n_params(trunk) + trunk.out_channels * 10 + 10 == 2694282


# ---- invalid specs: one clear line --------------------------------------------------------
@pytest.mark.parametrize("matrix,ops,words", [
    ([[0] * 8 for _ in range(8)], ["input"] + [C3] * 6 + ["output"], "has 8 vertices"),
    ([[0, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 0, 0], [0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0, 1],
      [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0] * 7], ["input"] + [C3] * 5 + ["output"], "at most 9"),
    ([[0, 1, 0], [0, 0, 0], [0, 0, 0]], ["input", C3, "output"], "cannot be reached"),
    ([[0, 1, 0], [0, 0, 1], [0, 0, 0]], ["input", "conv5x5", "output"], "'conv5x5'"),
    ([[0, 1, 0], [0, 0, 1], [1, 0, 0]], ["input", C3, "output"], "upper triangular"),
    ([[0, 1], [0, 0]], ["input", C3, "output"], "one op per vertex"),
    ([[0, 1], [0, 0]], ["output", "input"], "start with"),
    ([[0, 2], [0, 0]], ["input", "output"], "only 0 and 1"),
])
def test_invalid_specs_name_the_fault_in_one_line(matrix, ops, words):
    with pytest.raises(SpecError) as err:
        CellSpec(matrix, ops)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_invalid_spec_through_a_tool_is_one_line(capsys):
    from unnas.commands import info
    bad = json.dumps({"matrix": [[0, 1, 0], [0, 0, 0], [0, 0, 0]], "ops": ["input", C3, "output"]})
    assert info.main(["--space", "nasbench101", bad]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("info.py: error:") and "cannot be reached" in err and "\n" not in err


# ---- every task head on a tiny NAS-Bench network ------------------------------------------
INFO = DataInfo(num_classes=5, image_size=16, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))
OPTIONS = {"jig": {"jigsaw_num_perms": 24}, "seg": {"seg_aspp_channels": 8, "seg_aspp_rates": [2]}}


@pytest.fixture
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNNAS_CACHE", str(tmp_path / "cache"))


@pytest.mark.usefixtures("_cache")
@pytest.mark.parametrize("name,stem", [("cls", "cifar"), ("rot", "cifar"), ("col", "cifar"), ("jig", "cifar"),
                                       ("seg", "cifar"), ("cls", "imagenet")])
def test_every_task_head_trains_a_step(name, stem):
    torch.manual_seed(0)
    info = DataInfo(**{**INFO.__dict__, "dense_labels": name == "seg"})
    task = build_task(name, info, **OPTIONS.get(name, {}))
    net = get_space("nasbench101").build_network(README_CELL, task.build_head, task.num_outputs, task.in_channels,
                                                 width=4, depth=0, stem=stem, single_reduction=task.single_reduction,
                                                 num_stacks=2, modules_per_stack=1)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 3, 16, 16), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 5, (2, 16, 16) if name == "seg" else (2,), generator=g)
    x, y = task.make_batch(images, labels, True, torch.Generator().manual_seed(1))
    assert x.shape[1] == task.in_channels   # col reads L (1 channel), jig a batch of tiles
    before = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    loss = task.loss(net(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_no_auxiliary_head():
    task = build_task("cls", INFO)
    with pytest.raises(SpecError, match="MODEL.AUX False"):
        get_space("nasbench101").build_network(README_CELL, task.build_head, 5, 3, 4, 0, "cifar", auxiliary=True)


# ---- formats: repr, JSON, architecture lists ------------------------------------------------
def test_text_and_json_round_trips(tmp_path):
    from unnas.study.archs import Arch, load_archs, save_archs

    space = get_space("nasbench101")
    assert CellSpec.parse(repr(README_CELL)) == README_CELL
    assert CellSpec.parse(README_CELL.to_json()) == README_CELL
    assert arch_from_dict(README_CELL.to_dict()) == README_CELL       # the store reads it by its fields
    assert space.resolve(json.dumps({"genotype": README_CELL.to_dict()})) == README_CELL
    path = tmp_path / "archs.json"
    save_archs([Arch("x1", README_CELL), Arch("x2", STORED_CELL)], path, space=space.name)
    assert [a.genotype for a in load_archs(path, space)] == [README_CELL, STORED_CELL]
    lines = tmp_path / "specs.txt"
    lines.write_text(README_CELL.to_json() + "\n" + repr(STORED_CELL) + "\n")
    assert [a.genotype for a in load_archs(lines, space)] == [README_CELL, STORED_CELL]
    with pytest.raises(ArchitectureError, match="MODEL.SPACE nasbench101"):
        load_archs(path, get_space("darts"))
    # a directory of release-style configs (NAS.MATRIX / NAS.OPS)
    folder = tmp_path / "cls"
    folder.mkdir()
    (folder / "000907.yaml").write_text(f"MODEL:\n  TYPE: nas_bench\nNAS:\n  MATRIX: {[list(r) for r in README_CELL.matrix]}"
                                        f"\n  OPS: {list(README_CELL.ops)}\n")
    assert load_archs(folder, space)[0].genotype == README_CELL


def test_sampler_draws_valid_distinct_specs():
    from unnas.study.sampling import sample_archs

    space = get_space("nasbench101")
    first = [space.sample(random.Random(k)) for k in range(30)]
    assert all(s.num_vertices == 7 and s.num_edges <= 9 for s in first)
    assert first == [space.sample(random.Random(k)) for k in range(30)]      # seeded
    archs = sample_archs(space, 40, seed=3)
    assert len({a.genotype.graph_hash() for a in archs}) == 40
    assert [a.genotype for a in sample_archs(space, 10, seed=3)] == [a.genotype for a in archs[:10]]


# ---- the release's 500 specs --------------------------------------------------------------
def test_release_file_loads():
    if not RELEASE.is_file():
        pytest.skip("../shared/data/unnas-sample-archs not present")
    from unnas.study.archs import load_archs

    archs = load_archs(RELEASE, get_space("nasbench101"))
    assert len(archs) == 500 and archs[0].id == "000907"
    sizes = [a.genotype.num_vertices for a in archs]
    assert (sizes.count(7), sizes.count(6), sizes.count(5)) == (428, 69, 3)   # as the release reference counts
    assert len({a.genotype.graph_hash() for a in archs}) == 500                 # 500 different networks


# ---- the study and the training config take it through MODEL.SPACE ------------------------
def test_study_stores_and_reads_back_specs(tmp_path):
    from unnas.config import load_cfg
    from unnas.study.config import study_defaults, validate_study_cfg
    from unnas.study.runner import prepare_study

    cfg = load_cfg(study_defaults(), None, ["MODEL.SPACE", "nasbench101", "STUDY.NUM_ARCHS", "3", "STUDY.TRAINER",
                                            "fake", "STUDY.PROXIES", "[]", "OUT_DIR", str(tmp_path)],
                   validate_study_cfg)
    store, new = prepare_study(cfg, tmp_path)
    try:
        archs = store.archs()
        assert new == 3 * len(cfg.STUDY.TASKS) and all(isinstance(a.genotype, CellSpec) for a in archs)
        assert json.loads((tmp_path / "archs.json").read_text())["space"] == "nasbench101"
    finally:
        store.close()


def test_training_plan_builds_the_space_network():
    from unnas.config import load_cfg
    from unnas.train.config import train_defaults, validate_train_cfg
    from unnas.train.network import build_train_network, plan_arch, resolve_network

    cfg = load_cfg(train_defaults(), None, ["MODEL.SPACE", "nasbench101", "MODEL.GENOTYPE", repr(README_CELL),
                                            "MODEL.WIDTH", "8", "MODEL.NUM_STACKS", "2", "MODEL.MODULES_PER_STACK", "1"],
                   validate_train_cfg)
    task = build_task("rot", INFO)
    plan, _, _ = resolve_network(cfg, task, INFO)
    assert plan.space == "nasbench101" and plan.options == {"num_stacks": 2, "modules_per_stack": 1}
    assert plan_arch(plan) == README_CELL
    net = build_train_network(plan, task)
    assert isinstance(net.trunk, NasBenchTrunk) and net.trunk.out_channels == 16
